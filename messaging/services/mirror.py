"""The traffic mirror: texts 3CX sent straight to Wavix (trunks on 3CX's "Wavix" SMS template never pass through the
portal) read back from Wavix's message log into the portal's, as messages of origin "mirror".

Read after the fact, so never validated, rate-limited or checked against opt-outs here: only texts sent through the
portal are. Each is attributed to the tenant (and trunk) whose number or sender ID sent it; one of no tenant is left
out, since no tenant could be shown it. Delivery reports that came before their text was mirrored were kept as
unmatched (services/reports.py apply_report) and are routed again once it is; later ones match as usual.
"""

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from messaging import dispatch, webhooks
from messaging.locks import one_at_a_time
from messaging.models import Message, PhoneNumber, SenderID, WavixAccount, WebhookEvent
from messaging.services.outbound import message_parts
from messaging.wavix import WavixClient, WavixOutbound

logger = logging.getLogger(__name__)

# Look a little further back than the watermark (as inbound_reconcile does): clocks differ, and Wavix's log may show
# a text a moment after it was submitted. What is read twice is found by its Wavix id and skipped.
MIRROR_OVERLAP = timedelta(minutes=10)
MIRROR_LOCK = "lock:wavix-mirror:{}"  # per account: one run at a time (the unique constraint keeps rows single anyway)
MIRROR_LOCK_SECONDS = 420  # longer than the task's time limit (messaging/tasks.py)
BATCH = 100  # listed texts looked up and inserted together


@dataclass(frozen=True)
class Owner:
    """Whose a mirrored text is: the sending number's (or sender ID's) tenant, trunk and sender ID."""

    tenant_id: int
    trunk_id: int | None
    sender_id: int | None


def outbound_mirror(account: WavixAccount) -> int:
    """Copy the account's outbound texts from Wavix's log that the portal does not have; returns how many are new.

    The portal's own sends are in the log under their Wavix id already, or carry our message id as their tag while
    their outcome is being settled (sending.outbound_reconcile): neither is copied.
    """
    dispatch.OUTBOUND_MIRROR.started(account.pk)
    # Without the cache, runs may overlap: the (account, Wavix id) constraint still keeps each text single.
    with one_at_a_time(MIRROR_LOCK.format(account.pk), timeout=MIRROR_LOCK_SECONDS, cache_down=True) as mine:
        if not mine:
            return 0  # a run for this account is under way; it reads the same log
        started = timezone.now()
        since = (account.outbound_mirrored_at or started - timedelta(days=1)) - MIRROR_OVERLAP
        owners: dict[str, Owner | None] = {}
        mirrored, reports = 0, 0
        unowned: dict[str, int] = {}  # sender → texts left out
        for batch in _batches(WavixClient.for_account(account).outbound_messages(since)):
            new, present = _mirror_batch(account, batch, owners, unowned, started)
            mirrored += new
            reports += _reports_reopen(account, present)
        WavixAccount.objects.filter(pk=account.pk).update(outbound_mirrored_at=started)
    if unowned:
        logger.warning(
            "mirror: %s text(s) of %s not mirrored: sent from numbers or sender IDs of no tenant (%s)",
            sum(unowned.values()),
            account,
            ", ".join(f"{sender} ×{count}" for sender, count in sorted(unowned.items())[:10]),
        )
    if mirrored:
        logger.info("mirror: %s text(s) sent straight to Wavix mirrored for %s", mirrored, account)
    if reports:
        dispatch.EVENTS_DRAIN.ask()  # the reports reopened are routed by the drain, as any report is
    return mirrored


def _batches(items: Iterable[WavixOutbound]) -> Iterator[list[WavixOutbound]]:
    batch: list[WavixOutbound] = []
    for item in items:
        batch.append(item)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _mirror_batch(
    account: WavixAccount,
    batch: list[WavixOutbound],
    owners: dict[str, Owner | None],
    unowned: dict[str, int],
    now: datetime,
) -> tuple[int, set[str]]:
    """Insert the batch's texts the portal lacks; returns (how many were inserted, the Wavix ids now in the log)."""
    listed = [item for item in batch if _fits(item)]
    ids = [item.wavix_id for item in listed]
    present = set(
        Message.objects.filter(account=account, wavix_message_id__in=ids).values_list("wavix_message_id", flat=True)
    )
    ours = _our_tags(account, [item.tag for item in listed])
    new = 0
    for item in listed:
        if item.wavix_id in present or item.tag in ours:
            continue  # in the log already, or a send of ours whose answer was lost: outbound_reconcile settles it
        if item.sender not in owners:
            owners[item.sender] = _owner(account, item.sender)
        owner = owners[item.sender]
        if owner is None:
            # Counted by the run that reads it first: the runs after it list it again within their overlap.
            previous = account.outbound_mirrored_at
            if previous is None or (_time(item.submitted_at) or now) > previous:
                unowned[item.sender] = unowned.get(item.sender, 0) + 1
            continue
        try:
            with transaction.atomic():
                _message(account, item, owner, now).save(force_insert=True)
        except IntegrityError:
            continue  # recorded meanwhile (by the portal's own send, or another run): kept once
        present.add(item.wavix_id)
        new += 1
    return new, present


