"""Inbound webhooks routed: each stored event becomes a message (or an opt-out, a delivery report, a 10DLC status)
and, for a text, one delivery per trunk that forwarding (services/forwarding.py) takes to 3CX. Texts held while
a tenant is suspended or a trunk's SMS is off are released here; texts whose webhook never came are recovered
from Wavix's listing (inbound_reconcile).

A webhook is stored by the view, then processed in two stages, each in a Celery task on the `inbound` queue:
routing (here; DB only, serialized so a conversation's deliveries are created in the order Wavix sent them) and
forwarding (network: the head of each conversation, in parallel across conversations).
"""

import hashlib
import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from messaging import dispatch, metrics, webhooks
from messaging.models import (
    Delivery,
    Message,
    OptOut,
    PartitionLeases,
    PhoneNumber,
    RelayPartition,
    Trunk,
    WavixAccount,
    WebhookEvent,
    relay_partition,
    values_update,
)
from messaging.services import reports
from messaging.services.outbound import message_parts
from messaging.wavix import (
    WavixClient,
)
from tenants.models import Tenant

logger = logging.getLogger(__name__)


STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})


START_WORDS = frozenset({"START", "UNSTOP"})


# PostgreSQL advisory lock id. Routers take it shared, each batch: they never wait for each other (each works its own
# partitions). Releasing held texts takes it exclusively: a text routed while the release looks would be held after
# it looked, and stay held (held_release).
ROUTING_LOCK = 72_211_001

# How long a router holds its partitions without renewing (renewed every batch; a batch takes well under a second,
# a drain at most DRAIN_SECONDS and a batch). A killed router's partitions wait this long for another: a trickle's
# router holds nearly every busy partition. One that merely stalled past it is kept from routing twice by the row
# locks (_for_update).
ROUTING_LEASE = timedelta(seconds=10)
# A routing drain starts no batch after this long (seconds) and asks for another drain if work is left: its worker's
# turn goes to what was queued meanwhile (forwarding), instead of routing a steady trickle four texts at a time for
# as long as it lasts while the texts it routed wait to be forwarded.
DRAIN_SECONDS = 1.0

# (account id, number) → that account's PhoneNumber, or None: the receiving numbers of one batch.
NumberCache = dict[tuple[int, str], PhoneNumber | None]


def events_process(batch_size: int = 500) -> int:
    """Route the stored webhook events of the partitions this drain can lease, oldest first, until none is left
    that no other drain holds; returns how many were processed.

    Each conversation's events are in one partition (models/relay.py) and a partition is routed by one drain at a
    time, in id order: a conversation's deliveries are created in the order Wavix sent its texts, while drains on
    other workers route the other partitions. A drain leases about a batch's worth of busy partitions at a time —
    all of them when little waits, so that a trickle is routed in one batch, not in one small batch per partition
    — and asks for help when more than that waits, which a free worker gives. While it runs, the intake's asks are
    folded into it (dispatch running()): a second router queued for a trickle would only take the other worker
    from forwarding. It starts no batch after DRAIN_SECONDS and asks for another drain if work is left."""
    dispatch.EVENTS_DRAIN.running()
    processed = 0
    leases = PartitionLeases(RelayPartition.Stage.ROUTING, ROUTING_LEASE)
    stop_at = time.monotonic() + DRAIN_SECONDS
    try:
        while time.monotonic() < stop_at:
            waiting = _pending_by_partition()
            if not leases.mine & waiting.keys():
                leases.release()  # done with those: the next claim takes whichever are busy now
                if not leases.claim(waiting, budget=batch_size):
                    break
                if leases.free_left:
                    dispatch.EVENTS_DRAIN.help()  # more than a batch waits: another worker helps
            with transaction.atomic():
                _routing_lock(shared=True)
                batch = list(
                    _for_update(
                        WebhookEvent.objects.select_related("account")
                        .filter(state=WebhookEvent.State.PENDING, partition__in=leases.mine)
                        .order_by("id")[:batch_size]
                    )
                )
                # Looked up afresh for each batch: a trunk switched off (or a number moved) between two batches of
                # a long drain is seen by the next one.
                numbers: NumberCache = {}  # (account, number) → PhoneNumber: a burst has few receiving numbers
                _route_batch(batch, numbers)
            if batch:
                dispatch.DELIVERIES_DRAIN.ask()  # (coalesced) its deliveries go while this drain routes the next
            processed += len(batch)
            if len(batch) < batch_size:
                leases.release()  # all routed (what arrived since is seen by the next claim)
            leases.renew()
            dispatch.EVENTS_DRAIN.still_running()
    finally:
        leases.release()
        dispatch.EVENTS_DRAIN.ended()
    if leases.free_among(_pending_by_partition()):
        # Stored while this drain held its partitions, and a drain asked for meanwhile found them held: without this
        # ask they would wait for the sweeper. (Work in partitions another drain holds is that drain's to see.)
        dispatch.EVENTS_DRAIN.ask()
    return processed


