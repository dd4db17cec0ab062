"""The relay shared among drains (issue 18): partitions by conversation, leased; several drains at once route and
forward disjoint partitions, each conversation in order, each text once; batches of reports never move a final
status back; a dead drain's partitions are taken over when its lease lapses."""

import json
import threading
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from messaging import dispatch, threecx, webhooks
from messaging.models import (
    Delivery,
    Message,
    PartitionLeases,
    RelayPartition,
    WebhookEvent,
    relay_partition,
    values_update,
)
from messaging.services import forwarding, inbound
from sandbox.models import FakePbxRequest
from tests import factories as f
from tests.conftest import live_db
from tests.test_relay import inbox, received, setup, webhook  # noqa: F401 - fixtures

pytestmark = live_db
ROUTING, FORWARDING = RelayPartition.Stage.ROUTING, RelayPartition.Stage.FORWARDING


def sender(n: int) -> str:
    return f"44770090{n:04d}"


def in_threads(work, count: int) -> list:
    """Run work() on `count` threads at once (each with its own database connection); their results."""
    results: list = [None] * count
    errors: list = []
    start = threading.Barrier(count)

    def run(n: int) -> None:
        try:
            start.wait()
            results[n] = work()
        except BaseException as error:  # noqa: BLE001 - re-raised below, on the test's thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    return results


# --- partitions and leases ---------------------------------------------------------------------------------------


def test_a_conversation_has_one_partition_the_same_in_every_process(settings):
    settings.RELAY_PARTITIONS = 64
    assert relay_partition("+447700900001") == relay_partition("+447700900001") < 64
    spread = {relay_partition(f"+4477009{n:05d}") for n in range(1000)}
    assert len(spread) == 64  # a thousand remote numbers use every partition
    # The intake's key: an inbound text by the number that sent it (as stored), a report by its message.
    assert webhooks.conversation_key("inbound", {"from": "447700900001"}) == "+447700900001"
    assert webhooks.conversation_key("dlr", {"message_id": "m-1", "status": "sent"}) == "m-1"


def test_the_intake_stores_each_webhook_in_its_conversations_partition(client, setup):  # noqa: F811
    account, _ = setup
    body = {"message_id": "m-1", "from": "447700900001", "to": "14155550100", "message_body": {"text": "Hi"}}
    answer = client.post(urlsplit(account.inbound_webhook_url).path, json.dumps(body), content_type="application/json")
    assert answer.status_code == 200
    assert WebhookEvent.objects.get().partition == relay_partition("+447700900001")


@pytest.mark.django_db
def test_leases_split_the_busy_partitions_and_a_lapsed_one_is_taken_over(settings):
    settings.RELAY_PARTITIONS, settings.RELAY_DRAIN_SHARE = 16, 4  # a share is 4 partitions
    first, second = PartitionLeases(ROUTING, timedelta(seconds=30)), PartitionLeases(ROUTING, timedelta(seconds=30))
    busy = set(range(10))
    taken = first.claim(busy)
    assert len(taken) == 4 and first.free_left  # six more are busy and free: another drain is wanted
    assert second.claim(busy) <= busy - taken and len(second.mine) == 4
    assert first.mine.isdisjoint(second.mine)
    # The first drain dies: its leases lapse, and only then another drain may take them.
    third = PartitionLeases(ROUTING, timedelta(seconds=30))
    assert third.claim(first.mine) == set()
    RelayPartition.objects.filter(owner=first.owner).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert third.claim(first.mine) == first.mine
    # The stalled first drain finds out at its next renewal, and lets go of them.
    first._renewed_at -= timedelta(minutes=1)
    first.renew()
    assert first.mine == set()
    # Leases are per stage: forwarding's partition 0 is not routing's.
    assert PartitionLeases(FORWARDING, timedelta(seconds=30)).claim({next(iter(third.mine))})
    assert third.free_among(range(10)) == set(range(10)) - second.mine - third.mine
    third.release()
    assert not RelayPartition.objects.filter(owner=third.owner).exists()


@pytest.mark.django_db
def test_a_router_leases_a_batchs_worth_of_work_all_of_it_when_little_waits(settings):
    settings.RELAY_PARTITIONS, settings.RELAY_DRAIN_SHARE = 16, 4
    waiting = {number: 10 for number in range(12)}  # 120 events in 12 partitions
    trickle = PartitionLeases(ROUTING, timedelta(seconds=30))
    assert len(trickle.claim(waiting, budget=500)) == 12 and not trickle.free_left  # one batch takes them all
    trickle.release()
    burst = PartitionLeases(ROUTING, timedelta(seconds=30))
    assert len(burst.claim(waiting, budget=35)) == 4 and burst.free_left  # 40 events: a batch of 35 and no more
    helper = PartitionLeases(ROUTING, timedelta(seconds=30))
    assert len(helper.claim(waiting, budget=35)) == 4 and helper.mine.isdisjoint(burst.mine)


