"""The one module that talks to Wavix, through the official SDK (`wavix-python-sdk`).

- Base URL and timeouts come from settings; the SDK's own retries are off, because Celery owns retries.
- Every failure becomes WavixTransientError (network, timeout, 429, 5xx: trying later may work) or
  WavixPermanentError (any other 4xx: it will not; carries Wavix's own `message`).
- The API key travels only in the Authorization header: it is in no log line and no error text, and SDK
  exceptions (whose text includes raw headers and bodies) are never chained onto ours.
- Numbers go to Wavix as digits and come back as E.164.
"""

import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import httpx
import pydantic
from django.conf import settings
from wavix import Number, SenderId, SenderIdDetails, Wavix
from wavix.core.api_error import ApiError

logger = logging.getLogger(__name__)
PAGE_SIZE = 100
BULK_SIZE = 100  # numbers per bulk update
T = TypeVar("T")


class WavixError(Exception):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status


class WavixTransientError(WavixError):
    """Wavix could not be reached or was overloaded; the same call may succeed later."""

    def __init__(self, message: str, status: int | None = None, *, may_have_arrived: bool = False):
        super().__init__(message, status)
        # True when the request left this machine and only the answer was lost (a read timeout): the call may
        # have taken effect at Wavix, so a send must be reconciled before it is repeated.
        self.may_have_arrived = may_have_arrived


class WavixPermanentError(WavixError):
    """Wavix refused the call (4xx other than 429); `message` is Wavix's own reason."""


@dataclass(frozen=True)
class WavixNumber:
    wavix_id: str
    number: str  # E.164
    country: str
    sms_enabled: bool
    status: str
    sms_relay_url: str
    label: str


@dataclass(frozen=True)
class WavixSenderID:
    wavix_id: str
    value: str
    type: str
    allowlisted_in: frozenset[str]


@dataclass(frozen=True)
class WavixSent:
    """Wavix's answer to a send (or what a lookup by tag found)."""

    wavix_id: str
    status: str
    segments: int | None
    charge: str | None


@dataclass(frozen=True)
class WavixOutbound:
    """An outbound message as Wavix's log lists it: numbers as E.164, times as Wavix wrote them (read them
    leniently: with and without a zone)."""

    wavix_id: str
    sender: str  # E.164 for a number, else the alphanumeric sender as listed
    to: str
    text: str
    media: tuple[str, ...]
    status: str
    segments: int | None
    charge: str | None
    tag: str  # "" when it has none
    submitted_at: str
    sent_at: str | None
    delivered_at: str | None
    error: str


@dataclass(frozen=True)
class WavixSubAccount:
    wavix_id: str
    api_key: str


def to_wavix_number(e164: str) -> str:
    return e164.lstrip("+")


def from_wavix_number(digits: str) -> str:
    return "+" + digits.strip().lstrip("+")


_http: httpx.Client | None = None
_http_pid: int | None = None


def _http_client() -> httpx.Client:
    """One pooled HTTP client per process (a client made before a worker forked must not be shared)."""
    global _http, _http_pid
    if _http is None or _http_pid != os.getpid():
        timeout = httpx.Timeout(
            connect=settings.WAVIX_CONNECT_TIMEOUT,
            read=settings.WAVIX_READ_TIMEOUT,
            write=settings.WAVIX_READ_TIMEOUT,
            pool=settings.WAVIX_CONNECT_TIMEOUT,
        )
        _http, _http_pid = httpx.Client(timeout=timeout), os.getpid()
    return _http


def _wavix_message(body: object) -> str:
    """Wavix's `message`, whether the SDK parsed the error body into a model, a dict, or left it as text."""
    if isinstance(body, str):
        text = body
        try:
            body = json.loads(text)
        except ValueError:
            return text.strip()[:200] or "no reason given"
    message = body.get("message") if isinstance(body, dict) else getattr(body, "message", None)
    return str(message) if message else "no reason given"


class HasApiKey(Protocol):
    """An account row (messaging.models.WavixAccount) as far as this module needs it."""

    def get_api_key(self) -> str: ...


