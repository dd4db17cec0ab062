"""Queued messages sent through Wavix, fairly per account, and never twice.

- One drain per Wavix account sends at a time (with a few calls in flight): single messages first (the priority
  lane), then bulk ones; in each lane round-robin across tenants, so neither one tenant's bulk batch nor its 3CX's
  burst of single texts can starve another's. Each send first
  takes a token from the account's bucket (messaging/ratelimit.py).
- Exactly once: a message is claimed (Message.claim: queued → sending). If the outcome of a send is unknown — the
  answer timed out, or a worker died mid-call (the sweeper finds it "sending" too long) — the message goes to
  "unknown" and only a lookup at Wavix by tag (our message id) decides what happens next.
"""

import logging
import random
import time
from collections import deque
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from messaging import dispatch, ratelimit
from messaging.inflight import InFlight
from messaging.locks import one_at_a_time, still_holding
from messaging.models import (
    Message,
    WavixAccount,
)
from messaging.services import forwarding
from messaging.wavix import WavixClient, WavixPermanentError, WavixSent, WavixTransientError
from tenants.models import Tenant

logger = logging.getLogger(__name__)


MAX_SEND_ATTEMPTS = 8


DRAINING_LOCK = "outbound:draining:{}"  # per account: one drain sends at a time
DRAIN_BUDGET_SECONDS = 40  # under the task's soft time limit; the drain queues itself again if work remains
# The draining lock's lease, renewed while the drain runs: a worker killed mid-drain stops its account's sending for
# this long (then the sweeper's next ask starts a drain), not for the drain's whole budget. Longer than one call to
# Wavix can take (WAVIX_CONNECT_TIMEOUT + WAVIX_READ_TIMEOUT), during which the drain waits and does not renew.
DRAIN_LEASE_SECONDS = 30
DRAIN_RENEW_EVERY_SECONDS = 5


def _sendable() -> QuerySet[Message]:
    """Queued messages that may go now: due, and of a tenant that is not suspended (tenant_may_send's rule)."""
    return Message.objects.filter(status=Message.Status.QUEUED, tenant__status=Tenant.Status.ACTIVE).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now())
    )


def _due(account_id: int) -> QuerySet[Message]:
    return _sendable().filter(account_id=account_id)


def _next_batch(account_id: int, last_served: dict[int, float], size: int) -> list[int]:
    """The next `size` messages in sending order: single messages first, then bulk ones; in each lane the tenants
    take turns, each tenant's own messages oldest first.

    Single messages take turns too: a 3CX burst through the provider endpoint is hundreds of single messages,
    and another tenant's one text must not wait behind them (issue 16).
    """
    due = _due(account_id)
    batch = _in_turns(due.filter(priority=True), last_served, size)
    if len(batch) < size:
        batch += _in_turns(due.filter(priority=False), last_served, size - len(batch))
    return batch


def _in_turns(lane: QuerySet[Message], last_served: dict[int, float], size: int) -> list[int]:
    """Up to `size` messages of one lane: every tenant's 1st before anyone's 2nd, the least recently served first.

    One query: each tenant's first `size` due messages are ranked (1st, 2nd, …) by a window function.
    """
    ranked = (
        lane.annotate(turn=Window(RowNumber(), partition_by=F("tenant_id"), order_by=F("id").asc()))
        .filter(turn__lte=size)
        .values_list("pk", "tenant_id", "turn")
    )
    in_turn = sorted(ranked, key=lambda row: (row[2], last_served.get(row[1], 0.0), row[1]))
    return [pk for pk, _, _ in in_turn[:size]]


