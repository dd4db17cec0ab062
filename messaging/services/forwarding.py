"""Deliveries forwarded to 3CX: due heads of conversations, in parallel across conversations, retried, replayed;
each trunk's health, and early tries of failing trunks.

At-least-once to 3CX: a delivery is claimed with a lease; a worker killed mid-POST leaves it to the next drain
once the lease lapses, and the repeat carries the same X-Wavix-Message-Id.

A delivery is an inbound text, or (trunk.status_events on) a status event of an outbound text 3CX sent through
the portal: Telnyx-style message.sent and message.finalized, queued by status_event_queue() in the transaction that
moves the text. They travel the same path — leases, retries, replays, trunk health — with two differences: their
outcome moves the delivery only, never the text; and their conversation is their own (STATUS_CONVERSATION).
"""

import logging
import time
from collections import Counter, deque
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from messaging import dispatch, metrics, threecx
from messaging.inflight import InFlight
from messaging.models import (
    Delivery,
    Message,
    PartitionLeases,
    RelayPartition,
    Trunk,
    values_update,
)
from tenants.models import AuditEvent

logger = logging.getLogger(__name__)


# Waits before each retry of a forward that failed for a reason that may pass; then every 6 h up to 48 h.
RETRY_DELAYS = (10, 60, 300, 1800, 7200, 21600)


RETRY_FOR = timedelta(hours=48)


# A forward holds its delivery (a lease) for longer than its POST can take — the connect and read timeouts, plus a
# margin for the address check before the POST and for recording the answer after it — so a live worker never
# loses a delivery under its POST; and for no longer, because a worker killed mid-POST has its deliveries sent
# again once their leases lapse: at-least-once to 3CX, the repeat carrying the same X-Wavix-Message-Id. (Derived,
# not a fixed 60 s: that was four times what the default timeouts need, and would fall short if they were raised.
# The read timeout bounds each wait for bytes, not a whole answer: a 3CX trickling its answer past the lease may
# get the text twice — at-least-once again.)
LEASE_MARGIN = timedelta(seconds=10)


# Status events have a conversation of their own per remote number — "s:" and the number the text went to (E.164,
# at most 16 characters: it fits remote_number's 20) — so that they keep their order (a text's message.sent before
# its message.finalized: only a conversation's first pending delivery is due) without ever waiting in, or holding
# up, the conversation of the texts that number sends in: a 3CX that fails the events (it may not know them) must
# not keep a customer's reply from reaching it. No inbound sender looks like this: ":" is not in a phone number or
# an alphanumeric sender.
STATUS_CONVERSATION = "s:{}"


def status_event_queue(message: Message, previous_status: str) -> Delivery | None:
    """Queue a status event to 3CX for an outbound text 3CX sent through the portal, if its trunk wants them
    (trunk.status_events) and the text just moved to "sent" (message.sent) or to a final or failed status
    (message.finalized). Call it in the transaction that saves the move; returns the new delivery, if any.

    "sent" and not "accepted": Telnyx's message.sent means handed to the carrier, which is what Wavix's "sent"
    report says; Wavix taking the text is not that yet. A text whose first report is final gets message.finalized
    alone. Reports repeat and arrive late: each kind is queued once per text, at most.
    """
    if (
        message.origin != Message.Origin.THREECX
        or message.direction != Message.Direction.OUTBOUND
        or not message.trunk_id
        or message.status == previous_status
    ):
        return None  # the common case decided without a query
    if message.status in Message.FINAL or message.status == Message.Status.FAILED:
        event = "message.finalized"
    elif message.status == Message.Status.SENT:
        event = "message.sent"
    else:
        return None
    if not Trunk.objects.filter(pk=message.trunk_id, status_events=True).exists():
        return None
    with transaction.atomic():
        # The text's row, locked, makes "is there one already?" and the insert one step: two reports of one text
        # applied at once queue one event. (A report holds this lock already; a send's outcome takes it here.)
        Message.objects.select_for_update().filter(pk=message.pk).values_list("pk").first()
        if Delivery.objects.filter(message=message, event=event).exists():
            return None
        delivery = Delivery.objects.create(
            tenant_id=message.tenant_id,
            message=message,
            trunk_id=message.trunk_id,
            remote_number=STATUS_CONVERSATION.format(message.to_number)[:20],  # remote_number's max_length
            event=event,
        )
    dispatch.DELIVERIES_DRAIN.ask_soon()
    return delivery


