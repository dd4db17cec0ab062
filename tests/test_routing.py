"""Texts routing does not forward (issue 14, items 9, 10 and 13):

- a trunk with SMS off holds its texts — with the reason, nothing reaches its 3CX — and releases them in arrival
  order when SMS is switched on again, by the admin, the API or the setup wizard;
- a text with nowhere to go (no trunk, no tenant, a number the portal does not know, a webhook that cannot be read)
  is a not-forwarded message of its tenant when there is one, and is counted by reason for Prometheus;
- an inbound text records its real encoding and segments.

Wavix is the sandbox and 3CX a fake inbox, over real HTTP, where they take part.
"""

import importlib
import json
import threading
import time

import pytest
from django.db import connection, transaction
from django.urls import reverse

from messaging import metrics, services
from messaging.models import Delivery, Message, PhoneNumber, Trunk, WebhookEvent
from sandbox.models import FakePbxInbox
from tenants.services import tenant_save
from tests import factories as f
from tests.conftest import live_db, token_client
from tests.test_relay import received, relay, webhook

S = Message.Status


def route() -> int:
    return services.events_process()


def switch_sms(trunk: Trunk, on: bool, actor) -> None:
    trunk.sms_enabled = on
    services.trunk_save(actor=actor, trunk=trunk)


def set_status(tenant, status: str, actor) -> None:
    tenant.status = status
    tenant_save(actor=actor, tenant=tenant)


# --------------------------------------------------------------------------------------------------------------
# A trunk with SMS off holds its texts (item 9)
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def inbox(wavix):
    return FakePbxInbox.objects.create(label="Front desk PBX")


@pytest.fixture
def line(wavix, tenant, sandbox_account, inbox):
    """Tenant A's own Wavix account (the sandbox's) whose number +14155550100 is routed to the trunk Front desk: SMS
    on, its 3CX a fake inbox, the number pointed at the portal at Wavix by a sync, as the portal does it."""
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant, api_key=sandbox_account.api_key)
    f.SandboxNumberFactory(account=sandbox_account, number="14155550100")
    sender = f.SenderIDFactory(tenant=tenant, account=account, value="FrontDesk")
    trunk = f.TrunkFactory(tenant=tenant, name="Front desk", sms_enabled=True, main_sender=sender)
    trunk.set_threecx_webhook_url(f"{wavix.url}/sandbox/3cx/{inbox.token}/")
    trunk.save()
    services.numbers_sync(account, wire=False)
    PhoneNumber.objects.filter(account=account).update(trunk=trunk)
    services.numbers_sync(account, wire=True)
    return account, trunk


def forwarded_texts(inbox) -> list[str]:
    """The texts 3CX received, in order (the setup wizard's connection test left out)."""
    return [
        json.loads(bytes(request.body))["message_body"]["text"]
        for request in received(inbox)
        if not request.headers.get("X-Wavix-Message-Id", "").startswith("portal-test")
    ]


@live_db
def test_a_trunk_with_sms_off_holds_its_texts_visibly_and_its_3cx_gets_nothing(client, line, inbox, operator):
    account, trunk = line
    switch_sms(trunk, False, operator)
    for n in range(2):
        webhook(account, f"msg-{n}", text=f"text {n}")
    relay()
    assert (
        list(Message.objects.values_list("status", "not_forwarded_reason"))
        == [(S.HELD, "SMS is off on trunk Front desk")] * 2
    )
    assert not Delivery.objects.exists() and not received(inbox)
    assert set(WebhookEvent.objects.values_list("state", "tenant")) == {("held", trunk.tenant_id)}


def enable_in_the_admin(client, trunk, operator, inbox, wavix):
    client.force_login(operator)
    form = {
        "tenant": trunk.tenant_id,
        "name": trunk.name,
        "pbx_fqdn": trunk.pbx_fqdn,
        "pbx_version": "",
        "main_sender": trunk.main_sender_id,
        "sms_template": trunk.sms_template,
        "sms_enabled": "on",
        "threecx_webhook_url": "",  # empty keeps the one stored
        "numbers-TOTAL_FORMS": "0",
        "numbers-INITIAL_FORMS": "0",
    }
    response = client.post(reverse("admin:messaging_trunk_change", args=[trunk.pk]), form)
    assert response.status_code == 302, response.context["adminform"].form.errors


def enable_through_the_api(client, trunk, operator, inbox, wavix):
    response = token_client(operator).patch(f"/api/v1/trunks/{trunk.pk}/", {"sms_enabled": True}, format="json")
    assert response.status_code == 200, response.json()


def enable_in_the_setup_wizard(client, trunk, operator, inbox, wavix):
    client.force_login(operator)
    step = reverse("admin:messaging_trunk_setup_step", args=[trunk.pk, "enable"])
    response = client.post(step, {"threecx_webhook_url": f"{wavix.url}/sandbox/3cx/{inbox.token}/"})
    assert response.status_code == 302, response.context["form"].errors


