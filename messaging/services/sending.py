"""Outbound messages: validated before anything is queued, sent fairly per Wavix account, and never twice.

- Validation names the field and the reason (destination, sender registration, encoding and length, MMS
  rules, opt-outs, Wavix's 20-per-day limit); nothing is stored when a message is refused.
- The database is the queue. One drain per Wavix account sends at a time (with a few calls in flight):
  single messages first (the priority lane), then round-robin across tenants, so one tenant's bulk batch
  cannot starve another's. Each send first takes a token from the account's bucket (messaging/ratelimit.py).
- Exactly once: a message is claimed with a conditional update (queued → sending). If the outcome of a send is
  unknown — the answer timed out, or a worker died mid-call (the sweeper finds it "sending" too long) — the
  message goes to "unknown" and only a lookup at Wavix by tag (our message id) decides what happens next.
"""

import hashlib
import json
import logging
import math
import random
import time
from collections import deque
from concurrent import futures
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from urllib.parse import urlsplit

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from messaging import ratelimit
from messaging.models import (
    CountryRule,
    IdempotentRequest,
    Message,
    OptOut,
    SenderID,
    SenderIDCountry,
    WavixAccount,
    country_of,
    to_e164,
)
from messaging.wavix import WavixClient, WavixPermanentError, WavixSent, WavixTransientError
from tenants.models import Tenant

logger = logging.getLogger(__name__)

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")  # each takes two septets (an escape, then the character)
LIMITS = {Message.Encoding.GSM7: 1630, Message.Encoding.UCS2: 670}
MMS_COUNTRIES = frozenset({"US", "CA"})
MMS_TYPES = frozenset("jpg jpeg png bmp gif wav mp3 amr aac midi mid 3gpp vcf".split())
MAX_MEDIA = 5
DAILY_LIMIT = 20  # Wavix: messages to one destination per 24 h
BULK_LIMIT = 1000
DEFAULT_VALIDITY = timedelta(hours=24)
MAX_SEND_ATTEMPTS = 8

DRAIN_BUDGET_SECONDS = 40  # under the task's soft time limit; the drain queues itself again if work remains


def text_size(text: str) -> tuple[str, int, int]:
    """(encoding, length in units Wavix counts, segments): GSM-7 with its extension table, else UCS-2."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        units = sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
        single, part, encoding = 160, 153, Message.Encoding.GSM7
    else:
        units = len(text.encode("utf-16-le")) // 2  # characters outside the BMP (emoji) take two
        single, part, encoding = 70, 67, Message.Encoding.UCS2
    return encoding, units, 1 if units <= single else math.ceil(units / part)


def message_parts(text: str, media=()) -> tuple[str, int]:
    """(encoding, segments) a message counts as, outbound or inbound: its text's, or one for an MMS."""
    encoding, _, segments = text_size(text)
    return encoding, 1 if media else segments


@dataclass(frozen=True)
class Draft:
    """A message that passed every check, ready to queue."""

    tenant: Tenant
    sender: SenderID
    to: str
    text: str
    media: tuple[str, ...]
    encoding: str
    segments: int


def sender_for(tenant: Tenant, *, sender=None, trunk=None) -> SenderID:
    """The sender ID a request names (its id or value), or a trunk's Main Trunk No. — the tenant's own only."""
    if trunk is not None:
        if trunk.tenant_id != tenant.pk or trunk.main_sender_id is None:
            raise ValidationError({"trunk": "This trunk has no Main Trunk No. (sender ID) yet."})
        return trunk.main_sender
    if sender in (None, ""):
        raise ValidationError({"sender": "Name the sender ID (or a trunk) to send from."})
    found = SenderID.objects.filter(tenant=tenant).filter(
        # isascii(): "²" is a digit to isdigit() but not to int().
        Q(pk=int(sender))
        if str(sender).isascii() and str(sender).isdigit() and len(str(sender)) < 10
        else Q(value=str(sender).strip())
    )
    found = found.select_related("account").first()
    if found is None:
        raise ValidationError({"sender": f"{sender} is not one of {tenant}'s sender IDs."})
    return found


def tenant_may_send(tenant: Tenant) -> None:
    """A suspended tenant sends nothing: refused here for every way in (API, admin, wizard), and what it queued
    before the suspension waits in the queue (_due) until it is resumed or its validity runs out."""
    if not tenant.is_active:
        raise ValidationError(
            {"tenant": f"{tenant} is suspended: nothing is sent for it. Resume it on the tenant's page first."}
        )


