"""The inbound relay: webhook events routed to messages and deliveries, forwarded to 3CX, retried, replayed;
delivery reports applied to outbound messages; texts whose webhook never came recovered from Wavix.
"""

import hashlib
import json
import logging
import os
import threading
import time
from collections import Counter, deque
from concurrent import futures
from datetime import datetime, timedelta
from decimal import Decimal

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from messaging import metrics, threecx, webhooks
from messaging.models import (
    Delivery,
    Message,
    OptOut,
    PhoneNumber,
    TenDLCRegistration,
    Trunk,
    WavixAccount,
    WebhookEvent,
    WebhookSecret,
)
from messaging.services.sending import message_parts
from messaging.services.wavix_sync import numbers_sync_soon
from messaging.wavix import WavixClient
from tenants.models import AuditEvent, Tenant

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------------------
# Inbound relay and delivery reports
#
# A webhook is stored by the view, then processed here in two stages, each in a Celery task on the `inbound`
# queue: routing (DB only: event → message → delivery, serialized so a conversation's deliveries are created
# in the order Wavix sent them) and forwarding (network: the head of each conversation, in parallel across
# conversations, claimed with a lease so a dead worker's delivery is picked up again).
# ---------------------------------------------------------------------------------------------------------------

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
START_WORDS = frozenset({"START", "UNSTOP"})
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
EVENTS_FLAG, DELIVERIES_FLAG = "relay:events-drain-queued", "relay:deliveries-drain-queued"
ROUTING_LOCK = 72_211_001  # PostgreSQL advisory lock id: one router at a time
_broker_down_until = 0.0


def _queue_drain(flag: str, task_name: str) -> None:
    """Ask a worker to drain, unless a drain is already queued: enqueueing costs as much as storing (DESIGN §7).

    The drain deletes the flag when it starts, so anything stored after that asks again. If the cache or the
    broker is down, nothing is lost: the events are in the database and the periodic sweeper asks later.
    """
    global _broker_down_until
    if time.monotonic() < _broker_down_until:
        return  # it failed a moment ago: do not make every webhook wait for a broker timeout
    try:
        if cache.add(flag, 1, timeout=30):
            current_app.send_task(task_name, queue="inbound", retry=False)
    except Exception:  # noqa: BLE001 - any cache or broker failure: the sweeper is the fallback
        _broker_down_until = time.monotonic() + 5
        logger.warning("relay: could not queue %s; the sweeper will", task_name, exc_info=True)
        try:
            cache.delete(flag)
        except Exception:  # noqa: BLE001
            pass


def _drain_started(flag: str) -> None:
    """Clear the drain's flag so that what arrives from now on asks for another drain; the cache being down
    only costs that optimisation (the sweeper still runs), never the drain itself."""
    try:
        cache.delete(flag)
    except Exception:  # noqa: BLE001
        logger.warning("relay: the cache is unreachable; draining anyway")


# The intake asks for a routing drain at most this often per process, and once more after the last webhook of
# a burst: a cache round trip on every webhook (≈ 0.25 ms here) cost intake about as much as its INSERT
# (bench/intake.py). A process that stops with an ask pending leaves it to the sweeper (every 10 s).
ASK_EVERY_SECONDS = 0.2
_asked_at: dict[str, float] = {}
_ask_scheduled: set[str] = set()
_ask_lock = threading.Lock()


def _queue_drain_at_most_every(flag: str, task_name: str) -> None:
    """_queue_drain, but a call within ASK_EVERY_SECONDS of this process's last ask is folded into one ask when
    that interval ends — so what was stored in between is seen by a drain asked for after it was stored."""
    now = time.monotonic()
    with _ask_lock:
        wait = _asked_at.get(flag, -ASK_EVERY_SECONDS) + ASK_EVERY_SECONDS - now
        if wait > 0:
            if flag not in _ask_scheduled:
                _ask_scheduled.add(flag)
                timer = threading.Timer(wait, _ask_scheduled_now, (flag, task_name))
                timer.daemon = True
                timer.start()
            return
        _asked_at[flag] = now
    _queue_drain(flag, task_name)


