"""The one Celery app. Tasks live in each app's tasks.py; routing and queues are in settings."""

import os

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def drop_stale_db_connections(**kwargs) -> None:
    """Give workers the web's connection hygiene.

    Celery keeps the connection across tasks (CELERY_DB_REUSE_MAX) but never runs Django's request hooks, so
    without this a connection broken by a PostgreSQL restart would fail every task until it is recycled.
    """
    if getattr(kwargs["task"].request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
