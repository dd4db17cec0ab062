"""Retention: message content is kept for each reseller's retention period, then purged; the metadata stays.

What is purged, once older than the period: message texts and media links, raw webhook bodies, 3CX's answers
to forwards that were delivered, and stored idempotent answers to send requests (they repeat the text). What
stays: every row, with its status, direction, numbers, segments, charge and times, so counts, delivery rates
and billing do not change. Work still under way keeps its content: a message not yet final, an inbound text
that failed (it may be replayed), a webhook not yet processed or held for a suspended tenant.

Purging is idempotent (only rows that still hold content are selected) and runs BATCH rows per statement, each
in its own short transaction, so neither table is locked for long. Audit rows are never purged.
"""

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TypeVar

from django.db.models import Exists, Model, OuterRef, Q, QuerySet
from django.utils import timezone

from messaging.models import Delivery, IdempotentRequest, Message, WavixAccount, WebhookEvent
from tenants.models import AuditEvent, Reseller, Tenant

logger = logging.getLogger(__name__)

BATCH = 1000
_M = TypeVar("_M", bound=Model)

# Where a message's content is no longer needed: a final status, or an outbound failure (never resent). An
# inbound failure stays: a replay forwards it again, byte for byte from its webhook.
_DONE = Q(status__in=Message.FINAL) | Q(direction=Message.Direction.OUTBOUND, status=Message.Status.FAILED)


def _in_batches(queryset: QuerySet[_M], apply: Callable[[QuerySet[_M]], int]) -> int:
    """Apply an UPDATE or DELETE to the rows of queryset, BATCH rows at a time chosen by primary key.

    Each statement covers one primary-key range and repeats the queryset's conditions, so a row that changed
    since it was read (a message replayed, say) is left alone; outside a transaction each one commits at once.
    """
    done, after = 0, 0
    while True:
        ids = list(queryset.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:BATCH])
        if not ids:
            return done
        done += apply(queryset.filter(pk__gte=ids[0], pk__lte=ids[-1]))
        after = ids[-1]


def purgeable_messages(tenant_ids: Iterable[int], cutoff: datetime) -> QuerySet[Message]:
    """Messages created before the cutoff, done with, that still hold a text or media links."""
    return (
        Message.objects.filter(tenant_id__in=tenant_ids, created_at__lt=cutoff)
        .filter(_DONE)
        .filter(~Q(text="") | ~Q(media=[]))
    )


def purgeable_webhook_events(account_ids: Iterable[int], cutoff: datetime) -> QuerySet[WebhookEvent]:
    """Webhook events received before the cutoff, processed, whose body is no longer forwarded, with a body."""
    # A held or failed inbound text is forwarded later from its webhook's body: that body stays until it is done.
    waiting = Message.objects.filter(source_event=OuterRef("pk")).exclude(_DONE)
    return (
        WebhookEvent.objects.filter(account_id__in=account_ids, received_at__lt=cutoff)
        .exclude(state__in=[WebhookEvent.State.PENDING, WebhookEvent.State.HELD])
        .exclude(body=b"")
        .filter(~Exists(waiting))
    )


def reseller_content_purge(reseller: Reseller, *, now: datetime | None = None) -> dict[str, int]:
    """Purge one reseller's message content older than its retention period; returns what was purged.

    Anything purged is recorded as one audit event on the reseller (actor: the system).
    """
    cutoff = (now or timezone.now()) - timedelta(days=reseller.retention_days)
    tenant_ids = list(Tenant.objects.filter(reseller=reseller).values_list("pk", flat=True))
    account_ids = list(WavixAccount.objects.filter(reseller=reseller).values_list("pk", flat=True))
    counts = {
        "messages": _in_batches(purgeable_messages(tenant_ids, cutoff), lambda rows: rows.update(text="", media=[])),
        "webhook_bodies": _in_batches(
            purgeable_webhook_events(account_ids, cutoff), lambda rows: rows.update(body=b"")
        ),
        # 3CX's answer to a delivered forward may quote the text; a failed one's answer is kept to explain it.
        "delivery_responses": _in_batches(
            Delivery.objects.filter(
                tenant_id__in=tenant_ids, created_at__lt=cutoff, status=Delivery.Status.DELIVERED
            ).exclude(last_response=""),
            lambda rows: rows.update(last_response=""),
        ),
        # Answers kept for Idempotency-Key repeats (24 h) hold the text; past the cutoff they serve nothing.
        "idempotent_answers": _in_batches(
            IdempotentRequest.objects.filter(tenant_id__in=tenant_ids, created_at__lt=cutoff),
            lambda rows: rows.delete()[0],
        ),
    }
    if any(counts.values()):
        AuditEvent.record(
            AuditEvent.Action.RETENTION_PURGED,
            reseller,
            changes={**counts, "cutoff": cutoff.isoformat(), "retention_days": reseller.retention_days},
        )
        logger.info("retention: purged %s of reseller %s (before %s)", counts, reseller.pk, cutoff.isoformat())
    return counts


def retention_purge(*, now: datetime | None = None) -> int:
    """Purge every reseller's message content past its retention period; returns how many rows were purged."""
    purged = 0
    for reseller in Reseller.objects.order_by("pk"):
        purged += sum(reseller_content_purge(reseller, now=now).values())
    return purged


__all__ = ["purgeable_messages", "purgeable_webhook_events", "reseller_content_purge", "retention_purge"]