def _pending_by_partition() -> dict[int, int]:
    """How many events wait to be routed in each partition that has any."""
    rows = (
        WebhookEvent.objects.filter(state=WebhookEvent.State.PENDING)
        .order_by()
        .values_list("partition")
        .annotate(waiting=Count("id"))
    )
    return dict(rows)


def _for_update(events: QuerySet[WebhookEvent]) -> QuerySet[WebhookEvent]:
    """The batch's rows locked on PostgreSQL (SQLite's write transactions are one at a time already): should a router
    stall past its lease and another take its partitions, the second waits for the first's batch and skips what it
    routed (PostgreSQL re-checks `pending` on a locked row), so nothing is routed twice or out of order."""
    return events.select_for_update(of=("self",)) if connection.vendor == "postgresql" else events


def _routing_lock(*, shared: bool = False) -> None:
    """Until this transaction ends: shared for routing batches (they run side by side), exclusive for releasing held
    texts (which then sees everything routed before it, and routing after it sees the release). SQLite's write
    transactions are one at a time already."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            lock = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
            cursor.execute(f"SELECT {lock}(%s)", [ROUTING_LOCK])


def _route_batch(batch: list[WebhookEvent], numbers: NumberCache) -> None:
    """Route a batch in a few statements: the common texts (to a number with a trunk, nothing holding them, new) and
    delivery reports in bulk; every other event (held, unroutable, unreadable, a repeat, a 10DLC status) one by one
    as before. None of those creates a delivery, so the bulk inserts keep each conversation's order.

    Anything the bulk path trips on rolls it back, and the batch is routed one event at a time instead: an event
    that breaks processing is then marked invalid alone."""
    parsed = [(event, *webhooks.parse(event.kind, bytes(event.body))) for event in batch]
    try:
        with transaction.atomic():
            single = _route_bulk(parsed, numbers)
    except Exception:  # noqa: BLE001 - logged; the one-by-one path records what each event did
        logger.exception("relay: a batch of %s events could not be routed in bulk; routing them one by one", len(batch))
        numbers.clear()
        single = batch
    for event in single:
        _process_event(event, numbers)


Parsed = list[tuple[WebhookEvent, dict[str, Any] | None, str | None]]  # (event, payload, problem) per event


# An inbound text the bulk path routes: its event, Wavix's body, and the receiving number's tenant id and trunk.
Text = tuple[WebhookEvent, dict[str, Any], str, int, Trunk]


def _route_bulk(parsed: Parsed, numbers: NumberCache) -> list[WebhookEvent]:
    """Route the common inbound texts and the delivery reports of a batch in bulk; return the other events."""
    readable = [(event, payload) for event, payload, problem in parsed if problem is None and payload is not None]
    inbound = [(event, payload) for event, payload in readable if event.kind == WebhookEvent.Kind.INBOUND]
    _numbers_load(numbers, [(event.account_id, webhooks.as_stored_number(payload["to"])) for event, payload in inbound])
    known = _messages_known([(event.account_id, str(payload["message_id"])) for event, payload in inbound])
    texts: list[Text] = []
    reports_due: list[tuple[WebhookEvent, dict[str, Any]]] = []
    single: list[WebhookEvent] = []
    for event, payload, problem in parsed:
        if problem is not None or payload is None or event.kind == WebhookEvent.Kind.TENDLC:
            single.append(event)
        elif event.kind == WebhookEvent.Kind.DLR:
            reports_due.append((event, payload))
        else:
            to = webhooks.as_stored_number(payload["to"])
            number = numbers.get((event.account_id, to))
            key = (event.account_id, str(payload["message_id"]))
            tenant, trunk = (number.tenant, number.trunk) if number is not None else (None, None)
            if tenant is None or trunk is None or key in known or hold_reason(tenant, trunk):
                single.append(event)  # unroutable, a repeat or held: the one-by-one path says which
                continue
            known.add(key)  # the same text twice in one batch (a webhook and a reconciliation): the second repeats
            texts.append((event, payload, to, tenant.pk, trunk))
    _texts_route(texts)
    reports.reports_apply(reports_due)
    now = timezone.now()
    values_update(  # every event of the bulk path, each with its own outcome, in one statement
        WebhookEvent,
        [
            {
                "pk": event.pk,
                "state": event.state,
                "tenant": event.tenant_id,
                "last_error": event.last_error,
                "attempts": event.attempts + 1,
                "processed_at": now,
            }
            for event in [*(text[0] for text in texts), *(report[0] for report in reports_due)]
        ],
    )
    return single


def _numbers_load(numbers: NumberCache, wanted: list[tuple[int, str]]) -> None:
    """Look up the receiving numbers of a batch that are not cached yet, in one query."""
    missing = {pair for pair in wanted if pair not in numbers}
    if not missing:
        return
    found = PhoneNumber.objects.select_related("trunk", "tenant").filter(
        account_id__in={account for account, _ in missing}, number__in={number for _, number in missing}
    )
    for number in found:
        numbers[number.account_id, number.number] = number
    for pair in missing:
        numbers.setdefault(pair, None)


def _messages_known(keys: list[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which of these (account, Wavix message id) already have a message."""
    if not keys:
        return set()
    rows = Message.objects.filter(
        account_id__in={account for account, _ in keys}, wavix_message_id__in={message_id for _, message_id in keys}
    ).values_list("account_id", "wavix_message_id")
    return set(rows) & set(keys)


