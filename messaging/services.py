"""Writes that span models or leave an audit trail; the admin and the API both call these."""

from django.core.exceptions import ValidationError
from django.db import transaction

from messaging.models import AuditEvent, CountryRule, SenderID, SenderIDCountry, Trunk, WavixAccount


def wavix_account_save(*, actor, account: WavixAccount, api_key: str | None = None) -> WavixAccount:
    """Save an account, encrypting a new API key if one is given; the key itself never reaches the audit trail."""
    had_key = account.has_api_key
    if api_key:
        account.set_api_key(api_key)
    elif not had_key:
        raise ValidationError({"api_key": "Paste the account's Wavix API key."})
    account.full_clean()
    with transaction.atomic():
        account.save()
        if api_key:
            action = AuditEvent.Action.API_KEY_ROTATED if had_key else AuditEvent.Action.API_KEY_SET
            AuditEvent.record(action, account, actor=actor, changes={"api_key_last4": account.api_key_last4})
    return account


def trunk_save(*, actor, trunk: Trunk, threecx_webhook_url: str | None = None) -> Trunk:
    """Save a trunk, encrypting a new 3CX webhook URL if one is given."""
    if threecx_webhook_url is not None:
        trunk.set_threecx_webhook_url(threecx_webhook_url)
    trunk.full_clean()
    with transaction.atomic():
        trunk.save()
        if threecx_webhook_url is not None:
            AuditEvent.record(
                AuditEvent.Action.WEBHOOK_URL_SET, trunk, actor=actor, changes={"hint": trunk.threecx_webhook_url_hint}
            )
    return trunk


def sender_id_register(*, actor, sender: SenderID, countries) -> SenderID:
    """Create a sender ID with one registration per destination country, or nothing at all if any is refused.

    A country that needs paperwork starts at 'needs documents'; the others at 'requested' until Wavix
    allow-lists them.
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
    with transaction.atomic():
        sender.save()
        registrations = SenderIDCountry.objects.bulk_create(
            SenderIDCountry(
                tenant_id=sender.tenant_id,
                sender=sender,
                country=code,
                status=SenderIDCountry.initial_status(rule, sender.type),
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


def registration_set_status(*, actor, registration: SenderIDCountry, status: str, note: str = "") -> SenderIDCountry:
    """Move one country registration along its lifecycle and record who did it and why."""
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