def _due_heads(
    now: datetime, limit: int = 20, skip_trunks: Iterable[int] = (), partitions: Iterable[int] | None = None
) -> list[tuple[int, int]]:
    """(id, trunk id) of pending deliveries that are due, not held by a worker, and first in their conversation,
    leaving out the trunks in `skip_trunks`; only in `partitions`, if given.

    One pass over the pending deliveries numbers each conversation's (ROW_NUMBER by id), whatever the planner's
    statistics say. The NOT EXISTS it replaces (no earlier pending delivery in the conversation) was planned from
    statistics taken while little was pending: a nested loop over every pending delivery for each one, so a
    backlog of 1,000 (3CX back after an outage, a burst) made each call ~60 ms instead of ~1 — quadratic in the
    backlog (found by bench/relay.py). A conversation is in one partition, so numbering within some is exact.
    """
    rows = _heads_query("id, trunk_id", "ORDER BY next_attempt_at, id LIMIT %s", now, skip_trunks, partitions, [limit])
    return [(row[0], row[1]) for row in rows]


def _due_partitions(now: datetime, skip_trunks: Iterable[int] = ()) -> set[int]:
    """The partitions with a due head (see _due_heads), leaving out the trunks in `skip_trunks`."""
    return {row[0] for row in _heads_query("DISTINCT partition", "", now, skip_trunks, None, [])}


def _heads_query(
    columns: str,
    tail: str,
    now: datetime,
    skip_trunks: Iterable[int],
    partitions: Iterable[int] | None,
    more: list[Any],
) -> list[tuple[Any, ...]]:
    """The pending deliveries first in their conversation, due and not held (see _due_heads): `columns` of them."""
    ops = connection.ops
    skip = sorted(skip_trunks)
    only = sorted(partitions) if partitions is not None else None
    if only == []:
        return []
    sql = (
        f"SELECT {columns} FROM (SELECT id, trunk_id, partition, next_attempt_at, lease_until, ROW_NUMBER() OVER "
        "(PARTITION BY trunk_id, remote_number ORDER BY id) AS place "
        f"FROM {ops.quote_name(Delivery._meta.db_table)} WHERE status = %s "
        + (f"AND partition IN ({', '.join(['%s'] * len(only))}) " if only else "")
        + ") pending WHERE place = 1 AND next_attempt_at <= %s AND (lease_until IS NULL OR lease_until < %s) "
        + (f"AND trunk_id NOT IN ({', '.join(['%s'] * len(skip))}) " if skip else "")
        + tail
    )
    at = ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(sql, [str(Delivery.Status.PENDING), *(only or []), at, at, *skip, *more])
        return list(cursor.fetchall())