class WavixClient:
    """Calls to one Wavix account, identified by its API key."""

    def __init__(self, api_key: str):
        self._sdk = Wavix(token=api_key, base_url=settings.WAVIX_API_URL, max_retries=0, httpx_client=_http_client())

    @classmethod
    def for_account(cls, account: HasApiKey) -> "WavixClient":
        return cls(account.get_api_key())

    def _call(self, what: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        except ApiError as error:
            status, message = error.status_code, _wavix_message(error.body)
        except httpx.TimeoutException as error:
            may_have_arrived = not isinstance(error, httpx.ConnectTimeout | httpx.PoolTimeout)
            raise WavixTransientError(
                f"Wavix did not answer {what} in time.", may_have_arrived=may_have_arrived
            ) from None
        except httpx.RemoteProtocolError:
            raise WavixTransientError(f"Wavix closed the connection during {what}.", may_have_arrived=True) from None
        except httpx.HTTPError as error:
            raise WavixTransientError(f"Could not reach Wavix for {what} ({type(error).__name__}).") from None
        except pydantic.ValidationError as error:
            logger.warning("wavix: the answer to %s did not match the SDK's model: %s", what, error.errors()[:3])
            raise WavixPermanentError(f"Wavix's answer to {what} was not understood.") from None
        logger.info("wavix: %s answered %s: %s", what, status, message)
        if status is None or status == 429 or status >= 500:
            raise WavixTransientError(f"Wavix answered {status} to {what}: {message}", status)
        raise WavixPermanentError(message, status)

    # -- account -----------------------------------------------------------------------------------------------

    def profile(self) -> dict[str, object]:
        """The account's profile; the cheap call that proves a key works."""
        profile = self._call("the key check", self._sdk.profile.get)
        return {"id": profile.id, "email": profile.email}

    def set_default_endpoints(self, *, sms_url: str, dlr_url: str) -> None:
        """Point the account's default SMS (inbound) and DLR endpoints at these URLs."""
        self._call(
            "updating the default endpoints", self._sdk.profile.update, sms_relay_url=sms_url, dlr_relay_url=dlr_url
        )

    def create_sub_account(self, *, name: str, sms_url: str, dlr_url: str) -> WavixSubAccount:
        created = self._call(
            "creating a sub-account",
            self._sdk.sub_accounts.create,
            name=name,
            default_destinations={"sms_endpoint": sms_url, "dlr_endpoint": dlr_url},
        )
        return WavixSubAccount(wavix_id=str(created.id), api_key=created.api_key)

    # -- numbers -----------------------------------------------------------------------------------------------

    def number_pages(self) -> Iterator[tuple[int, int, list[WavixNumber]]]:
        """Every page of the account's numbers: (page, total pages, numbers on it)."""
        page = 1
        while True:
            result = self._call("listing numbers", self._sdk.numbers.list, page=page, per_page=PAGE_SIZE)
            total_pages = max(result.pagination.total_pages, 1)
            yield page, total_pages, [self._number(n) for n in result.items]
            if page >= total_pages:
                return
            page += 1

    def set_numbers_relay(self, wavix_ids: list[str], url: str) -> list[WavixNumber]:
        """Send these numbers' inbound texts to this URL: one bulk update per BULK_SIZE numbers."""
        updated = []
        for start in range(0, len(wavix_ids), BULK_SIZE):
            ids = [int(i) for i in wavix_ids[start : start + BULK_SIZE]]
            result = self._call(
                "setting numbers' SMS relay URL", self._sdk.numbers.bulk_update, ids=ids, sms_relay_url=url
            )
            updated += [self._number(n) for n in result.items]
        return updated

    @staticmethod
    def _number(raw: Number) -> WavixNumber:
        return WavixNumber(
            wavix_id=str(raw.id),
            number=from_wavix_number(raw.number),
            country=raw.country_short_name,
            sms_enabled=raw.sms_enabled,
            status=raw.status,
            sms_relay_url=raw.sms_relay_url or "",
            label=raw.label or "",
        )

    # -- messages ----------------------------------------------------------------------------------------------

    def send_message(
        self, *, sender: str, to: str, text: str, media: list[str], callback_url: str, tag: str, validity: int
    ) -> WavixSent:
        """POST /v3/messages: the report for it comes to callback_url, carrying `tag` (our message id)."""
        sent = self._call(
            "sending a message",
            self._sdk.sms_and_mms.messages.send,
            from_=to_wavix_number(sender) if sender.startswith("+") else sender,
            to=to_wavix_number(to),
            message_body={"text": text, "media": media or None},
            callback_url=callback_url,
            tag=tag,
            validity=validity,
        )
        return WavixSent(
            wavix_id=sent.message_id, status=sent.status or "accepted", segments=sent.segments, charge=sent.charge
        )

    def find_sent(self, tag: str) -> WavixSent | None:
        """The outbound message Wavix holds with this tag, if any: the answer for a send whose outcome was lost."""
        found = self._call(
            "looking up a message by tag", self._sdk.sms_and_mms.messages.list, type="outbound", tag=tag, per_page=10
        )
        matches = [m for m in found.items if m.tag == tag]
        if not matches:
            return None
        first = matches[-1]  # the oldest, should there ever be two
        return WavixSent(
            wavix_id=first.message_id, status=str(first.status), segments=first.segments, charge=first.charge
        )

    def inbound_messages(self, since: datetime) -> Iterator[dict[str, Any]]:
        """Inbound messages Wavix received after `since`, as InboundMessage bodies (digits, as Wavix sends them)."""
        page = 1
        while True:
            result = self._call(
                "listing inbound messages",
                self._sdk.sms_and_mms.messages.list,
                type="inbound",
                sent_after=since.strftime("%Y-%m-%dT%H:%M:%SZ"),
                page=page,
                per_page=PAGE_SIZE,
            )
            for message in result.items:
                yield {
                    "message_id": message.message_id,
                    "from": message.from_,
                    "to": message.to,
                    "message_body": {"text": message.message_body.text, "media": message.message_body.media},
                    "received_at": message.submitted_at,
                }
            if page >= result.pagination.total_pages:
                return
            page += 1

    def outbound_messages(self, since: datetime) -> Iterator[WavixOutbound]:
        """Outbound messages the account submitted after `since`, whoever sent them (the portal, or 3CX straight to
        Wavix): the mirror's reading of Wavix's log."""
        page = 1
        while True:
            result = self._call(
                "listing outbound messages",
                self._sdk.sms_and_mms.messages.list,
                type="outbound",
                sent_after=since.strftime("%Y-%m-%dT%H:%M:%SZ"),
                page=page,
                per_page=PAGE_SIZE,
            )
            for message in result.items:
                sender = message.from_.strip()
                digits = sender.removeprefix("+")
                yield WavixOutbound(
                    wavix_id=message.message_id,
                    # A numeric sender is listed as digits (with or without +); an alphanumeric one as its name.
                    sender=from_wavix_number(sender) if digits.isascii() and digits.isdigit() else sender,
                    to=from_wavix_number(message.to),
                    text=message.message_body.text,
                    media=tuple(message.message_body.media or ()),
                    status=str(message.status),
                    segments=message.segments,
                    charge=message.charge,
                    tag=message.tag or "",
                    submitted_at=message.submitted_at,
                    sent_at=message.sent_at,
                    delivered_at=message.delivered_at,
                    error=message.error_message or "",
                )
            if page >= result.pagination.total_pages:
                return
            page += 1

    # -- sender IDs --------------------------------------------------------------------------------------------

    def create_sender_id(
        self, *, value: str, type: str, countries: list[str], usecase: str, samples: list[str]
    ) -> WavixSenderID:
        # An explicit None would be sent as null, which the spec refuses: leave samples out when there are none.
        optional = {"samples": samples} if samples else {}
        created = self._call(
            "registering a sender ID",
            self._sdk.sms_and_mms.sender_ids.create,
            sender_id=to_wavix_number(value) if type == "numeric" else value,
            type=type,
            countries=countries,
            usecase=usecase,
            **optional,
        )
        return self._sender(created)

    def sender_ids(self) -> list[WavixSenderID]:
        listed = self._call("listing sender IDs", self._sdk.sms_and_mms.sender_ids.list)
        return [self._sender(s) for s in listed.items]

    def delete_sender_id(self, wavix_id: str) -> None:
        self._call("deleting a sender ID", self._sdk.sms_and_mms.sender_ids.delete, wavix_id)

    @staticmethod
    def _sender(raw: SenderId | SenderIdDetails) -> WavixSenderID:
        value = from_wavix_number(raw.sender_id) if raw.type == "numeric" else raw.sender_id
        return WavixSenderID(
            wavix_id=str(raw.id), value=value, type=str(raw.type), allowlisted_in=frozenset(raw.allowlisted_in or [])
        )


# Wavix's errors (numbers from its docs; its messages vary) and what a reseller can do about each.
_SMS_NOT_ENABLED = "SMS is not enabled on this Wavix account; ask Wavix."
# First match wins, so a narrower needle goes before any broader one that contains it ("not provisioned for your
# account" before "not provisioned"), and a short stem is spelled out as a phrase ("opt" alone matches "option").
_EXPLANATIONS = (
    (("not provisioned for your account",), _SMS_NOT_ENABLED),
    (
        ("not provisioned", "allowlist", "allow-list", " 5 "),
        "The sender ID is not allow-listed for this country at "
        "Wavix. Add the country to the sender ID and wait for it to be allow-listed, or send from another sender.",
    ),
    (
        ("flood", " 7 ", "blocked"),
        "Wavix's anti-flooding rule: too many identical messages, or too many from one "
        "sender, to this number within an hour. Wait an hour before texting it again.",
    ),
    (
        ("unsubscribed", "opted out", "opt-out", "opt out", "optout", " 9 "),
        "The recipient unsubscribed (texted STOP); they must text START first.",
    ),
    (("mms", " 12 "), "MMS can only be sent to the US and Canada."),
    (("1 mb", "too large", " 13 "), "A media file is over 1 MB."),
    (("media type", "file type", " 14 "), "A media file is of a type Wavix cannot send."),
    (("attachments", " 21 "), "More than 5 media files."),
    (
        ("sender id not found", "sender_id", " 22 "),
        "Wavix does not know this sender ID on the account: "
        "register it (Sender IDs) or check the account it belongs to.",
    ),
    (("far-end", "carrier", " 23 "), "The recipient's carrier refused the message."),
    (
        ("too many requests", "per second", " 26 "),
        "Sent faster than the account's limit; the portal slows down and retries by itself.",
    ),
    (("too long", " 41 "), "The text is longer than Wavix accepts (1,630 GSM-7 or 670 UCS-2 characters)."),
    (
        ("handset", "unreachable", "undelivered"),
        "The phone could not be reached (off, out of coverage, or not a mobile). Try again later.",
    ),
    (("unauthorized",), "Wavix refused the account's API key: paste a valid key on the Wavix account."),
    (("service",), _SMS_NOT_ENABLED),
    (("validity", "too late"), "It was not sent in time (its validity passed), so it was not sent at all."),
)


def explain(error: str) -> str:
    """A plain-language explanation of a Wavix error message, with what to do; "" when there is no error."""
    if not error:
        return ""
    text = f" {error.lower()} "
    for needles, explanation in _EXPLANATIONS:
        if any(needle in text for needle in needles):
            return explanation
    return "Wavix gave this reason; if it is unclear, send it to Wavix support with the message id."


def refusal(error: WavixError, what: str, *, doing: str, nothing: str = "saved") -> str:
    """What to tell a person whose request needed Wavix: its refusal, or that it could not be asked now."""
    if isinstance(error, WavixTransientError):
        reason = error.message.rstrip(".")
        return f"Could not {doing} at Wavix right now ({reason}); nothing was {nothing}. Try again in a minute."
    return f"Wavix refused {what}: {error.message}"
