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