def _ask_scheduled_now(flag: str, task_name: str) -> None:
    with _ask_lock:
        _ask_scheduled.discard(flag)
        _asked_at[flag] = time.monotonic()
    _queue_drain(flag, task_name)


def _forget_asks_after_fork() -> None:
    global _ask_lock
    _ask_lock = threading.Lock()
    _asked_at.clear()
    _ask_scheduled.clear()


os.register_at_fork(after_in_child=_forget_asks_after_fork)


def events_process_soon() -> None:
    _queue_drain_at_most_every(EVENTS_FLAG, "messaging.tasks.inbound_events_drain")


def deliveries_process_soon() -> None:
    _queue_drain(DELIVERIES_FLAG, "messaging.tasks.inbound_deliveries_drain")


def events_process(batch_size: int = 100) -> int:
    """Route every stored webhook event, oldest first; returns how many were processed."""
    _drain_started(EVENTS_FLAG)
    processed = 0
    while True:
        with transaction.atomic():
            # Batches strictly one after another: two routers could otherwise create a conversation's deliveries
            # out of order.
            _routing_lock()
            batch = list(
                WebhookEvent.objects.select_related("account")
                .filter(state=WebhookEvent.State.PENDING)
                .order_by("id")[:batch_size]
            )
            numbers: dict = {}  # (account, number) → PhoneNumber: a burst has few receiving numbers
            for event in batch:
                _process_event(event, numbers)
        processed += len(batch)
        if len(batch) < batch_size:
            break
    if processed:
        deliveries_process_soon()
    return processed


def _routing_lock() -> None:
    """Wait for the router's turn, until this transaction ends (SQLite's IMMEDIATE transactions already serialize
    writers): routing batches, and releases of held texts, each see what the one before them committed."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ROUTING_LOCK])


def _process_event(event: WebhookEvent, numbers: dict) -> None:
    """One event, in its own savepoint: a body that breaks processing is marked invalid, not retried forever.

    The body is checked again with the intake's rule (webhooks.parse): rows stored before a rule was tightened, and
    texts recovered from Wavix's list (inbound_reconcile), are parked with the same reason a webhook would get."""
    event.attempts += 1
    payload, problem = webhooks.parse(event.kind, bytes(event.body))
    if problem is None:
        try:
            with transaction.atomic():
                if event.kind == WebhookEvent.Kind.INBOUND:
                    _route_inbound(event, payload, numbers)
                elif event.kind == WebhookEvent.Kind.DLR:
                    _apply_report(event, payload)
                else:
                    _apply_tendlc(event, payload)
        except Exception as error:  # noqa: BLE001 - whatever it was, it is recorded and visible in the admin
            logger.exception("relay: webhook event %s could not be processed", event.pk)
            problem = f"{type(error).__name__}: {error}"
    if problem is not None:
        event.state, event.last_error = WebhookEvent.State.INVALID, problem[:500]
        if event.kind == WebhookEvent.Kind.INBOUND:
            _unreadable_inbound(event, numbers)
    event.processed_at = timezone.now()
    event.save(update_fields=["state", "tenant", "last_error", "attempts", "processed_at"])


def _receiving_number(event: WebhookEvent, to: str, numbers: dict) -> PhoneNumber | None:
    """The account's number a text was sent to, with its trunk and tenant; `numbers` caches them for the batch."""
    if (event.account_id, to) not in numbers:
        numbers[event.account_id, to] = (
            PhoneNumber.objects.select_related("trunk", "tenant").filter(account=event.account, number=to).first()
        )
    return numbers[event.account_id, to]


def hold_reason(tenant: Tenant, trunk: Trunk) -> str:
    """Why a text for this trunk waits instead of going to its 3CX, in words; "" when nothing holds it."""
    reasons = []
    if not tenant.is_active:
        reasons.append(f"{tenant.name} is suspended")
    if not trunk.sms_enabled:
        reasons.append(f"SMS is off on trunk {trunk.name}")
    return " and ".join(reasons)


