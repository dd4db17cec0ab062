"""Routing and forwarding: each inbound text reaches its tenant's 3CX (a fake 3CX over real HTTP), in order,
retried when 3CX cannot take it, dead-lettered and replayable; delivery reports move outbound messages on."""

import json
import re
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from messaging import webhooks
from messaging.models import Delivery, Message, OptOut, PhoneNumber, Trunk, WebhookEvent, relay_partition
from messaging.services import forwarding, inbound
from sandbox.models import FakePbxInbox, FakePbxRequest
from tenants.models import AuditEvent
from tests import factories as f
from tests.conftest import live_db

pytestmark = live_db


@pytest.fixture
def inbox(wavix):
    return FakePbxInbox.objects.create(label="Acme PBX")


@pytest.fixture
def setup(wavix, tenant, inbox):
    """A tenant with a trunk whose 3CX is a fake inbox, and a number routed to it."""
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    trunk = f.TrunkFactory(tenant=tenant, sms_enabled=True)
    trunk.set_threecx_webhook_url(f"{wavix.url}/sandbox/3cx/{inbox.token}/")
    trunk.save()
    PhoneNumber.objects.create(account=account, tenant=tenant, trunk=trunk, number="+14155550100", wavix_id="1")
    return account, trunk


def webhook(account, message_id, *, sender="447700900001", text="Hello", to="14155550100", kind="inbound", **extra):
    """Store a webhook as the intake view does."""
    body = (
        {"message_id": message_id, "from": sender, "to": to, "message_body": {"text": text, "media": None}, **extra}
        if kind == "inbound"
        else {"message_id": message_id, **extra}
    )
    raw = json.dumps(body, separators=(",", ":")).encode()
    key = message_id if kind == "inbound" else f"{message_id}:{extra.get('status')}"
    partition = relay_partition(webhooks.conversation_key(kind, body))
    return WebhookEvent.objects.create(account=account, kind=kind, dedup_key=key, body=raw, partition=partition)


def relay():
    inbound.events_process()
    return forwarding.deliveries_process()


def received(inbox):
    return list(FakePbxRequest.objects.filter(inbox=inbox).order_by("id"))


def set_mode(inbox, mode):
    FakePbxInbox.objects.filter(pk=inbox.pk).update(mode=mode, mode_until=timezone.now() + timedelta(minutes=5))


def make_due():
    Delivery.objects.filter(status="pending").update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_an_inbound_text_is_forwarded_byte_for_byte_with_its_id_header(setup, inbox):
    account, trunk = setup
    event = webhook(account, "msg-1")
    assert relay() == 1
    (got,) = received(inbox)
    assert bytes(got.body) == bytes(event.body)
    assert got.headers["X-Wavix-Message-Id"] == "msg-1" and got.headers["Content-Type"] == "application/json"
    message = Message.objects.get()
    assert (message.direction, message.status, message.from_number, message.text) == (
        "inbound",
        "forwarded",
        "+447700900001",
        "Hello",
    )
    assert Delivery.objects.get().status == "delivered"
    event.refresh_from_db()
    assert (event.state, event.tenant) == ("processed", trunk.tenant)


def test_the_generic_template_gets_the_telnyx_style_envelope(setup, inbox):
    account, trunk = setup
    Trunk.objects.filter(pk=trunk.pk).update(sms_template=Trunk.SmsTemplate.GENERIC)
    webhook(account, "msg-1", text="Hi there")
    relay()
    envelope = json.loads(bytes(received(inbox)[0].body))
    assert envelope["data"]["event_type"] == "message.received" and envelope["data"]["id"] == "msg-1"
    payload = envelope["data"]["payload"]
    assert (payload["text"], payload["from"], payload["to"]) == (
        "Hi there",
        {"phone_number": "+447700900001"},
        [{"phone_number": "+14155550100"}],
    )


def test_a_text_to_an_unknown_number_is_unroutable_and_forwarded_nowhere(setup, inbox):
    account, _ = setup
    event = webhook(account, "msg-1", to="14155550199")
    relay()
    event.refresh_from_db()
    assert event.state == "unroutable" and f"+14155550199 is not a number of the Wavix account {account.name}" in (
        event.last_error
    )
    assert Message.objects.get().status == "not_forwarded" and not received(inbox)  # in the log: tests/test_routing.py


def test_a_suspended_tenant_holds_texts_and_releases_them_in_order_when_resumed(setup, inbox, reseller_admin):
    from tenants.services import tenant_save

    account, trunk = setup
    tenant = trunk.tenant
    tenant.status = "suspended"
    tenant_save(actor=reseller_admin, tenant=tenant)
    for n in range(3):
        webhook(account, f"msg-{n}", text=f"text {n}")
    relay()
    assert set(Message.objects.values_list("status", flat=True)) == {"held"} and not received(inbox)
    tenant.status = "active"
    tenant_save(actor=reseller_admin, tenant=tenant)
    forwarding.deliveries_process()
    assert [json.loads(bytes(r.body))["message_body"]["text"] for r in received(inbox)] == [
        "text 0",
        "text 1",
        "text 2",
    ]


