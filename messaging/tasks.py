"""Celery tasks. Each takes ids, loads rows, calls one service and returns; which queue each goes to is decided
in settings (CELERY_TASK_ROUTES) only. A task the services ask for carries the messaging.dispatch Job that queues
it (`@dispatch.X.runs`); the others are periodic (CELERY_BEAT_SCHEDULE).

Calls to Wavix retry only transient failures (network, timeout, 429, 5xx), with growing, jittered waits that
stay well under the broker's visibility timeout; a permanent refusal is recorded on the row and not retried.
"""

import logging
import socket
import time

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from messaging import dispatch
from messaging.locks import one_at_a_time
from messaging.models import DailyMessageCount, Delivery, PhoneNumber, SenderID, Trunk, WavixAccount, WebhookEvent
from messaging.services import accounts, forwarding, inbound, mirror, retention, senders, sending
from messaging.wavix import WavixPermanentError, WavixTransientError

logger = logging.getLogger(__name__)
HEARTBEAT_TTL_SECONDS = 600
NUMBERS_SYNC_LOCK = "lock:wavix-numbers-sync:{}"  # per account: what changes its numbers at Wavix, one at a time
WAVIX_RETRY = {
    "autoretry_for": (WavixTransientError,),
    "retry_backoff": settings.WAVIX_RETRY_BACKOFF_SECONDS,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 8,
}


@shared_task
def worker_heartbeat(queue: str) -> None:
    """Prove a worker consumes this queue and reaches the database; /healthz shows how long ago."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    cache.set(f"worker-heartbeat:{queue}", time.time(), HEARTBEAT_TTL_SECONDS)
    cache.set(f"worker-heartbeat-host:{queue}", socket.gethostname(), HEARTBEAT_TTL_SECONDS)


@dispatch.NUMBERS_SYNC.runs
@shared_task(bind=True, **WAVIX_RETRY)
def wavix_numbers_sync(self, account_id: int, wire: bool = True) -> None:
    """Pull an account's numbers from Wavix; wire the relay URLs of SMS-enabled trunks (or only report drift)."""
    with one_at_a_time(NUMBERS_SYNC_LOCK.format(account_id), timeout=600, owner=self.request.id or "eager") as mine:
        if not mine:
            raise self.retry(countdown=20)  # one sync per account at a time; this one comes back shortly
        account = WavixAccount.objects.filter(pk=account_id).first()
        try:
            if account is not None:
                accounts.numbers_sync(account, wire=wire)
        except WavixPermanentError as error:
            logger.warning("wavix: number sync of account %s refused: %s", account_id, error.message)


@dispatch.SENDER_IDS_SYNC.runs
@shared_task(**WAVIX_RETRY)
def wavix_sender_ids_sync(account_id: int) -> None:
    """Mark countries Wavix has allow-listed since the last look."""
    account = WavixAccount.objects.filter(pk=account_id).first()
    if account is not None:
        try:
            senders.sender_ids_sync(account)
        except WavixPermanentError as error:
            logger.warning("wavix: sender-ID sync of account %s refused: %s", account_id, error.message)


@shared_task
def wavix_check_all() -> None:
    """Periodic: compare every account's numbers (drift) and sender IDs (allow-listings) with Wavix."""
    for account_id in WavixAccount.objects.values_list("pk", flat=True):
        dispatch.NUMBERS_SYNC.soon(account_id, False)
    for account_id in SenderID.objects.exclude(wavix_id="").values_list("account_id", flat=True).distinct():
        dispatch.SENDER_IDS_SYNC.soon(account_id)


@dispatch.RELAY_REPAIR.runs
@shared_task(**WAVIX_RETRY)
def wavix_relay_repair(number_ids: list[int]) -> None:
    """Point these numbers' relay URLs back at the portal."""
    try:
        repaired = accounts.relay_repair(PhoneNumber.objects.filter(pk__in=number_ids))
    except WavixPermanentError as error:
        logger.warning("wavix: relay repair refused: %s", error.message)
        return
    logger.info("wavix: repaired the relay URL of %s number(s)", repaired)


@dispatch.NUMBERS_UNPOINT.runs
@shared_task(bind=True, **WAVIX_RETRY)
def wavix_numbers_unpoint(self, trunk_id: int) -> None:
    """Empty the relay URL at Wavix of a trunk's numbers while its SMS is off (each account under its sync lock)."""
    trunk = Trunk.objects.filter(pk=trunk_id).first()
    if trunk is None:
        return
    for account in WavixAccount.objects.filter(numbers__trunk=trunk).distinct().order_by("pk"):
        # The number sync's lock: a sync wiring these numbers (SMS switched on again) runs before or after, not
        # in between. A retry redoes only what is left, since numbers already emptied no longer point here.
        with one_at_a_time(NUMBERS_SYNC_LOCK.format(account.pk), timeout=600, owner=self.request.id or "eager") as mine:
            if not mine:
                raise self.retry(countdown=20)
            try:
                accounts.numbers_unpoint(trunk, account)
            except WavixPermanentError as error:
                logger.warning(
                    "wavix: un-pointing trunk %s's numbers on account %s refused: %s",
                    trunk_id,
                    account.pk,
                    error.message,
                )