def outbound_drain(account_id: int) -> int:
    """Send the account's due messages at its rate, fairly, for up to DRAIN_BUDGET_SECONDS; returns how many.

    Up to OUTBOUND_SENDS_IN_FLIGHT calls to Wavix run at once (threads that only do HTTP): sent one at a
    time, a drain could never beat 1 / round-trip — 5 messages a second at 200 ms — whatever the account's
    rate. This thread keeps every database write: it claims messages just before their calls, as many at once
    as there are free slots and tokens (so nothing sits "sending" while it waits), and records each answer.
    """
    dispatch.OUTBOUND_DRAIN.started(account_id)
    # Without the cache the drain goes on unlocked: claims still keep every message single.
    lock = DRAINING_LOCK.format(account_id)
    with one_at_a_time(lock, timeout=DRAIN_LEASE_SECONDS, cache_down=True) as mine:
        if not mine:
            return 0  # another drain is sending for this account; it will see our messages
        account = WavixAccount.objects.filter(pk=account_id).first()
        sent = _send_due(account, lock) if account else 0
    if account and _due(account_id).exists():
        dispatch.OUTBOUND_DRAIN.ask(account_id)  # the budget ran out with work left, or a retry is due
    return sent


def _send_due(account: WavixAccount, lock: str) -> int:
    """outbound_drain's loop: claim, call Wavix on the in-flight threads, record each answer on this thread."""
    client, callback_url, rate = WavixClient.for_account(account), account.dlr_webhook_url, account.send_rate_per_second
    last_served: dict[int, float] = {}  # tenant id → when it was last served (time.monotonic())
    sent, deadline = 0, time.monotonic() + DRAIN_BUDGET_SECONDS
    renewed = time.monotonic()
    candidates: deque[int] = deque()
    with InFlight[Message](settings.OUTBOUND_SENDS_IN_FLIGHT, f"wavix-send-{account.pk}", _record) as in_flight:
        while time.monotonic() < deadline:
            if time.monotonic() - renewed >= DRAIN_RENEW_EVERY_SECONDS:
                still_holding(lock, timeout=DRAIN_LEASE_SECONDS)
                renewed = time.monotonic()
            wait = None  # how long to wait for an answer before trying to send more; None: until one comes
            if in_flight.free:
                if not candidates:
                    candidates.extend(_next_batch(account.pk, last_served, size=2 * in_flight.size))
                if candidates:
                    pks: list[int] = []
                    while len(pks) < in_flight.free and candidates and not (wait := ratelimit.take(account.pk, rate)):
                        pks.append(candidates.popleft())  # one token per call to Wavix
                    for message in Message.claim(pks, on_expire=forwarding.status_event_queue):
                        last_served[message.tenant_id] = time.monotonic()
                        in_flight.start(message, _post, message, client, callback_url)
                    if pks:
                        continue
                    assert wait is not None  # no token was taken: take() said how long until the next one
                    wait = min(wait, 1.0)
                elif not in_flight:
                    break  # nothing due and nothing on its way: done
            sent += len(in_flight.settle(timeout=wait))
        sent += len(in_flight)  # recorded as the block closes: every call made gets its answer recorded
    return sent


def _finish(message: Message, status: str, **fields: Any) -> None:
    previous_status = message.status
    message.transition(status)
    for name, value in fields.items():
        setattr(message, name if name != "error" else "error_message", value)
    with transaction.atomic():  # a text 3CX sent: its status event to 3CX is queued with the move, or neither
        message.save()
        forwarding.status_event_queue(message, previous_status)


def _post(
    message: Message, client: WavixClient, callback_url: str
) -> WavixSent | WavixTransientError | WavixPermanentError:
    """The call to Wavix, on a sending thread: HTTP only, no database; returns its answer or its error."""
    remaining = int((message.expires_at - timezone.now()).total_seconds()) if message.expires_at else 86400
    try:
        return client.send_message(
            sender=message.from_number,
            to=message.to_number,
            text=message.text,
            media=message.media,
            callback_url=callback_url,
            tag=str(message.pk),
            validity=max(remaining, 60),
        )
    except (WavixTransientError, WavixPermanentError) as error:
        return error
    except Exception as error:  # noqa: BLE001 - a fault of ours, not Wavix's: whether it went is unknown
        logger.exception("outbound: sending message %s failed unexpectedly", message.pk)
        return WavixTransientError(f"Unexpected error while sending ({type(error).__name__})", may_have_arrived=True)