def _route_inbound(event: WebhookEvent, payload: dict, numbers: dict) -> None:
    to = webhooks.as_stored_number(payload["to"])
    number = _receiving_number(event, to, numbers)
    if number is None or number.tenant_id is None or number.trunk_id is None:
        _route_nowhere(event, payload, to, number)
        return
    tenant, trunk = number.tenant, number.trunk
    held = hold_reason(tenant, trunk)
    message, created = _inbound_message(
        event,
        payload,
        to,
        tenant_id=tenant.pk,
        trunk=trunk,
        status=Message.Status.HELD if held else Message.Status.RECEIVED,
        reason=held,
    )
    event.tenant = tenant
    event.state = WebhookEvent.State.HELD if held else WebhookEvent.State.PROCESSED
    if not created:
        return  # the same message reached us twice (a webhook and a reconciliation): forwarded once
    opt_out_apply(tenant.pk, message.from_number, message.text)
    if held:
        metrics.count("not_forwarded", "trunk_sms_off" if tenant.is_active else "tenant_suspended")
    else:
        Delivery.objects.create(tenant=tenant, message=message, trunk=trunk, remote_number=message.from_number)


def _route_nowhere(event: WebhookEvent, payload: dict, to: str, number: PhoneNumber | None) -> None:
    """A text to a number with no trunk: in its tenant's log as not forwarded, when the number (or the tenant's own
    account) says whose it is; otherwise the webhook event alone keeps it, counted for the reseller to see."""
    if number is None:
        reason, label = f"{to} is not a number of the Wavix account {event.account.name}", "unknown_number"
    elif number.tenant_id is None:
        reason, label = f"{to} is not assigned to a tenant", "no_tenant"
    else:
        reason, label = f"{to} is not assigned to a trunk", "no_trunk"
    event.state, event.last_error = WebhookEvent.State.UNROUTABLE, f"{reason}; nothing was forwarded."
    metrics.count("not_forwarded", label)
    tenant_id = (number.tenant_id if number is not None else None) or event.account.tenant_id
    if tenant_id is None:
        return
    event.tenant_id = tenant_id
    message, created = _inbound_message(
        event, payload, to, tenant_id=tenant_id, trunk=None, status=Message.Status.NOT_FORWARDED, reason=reason
    )
    if created:
        opt_out_apply(tenant_id, message.from_number, message.text)  # a STOP is a STOP, forwarded or not


def _inbound_message(
    event: WebhookEvent, payload: dict, to: str, *, tenant_id: int, trunk: Trunk | None, status: str, reason: str
) -> tuple[Message, bool]:
    """The message of an inbound webhook, created once per Wavix message id, with its encoding and segments."""
    body = payload.get("message_body") if isinstance(payload.get("message_body"), dict) else {}
    text = str(body.get("text") or "")
    media = [str(url) for url in body.get("media") or [] if isinstance(url, str)]
    encoding, segments = message_parts(text, media)
    return Message.objects.get_or_create(
        account=event.account,
        wavix_message_id=str(payload["message_id"]),
        defaults={
            "tenant_id": tenant_id,
            "trunk": trunk,
            "direction": Message.Direction.INBOUND,
            "from_number": webhooks.as_stored_number(payload["from"]),
            "to_number": to,
            "text": text,
            "media": media,
            "encoding": encoding,
            "segments": segments,
            "status": status,
            "not_forwarded_reason": reason[:300],
            "completed_at": timezone.now() if status in Message.FINAL else None,
            "source_event": event,
        },
    )