@pytest.mark.django_db
def test_values_update_writes_each_rows_values_in_one_statement_and_keeps_its_condition(tenant):
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    sent, final = (
        f.MessageFactory(tenant=tenant, account=account, direction="outbound", status=status, segments=1)
        for status in ("sent", "delivered")
    )
    rows = [
        {"pk": sent.pk, "status": "delivered", "segments": 2},
        {"pk": final.pk, "status": "undelivered", "segments": 3},
    ]
    with CaptureQueriesContext(connection) as captured:
        updated = values_update(Message, rows, where="(t.status = v.status OR t.status <> %s)", params=["delivered"])
    assert updated == 1 and [q["sql"][:4] for q in captured if not q["sql"].startswith("SELECT changes")] == ["WITH"]
    sent.refresh_from_db(), final.refresh_from_db()
    assert (sent.status, sent.segments) == ("delivered", 2)
    assert (final.status, final.segments) == ("delivered", 1)  # a final status is never moved to another


# --- routing ---------------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_two_routers_at_once_route_every_text_once_each_conversation_in_order(setup, settings):  # noqa: F811
    settings.RELAY_DRAIN_SHARE = 4  # each router leases a quarter of the busy partitions at a time
    account, _ = setup
    events = [webhook(account, f"m-{n}", sender=sender(n % 40), text=f"{n}") for n in range(600)]
    routed = in_threads(lambda: inbound.events_process(batch_size=50), 2)
    assert sum(routed) == 600 and all(routed)  # both routers worked
    assert set(WebhookEvent.objects.values_list("state", flat=True)) == {"processed"}
    assert WebhookEvent.objects.filter(attempts=1).count() == 600
    assert Message.objects.count() == Delivery.objects.count() == 600
    # Each conversation's deliveries were created in the order its webhooks arrived.
    order = defaultdict(list)
    for remote, text in Delivery.objects.order_by("id").values_list("remote_number", "message__text"):
        order[remote].append(int(text))
    for remote, texts in order.items():
        assert texts == sorted(texts), remote
    assert {d.partition for d in Delivery.objects.all()} == {
        relay_partition(webhooks.as_stored_number(sender(n))) for n in range(40)
    }
    assert not RelayPartition.objects.exclude(owner="").exists()  # every lease handed back
    assert len(events) == 600


def test_a_partition_another_router_holds_is_left_to_it_until_its_lease_lapses(setup):  # noqa: F811
    account, _ = setup
    mine, theirs = webhook(account, "m-1", sender=sender(1)), webhook(account, "m-2", sender=sender(2))
    other = PartitionLeases(ROUTING, timedelta(seconds=30))
    assert other.claim({theirs.partition}) == {theirs.partition} != {mine.partition}
    cache.delete(dispatch.EVENTS_DRAIN.flag)
    assert inbound.events_process() == 1
    # What waits is the holder's to route: no drain is asked for it (the holder asks, if it is free when it ends).
    assert cache.get(dispatch.EVENTS_DRAIN.flag) is None
    mine.refresh_from_db(), theirs.refresh_from_db()
    assert (mine.state, theirs.state) == ("processed", "pending")
    RelayPartition.objects.filter(owner=other.owner).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert inbound.events_process() == 1  # the holder died: its lease lapsed, the next drain takes it
    theirs.refresh_from_db()
    assert theirs.state == "processed"


def test_a_router_out_of_time_starts_no_batch_and_asks_for_another_drain(setup, monkeypatch):  # noqa: F811
    account, _ = setup
    for n in range(30):
        webhook(account, f"m-{n}", sender=sender(n % 3), text=f"{n}")
    monkeypatch.setattr(inbound, "DRAIN_SECONDS", 0.0)  # its time is up before the first batch
    monkeypatch.setattr(dispatch, "_broker_down_until", 0.0)
    cache.delete(dispatch.EVENTS_DRAIN.flag)
    assert inbound.events_process(batch_size=10) == 0
    # Its worker's turn goes to what was queued meanwhile; the rest is the next drain's, asked for as it ended.
    assert WebhookEvent.objects.filter(state="pending").count() == 30
    assert cache.get(dispatch.EVENTS_DRAIN.flag)
    assert not RelayPartition.objects.exclude(owner="").exists()
    monkeypatch.setattr(inbound, "DRAIN_SECONDS", 60.0)
    assert inbound.events_process(batch_size=10) == 30  # the next drain, in time, routes them all


