"""Texts routing does not forward, and where a reseller finds them (issue 14, items 9, 10 and 13):

- a trunk with SMS off holds its texts — visible with the reason, nothing reaches its 3CX — and releases them in
  arrival order when SMS is switched on again, by the admin, the API or the setup wizard; meanwhile its numbers
  can be un-pointed at Wavix, and drift detection does not call them drifted;
- a text with nowhere to go (no trunk, no tenant, a number the portal does not know, a webhook that cannot be read)
  is a not-forwarded message of its tenant when there is one, and otherwise counted for the reseller's staff; in
  the message log, its export, the dashboard and Prometheus, and never shown to another tenant;
- an inbound text records its real encoding and segments.

Wavix is the sandbox and 3CX a fake inbox, over real HTTP, where they take part.
"""

import csv
import importlib
import io
import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from messaging import metrics
from messaging.models import Delivery, Message, PhoneNumber, Trunk, WebhookEvent
from messaging.services import accounts, forwarding, inbound
from messaging.tasks import wavix_numbers_unpoint
from messaging.wavix import WavixClient
from sandbox.models import FakePbxInbox, SandboxNumber
from tenants.models import AuditEvent
from tenants.services import tenant_save
from tests import factories as f
from tests.conftest import live_db, token_client
from tests.test_relay import received, relay, webhook
from tests.test_wavix_admin import queued_tasks

LOG = reverse("admin:messaging_message_changelist")
EXPORT = reverse("admin:messaging_message_export")
DASHBOARD = reverse("admin:dashboard")
S = Message.Status


def route() -> int:
    return inbound.events_process()


def log_page(client, **params):
    response = client.get(LOG, params)
    assert response.status_code == 200
    return response


def switch_sms(trunk: Trunk, on: bool, actor) -> None:
    trunk.sms_enabled = on
    accounts.trunk_save(actor=actor, trunk=trunk)


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
    accounts.numbers_sync(account, wire=False)
    PhoneNumber.objects.filter(account=account).update(trunk=trunk)
    accounts.numbers_sync(account, wire=True)
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
    client.force_login(operator)
    assert log_page(client).content.decode().count("Held: SMS is off on trunk Front desk") == 2
    trunk_page = client.get(reverse("admin:messaging_trunk_change", args=[trunk.pk])).content.decode()
    assert "Texts to its numbers are held, not forwarded" in trunk_page and ">2 held</a>" in trunk_page


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
    forwarding.deliveries_process()
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
    forwarding.deliveries_process()
    message.refresh_from_db()
    assert (message.status, message.not_forwarded_reason) == (S.HELD, "SMS is off on trunk Front desk")
    set_status(tenant, "suspended", reseller_admin)
    switch_sms(trunk, True, reseller_admin)  # now the trunk's is lifted, and the tenant's is back
    forwarding.deliveries_process()
    message.refresh_from_db()
    assert (message.status, message.not_forwarded_reason) == (S.HELD, "Tenant A is suspended")
    assert not received(inbox)
    set_status(tenant, "active", reseller_admin)
    forwarding.deliveries_process()
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
                inbound.events_process()
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

    backfill = importlib.import_module("messaging.migrations.0022_held_reason_backfill").held_reason_backfill
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


def sandbox_relay_urls(account) -> dict[str, str]:
    """Each number's relay URL as Wavix (the sandbox) lists it, asked over HTTP."""
    return {n.number: n.sms_relay_url for _, _, page in WavixClient.for_account(account).number_pages() for n in page}


