"""Wavix's reports applied: delivery reports to outbound messages, 10DLC statuses to numbers and registrations.

A report's fields are checked one by one; one that cannot be read is dropped or clamped with a note on the event,
never the whole report.
"""

import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from django.utils import timezone

from messaging import webhooks
from messaging.models import (
    Message,
    PhoneNumber,
    TenDLCRegistration,
    WebhookEvent,
    values_update,
)
from messaging.services import forwarding

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


def _shown(value: object) -> str:
    return repr(value) if len(repr(value)) <= 40 else repr(value)[:39] + "…"


def _report_segments(payload: dict[str, Any]) -> tuple[int | None, str | None]:
    """(segments, note): Wavix's segments_count, or the older `segments` when it is absent."""
    key = "segments_count" if payload.get("segments_count") is not None else "segments"
    value = payload.get(key)
    if value is None:
        return None, None
    segments = Message.segments_from(value)
    if segments is None:
        return None, f"Dropped {key} {_shown(value)}: not a number of segments from 1 to {Message.SEGMENTS_MAX}."
    return segments, None


def _report_charge(payload: dict[str, Any]) -> tuple[Decimal | None, str | None]:
    """(charge, note): a finite amount that fits the column (Wavix sends a string; a number is taken too)."""
    value = payload.get("charge")
    if value is None or value == "":
        return None, None
    charge = Message.charge_from(value)
    if charge is None:
        return None, f"Dropped charge {_shown(value)}: not an amount below {Message.charge_limit():,}."
    return charge, None


def _report_time(
    payload: dict[str, Any], key: str, message: Message, event: WebhookEvent
) -> tuple[datetime | None, str | None]:
    """(time, note): Wavix's timestamps come with and without a zone (read leniently, UTC assumed). A report cannot
    speak of a moment before its message existed or after the report itself arrived: such a time is clamped."""
    value = payload.get(key)
    if value is None or value == "":
        return None, None
    try:
        moment = webhooks.parse_time(value)
    except ValueError:
        return None, f"Dropped {key} {_shown(value)}: not an ISO 8601 date and time."
    if moment < message.created_at:
        return message.created_at, f"Clamped {key} {_shown(value)} to the message's creation: it was earlier."
    if moment > event.received_at:
        return event.received_at, f"Clamped {key} {_shown(value)} to the report's arrival: it was later."
    return moment, None


def _report_error(payload: dict[str, Any]) -> tuple[str, str | None]:
    """(Wavix's error text, note)."""
    value = payload.get("error")
    if value is None:
        return "", None
    if not isinstance(value, str) or "\x00" in value:
        return "", f"Dropped error {_shown(value)}: not a text."
    return value[:500], None


def apply_report(event: WebhookEvent, payload: dict[str, Any]) -> None:
    """Move an outbound message along its state machine; a repeated or late report never moves it back. Side fields
    that cannot be read are left out with a note on the event, shown with the message's reports."""
    message = (
        Message.objects.select_for_update()
        .filter(
            account=event.account, wavix_message_id=str(payload["message_id"]), direction=Message.Direction.OUTBOUND
        )
        .first()
    )
    if _report_onto(message, event, payload):
        assert message is not None
        message.save()


def reports_apply(due: list[tuple[WebhookEvent, dict[str, Any]]]) -> None:
    """A batch of delivery reports, in order: their messages read (and locked) in one query and written in one
    UPDATE … FROM (VALUES …). The same rules as apply_report, report by report; and the write itself still never
    moves a final status to another one. Each event's outcome is set on it, for the caller to store with the rest
    of its batch."""
    if not due:
        return
    keys = {(event.account_id, str(payload["message_id"])) for event, payload in due}
    found = (
        Message.objects.select_for_update(of=("self",))
        .filter(
            direction=Message.Direction.OUTBOUND,
            account_id__in={account for account, _ in keys},
            wavix_message_id__in={message_id for _, message_id in keys},
        )
        .order_by("pk")  # locked in one order by every router: two batches never wait on each other in a circle
    )
    messages = {(message.account_id, message.wavix_message_id): message for message in found}
    moved: dict[int, Message] = {}
    for event, payload in due:
        message = messages.get((event.account_id, str(payload["message_id"])))
        if _report_onto(message, event, payload):
            assert message is not None
            moved[message.pk] = message
    now = timezone.now()
    final = sorted(Message.FINAL)
    values_update(
        Message,
        [
            {
                "pk": message.pk,
                "status": message.status,
                "error_message": message.error_message,
                "segments": message.segments,
                "charge": message.charge,
                "sent_at": message.sent_at,
                "completed_at": message.completed_at,
                "updated_at": now,
            }
            for message in moved.values()
        ],
        where=f"(t.status = v.status OR t.status NOT IN ({', '.join(['%s'] * len(final))}))",
        params=final,
    )


def _report_onto(message: Message | None, event: WebhookEvent, payload: dict[str, Any]) -> bool:
    """Apply one report to its message (None: not found) in memory and set the event's outcome; True if the message
    is to be saved. Queues the status event to 3CX, if any, in the caller's transaction."""
    if message is None:
        event.state = WebhookEvent.State.UNMATCHED
        event.last_error = "No message sent through the portal has this id (3CX sends some straight to Wavix)."
        return False
    event.tenant_id = message.tenant_id
    status = str(payload["status"])
    if status not in webhooks.REPORT_STATUSES:  # the intake refuses these now; events stored before remain
        event.state, event.last_error = WebhookEvent.State.INVALID, f"Unknown delivery status {status!r}."
        return False
    notes: list[str] = []

    def read(reader: Callable[..., tuple[_T, str | None]], *args: Any) -> _T:
        value, note = reader(payload, *args)
        if note:
            notes.append(note)
        return value

    previous_status = message.status
    if message.status in (Message.Status.SENDING, Message.Status.UNKNOWN):
        message.transition(Message.Status.ACCEPTED)  # a report proves Wavix accepted it
    if message.can_transition(status):
        message.transition(status)
        error = read(_report_error)
        if status == Message.Status.UNDELIVERED or error:
            message.error_message = error
    if (segments := read(_report_segments)) is not None:
        message.segments = segments
    if (charge := read(_report_charge)) is not None:
        message.charge = charge
    if message.sent_at is None:
        message.sent_at = read(_report_time, "sent", message, event)
    if message.status in Message.FINAL and (completed := read(_report_time, "delivered", message, event)):
        message.completed_at = completed
    forwarding.status_event_queue(message, previous_status)  # in the caller's transaction, with the move
    event.state, event.last_error = WebhookEvent.State.PROCESSED, " ".join(notes)[:500]
    return True


def apply_tendlc(event: WebhookEvent, payload: dict[str, Any]) -> None:
    """A 10DLC status from Wavix: a number's (with its brand and campaign), a campaign's or a brand's."""
    status = str(payload["status"]).upper()[:16]
    brand, campaign = str(payload.get("brand_id") or "")[:64], str(payload.get("campaign_id") or "")[:64]
    if payload.get("number"):
        PhoneNumber.objects.filter(account=event.account, number=webhooks.as_stored_number(payload["number"])).update(
            tendlc_status=status, tendlc_brand_id=brand, tendlc_campaign_id=campaign
        )
    elif brand:
        kind = TenDLCRegistration.Kind.CAMPAIGN if campaign else TenDLCRegistration.Kind.BRAND
        TenDLCRegistration.objects.update_or_create(
            account=event.account, kind=kind, brand_id=brand, campaign_id=campaign, defaults={"status": status}
        )
    event.state = WebhookEvent.State.PROCESSED
