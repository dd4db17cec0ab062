"""Writes that span models, leave an audit trail or need Wavix; the admin, the API and the tasks call these.

Calls to Wavix that a person waits for (checking a key, registering or deleting a sender ID, creating a
sub-account) happen here, before anything is saved: if Wavix refuses or cannot be reached, the person gets
the reason and nothing is half-saved. Everything else that talks to Wavix runs in Celery tasks.
"""

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import partial

from celery import current_app
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from messaging import metrics, threecx
from messaging.models import (
    AuditEvent,
    CountryRule,
    Delivery,
    Message,
    OptOut,
    PhoneNumber,
    SenderID,
    SenderIDCountry,
    Trunk,
    WavixAccount,
    WebhookEvent,
    WebhookSecret,
)
from messaging.wavix import WavixClient, WavixError, WavixPermanentError, WavixSenderID, WavixTransientError
from tenants.models import Tenant

logger = logging.getLogger(__name__)


def _wavix_refusal(error: WavixError, what: str, *, doing: str, nothing: str = "saved") -> str:
    """What to tell a person whose request needed Wavix: its refusal, or that it could not be asked now."""
    if isinstance(error, WavixTransientError):
        reason = error.message.rstrip(".")
        return f"Could not {doing} at Wavix right now ({reason}); nothing was {nothing}. Try again in a minute."
    return f"Wavix refused {what}: {error.message}"


# ---------------------------------------------------------------------------------------------------------------
# Accounts
# ---------------------------------------------------------------------------------------------------------------


def wavix_key_check(api_key: str) -> None:
    """Prove the key works at Wavix (GET /v1/profile), or raise a ValidationError with Wavix's reason."""
    try:
        WavixClient(api_key).profile()
    except WavixError as error:
        raise ValidationError({"api_key": _wavix_refusal(error, "this key", doing="verify the key")}) from None


def wavix_account_save(
    *, actor, account: WavixAccount, api_key: str | None = None, key_checked: bool = False
) -> WavixAccount:
    """Save an account; a new key is checked at Wavix first, then stored encrypted and audited (never the key)."""
    had_key = account.has_api_key
    if api_key:
        account.set_api_key(api_key)
    elif not had_key:
        raise ValidationError({"api_key": "Paste the account's Wavix API key."})
    account.full_clean()
    if api_key and not key_checked:
        wavix_key_check(api_key)
    created = account.pk is None
    with transaction.atomic():
        account.save()
        if api_key:
            action = AuditEvent.Action.API_KEY_ROTATED if had_key else AuditEvent.Action.API_KEY_SET
            AuditEvent.record(action, account, actor=actor, changes={"api_key_last4": account.api_key_last4})
        if created or api_key:
            numbers_sync_soon(account)
    return account


def numbers_sync_soon(account: WavixAccount, *, wire: bool = True) -> None:
    """Queue a number sync for after the current transaction commits."""
    from messaging.tasks import wavix_numbers_sync

    transaction.on_commit(partial(wavix_numbers_sync.delay, account.pk, wire))


def wavix_check_soon(account: WavixAccount, *, wire: bool) -> None:
    """Queue a full comparison with Wavix: numbers (wired, or drift only reported) and sender-ID allow-listings."""
    from messaging.tasks import wavix_sender_ids_sync

    numbers_sync_soon(account, wire=wire)
    transaction.on_commit(partial(wavix_sender_ids_sync.delay, account.pk))