def _unreadable_inbound(event: WebhookEvent, numbers: dict) -> None:
    """An inbound webhook that could not be read is still a text someone sent: in its tenant's log as not forwarded
    when its account (or a `to` that can be read) says whose it is. Whatever of it can be read is kept."""
    metrics.count("not_forwarded", "invalid")
    try:
        payload = json.loads(bytes(event.body))
    except ValueError:
        payload = None
    payload = payload if isinstance(payload, dict) else {}

    def readable(key: str) -> str:
        value = payload.get(key)
        readable = isinstance(value, str | int) and not isinstance(value, bool)
        return webhooks.as_stored_number(str(value))[:20] if readable else ""

    to = readable("to")
    # Wavix's own id when it can be read (a text recovered from Wavix's list is stored under a key of its own).
    listed_id = payload.get("message_id")
    message_id = listed_id if isinstance(listed_id, str) and 0 < len(listed_id) <= 64 else event.dedup_key[:64]
    number = _receiving_number(event, to, numbers) if to else None
    tenant_id = (number.tenant_id if number is not None else None) or event.account.tenant_id
    if tenant_id is None:
        return
    body = payload.get("message_body") if isinstance(payload.get("message_body"), dict) else {}
    # PostgreSQL cannot store a NUL character, which may be what made the text unreadable in the first place.
    text = body.get("text").replace("\x00", "") if isinstance(body.get("text"), str) else ""
    encoding, segments = message_parts(text)
    try:
        with transaction.atomic():
            Message.objects.create(
                tenant_id=tenant_id,
                account=event.account,
                direction=Message.Direction.INBOUND,
                from_number=readable("from"),
                to_number=to,
                text=text,
                encoding=encoding,
                segments=segments,
                wavix_message_id=message_id,
                status=Message.Status.NOT_FORWARDED,
                not_forwarded_reason=f"Wavix's webhook could not be read ({event.last_error})"[:300],
                completed_at=timezone.now(),
                source_event=event,
            )
    except IntegrityError:
        return  # a message with this Wavix id is in the log already
    except Exception:  # noqa: BLE001 - the event stays invalid and visible; the rest of the batch must go on
        logger.exception("relay: webhook event %s could not be shown as a text not forwarded", event.pk)
        return
    event.tenant_id = tenant_id


def opt_out_apply(tenant_id: int, number: str, text: str) -> None:
    """Record or lift an opt-out when the whole text is a stop or start word (case and spaces ignored)."""
    word = "".join(text.split()).upper()
    if word in STOP_WORDS:
        OptOut.objects.get_or_create(tenant_id=tenant_id, number=number, defaults={"keyword": word})
    elif word in START_WORDS:
        OptOut.objects.filter(tenant_id=tenant_id, number=number).delete()


# A report's side fields — segments, charge, times, error — are read one by one: a bad one is dropped (or a time
# clamped) with a note on the report's event, and the rest of the report still applies. Before, one bad field
# (segments_count 99999, charge "NaN") failed the whole report and left the message "accepted" for good. What counts
# as a segment count or a charge is the message's rule (Message.segments_from, Message.charge_from).


def _shown(value) -> str:
    return repr(value) if len(repr(value)) <= 40 else repr(value)[:39] + "…"


def _report_segments(payload: dict) -> tuple[int | None, str | None]:
    """(segments, note): Wavix's segments_count, or the older `segments` when it is absent."""
    key = "segments_count" if payload.get("segments_count") is not None else "segments"
    value = payload.get(key)
    if value is None:
        return None, None
    segments = Message.segments_from(value)
    if segments is None:
        return None, f"Dropped {key} {_shown(value)}: not a number of segments from 1 to {Message.SEGMENTS_MAX}."
    return segments, None


def _report_charge(payload: dict) -> tuple[Decimal | None, str | None]:
    """(charge, note): a finite amount that fits the column (Wavix sends a string; a number is taken too)."""
    value = payload.get("charge")
    if value is None or value == "":
        return None, None
    charge = Message.charge_from(value)
    if charge is None:
        return None, f"Dropped charge {_shown(value)}: not an amount below {Message.charge_limit():,}."
    return charge, None


def _report_time(payload: dict, key: str, message: Message, event: WebhookEvent) -> tuple[datetime | None, str | None]:
    """(time, note): Wavix's timestamps come with and without a zone (read leniently, UTC assumed). A report cannot
    speak of a moment before its message existed or after the report itself arrived: such a time is clamped."""
    value = payload.get(key)
    if value is None or value == "":
        return None, None
    try:
        moment = webhooks.parse_time(value)
    except ValueError:
        return None, f"Dropped {key} {_shown(value)}: not an ISO 8601 date and time."
    if moment < message.created_at:
        return message.created_at, f"Clamped {key} {_shown(value)} to the message's creation: it was earlier."
    if moment > event.received_at:
        return event.received_at, f"Clamped {key} {_shown(value)} to the report's arrival: it was later."
    return moment, None