@live_db
@pytest.mark.parametrize("enable", [enable_in_the_admin, enable_through_the_api, enable_in_the_setup_wizard])
def test_switching_sms_on_again_forwards_the_held_texts_in_arrival_order(client, line, inbox, operator, wavix, enable):
    account, trunk = line
    switch_sms(trunk, False, operator)
    for n in range(3):
        webhook(account, f"msg-{n}", text=f"text {n}")
    relay()
    assert not forwarded_texts(inbox)
    enable(client, Trunk.objects.get(pk=trunk.pk), operator, inbox, wavix)
    assert Trunk.objects.get(pk=trunk.pk).sms_enabled
    services.deliveries_process()
    assert forwarded_texts(inbox) == ["text 0", "text 1", "text 2"]
    assert set(Message.objects.values_list("status", "not_forwarded_reason")) == {(S.FORWARDED, "")}
    assert set(WebhookEvent.objects.values_list("state", flat=True)) == {"processed"}


@live_db
def test_a_text_stays_held_while_either_its_tenant_is_suspended_or_its_trunk_has_sms_off(line, inbox, reseller_admin):
    account, trunk = line
    tenant = trunk.tenant
    set_status(tenant, "suspended", reseller_admin)
    switch_sms(trunk, False, reseller_admin)
    webhook(account, "msg-1", text="Still there?")
    relay()
    message = Message.objects.get()
    assert (message.status, message.not_forwarded_reason) == (
        S.HELD,
        "Tenant A is suspended and SMS is off on trunk Front desk",
    )
    set_status(tenant, "active", reseller_admin)  # the tenant's hold is lifted, the trunk's is not
    services.deliveries_process()
    message.refresh_from_db()
    assert (message.status, message.not_forwarded_reason) == (S.HELD, "SMS is off on trunk Front desk")
    set_status(tenant, "suspended", reseller_admin)
    switch_sms(trunk, True, reseller_admin)  # now the trunk's is lifted, and the tenant's is back
    services.deliveries_process()
    message.refresh_from_db()
    assert (message.status, message.not_forwarded_reason) == (S.HELD, "Tenant A is suspended")
    assert not received(inbox)
    set_status(tenant, "active", reseller_admin)
    services.deliveries_process()
    assert forwarded_texts(inbox) == ["Still there?"]


@pytest.mark.postgres
@live_db
def test_a_text_routed_while_sms_is_being_switched_on_is_released_too(line, operator):
    """Routing reads the trunk before SMS is switched on and commits after the release looked for held texts: the
    release waits for the router's turn, so it sees that text and forwards it instead of leaving it held."""
    account, trunk = line
    switch_sms(trunk, False, operator)
    webhook(account, "racer")
    routed = threading.Event()

    def router():
        try:
            with transaction.atomic():  # the routing batch commits only after the sleep
                services.events_process()
                routed.set()
                time.sleep(1)
        finally:
            connection.close()

    thread = threading.Thread(target=router)
    thread.start()
    assert routed.wait(10)
    switch_sms(Trunk.objects.get(pk=trunk.pk), True, operator)
    thread.join()
    message = Message.objects.get()
    assert message.status == S.RECEIVED and Delivery.objects.filter(message=message).exists()


@pytest.mark.django_db
def test_texts_held_before_this_release_say_that_their_tenant_is_suspended(tenant, other_tenant):
    from django.apps import apps

    backfill = importlib.import_module("messaging.migrations.0020_held_reason_backfill").held_reason_backfill
    tenant.status = other_tenant.status = "suspended"
    held = f.MessageFactory(tenant=tenant, direction="inbound", status=S.HELD)
    said = f.MessageFactory(tenant=tenant, direction="inbound", status=S.HELD, not_forwarded_reason="SMS is off")
    elsewhere = f.MessageFactory(tenant=other_tenant, direction="inbound", status=S.HELD)
    forwarded = f.MessageFactory(tenant=tenant, direction="inbound", status=S.FORWARDED)
    backfill(apps, None)
    reasons = dict(Message.objects.values_list("pk", "not_forwarded_reason"))
    assert [reasons[m.pk] for m in (held, said, elsewhere, forwarded)] == [
        "Tenant A is suspended",
        "SMS is off",
        "Tenant B is suspended",
        "",
    ]


# --------------------------------------------------------------------------------------------------------------
# Texts with nowhere to go are where a reseller looks (item 10)
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def shared(reseller, tenant):
    """The reseller's shared Wavix account: +14155550101 is Tenant A's but on no trunk, +14155550102 in the pool."""
    account = f.WavixAccountFactory(reseller=reseller, tenant=None, name="Northwind shared")
    f.PhoneNumberFactory(account=account, tenant=tenant, number="+14155550101")
    f.PhoneNumberFactory(account=account, tenant=None, number="+14155550102")
    return account


