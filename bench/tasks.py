"""Tasks used only by the benchmarks; loaded into a worker with `celery worker --include bench.tasks`."""

import redis
from django.conf import settings
from django.utils import timezone

from messaging.models import Message
from portal.celery import app

COUNTER_KEY = "bench:done"
_redis = None


@app.task(name="bench.touch_message")
def touch_message(message_id: int) -> None:
    """Load a row, update it, count it: the database part of a real task, without the network call."""
    global _redis
    message = Message.objects.get(pk=message_id)
    Message.objects.filter(pk=message.pk).update(updated_at=timezone.now())
    _redis = _redis or redis.Redis.from_url(settings.REDIS_URL)
    _redis.incr(COUNTER_KEY)