@live_db
def test_unpointing_a_trunk_with_sms_off_empties_its_numbers_relay_url_at_wavix_and_no_drift_is_reported(
    client, line, operator
):
    account, trunk = line
    assert sandbox_relay_urls(account) == {"+14155550100": account.inbound_webhook_url}
    switch_sms(trunk, False, operator)
    client.force_login(operator)
    page = client.get(reverse("admin:messaging_trunk_change", args=[trunk.pk])).content.decode()
    assert "Wavix still sends the texts of +14155550100 to the portal." in page and "Un-point them at Wavix" in page
    queued_tasks("sync")  # start from an empty queue
    response = client.post(reverse("admin:messaging_trunk_unpoint_relay", args=[trunk.pk]), follow=True)
    assert "Un-pointing +14155550100 at Wavix" in response.content.decode()
    assert queued_tasks("sync") == [("messaging.tasks.wavix_numbers_unpoint", [trunk.pk])]
    audit = AuditEvent.objects.get(action=AuditEvent.Action.NUMBERS_UNPOINTED)
    assert (audit.actor, audit.tenant, audit.changes) == (operator, trunk.tenant, {"numbers": ["+14155550100"]})

    wavix_numbers_unpoint.apply(args=[trunk.pk]).get()  # what a worker on the sync queue does with it
    assert sandbox_relay_urls(account) == {"+14155550100": ""}
    assert PhoneNumber.objects.get().sms_relay_url == ""
    assert accounts.numbers_sync(account, wire=False)["drift"] == 0  # the periodic drift check
    assert not PhoneNumber.objects.get().relay_drift
    accounts.numbers_sync(account, wire=True)  # a full sync points nothing back while SMS is off
    assert sandbox_relay_urls(account) == {"+14155550100": ""}
    page = client.get(reverse("admin:messaging_trunk_change", args=[trunk.pk])).content.decode()
    assert "Wavix sends the texts of none of its numbers to the portal." in page

    switch_sms(trunk, True, operator)
    accounts.numbers_sync(account, wire=True)  # what switching SMS on queues
    assert sandbox_relay_urls(account) == {"+14155550100": account.inbound_webhook_url}


@live_db
def test_an_unpointing_waits_for_the_accounts_number_sync_and_is_dropped_once_sms_is_on_again(line, operator):
    from django.core.cache import cache

    from messaging.tasks import NUMBERS_SYNC_LOCK

    account, trunk = line
    switch_sms(trunk, False, operator)
    accounts.trunk_numbers_unpoint(actor=operator, trunk=trunk)
    cache.add(NUMBERS_SYNC_LOCK.format(account.pk), "a sync of the account", timeout=60)
    assert wavix_numbers_unpoint.apply(args=[trunk.pk]).failed()  # retried (at once, run eagerly) until it gave up
    assert sandbox_relay_urls(account) == {"+14155550100": account.inbound_webhook_url}
    cache.delete(NUMBERS_SYNC_LOCK.format(account.pk))
    switch_sms(trunk, True, operator)  # switched on again before a worker ran it: the numbers stay pointed here
    wavix_numbers_unpoint.apply(args=[trunk.pk]).get()
    assert sandbox_relay_urls(account) == {"+14155550100": account.inbound_webhook_url}