def test_a_3cx_error_is_retried_later_then_delivered_and_the_trunk_recovers(setup, inbox):
    account, trunk = setup
    set_mode(inbox, "500")
    webhook(account, "msg-1")
    relay()
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert timedelta(seconds=8) < delivery.next_attempt_at - timezone.now() <= timedelta(seconds=10)
    assert forwarding.deliveries_process() == 0  # not due yet
    for _ in range(2):
        make_due()
        forwarding.deliveries_process()
    trunk.refresh_from_db()
    assert not trunk.is_healthy and trunk.forward_error == "HTTP 500 from 3CX"
    set_mode(inbox, "ok")
    make_due()
    forwarding.deliveries_process()
    trunk.refresh_from_db()
    assert Delivery.objects.get().status == "delivered" and trunk.is_healthy and trunk.forward_error == ""
    assert len(received(inbox)) == 4


def test_the_retry_schedule_stretches_to_hours_and_stops_after_48h(setup, inbox):
    account, _ = setup
    set_mode(inbox, "500")
    webhook(account, "msg-1")
    relay()
    waits = []
    for _ in range(7):
        delivery = Delivery.objects.get()
        waits.append(round((delivery.next_attempt_at - delivery.last_attempt_at).total_seconds()))
        make_due()
        forwarding.deliveries_process()
    assert waits == [10, 60, 300, 1800, 7200, 21600, 21600]
    Delivery.objects.update(created_at=timezone.now() - timedelta(hours=47, minutes=59))
    make_due()
    forwarding.deliveries_process()
    delivery = Delivery.objects.get()
    assert delivery.status == "dead" and Message.objects.get().status == "failed"


def test_a_3cx_that_refuses_the_text_fails_it_with_the_answer_and_it_can_be_replayed(setup, inbox, operator):
    account, _ = setup
    set_mode(inbox, "404")
    webhook(account, "msg-1")
    relay()
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.last_status_code, delivery.last_error) == ("failed", 404, "HTTP 404 from 3CX")
    set_mode(inbox, "ok")
    assert forwarding.delivery_replay(actor=operator, deliveries=Delivery.objects.all()) == 1
    forwarding.deliveries_process()
    assert Delivery.objects.get().status == "delivered" and Message.objects.get().status == "forwarded"
    audit = AuditEvent.objects.get(action="delivery.replayed")
    assert (audit.actor, audit.changes["from"], audit.tenant) == (operator, "failed", delivery.tenant)


def test_a_conversation_waits_behind_its_retry_while_others_go_on(setup, inbox):
    account, _ = setup
    set_mode(inbox, "500")
    webhook(account, "a-1", sender="447700900001", text="first")
    relay()  # fails, waits to be retried
    set_mode(inbox, "ok")
    webhook(account, "a-2", sender="447700900001", text="second")
    webhook(account, "b-1", sender="447700900002", text="other conversation")
    relay()
    # The other conversation went on; its success (3CX is back) let the first one's retry go at once, and the text
    # that waited behind it went only after it.
    assert [json.loads(bytes(r.body))["message_body"]["text"] for r in received(inbox)] == [
        "first",
        "other conversation",
        "first",
        "second",
    ]


def test_a_leased_delivery_is_not_taken_by_another_worker(setup, inbox):
    account, _ = setup
    webhook(account, "msg-1")
    inbound.events_process()
    Delivery.objects.update(lease_until=timezone.now() + timedelta(seconds=60))  # another worker holds it
    assert forwarding.deliveries_process() == 0
    Delivery.objects.update(lease_until=timezone.now() - timedelta(seconds=1))  # that worker died
    assert forwarding.deliveries_process() == 1


def test_a_forwards_lease_outlasts_its_connect_and_read_timeouts_and_no_more(setup, settings):
    """A worker killed mid-POST has its texts sent again once their leases lapse (at-least-once to 3CX): the lease
    is what a POST can take plus a margin, not a fixed minute."""

    settings.THREECX_CONNECT_TIMEOUT, settings.THREECX_READ_TIMEOUT = 2, 3
    account, _ = setup
    webhook(account, "msg-1")
    inbound.events_process()
    before = timezone.now()
    (delivery,) = forwarding._claim_deliveries([Delivery.objects.get().pk])
    held = delivery.lease_until - before
    assert timedelta(seconds=5) + forwarding.LEASE_MARGIN <= held < timedelta(seconds=6) + forwarding.LEASE_MARGIN


@pytest.fixture
def other_setup(wavix, other_tenant):
    """Another reseller's tenant with its own account, trunk, 3CX inbox and number (+14155550200)."""
    account = f.WavixAccountFactory(reseller=other_tenant.reseller, tenant=other_tenant)
    other_inbox = FakePbxInbox.objects.create(label="Other PBX")
    trunk = f.TrunkFactory(tenant=other_tenant, sms_enabled=True)
    point(trunk, f"{wavix.url}/sandbox/3cx/{other_inbox.token}/")
    PhoneNumber.objects.create(account=account, tenant=other_tenant, trunk=trunk, number="+14155550200", wavix_id="9")
    return account, trunk, other_inbox


def texts(inbox):
    return [json.loads(bytes(r.body))["message_body"]["text"] for r in received(inbox) if r.answered == "ok"]


