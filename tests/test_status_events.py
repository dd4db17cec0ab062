"""Delivery status to 3CX: Telnyx-style message.sent and message.finalized for texts 3CX sent through the portal,
posted to a fake 3CX over real HTTP on the forwarding path — per trunk, off by default, once per kind, in order, and
never in the way of the texts the same number sends in."""

import json
from datetime import UTC, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from messaging.models import Delivery, Message, PhoneNumber, Trunk, WavixAccount, WebhookEvent
from messaging.services import forwarding, inbound, sending
from messaging.wavix import WavixPermanentError, WavixSent
from sandbox.models import FakePbxInbox, FakePbxRequest
from tenants.models import AuditEvent
from tests import factories as f
from tests.conftest import live_db

pytestmark = live_db

REMOTE = "+447400123456"  # the handset 3CX's user texted


@pytest.fixture
def inbox(wavix):
    return FakePbxInbox.objects.create(label="Acme PBX")


@pytest.fixture
def trunk(wavix, tenant, inbox):
    """A Generic-template trunk with SMS on, status events on, its 3CX a fake inbox, and a number routed to it."""
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    trunk = f.TrunkFactory(tenant=tenant, sms_enabled=True, sms_template=Trunk.SmsTemplate.GENERIC, status_events=True)
    trunk.set_threecx_webhook_url(f"{wavix.url}/sandbox/3cx/{inbox.token}/")
    trunk.save()
    PhoneNumber.objects.create(account=account, tenant=tenant, trunk=trunk, number="+14155550100", wavix_id="1")
    return trunk


def texted_by_3cx(trunk, *, origin=Message.Origin.THREECX, status="accepted", wavix_id="out-1", **fields):
    """An outbound text as the provider endpoint stores it (origin 3cx, the trunk set), at the given status."""
    return f.MessageFactory(
        tenant=trunk.tenant,
        account=WavixAccount.objects.get(tenant=trunk.tenant),
        trunk=trunk,
        origin=origin,
        status=status,
        wavix_message_id=wavix_id,
        to_number=REMOTE,
        text="Your appointment is at 3",
        **fields,
    )


def report(message, status, **extra):
    """A Wavix delivery report, stored as the intake view stores it, then applied."""
    body = {"message_id": message.wavix_message_id, "status": status, **extra}
    WebhookEvent.objects.create(
        account=message.account,
        kind="dlr",
        dedup_key=f"{message.wavix_message_id}:{status}:{WebhookEvent.objects.count()}",
        body=json.dumps(body).encode(),
    )
    inbound.events_process()


def iso_z(moment):
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def received(inbox):
    return list(FakePbxRequest.objects.filter(inbox=inbox).order_by("id"))


def events(inbox):
    return [json.loads(bytes(r.body))["data"] for r in received(inbox)]


def set_mode(inbox, mode):
    FakePbxInbox.objects.filter(pk=inbox.pk).update(mode=mode, mode_until=timezone.now() + timedelta(minutes=5))


def test_with_status_events_off_a_3cx_text_gets_none(trunk, inbox):
    Trunk.objects.filter(pk=trunk.pk).update(status_events=False)
    message = texted_by_3cx(trunk)
    report(message, "sent")
    report(message, "delivered")
    forwarding.deliveries_process()
    message.refresh_from_db()
    assert message.status == "delivered" and not Delivery.objects.exists() and not received(inbox)


def test_a_trunk_has_status_events_off_unless_switched_on(tenant):
    assert f.TrunkFactory(tenant=tenant).status_events is False