def message_validate(*, tenant: Tenant, sender: SenderID, to: str, text: str, media=()) -> Draft:
    """Check one message against every rule; raise a ValidationError naming the field, or return the draft."""
    tenant_may_send(tenant)
    try:
        destination = to_e164(to, tenant.default_country or None)
    except ValidationError as error:
        raise ValidationError({"to": error.messages}) from None
    country = country_of(destination)
    rule = CountryRule.objects.filter(country=country).first()
    place = f"{rule.name} ({country})" if rule else country
    if rule and rule.policy_for(sender.type) == CountryRule.Policy.UNSUPPORTED:
        raise ValidationError(
            {"sender": f"{sender.get_type_display().split(' (')[0]} sender IDs are not supported in {place}."}
        )
    registration = SenderIDCountry.objects.filter(sender=sender, country=country).first()
    if registration is None:
        raise ValidationError({"sender": f"{sender} is not registered for {place}; add the country to it first."})
    if not registration.can_send:
        note = f" Latest note: {registration.note}" if registration.note else ""
        raise ValidationError(
            {
                "sender": f"{sender} is not allow-listed for {place}: its registration is "
                f"{registration.get_status_display().lower()}.{note}"
            }
        )
    text, media = text or "", tuple(media or ())
    if not text.strip() and not media:
        raise ValidationError({"text": "Write the message (or attach media)."})
    encoding, units, _ = text_size(text)
    if units > LIMITS[encoding]:
        raise ValidationError(
            {
                "text": f"The text is {units} {Message.Encoding(encoding).label} characters; Wavix takes at most "
                f"{LIMITS[encoding]}."
            }
        )
    if media:
        _check_media(sender, country, place, media)
    opted_out = OptOut.objects.filter(tenant=tenant, number=destination).first()
    if opted_out:
        raise ValidationError(
            {
                "to": f"{destination} opted out ({opted_out.keyword}, {opted_out.created_at:%Y-%m-%d}); "
                "they must text START before they can be messaged again."
            }
        )
    recent = Message.objects.filter(
        account_id=sender.account_id,
        direction=Message.Direction.OUTBOUND,
        to_number=destination,
        created_at__gte=timezone.now() - timedelta(hours=24),
    ).exclude(status__in=[Message.Status.FAILED, Message.Status.REJECTED, Message.Status.EXPIRED])
    if recent.count() >= DAILY_LIMIT:
        raise ValidationError(
            {"to": f"{destination} already has {DAILY_LIMIT} messages in the last 24 hours (Wavix's limit)."}
        )
    return Draft(tenant, sender, destination, text, media, *message_parts(text, media))


def _check_media(sender: SenderID, country: str, place: str, media) -> None:
    if sender.type != SenderID.Type.NUMERIC:
        raise ValidationError({"media": "MMS goes only from a numeric sender ID (a phone number)."})
    if country not in MMS_COUNTRIES:
        raise ValidationError({"media": f"MMS is possible only to the US and Canada, not to {place}."})
    if len(media) > MAX_MEDIA:
        raise ValidationError({"media": f"{len(media)} attachments; at most {MAX_MEDIA}."})
    for url in media:
        parts = urlsplit(str(url))
        extension = parts.path.rsplit(".", 1)[-1].lower() if "." in parts.path else ""
        if parts.scheme != "https" or not parts.netloc:
            raise ValidationError({"media": f"{url} is not an https:// URL."})
        if extension not in MMS_TYPES:
            raise ValidationError(
                {"media": f"{url}: .{extension or '?'} files cannot be sent; use {', '.join(sorted(MMS_TYPES))}."}
            )


# ---------------------------------------------------------------------------------------------------------------
# Queueing
# ---------------------------------------------------------------------------------------------------------------


def _queue(draft: Draft, *, priority: bool, validity: timedelta, trunk) -> Message:
    now = timezone.now()
    return Message.objects.create(
        tenant=draft.tenant,
        account_id=draft.sender.account_id,
        trunk=trunk,
        sender=draft.sender,
        direction=Message.Direction.OUTBOUND,
        from_number=draft.sender.value,
        to_number=draft.to,
        text=draft.text,
        media=list(draft.media),
        encoding=draft.encoding,
        segments=draft.segments,
        status=Message.Status.QUEUED,
        priority=priority,
        next_attempt_at=now,
        expires_at=now + validity,
    )


def message_send(*, tenant: Tenant, sender: SenderID, to: str, text: str, media=(), validity=None) -> Message:
    """Validate and queue one message (the priority lane); raises ValidationError with the field and reason."""
    draft = message_validate(tenant=tenant, sender=sender, to=to, text=text, media=media)
    with transaction.atomic():
        message = _queue(draft, priority=True, validity=validity or DEFAULT_VALIDITY, trunk=sender.trunks.first())
        transaction.on_commit(partial(drain_soon, sender.account_id))
    return message