def three_failures(*inboxes):
    """Every pending delivery fails three times: its next try is 5 minutes away, as after a few minutes of outage."""
    for inbox in inboxes:
        set_mode(inbox, "500")
    relay()
    for _ in range(2):
        make_due()
        forwarding.deliveries_process()
    tried = Delivery.objects.filter(status="pending", attempts__gt=0)  # the others wait behind these
    assert tried and all(d.attempts == 3 and d.next_attempt_at > timezone.now() + timedelta(minutes=4) for d in tried)


def test_a_failing_trunks_waiting_texts_go_at_once_on_its_first_success_and_no_one_elses(setup, inbox, other_setup):
    account, trunk = setup
    other_account, other_trunk, other_inbox = other_setup
    for n in range(3):
        webhook(account, f"a-{n}", sender=f"44770090000{n}", text=f"waiting {n}")
    webhook(account, "a-3", sender="447700900000", text="behind waiting 0")
    webhook(other_account, "b-0", to="14155550200", text="the other tenant's")
    three_failures(inbox, other_inbox)
    set_mode(inbox, "ok")
    set_mode(other_inbox, "ok")  # both 3CXs are back

    webhook(account, "a-new", sender="447700900009", text="new")  # its success is the trunk's first
    relay()
    got = texts(inbox)
    assert got[0] == "new" and sorted(got[1:]) == ["behind waiting 0", "waiting 0", "waiting 1", "waiting 2"]
    assert got.index("waiting 0") < got.index("behind waiting 0")  # a conversation still goes in order
    trunk.refresh_from_db()
    assert trunk.forward_failures == 0 and trunk.forward_error == ""
    # Another reseller's trunk is not released by this trunk's success: it waits for its own (its probe).
    other = Delivery.objects.get(trunk=other_trunk)
    assert other.status == "pending" and other.next_attempt_at > timezone.now() + timedelta(minutes=4)
    assert not texts(other_inbox)