def _report_error(payload: dict) -> tuple[str, str | None]:
    """(Wavix's error text, note)."""
    value = payload.get("error")
    if value is None:
        return "", None
    if not isinstance(value, str) or "\x00" in value:
        return "", f"Dropped error {_shown(value)}: not a text."
    return value[:500], None


def _apply_report(event: WebhookEvent, payload: dict) -> None:
    """Move an outbound message along its state machine; a repeated or late report never moves it back. Side fields
    that cannot be read are left out with a note on the event, shown with the message's reports."""
    message = (
        Message.objects.select_for_update()
        .filter(
            account=event.account, wavix_message_id=str(payload["message_id"]), direction=Message.Direction.OUTBOUND
        )
        .first()
    )
    if message is None:
        event.state = WebhookEvent.State.UNMATCHED
        event.last_error = "No message sent through the portal has this id (3CX sends some straight to Wavix)."
        return
    event.tenant_id = message.tenant_id
    status = str(payload["status"])
    if status not in webhooks.REPORT_STATUSES:  # the intake refuses these now; events stored before remain
        event.state, event.last_error = WebhookEvent.State.INVALID, f"Unknown delivery status {status!r}."
        return
    notes = []

    def read(reader, *args):
        value, note = reader(payload, *args)
        if note:
            notes.append(note)
        return value

    if message.status in (Message.Status.SENDING, Message.Status.UNKNOWN):
        message.transition(Message.Status.ACCEPTED)  # a report proves Wavix accepted it
    if message.can_transition(status):
        message.transition(status)
        error = read(_report_error)
        if status == Message.Status.UNDELIVERED or error:
            message.error_message = error
    if (segments := read(_report_segments)) is not None:
        message.segments = segments
    if (charge := read(_report_charge)) is not None:
        message.charge = charge
    if message.sent_at is None:
        message.sent_at = read(_report_time, "sent", message, event)
    if message.status in Message.FINAL and (completed := read(_report_time, "delivered", message, event)):
        message.completed_at = completed
    message.save()
    event.state, event.last_error = WebhookEvent.State.PROCESSED, " ".join(notes)[:500]


def _apply_tendlc(event: WebhookEvent, payload: dict) -> None:
    """A 10DLC status from Wavix: a number's (with its brand and campaign), a campaign's or a brand's."""
    status = str(payload["status"]).upper()[:16]
    brand, campaign = str(payload.get("brand_id") or "")[:64], str(payload.get("campaign_id") or "")[:64]
    if payload.get("number"):
        PhoneNumber.objects.filter(account=event.account, number=webhooks.as_stored_number(payload["number"])).update(
            tendlc_status=status, tendlc_brand_id=brand, tendlc_campaign_id=campaign
        )
    elif brand:
        kind = TenDLCRegistration.Kind.CAMPAIGN if campaign else TenDLCRegistration.Kind.BRAND
        TenDLCRegistration.objects.update_or_create(
            account=event.account, kind=kind, brand_id=brand, campaign_id=campaign, defaults={"status": status}
        )
    event.state = WebhookEvent.State.PROCESSED


