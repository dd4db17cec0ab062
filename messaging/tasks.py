"""Celery tasks. Each takes ids, loads rows, calls one service and returns; routing is in settings.

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

from messaging import services
from messaging.models import DailyMessageCount, PhoneNumber, SenderID, Trunk, WavixAccount
from messaging.services import retention
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


@shared_task(bind=True, **WAVIX_RETRY)
def wavix_numbers_sync(self, account_id: int, wire: bool = True) -> None:
    """Pull an account's numbers from Wavix; wire the relay URLs of SMS-enabled trunks (or only report drift)."""
    lock = NUMBERS_SYNC_LOCK.format(account_id)
    if not cache.add(lock, self.request.id or "eager", timeout=600):
        raise self.retry(countdown=20)  # one sync per account at a time; this one comes back shortly
    try:
        account = WavixAccount.objects.filter(pk=account_id).first()
        if account is not None:
            services.numbers_sync(account, wire=wire)
    except WavixPermanentError as error:
        logger.warning("wavix: number sync of account %s refused: %s", account_id, error.message)
    finally:
        cache.delete(lock)


@shared_task(**WAVIX_RETRY)
def wavix_sender_ids_sync(account_id: int) -> None:
    """Mark countries Wavix has allow-listed since the last look."""
    account = WavixAccount.objects.filter(pk=account_id).first()
    if account is not None:
        try:
            services.sender_ids_sync(account)
        except WavixPermanentError as error:
            logger.warning("wavix: sender-ID sync of account %s refused: %s", account_id, error.message)


@shared_task
def wavix_check_all() -> None:
    """Periodic: compare every account's numbers (drift) and sender IDs (allow-listings) with Wavix."""
    for account_id in WavixAccount.objects.values_list("pk", flat=True):
        wavix_numbers_sync.delay(account_id, False)
    for account_id in SenderID.objects.exclude(wavix_id="").values_list("account_id", flat=True).distinct():
        wavix_sender_ids_sync.delay(account_id)


@shared_task(**WAVIX_RETRY)
def wavix_relay_repair(number_ids: list[int]) -> None:
    """Point these numbers' relay URLs back at the portal."""
    try:
        repaired = services.relay_repair(PhoneNumber.objects.filter(pk__in=number_ids))
    except WavixPermanentError as error:
        logger.warning("wavix: relay repair refused: %s", error.message)
        return
    logger.info("wavix: repaired the relay URL of %s number(s)", repaired)


@shared_task(bind=True, **WAVIX_RETRY)
def wavix_numbers_unpoint(self, trunk_id: int) -> None:
    """Empty the relay URL at Wavix of a trunk's numbers while its SMS is off (each account under its sync lock)."""
    trunk = Trunk.objects.filter(pk=trunk_id).first()
    if trunk is None:
        return
    for account in WavixAccount.objects.filter(numbers__trunk=trunk).distinct().order_by("pk"):
        # The number sync's lock: a sync wiring these numbers (SMS switched on again) runs before or after, not
        # in between. A retry redoes only what is left, since numbers already emptied no longer point here.
        lock = NUMBERS_SYNC_LOCK.format(account.pk)
        if not cache.add(lock, self.request.id or "eager", timeout=600):
            raise self.retry(countdown=20)
        try:
            services.numbers_unpoint(trunk, account)
        except WavixPermanentError as error:
            logger.warning(
                "wavix: un-pointing trunk %s's numbers on account %s refused: %s", trunk_id, account.pk, error.message
            )
        finally:
            cache.delete(lock)


@shared_task
def inbound_events_drain() -> int:
    """Route every stored webhook event (inbound texts, delivery reports, 10DLC statuses)."""
    return services.events_process()


@shared_task
def inbound_deliveries_drain() -> int:
    """Forward every due delivery to its trunk's 3CX, the first of each conversation."""
    return services.deliveries_process()


@shared_task
def relay_sweep() -> None:
    """Periodic: give failing trunks their early try; queue the drains if anything waits — events stored while the
    broker was down, retries now due, those tries."""
    from django.utils import timezone

    from messaging.models import Delivery, WebhookEvent

    services.failing_trunks_probe()
    if WebhookEvent.objects.filter(state=WebhookEvent.State.PENDING).exists():
        services.events_process_soon()
    if Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=timezone.now()).exists():
        services.deliveries_process_soon()


@shared_task(**WAVIX_RETRY)
def wavix_inbound_reconcile(account_id: int) -> None:
    """Find inbound texts whose webhook never arrived, and relay them."""
    account = WavixAccount.objects.filter(pk=account_id).first()
    if account is not None:
        try:
            services.inbound_reconcile(account)
        except WavixPermanentError as error:
            logger.warning("wavix: reconciliation of account %s refused: %s", account_id, error.message)


@shared_task
def wavix_reconcile_all() -> None:
    """Periodic: reconcile every account's inbound texts."""
    for account_id in WavixAccount.objects.values_list("pk", flat=True):
        wavix_inbound_reconcile.delay(account_id)


@shared_task(soft_time_limit=90, time_limit=120)
def outbound_drain(account_id: int) -> int:
    """Send a Wavix account's due messages, fairly across tenants, at the account's rate."""
    return services.outbound_drain(account_id)


@shared_task(**WAVIX_RETRY)
def outbound_reconcile(message_id: int) -> None:
    """Ask Wavix whether a send with a lost outcome arrived, and settle the message accordingly."""
    services.outbound_reconcile(message_id)


@shared_task
def outbound_sweep() -> None:
    """Periodic: settle sends whose worker died, and drain accounts whose messages are due."""
    services.outbound_sweep()


@shared_task
def setup_sandbox_reply(trunk_id: int) -> str:
    """The setup wizard's "reply from your phone" in the sandbox (the sandbox then calls the portal's webhook)."""
    from messaging.services import setup

    return setup.sandbox_reply_inject(trunk_id)


@shared_task
def message_counts_rollup(days: int = 2) -> int:
    """Periodic: count the last days' messages per tenant, day, direction and status for the dashboard."""
    # Two runs at once (the frequent and the hourly one) would both insert the same days: the second skips,
    # and the next run catches up.
    lock = "lock:message-counts-rollup"
    if not cache.add(lock, "running", timeout=600):
        return 0
    try:
        return DailyMessageCount.recompute(days)
    finally:
        cache.delete(lock)


@shared_task
def registrations_review_digest() -> int:
    """Daily: e-mail the reviewers the registrations waiting longer than REGISTRATION_DIGEST_AFTER_DAYS."""
    return services.review_digest()


# Longer limits than other tasks: the first run over a large history purges many batches (each commits, so a
# run cut short loses nothing and the next one carries on where it stopped).
@shared_task(soft_time_limit=3 * 3600, time_limit=3 * 3600 + 300)
def retention_purge() -> int:
    """Periodic (daily): purge message content past each reseller's retention period."""
    lock = "lock:retention-purge"
    if not cache.add(lock, "running", timeout=3 * 3600 + 300):
        return 0  # yesterday's run is still going
    try:
        return retention.retention_purge()
    finally:
        cache.delete(lock)