def test_the_sweeper_probes_each_failing_trunk_with_its_oldest_waiting_text_once_per_interval(
    setup, inbox, other_setup
):
    from django.db import connection

    from messaging.tasks import relay_sweep

    account, trunk = setup
    other_account, other_trunk, other_inbox = other_setup
    for n in range(3):
        webhook(account, f"a-{n}", sender=f"44770090000{n}", text=f"waiting {n}")
    for n in range(2):
        webhook(other_account, f"b-{n}", sender=f"44770090000{n}", to="14155550200", text=f"other {n}")
    three_failures(inbox, other_inbox)
    oldest = {
        trunk.pk: Delivery.objects.filter(trunk=trunk).earliest("id").pk,
        other_trunk.pk: Delivery.objects.filter(trunk=other_trunk).earliest("id").pk,
    }

    def due() -> set[int]:
        return set(
            Delivery.objects.filter(status="pending", next_attempt_at__lte=timezone.now()).values_list("pk", flat=True)
        )

    def quiet_for(seconds: int) -> None:
        Trunk.objects.update(forward_checked_at=timezone.now() - timedelta(seconds=seconds))

    assert forwarding.failing_trunks_probe() == 0 and not due()  # both were just tried
    quiet_for(16)
    relay_sweep()
    assert due() == set(oldest.values())  # one text per failing trunk: its oldest
    relay_sweep()
    assert due() == set(oldest.values())  # the next sweep of the same interval adds nothing
    forwarding.deliveries_process()  # the probes fail: 3CX is still down
    assert not due()

    # Sweepers at once (two workers, or one running late) probe each trunk once.
    quiet_for(16)
    start = threading.Barrier(4, timeout=10)
    probed = []

    def sweeper() -> None:
        try:
            start.wait()
            probed.append(forwarding.failing_trunks_probe())
        finally:
            connection.close()

    threads = [threading.Thread(target=sweeper) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(probed) == 2 and due() == set(oldest.values())


def test_3cx_back_every_waiting_text_goes_after_one_sweep_not_at_its_next_retry(setup, inbox, other_setup):
    from messaging.tasks import relay_sweep

    account, _ = setup
    other_account, _, other_inbox = other_setup
    for n in range(3):
        webhook(account, f"a-{n}", sender=f"44770090000{n}", text=f"waiting {n}")
        webhook(account, f"a-{n}-2", sender=f"44770090000{n}", text=f"behind waiting {n}")
    webhook(other_account, "b-0", to="14155550200", text="the other tenant's")
    three_failures(inbox, other_inbox)
    set_mode(inbox, "ok")  # this 3CX is back; the other tenant's is still down
    Trunk.objects.update(forward_checked_at=timezone.now() - timedelta(seconds=16))
    relay_sweep()
    forwarding.deliveries_process()  # the drain the sweep asked for
    assert sorted(texts(inbox)) == sorted(
        [f"waiting {n}" for n in range(3)] + [f"behind waiting {n}" for n in range(3)]
    )
    for n in range(3):
        assert texts(inbox).index(f"waiting {n}") < texts(inbox).index(f"behind waiting {n}")
    other = Delivery.objects.get(message__account=other_account)
    assert (other.status, other.attempts) == ("pending", 4) and not texts(other_inbox)  # probed, failed, waits


def test_a_text_3cx_alone_refuses_is_not_sent_again_after_every_other_texts_success(setup):
    """Releasing a trunk's waiting texts on every success would re-send, after each of the others, a text that 3CX
    answers 500 while it takes the rest: at most once per PROBE_EVERY instead, so it keeps about its schedule."""
    account, trunk = setup
    posts: Counter = Counter()

    class Picky(BaseHTTPRequestHandler):
        def do_POST(self):
            text = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["message_body"]["text"]
            posts[text] += 1
            self.send_response(500 if text == "poison" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Picky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        point(trunk, f"http://127.0.0.1:{server.server_address[1]}/sms")
        webhook(account, "poison", sender="447700900001", text="poison")
        relay()
        for n in range(5):
            webhook(account, f"ok-{n}", sender="447700900002", text=f"fine {n}")
            relay()
    finally:
        server.shutdown()
        server.server_close()
    assert [posts[f"fine {n}"] for n in range(5)] == [1] * 5
    assert posts["poison"] == 2  # its first try, and once when the trunk's next success released it
    assert Delivery.objects.get(message__wavix_message_id="poison").next_attempt_at > timezone.now()


def test_a_3cx_url_inside_a_private_network_is_refused_at_save_and_at_send(setup, inbox, settings):
    from django.core.exceptions import ValidationError

    account, trunk = setup
    settings.THREECX_ALLOW_PRIVATE_ADDRESSES = False
    for url in ("https://169.254.169.254/latest/meta-data/", "https://10.1.2.3/sms", "https://127.0.0.1:8443/sms"):
        with pytest.raises(ValidationError, match="is not a public address"):
            Trunk().set_threecx_webhook_url(url)
    webhook(account, "msg-1")  # the trunk's saved URL is on loopback: allowed before, refused now at send time
    relay()
    delivery = Delivery.objects.get()
    assert delivery.status == "failed" and delivery.last_error.startswith("Refused: ") and not received(inbox)


def test_stop_words_record_an_opt_out_and_start_lifts_it_while_texts_still_reach_3cx(setup, inbox):
    account, trunk = setup
    webhook(account, "m1", text=" stop ")
    relay()
    assert OptOut.objects.filter(tenant=trunk.tenant, number="+447700900001", keyword="STOP").exists()
    webhook(account, "m2", text="Un Stop")
    relay()
    assert not OptOut.objects.exists()
    assert len(received(inbox)) == 2


def test_a_body_that_breaks_processing_is_marked_invalid_not_retried_forever(setup):
    account, _ = setup
    event = WebhookEvent.objects.create(account=account, kind="inbound", dedup_key="x", body=b"{not json")
    relay()
    event.refresh_from_db()
    assert (event.state, event.last_error) == ("invalid", "The body is not JSON.")  # the intake's words


# ---------------------------------------------------------------------------------------------------------------
# Delivery reports
# ---------------------------------------------------------------------------------------------------------------


SENT_AT = datetime(2025, 3, 21, 8, 9, 0, tzinfo=UTC)  # when the reports' outbound message was created


@pytest.fixture
def outbound(setup):
    account, trunk = setup
    return f.MessageFactory(
        tenant=trunk.tenant, account=account, status="accepted", wavix_message_id="out-1", created_at=SENT_AT
    )


def report(outbound, status, **extra):
    return webhook(outbound.account, "out-1", kind="dlr", status=status, **extra)


def test_delivery_reports_move_an_outbound_message_on_and_store_the_details(outbound):
    report(outbound, "sent", sent="2025-03-21T08:09:02", segments_count=2, charge="0.015")
    relay()
    outbound.refresh_from_db()
    assert (outbound.status, outbound.segments, str(outbound.charge)) == ("sent", 2, "0.01500")
    assert outbound.sent_at.isoformat() == "2025-03-21T08:09:02+00:00"  # no zone given: UTC
    report(outbound, "delivered", delivered="2025-03-21T08:09:05Z")
    relay()
    outbound.refresh_from_db()
    assert outbound.status == "delivered" and outbound.completed_at.isoformat() == "2025-03-21T08:09:05+00:00"


def test_a_late_or_repeated_report_never_moves_a_final_status_back(outbound):
    report(outbound, "delivered")
    relay()
    report(outbound, "sent")  # arrives after the final one
    relay()
    outbound.refresh_from_db()
    assert outbound.status == "delivered"


def test_an_undelivered_report_keeps_wavixs_error(outbound):
    report(outbound, "undelivered", error="Handset unreachable")
    relay()
    outbound.refresh_from_db()
    assert (outbound.status, outbound.error_message) == ("undelivered", "Handset unreachable")


def applied(outbound, status, **side_fields):
    """Apply one report; the message as it is now and the note left on the report's event."""
    event = report(outbound, status, **side_fields)
    relay()
    outbound.refresh_from_db()
    event.refresh_from_db()
    assert event.state == "processed", event.last_error
    return outbound, event.last_error


def test_a_segments_count_of_99999_is_dropped_with_a_note_and_the_status_still_applies(outbound):
    message, note = applied(outbound, "delivered", segments_count=99999, charge="0.0075")
    assert (message.status, message.segments, str(message.charge)) == ("delivered", 1, "0.00750")
    assert note == "Dropped segments_count 99999: not a number of segments from 1 to 50."


@pytest.mark.parametrize("segments", [0, -2, 2.5, "2", True, [2]])
def test_a_segment_count_that_is_not_one_is_dropped_with_a_note(outbound, segments):
    message, note = applied(outbound, "sent", segments_count=segments)
    assert (message.status, message.segments) == ("sent", 1)
    assert note.startswith("Dropped segments_count ")


@pytest.mark.parametrize("charge", ["NaN", "1e30", "Infinity", "-inf", "100000", "a dollar", True, {"usd": 1}])
def test_a_charge_that_is_no_amount_the_column_holds_is_dropped_with_a_note(outbound, charge):
    message, note = applied(outbound, "delivered", segments_count=2, charge=charge)
    assert (message.status, message.segments, message.charge) == ("delivered", 2, None)
    assert note.startswith("Dropped charge ") and note.endswith(": not an amount below 100,000.")


@pytest.mark.parametrize(
    "charge,stored", [("0.0075", "0.00750"), (0.015, "0.01500"), (2, "2.00000"), (" 99999.9 ", "99999.90000")]
)
def test_a_charge_as_a_string_or_a_number_is_kept(outbound, charge, stored):
    message, note = applied(outbound, "sent", charge=charge)
    assert (str(message.charge), note) == (stored, "")


@pytest.mark.parametrize("delivered", ["2025-02-30T10:00:00Z", "2025-03-21T25:00:00", "yesterday", 1742544545])
def test_an_impossible_delivery_time_is_dropped_with_a_note_and_the_status_still_applies(outbound, delivered):
    message, note = applied(outbound, "delivered", delivered=delivered, segments_count=3)
    assert (message.status, message.segments) == ("delivered", 3)
    assert message.completed_at is not None  # when the portal learnt it
    assert note.startswith("Dropped delivered ") and note.endswith("not an ISO 8601 date and time.")


def test_the_legacy_segments_key_is_read_when_segments_count_is_absent(outbound):
    message, note = applied(outbound, "sent", segments=3)
    assert (message.segments, note) == (3, "")
    message, _ = applied(outbound, "delivered", segments=5, segments_count=4)  # the current key wins
    assert message.segments == 4


def test_a_completion_before_the_message_was_created_is_clamped_to_its_creation_and_noted(outbound):
    message, note = applied(outbound, "delivered", sent="2025-03-21T08:08:00Z", delivered="2025-03-21T08:08:30Z")
    assert (message.status, message.sent_at, message.completed_at) == ("delivered", SENT_AT, SENT_AT)
    assert note == (
        "Clamped sent '2025-03-21T08:08:00Z' to the message's creation: it was earlier. "
        "Clamped delivered '2025-03-21T08:08:30Z' to the message's creation: it was earlier."
    )


def test_a_completion_after_the_report_arrived_is_clamped_to_its_arrival_and_noted(outbound):
    event = report(outbound, "delivered", delivered="2999-01-01T00:00:00")
    relay()
    outbound.refresh_from_db()
    event.refresh_from_db()
    assert outbound.completed_at == event.received_at
    assert event.last_error == "Clamped delivered '2999-01-01T00:00:00' to the report's arrival: it was later."


def test_an_error_that_is_not_a_text_is_dropped_with_a_note(outbound):
    message, note = applied(outbound, "undelivered", error={"code": 23})
    assert (message.status, message.error_message) == ("undelivered", "")
    assert note == "Dropped error {'code': 23}: not a text."


def test_every_bad_side_field_is_noted_and_the_good_ones_are_kept(outbound):
    message, note = applied(
        outbound, "delivered", segments_count=99999, charge="NaN", sent="2025-03-21T08:09:02", delivered="never"
    )
    assert (message.status, message.sent_at.isoformat()) == ("delivered", "2025-03-21T08:09:02+00:00")
    assert note.split(". ") == [
        "Dropped segments_count 99999: not a number of segments from 1 to 50",
        "Dropped charge 'NaN': not an amount below 100,000",
        "Dropped delivered 'never': not an ISO 8601 date and time.",
    ]


def test_the_note_is_shown_with_the_messages_reports_to_its_reseller_only(outbound, reseller_admin, other_admin):
    from django.test import Client

    from tests.conftest import token_client

    applied(outbound, "delivered", charge="NaN")
    reports = token_client(reseller_admin).get(f"/api/v1/messages/{outbound.pk}/").json()["reports"]
    assert [(r["status"], r["note"]) for r in reports] == [
        ("delivered", "Dropped charge 'NaN': not an amount below 100,000.")
    ]
    admin = Client()
    admin.force_login(reseller_admin)
    page = admin.get(f"/admin/messaging/message/{outbound.pk}/change/").content.decode()
    assert "Dropped charge &#x27;NaN&#x27;: not an amount below 100,000." in page
    assert token_client(other_admin).get(f"/api/v1/messages/{outbound.pk}/").status_code == 404


@pytest.mark.parametrize(
    "error,shown",
    [({"code": 23}, None), ("Handset \ud800", "Handset \\ud800"), ("Handset unreachable", "Handset unreachable")],
)
def test_a_reports_error_is_shown_only_as_a_text_and_an_old_lone_surrogate_escaped(
    outbound, reseller_admin, error, shown
):
    from tests.conftest import token_client

    # Stored as reports were before the intake refused surrogates (it still takes any error: a side field).
    raw = json.dumps({"message_id": "out-1", "status": "undelivered", "error": error}).encode()
    WebhookEvent.objects.create(account=outbound.account, kind="dlr", dedup_key="out-1:undelivered", body=raw)
    response = token_client(reseller_admin).get(f"/api/v1/messages/{outbound.pk}/")
    assert response.status_code == 200
    assert response.json()["reports"][0]["error"] == shown


def test_a_report_for_a_message_the_portal_did_not_send_is_kept_and_shown(setup):
    account, _ = setup
    event = webhook(account, "sent-by-3cx", kind="dlr", status="delivered")
    relay()
    event.refresh_from_db()
    assert event.state == "unmatched" and "3CX sends some straight to Wavix" in event.last_error


def test_a_10dlc_number_status_updates_the_number(setup):
    account, _ = setup
    WebhookEvent.objects.create(
        account=account,
        kind="10dlc",
        dedup_key="B:C:14155550100:APPROVED",
        body=json.dumps({"brand_id": "B", "campaign_id": "C", "number": "14155550100", "status": "approved"}).encode(),
    )
    relay()
    number = PhoneNumber.objects.get()
    assert (number.tendlc_status, number.tendlc_brand_id, number.tendlc_campaign_id) == ("APPROVED", "B", "C")


def test_10dlc_brand_and_campaign_statuses_are_kept_and_follow_their_webhooks(setup):
    from messaging.models import TenDLCRegistration

    account, _ = setup
    for key, body in (
        ("B:PENDING", {"brand_id": "B", "status": "pending"}),
        ("B:C:PENDING", {"brand_id": "B", "campaign_id": "C", "status": "PENDING"}),
        ("B:APPROVED", {"brand_id": "B", "status": "approved"}),
    ):
        WebhookEvent.objects.create(account=account, kind="10dlc", dedup_key=key, body=json.dumps(body).encode())
        relay()
    assert sorted(TenDLCRegistration.objects.values_list("kind", "brand_id", "campaign_id", "status")) == [
        ("brand", "B", "", "APPROVED"),
        ("campaign", "B", "C", "PENDING"),
    ]


def test_reconciliation_recovers_texts_whose_webhook_never_arrived(wavix, tenant, inbox, sandbox_account):
    from sandbox.phones import inject_inbound

    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant, api_key=sandbox_account.api_key)
    trunk = f.TrunkFactory(tenant=tenant, sms_enabled=True)
    trunk.set_threecx_webhook_url(f"{wavix.url}/sandbox/3cx/{inbox.token}/")
    trunk.save()
    PhoneNumber.objects.create(account=account, tenant=tenant, trunk=trunk, number="+14155550100", wavix_id="1")
    at_wavix = f.SandboxNumberFactory(
        account=sandbox_account, number="14155550100", sms_relay_url=account.inbound_webhook_url
    )

    assert inject_inbound(at_wavix, "+447700900001", "arrived")[1] == 200  # a webhook that came
    inject_inbound(at_wavix, "+447700900001", "lost one", lose_webhook=True)
    inject_inbound(at_wavix, "+447700900002", "lost two", lose_webhook=True)

    assert inbound.inbound_reconcile(account) == 2
    assert inbound.inbound_reconcile(account) == 0  # nothing new the second time
    relay()
    texts = sorted(json.loads(bytes(r.body))["message_body"]["text"] for r in received(inbox))
    assert texts == ["arrived", "lost one", "lost two"]
    assert WebhookEvent.objects.filter(recovered=True).count() == 2
    assert Message.objects.filter(status="forwarded").count() == 3


def test_reconciliation_parks_a_text_wavix_lists_in_a_shape_the_intake_refuses_with_the_reason(
    wavix, tenant, sandbox_account, other_tenant
):
    from sandbox.models import SandboxMessage

    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant, api_key=sandbox_account.api_key)
    SandboxMessage.objects.create(
        account=sandbox_account, direction="inbound", from_number="447700900001", to_number="call me", text="Hi"
    )
    assert inbound.inbound_reconcile(account) == 1
    assert inbound.inbound_reconcile(account) == 0  # listed again: found under the same key, kept once
    relay()
    event = WebhookEvent.objects.get()
    assert (event.state, event.recovered, event.account) == ("invalid", True, account)
    assert event.last_error.startswith("to must be a phone number")
    assert json.loads(bytes(event.body))["to"] == "call me"  # kept as Wavix listed it
    listed = SandboxMessage.objects.get()
    message = Message.objects.get()  # in the tenant's log as a text not forwarded, with the reason, nothing sent on
    assert (message.tenant, message.status, message.wavix_message_id) == (tenant, "not_forwarded", str(listed.uid))
    assert message.not_forwarded_reason.startswith("Wavix's webhook could not be read (to must be a phone number")
    assert not message.deliveries.exists()
    assert not WebhookEvent.objects.filter(account__tenant=other_tenant).exists()