@pytest.mark.django_db
def test_a_text_to_a_number_the_portal_does_not_know_on_a_tenants_own_account_is_that_tenants(tenant):
    own = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant, name="Tenant A own")
    webhook(own, "msg-1", to="14155550199")
    route()
    message = Message.objects.get()
    assert (message.tenant, message.status, message.not_forwarded_reason) == (
        tenant,
        S.NOT_FORWARDED,
        "+14155550199 is not a number of the Wavix account Tenant A own",
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "shared_account", "error"),
    [
        (b"{not json", False, "JSONDecodeError"),  # on the tenant's own account: it is the tenant's
        (b'{"from": "447700900001", "to": "14155550101", "message_body": {"text": "Hi"}}', True, "KeyError"),
    ],
)
def test_an_unreadable_inbound_webhook_is_a_not_forwarded_text_of_the_tenant_it_was_for(
    tenant, shared, body, shared_account, error
):
    account = shared if shared_account else f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    event = WebhookEvent.objects.create(account=account, kind="inbound", dedup_key="wavix-id-1", body=body)
    route()
    event.refresh_from_db()
    message = Message.objects.get()
    assert (event.state, event.tenant, message.tenant, message.status) == ("invalid", tenant, tenant, S.NOT_FORWARDED)
    assert message.not_forwarded_reason.startswith(f"Wavix's webhook could not be read ({error}")
    assert message.wavix_message_id == "wavix-id-1" and message.source_event == event
    if shared_account:  # whatever could be read is kept
        assert (message.from_number, message.to_number, message.text) == ("+447700900001", "+14155550101", "Hi")


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_text_postgresql_cannot_store_is_still_shown_as_not_forwarded_and_the_batch_goes_on(tenant):
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    trunk = f.TrunkFactory(tenant=tenant, sms_enabled=True)
    f.PhoneNumberFactory(account=account, tenant=tenant, trunk=trunk, number="+14155550100")
    webhook(account, "nul", text="Meet me \x00 at noon")  # PostgreSQL's text cannot hold a NUL character
    webhook(account, "next", text="Hello")
    route()
    assert dict(WebhookEvent.objects.values_list("dedup_key", "state")) == {"nul": "invalid", "next": "processed"}
    unreadable = Message.objects.get(wavix_message_id="nul")
    assert (unreadable.status, unreadable.text) == (S.NOT_FORWARDED, "Meet me  at noon")


@pytest.mark.django_db
def test_prometheus_counts_the_texts_not_forwarded_by_reason(client, shared, tenant, settings):
    from django.core.cache import cache

    settings.METRICS_TOKEN = "scrape-me-0123456789"
    metrics.flush()  # what earlier tests counted in this process
    cache.delete_many([f"metrics:not_forwarded:{reason}" for reason in metrics.NOT_FORWARDED_REASONS])
    suspended = f.TenantFactory(reseller=tenant.reseller, status="suspended")
    off = f.TrunkFactory(tenant=tenant, sms_enabled=False)
    f.PhoneNumberFactory(account=shared, tenant=tenant, trunk=off, number="+14155550103")
    f.PhoneNumberFactory(
        account=shared, tenant=suspended, trunk=f.TrunkFactory(tenant=suspended), number="+14155550104"
    )
    for key, to in [("a", "14155550101"), ("b", "14155550101"), ("c", "14155550102"), ("d", "14155550199")]:
        webhook(shared, key, to=to)
    webhook(shared, "e", to="14155550103")
    webhook(shared, "f", to="14155550104")
    WebhookEvent.objects.create(account=shared, kind="inbound", dedup_key="g", body=b"[]")
    route()
    scrape = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me-0123456789").content.decode()
    for reason, count in [
        ("no_trunk", 2),
        ("no_tenant", 1),
        ("unknown_number", 1),
        ("trunk_sms_off", 1),
        ("tenant_suspended", 1),
        ("invalid", 1),
    ]:
        assert f'portal_texts_not_forwarded_total{{reason="{reason}"}} {count}.0' in scrape


# --------------------------------------------------------------------------------------------------------------
# Inbound encoding and segments (item 13)
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "media", "encoding", "segments"),
    [
        ("Hello", None, "gsm7", 1),
        ("x" * 160, None, "gsm7", 1),
        ("x" * 161, None, "gsm7", 2),  # 153 characters per part once there are several
        ("€" * 80, None, "gsm7", 1),  # the extension table: two septets each
        ("€" * 81, None, "gsm7", 2),
        ("Привет, как дела?", None, "ucs2", 1),
        ("😀" * 1600, None, "ucs2", 48),  # two UTF-16 units each: 3,200 units, 67 per part
        ("x" * 400, ["https://example.com/a.jpg"], "gsm7", 1),  # an MMS is one message
    ],
)
def test_an_inbound_text_records_its_real_encoding_and_segments(tenant, text, media, encoding, segments):
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    trunk = f.TrunkFactory(tenant=tenant, sms_enabled=True)
    f.PhoneNumberFactory(account=account, tenant=tenant, trunk=trunk, number="+14155550100")
    body = {"message_id": "m-1", "from": "447700900001", "to": "14155550100", "message_body": {"text": text}}
    body["message_body"]["media"] = media
    WebhookEvent.objects.create(account=account, kind="inbound", dedup_key="m-1", body=json.dumps(body).encode())
    route()
    message = Message.objects.get()
    assert (message.status, message.encoding, message.segments) == (S.RECEIVED, encoding, segments)