def deliveries_process(limit: int = 500) -> int:
    """Forward due deliveries of the partitions this drain can lease, the first of each conversation, until none is
    due that no other drain holds; returns how many were tried.

    Up to RELAY_FORWARDS_IN_FLIGHT POSTs run at once, on threads that only do HTTP: one at a time, a drain
    could never beat 1 / round-trip — 9 texts a second to a 3CX 100 ms away, the rate a backlog drained at
    after an outage (bench/relay.py). Only a conversation's first pending delivery is ever due, and one in
    flight holds its lease, so the texts of one conversation still reach 3CX one after another, in order. No
    trunk takes more than half of the POSTs in flight: a 3CX that accepts connections and never answers holds
    its share until the read timeout, and the other tenants' texts keep going meanwhile. This thread keeps every
    database read and write: it claims the heads it starts in one statement and records the answers that came
    together in one statement per kind.

    Drains on other workers (other machines) forward other partitions at the same time (models/relay.py): a drain
    leases a share of the busy ones, asks for another drain while busy partitions are left free, and takes more as
    its own run dry.
    """
    dispatch.DELIVERIES_DRAIN.started()
    tried = 0
    candidates: deque[tuple[int, int]] = deque()
    per_trunk: Counter[int] = Counter()
    per_partition: Counter[int] = Counter()  # this drain's POSTs in flight, by partition
    answered: list[tuple[Delivery, threecx.Outcome]] = []
    leases = PartitionLeases(RelayPartition.Stage.FORWARDING, forward_lease())

    def record() -> None:
        nonlocal tried
        outcomes, answered[:] = list(answered), []
        _record_outcomes(outcomes)
        for delivery, _ in outcomes:
            per_trunk[delivery.trunk_id] -= 1
            per_partition[delivery.partition] -= 1
            tried += 1

    try:
        with InFlight[Delivery](
            settings.RELAY_FORWARDS_IN_FLIGHT, "3cx-forward", lambda *answer: answered.append(answer)
        ) as in_flight:
            per_trunk_max = max(1, in_flight.size // 2)
            nothing_due_at = -1  # `tried` when the last look found nothing due: until an answer comes, none will be
            looked_around = 0.0  # when this drain last looked for other partitions with something due
            stop_starting_at = time.monotonic() + DRAIN_SECONDS
            while True:
                in_time = time.monotonic() < stop_starting_at
                if in_flight.free and in_time and tried + len(in_flight) < limit and tried != nothing_due_at:
                    full = {trunk for trunk, count in per_trunk.items() if count >= per_trunk_max}
                    if not any(head[1] not in full for head in candidates):
                        candidates = deque(
                            _due_heads(timezone.now(), 2 * in_flight.size, skip_trunks=full, partitions=leases.mine)
                        )
                    if not candidates and (not in_flight or time.monotonic() - looked_around >= LOOK_AROUND_EVERY):
                        # This drain's partitions have nothing due: hand back those with nothing in flight (another
                        # drain takes them when something is), and lease others with something due, if any.
                        looked_around = time.monotonic()
                        leases.release(number for number in leases.mine if per_partition[number] <= 0)
                        if leases.claim(_due_partitions(timezone.now(), skip_trunks=full)):
                            if leases.free_left:
                                dispatch.DELIVERIES_DRAIN.ask()  # more is due than this drain's share: ask for help
                            continue
                        nothing_due_at = tried  # (what is routed meanwhile asks for a drain of its own)
                    heads = _heads_pick(candidates, in_flight.free, per_trunk, per_trunk_max)
                    if heads:
                        for delivery in _claim_deliveries(heads):  # another worker may have taken some meanwhile
                            url, body, repeat_id = _forward_request(delivery)
                            per_trunk[delivery.trunk_id] += 1
                            per_partition[delivery.partition] += 1
                            if url:
                                in_flight.start(delivery, _forward, url, body, repeat_id)
                            else:
                                answered.append((delivery, NO_URL))
                        record()  # those with no URL
                        continue
                if not in_flight:
                    break  # nothing due (or the limit reached) and nothing on its way: done
                in_flight.settle(gather=GATHER_ANSWERS)
                record()
                leases.renew()
    finally:
        record()  # what the in-flight calls answered while the drain was stopping
        leases.release()
    if leases.free_among(_due_partitions(timezone.now())):
        # Due now in partitions nobody holds: the next texts of conversations this drain forwarded, what it left when
        # its time was up, and what was routed while it held the partitions (a drain asked for meanwhile found them
        # held). One ask per drain, not a cache round trip per forward; work in partitions another drain holds is
        # that drain's to see.
        dispatch.DELIVERIES_DRAIN.ask()
    return tried


def _heads_pick(
    candidates: deque[tuple[int, int]], free: int, per_trunk: Counter[int], per_trunk_max: int
) -> list[int]:
    """Up to `free` heads from the candidates, no trunk past its share of the POSTs in flight; taken off the deque."""
    picked: list[int] = []
    taken: Counter[int] = Counter()
    for head in list(candidates):
        if len(picked) >= free:
            break
        delivery_id, trunk_id = head
        if per_trunk[trunk_id] + taken[trunk_id] >= per_trunk_max:
            continue
        candidates.remove(head)
        picked.append(delivery_id)
        taken[trunk_id] += 1
    return picked


# A drain starts no new POST after this long (seconds): it lets the ones in flight answer, asks for another drain and
# ends, so that its worker's turn goes to whatever else was queued meanwhile — routing the texts that arrived since
# (a worker process runs one task at a time): a drain running through a whole backlog kept new texts unrouted.
DRAIN_SECONDS = 1.0


# While its POSTs are in flight, a drain whose own partitions have nothing due looks for other partitions with
# something due at most this often (seconds): a look is two or three statements, and with few texts per conversation
# it would otherwise come after every answer.
LOOK_AROUND_EVERY = 0.2


# Once a POST is answered, the drain waits this much longer (seconds) for the others in flight, whose answers it then
# writes in the same statements: POSTs started together are mostly answered within a few milliseconds of each other.
GATHER_ANSWERS = 0.005


NO_URL = threecx.Outcome(False, True, None, "", "The trunk has no 3CX webhook URL yet")


def forward_lease() -> timedelta:
    """How long a claimed delivery is held for its POST (see LEASE_MARGIN)."""
    return timedelta(seconds=settings.THREECX_CONNECT_TIMEOUT + settings.THREECX_READ_TIMEOUT) + LEASE_MARGIN


def _claim_deliveries(pks: list[int]) -> list[Delivery]:
    """Take these deliveries for one forward each (a lease: a worker that dies mid-POST leaves them to the next
    drain), in one UPDATE; returns those taken — another worker may have taken some — with their messages and
    trunks, in the order asked."""
    now = timezone.now()
    table = connection.ops.quote_name(Delivery._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET lease_until = %s WHERE id IN ({', '.join(['%s'] * len(pks))}) AND status = %s "
            "AND (lease_until IS NULL OR lease_until < %s) RETURNING id",
            [
                connection.ops.adapt_datetimefield_value(now + forward_lease()),
                *pks,
                str(Delivery.Status.PENDING),
                connection.ops.adapt_datetimefield_value(now),
            ],
        )
        claimed = {row[0] for row in cursor.fetchall()}
    if not claimed:
        return []
    loaded = Delivery.objects.select_related("message", "trunk", "message__source_event").in_bulk(claimed)
    return [loaded[pk] for pk in pks if pk in loaded]


def _forward_request(delivery: Delivery) -> tuple[str | None, bytes, str]:
    """Where and what to POST for this delivery: the trunk's 3CX URL (None if it has none yet), the body, and the id
    in its X-Wavix-Message-Id header (the Wavix message id; a status event's own id, see threecx)."""
    message, trunk = delivery.message, delivery.trunk
    if delivery.event:
        # When it happened, not when it reached 3CX: stable across retries and replays (which move created_at).
        at = (message.sent_at if delivery.event == "message.sent" else message.completed_at) or delivery.created_at
        body = threecx.generic_status_event(message, delivery.event, _iso_z(at))
        return trunk.get_threecx_webhook_url(), body, threecx.status_event_id(message.pk, delivery.event)
    if trunk.sms_template == Trunk.SmsTemplate.WAVIX and message.source_event_id:
        assert message.source_event is not None  # source_event_id is set
        body = bytes(message.source_event.body)  # byte for byte what Wavix sent
    else:
        body = threecx.generic_envelope(message, _iso_z(message.created_at))
    return trunk.get_threecx_webhook_url(), body, message.wavix_message_id


def _iso_z(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, as Telnyx writes its times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _forward(url: str, body: bytes, wavix_message_id: str) -> threecx.Outcome:
    """The POST to 3CX, on a forwarding thread: HTTP only, no database."""
    try:
        return threecx.forward(url, body, wavix_message_id)
    except Exception as error:  # noqa: BLE001 - a fault of ours: retried like a 3CX that did not answer
        logger.exception("relay: forwarding %s failed unexpectedly", wavix_message_id)
        return threecx.Outcome(False, True, None, "", f"Unexpected error while forwarding ({type(error).__name__})")


def _record_outcomes(outcomes: list[tuple[Delivery, threecx.Outcome]]) -> None:
    """Record the answers 3CX gave: every delivered one in one UPDATE … FROM (VALUES …) of the deliveries and one
    UPDATE of their texts, each trunk's health once; the others (retries, refusals: rare) one by one."""
    delivered = [(delivery, outcome) for delivery, outcome in outcomes if outcome.delivered]
    for delivery, outcome in outcomes:
        if not outcome.delivered:
            _record_outcome(delivery, outcome)
    if not delivered:
        return
    now = timezone.now()
    with transaction.atomic():
        values_update(
            Delivery,
            [
                {
                    "pk": delivery.pk,
                    "status": Delivery.Status.DELIVERED,
                    "attempts": delivery.attempts + 1,
                    "last_attempt_at": now,
                    "delivered_at": now,
                    "lease_until": None,
                    "last_status_code": outcome.status_code,
                    "last_response": outcome.response,
                    "last_error": outcome.error,
                }
                for delivery, outcome in delivered
            ],
            where="t.status = %s",  # Delivery.TRANSITIONS: only a pending delivery becomes delivered
            params=[str(Delivery.Status.PENDING)],
        )
        texts = [delivery.message_id for delivery, _ in delivered if not delivery.event]  # a status event: see below
        forwardable = [status for status, moves in Message.TRANSITIONS.items() if Message.Status.FORWARDED in moves]
        Message.objects.filter(pk__in=texts, status__in=forwardable).update(
            status=Message.Status.FORWARDED, completed_at=now, updated_at=now
        )
        trunks = {delivery.trunk_id: (delivery.trunk, outcome) for delivery, outcome in delivered}
        for trunk, outcome in trunks.values():
            _trunk_health(trunk, outcome, now)
    metrics.count("forward", "delivered", by=len(delivered))


def _record_outcome(delivery: Delivery, outcome: threecx.Outcome) -> None:
    now = timezone.now()
    delivery.attempts += 1
    delivery.last_attempt_at, delivery.lease_until = now, None
    delivery.last_status_code, delivery.last_response, delivery.last_error = (
        outcome.status_code,
        outcome.response,
        outcome.error,
    )
    message = delivery.message
    if outcome.delivered:
        delivery.transition(Delivery.Status.DELIVERED, at=now)
        next_status: str | None = Message.Status.FORWARDED
        metrics.count("forward", "delivered")
    elif outcome.transient and now + _retry_delay(delivery.attempts) < delivery.created_at + RETRY_FOR:
        delivery.next_attempt_at = now + _retry_delay(delivery.attempts)
        next_status = None  # stays received, waiting for the next attempt
        metrics.count("forward", "retry")
    else:
        delivery.transition(Delivery.Status.DEAD if outcome.transient else Delivery.Status.FAILED)
        next_status = Message.Status.FAILED
        metrics.count("forward", delivery.status)
    if delivery.event:
        # A status event is news about an outbound text, not the text: whether 3CX took it says nothing of the
        # text's own status (delivered by the carrier stays delivered, whatever 3CX answers).
        next_status = None
    with transaction.atomic():
        delivery.save()
        if next_status and message.can_transition(next_status):
            message.transition(next_status)
            message.save(update_fields=["status", "completed_at", "updated_at"])
        _trunk_health(delivery.trunk, outcome, now)


def _retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1])


