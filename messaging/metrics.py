"""What an operator watches: webhooks by kind and outcome, forwards by outcome, the retry backlog and its age.

Events that never become rows (duplicates, refusals) and forward outcomes are counted in the shared cache
(Redis in production: one INCR each; a Redis restart resets them, which Prometheus reads as a counter reset).
Backlogs and ages are read from the database when scraped.
"""

import logging

from django.core.cache import cache
from django.db.models import Min, Q
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

logger = logging.getLogger(__name__)

WEBHOOK_OUTCOMES = ("accepted", "duplicate", "bad_request", "not_found", "too_large", "unavailable")
FORWARD_OUTCOMES = ("delivered", "retry", "failed", "dead")
KINDS = ("inbound", "dlr", "10dlc")


def _key(*parts: str) -> str:
    return "metrics:" + ":".join(parts)


def count(*parts: str) -> None:
    """Add one to a shared counter; a cache outage loses a count, never a webhook."""
    key = _key(*parts)
    try:
        redis = getattr(cache, "_cache", None)
        if hasattr(redis, "get_client"):
            # Redis's INCR creates a missing counter at 0: one round trip on every webhook's path, where
            # Django's add() + incr() take three (its incr() asks EXISTS first). Same key, same stored integer.
            full_key = cache.make_and_validate_key(key)
            redis.get_client(full_key, write=True).incr(full_key)
        else:
            cache.add(key, 0, timeout=None)
            cache.incr(key)
    except Exception:  # noqa: BLE001 - counting must never break the work being counted
        logger.debug("metrics: could not count %s", key)


class PortalCollector:
    def collect(self):
        from messaging.models import Delivery, Trunk, WebhookEvent

        keys = [_key("webhook", kind, outcome) for kind in KINDS for outcome in WEBHOOK_OUTCOMES]
        keys += [_key("forward", outcome) for outcome in FORWARD_OUTCOMES]
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