def wavix_sub_account_create(*, actor, master: WavixAccount, tenant: Tenant) -> WavixAccount:
    """Create a Wavix sub-account for a tenant under the reseller's master account, wired to the portal."""
    if master.tenant_id is not None or master.reseller_id != tenant.reseller_id:
        raise ValidationError("Sub-accounts are created under one of the reseller's own (shared) Wavix accounts.")
    account = WavixAccount(reseller_id=tenant.reseller_id, tenant=tenant, name=f"{tenant.name} (sub-account)")
    account.full_clean(exclude=["api_key_encrypted", "api_key_last4"])
    try:
        created = WavixClient.for_account(master).create_sub_account(
            name=tenant.name, sms_url=account.inbound_webhook_url, dlr_url=account.dlr_webhook_url
        )
    except WavixError as error:
        raise ValidationError(_wavix_refusal(error, "the sub-account", doing="create the sub-account")) from None
    account.wavix_sub_account_id = created.wavix_id
    return wavix_account_save(actor=actor, account=account, api_key=created.api_key, key_checked=True)


def account_defaults_wire(account: WavixAccount, client: WavixClient) -> None:
    """A tenant's own account sends all its inbound texts and reports to the portal by default.

    A reseller's shared account is left alone: its default endpoint may serve the reseller's other systems.
    """
    if account.tenant_id:
        client.set_default_endpoints(sms_url=account.inbound_webhook_url, dlr_url=account.dlr_webhook_url)


# ---------------------------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------------------------


def _set_sync(account: WavixAccount, state: str, note: str, **extra) -> None:
    WavixAccount.objects.filter(pk=account.pk).update(sync_state=state, sync_note=note[:300], **extra)


def numbers_sync(account: WavixAccount, *, wire: bool) -> dict[str, int]:
    """Pull every page of the account's numbers from Wavix, then point the numbers of SMS-enabled trunks at the
    portal (wire=True) or only report those that point elsewhere (wire=False, the periodic drift check)."""
    client = WavixClient.for_account(account)
    _set_sync(account, WavixAccount.SyncState.RUNNING, "Asking Wavix for the numbers…")
    seen: set[str] = set()
    try:
        for page, pages, numbers in client.number_pages():
            with transaction.atomic():
                for number in numbers:
                    _store_number(account, number)
                    seen.add(number.number)
            _set_sync(account, WavixAccount.SyncState.RUNNING, f"Page {page} of {pages} · {_numbers(len(seen))}")
        gone = account.numbers.exclude(number__in=seen).exclude(status="not at Wavix")
        gone.update(status="not at Wavix", sms_enabled=False)
        if wire:
            account_defaults_wire(account, client)
        counts = _relay_wire(account, client, wire=wire)
    except WavixError as error:
        _set_sync(account, WavixAccount.SyncState.FAILED, error.message)
        raise
    note = f"{_numbers(len(seen))} · {counts['wired']} pointed at the portal · {counts['drift']} drifted"
    _set_sync(account, WavixAccount.SyncState.DONE, note, synced_at=timezone.now())
    return {"numbers": len(seen), **counts}


def _numbers(count: int) -> str:
    return f"{count} number" if count == 1 else f"{count} numbers"


def _store_number(account: WavixAccount, number) -> None:
    values = {
        "wavix_id": number.wavix_id,
        "sms_enabled": number.sms_enabled,
        "status": number.status,
        "sms_relay_url": number.sms_relay_url,
        "label": number.label,
        "country": number.country or "",
        "synced_at": timezone.now(),
    }
    row, created = PhoneNumber.objects.get_or_create(
        account=account, number=number.number, defaults={**values, "tenant_id": account.tenant_id}
    )
    if not created:
        PhoneNumber.objects.filter(pk=row.pk).update(**values)


def _off_target(number: PhoneNumber) -> bool:
    """Serves an SMS-enabled trunk, but Wavix sends its texts somewhere other than the portal."""
    expected = number.expected_relay_url
    return expected is not None and number.sms_relay_url != expected and bool(number.wavix_id)