def _due_heads(now, limit: int = 20, skip_trunks=()) -> list[tuple[int, int]]:
    """(id, trunk id) of pending deliveries that are due, not held by a worker, and first in their conversation,
    leaving out the trunks in `skip_trunks`.

    One pass over the pending deliveries numbers each conversation's (ROW_NUMBER by id), whatever the planner's
    statistics say. The NOT EXISTS it replaces (no earlier pending delivery in the conversation) was planned from
    statistics taken while little was pending: a nested loop over every pending delivery for each one, so a
    backlog of 1,000 (3CX back after an outage, a burst) made each call ~60 ms instead of ~1 — quadratic in the
    backlog (found by bench/relay.py).
    """
    ops = connection.ops
    skip = sorted(skip_trunks)
    sql = (
        "SELECT id, trunk_id FROM (SELECT id, trunk_id, next_attempt_at, lease_until, ROW_NUMBER() OVER "
        "(PARTITION BY trunk_id, remote_number ORDER BY id) AS place "
        f"FROM {ops.quote_name(Delivery._meta.db_table)} WHERE status = %s) pending "
        "WHERE place = 1 AND next_attempt_at <= %s AND (lease_until IS NULL OR lease_until < %s) "
        + (f"AND trunk_id NOT IN ({', '.join(['%s'] * len(skip))}) " if skip else "")
        + "ORDER BY next_attempt_at, id LIMIT %s"
    )
    at = ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(sql, [str(Delivery.Status.PENDING), at, at, *skip, limit])
        return [(row[0], row[1]) for row in cursor.fetchall()]


def deliveries_process(limit: int = 200) -> int:
    """Forward due deliveries, the first of each conversation, until none is due; returns how many were tried.

    Up to RELAY_FORWARDS_IN_FLIGHT POSTs run at once, on threads that only do HTTP: one at a time, a drain
    could never beat 1 / round-trip — 9 texts a second to a 3CX 100 ms away, the rate a backlog drained at
    after an outage (bench/relay.py). Only a conversation's first pending delivery is ever due, and one in
    flight holds its lease, so the texts of one conversation still reach 3CX one after another, in order. No
    trunk takes more than half of the POSTs in flight: a 3CX that accepts connections and never answers holds
    its share until the read timeout, and the other tenants' texts keep going meanwhile. This thread keeps every
    database read and write: it claims a delivery just before its POST and records each answer.
    """
    _drain_started(DELIVERIES_FLAG)
    in_flight_max = max(1, settings.RELAY_FORWARDS_IN_FLIGHT)
    per_trunk_max = max(1, in_flight_max // 2)
    tried = delivered = 0
    candidates: deque[tuple[int, int]] = deque()
    in_flight: dict[futures.Future, Delivery] = {}
    per_trunk: Counter[int] = Counter()
    pool = futures.ThreadPoolExecutor(max_workers=in_flight_max, thread_name_prefix="3cx-forward")
    try:
        while True:
            if len(in_flight) < in_flight_max and tried + len(in_flight) < limit:
                full = {trunk for trunk, count in per_trunk.items() if count >= per_trunk_max}
                head = next((head for head in candidates if head[1] not in full), None)
                if head is None:
                    candidates = deque(_due_heads(timezone.now(), 2 * in_flight_max, skip_trunks=full))
                    head = candidates[0] if candidates else None
                if head:
                    candidates.remove(head)
                    delivery = _claim_delivery(head[0])
                    if delivery:  # another worker may have taken it between the query and the claim
                        url, body = _forward_request(delivery)
                        if url:
                            future = pool.submit(_forward, url, body, delivery.message.wavix_message_id)
                            in_flight[future] = delivery
                            per_trunk[delivery.trunk_id] += 1
                        else:
                            tried += 1
                            _record_outcome(delivery, NO_URL)
                    continue
            if not in_flight:
                break  # nothing due (or the limit reached) and nothing on its way: done
            done, _ = futures.wait(in_flight, return_when=futures.FIRST_COMPLETED)
            for future in done:
                delivery, outcome = in_flight.pop(future), future.result()
                per_trunk[delivery.trunk_id] -= 1
                _record_outcome(delivery, outcome)
                tried, delivered = tried + 1, delivered + outcome.delivered
    finally:
        for future in futures.as_completed(in_flight):  # every POST made gets its answer recorded
            _record_outcome(in_flight[future], future.result())
        pool.shutdown()
    if delivered or tried >= limit:
        # A forward lets its conversation's next text go. This loop takes those itself while it runs (and so
        # does any other worker's); once it stops, another drain must look again — one ask per drain, not a
        # cache round trip per forward.
        deliveries_process_soon()
    return tried


NO_URL = threecx.Outcome(False, True, None, "", "The trunk has no 3CX webhook URL yet")


def forward_lease() -> timedelta:
    """How long a claimed delivery is held for its POST (see LEASE_MARGIN)."""
    return timedelta(seconds=settings.THREECX_CONNECT_TIMEOUT + settings.THREECX_READ_TIMEOUT) + LEASE_MARGIN


def _claim_delivery(pk: int) -> Delivery | None:
    """Take this delivery for one forward (a lease: a worker that dies mid-POST leaves it to the next drain)."""
    now = timezone.now()
    claimed = (
        Delivery.objects.filter(pk=pk, status=Delivery.Status.PENDING)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + forward_lease())
    )
    if not claimed:
        return None
    return Delivery.objects.select_related("message", "trunk", "message__source_event").get(pk=pk)


