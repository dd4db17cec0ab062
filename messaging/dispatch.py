"""The one way work is queued for a Celery worker: every job the services ask for is named here.

A Job names a task by reference (never by string: a reader's grep and the type checker follow it) and is
attached to it in messaging/tasks.py (`@JOB.runs`). Which queue a task goes to is CELERY_TASK_ROUTES' decision
alone (portal/settings.py); nothing here or at a call site picks one.

Two ways to ask:
- soon(*args): run the task once the current transaction commits (at once outside one), so a worker never
  looks for a row that is not committed yet, and nothing is queued for work a rollback undid.
- ask(*args): for drains — "look at the table again". Coalesced: while one ask is queued and not yet started,
  further asks are dropped (a cache flag; the drain clears it when it starts, so what is stored after that
  asks again). Enqueueing costs as much as storing a webhook (DESIGN §7). If the cache or the broker is down,
  nothing is lost: the work is in the database, the periodic sweepers ask later, and this process stops trying
  for BROKER_DOWN_PAUSE so that a request does not wait for a broker timeout each time.
  A drain that calls running() instead of started() keeps the flag up until it ends (ended()): asks while it
  runs are folded into it, since it looks again before it ends; help() queues one more drain regardless, for a
  drain that found more than its share.
"""

import logging
import os
import threading
import time
from typing import Any

from celery import Task
from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

BROKER_DOWN_PAUSE = 5.0  # seconds without asks after an ask failed
# The intake asks for a routing drain at most this often per process, and once more after the last webhook of
# a burst: a cache round trip on every webhook (≈ 0.25 ms here) cost intake about as much as its INSERT
# (bench/intake.py). A process that stops with an ask pending leaves it to the sweeper (every 10 s).
ASK_EVERY_SECONDS = 0.2
# A running() drain's flag lasts this long unless renewed (seconds): long enough for a batch, short enough that a
# worker killed mid-drain holds asks back only briefly.
RUNNING_SECONDS = 10

_broker_down_until = 0.0
_timers_lock = threading.Lock()
_asked_at: dict[str, float] = {}
_ask_scheduled: set[str] = set()