def _texts_route(texts: list[Text]) -> None:
    """The messages and their deliveries, one INSERT each for the whole batch; each event's outcome is set on it (the
    caller stores them)."""
    if not texts:
        return
    now = timezone.now()
    messages = Message.objects.bulk_create(
        [
            _inbound_message_row(event, payload, to, tenant_id=tenant_id, trunk=trunk, now=now)
            for event, payload, to, tenant_id, trunk in texts
        ]
    )
    Delivery.objects.bulk_create(
        [
            Delivery(
                tenant_id=tenant_id,
                message_id=message.pk,
                trunk_id=trunk.pk,
                remote_number=message.from_number,
                partition=relay_partition(message.from_number),
                next_attempt_at=now,
            )
            for message, (_, _, _, tenant_id, trunk) in zip(messages, texts, strict=True)
        ]
    )
    for message in messages:
        opt_out_apply(message.tenant_id, message.from_number, message.text)  # a query only for a stop or start word
    for event, _, _, tenant_id, _ in texts:
        event.state, event.tenant_id, event.last_error = WebhookEvent.State.PROCESSED, tenant_id, ""


def _process_event(event: WebhookEvent, numbers: NumberCache) -> None:
    """One event, in its own savepoint: a body that breaks processing is marked invalid, not retried forever.

    The body is checked again with the intake's rule (webhooks.parse): rows stored before a rule was tightened, and
    texts recovered from Wavix's list (inbound_reconcile), are parked with the same reason a webhook would get."""
    event.attempts += 1
    payload, problem = webhooks.parse(event.kind, bytes(event.body))
    if problem is None:
        assert payload is not None  # parse() gives a payload whenever it finds no problem
        try:
            with transaction.atomic():
                if event.kind == WebhookEvent.Kind.INBOUND:
                    _route_inbound(event, payload, numbers)
                elif event.kind == WebhookEvent.Kind.DLR:
                    reports.apply_report(event, payload)
                else:
                    reports.apply_tendlc(event, payload)
        except Exception as error:  # noqa: BLE001 - whatever it was, it is recorded and visible in the admin
            logger.exception("relay: webhook event %s could not be processed", event.pk)
            problem = f"{type(error).__name__}: {error}"
    if problem is not None:
        event.state, event.last_error = WebhookEvent.State.INVALID, problem[:500]
        if event.kind == WebhookEvent.Kind.INBOUND:
            _unreadable_inbound(event, numbers)
    event.processed_at = timezone.now()
    event.save(update_fields=["state", "tenant", "last_error", "attempts", "processed_at"])


def _receiving_number(event: WebhookEvent, to: str, numbers: NumberCache) -> PhoneNumber | None:
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


def _route_inbound(event: WebhookEvent, payload: dict[str, Any], numbers: NumberCache) -> None:
    to = webhooks.as_stored_number(payload["to"])
    number = _receiving_number(event, to, numbers)
    if number is None or number.tenant_id is None or number.trunk_id is None:
        _route_nowhere(event, payload, to, number)
        return
    tenant, trunk = number.tenant, number.trunk
    assert tenant is not None and trunk is not None  # their ids are set
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