def _forward_request(delivery: Delivery) -> tuple[str | None, bytes]:
    """Where and what to POST for this delivery: the trunk's 3CX URL (None if it has none yet) and the body."""
    message, trunk = delivery.message, delivery.trunk
    if trunk.sms_template == Trunk.SmsTemplate.WAVIX and message.source_event_id:
        body = bytes(message.source_event.body)  # byte for byte what Wavix sent
    else:
        received = message.created_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        body = threecx.generic_envelope(message, received)
    return trunk.get_threecx_webhook_url(), body


def _forward(url: str, body: bytes, wavix_message_id: str) -> threecx.Outcome:
    """The POST to 3CX, on a forwarding thread: HTTP only, no database."""
    try:
        return threecx.forward(url, body, wavix_message_id)
    except Exception as error:  # noqa: BLE001 - a fault of ours: retried like a 3CX that did not answer
        logger.exception("relay: forwarding %s failed unexpectedly", wavix_message_id)
        return threecx.Outcome(False, True, None, "", f"Unexpected error while forwarding ({type(error).__name__})")


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
        next_status = Message.Status.FORWARDED
        metrics.count("forward", "delivered")
    elif outcome.transient and now + _retry_delay(delivery.attempts) < delivery.created_at + RETRY_FOR:
        delivery.next_attempt_at = now + _retry_delay(delivery.attempts)
        next_status = None  # stays received, waiting for the next attempt
        metrics.count("forward", "retry")
    else:
        delivery.transition(Delivery.Status.DEAD if outcome.transient else Delivery.Status.FAILED)
        next_status = Message.Status.FAILED
        metrics.count("forward", delivery.status)
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


def _trunk_health(trunk: Trunk, outcome: threecx.Outcome, now) -> None:
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


def _waiting_release(trunk_id: int, now) -> int:
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
        transaction.on_commit(deliveries_process_soon)
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
        Delivery.objects.filter(pk=oldest, status=Delivery.Status.PENDING, next_attempt_at__gt=now).update(
            next_attempt_at=now
        )
        probed += 1
    return probed


def delivery_replay(*, actor, deliveries) -> int:
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
            if delivery.message.can_transition(Message.Status.RECEIVED):
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
        transaction.on_commit(deliveries_process_soon)
    return replayed


def held_release(messages) -> int:
    """Forward the held texts among these whose tenant is active and whose trunk has SMS on, in arrival order;
    the others stay held, their reason brought up to date. Returns how many were released."""
    released = 0
    with transaction.atomic():
        # A text routed while this looks would be held after it looked, and stay held: routing waits, or this does.
        _routing_lock()
        held = messages.filter(status=Message.Status.HELD).select_related("tenant", "trunk").order_by("id")
        for message in held:
            if message.trunk_id is None:
                continue  # its trunk was deleted: nowhere to release it to
            reason = hold_reason(message.tenant, message.trunk)
            if reason:
                if reason != message.not_forwarded_reason:
                    Message.objects.filter(pk=message.pk).update(not_forwarded_reason=reason)
                continue
            message.transition(Message.Status.RECEIVED)
            message.not_forwarded_reason = ""
            message.save(update_fields=["status", "not_forwarded_reason", "updated_at"])
            Delivery.objects.create(
                tenant=message.tenant, message=message, trunk=message.trunk, remote_number=message.from_number
            )
            WebhookEvent.objects.filter(pk=message.source_event_id).update(state=WebhookEvent.State.PROCESSED)
            released += 1
    if released:
        transaction.on_commit(deliveries_process_soon)
    return released


