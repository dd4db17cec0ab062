"""A real Celery worker process, on the configured broker (filesystem or Redis) and the test database."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from messaging.tasks import worker_heartbeat
from portal.celery import app

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
ROOT = Path(__file__).resolve().parent.parent
WORKER_APP_NAME = "portal-test-worker"


def database_url_for_worker() -> str:
    """The URL of the database this test runs on (the test database, not the configured one)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def purge_queues() -> None:
    with app.connection_for_write() as conn:
        for queue in settings.WORKER_QUEUES:
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # a queue that was never declared has nothing to purge
                pass


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def celery_worker():
    """Start `celery worker` on all three queues; stop it (and check it stopped) after the test."""
    purge_queues()
    env = {**os.environ, "DATABASE_URL": database_url_for_worker(), "DB_APPLICATION_NAME": WORKER_APP_NAME}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "--queues",
            ",".join(settings.WORKER_QUEUES),
            "--concurrency",
            "1",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    try:
        wait_for(lambda: any(" ready." in line for line in output) or process.poll() is not None, 60, "worker start")
        assert process.poll() is None, "".join(output)
        yield output
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def test_a_worker_consumes_every_queue(celery_worker):
    cache.delete_many([f"worker-heartbeat:{q}" for q in settings.WORKER_QUEUES])
    for queue in settings.WORKER_QUEUES:
        worker_heartbeat.apply_async(args=(queue,), queue=queue)
    for queue in settings.WORKER_QUEUES:
        wait_for(lambda q=queue: cache.get(f"worker-heartbeat:{q}"), 30, f"the heartbeat on {queue}")


def test_tasks_route_to_their_queues():
    routes = app.amqp.router
    assert routes.route({}, "messaging.tasks.inbound_route")["queue"].name == "inbound"
    assert routes.route({}, "messaging.tasks.outbound_send")["queue"].name == "outbound"
    assert routes.route({}, "messaging.tasks.worker_heartbeat")["queue"].name == "sync"


@pytest.mark.postgres
@pytest.mark.redis
def test_a_worker_keeps_its_database_connection_across_tasks(celery_worker):
    """Celery closes Django's connection after every task unless told otherwise: 3x fewer tasks per second here."""
    cache.delete("worker-heartbeat:last")
    for _ in range(30):
        worker_heartbeat.apply_async(args=("sync",), queue="sync")
    worker_heartbeat.apply_async(args=("last",), queue="sync")  # one queue, one process: this one runs last
    wait_for(lambda: cache.get("worker-heartbeat:last"), 60, "31 heartbeats")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [WORKER_APP_NAME])
        open_connections = cursor.fetchone()[0]
    assert open_connections == 1  # 0 would mean it closed after each task
