"""The portal as 3CX's SMS provider: provider keys issued and rotated, and the texts 3CX's Generic provider POSTs
taken in — authenticated, checked with exactly the rules of the portal's own send API (outbound.message_validate),
stored and queued, all before anything is sent to Wavix. The outbound drain then sends them like any message.

What 3CX sends (DESIGN.md §8): `{"from": "+1…", "to": "+1…", "text": "…"}`, probably `media_urls` for MMS, with
`Authorization: Bearer <key>`. What varies is accepted: digits or +E.164, `to` as a one-item list, extra fields,
no `media_urls`. 3CX marks a text sent on a 2xx with a non-empty body.

Guarantees: a text answered 2xx is stored and will be sent exactly once (the drain's claim and tag); a POST that
repeats one answered within DUPLICATE_WINDOW (3CX retrying after a lost answer) gets the first one's answer and
is not stored again; a refused POST stores nothing.
"""

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import phonenumbers
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from messaging.models import Message, ProviderKey, SenderID, Trunk, secret_hash
from messaging.services import outbound
from tenants.models import AuditEvent

logger = logging.getLogger(__name__)


KEY_OVERLAP = timedelta(hours=24)  # an old key keeps working this long after a new one is issued


# 3CX retries a POST whose answer it did not get; a person does not send the same words to the same number twice
# within seconds. A repeat inside this window is answered with the first text's id and not sent again.
DUPLICATE_WINDOW = timedelta(seconds=30)


DUPLICATE_LOCK = 72_211_002  # PostgreSQL advisory lock namespace: one check-then-store per (trunk, destination)


# ---------------------------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------------------------


def provider_key_issue(*, actor: User | None, trunk: Trunk, overlap: timedelta = KEY_OVERLAP) -> str:
    """Issue a new provider key for the trunk and return it — the only time it is seen: only its hash is kept.

    The trunk's older keys keep working for `overlap` (3CX goes on sending while someone types the new key in),
    then stop. Audited, without the key.
    """
    key = ProviderKey.PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        retiring = ProviderKey.objects.filter(trunk=trunk).filter(
            Q(retire_at__isnull=True) | Q(retire_at__gt=timezone.now() + overlap)
        )
        retired = retiring.update(retire_at=timezone.now() + overlap)
        ProviderKey.objects.create(trunk=trunk, key_hash=secret_hash(key), last4=key[-4:])
        AuditEvent.record(
            AuditEvent.Action.PROVIDER_KEY_ISSUED,
            trunk,
            actor=actor,
            changes={"last4": key[-4:], "older_keys_retire_in": str(overlap) if retired else None},
        )
    return key


def provider_key_live(trunk: Trunk) -> ProviderKey | None:
    """The trunk's newest key that is not being retired (what the wizard shows as …last4), if any."""
    return ProviderKey.objects.filter(trunk=trunk, retire_at__isnull=True).order_by("-created_at").first()


# ---------------------------------------------------------------------------------------------------------------
# Texts from 3CX
# ---------------------------------------------------------------------------------------------------------------


class Refused(Exception):
    """A POST from 3CX that is not taken: the HTTP status, a title and the reason (Telnyx's error shape)."""

    def __init__(self, status: int, title: str, detail: str, source: str = "") -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.source = status, title, detail, source

    def as_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": str(self.status), "title": self.title, "detail": self.detail}
        if self.source:
            error["source"] = {"pointer": f"/{self.source}"}
        return {"errors": [error]}


@dataclass(frozen=True)
class Taken:
    """A text 3CX handed over: the stored message, and whether it repeats one already taken."""

    message: Message
    repeated: bool


def _number(value: object, field: str, country: str) -> str:
    """A number as 3CX may send it — +E.164, or digits with or without the country code — in E.164.

    Digits are read first as a number of the tenant's country ("4155550142", "14155550142" in the US), then with
    a + in front ("447700900123"): a national reading that is valid wins, as it does when a person types one.
    """
    if isinstance(value, list) and len(value) == 1:
        value = value[0]  # Telnyx's `to` may be a list of one
    if isinstance(value, dict):
        value = value.get("phone_number")
    if not isinstance(value, str) or not value.strip():
        raise Refused(422, "Invalid parameter", f"`{field}` must be a phone number.", field)
    raw = value.strip()
    if raw.startswith("+") or not raw.isdigit():
        return raw
    for candidate, region in ((raw, country or None), ("+" + raw, None)):
        try:
            parsed = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return "+" + raw  # not a valid number either way: validation below says so, naming it


def _text_and_media(body: dict[str, Any]) -> tuple[str, list[str]]:
    text = body.get("text", "")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise Refused(422, "Invalid parameter", "`text` must be a string.", "text")
    media = body.get("media_urls")
    if media is None:
        media = []
    if isinstance(media, str):
        media = [media]
    if not isinstance(media, list) or not all(isinstance(url, str) for url in media):
        raise Refused(422, "Invalid parameter", "`media_urls` must be a list of URLs.", "media_urls")
    return text, media