# A healthy trunk's "last checked" is refreshed at most this often: every forward writing the same trunk row
# made the workers queue for its lock during a burst (bench/relay.py).
HEALTHY_CHECK_EVERY = timedelta(seconds=60)


def _trunk_health(trunk: Trunk, outcome: threecx.Outcome, now: datetime) -> None:
    if not outcome.delivered:
        Trunk.objects.filter(pk=trunk.pk).update(
            forward_failures=F("forward_failures") + 1, forward_error=outcome.error[:300], forward_checked_at=now
        )
        return
    if not trunk.forward_failures and trunk.forward_checked_at and now - trunk.forward_checked_at < HEALTHY_CHECK_EVERY:
        return  # healthy, as loaded with the delivery a moment ago, and said so within the minute
    # Conditional: of several successes at once (3CX back with POSTs in flight), one ends the failures.
    recovered = Trunk.objects.filter(pk=trunk.pk, forward_failures__gt=0).update(
        forward_failures=0, forward_error="", forward_checked_at=now
    )
    if recovered:
        _waiting_release(trunk.pk, now)
    else:
        Trunk.objects.filter(pk=trunk.pk).update(forward_checked_at=now)


# Recovery. A failing trunk's texts wait out their retry schedule — 5 minutes after three failures, 30 and more
# after a long outage — and 3CX being back must not cost that wait (it did: bench/faults.py, 3cx-down). Two things
# end it early:
# - the first success on a trunk that was failing, whatever brought it (a probe, a scheduled retry, a new text, a
#   replay), makes all the trunk's waiting texts due now, in one UPDATE, and asks for a drain;
# - a failing trunk that nothing tried for PROBE_EVERY gets one early try from the beat sweeper, with its oldest
#   waiting text: a real text is the probe, so there is nothing 3CX must understand and nothing to clean up.
# Each happens at most once per PROBE_EVERY per trunk, across all workers: a 3CX that keeps failing gets one early
# POST every ~20 s; and a text that 3CX alone refuses with a 5xx while it takes the others is not sent again after
# every other text's success — it keeps about its schedule. Only conversation heads are ever due (_due_heads), so
# order holds; the 48 h bound counts from each delivery's creation, so it holds too.
PROBE_EVERY = timedelta(seconds=15)  # the sweeper runs every 10 s: an idle failing trunk is tried every 20 s


