"""Celery tasks. Each takes ids, loads rows, calls one service and returns; routing is in settings."""

import socket
import time

from celery import shared_task
from django.core.cache import cache
from django.db import connection

HEARTBEAT_TTL_SECONDS = 600


@shared_task
def worker_heartbeat(queue: str) -> None:
    """Prove a worker consumes this queue and reaches the database; /healthz shows how long ago."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    cache.set(f"worker-heartbeat:{queue}", time.time(), HEARTBEAT_TTL_SECONDS)
    cache.set(f"worker-heartbeat-host:{queue}", socket.gethostname(), HEARTBEAT_TTL_SECONDS)