def _relay_wire(account: WavixAccount, client: WavixClient, *, wire: bool) -> dict[str, int]:
    numbers = list(account.numbers.select_related("trunk", "account"))
    off_target = [n for n in numbers if _off_target(n)]
    if wire:
        _point_at_portal(account, off_target, client)
        return {"wired": len(off_target), "drift": 0}
    off_ids = {n.pk for n in off_target}
    for number in numbers:
        if (number.pk in off_ids) != number.relay_drift:
            PhoneNumber.objects.filter(pk=number.pk).update(relay_drift=number.pk in off_ids)
    return {"wired": 0, "drift": len(off_target)}


def _point_at_portal(account: WavixAccount, numbers: list[PhoneNumber], client: WavixClient) -> None:
    """Every number of an account relays to the same portal URL: one bulk update per hundred numbers."""
    if not numbers:
        return
    updated = client.set_numbers_relay([n.wavix_id for n in numbers], account.inbound_webhook_url)
    relay_of = {n.wavix_id: n.sms_relay_url for n in updated}
    now = timezone.now()
    for number in numbers:
        number.sms_relay_url = relay_of.get(number.wavix_id, number.sms_relay_url)
        number.relay_set_at, number.relay_drift = now, False
    PhoneNumber.objects.bulk_update(numbers, ["sms_relay_url", "relay_set_at", "relay_drift"])
    logger.info("wavix: pointed %s number(s) of %s at the portal", len(numbers), account)


def phone_number_save(*, number: PhoneNumber) -> PhoneNumber:
    """Save a number's assignment; a number newly serving an SMS-enabled trunk is pointed at the portal soon."""
    previous_trunk = PhoneNumber.objects.filter(pk=number.pk).values_list("trunk_id", flat=True).first()
    number.full_clean()
    with transaction.atomic():
        number.save()
        if number.trunk_id and number.trunk_id != previous_trunk and number.trunk.sms_enabled:
            numbers_sync_soon(number.account)
    return number


def relay_repair(numbers) -> int:
    """Point drifted numbers back at the portal; returns how many were repaired."""
    by_account: dict[int, list[PhoneNumber]] = {}
    for number in numbers.select_related("trunk", "account"):
        if number.expected_relay_url is not None and number.wavix_id:
            by_account.setdefault(number.account_id, []).append(number)
    for account_numbers in by_account.values():
        account = account_numbers[0].account
        _point_at_portal(account, account_numbers, WavixClient.for_account(account))
    return sum(len(n) for n in by_account.values())


# ---------------------------------------------------------------------------------------------------------------
# Trunks and tenants
# ---------------------------------------------------------------------------------------------------------------


def trunk_save(*, actor, trunk: Trunk, threecx_webhook_url: str | None = None) -> Trunk:
    """Save a trunk, encrypting a new 3CX webhook URL if one is given; enabling SMS wires its numbers."""
    if threecx_webhook_url is not None:
        trunk.set_threecx_webhook_url(threecx_webhook_url)
    trunk.full_clean()
    with transaction.atomic():
        trunk.save()
        if threecx_webhook_url is not None:
            AuditEvent.record(
                AuditEvent.Action.WEBHOOK_URL_SET, trunk, actor=actor, changes={"hint": trunk.threecx_webhook_url_hint}
            )
        if trunk.sms_enabled:
            for account in WavixAccount.objects.filter(numbers__trunk=trunk).distinct():
                numbers_sync_soon(account)
    return trunk


# ---------------------------------------------------------------------------------------------------------------
# Sender IDs
# ---------------------------------------------------------------------------------------------------------------


