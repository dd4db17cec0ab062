"""Wavix accounts, numbers and trunks: keys checked, accounts and sub-accounts saved, numbers synced and wired to
the relay (or un-pointed), webhook secrets rotated, trunks saved.

Calls to Wavix that a person waits for (checking a key, creating a sub-account) happen here, before anything is
saved: if Wavix refuses or cannot be reached, the person gets the reason (wavix.refusal) and nothing is
half-saved. Everything else that talks to Wavix runs in Celery tasks, queued through messaging.dispatch.
"""

import logging
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, F, QuerySet, Value, When
from django.utils import timezone

from messaging import dispatch
from messaging.models import (
    PhoneNumber,
    Trunk,
    WavixAccount,
    WebhookSecret,
)
from messaging.services.inbound import trunk_held_release
from messaging.signals import trunk_saved
from messaging.wavix import WavixClient, WavixError, WavixNumber, refusal
from tenants.models import AuditEvent, Tenant

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# Accounts
# ---------------------------------------------------------------------------------------------------------------


def wavix_key_check(api_key: str) -> None:
    """Prove the key works at Wavix (GET /v1/profile), or raise a ValidationError with Wavix's reason."""
    api_key = WavixAccount.api_key_shaped(api_key)
    try:
        WavixClient(api_key).profile()
    except WavixError as error:
        raise ValidationError({"api_key": refusal(error, "this key", doing="verify the key")}) from None


