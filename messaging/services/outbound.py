"""Outbound messages validated and queued: the one way in for a text to send, from the API, the admin's send page
and the setup wizard alike.

Validation names the field and the reason (a suspended tenant, destination, sender registration, encoding and
length, MMS rules, opt-outs, Wavix's 20-per-day limit); nothing is stored when a message is refused. The database
is the queue: a queued message asks for its Wavix account's drain (services/sending.py) once it is committed.
"""

import hashlib
import json
import logging
import math
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from messaging import dispatch
from messaging.models import (
    CountryRule,
    IdempotentRequest,
    Message,
    OptOut,
    SenderID,
    SenderIDCountry,
    Trunk,
    country_of,
    to_e164,
)
from tenants.models import Tenant

logger = logging.getLogger(__name__)


GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)


GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")  # each takes two septets (an escape, then the character)


LIMITS: dict[str, int] = {Message.Encoding.GSM7: 1630, Message.Encoding.UCS2: 670}


MMS_COUNTRIES = frozenset({"US", "CA"})


MMS_TYPES = frozenset("jpg jpeg png bmp gif wav mp3 amr aac midi mid 3gpp vcf".split())


MAX_MEDIA = 5


DAILY_LIMIT = 20  # Wavix: messages to one destination per 24 h


BULK_LIMIT = 1000


DEFAULT_VALIDITY = timedelta(hours=24)


def text_size(text: str) -> tuple[str, int, int]:
    """(encoding, length in units Wavix counts, segments): GSM-7 with its extension table, else UCS-2."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        units = sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
        single, part, encoding = 160, 153, Message.Encoding.GSM7
    else:
        units = len(text.encode("utf-16-le")) // 2  # characters outside the BMP (emoji) take two
        single, part, encoding = 70, 67, Message.Encoding.UCS2
    return encoding, units, 1 if units <= single else math.ceil(units / part)


def message_parts(text: str, media: Collection[str] = ()) -> tuple[str, int]:
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


def sender_for(tenant: Tenant, *, sender: int | str | None = None, trunk: Trunk | None = None) -> SenderID:
    """The sender ID a request names (its id or value), or a trunk's Main Trunk No. — the tenant's own only."""
    if trunk is not None:
        if trunk.tenant_id != tenant.pk or trunk.main_sender_id is None:
            raise ValidationError({"trunk": "This trunk has no Main Trunk No. (sender ID) yet."})
        assert trunk.main_sender is not None  # main_sender_id is set
        return trunk.main_sender
    if sender is None or sender == "":
        raise ValidationError({"sender": "Name the sender ID (or a trunk) to send from."})
    found = (
        SenderID.objects.filter(tenant=tenant)
        .filter(
            # isascii(): "²" is a digit to isdigit() but not to int().
            Q(pk=int(sender))
            if str(sender).isascii() and str(sender).isdigit() and len(str(sender)) < 10
            else Q(value=str(sender).strip())
        )
        .select_related("account")
        .first()
    )
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


def message_validate(*, tenant: Tenant, sender: SenderID, to: str, text: str, media: Iterable[str] = ()) -> Draft:
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


def _check_media(sender: SenderID, country: str, place: str, media: tuple[str, ...]) -> None:
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


def _queue(
    draft: Draft,
    *,
    priority: bool,
    validity: timedelta,
    trunk: Trunk | None,
    origin: str = Message.Origin.PORTAL,
    batch: uuid.UUID | None = None,
) -> Message:
    now = timezone.now()
    assert draft.sender.account_id is not None  # a sender ID is saved with its account (SenderID.clean)
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
        origin=origin,
        next_attempt_at=now,
        expires_at=now + validity,
        batch=batch,
    )


def message_send(
    *,
    tenant: Tenant,
    sender: SenderID,
    to: str,
    text: str,
    media: Iterable[str] = (),
    validity: timedelta | None = None,
) -> Message:
    """Validate and queue one message (the priority lane); raises ValidationError with the field and reason."""
    draft = message_validate(tenant=tenant, sender=sender, to=to, text=text, media=media)
    return draft_queue(draft, trunk=sender.trunks.first(), validity=validity)


def draft_queue(
    draft: Draft, *, trunk: Trunk | None, origin: str = Message.Origin.PORTAL, validity: timedelta | None = None
) -> Message:
    """Queue one validated message in the priority lane and ask for its account's drain once committed."""
    with transaction.atomic(savepoint=False):  # inside a caller's transaction, a savepoint is two round trips more
        message = _queue(draft, priority=True, validity=validity or DEFAULT_VALIDITY, trunk=trunk, origin=origin)
        dispatch.OUTBOUND_DRAIN.ask_soon(draft.sender.account_id)
    return message


def message_send_bulk(
    *,
    tenant: Tenant,
    sender: SenderID,
    recipients: Iterable[str],
    text: str,
    media: Iterable[str] = (),
    validity: timedelta | None = None,
    batch: uuid.UUID | None = None,
) -> list[dict[str, Any]]:
    """One text to up to 1,000 recipients: a message each, and a result per recipient (queued, or why not). The
    messages share `batch` (a new one unless the caller names it, as the send page does to show the send after)."""
    recipients = list(recipients)
    batch = batch or uuid.uuid4()
    tenant_may_send(tenant)  # one refusal for the whole request, not one per recipient
    if not recipients or len(recipients) > BULK_LIMIT:
        raise ValidationError({"recipients": f"Give between 1 and {BULK_LIMIT} recipients."})
    results: list[dict[str, Any]] = []
    trunk = sender.trunks.first()
    with transaction.atomic():
        for recipient in recipients:
            try:
                draft = message_validate(tenant=tenant, sender=sender, to=str(recipient), text=text, media=media)
            except ValidationError as error:
                results.append({"to": str(recipient), "errors": error.message_dict})
                continue
            message = _queue(draft, priority=False, validity=validity or DEFAULT_VALIDITY, trunk=trunk, batch=batch)
            results.append({"to": message.to_number, "id": message.pk, "status": message.status})
        dispatch.OUTBOUND_DRAIN.ask_soon(sender.account_id)
    return results


# ---------------------------------------------------------------------------------------------------------------
# Idempotency-Key
# ---------------------------------------------------------------------------------------------------------------


def idempotent(
    tenant: Tenant, key: str | None, request_body: object, produce: Callable[[], tuple[int, dict[str, Any]]]
) -> tuple[int, dict[str, Any], bool]:
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