def test_metrics_count_webhooks_and_forwards_and_show_the_backlog(client, setup, inbox, settings, operator):
    from django.contrib.auth import get_user_model

    account, _ = setup
    settings.METRICS_TOKEN = "scrape-me-0123456789"
    from django.core.cache import cache

    from messaging import metrics

    metrics.flush()  # what earlier tests counted in this process
    cache.delete_many([k for k in ("metrics:webhook:inbound:accepted", "metrics:webhook:inbound:duplicate")])
    body = json.dumps({"message_id": "m-1", "from": "447700900001", "to": "14155550100", "message_body": {"text": ""}})
    for _ in range(2):
        client.post(account.inbound_webhook_url, body, content_type="application/json")
    client.post(account.inbound_webhook_url, "nope", content_type="application/json")
    set_mode(inbox, "500")
    relay()

    assert client.get("/metrics").status_code == 404  # no token, no staff session
    client.force_login(operator)
    assert client.get("/metrics").status_code == 404  # reseller staff are not platform staff
    scrape = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me-0123456789").content.decode()
    assert 'portal_webhooks_total{kind="inbound",outcome="accepted"} 1.0' in scrape
    assert 'portal_webhooks_total{kind="inbound",outcome="duplicate"} 1.0' in scrape
    assert 'portal_webhooks_total{kind="inbound",outcome="bad_request"}' in scrape
    assert 'portal_forwards_total{outcome="retry"}' in scrape
    assert "portal_retry_backlog 1.0" in scrape and "portal_deliveries_waiting 1.0" in scrape
    staff = get_user_model().objects.create(username="ops@platform.example", is_staff=True)
    client.force_login(staff)
    assert client.get("/metrics").status_code == 200