def sender_id_register(*, actor, sender: SenderID, countries, registered: WavixSenderID | None = None) -> SenderID:
    """Register a sender ID at Wavix with one registration per destination country, or save nothing at all.

    Local rules first (format, the tenant's numbers, countries that refuse the type), then Wavix — unless
    `registered` names a registration that already exists there, which is adopted as it is. A country Wavix
    allow-lists at once starts allow-listed; one that needs paperwork starts at 'needs documents'; the others
    at 'requested' until Wavix allow-lists them (the periodic sync notices).
    """
    errors = {}
    try:
        sender.full_clean()
    except ValidationError as error:
        errors.update(error.message_dict)
    try:
        rules = CountryRule.check_destinations(sender.type, countries)
    except ValidationError as error:
        errors["countries"] = error.messages
    if errors:
        raise ValidationError(errors)
    if registered is None:
        try:
            registered = WavixClient.for_account(sender.account).create_sender_id(
                value=sender.value,
                type=sender.type,
                countries=sorted(rules),
                usecase=sender.usecase,
                samples=sender.samples,
            )
        except WavixError as error:
            raise ValidationError(_wavix_refusal(error, "the sender ID", doing="register the sender ID")) from None
    sender.wavix_id = registered.wavix_id
    with transaction.atomic():
        sender.save()
        registrations = SenderIDCountry.objects.bulk_create(
            SenderIDCountry(
                tenant_id=sender.tenant_id,
                sender=sender,
                country=code,
                status=SenderIDCountry.Status.ALLOWLISTED
                if code in registered.allowlisted_in
                else SenderIDCountry.initial_status(rule, sender.type),
            )
            for code, rule in sorted(rules.items())
        )
        AuditEvent.record(
            AuditEvent.Action.SENDER_ID_REGISTERED,
            sender,
            actor=actor,
            changes={"type": sender.type, "countries": {r.country: r.status for r in registrations}},
        )
    return sender


def sender_id_deletion_problem(sender: SenderID) -> str | None:
    """Why this sender ID cannot be deleted now (checked before Wavix is asked to delete it)."""
    trunks = list(sender.trunks.values_list("name", flat=True))
    if trunks:
        return f"{sender} is the Main Trunk No. of {', '.join(trunks)}; choose another sender there first."
    return None


def sender_id_delete(*, actor, sender: SenderID) -> None:
    """Delete a sender ID at Wavix, then here; if Wavix cannot be asked, nothing is deleted."""
    if problem := sender_id_deletion_problem(sender):
        raise ValidationError(problem)
    if sender.wavix_id:
        try:
            WavixClient.for_account(sender.account).delete_sender_id(sender.wavix_id)
        except WavixError as error:
            already_gone = isinstance(error, WavixPermanentError) and error.status == 404  # what we wanted anyway
            if not already_gone:
                raise ValidationError(
                    _wavix_refusal(error, "the deletion", doing="delete the sender ID", nothing="deleted")
                ) from None
    with transaction.atomic():
        AuditEvent.record(
            AuditEvent.Action.SENDER_ID_DELETED,
            sender,
            actor=actor,
            changes={"value": sender.value, "type": sender.type},
        )
        sender.delete()


def registration_set_status(*, actor, registration: SenderIDCountry, status: str, note: str = "") -> SenderIDCountry:
    """Move one country registration along its lifecycle and record who did it and why (None = the system)."""
    with transaction.atomic():
        registration = SenderIDCountry.objects.select_for_update().get(pk=registration.pk)
        previous = registration.move_to(status, actor=actor, note=note)
        registration.save()
        AuditEvent.record(
            AuditEvent.Action.REGISTRATION_STATUS,
            registration,
            actor=actor,
            changes={"country": registration.country, "status": [previous, status], "note": note},
        )
    return registration


def sender_ids_sync(account: WavixAccount) -> int:
    """Mark every country Wavix now lists in `allowlisted_in` as allow-listed; returns how many moved."""
    registered = {s.wavix_id: s for s in WavixClient.for_account(account).sender_ids()}
    moved = 0
    # Only moves the lifecycle allows: a rejected registration stays rejected until it is reviewed again.
    movable = [s for s, nexts in SenderIDCountry.TRANSITIONS.items() if SenderIDCountry.Status.ALLOWLISTED in nexts]
    waiting = SenderIDCountry.objects.filter(
        sender__account=account, sender__wavix_id__in=registered, status__in=movable
    )
    for registration in waiting.select_related("sender"):
        if registration.country in registered[registration.sender.wavix_id].allowlisted_in:
            registration_set_status(
                actor=None,
                registration=registration,
                status=SenderIDCountry.Status.ALLOWLISTED,
                note="Wavix lists the sender as allow-listed in this country.",
            )
            moved += 1
    return moved


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
LEASE = timedelta(seconds=60)  # longer than one POST can take (connect + read timeouts)
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


