"""messaging.dispatch is the only way work is queued: every job runs a task, named by reference; the lock helper."""

import pytest
from django.core.cache import cache

from messaging import dispatch
from messaging.locks import one_at_a_time
from portal.celery import app
from sandbox import tasks as sandbox_tasks


def test_every_job_runs_a_registered_task():
    jobs = [value for value in vars(dispatch).values() if isinstance(value, dispatch.Job)]
    jobs.append(sandbox_tasks.DELIVERY_REPORT)
    assert len(jobs) >= 11
    for job in jobs:
        assert job.task is not None, f"{job!r} has no task: add @{job!r}.runs over its @shared_task"
        assert job.task.name in app.tasks


def test_a_job_without_its_task_says_so_instead_of_queueing_by_name():
    with pytest.raises(RuntimeError, match="no task runs"):
        dispatch.Job("nothing").soon(1)


def test_one_at_a_time_lets_one_holder_in_and_frees_the_lock_on_leaving():
    key = "lock:test-one-at-a-time"
    cache.delete(key)
    with one_at_a_time(key, timeout=30) as first:
        with one_at_a_time(key, timeout=30) as second:
            assert (first, second) == (True, False)
    with one_at_a_time(key, timeout=30) as again:
        assert again


def test_one_at_a_time_with_the_cache_down_raises_unless_told_what_to_do(monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(cache, "add", down)
    with pytest.raises(ConnectionError), one_at_a_time("lock:x", timeout=30):
        pass
    with one_at_a_time("lock:x", timeout=30, cache_down=True) as mine:
        assert mine
    with one_at_a_time("lock:x", timeout=30, cache_down=False) as mine:
        assert not mine


def _inbound_queue_length() -> int:
    with app.connection_for_write() as connection:  # the broker is Redis: a queue is a list of that name
        return connection.default_channel.client.llen("inbound")


def _inbound_queue_empty() -> None:
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("inbound")
    dispatch.EVENTS_DRAIN.ended()
    cache.delete(dispatch.EVENTS_DRAIN._help_flag(()))


@pytest.fixture
def quiet_inbound_queue(monkeypatch):
    """The real broker's inbound queue, emptied, no routing drain asked for, and no broker outage remembered."""
    monkeypatch.setattr(dispatch, "_broker_down_until", 0.0)
    _inbound_queue_empty()
    yield
    _inbound_queue_empty()


@pytest.mark.redis  # counted on the real broker's queue
@pytest.mark.usefixtures("quiet_inbound_queue")
def test_asks_while_a_drain_runs_are_folded_into_it_and_ask_again_once_it_ends():
    dispatch.EVENTS_DRAIN.running()
    dispatch.EVENTS_DRAIN.ask()
    dispatch.EVENTS_DRAIN.still_running()
    dispatch.EVENTS_DRAIN.ask()
    assert _inbound_queue_length() == 0  # the running drain looks again before it ends
    dispatch.EVENTS_DRAIN.ended()
    dispatch.EVENTS_DRAIN.ask()
    dispatch.EVENTS_DRAIN.ask()
    assert _inbound_queue_length() == 1  # after it ended: one drain, asks coalesced until it starts


@pytest.mark.redis  # counted on the real broker's queue
@pytest.mark.usefixtures("quiet_inbound_queue")
def test_a_running_drain_gets_one_helper_at_a_time():
    dispatch.EVENTS_DRAIN.running()
    dispatch.EVENTS_DRAIN.help()
    dispatch.EVENTS_DRAIN.help()
    assert _inbound_queue_length() == 1  # the first ask for help queues one; the second waits for it to start
    dispatch.EVENTS_DRAIN.running()  # the helper starts
    dispatch.EVENTS_DRAIN.help()
    assert _inbound_queue_length() == 2


@pytest.mark.redis  # counted on the real broker's queue
@pytest.mark.usefixtures("quiet_inbound_queue")
def test_a_running_drains_flag_lapses_by_itself_if_its_worker_dies(monkeypatch):
    monkeypatch.setattr(dispatch, "RUNNING_SECONDS", 1)
    dispatch.EVENTS_DRAIN.running()  # and its worker is killed: no ended()
    dispatch.EVENTS_DRAIN.ask()
    assert _inbound_queue_length() == 0
    import time

    time.sleep(1.2)
    dispatch.EVENTS_DRAIN.ask()
    assert _inbound_queue_length() == 1