def _route_nowhere(event: WebhookEvent, payload: dict[str, Any], to: str, number: PhoneNumber | None) -> None:
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
    event: WebhookEvent,
    payload: dict[str, Any],
    to: str,
    *,
    tenant_id: int,
    trunk: Trunk | None,
    status: str,
    reason: str,
) -> tuple[Message, bool]:
    """The message of an inbound webhook, created once per Wavix message id, with its encoding and segments."""
    row = _inbound_message_row(event, payload, to, tenant_id=tenant_id, trunk=trunk, status=status, reason=reason)
    defaults = {
        field.attname: getattr(row, field.attname)
        for field in Message._meta.concrete_fields
        if not field.primary_key and field.attname not in ("account_id", "wavix_message_id")
    }
    return Message.objects.get_or_create(
        account=event.account, wavix_message_id=row.wavix_message_id, defaults=defaults
    )


def _inbound_message_row(
    event: WebhookEvent,
    payload: dict[str, Any],
    to: str,
    *,
    tenant_id: int,
    trunk: Trunk | None,
    status: str = Message.Status.RECEIVED,
    reason: str = "",
    now: datetime | None = None,
) -> Message:
    """An inbound webhook's message, not saved: its text, media, encoding and segments read from Wavix's body."""
    body = payload.get("message_body")
    if not isinstance(body, dict):
        body = {}
    text = str(body.get("text") or "")
    media = [str(url) for url in body.get("media") or [] if isinstance(url, str)]
    encoding, segments = message_parts(text, media)
    now = now or timezone.now()
    return Message(
        account_id=event.account_id,
        wavix_message_id=str(payload["message_id"]),
        tenant_id=tenant_id,
        trunk=trunk,
        direction=Message.Direction.INBOUND,
        from_number=webhooks.as_stored_number(payload["from"]),
        to_number=to,
        text=text,
        media=media,
        encoding=encoding,
        segments=segments,
        status=status,
        not_forwarded_reason=reason[:300],
        completed_at=now if status in Message.FINAL else None,
        source_event_id=event.pk,
        created_at=now,
        updated_at=now,
    )


def _unreadable_inbound(event: WebhookEvent, numbers: NumberCache) -> None:
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
    body = payload.get("message_body")
    if not isinstance(body, dict):
        body = {}
    raw_text = body.get("text")
    # PostgreSQL cannot store a NUL character, which may be what made the text unreadable in the first place.
    text = raw_text.replace("\x00", "") if isinstance(raw_text, str) else ""
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


# ---------------------------------------------------------------------------------------------------------------
# Held texts
# ---------------------------------------------------------------------------------------------------------------


def held_release(messages: QuerySet[Message]) -> int:
    """Forward the held texts among these whose tenant is active and whose trunk has SMS on, in arrival order;
    the others stay held, their reason brought up to date. Returns how many were released."""
    released = 0
    with transaction.atomic():
        # A text routed while this looks would be held after it looked, and stay held: routing waits, or this does.
        _routing_lock(shared=False)
        held = messages.filter(status=Message.Status.HELD).select_related("tenant", "trunk").order_by("id")
        for message in held:
            if message.trunk is None:
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
            if message.source_event_id is not None:  # every held text has one (routing holds texts)
                WebhookEvent.objects.filter(pk=message.source_event_id).update(state=WebhookEvent.State.PROCESSED)
            released += 1
    if released:
        dispatch.DELIVERIES_DRAIN.ask_soon()
    return released


def tenant_held_release(tenant: Tenant) -> int:
    """Forward what was held while the tenant was suspended (unless its trunk has SMS off), in arrival order."""
    return held_release(Message.objects.filter(tenant=tenant))


def on_tenant_resumed(sender: type[Tenant], *, tenant: Tenant, **kwargs: Any) -> None:
    """tenants.signals.tenant_resumed's receiver (connected in messaging.apps)."""
    tenant_held_release(tenant)


def trunk_held_release(trunk: Trunk) -> int:
    """Forward what was held while the trunk had SMS off (unless its tenant is suspended), in arrival order."""
    return held_release(Message.objects.filter(trunk=trunk))


# ---------------------------------------------------------------------------------------------------------------
# Texts whose webhook never came
# ---------------------------------------------------------------------------------------------------------------


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
        dispatch.EVENTS_DRAIN.ask_at_most_every()
    return recovered