class Job:
    """A kind of background work: its task, and for a drain the cache flag that coalesces asks for it."""

    def __init__(self, description: str, *, flag: str = "") -> None:
        self.description = description
        self.flag = flag  # formatted with the ask's arguments: "outbound:drain-queued:{}" is one flag per account
        self.task: Task | None = None

    def __repr__(self) -> str:
        return f"<Job {self.description}>"

    def runs(self, task: Task) -> Task:
        """Attach the task that does this job (a decorator, outermost over @shared_task in messaging/tasks.py)."""
        self.task = task
        return task

    def _task(self) -> Task:
        if self.task is None:  # messaging.apps imports messaging.tasks, so only a broken import gets here
            raise RuntimeError(f"no task runs {self!r}: is messaging.tasks imported?")
        return self.task

    def soon(self, *args: Any, countdown: float | None = None) -> None:
        """Queue the task once the current transaction commits (at once outside one); after `countdown` s."""
        task = self._task()
        transaction.on_commit(lambda: task.apply_async(args, countdown=countdown))

    def ask(self, *args: Any) -> None:
        """Ask for a drain now, unless one is already asked for and not started (see the module's docstring)."""
        global _broker_down_until
        if time.monotonic() < _broker_down_until:
            return  # it failed a moment ago: do not make every caller wait for a broker timeout
        flag = self.flag.format(*args)
        try:
            if cache.add(flag, 1, timeout=30):
                self._task().apply_async(args, retry=False)
        except Exception:  # noqa: BLE001 - any cache or broker failure: the sweeper is the fallback
            _broker_down_until = time.monotonic() + BROKER_DOWN_PAUSE
            logger.warning("dispatch: could not ask for %s; the sweeper will", self.description, exc_info=True)
            try:
                cache.delete(flag)
            except Exception:  # noqa: BLE001
                pass

    def ask_soon(self, *args: Any) -> None:
        """ask(), once the current transaction commits (at once outside one)."""
        transaction.on_commit(lambda: self.ask(*args))

    def ask_at_most_every(self) -> None:
        """ask(), but an ask within ASK_EVERY_SECONDS of this process's last one is folded into one ask when that
        interval ends — so what was stored in between is seen by a drain asked for after it was stored."""
        now = time.monotonic()
        with _timers_lock:
            wait = _asked_at.get(self.flag, -ASK_EVERY_SECONDS) + ASK_EVERY_SECONDS - now
            if wait > 0:
                if self.flag not in _ask_scheduled:
                    _ask_scheduled.add(self.flag)
                    timer = threading.Timer(wait, self._ask_scheduled_now)
                    timer.daemon = True
                    timer.start()
                return
            _asked_at[self.flag] = now
        self.ask()

    def _ask_scheduled_now(self) -> None:
        with _timers_lock:
            _ask_scheduled.discard(self.flag)
            _asked_at[self.flag] = time.monotonic()
        self.ask()

    def running(self, *args: Any) -> None:
        """The drain has started and looks at the table until it finds nothing left: unlike started(), its flag stays
        up while it runs (RUNNING_SECONDS at a time, renewed by still_running()), so asks meanwhile are folded into
        it instead of queueing a second drain that would take another worker from other work for nothing. ended()
        takes the flag down; the drain then looks once more and asks if anything is left (no lost wake-up: what is
        stored before the flag goes is seen by that look, what is stored after asks itself). A worker killed
        mid-drain holds asks back for RUNNING_SECONDS at most."""
        self._flag_set(args)
        try:
            cache.delete(self._help_flag(args))  # this may be the helper asked for: the next ask for help queues one
        except Exception:  # noqa: BLE001
            pass

    def still_running(self, *args: Any) -> None:
        """Renew running()'s flag: call it at least every RUNNING_SECONDS while the drain runs."""
        self._flag_set(args)

    def ended(self, *args: Any) -> None:
        """The running() drain is ending: what arrives from now on asks again."""
        self.started(*args)

    def help(self, *args: Any) -> None:
        """Queue one more drain even while one is asked for or running — coalesced with other asks for help until
        a drain starts: a drain that found more work than its share asks this way, so that a free worker takes
        the rest."""
        try:
            if cache.add(self._help_flag(args), 1, timeout=30):
                self._task().apply_async(args, retry=False)
        except Exception:  # noqa: BLE001 - the drain asking goes on alone; the sweeper is the fallback
            logger.warning("dispatch: could not ask for help with %s", self.description, exc_info=True)

    def _help_flag(self, args: tuple[Any, ...]) -> str:
        return self.flag.format(*args) + ":help"

    def _flag_set(self, args: tuple[Any, ...]) -> None:
        try:
            cache.set(self.flag.format(*args), 1, timeout=RUNNING_SECONDS)
        except Exception:  # noqa: BLE001 - only costs the folding of asks, never the drain itself
            logger.warning("dispatch: the cache is unreachable; %s runs anyway", self.description)

    def started(self, *args: Any) -> None:
        """The drain has started: clear its flag so that what arrives from now on asks again. The cache being
        down only costs that optimisation (the sweeper still runs), never the drain itself."""
        try:
            cache.delete(self.flag.format(*args))
        except Exception:  # noqa: BLE001
            logger.warning("dispatch: the cache is unreachable; %s runs anyway", self.description)


def _forget_asks_after_fork() -> None:
    global _timers_lock
    _timers_lock = threading.Lock()  # a lock held by another thread at fork time would never be released
    _asked_at.clear()
    _ask_scheduled.clear()


os.register_at_fork(after_in_child=_forget_asks_after_fork)


# Drains: "look at the table again"; each clears its flag when it starts.
EVENTS_DRAIN = Job("routing the stored webhooks", flag="relay:events-drain-queued")
DELIVERIES_DRAIN = Job("forwarding due deliveries to 3CX", flag="relay:deliveries-drain-queued")
OUTBOUND_DRAIN = Job("sending an account's due messages", flag="outbound:drain-queued:{}")
# Periodic per account, coalesced like a drain: while Wavix is slow or the queue is long, asks do not pile up.
OUTBOUND_MIRROR = Job("reading 3CX's direct sends from Wavix's log", flag="wavix:mirror-queued:{}")

# Work on one row, queued once the transaction that asks for it commits.
OUTBOUND_RECONCILE = Job("asking Wavix whether a send arrived")
NUMBERS_SYNC = Job("syncing an account's numbers with Wavix")
SENDER_IDS_SYNC = Job("syncing an account's sender IDs with Wavix")
INBOUND_RECONCILE = Job("finding inbound texts whose webhook never came")
RELAY_REPAIR = Job("pointing numbers' relay URLs back at the portal")
NUMBERS_UNPOINT = Job("emptying the relay URL of a trunk's numbers")
SANDBOX_REPLY = Job("the sandbox phone's reply to a setup test")  # run by sandbox.tasks