def events_process_soon() -> None:
    _queue_drain(EVENTS_FLAG, "messaging.tasks.inbound_events_drain")


def deliveries_process_soon() -> None:
    _queue_drain(DELIVERIES_FLAG, "messaging.tasks.inbound_deliveries_drain")


def events_process(batch_size: int = 100) -> int:
    """Route every stored webhook event, oldest first; returns how many were processed."""
    _drain_started(EVENTS_FLAG)
    processed = 0
    while True:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # Batches strictly one after another: two routers could otherwise create a conversation's
                # deliveries out of order. (SQLite's IMMEDIATE transactions already serialize writers.)
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ROUTING_LOCK])
            batch = list(
                WebhookEvent.objects.select_related("account")
                .filter(state=WebhookEvent.State.PENDING)
                .order_by("id")[:batch_size]
            )
            for event in batch:
                _process_event(event)
        processed += len(batch)
        if len(batch) < batch_size:
            break
    if processed:
        deliveries_process_soon()
    return processed


def _process_event(event: WebhookEvent) -> None:
    """One event, in its own savepoint: a body that breaks processing is marked invalid, not retried forever."""
    event.attempts += 1
    try:
        with transaction.atomic():
            payload = json.loads(bytes(event.body))
            if event.kind == WebhookEvent.Kind.INBOUND:
                _route_inbound(event, payload)
            elif event.kind == WebhookEvent.Kind.DLR:
                _apply_report(event, payload)
            else:
                _apply_tendlc(event, payload)
    except Exception as error:  # noqa: BLE001 - whatever it was, it is recorded and visible in the admin
        logger.exception("relay: webhook event %s could not be processed", event.pk)
        event.state, event.last_error = WebhookEvent.State.INVALID, f"{type(error).__name__}: {error}"[:500]
    event.processed_at = timezone.now()
    event.save(update_fields=["state", "tenant", "last_error", "attempts", "processed_at"])


def _e164(value) -> str:
    text = str(value or "").strip()
    return "+" + text.lstrip("+") if text.lstrip("+").isdigit() else text


def _route_inbound(event: WebhookEvent, payload: dict) -> None:
    to = _e164(payload["to"])
    number = PhoneNumber.objects.select_related("trunk", "tenant").filter(account=event.account, number=to).first()
    if number is None or number.tenant_id is None or number.trunk_id is None:
        where = "is not a number of this account" if number is None else "is not assigned to a tenant's trunk"
        event.state, event.last_error = WebhookEvent.State.UNROUTABLE, f"{to} {where}; nothing was forwarded."
        return
    tenant, remote = number.tenant, _e164(payload.get("from"))
    body = payload.get("message_body") if isinstance(payload.get("message_body"), dict) else {}
    media = [str(url) for url in body.get("media") or [] if isinstance(url, str)]
    message, created = Message.objects.get_or_create(
        account=event.account,
        wavix_message_id=str(payload["message_id"]),
        defaults={
            "tenant": tenant,
            "trunk": number.trunk,
            "direction": Message.Direction.INBOUND,
            "from_number": remote[:20],
            "to_number": to,
            "text": str(body.get("text") or ""),
            "media": media,
            "status": Message.Status.RECEIVED if tenant.is_active else Message.Status.HELD,
            "source_event": event,
        },
    )
    event.tenant = tenant
    event.state = WebhookEvent.State.PROCESSED if tenant.is_active else WebhookEvent.State.HELD
    if not created:
        return  # the same message reached us twice (a webhook and a reconciliation): forwarded once
    opt_out_apply(tenant, remote, message.text)
    if tenant.is_active:
        Delivery.objects.create(tenant=tenant, message=message, trunk=number.trunk, remote_number=remote[:20])


