"""What each kind of Wavix webhook must carry to be stored, checked at intake; and how Wavix's timestamps are read.

Wavix's spec (shared/wavix/wavix-api.yaml, `webhooks:`: InboundMessage, DeliveryReport and the three 10DLC status
webhooks) gives each field's type; the column a field lands in gives its longest value. A body that fails gets a
400 naming the field and what it must be, and nothing is stored: a row that fails later (a value too long for its
column, "notalist" read as eight one-letter media URLs) would be answered 200 and then vanish or reach 3CX garbled.

Lenient only where Wavix really varies: numbers with or without +, timestamps with or without a zone, extra fields,
`message_type` present or not, null or missing for optional fields, alphanumeric senders. Only what the portal acts
on is checked: a delivery report needs its message id and status; its side fields (segments, charge, times, error)
are read when it is applied, where a bad one is dropped with a note and the status still applies
(services.relay._apply_report).
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from messaging.models import Delivery, Message, PhoneNumber, TenDLCRegistration, WebhookEvent
from portal.parsers import lone_surrogate_at, lone_surrogate_problem

Kind = WebhookEvent.Kind


def _longest(model, field: str) -> int:
    return model._meta.get_field(field).max_length


# The spec's enums: MessageDeliveryStatus; the union of BrandStatusUpdatedWebhook's, CampaignStatusUpdatedWebhook's
# and NumberStatusUpdatedWebhook's statuses, which arrive at the one 10DLC URL (tests/test_intake.py compares both
# with the spec).
REPORT_STATUSES = ("accepted", "pending", "sent", "delivered", "undelivered", "expired", "rejected", "dlr_expired")
TENDLC_STATUSES = (
    *("SELF_DECLARED", "UNVERIFIED", "VERIFIED", "VETTED_VERIFIED", "REVIEW", "SUSPENDED"),
    *("APPROVED", "DECLINED", "DELETED", "EXPIRED", "PORTED_OUT"),
    *("PENDING", "REJECTED"),
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def parse_time(value) -> datetime:
    """A Wavix timestamp: ISO 8601 with or without a zone (then UTC), a space allowed for the T; ValueError if not."""
    if not isinstance(value, str):
        raise ValueError("not a string")
    moment = parse_datetime(value.strip().replace(" ", "T"))  # ValueError for a well-formed impossible date too
    if moment is None:
        raise ValueError("not an ISO 8601 date and time")
    return timezone.make_aware(moment, UTC) if timezone.is_naive(moment) else moment


def as_stored_number(value: str) -> str:
    """A number as the portal stores it: +E.164 for digits (with or without +), else the name, trimmed."""
    text = value.strip()
    digits = text.removeprefix("+")
    return f"+{digits}" if digits.isascii() and digits.isdigit() else text


# --- checks: each takes a present, non-null value and says whether it has the shape -------------------------------


def _identifier(longest: int, *, empty_ok: bool = False) -> Callable[[object], bool]:
    def ok(value) -> bool:
        if not isinstance(value, str):
            return False
        if value == "":
            return empty_ok
        return bool(value.strip()) and len(value) <= longest and not _CONTROL.search(value)

    return ok


def _phone_number(longest: int) -> Callable[[object], bool]:
    def ok(value) -> bool:
        if not isinstance(value, str):
            return False
        digits = value.strip().removeprefix("+")
        # isdigit() alone takes "²" and other Unicode digits; the stored form has a "+" in front.
        return digits.isascii() and digits.isdigit() and len(digits) + 1 <= longest

    return ok


def _number_or_name(longest: int) -> Callable[[object], bool]:
    def ok(value) -> bool:
        if not isinstance(value, str) or not value.strip() or _CONTROL.search(value):
            return False
        return len(as_stored_number(value)) <= longest

    return ok


def _text(value) -> bool:
    return isinstance(value, str) and "\x00" not in value  # PostgreSQL stores no NUL in text


def _url(value) -> bool:
    if not isinstance(value, str) or _CONTROL.search(value) or " " in value:
        return False
    try:
        parts = urlsplit(value)
    except ValueError:  # "http://[" and other broken hosts
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _url_list(value) -> bool:
    return isinstance(value, list) and all(_url(url) for url in value)


def _timestamp(value) -> bool:
    try:
        parse_time(value)
    except ValueError:
        return False
    return True


def _one_of(choices: tuple[str, ...], *, any_case: bool = False) -> Callable[[object], bool]:
    def ok(value) -> bool:
        return isinstance(value, str) and (value.upper() if any_case else value) in choices

    return ok


@dataclass(frozen=True)
class Field:
    path: str  # dotted: "message_body.media"
    required: bool
    ok: Callable[[object], bool]
    must_be: str  # what the 400 says it must be

    def value(self, payload: dict):
        """The field's value, None when it is missing or null (or its parent is not an object)."""
        value: Any = payload
        for key in self.path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def problem(self, payload: dict) -> str | None:
        value = self.value(payload)
        if value is None:
            return f"{self.path} is missing: it must be {self.must_be}." if self.required else None
        return None if self.ok(value) else f"{self.path} must be {self.must_be}."