def test_sent_then_delivered_posts_message_sent_then_message_finalized(trunk, inbox):
    message = texted_by_3cx(trunk, segments=2, sent_at=timezone.now())  # as Wavix's acceptance sets it
    report(message, "sent")
    report(message, "delivered")
    assert forwarding.deliveries_process() == 2
    sent, finalized = events(inbox)  # both were pending at once: one conversation, so in order
    assert (sent["event_type"], finalized["event_type"]) == ("message.sent", "message.finalized")
    assert (sent["id"], finalized["id"]) == (f"{message.pk}-message.sent", f"{message.pk}-message.finalized")
    assert sent["record_type"] == finalized["record_type"] == "event"
    assert sent["payload"] == {
        "id": str(message.pk),
        "record_type": "message",
        "direction": "outbound",
        "type": "SMS",
        "from": {"phone_number": "+14155550100"},
        "to": [{"phone_number": REMOTE, "status": "sent"}],
        "text": "Your appointment is at 3",
        "media": [],
        "parts": 2,
        "errors": [],
    }
    assert finalized["payload"]["to"] == [{"phone_number": REMOTE, "status": "delivered"}]
    message.refresh_from_db()
    assert (sent["occurred_at"], finalized["occurred_at"]) == (iso_z(message.sent_at), iso_z(message.completed_at))
    headers = [r.headers["X-Wavix-Message-Id"] for r in received(inbox)]
    assert headers == [sent["id"], finalized["id"]]  # one per event: a repeat filter on it must not drop the second
    assert message.status == "delivered"
    assert set(Delivery.objects.values_list("status", flat=True)) == {"delivered"}


def test_repeated_and_late_reports_queue_each_event_once(trunk, inbox):
    message = texted_by_3cx(trunk)
    for status in ("sent", "sent", "delivered", "delivered", "sent"):
        report(message, status)
    forwarding.deliveries_process()
    assert [e["event_type"] for e in events(inbox)] == ["message.sent", "message.finalized"]
    assert Delivery.objects.count() == 2


def test_a_sent_report_that_overtakes_wavixs_answer_is_not_sent_twice(trunk, inbox):
    """Wavix's "sent" report can be applied before the sender records Wavix's answer, which then writes "accepted"
    over it; the repeated report moves the text to "sent" once more — and must not queue message.sent again."""
    sending_now = texted_by_3cx(trunk, status="sending")
    report(sending_now, "sent")
    sending._record(sending_now, WavixSent(wavix_id="out-1", status="accepted", segments=1, charge=None))
    assert Message.objects.get().status == "accepted"  # the sender's stale copy won: the report is repeated
    report(sending_now, "sent")
    assert Message.objects.get().status == "sent"
    assert list(Delivery.objects.values_list("event", flat=True)) == ["message.sent"]


def test_a_report_straight_to_a_final_status_sends_only_message_finalized(trunk, inbox):
    message = texted_by_3cx(trunk)
    report(message, "undelivered", error="Handset unreachable")
    forwarding.deliveries_process()
    (finalized,) = events(inbox)
    assert finalized["event_type"] == "message.finalized"
    assert finalized["payload"]["to"][0]["status"] == "delivery_failed"
    assert finalized["payload"]["errors"] == [{"code": "", "title": "Undelivered", "detail": "Handset unreachable"}]


def test_accepted_or_pending_queues_nothing(trunk, inbox):
    message = texted_by_3cx(trunk, status="sending")
    report(message, "pending")  # sending → accepted → pending: neither is an event
    message.refresh_from_db()
    assert message.status == "pending" and not Delivery.objects.exists()


def test_a_portal_text_on_the_same_trunk_gets_none(trunk, inbox):
    message = texted_by_3cx(trunk, origin=Message.Origin.PORTAL)
    report(message, "sent")
    report(message, "delivered")
    forwarding.deliveries_process()
    assert not Delivery.objects.exists() and not received(inbox)


def test_a_send_wavix_refuses_is_finalized_with_its_error(trunk, inbox):
    message = texted_by_3cx(trunk, status="sending", wavix_id="")
    sending._record(message, WavixPermanentError("Destination not allowed", 400))
    forwarding.deliveries_process()
    (finalized,) = events(inbox)
    assert finalized["event_type"] == "message.finalized"
    assert finalized["payload"]["to"][0]["status"] == "sending_failed"
    assert finalized["payload"]["errors"] == [{"code": "400", "title": "Failed", "detail": "Destination not allowed"}]