def _fits(item: WavixOutbound) -> bool:
    """A listed text whose id and numbers fit the log's columns; anything else cannot be one of ours to show."""
    return 0 < len(item.wavix_id) <= 64 and 0 < len(item.sender) <= 20 and 0 < len(item.to) <= 20


def _our_tags(account: WavixAccount, tags: list[str]) -> set[str]:
    """The tags among these that are the id of a message the portal sent on this account (sending.py tags its sends
    with the message's id)."""
    pks = {int(tag) for tag in tags if tag.isascii() and tag.isdigit() and len(tag) <= 18}
    if not pks:
        return set()
    found = (
        Message.objects.filter(account=account, direction=Message.Direction.OUTBOUND, pk__in=pks)
        .exclude(origin=Message.Origin.MIRROR)
        .values_list("pk", flat=True)
    )
    return {str(pk) for pk in found}


def _owner(account: WavixAccount, sender: str) -> Owner | None:
    """Whose texts from this sender are: the tenant its number is assigned to, else the one tenant with this sender ID
    on the account, else the tenant whose own account it is; None if none of them says (a number in the reseller's
    pool, or a sender ID two tenants share)."""
    number = PhoneNumber.objects.filter(account=account, number=sender).first()
    sender_ids = list(SenderID.objects.filter(account=account, value=sender))
    if number is not None and number.tenant_id is not None:
        sender_id = next((s.pk for s in sender_ids if s.tenant_id == number.tenant_id), None)
        return Owner(tenant_id=number.tenant_id, trunk_id=number.trunk_id, sender_id=sender_id)
    if len({s.tenant_id for s in sender_ids}) == 1:
        registered = sender_ids[0]
        trunks = list(registered.trunks.values_list("pk", flat=True)[:2])  # the trunk showing it as Main Trunk No.
        trunk_id = trunks[0] if len(trunks) == 1 else None
        return Owner(tenant_id=registered.tenant_id, trunk_id=trunk_id, sender_id=registered.pk)
    if account.tenant_id is not None:
        return Owner(tenant_id=account.tenant_id, trunk_id=None, sender_id=None)
    return None


def _time(value: str | None) -> datetime | None:
    try:
        return webhooks.parse_time(value) if value else None
    except ValueError:
        return None


def _message(account: WavixAccount, item: WavixOutbound, owner: Owner, now: datetime) -> Message:
    """The log's row for a listed text, as Wavix lists it."""
    status = item.status if item.status in webhooks.REPORT_STATUSES else Message.Status.ACCEPTED
    text = item.text.replace("\x00", "")  # PostgreSQL cannot store a NUL character
    media = list(item.media)
    encoding, segments = message_parts(text, media)
    charge = Message.charge_from(item.charge) if item.charge not in (None, "") else None
    return Message(
        tenant_id=owner.tenant_id,
        account=account,
        trunk_id=owner.trunk_id,
        sender_id=owner.sender_id,
        direction=Message.Direction.OUTBOUND,
        origin=Message.Origin.MIRROR,
        from_number=item.sender,
        to_number=item.to,
        text=text,
        media=media,
        encoding=encoding,
        segments=Message.segments_from(item.segments) or segments,
        wavix_message_id=item.wavix_id,
        status=status,
        error_message=item.error[:500],
        charge=charge,
        created_at=_time(item.submitted_at) or now,
        sent_at=_time(item.sent_at),
        completed_at=(_time(item.delivered_at) or now) if status in Message.FINAL else None,
    )


def _reports_reopen(account: WavixAccount, wavix_ids: set[str]) -> int:
    """Put the delivery reports kept as unmatched for these texts back in the drain's way; returns how many.

    Every id listed and in the log counts, not only the texts just inserted: a report routed while its text was being
    inserted was kept as unmatched after this run looked, and the next run (its overlap lists the text again) finds it.
    """
    keys = [f"{wavix_id}:{status}" for wavix_id in wavix_ids for status in webhooks.REPORT_STATUSES]
    if not keys:
        return 0
    return WebhookEvent.objects.filter(
        account=account, kind=WebhookEvent.Kind.DLR, state=WebhookEvent.State.UNMATCHED, dedup_key__in=keys
    ).update(state=WebhookEvent.State.PENDING)