def trunk_sender(trunk: Trunk, from_number: str) -> SenderID:
    """The sender ID `from` names, if it is this trunk's: its Main Trunk No., or a number assigned to the trunk.

    A key sends only as its own trunk — never as another trunk's number, even of the same tenant."""
    sender = (
        SenderID.objects.filter(tenant_id=trunk.tenant_id, value=from_number)
        .filter(Q(pk=trunk.main_sender_id) | Q(phone_number__trunk=trunk))
        .select_related("account")
        .first()
    )
    if sender is None:
        raise Refused(
            403,
            "Sender not allowed",
            f"{from_number} is not a number or sender ID of trunk {trunk.name}: this key sends only from the trunk's "
            "own numbers and its Main Trunk No.",
            "from",
        )
    return sender


def _validation_refusal(error: ValidationError) -> Refused:
    """The portal's own validation error (a field and its reasons) in 3CX's terms."""
    fields = {"to": "to", "text": "text", "media": "media_urls", "sender": "from", "tenant": "from"}
    field, reasons = next(iter(error.message_dict.items())) if hasattr(error, "error_dict") else ("", error.messages)
    return Refused(422, "Message refused", " ".join(reasons), fields.get(field, ""))


def _lock_key(trunk: Trunk, sender: SenderID, to: str) -> int:
    """A 64-bit lock key for (trunk, sender, destination): two POSTs of one text take the same advisory lock."""
    digest = hashlib.sha256(json.dumps([DUPLICATE_LOCK, trunk.pk, sender.pk, to]).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _repeat_of(trunk: Trunk, draft: outbound.Draft) -> Message | None:
    """A text this trunk's 3CX handed over within DUPLICATE_WINDOW with the same sender, destination and words."""
    return (
        Message.objects.filter(
            account_id=draft.sender.account_id,  # the message_destination_recent index: account, to, created_at
            to_number=draft.to,
            created_at__gte=timezone.now() - DUPLICATE_WINDOW,
            direction=Message.Direction.OUTBOUND,
            origin=Message.Origin.THREECX,
            trunk=trunk,
            sender=draft.sender,
            text=draft.text,
            media=list(draft.media),
        )
        .order_by("id")
        .first()
    )


def refusal_note(trunk: Trunk, refused: Refused) -> None:
    """Keep the trunk's latest refusal, in words, for step 5 and the dashboard (3CX shows only "failed")."""
    Trunk.objects.filter(pk=trunk.pk).update(
        provider_refusal=f"{refused.status} {refused.title}: {refused.detail}"[:300], provider_refused_at=timezone.now()
    )


def message_from_3cx(trunk: Trunk, body: object) -> Taken:
    """Take one text 3CX POSTed for this (authenticated) trunk: store and queue it, or raise Refused saying why.

    The checks are the send API's (outbound.message_validate: suspended tenant, destination, the sender's
    registration for the country, opt-outs, encoding and length, MMS rules, Wavix's daily limit), plus the trunk's
    own: a key sends only from its trunk's numbers and sender IDs. Nothing is stored when a text is refused.
    """
    if not isinstance(body, dict):
        raise Refused(400, "Invalid body", "The body must be a JSON object with from, to and text.")
    country = trunk.tenant.default_country or ""
    missing = [field for field in ("from", "to") if not body.get(field)]
    if missing:
        raise Refused(422, "Missing parameter", f"`{missing[0]}` is required.", missing[0])
    from_number = _number(body["from"], "from", country)
    to = _number(body["to"], "to", country)
    text, media = _text_and_media(body)
    sender = trunk_sender(trunk, from_number)
    try:
        draft = outbound.message_validate(tenant=trunk.tenant, sender=sender, to=to, text=text, media=media)
    except ValidationError as error:
        raise _validation_refusal(error) from None
    with transaction.atomic():
        if connection.vendor == "postgresql":  # SQLite writes one at a time anyway
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_key(trunk, sender, draft.to)])
        repeat = _repeat_of(trunk, draft)
        if repeat is not None:
            logger.info("3cx provider: trunk %s repeated message %s: answered, not sent twice", trunk.pk, repeat.pk)
            return Taken(repeat, repeated=True)
        message = outbound.draft_queue(draft, trunk=trunk, origin=Message.Origin.THREECX)
    return Taken(message, repeated=False)


def answer(message: Message) -> dict[str, Any]:
    """The body 3CX gets for a text taken: Telnyx v2's message resource, carrying the portal's message id."""
    return {
        "data": {
            "record_type": "message",
            "id": str(message.pk),
            "direction": "outbound",
            "type": "MMS" if message.media else "SMS",
            "from": {"phone_number": message.from_number},
            "to": [{"phone_number": message.to_number, "status": "queued"}],
            "text": message.text,
            "media": [{"url": url} for url in message.media],
            "parts": message.segments,
            "encoding": message.get_encoding_display(),
            "received_at": message.created_at.isoformat().replace("+00:00", "Z"),
        }
    }