RELEASED_FLAG = "relay:trunk-released:{}"


def _waiting_release(trunk_id: int, now: datetime) -> int:
    """Make the trunk's texts that wait for a retry due now and ask for a drain, unless that was done for this trunk
    within PROBE_EVERY; returns how many were released."""
    try:
        first = cache.add(RELEASED_FLAG.format(trunk_id), 1, timeout=int(PROBE_EVERY.total_seconds()))
    except Exception:  # noqa: BLE001 - the cache being down costs only this limit, never the release
        first = True
    if not first:
        return 0
    released = Delivery.objects.filter(
        trunk_id=trunk_id, status=Delivery.Status.PENDING, next_attempt_at__gt=now
    ).update(next_attempt_at=now)
    if released:
        dispatch.DELIVERIES_DRAIN.ask_soon()
    return released


def failing_trunks_probe() -> int:
    """Give each failing trunk that nothing tried for PROBE_EVERY, and whose texts wait for a retry, one early try:
    its oldest pending delivery (the first of its conversation) becomes due now. Returns how many trunks."""
    now = timezone.now()
    quiet = Q(forward_checked_at__isnull=True) | Q(forward_checked_at__lte=now - PROBE_EVERY)
    waiting = Delivery.objects.filter(trunk=OuterRef("pk"), status=Delivery.Status.PENDING, next_attempt_at__gt=now)
    candidates = Trunk.objects.filter(quiet, forward_failures__gt=0).filter(Exists(waiting))
    probed = 0
    for trunk_id in candidates.values_list("pk", flat=True):
        # The trunk's turn, taken with a conditional update (the try counts from now): two sweepers at once, or one
        # running late, probe it once. Two statements, no transaction: no lock is held while the other is taken.
        if not Trunk.objects.filter(quiet, pk=trunk_id, forward_failures__gt=0).update(forward_checked_at=now):
            continue
        oldest = (
            Delivery.objects.filter(trunk_id=trunk_id, status=Delivery.Status.PENDING)
            .order_by("id")
            .values_list("pk", flat=True)
            .first()
        )
        if oldest is not None:  # else it was forwarded since: the trunk's turn was taken all the same
            Delivery.objects.filter(pk=oldest, status=Delivery.Status.PENDING, next_attempt_at__gt=now).update(
                next_attempt_at=now
            )
        probed += 1
    return probed