@dispatch.EVENTS_DRAIN.runs
@shared_task
def inbound_events_drain() -> int:
    """Route every stored webhook event (inbound texts, delivery reports, 10DLC statuses)."""
    return inbound.events_process()


@dispatch.DELIVERIES_DRAIN.runs
@shared_task
def inbound_deliveries_drain() -> int:
    """Forward every due delivery to its trunk's 3CX, the first of each conversation."""
    return forwarding.deliveries_process()


@shared_task
def relay_sweep() -> None:
    """Periodic: give failing trunks their early try; queue the drains if anything waits — events stored while the
    broker was down, retries now due, those tries."""
    forwarding.failing_trunks_probe()
    if WebhookEvent.objects.filter(state=WebhookEvent.State.PENDING).exists():
        dispatch.EVENTS_DRAIN.ask_at_most_every()
    if Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=timezone.now()).exists():
        dispatch.DELIVERIES_DRAIN.ask()


@dispatch.INBOUND_RECONCILE.runs
@shared_task(**WAVIX_RETRY)
def wavix_inbound_reconcile(account_id: int) -> None:
    """Find inbound texts whose webhook never arrived, and relay them."""
    account = WavixAccount.objects.filter(pk=account_id).first()
    if account is not None:
        try:
            inbound.inbound_reconcile(account)
        except WavixPermanentError as error:
            logger.warning("wavix: reconciliation of account %s refused: %s", account_id, error.message)


@shared_task
def wavix_reconcile_all() -> None:
    """Periodic: reconcile every account's inbound texts."""
    for account_id in WavixAccount.objects.values_list("pk", flat=True):
        dispatch.INBOUND_RECONCILE.soon(account_id)


# No retries: the next run, WAVIX_MIRROR_SECONDS later, reads from the same watermark (moved only by a run that
# finished), so a retry would only pile calls onto a Wavix that is struggling.
@dispatch.OUTBOUND_MIRROR.runs
@shared_task(soft_time_limit=300, time_limit=360)
def wavix_outbound_mirror(account_id: int) -> int:
    """Copy the texts 3CX sent straight to Wavix from Wavix's log into the portal's."""
    account = WavixAccount.objects.filter(pk=account_id).first()
    if account is None:
        return 0
    try:
        return mirror.outbound_mirror(account)
    except (WavixTransientError, WavixPermanentError) as error:
        logger.warning("wavix: mirroring account %s's outbound texts failed: %s", account_id, error.message)
        return 0


@shared_task
def wavix_mirror_all() -> None:
    """Periodic (every WAVIX_MIRROR_SECONDS): mirror every account's outbound texts."""
    for account_id in WavixAccount.objects.values_list("pk", flat=True):
        dispatch.OUTBOUND_MIRROR.ask(account_id)


@dispatch.OUTBOUND_DRAIN.runs
@shared_task(soft_time_limit=90, time_limit=120)
def outbound_drain(account_id: int) -> int:
    """Send a Wavix account's due messages, fairly across tenants, at the account's rate."""
    return sending.outbound_drain(account_id)


@dispatch.OUTBOUND_RECONCILE.runs
@shared_task(**WAVIX_RETRY)
def outbound_reconcile(message_id: int) -> None:
    """Ask Wavix whether a send with a lost outcome arrived, and settle the message accordingly."""
    sending.outbound_reconcile(message_id)


@shared_task
def outbound_sweep() -> None:
    """Periodic: settle sends whose worker died, and drain accounts whose messages are due."""
    sending.outbound_sweep()


@shared_task
def message_counts_rollup(days: int = 2) -> int:
    """Periodic: count the last days' messages per tenant, day, direction and status for the dashboard."""
    # Two runs at once (the frequent and the hourly one) would both insert the same days: the second skips,
    # and the next run catches up.
    with one_at_a_time("lock:message-counts-rollup", timeout=600) as mine:
        return DailyMessageCount.recompute(days) if mine else 0


@shared_task
def registrations_review_digest() -> int:
    """Daily: e-mail the reviewers the registrations waiting longer than REGISTRATION_DIGEST_AFTER_DAYS."""
    return senders.review_digest()


# Longer limits than other tasks: the first run over a large history purges many batches (each commits, so a
# run cut short loses nothing and the next one carries on where it stopped).
@shared_task(soft_time_limit=3 * 3600, time_limit=3 * 3600 + 300)
def retention_purge() -> int:
    """Periodic (daily): purge message content past each reseller's retention period."""
    with one_at_a_time("lock:retention-purge", timeout=3 * 3600 + 300) as mine:
        return retention.retention_purge() if mine else 0  # not mine: yesterday's run is still going