def opt_out_apply(tenant: Tenant, number: str, text: str) -> None:
    """Record or lift an opt-out when the whole text is a stop or start word (case and spaces ignored)."""
    word = "".join(text.split()).upper()
    if word in STOP_WORDS:
        OptOut.objects.get_or_create(tenant=tenant, number=number, defaults={"keyword": word})
    elif word in START_WORDS:
        OptOut.objects.filter(tenant=tenant, number=number).delete()


def _report_time(value) -> datetime | None:
    """Wavix's timestamps come with and without a zone: read leniently, assume UTC."""
    if not value:
        return None
    moment = parse_datetime(str(value).replace(" ", "T"))
    if moment is not None and timezone.is_naive(moment):
        moment = timezone.make_aware(moment, UTC)
    return moment


def _apply_report(event: WebhookEvent, payload: dict) -> None:
    """Move an outbound message along its state machine; a repeated or late report never moves it back."""
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
    if status not in Message.Status.values:
        event.state, event.last_error = WebhookEvent.State.INVALID, f"Unknown delivery status {status!r}."
        return
    if message.status in (Message.Status.SENDING, Message.Status.UNKNOWN):
        message.transition(Message.Status.ACCEPTED)  # a report proves Wavix accepted it
    if message.can_transition(status):
        message.transition(status)
        if status == Message.Status.UNDELIVERED or payload.get("error"):
            message.error_message = str(payload.get("error") or "")[:500]
    if isinstance(payload.get("segments_count"), int):
        message.segments = payload["segments_count"]
    try:
        message.charge = Decimal(str(payload["charge"])) if payload.get("charge") is not None else message.charge
    except InvalidOperation:
        pass
    message.sent_at = message.sent_at or _report_time(payload.get("sent"))
    if message.status in Message.FINAL:
        message.completed_at = _report_time(payload.get("delivered")) or message.completed_at
    message.save()
    event.state = WebhookEvent.State.PROCESSED


def _apply_tendlc(event: WebhookEvent, payload: dict) -> None:
    """A 10DLC number status (brand and campaign statuses are kept as events for the review issue)."""
    if payload.get("number"):
        PhoneNumber.objects.filter(account=event.account, number=_e164(payload["number"])).update(
            tendlc_status=str(payload["status"]).upper()[:16]
        )
    event.state = WebhookEvent.State.PROCESSED


def _due_heads(now):
    """Pending deliveries that are due, not held by a worker, and first in their conversation."""
    earlier = Delivery.objects.filter(
        trunk=OuterRef("trunk"),
        remote_number=OuterRef("remote_number"),
        status=Delivery.Status.PENDING,
        id__lt=OuterRef("id"),
    )
    return (
        Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .exclude(Exists(earlier))
        .order_by("next_attempt_at", "id")
    )


def deliveries_process(limit: int = 200) -> int:
    """Forward due deliveries, the first of each conversation, until none is due; returns how many were tried."""
    _drain_started(DELIVERIES_FLAG)
    tried = 0
    while tried < limit:
        now = timezone.now()
        heads = list(_due_heads(now).values_list("pk", flat=True)[:20])
        if not heads:
            break
        for pk in heads:
            claimed = (
                Delivery.objects.filter(pk=pk, status=Delivery.Status.PENDING)
                .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
                .update(lease_until=now + LEASE)
            )
            if claimed:  # another worker may have taken it between the query and the claim
                delivery_attempt(
                    Delivery.objects.select_related("message", "trunk", "message__source_event").get(pk=pk)
                )
                tried += 1
    return tried