def test_a_text_past_its_validity_when_claimed_is_finalized_as_expired(trunk, inbox):
    message = texted_by_3cx(trunk, status="queued", wavix_id="", expires_at=timezone.now() - timedelta(minutes=1))
    assert sending.outbound_drain(message.account_id) == 0  # expired at the claim, never sent
    message.refresh_from_db()
    assert message.status == "expired"
    forwarding.deliveries_process()
    (finalized,) = events(inbox)
    assert (finalized["event_type"], finalized["payload"]["to"][0]["status"]) == ("message.finalized", "expired")


def test_a_failing_status_event_keeps_the_text_and_holds_up_no_reply_from_that_number(trunk, inbox):
    message = texted_by_3cx(trunk)
    set_mode(inbox, "500")
    report(message, "delivered")
    forwarding.deliveries_process()
    event = Delivery.objects.get()
    assert (event.status, event.attempts, event.last_status_code) == ("pending", 1, 500)  # waits for its retry
    set_mode(inbox, "ok")
    # The handset answers: its text is not due behind the event's retry, in another conversation.
    body = {
        "message_id": "in-1",
        "from": REMOTE[1:],
        "to": "14155550100",
        "message_body": {"text": "OK", "media": None},
    }
    WebhookEvent.objects.create(
        account=message.account, kind="inbound", dedup_key="in-1", body=json.dumps(body).encode()
    )
    inbound.events_process()
    forwarding.deliveries_process()
    reply = Message.objects.get(direction="inbound")
    assert reply.status == "forwarded"
    # 3CX taking the reply ended the trunk's failures, which let the event's retry go at once (forwarding's recovery).
    assert [e["event_type"] for e in events(inbox)] == ["message.finalized", "message.received", "message.finalized"]
    event.refresh_from_db()
    message.refresh_from_db()
    assert event.status == "delivered" and message.status == "delivered"


def test_a_refused_status_event_never_fails_the_text_whatever_its_status(trunk, inbox):
    """A text whose sender's late answer ("may have arrived") wrote "unknown" over a "sent" report: unknown may move
    to failed, and a refused event must still not take it there."""
    message = texted_by_3cx(trunk)
    report(message, "sent")
    Message.objects.filter(pk=message.pk).update(status="unknown")  # the sender's stale copy, saved after the report
    set_mode(inbox, "404")
    forwarding.deliveries_process()
    assert Delivery.objects.get().status == "failed"
    assert Message.objects.get().status == "unknown"


def test_a_refused_status_event_fails_alone_and_replays_leaving_the_text_as_it_is(trunk, inbox, operator):
    message = texted_by_3cx(trunk)
    set_mode(inbox, "404")
    report(message, "delivered")
    forwarding.deliveries_process()
    event = Delivery.objects.get()
    assert (event.status, event.last_error) == ("failed", "HTTP 404 from 3CX")
    trunk.refresh_from_db()
    assert trunk.forward_failures == 1  # trunk health counts it as any forward
    message.refresh_from_db()
    assert message.status == "delivered"
    set_mode(inbox, "ok")
    assert forwarding.delivery_replay(actor=operator, deliveries=Delivery.objects.all()) == 1
    message.refresh_from_db()
    assert message.status == "delivered"  # a replay takes inbound texts back to received, never this one
    forwarding.deliveries_process()
    first, again = received(inbox)
    assert bytes(first.body) == bytes(again.body)  # the same event, the same id
    event.refresh_from_db()
    trunk.refresh_from_db()
    assert event.status == "delivered" and trunk.forward_failures == 0
    assert AuditEvent.objects.get(action="delivery.replayed").changes["from"] == "failed"


def test_the_deliveries_list_shows_the_kind_to_its_reseller_only(trunk, inbox, reseller_admin, other_admin, client):
    report(texted_by_3cx(trunk), "sent")
    client.force_login(reseller_admin)
    page = client.get(reverse("admin:messaging_delivery_changelist")).content.decode()
    assert "message.sent" in page and f"s:{REMOTE}" in page
    assert (
        "Delivery status to 3CX"
        in client.get(reverse("admin:messaging_trunk_change", args=[trunk.pk])).content.decode()
    )
    client.force_login(other_admin)
    page = client.get(reverse("admin:messaging_delivery_changelist")).content.decode()
    assert "message.sent" not in page and REMOTE not in page