@live_db
def test_unpointing_waits_for_sms_off_and_is_only_for_those_who_may_change_the_trunk(
    client, line, operator, viewer, other_admin
):
    account, trunk = line
    url = reverse("admin:messaging_trunk_unpoint_relay", args=[trunk.pk])
    client.force_login(operator)
    response = client.post(url, follow=True)
    assert "SMS is on for Front desk: its numbers must keep sending their texts to the portal." in (
        response.content.decode()
    )
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.NUMBERS_UNPOINTED).exists()
    switch_sms(trunk, False, operator)
    client.force_login(other_admin)
    assert client.post(url).status_code == 404
    client.force_login(viewer)
    assert client.post(url).status_code == 403
    page = client.get(reverse("admin:messaging_trunk_change", args=[trunk.pk])).content.decode()
    assert "Wavix still sends the texts of +14155550100" in page and "Un-point them at Wavix" not in page
    assert sandbox_relay_urls(account) == {"+14155550100": account.inbound_webhook_url}
    assert not SandboxNumber.objects.filter(sms_relay_url="").exists()


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
def test_a_text_to_a_number_without_a_trunk_is_a_not_forwarded_message_of_its_tenant_in_the_log(
    client, shared, tenant, reseller_admin, viewer, other_world, other_admin
):
    event = webhook(shared, "msg-1", to="14155550101", text="Is anyone there?")
    route()
    message = Message.objects.get(tenant=tenant)
    assert (message.direction, message.status, message.not_forwarded_reason, message.trunk) == (
        "inbound",
        S.NOT_FORWARDED,
        "+14155550101 is not assigned to a trunk",
        None,
    )
    assert message.completed_at is not None and not Delivery.objects.filter(message=message).exists()
    event.refresh_from_db()
    assert (event.state, event.tenant) == ("unroutable", tenant)

    for user in (reseller_admin, viewer):  # the reseller's staff and the tenant's own viewer
        client.force_login(user)
        response = log_page(client, status__exact=S.NOT_FORWARDED)
        assert [m.text for m in response.context["cl"].result_list] == ["Is anyone there?"]
        assert "Not forwarded: +14155550101 is not assigned to a trunk" in response.content.decode()
        rows = list(csv.DictReader(io.StringIO(b"".join(client.get(EXPORT).streaming_content).decode())))
        row = next(r for r in rows if r["text"] == "Is anyone there?")
        # Quoted like any cell that starts with + but is not a number: a spreadsheet would run it as a formula.
        assert (row["status"], row["not_forwarded_reason"]) == (
            "not_forwarded",
            "'+14155550101 is not assigned to a trunk",
        )
    client.force_login(reseller_admin)
    changelist = log_page(client).context["cl"]
    status_filter = next(spec for spec in changelist.filter_specs if spec.title == "status")
    assert "Not forwarded" in [choice["display"] for choice in status_filter.choices(changelist)]
    client.force_login(other_admin)  # another reseller's admin sees nothing of it
    assert "Is anyone there?" not in log_page(client, status__exact=S.NOT_FORWARDED).content.decode()
    assert client.get(reverse("admin:messaging_message_change", args=[message.pk])).status_code == 404


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
        (b"{not json", False, "The body is not JSON."),  # on the tenant's own account: it is the tenant's
        (
            b'{"from": "447700900001", "to": "14155550101", "message_body": {"text": "Hi"}}',
            True,
            "message_id is missing",
        ),
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
def test_texts_to_numbers_of_no_tenant_invent_no_tenant_and_the_resellers_staff_are_told_where_they_are(
    client, shared, reseller_admin, viewer, other_admin
):
    webhook(shared, "pool", to="14155550102")  # in the reseller's pool
    webhook(shared, "unknown", to="14155550199")  # not on the account as the portal knows it
    WebhookEvent.objects.create(account=shared, kind="inbound", dedup_key="garbled", body=b"{not json")
    old = webhook(shared, "old", to="14155550102")
    route()
    WebhookEvent.objects.filter(pk=old.pk).update(received_at=timezone.now() - timedelta(days=3))
    assert not Message.objects.exists()
    assert dict(WebhookEvent.objects.values_list("dedup_key", "state")) == {
        "pool": "unroutable",
        "unknown": "unroutable",
        "garbled": "invalid",
        "old": "unroutable",
    }
    client.force_login(reseller_admin)
    log = log_page(client)
    notice = "3 texts to numbers not assigned to a tenant were not forwarded since yesterday"
    assert notice in log.content.decode()
    events = client.get(log.context["unassigned_texts"].url)
    assert {e.dedup_key for e in events.context["cl"].result_list} == {"pool", "unknown", "garbled"}
    assert notice in client.get(DASHBOARD).content.decode()
    for outsider in (viewer, other_admin):  # a tenant's viewer sees no webhook events; another reseller, not ours
        client.force_login(outsider)
        assert "not assigned to a tenant" not in log_page(client).content.decode()
        assert "not assigned to a tenant" not in client.get(DASHBOARD).content.decode()


@pytest.mark.django_db
def test_the_dashboard_alerts_on_texts_not_forwarded_and_held_with_the_figures_of_the_log(
    client, shared, tenant, reseller_admin, other_world
):
    trunk = f.TrunkFactory(tenant=tenant, name="Front desk", sms_enabled=False)
    f.PhoneNumberFactory(account=shared, tenant=tenant, trunk=trunk, number="+14155550103")
    for n in range(2):
        webhook(shared, f"no-trunk-{n}", to="14155550101")
    webhook(shared, "held", to="14155550103")
    route()
    f.MessageFactory(  # from the day before yesterday: not counted, nor listed by the alert's link
        tenant=tenant,
        account=shared,
        direction="inbound",
        status=S.NOT_FORWARDED,
        not_forwarded_reason="+14155550101 is not assigned to a trunk",
        created_at=timezone.now() - timedelta(days=2, hours=1),
    )
    client.force_login(reseller_admin)
    response = client.get(DASHBOARD)
    row = next(row for row in response.context["rows"] if row.tenant == tenant)
    alerts = {alert.text: alert.url for alert in row.alerts}
    assert list(alerts) == [
        "1 text held, waiting to be forwarded: SMS is off on trunk Front desk (1)",
        "2 texts not forwarded since yesterday: +14155550101 is not assigned to a trunk (2)",
    ]
    for text, url in alerts.items():
        listed = client.get(url).context["cl"]
        assert listed.result_count == int(text.split()[0])
        assert {m.tenant for m in listed.result_list} == {tenant}
    totals = response.context["alert_totals"]
    assert (totals["not_forwarded"], totals["held"], totals["any"]) == (1, 1, 1)
    assert other_world["messaging.message"].tenant not in {row.tenant for row in response.context["rows"]}


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