def delivery_attempt(delivery: Delivery) -> threecx.Outcome:
    """POST one inbound text to its trunk's 3CX and record the answer (the caller holds the lease)."""
    message, trunk = delivery.message, delivery.trunk
    if trunk.sms_template == Trunk.SmsTemplate.WAVIX and message.source_event_id:
        body = bytes(message.source_event.body)  # byte for byte what Wavix sent
    else:
        received = message.created_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        body = threecx.generic_envelope(message, received)
    url = trunk.get_threecx_webhook_url()
    outcome = (
        threecx.forward(url, body, message.wavix_message_id)
        if url
        else threecx.Outcome(False, True, None, "", "The trunk has no 3CX webhook URL yet")
    )
    _record_outcome(delivery, outcome)
    return outcome


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
        delivery.status, delivery.delivered_at = Delivery.Status.DELIVERED, now
        next_status = Message.Status.FORWARDED
        metrics.count("forward", "delivered")
    elif outcome.transient and now + _retry_delay(delivery.attempts) < delivery.created_at + RETRY_FOR:
        delivery.next_attempt_at = now + _retry_delay(delivery.attempts)
        next_status = None  # stays received, waiting for the next attempt
        metrics.count("forward", "retry")
    else:
        delivery.status = Delivery.Status.DEAD if outcome.transient else Delivery.Status.FAILED
        next_status = Message.Status.FAILED
        metrics.count("forward", delivery.status)
    with transaction.atomic():
        delivery.save()
        if next_status and message.can_transition(next_status):
            message.transition(next_status)
            message.save(update_fields=["status", "completed_at", "updated_at"])
        _trunk_health(delivery.trunk, outcome, now)
    if outcome.delivered:
        deliveries_process_soon()  # the next message of this conversation may now go


def _retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1])


def _trunk_health(trunk: Trunk, outcome: threecx.Outcome, now) -> None:
    if outcome.delivered:
        Trunk.objects.filter(pk=trunk.pk).update(forward_failures=0, forward_error="", forward_checked_at=now)
    else:
        Trunk.objects.filter(pk=trunk.pk).update(
            forward_failures=F("forward_failures") + 1, forward_error=outcome.error[:300], forward_checked_at=now
        )


def delivery_replay(*, actor, deliveries) -> int:
    """Try failed or dead-lettered deliveries again from now, each replay written to the audit trail."""
    replayed = 0
    for delivery in deliveries.filter(status__in=[Delivery.Status.FAILED, Delivery.Status.DEAD]).select_related(
        "message", "trunk"
    ):
        with transaction.atomic():
            previous = delivery.status
            delivery.status, delivery.next_attempt_at, delivery.lease_until = (
                Delivery.Status.PENDING,
                timezone.now(),
                None,
            )
            delivery.created_at = timezone.now()  # the 48 h of retries start again
            delivery.save(update_fields=["status", "next_attempt_at", "lease_until", "created_at"])
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


def tenant_held_release(tenant: Tenant) -> int:
    """Forward what was held while the tenant was suspended, in the order it arrived."""
    released = 0
    for message in (
        Message.objects.filter(tenant=tenant, status=Message.Status.HELD).select_related("trunk").order_by("id")
    ):
        if message.trunk_id is None:
            continue
        with transaction.atomic():
            message.transition(Message.Status.RECEIVED)
            message.save(update_fields=["status", "updated_at"])
            Delivery.objects.create(
                tenant=tenant, message=message, trunk=message.trunk, remote_number=message.from_number
            )
            WebhookEvent.objects.filter(pk=message.source_event_id).update(state=WebhookEvent.State.PROCESSED)
        released += 1
    if released:
        transaction.on_commit(deliveries_process_soon)
    return released


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
        try:
            with transaction.atomic():
                WebhookEvent.objects.create(
                    account=account,
                    kind=WebhookEvent.Kind.INBOUND,
                    dedup_key=str(body["message_id"]),
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