def _id_text(longest: int) -> str:
    return f"a non-empty string of at most {longest} characters, without control characters"


MESSAGE_ID_MAX = _longest(Message, "wavix_message_id")
FROM_MAX = min(_longest(Message, "from_number"), _longest(Delivery, "remote_number"))
TO_MAX = _longest(Message, "to_number")
TENDLC_ID_MAX = min(_longest(TenDLCRegistration, "brand_id"), _longest(PhoneNumber, "tendlc_brand_id"))
TENDLC_NUMBER_MAX = _longest(PhoneNumber, "number")

# Checked in order; the first problem is the answer.
SHAPES: dict[str, tuple[Field, ...]] = {
    Kind.INBOUND: (
        Field("message_id", True, _identifier(MESSAGE_ID_MAX), _id_text(MESSAGE_ID_MAX)),
        Field(
            "from",
            True,
            _number_or_name(FROM_MAX),
            f"a phone number or a sender name of at most {FROM_MAX} characters, without control characters",
        ),
        Field(
            "to",
            True,
            _phone_number(TO_MAX),
            f"a phone number: at most {TO_MAX - 1} digits, with or without a leading +",
        ),
        Field("message_body", True, lambda value: isinstance(value, dict), "an object with text and media"),
        Field("message_body.text", False, _text, "a string without NUL characters, or null"),
        Field("message_body.media", False, _url_list, "a list of URL strings (http or https) or null"),
        Field("message_type", False, lambda value: isinstance(value, str), "a string (such as sms or mms) or null"),
        Field("received_at", False, _timestamp, "an ISO 8601 date and time (with or without a zone) or null"),
    ),
    Kind.DLR: (
        Field("message_id", True, _identifier(MESSAGE_ID_MAX), _id_text(MESSAGE_ID_MAX)),
        Field("status", True, _one_of(REPORT_STATUSES), f"one of {', '.join(REPORT_STATUSES)}"),
    ),
    Kind.TENDLC: (
        Field("status", True, _one_of(TENDLC_STATUSES, any_case=True), f"one of {', '.join(TENDLC_STATUSES)}"),
        Field("brand_id", True, _identifier(TENDLC_ID_MAX), _id_text(TENDLC_ID_MAX)),
        Field("campaign_id", False, _identifier(TENDLC_ID_MAX, empty_ok=True), _id_text(TENDLC_ID_MAX) + ", or null"),
        Field(
            "number",
            False,
            _phone_number(TENDLC_NUMBER_MAX),
            f"a phone number: at most {TENDLC_NUMBER_MAX - 1} digits, with or without a leading +; or null",
        ),
    ),
}


def shape_problem(kind: str, payload: dict) -> str | None:
    """Why this webhook payload cannot be stored, or None: a lone surrogate anywhere, else its kind's first field
    that does not have its shape."""
    if where := lone_surrogate_at(payload):
        return lone_surrogate_problem(where)
    return _field_problem(kind, payload)


def _field_problem(kind: str, payload: dict) -> str | None:
    for field in SHAPES[kind]:
        if problem := field.problem(payload):
            return problem
    return None


def parse(kind: str, body: bytes) -> tuple[dict | None, str | None]:
    """The payload of a webhook body, or why it cannot be accepted."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, "The body is not JSON."
    except RecursionError:  # a few thousand nested brackets fit in the size limit
        return None, "The body is nested too deeply."
    if not isinstance(payload, dict):
        return None, "The body is not a JSON object."
    # A lone surrogate comes only from a \u escape (no decoder json.loads uses lets a raw one through), so a body
    # without a backslash, whose byte is there in UTF-8, -16 and -32 alike, skips the walk: a third of the check's
    # cost on a plain webhook.
    check = shape_problem if b"\\" in body else _field_problem
    if problem := check(kind, payload):
        return None, problem
    return payload, None


def conversation_key(kind: str, payload: dict) -> str:
    """What a webhook's relay partition is a hash of (models/relay.py): an inbound text's remote number (its
    conversation, and its delivery's), a report's message id (a message's reports in order), a 10DLC status's key."""
    if kind == Kind.INBOUND:
        return as_stored_number(str(payload["from"]))
    if kind == Kind.DLR:
        return str(payload["message_id"])
    return dedup_key(kind, payload)


def dedup_key(kind: str, payload: dict) -> str:
    """What makes a webhook a duplicate: the message id (and the status, for a report; the 10DLC ids and status).

    The shapes above bound every part, so the key fits its column (tests/test_intake.py checks the longest)."""
    if kind == Kind.INBOUND:
        return payload["message_id"]
    if kind == Kind.DLR:
        return f"{payload['message_id']}:{payload['status']}"
    return ":".join([*(str(payload.get(key, "")) for key in ("brand_id", "campaign_id", "number")), payload["status"]])