def test_the_drains_work_with_the_cache_down(setup, inbox, settings):
    account, _ = setup
    webhook(account, "msg-1")
    # Django rebuilds its cache handlers when CACHES changes: from here on every cache call fails.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 1},
        }
    }
    assert relay() == 1
    assert len(received(inbox)) == 1


@pytest.mark.postgres
def test_picking_the_next_deliveries_reads_a_backlog_a_few_times_not_once_per_pending_delivery(setup):
    """With statistics taken while nothing waits (the usual state), the NOT EXISTS this replaced was planned as a
    nested loop reading every pending delivery for each pending one: 1,000 waiting (3CX back after an outage)
    made each pick ~60 ms instead of ~1, quadratic in the backlog (bench/relay.py found it)."""
    from django.db import connection
    from django.db.models import Min
    from django.test.utils import CaptureQueriesContext

    account, trunk = setup

    def backlog(count: int, status: str) -> None:
        messages = Message.objects.bulk_create(
            Message(
                tenant=trunk.tenant,
                account=account,
                trunk=trunk,
                direction="inbound",
                status="received",
                from_number=f"+44770090{n % 100:04d}",
                to_number="+14155550100",
            )
            for n in range(count)
        )
        Delivery.objects.bulk_create(
            Delivery(tenant=trunk.tenant, message=m, trunk=trunk, remote_number=m.from_number, status=status)
            for m in messages
        )

    backlog(2000, "delivered")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE messaging_delivery")  # what autovacuum sees most of the time: nothing pending
    backlog(1000, "pending")  # a hundred conversations of 10 each

    with CaptureQueriesContext(connection) as captured:
        heads = forwarding._due_heads(timezone.now())
    firsts = Delivery.objects.filter(status="pending").values("remote_number").annotate(first=Min("id"))
    assert [pk for pk, _ in heads] == sorted(row["first"] for row in firsts)[
        :20
    ]  # the first of each conversation, oldest first

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + captured[0]["sql"])
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def rows_read(node: dict) -> int:
        return node["Actual Rows"] * node["Actual Loops"] + sum(rows_read(n) for n in node.get("Plans", []))

    assert rows_read(plan[0]["Plan"]) < 10 * 1000  # the NOT EXISTS read ~150,000 here