def message_send_bulk(
    *, tenant: Tenant, sender: SenderID, recipients, text: str, media=(), validity=None
) -> list[dict]:
    """One text to up to 1,000 recipients: a message each, and a result per recipient (queued, or why not)."""
    recipients = list(recipients)
    tenant_may_send(tenant)  # one refusal for the whole request, not one per recipient
    if not recipients or len(recipients) > BULK_LIMIT:
        raise ValidationError({"recipients": f"Give between 1 and {BULK_LIMIT} recipients."})
    results, trunk = [], sender.trunks.first()
    with transaction.atomic():
        for recipient in recipients:
            try:
                draft = message_validate(tenant=tenant, sender=sender, to=str(recipient), text=text, media=media)
            except ValidationError as error:
                results.append({"to": str(recipient), "errors": error.message_dict})
                continue
            message = _queue(draft, priority=False, validity=validity or DEFAULT_VALIDITY, trunk=trunk)
            results.append({"to": message.to_number, "id": message.pk, "status": message.status})
        transaction.on_commit(partial(drain_soon, sender.account_id))
    return results


def idempotent(tenant: Tenant, key: str | None, request_body, produce) -> tuple[int, dict, bool]:
    """Answer a request once per Idempotency-Key (24 h): (status, response, replayed). `produce` makes a new one."""
    if not key:
        status, response = produce()
        return status, response, False
    digest = hashlib.sha256(json.dumps(request_body, sort_keys=True, default=str).encode()).hexdigest()
    IdempotentRequest.objects.filter(
        tenant=tenant, key=key, created_at__lt=timezone.now() - IdempotentRequest.TTL
    ).delete()
    previous = IdempotentRequest.objects.filter(tenant=tenant, key=key).first()
    if previous:
        if previous.request_hash != digest:
            raise ValidationError(
                {"Idempotency-Key": "This key was used for a different request in the last 24 hours."}
            )
        return previous.response_status, previous.response, True
    with transaction.atomic():
        status, response = produce()
        try:
            with transaction.atomic():
                IdempotentRequest.objects.create(
                    tenant=tenant, key=key, request_hash=digest, response_status=status, response=response
                )
        except IntegrityError:  # the same key, at the same moment, from another request: it won; undo ours
            raise ValidationError({"Idempotency-Key": "A request with this key is being handled; retry it."}) from None
    return status, response, False


# ---------------------------------------------------------------------------------------------------------------
# Sending
# ---------------------------------------------------------------------------------------------------------------


def drain_soon(account_id: int) -> None:
    """Ask a worker to drain the account's queue, unless one is already asked for (the sweeper covers outages)."""
    try:
        if cache.add(f"outbound:drain-queued:{account_id}", 1, timeout=30):
            current_app.send_task("messaging.tasks.outbound_drain", args=(account_id,), queue="outbound", retry=False)
    except Exception:  # noqa: BLE001 - the broker or cache is down: the message is queued in the database
        logger.warning("outbound: could not queue a drain for account %s; the sweeper will", account_id)


def _sendable():
    """Queued messages that may go now: due, and of a tenant that is not suspended (tenant_may_send's rule)."""
    return Message.objects.filter(status=Message.Status.QUEUED, tenant__status=Tenant.Status.ACTIVE).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now())
    )


def _due(account_id: int):
    return _sendable().filter(account_id=account_id)


def _next_batch(account_id: int, last_served: dict[int, float], size: int) -> list[int]:
    """The next `size` messages in sending order: single messages oldest first, then the tenants in turn.

    Two queries for a whole batch: each tenant's first `size` due messages are ranked (1st, 2nd, …) and the
    batch takes every tenant's 1st before anyone's 2nd, the least recently served tenant first.
    """
    due = _due(account_id)
    batch = list(due.filter(priority=True).order_by("id").values_list("pk", flat=True)[:size])
    if len(batch) < size:
        ranked = (
            due.filter(priority=False)
            .annotate(turn=Window(RowNumber(), partition_by=F("tenant_id"), order_by=F("id").asc()))
            .filter(turn__lte=size - len(batch))
            .values_list("pk", "tenant_id", "turn")
        )
        in_turn = sorted(ranked, key=lambda row: (row[2], last_served.get(row[1], 0.0), row[1]))
        batch += [pk for pk, _, _ in in_turn[: size - len(batch)]]
    return batch


