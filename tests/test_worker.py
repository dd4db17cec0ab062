"""A real Celery worker process, on the configured broker (filesystem or Redis) and the test database."""

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from messaging.tasks import worker_heartbeat
from portal.celery import app
from tests.processes import WORKER_APP_NAME, Celery, purge_queues, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def start_worker():
    """Start `celery worker` on all three queues (with extra environment); stop every one started after the test."""
    celery = Celery()
    purge_queues()
    yield lambda **extra_env: celery.worker(**extra_env).output
    celery.stop_all()


@pytest.fixture
def celery_worker(start_worker):
    return start_worker()


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


def test_saving_an_account_syncs_and_wires_its_numbers_through_a_worker(start_worker, wavix, operator, tenant):
    """The whole path: API save → after commit → Celery → Wavix (the sandbox, over HTTP) → numbers wired."""
    from messaging.models import WavixAccount
    from sandbox.models import SandboxNumber
    from tests import factories as f
    from tests.conftest import token_client

    output = start_worker(WAVIX_API_URL=f"{wavix.url}/sandbox/wavix", PUBLIC_BASE_URL=wavix.url)
    at_wavix = f.SandboxAccountFactory()
    f.SandboxNumberFactory(account=at_wavix, number="14155550100")
    f.SandboxNumberFactory(account=at_wavix, number="14155550101")
    response = token_client(operator).post(
        "/api/v1/wavix-accounts/",
        {"name": "Acme's own", "tenant": tenant.pk, "api_key": at_wavix.api_key},
        format="json",
    )
    assert response.status_code == 201, response.json()
    account = WavixAccount.objects.get()
    wait_for(lambda: WavixAccount.objects.get().sync_state == "done", 60, "the sync: " + "".join(output[-20:]))
    assert set(account.numbers.values_list("number", flat=True)) == {"+14155550100", "+14155550101"}

    trunk = f.TrunkFactory(tenant=tenant, sms_enabled=False)
    account.numbers.filter(number="+14155550100").update(trunk=trunk)
    token_client(operator).patch(f"/api/v1/trunks/{trunk.pk}/", {"sms_enabled": True}, format="json")
    wait_for(
        lambda: SandboxNumber.objects.get(number="14155550100").sms_relay_url == account.inbound_webhook_url,
        60,
        "enabling SMS on the trunk to wire its number",
    )


def test_a_sync_that_met_an_outage_resumes_by_itself(start_worker, wavix, tenant):
    """Wavix answers 500: the task records why and retries on its own; when Wavix is back, the sync completes."""
    from datetime import timedelta

    from django.utils import timezone

    from messaging.models import WavixAccount
    from messaging.tasks import wavix_numbers_sync
    from sandbox.models import SandboxAccount
    from tests import factories as f

    output = start_worker(
        WAVIX_API_URL=f"{wavix.url}/sandbox/wavix", PUBLIC_BASE_URL=wavix.url, WAVIX_RETRY_BACKOFF_SECONDS="1"
    )
    at_wavix = f.SandboxAccountFactory(failing_until=timezone.now() + timedelta(minutes=5))
    f.SandboxNumberFactory(account=at_wavix, number="14155550100")
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant, api_key=at_wavix.api_key)
    wavix_numbers_sync.delay(account.pk, True)
    wait_for(lambda: WavixAccount.objects.get().sync_state == "failed", 30, "the failed attempt")
    assert "500" in WavixAccount.objects.get().sync_note

    SandboxAccount.objects.filter(pk=at_wavix.pk).update(failing_until=None)  # Wavix is back
    wait_for(lambda: WavixAccount.objects.get().sync_state == "done", 60, "the retry: " + "".join(output[-15:]))
    assert account.numbers.get().number == "+14155550100"


@pytest.mark.redis
def test_a_worker_outlives_a_redis_restart_while_it_holds_unacknowledged_tasks():
    """Celery 5.7.0 exits ("Unrecoverable error"), or hangs, when the broker goes away while the worker holds a
    task it has not acknowledged — here one due in 10 minutes — so pyproject.toml pins 5.6.3. Its own Redis, so
    the shared one stays up for the other tests."""
    from bench.faults import PrivateRedis, free_port

    redis = PrivateRedis(free_port(6393))
    redis.start()
    celery = Celery()
    try:
        worker = celery.worker(REDIS_URL=redis.url, CELERY_BROKER_URL=redis.url)
        with app.connection_for_write(redis.url) as broker:
            held = worker_heartbeat.apply_async(args=("held",), queue="sync", countdown=600, connection=broker)
        wait_for(lambda: any(held.id in line for line in worker.output), 30, "the worker to hold the task")
        redis.stop()
        wait_for(lambda: any("Connection to broker lost" in line for line in worker.output), 30, "the lost broker")
        redis.start()
        reconnected = lambda: sum("Connected to redis" in line for line in worker.output) >= 2  # noqa: E731
        wait_for(lambda: reconnected() or worker.popen.poll() is not None, 60, "a reconnect")
        assert worker.popen.poll() is None, worker.tail(60)  # Celery 5.7.0 exits with 1 here
        with app.connection_for_write(redis.url) as broker:
            after = worker_heartbeat.apply_async(args=("after",), queue="sync", connection=broker)
        wait_for(
            lambda: any(f"[{after.id}] succeeded" in line for line in worker.output) or worker.popen.poll(),
            60,
            "a task after the restart",
        )
        assert worker.popen.poll() is None, worker.tail(60)
    finally:
        celery.stop_all()
        redis.destroy()