def test_a_batch_of_reports_applies_each_in_order_and_never_moves_a_final_status_back(setup):  # noqa: F811
    account, trunk = setup
    messages = [
        f.MessageFactory(
            tenant=trunk.tenant, account=account, direction="outbound", status="accepted", wavix_message_id=f"o-{n}"
        )
        for n in range(3)
    ]
    # o-0: sent then delivered; o-1: delivered then a late sent; o-2: undelivered with Wavix's error; o-9: not ours.
    for message_id, status in (("o-0", "sent"), ("o-0", "delivered"), ("o-1", "delivered"), ("o-1", "sent")):
        webhook(account, message_id, kind="dlr", status=status, charge="0.0075", segments_count=1)
    webhook(account, "o-2", kind="dlr", status="undelivered", error="Handset unreachable")
    webhook(account, "o-9", kind="dlr", status="delivered")
    assert inbound.events_process() == 6
    for message in messages:
        message.refresh_from_db()
    assert [m.status for m in messages] == ["delivered", "delivered", "undelivered"]
    assert messages[2].error_message == "Handset unreachable" and messages[0].charge == Decimal("0.0075")
    assert messages[0].completed_at
    states = dict(WebhookEvent.objects.values_list("dedup_key", "state"))
    assert states.pop("o-9:delivered") == "unmatched" and set(states.values()) == {"processed"}


# --- forwarding ------------------------------------------------------------------------------------------------


def test_two_drains_at_once_forward_disjoint_partitions_each_text_once_in_order(
    setup,  # noqa: F811
    inbox,  # noqa: F811
    settings,
):
    settings.RELAY_DRAIN_SHARE = 4
    account, _ = setup
    for n in range(120):
        webhook(account, f"m-{n}", sender=sender(n % 24), text=f"{n}")
    inbound.events_process()
    tried = in_threads(forwarding.deliveries_process, 2)
    while Delivery.objects.filter(status="pending").exists():  # what became due after both stopped
        tried.append(forwarding.deliveries_process())
    assert sum(tried) == 120 and tried[0] and tried[1]  # both drains forwarded
    got = received(inbox)
    ids = [r.headers["X-Wavix-Message-Id"] for r in got]
    assert len(ids) == len(set(ids)) == 120  # each text once
    order = defaultdict(list)
    for request in got:
        body = json.loads(bytes(request.body))
        order[body["from"]].append(int(body["message_body"]["text"]))
    assert all(texts == sorted(texts) for texts in order.values())
    assert set(Message.objects.values_list("status", flat=True)) == {"forwarded"}
    assert set(Delivery.objects.values_list("status", "attempts")) == {("delivered", 1)}
    assert not RelayPartition.objects.exclude(owner="").exists()


def test_a_drain_leaves_a_leased_partition_alone_and_takes_it_once_the_lease_lapses(setup, inbox):  # noqa: F811
    account, _ = setup
    webhook(account, "m-1", sender=sender(1))
    webhook(account, "m-2", sender=sender(2))
    inbound.events_process()
    theirs = Delivery.objects.get(message__wavix_message_id="m-2").partition
    other = PartitionLeases(FORWARDING, timedelta(seconds=30))
    assert other.claim({theirs})
    assert forwarding.deliveries_process() == 1
    assert [r.headers["X-Wavix-Message-Id"] for r in received(inbox)] == ["m-1"]
    RelayPartition.objects.filter(owner=other.owner).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert forwarding.deliveries_process() == 1
    assert FakePbxRequest.objects.filter(inbox=inbox).count() == 2


def test_answers_that_come_together_are_written_together(setup):  # noqa: F811
    """The heads a drain starts together are claimed and loaded in one statement each, and the answers it records
    together are written in one statement per table, whatever their number (one forward at a time took 6 per text)."""
    account, trunk = setup
    for n in range(8):
        webhook(account, f"m-{n}", sender=sender(n))
    webhook(account, "m-refused", sender=sender(99))
    inbound.events_process()
    heads = [pk for pk, _ in forwarding._due_heads(timezone.now(), limit=20)]
    with CaptureQueriesContext(connection) as claiming:
        claimed = forwarding._claim_deliveries(heads)
    assert len(claimed) == 9 and len(claiming) == 2
    ok = threecx.Outcome(True, False, 200, '{"ok":true}', "")
    refused = threecx.Outcome(False, False, 404, "Not found", "3CX answered 404")
    answers = [(d, refused if d.message.wavix_message_id == "m-refused" else ok) for d in claimed]
    with CaptureQueriesContext(connection) as recording:
        forwarding._record_outcomes(answers)
    writes = [
        q["sql"].split(" SET ")[0] for q in recording if not q["sql"].startswith(("BEGIN", "COMMIT", "SAVEPOINT"))
    ]
    # The eight delivered: one UPDATE … FROM (VALUES …) of the deliveries, one UPDATE of their texts, and the trunk's
    # health once; the refused one alone, as before.
    assert sum(sql.startswith("WITH v") for sql in writes) == 1
    assert sum('UPDATE "messaging_message"' in sql for sql in writes) == 2  # the eight texts, and the refused one
    delivered = Delivery.objects.filter(status="delivered")
    assert delivered.count() == 8 and set(delivered.values_list("attempts", "last_status_code", "lease_until")) == {
        (1, 200, None)
    }
    assert Delivery.objects.get(status="failed").message.wavix_message_id == "m-refused"
    assert Message.objects.filter(status="forwarded").count() == 8