def _record(message: Message, answer: WavixSent | WavixTransientError | WavixPermanentError) -> None:
    if isinstance(answer, WavixTransientError):
        _after_transient(message, answer)
    elif isinstance(answer, WavixPermanentError):
        _finish(message, Message.Status.FAILED, error=answer.message[:500], error_code=str(answer.status or ""))
    else:
        _accepted(message, answer)


def _accepted(message: Message, sent: WavixSent) -> None:
    message.wavix_message_id = sent.wavix_id
    # Wavix's counts as the message's rules read them: a garbled one is left out (the message keeps its own
    # segment count), never allowed to fail the save that records a message Wavix has taken.
    message.segments = Message.segments_from(sent.segments) or message.segments
    if sent.charge not in (None, ""):
        message.charge = Message.charge_from(sent.charge)
        if message.charge is None:
            logger.warning(
                "outbound: message %s: Wavix's charge %r is not an amount; left out", message.pk, sent.charge
            )
    message.sent_at = message.sent_at or timezone.now()
    _finish(message, Message.Status.ACCEPTED)


def _after_transient(message: Message, error: WavixTransientError) -> None:
    if error.may_have_arrived:
        _finish(message, Message.Status.UNKNOWN, error=error.message[:500])
        dispatch.OUTBOUND_RECONCILE.soon(message.pk, countdown=10)
        return
    if error.status == 429:
        ratelimit.slow_down(message.account_id)  # Wavix says slower: slow down, do not fail the message
        delay, attempts = timedelta(seconds=1), message.attempts - 1  # a 429 is not a failed attempt
    else:
        delay = timedelta(seconds=min(600, 5 * 2**message.attempts) * random.uniform(0.8, 1.2))
        attempts = message.attempts
        if attempts >= MAX_SEND_ATTEMPTS:
            _finish(
                message,
                Message.Status.FAILED,
                error=f"Wavix could not take it after {attempts} attempts: {error.message}",
            )
            return
    message.attempts, message.next_attempt_at, message.error_message = (
        attempts,
        timezone.now() + delay,
        error.message[:500],
    )
    _finish(message, Message.Status.QUEUED)


def outbound_reconcile(message_id: int) -> str | None:
    """Settle a message whose send may or may not have reached Wavix, by asking Wavix for its tag."""
    message = Message.objects.select_related("account").filter(pk=message_id, status=Message.Status.UNKNOWN).first()
    if message is None:
        return None
    found = WavixClient.for_account(message.account).find_sent(str(message.pk))  # transient errors: the task retries
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message_id)
        if message.status != Message.Status.UNKNOWN:
            return message.status
        if found:
            _accepted(message, found)
        elif message.expires_at and message.expires_at <= timezone.now():
            _finish(message, Message.Status.EXPIRED, error=Message.EXPIRED_NOTE)
        else:
            message.next_attempt_at = timezone.now()
            _finish(message, Message.Status.QUEUED)  # Wavix never got it: sending it now cannot make two
    if message.status == Message.Status.QUEUED:
        dispatch.OUTBOUND_DRAIN.ask_soon(message.account_id)
    return message.status


def outbound_sweep() -> None:
    """Periodic: settle sends whose worker died, retry what fell due, and drain accounts with waiting messages."""
    # "Sending" for longer than any call can take: its worker died mid-call.
    stale = timezone.now() - timedelta(seconds=settings.OUTBOUND_UNKNOWN_AFTER_SECONDS)
    for pk in Message.objects.filter(status=Message.Status.SENDING, send_started_at__lt=stale).values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            message = Message.objects.select_for_update().get(pk=pk)
            if message.status == Message.Status.SENDING:
                _finish(message, Message.Status.UNKNOWN, error="The worker sending it stopped; checking with Wavix.")
        dispatch.OUTBOUND_RECONCILE.soon(pk, countdown=0)
    for pk in Message.objects.filter(status=Message.Status.UNKNOWN, updated_at__lt=stale).values_list("pk", flat=True):
        dispatch.OUTBOUND_RECONCILE.soon(pk, countdown=0)  # a reconciliation that was lost with the broker
    for account_id in _sendable().values_list("account_id", flat=True).distinct():
        dispatch.OUTBOUND_DRAIN.ask(account_id)
