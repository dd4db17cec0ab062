"""What an operator watches: webhooks by kind and outcome, forwards by outcome, texts not forwarded by reason, the
retry backlog and its age.

Events that never become rows (duplicates, refusals) and forward outcomes are counted in the shared cache
(Redis in production; a Redis restart resets them, which Prometheus reads as a counter reset). Each process
adds up its counts in memory and sends them at most once every FLUSH_SECONDS, in one round trip: a Redis round
trip on every webhook (≈ 0.25 ms on our 2-core machine) cost intake about as much as its INSERT (bench/intake.py).
A process killed outright loses at most that last second of counts — never a webhook. Backlogs and ages are read
from the database when scraped.
"""

import atexit
import logging
import os
import threading
from collections import Counter

from django.core.cache import cache
from django.db.models import Min, Q
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

logger = logging.getLogger(__name__)

WEBHOOK_OUTCOMES = ("accepted", "duplicate", "bad_request", "not_found", "too_large", "unavailable")
FORWARD_OUTCOMES = ("delivered", "retry", "failed", "dead")
# Why routing did not forward an inbound text (messaging.services.relay): held for now, or nowhere to go.
NOT_FORWARDED_REASONS = ("tenant_suspended", "trunk_sms_off", "no_trunk", "no_tenant", "unknown_number", "invalid")
KINDS = ("inbound", "dlr", "10dlc")
# POSTs to the 3CX provider endpoint (messaging.views.provider_messages), by outcome.
PROVIDER_OUTCOMES = ("accepted", "repeated", "refused", "unauthorized", "throttled")


def _key(*parts: str) -> str:
    return "metrics:" + ":".join(parts)


FLUSH_SECONDS = 1.0

_pending: Counter = Counter()
_lock = threading.Lock()
# Held while counts are taken and sent: a flush() returns only once whatever was counted before it is in the cache,
# even when the timer's own flush was sending at that moment (a scrape read the counters a round trip too early).
_send_lock = threading.Lock()
_flush_timer: threading.Timer | None = None


def count(*parts: str, by: int = 1) -> None:
    """Add one (or `by`) to a shared counter (sent to the cache within FLUSH_SECONDS, with this process's other
    counts)."""
    global _flush_timer
    with _lock:
        _pending[_key(*parts)] += by
        if _flush_timer is None:
            _flush_timer = threading.Timer(FLUSH_SECONDS, flush)
            _flush_timer.daemon = True
            _flush_timer.start()


def flush() -> None:
    """Send this process's counts to the cache now; a cache outage loses them, never the work they count."""
    with _send_lock:
        _send()


def _send() -> None:
    global _flush_timer
    with _lock:
        counts, _flush_timer = dict(_pending), None
        _pending.clear()
    if not counts:
        return
    try:
        redis = getattr(cache, "_cache", None)
        if redis is not None and hasattr(redis, "get_client"):
            # One pipeline of INCRBY (which creates a missing counter at 0): Django's add() + incr() would
            # take three round trips per counter. Same keys, same stored integers as the cache's own.
            pipeline = redis.get_client(write=True).pipeline(transaction=False)
            for key, added in counts.items():
                pipeline.incrby(cache.make_and_validate_key(key), added)
            pipeline.execute()
        else:
            for key, added in counts.items():
                cache.add(key, 0, timeout=None)
                cache.incr(key, added)
    except Exception:  # noqa: BLE001 - counting must never break the work being counted
        logger.debug("metrics: could not send %d counts", sum(counts.values()))


def _forget_after_fork() -> None:
    """A forked child (a gunicorn or Celery pool process) starts with no counts, no timer and a free lock."""
    global _lock, _send_lock, _flush_timer
    _lock, _send_lock, _flush_timer = threading.Lock(), threading.Lock(), None
    _pending.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(flush)  # a process that stops normally sends its last counts


class PortalCollector:
    def collect(self):
        from messaging.models import Delivery, Trunk, WebhookEvent

        flush()  # this process's own counts first
        keys = [_key("webhook", kind, outcome) for kind in KINDS for outcome in WEBHOOK_OUTCOMES]
        keys += [_key("forward", outcome) for outcome in FORWARD_OUTCOMES]
        keys += [_key("not_forwarded", reason) for reason in NOT_FORWARDED_REASONS]
        keys += [_key("provider", outcome) for outcome in PROVIDER_OUTCOMES]
        try:
            counted = cache.get_many(keys)
        except Exception:  # noqa: BLE001
            counted = {}
        webhooks = CounterMetricFamily(
            "portal_webhooks", "Webhooks from Wavix, by kind and outcome", labels=["kind", "outcome"]
        )
        for kind in KINDS:
            for outcome in WEBHOOK_OUTCOMES:
                webhooks.add_metric([kind, outcome], counted.get(_key("webhook", kind, outcome), 0))
        yield webhooks
        forwards = CounterMetricFamily("portal_forwards", "Forwards to 3CX, by outcome", labels=["outcome"])
        for outcome in FORWARD_OUTCOMES:
            forwards.add_metric([outcome], counted.get(_key("forward", outcome), 0))
        yield forwards
        not_forwarded = CounterMetricFamily(
            "portal_texts_not_forwarded",
            "Inbound texts routing did not forward to 3CX: held (tenant suspended, trunk's SMS off) or with nowhere "
            "to go (number without trunk or tenant, unknown number, unreadable webhook), by reason",
            labels=["reason"],
        )
        for reason in NOT_FORWARDED_REASONS:
            not_forwarded.add_metric([reason], counted.get(_key("not_forwarded", reason), 0))
        yield not_forwarded
        provider = CounterMetricFamily(
            "portal_provider_posts", "Texts 3CX POSTed to the provider endpoint, by outcome", labels=["outcome"]
        )
        for outcome in PROVIDER_OUTCOMES:
            provider.add_metric([outcome], counted.get(_key("provider", outcome), 0))
        yield provider

        pending = Delivery.objects.filter(status=Delivery.Status.PENDING)
        backlog = pending.aggregate(oldest=Min("created_at"))
        oldest = (timezone.now() - backlog["oldest"]).total_seconds() if backlog["oldest"] else 0
        yield GaugeMetricFamily("portal_deliveries_waiting", "Texts not yet forwarded to 3CX", value=pending.count())
        yield GaugeMetricFamily(
            "portal_retry_backlog",
            "Texts waiting for a retry after a failed forward",
            value=pending.filter(attempts__gt=0).count(),
        )
        yield GaugeMetricFamily(
            "portal_oldest_undelivered_seconds", "Age of the oldest text not yet forwarded", value=oldest
        )
        dead = Delivery.objects.filter(Q(status=Delivery.Status.FAILED) | Q(status=Delivery.Status.DEAD)).count()
        yield GaugeMetricFamily("portal_dead_letters", "Forwards that failed or gave up, replayable", value=dead)
        yield GaugeMetricFamily(
            "portal_webhook_events_waiting",
            "Stored webhooks not processed yet",
            value=WebhookEvent.objects.filter(state=WebhookEvent.State.PENDING).count(),
        )
        yield GaugeMetricFamily(
            "portal_unhealthy_trunks",
            "Trunks whose 3CX failed several forwards in a row",
            value=Trunk.objects.filter(forward_failures__gte=Trunk.UNHEALTHY_AFTER).count(),
        )