def delivery_replay(*, actor: User | None, deliveries: QuerySet[Delivery]) -> int:
    """Try failed or dead-lettered deliveries again from now, each replay written to the audit trail."""
    replayed = 0
    replayable = Delivery.REPLAYABLE
    for delivery in deliveries.filter(status__in=replayable).select_related("message", "trunk"):
        with transaction.atomic():
            previous, now = delivery.status, timezone.now()
            # Claimed with a conditional update: the same replay asked twice at once (a double click, two people)
            # replays it once, with one audit row. created_at moves: the 48 h of retries start again.
            claimed = Delivery.objects.filter(pk=delivery.pk, status__in=replayable).update(
                status=Delivery.Status.PENDING, next_attempt_at=now, lease_until=None, created_at=now
            )
            if not claimed:
                continue
            # An inbound text goes back to received; a status event leaves its outbound text as it is.
            if not delivery.event and delivery.message.can_transition(Message.Status.RECEIVED):
                delivery.message.transition(Message.Status.RECEIVED)
                delivery.message.save(update_fields=["status", "updated_at"])
            AuditEvent.record(
                AuditEvent.Action.REPLAY,
                delivery,
                actor=actor,
                changes={"from": previous, "trunk": str(delivery.trunk), "last_error": delivery.last_error},
            )
        replayed += 1
    if replayed:
        dispatch.DELIVERIES_DRAIN.ask_soon()
    return replayed
