"""The one Celery app. Tasks live in each app's tasks.py; routing and queues are in settings."""

import logging
import os

from celery import Celery
from celery.signals import task_prerun
from celery.worker.consumer import Consumer as CeleryConsumer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

logger = logging.getLogger(__name__)

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def drop_stale_db_connections(**kwargs) -> None:
    """Give workers the web's connection hygiene.

    Celery keeps the connection across tasks (CELERY_DB_REUSE_MAX) but never runs Django's request hooks, so
    without this a connection broken by a PostgreSQL restart would fail every task until it is recycled.
    """
    if getattr(kwargs.get("task").request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


class Consumer(CeleryConsumer):
    """Celery's consumer, surviving a broker that goes away while tasks are unacknowledged (settings:
    CELERY_WORKER_CONSUMER).

    Celery 5.7.0 handles a lost connection by collect()ing it — which detaches its transport — and then
    close()ing it, and closing the redis channel tries to put the unacknowledged messages (ETA tasks, prefetched
    ones) back through that detached transport: an AttributeError, which ignore_errors() does not ignore, so the
    worker exits with "Unrecoverable error" (bench/faults.py's Redis restart found it; tests/test_worker.py keeps
    it found). Those messages were not lost to this: Redis restores unacknowledged messages by itself after the
    visibility timeout, and every portal task's work is in the database for the sweepers anyway. Past that one
    error, the reconnect loop goes on as Celery intends.
    """

    def on_connection_error_after_connected(self, exc):
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError as error:
            logger.warning("worker: closing the lost broker connection failed (%r); reconnecting anyway", error)
