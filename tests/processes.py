"""Real Celery processes for tests: workers and beat on the configured broker and the test database."""

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from portal.celery import app
from tests.conftest import test_database_url

ROOT = Path(__file__).resolve().parent.parent
WORKER_APP_NAME = "portal-test-worker"


def purge_queues() -> None:
    with app.connection_for_write() as conn:
        for queue in settings.WORKER_QUEUES:
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # noqa: BLE001 - a queue never declared has nothing to purge
                pass


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Process:
    popen: subprocess.Popen
    output: list[str] = field(default_factory=list)

    def tail(self, lines: int = 30) -> str:
        return "".join(self.output[-lines:])

    def kill(self) -> None:
        """SIGKILL the process and its children (a prefork pool), as a crash or the OOM killer would."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


class Celery:
    """Starts workers and beat for one test; stops all of them afterwards."""

    def __init__(self):
        self.started: list[Process] = []

    def _start(self, args: list[str], ready: str, extra_env: dict[str, str]) -> Process:
        env = {**os.environ, "DATABASE_URL": test_database_url(), "DB_APPLICATION_NAME": WORKER_APP_NAME, **extra_env}
        popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: killed as a whole
        )
        process = Process(popen)
        self.started.append(process)
        threading.Thread(target=lambda: process.output.extend(popen.stdout), daemon=True).start()
        wait_for(lambda: any(ready in line for line in process.output) or popen.poll() is not None, 60, " ".join(args))
        assert popen.poll() is None, process.tail()
        return process

    def worker(self, concurrency: int = 1, **extra_env: str) -> Process:
        queues = ",".join(settings.WORKER_QUEUES)
        args = ["worker", "--queues", queues, "--concurrency", str(concurrency), "--without-mingle", "--without-gossip"]
        return self._start([*args, "--loglevel", "INFO"], " ready.", extra_env)

    def beat(self, **extra_env: str) -> Process:
        return self._start(["beat", "--loglevel", "INFO"], "beat: Starting", extra_env)

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()
        if os.environ.get("PORTAL_TEST_PROCESS_LOGS"):  # for debugging a failing run: keep what they printed
            for n, process in enumerate(self.started):
                Path(os.environ["PORTAL_TEST_PROCESS_LOGS"], f"celery-{n}.log").write_text("".join(process.output))