def test_forwards_to_a_healthy_trunk_refresh_its_last_check_once_a_minute_not_on_every_text(setup, inbox):
    """Every forward writing the same trunk row made the workers queue for its lock in a burst (bench/relay.py)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    account, trunk = setup
    webhook(account, "msg-1")
    relay()
    trunk.refresh_from_db()
    first_check = trunk.forward_checked_at
    assert first_check is not None and trunk.is_healthy
    for n in range(2, 5):
        webhook(account, f"msg-{n}")
    with CaptureQueriesContext(connection) as queries:
        relay()
    assert len(received(inbox)) == 4
    assert not [q for q in queries if q["sql"].startswith(f'UPDATE "{trunk._meta.db_table}"')]
    trunk.refresh_from_db()
    assert trunk.forward_checked_at == first_check
    Trunk.objects.filter(pk=trunk.pk).update(forward_checked_at=first_check - timedelta(seconds=61))
    webhook(account, "msg-5")
    relay()
    trunk.refresh_from_db()
    assert trunk.forward_checked_at > first_check  # a minute on, said again


class CountingPbx:
    """3CXs on a real socket (one per path: /a, /b): each POST's text is "c<conversation>-<seq>"; notes how many
    POSTs were in flight at once — in all, per path and per conversation — and each conversation's order.
    `hold(pbx, path)` runs before each answer, and `pbx.lock` guards the counters."""

    def __init__(self, hold):
        self.lock = threading.Lock()
        self.in_flight, self.most_in_flight = Counter(), Counter()  # keys: "all", a path, a conversation
        self.order, self.arrived = defaultdict(list), Counter()
        pbx = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                conversation, seq = re.search(rb"c(\d+)-(\d+)", body).groups()
                keys = ("all", self.path, f"c{conversation.decode()}")
                with pbx.lock:
                    for key in keys:
                        pbx.in_flight[key] += 1
                        pbx.most_in_flight[key] = max(pbx.most_in_flight[key], pbx.in_flight[key])
                    pbx.order[keys[2]].append(int(seq))
                    pbx.arrived[self.path] += 1
                hold(pbx, self.path)
                time.sleep(0.02)  # long enough for a second text of the conversation to overlap, if one were sent
                with pbx.lock:
                    for key in keys:
                        pbx.in_flight[key] -= 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def two_trunks(setup):
    """The setup's trunk and a second one of the same tenant, each with its number: +14155550100 → trunk a,
    +14155550101 → trunk b."""
    account, trunk_a = setup
    trunk_b = f.TrunkFactory(tenant=trunk_a.tenant, sms_enabled=True)
    PhoneNumber.objects.create(
        account=account, tenant=trunk_a.tenant, trunk=trunk_b, number="+14155550101", wavix_id="2"
    )
    return account, trunk_a, trunk_b


def point(trunk, url):
    trunk.set_threecx_webhook_url(url)
    trunk.save()


def test_a_drain_keeps_several_forwards_in_flight_one_per_conversation_each_in_order(two_trunks, settings):
    """One POST at a time held a drain to 1 / round-trip: 9 texts/s to a 3CX 100 ms away (bench/relay.py)."""
    settings.RELAY_FORWARDS_IN_FLIGHT = 4
    account, trunk_a, trunk_b = two_trunks
    first_four = threading.Barrier(4, timeout=5)

    def hold_the_first_four_until_all_four_are_in(pbx, path):
        with pbx.lock:
            gated = not first_four.broken and sum(pbx.arrived.values()) <= 4
        if gated:
            try:
                first_four.wait()
            except threading.BrokenBarrierError:
                pass  # fewer than four came at once: most_in_flight tells

    pbx = CountingPbx(hold_the_first_four_until_all_four_are_in)
    try:
        point(trunk_a, f"{pbx.url}/a")
        point(trunk_b, f"{pbx.url}/b")
        for seq in range(3):
            for conversation in range(6):
                to = "14155550100" if conversation < 3 else "14155550101"
                sender = f"44770090010{conversation}"
                webhook(account, f"m-{conversation}-{seq}", sender=sender, to=to, text=f"c{conversation}-{seq}")
        assert relay() == 18
    finally:
        pbx.close()
    assert pbx.most_in_flight["all"] == 4  # several at once, never more than the setting
    assert pbx.most_in_flight["/a"] == pbx.most_in_flight["/b"] == 2  # no trunk more than half of them
    # A conversation's next text only once its previous one was answered, and in the order Wavix sent them.
    assert {pbx.most_in_flight[f"c{conversation}"] for conversation in range(6)} == {1}
    assert pbx.order == {f"c{conversation}": [0, 1, 2] for conversation in range(6)}
    assert Delivery.objects.filter(status="delivered").count() == 18
    assert set(Message.objects.values_list("status", flat=True)) == {"forwarded"}


def test_a_3cx_that_never_answers_holds_only_its_trunks_share_of_the_forwards(two_trunks, settings):
    """3CX a accepts every POST and does not answer until b has had all its texts (or 5 s pass): its five
    conversations, older than b's, would otherwise take every slot and b's texts would wait behind them."""
    settings.RELAY_FORWARDS_IN_FLIGHT = 4
    account, trunk_a, trunk_b = two_trunks
    b_done, a_waited_out = threading.Event(), []

    def a_hangs_until_b_has_all_six(pbx, path):
        if path == "/b":
            with pbx.lock:
                if pbx.arrived["/b"] == 6:
                    b_done.set()
        elif not b_done.wait(timeout=5):
            a_waited_out.append(path)

    pbx = CountingPbx(a_hangs_until_b_has_all_six)
    try:
        point(trunk_a, f"{pbx.url}/a")
        point(trunk_b, f"{pbx.url}/b")
        for conversation in range(5):
            webhook(account, f"a-{conversation}", sender=f"44770090010{conversation}", text=f"c{conversation}-0")
        for seq in range(2):
            for conversation in range(5, 8):
                sender = f"44770090010{conversation}"
                webhook(
                    account, f"b-{conversation}-{seq}", sender=sender, to="14155550101", text=f"c{conversation}-{seq}"
                )
        assert relay() == 11
    finally:
        pbx.close()
    assert not a_waited_out  # b's six texts went while a held its POSTs
    assert pbx.most_in_flight["/a"] == 2 and pbx.arrived == {"/a": 5, "/b": 6}
    assert Delivery.objects.filter(status="delivered").count() == 11