def wavix_account_save(
    *, actor: User | None, account: WavixAccount, api_key: str | None = None, key_checked: bool = False
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
            dispatch.NUMBERS_SYNC.soon(account.pk, True)
    return account


def wavix_check_soon(account: WavixAccount, *, wire: bool) -> None:
    """Queue a full comparison with Wavix: numbers (wired, or drift only reported) and sender-ID allow-listings."""
    dispatch.NUMBERS_SYNC.soon(account.pk, wire)
    dispatch.SENDER_IDS_SYNC.soon(account.pk)


def wavix_sub_account_create(*, actor: User | None, master: WavixAccount, tenant: Tenant) -> WavixAccount:
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
        raise ValidationError(refusal(error, "the sub-account", doing="create the sub-account")) from None
    account.wavix_sub_account_id = created.wavix_id
    return wavix_account_save(actor=actor, account=account, api_key=created.api_key, key_checked=True)


def account_defaults_wire(account: WavixAccount, client: WavixClient) -> None:
    """A tenant's own account sends all its inbound texts and reports to the portal by default.

    A reseller's shared account is left alone: its default endpoint may serve the reseller's other systems.
    """
    if account.tenant_id:
        client.set_default_endpoints(sms_url=account.inbound_webhook_url, dlr_url=account.dlr_webhook_url)


def webhook_secret_rotate(
    *, actor: User | None, account: WavixAccount, overlap: timedelta = timedelta(hours=24)
) -> WebhookSecret:
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
        # Point the numbers (and a tenant account's defaults) at the new URLs.
        dispatch.NUMBERS_SYNC.soon(account.pk, True)
    return secret


# ---------------------------------------------------------------------------------------------------------------
# Numbers and their relay URLs
# ---------------------------------------------------------------------------------------------------------------


def _set_sync(account: WavixAccount, state: str, note: str, **extra: Any) -> None:
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


def _store_number(account: WavixAccount, number: WavixNumber) -> None:
    values = {
        "wavix_id": number.wavix_id,
        "sms_enabled": number.sms_enabled,
        "status": number.status,
        "sms_relay_url": number.sms_relay_url,
        "wavix_label": number.label,
        "country": number.country or "",
        "synced_at": timezone.now(),
    }
    row, created = PhoneNumber.objects.get_or_create(
        account=account,
        number=number.number,
        defaults={**values, "label": number.label, "tenant_id": account.tenant_id},
    )
    if not created:
        # A label edited in the portal is kept; one still as Wavix had it follows Wavix (see PhoneNumber.wavix_label).
        follows_wavix = When(label=F("wavix_label"), then=Value(number.label))
        PhoneNumber.objects.filter(pk=row.pk).update(**values, label=Case(follows_wavix, default=F("label")))


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
        if (
            number.trunk_id
            and number.trunk_id != previous_trunk
            and number.trunk is not None
            and number.trunk.sms_enabled
        ):
            dispatch.NUMBERS_SYNC.soon(number.account_id, True)
    return number


def relay_repair(numbers: QuerySet[PhoneNumber]) -> int:
    """Point drifted numbers back at the portal; returns how many were repaired."""
    by_account: dict[int, list[PhoneNumber]] = {}
    for number in numbers.select_related("trunk", "account"):
        if number.expected_relay_url is not None and number.wavix_id:
            by_account.setdefault(number.account_id, []).append(number)
    for account_numbers in by_account.values():
        account = account_numbers[0].account
        _point_at_portal(account, account_numbers, WavixClient.for_account(account))
    return sum(len(n) for n in by_account.values())


def numbers_relaying_to_portal(trunk: Trunk, account: WavixAccount | None = None) -> list[PhoneNumber]:
    """The trunk's numbers (on this account, or any) that Wavix sends to the portal, as of the last sync."""
    numbers = trunk.numbers.exclude(wavix_id="").select_related("account")
    if account is not None:
        numbers = numbers.filter(account=account)
    return [number for number in numbers if number.relays_to_portal]


def trunk_numbers_unpoint(*, actor: User | None, trunk: Trunk) -> list[PhoneNumber]:
    """Queue emptying, at Wavix, the relay URL of a trunk's numbers while its SMS is off, so that Wavix stops sending
    their texts to the portal (where they would be held); audited. Returns the numbers queued."""
    if trunk.sms_enabled:
        raise ValidationError(
            f"SMS is on for {trunk}: its numbers must keep sending their texts to the portal. Switch SMS off first."
        )
    numbers = numbers_relaying_to_portal(trunk)
    if numbers:
        with transaction.atomic():
            AuditEvent.record(
                AuditEvent.Action.NUMBERS_UNPOINTED,
                trunk,
                actor=actor,
                changes={"numbers": [n.number for n in numbers]},
            )
            dispatch.NUMBERS_UNPOINT.soon(trunk.pk)
    return numbers


def numbers_unpoint(trunk: Trunk, account: WavixAccount) -> int:
    """Empty the relay URL at Wavix of the trunk's numbers on this account that point at the portal; returns how many.

    Nothing is done if SMS was switched on again since it was asked for: those numbers must point at the portal,
    and the sync that switching on queued points them there. (The caller holds the account's sync lock, so that
    sync runs before or after this, never in between.)
    """
    trunk.refresh_from_db(fields=["sms_enabled"])
    numbers = [] if trunk.sms_enabled else numbers_relaying_to_portal(trunk, account)
    if not numbers:
        return 0
    updated = WavixClient.for_account(account).set_numbers_relay([n.wavix_id for n in numbers], "")
    relay_of = {n.wavix_id: n.sms_relay_url for n in updated}
    for number in numbers:
        number.sms_relay_url = relay_of.get(number.wavix_id, "")
        number.relay_set_at, number.relay_drift = None, False
    PhoneNumber.objects.bulk_update(numbers, ["sms_relay_url", "relay_set_at", "relay_drift"])
    logger.info("wavix: un-pointed %s number(s) of trunk %s on %s", len(numbers), trunk.pk, account)
    return len(numbers)


# ---------------------------------------------------------------------------------------------------------------
# Trunks
# ---------------------------------------------------------------------------------------------------------------


def trunk_save(*, actor: User | None, trunk: Trunk, threecx_webhook_url: str | None = None) -> Trunk:
    """Save a trunk, encrypting a new 3CX webhook URL if one is given; with SMS on, its numbers are wired and the
    texts held while SMS was off go to 3CX. Every way of switching SMS on (admin, API, setup wizard) comes here."""
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
                dispatch.NUMBERS_SYNC.soon(account.pk, True)
            # On every save with SMS on, not only when it is switched on: it costs an indexed look at the trunk's
            # held texts, and no text then stays held for a trunk whose SMS is on.
            trunk_held_release(trunk)
    trunk_saved.send(sender=Trunk, trunk=trunk)  # the setup wizard refreshes its progress: set up by hand counts too
    return trunk