def tenant_held_release(tenant: Tenant) -> int:
    """Forward what was held while the tenant was suspended (unless its trunk has SMS off), in arrival order."""
    return held_release(Message.objects.filter(tenant=tenant))


def trunk_held_release(trunk: Trunk) -> int:
    """Forward what was held while the trunk had SMS off (unless its tenant is suspended), in arrival order."""
    return held_release(Message.objects.filter(trunk=trunk))


def webhook_secret_rotate(*, actor, account: WavixAccount, overlap: timedelta = timedelta(hours=24)) -> WebhookSecret:
    """Issue a new webhook secret; the old ones keep working for `overlap`, then stop. Wavix is re-pointed."""
    with transaction.atomic():
        WebhookSecret.objects.filter(account=account, retire_at__isnull=True).update(retire_at=timezone.now() + overlap)
        secret = WebhookSecret.issue(account, WebhookSecret.generate())
        AuditEvent.record(
            AuditEvent.Action.WEBHOOK_SECRET_ROTATED,
            account,
            actor=actor,
            changes={"old_secrets_retire_in": str(overlap)},
        )
        account.refresh_from_db()  # the new URLs from now on
        numbers_sync_soon(account)  # point the numbers (and a tenant account's defaults) at the new URLs
    return secret


RECONCILE_OVERLAP = timedelta(minutes=10)  # look a little further back than the watermark: clocks and queues lag


def inbound_reconcile(account: WavixAccount) -> int:
    """Create events for inbound texts Wavix received whose webhook never reached the portal; returns how many.

    They flow through the same routing and forwarding, marked as recovered; a webhook that did arrive is
    deduplicated on its message id as usual.
    """
    started = timezone.now()
    since = (account.inbound_reconciled_at or started - timedelta(days=1)) - RECONCILE_OVERLAP
    recovered = 0
    for body in WavixClient.for_account(account).inbound_messages(since):
        # The intake's shape, as for a webhook. One that fails has nobody to answer a 400 to: it is kept (under a
        # key its next listing finds again) and routing parks it with the reason, in its tenant's log as a text not
        # forwarded (_process_event) — never lost and never half-routed.
        problem = webhooks.shape_problem(WebhookEvent.Kind.INBOUND, body)
        if problem:
            key = "invalid:" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        else:
            key = webhooks.dedup_key(WebhookEvent.Kind.INBOUND, body)
        try:
            with transaction.atomic():
                WebhookEvent.objects.create(
                    account=account,
                    kind=WebhookEvent.Kind.INBOUND,
                    dedup_key=key,
                    body=json.dumps(body).encode(),
                    recovered=True,
                )
            recovered += 1
        except IntegrityError:
            continue  # its webhook came: nothing to recover
    WavixAccount.objects.filter(pk=account.pk).update(inbound_reconciled_at=started)
    if recovered:
        logger.warning("relay: recovered %s inbound text(s) of %s whose webhook never arrived", recovered, account)
        events_process_soon()
    return recovered


__all__ = [
    "events_process_soon",
    "deliveries_process_soon",
    "events_process",
    "opt_out_apply",
    "deliveries_process",
    "failing_trunks_probe",
    "delivery_replay",
    "hold_reason",
    "held_release",
    "tenant_held_release",
    "trunk_held_release",
    "webhook_secret_rotate",
    "inbound_reconcile",
    "STOP_WORDS",
    "START_WORDS",
    "RETRY_DELAYS",
    "RETRY_FOR",
    "LEASE_MARGIN",
    "forward_lease",
    "ROUTING_LOCK",
    "PROBE_EVERY",
    "RECONCILE_OVERLAP",
]
