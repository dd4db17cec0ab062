"""Helpers the model modules share: phone numbers in E.164, and webhook URLs masked for people who may not
see their secret."""

import re

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from tenants import access

# --------------------------------------------------------------------------------------------------------------
# Phone numbers
# --------------------------------------------------------------------------------------------------------------


def to_e164(value: str, default_region: str | None = None) -> str:
    """Parse a phone number and return it as E.164 (+ and digits), or raise a ValidationError saying why."""
    raw = (value or "").strip()
    if not raw:
        raise ValidationError("Enter a phone number in E.164 format, for example +14155550123.")
    if not raw.startswith("+") and not default_region:
        raise ValidationError(
            f"{raw!r} is not in E.164 format: start with + and the country code, for example +14155550123."
        )
    try:
        parsed = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        raise ValidationError(f"{raw!r} is not a phone number.") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationError(f"{raw!r} is not a valid phone number for its country code.")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def country_of(e164: str) -> str:
    """ISO country of an E.164 number ('' when the numbering plan is shared and unassigned)."""
    return phonenumbers.region_code_for_number(phonenumbers.parse(e164)) or ""


hostname_validator = RegexValidator(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$",
    "Enter the PBX's fully qualified domain name, for example acme.3cx.eu.",
)


# The shape WavixAccount.webhook_url() builds: the secret is one path segment, the kind the last.
_PORTAL_WEBHOOK_URL = re.compile(r"(?P<start>https?://[^/?#]+/webhooks/wavix/)[^/?#]+(?P<kind>/[A-Za-z0-9]+/)")


def masked_url(url: str) -> str:
    """A URL to recognise, not to use. A webhook URL of the portal keeps all but its secret
    (https://portal.example/webhooks/wavix/•••/inbound/); any other URL (3CX's, or where a number relays after
    someone changed it at Wavix: another system's, whose secret may sit anywhere in it) keeps its scheme and host
    and only its last 4 characters."""
    if not url:
        return ""
    if portal := _PORTAL_WEBHOOK_URL.fullmatch(url):
        return f"{portal['start']}•••{portal['kind']}"
    match = re.match(r"^(https?://[^/]+)", url)
    return f"{match.group(1) if match else ''}/…{url[-4:]}"


def url_shown_to(user, row: models.Model, url: str, *, token_tenant=None) -> str:
    """A webhook URL of `row` as this user may see it: whole, or masked (tenants.access.may_see_webhook_urls)."""
    return url if access.may_see_webhook_urls(user, row, token_tenant=token_tenant) else masked_url(url)


class IllegalTransition(ValueError):
    """A status move a state machine forbids (Message, Delivery, SenderIDCountry): the caller's mistake or a race
    lost. A ValueError, so code that guards a move with `except ValueError` keeps working; its text is for people."""