def outbound_drain(account_id: int) -> int:
    """Send the account's due messages at its rate, fairly, for up to DRAIN_BUDGET_SECONDS; returns how many.

    Up to OUTBOUND_SENDS_IN_FLIGHT calls to Wavix run at once (threads that only do HTTP): sent one at a
    time, a drain could never beat 1 / round-trip — 5 messages a second at 200 ms — whatever the account's
    rate. This thread keeps every database write: it claims messages just before their calls, as many at once
    as there are free slots and tokens (so nothing sits "sending" while it waits), and records each answer.
    """
    try:
        cache.delete(f"outbound:drain-queued:{account_id}")
        if not cache.add(f"outbound:draining:{account_id}", 1, timeout=DRAIN_BUDGET_SECONDS + 60):
            return 0  # another drain is sending for this account; it will see our messages
    except Exception:  # noqa: BLE001 - without the cache, claims still keep every message single
        logger.warning("outbound: cache unreachable, draining account %s without its lock", account_id)
    account = WavixAccount.objects.filter(pk=account_id).first()
    in_flight_max = max(1, settings.OUTBOUND_SENDS_IN_FLIGHT)
    sent, last_served, deadline = 0, {}, time.monotonic() + DRAIN_BUDGET_SECONDS
    candidates: deque[int] = deque()
    in_flight: dict[futures.Future, Message] = {}
    pool = futures.ThreadPoolExecutor(max_workers=in_flight_max, thread_name_prefix=f"wavix-send-{account_id}")
    try:
        if account:
            client, callback_url = WavixClient.for_account(account), account.dlr_webhook_url
            rate = account.send_rate_per_second
        while account and time.monotonic() < deadline:
            wait = None  # how long to wait for an answer before trying to send more; None: until one comes
            free = in_flight_max - len(in_flight)
            if free:
                if not candidates:
                    candidates.extend(_next_batch(account_id, last_served, size=2 * in_flight_max))
                if candidates:
                    pks = []
                    while len(pks) < free and candidates and not (wait := ratelimit.take(account_id, rate)):
                        pks.append(candidates.popleft())  # one token per call to Wavix
                    for message in Message.claim(pks):
                        last_served[message.tenant_id] = time.monotonic()
                        in_flight[pool.submit(_post, message, client, callback_url)] = message
                    if pks:
                        continue
                    wait = min(wait, 1.0)
                elif not in_flight:
                    break  # nothing due and nothing on its way: done
            done, _ = futures.wait(in_flight, timeout=wait, return_when=futures.FIRST_COMPLETED)
            for future in done:
                _record(in_flight.pop(future), future.result())
                sent += 1
    finally:
        for future in futures.as_completed(in_flight):  # every call made gets its answer recorded
            _record(in_flight[future], future.result())
            sent += 1
        pool.shutdown()
        try:
            cache.delete(f"outbound:draining:{account_id}")
        except Exception:  # noqa: BLE001
            pass
    if account and _due(account_id).exists():
        drain_soon(account_id)  # the budget ran out with work left, or a retry is due
    return sent


def _finish(message: Message, status: str, **fields) -> None:
    message.transition(status)
    for name, value in fields.items():
        setattr(message, name if name != "error" else "error_message", value)
    message.save()


def _post(message: Message, client: WavixClient, callback_url: str) -> WavixSent | Exception:
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


def _record(message: Message, answer: WavixSent | Exception) -> None:
    if isinstance(answer, WavixTransientError):
        _after_transient(message, answer)
    elif isinstance(answer, WavixPermanentError):
        _finish(message, Message.Status.FAILED, error=answer.message[:500], error_code=str(answer.status or ""))
    else:
        _accepted(message, answer)


def _accepted(message: Message, sent) -> None:
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
        reconcile_soon(message.pk)
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


def reconcile_soon(message_id: int, countdown: int = 10) -> None:
    current_app.send_task(
        "messaging.tasks.outbound_reconcile", args=(message_id,), queue="outbound", countdown=countdown
    )


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
        transaction.on_commit(partial(drain_soon, message.account_id))
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
        reconcile_soon(pk, countdown=0)
    for pk in Message.objects.filter(status=Message.Status.UNKNOWN, updated_at__lt=stale).values_list("pk", flat=True):
        reconcile_soon(pk, countdown=0)  # a reconciliation that was lost with the broker
    for account_id in _sendable().values_list("account_id", flat=True).distinct():
        drain_soon(account_id)


__all__ = [
    "BULK_LIMIT",
    "Draft",
    "idempotent",
    "message_send",
    "message_send_bulk",
    "message_parts",
    "message_validate",
    "outbound_drain",
    "outbound_reconcile",
    "outbound_sweep",
    "sender_for",
    "tenant_may_send",
    "text_size",
]
