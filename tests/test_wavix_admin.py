"""The admin pages that need Wavix: key checks, sender-ID registration and deletion, drift repair, sub-accounts."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from messaging.models import PhoneNumber, SenderID, WavixAccount
from sandbox.models import SandboxAccount, SandboxSenderID
from tests import factories as f
from tests.conftest import live_db

pytestmark = live_db


def add_account(client, reseller, key):
    return client.post(
        reverse("admin:messaging_wavixaccount_add"),
        {"reseller": reseller.pk, "name": "Main", "api_key": key, "send_rate_per_second": 12},
    )


def test_a_wrong_key_shows_wavixs_reason_on_the_form(client, operator, reseller, wavix):
    client.force_login(operator)
    response = add_account(client, reseller, "sbx_not_a_key")
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["api_key"] == ["Wavix refused this key: Unauthorized"]
    assert not WavixAccount.objects.exists()


def test_a_good_key_saves_the_account(client, operator, reseller, sandbox_account):
    client.force_login(operator)
    assert add_account(client, reseller, sandbox_account.api_key).status_code == 302
    saved = WavixAccount.objects.get()
    assert (saved.api_key_last4, saved.send_rate_per_second) == (sandbox_account.api_key[-4:], 12)


@pytest.fixture
def registered(client, operator, tenant, sandbox_account):
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant, api_key=sandbox_account.api_key)
    client.force_login(operator)
    response = client.post(
        reverse("admin:messaging_senderid_add"),
        {
            "tenant": tenant.pk,
            "account": account.pk,
            "type": "alphanumeric",
            "value": "AcmeDental",
            "countries": ["GB"],
            "usecase": "promo",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    return SenderID.objects.get()


def test_deleting_in_the_admin_while_wavix_is_down_deletes_nothing_and_says_why(client, registered, sandbox_account):
    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(failing_until=timezone.now() + timedelta(minutes=5))
    response = client.post(
        reverse("admin:messaging_senderid_delete", args=[registered.pk]), {"post": "yes"}, follow=True
    )
    assert "Could not delete the sender ID at Wavix right now" in response.content.decode()
    assert SenderID.objects.exists() and SandboxSenderID.objects.exists()


def test_deleting_in_the_admin_deletes_at_wavix(client, registered):
    response = client.post(reverse("admin:messaging_senderid_delete", args=[registered.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not SenderID.objects.exists() and not SandboxSenderID.objects.exists()


@pytest.fixture
def drifted(tenant, sandbox_account):
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant, api_key=sandbox_account.api_key)
    trunk = f.TrunkFactory(tenant=tenant, sms_enabled=True, name="Front desk")
    at_wavix = f.SandboxNumberFactory(
        account=sandbox_account, number="14155550100", sms_relay_url="https://elsewhere.example/"
    )
    return PhoneNumber.objects.create(
        account=account,
        tenant=tenant,
        trunk=trunk,
        number="+14155550100",
        wavix_id=str(at_wavix.pk),
        sms_relay_url="https://elsewhere.example/",
        relay_drift=True,
    )


def test_the_trunk_page_shows_drift_and_its_repair_button(client, operator, drifted):
    client.force_login(operator)
    page = client.get(reverse("admin:messaging_trunk_change", args=[drifted.trunk_id])).content.decode()
    assert "+14155550100 (trunk Front desk) now relays to <code>https://elsewhere.example/</code>" in page
    assert "Repair: point them at the portal" in page
    tenant_page = client.get(reverse("admin:tenants_tenant_change", args=[drifted.tenant_id])).content.decode()
    assert "1 number(s) no longer send their texts to the portal" in tenant_page


@pytest.mark.parametrize("model", ["messaging_trunk", "tenants_tenant"])
def test_repair_is_for_those_who_may_change_the_object(client, viewer, other_admin, drifted, model):
    obj_id = drifted.trunk_id if model == "messaging_trunk" else drifted.tenant_id
    url = reverse(f"admin:{model}_repair_relay", args=[obj_id])
    client.force_login(other_admin)
    assert client.post(url).status_code == 404
    client.force_login(viewer)
    assert client.post(url).status_code == 403


def test_the_sub_account_page_creates_one_for_the_tenant(client, reseller_admin, tenant, sandbox_account):
    master = f.WavixAccountFactory(reseller=tenant.reseller, name="Master", api_key=sandbox_account.api_key)
    client.force_login(reseller_admin)
    url = reverse("admin:tenants_tenant_wavix_sub_account", args=[tenant.pk])
    assert "Master" in client.get(url).content.decode()
    response = client.post(url, {"master": master.pk})
    created = WavixAccount.objects.get(tenant=tenant)
    assert response.status_code == 302 and response.url == reverse(
        "admin:messaging_wavixaccount_change", args=[created.pk]
    )
    assert SandboxAccount.objects.filter(parent=sandbox_account).count() == 1


def test_the_sub_account_page_is_404_for_another_reseller_and_403_for_a_viewer(
    client, tenant, other_admin, viewer, wavix
):
    url = reverse("admin:tenants_tenant_wavix_sub_account", args=[tenant.pk])
    client.force_login(other_admin)
    assert client.get(url).status_code == 404
    client.force_login(viewer)
    assert client.get(url).status_code == 403


def queued_tasks(queue: str) -> list[tuple[str, list]]:
    """Take every message waiting in a real broker queue: (task name, args)."""
    from portal.celery import app

    found = []
    with app.connection_for_write() as conn:
        simple = conn.SimpleQueue(queue)
        while True:
            try:
                message = simple.get(timeout=0.5)
            except simple.Empty:
                break
            found.append((message.headers["task"], message.decode()[0]))
            message.ack()
        simple.close()
    return found


def test_assigning_a_number_to_an_sms_trunk_queues_its_wiring(
    client, operator, tenant, sandbox_account, django_capture_on_commit_callbacks
):
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant, api_key=sandbox_account.api_key)
    trunk = f.TrunkFactory(tenant=tenant, sms_enabled=True)
    number = PhoneNumber.objects.create(account=account, tenant=tenant, number="+14155550100", wavix_id="1")
    queued_tasks("sync")  # start from an empty queue
    client.force_login(operator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:messaging_phonenumber_change", args=[number.pk]),
            {"tenant": tenant.pk, "trunk": trunk.pk, "label": "Front desk"},
        )
    assert response.status_code == 302
    assert queued_tasks("sync") == [("messaging.tasks.wavix_numbers_sync", [account.pk, True])]


def test_the_admin_links_to_the_sandbox_when_it_is_on(client, operator, wavix):
    client.force_login(operator)
    page = client.get(reverse("admin:index")).content.decode()
    assert re.search(r'href="/sandbox/"[^>]*>.*?Wavix sandbox', page, re.S), "the sidebar's Integrations entry"
