"""Celery worker throughput with and without database connection reuse (CELERY_DB_REUSE_MAX).

Needs PostgreSQL and Redis: DATABASE_URL (any database on the server; the benchmark uses `portal_bench`) and
REDIS_URL. Prints one table; both rows come from the same run on the same machine.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/14 \
        .venv/bin/python bench/worker_db_reuse.py [--tasks 3000]
"""

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bench_database_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres") or not os.environ.get("REDIS_URL"):
        sys.exit("Set DATABASE_URL (PostgreSQL) and REDIS_URL: this benchmark measures them, not SQLite.")
    return urlunsplit(urlsplit(url)._replace(path="/portal_bench"))


def ensure_database(url: str) -> None:
    """Create the database `url` names if it does not exist, and migrate it (DATABASE_URL must name it too)."""
    import psycopg
    from psycopg import sql

    name = urlsplit(url).path.lstrip("/")
    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True, env=os.environ)


def new_sessions(cursor) -> int:
    cursor.execute("SELECT pg_stat_clear_snapshot()")
    cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
    return cursor.fetchone()[0]


def run(mode: str, reuse_max: str, tasks: int, message_id: int, concurrency: int, worker_args: list[str]) -> dict:
    from django.db import connection

    from bench.tasks import COUNTER_KEY, touch_message
    from portal.celery import app

    env = {**os.environ, "CELERY_DB_REUSE_MAX": reuse_max, "DB_APPLICATION_NAME": "portal-bench-worker"}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "--include",
            "bench.tasks",
            "--queues",
            "sync",
            "--concurrency",
            str(concurrency),
            *worker_args,
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(worker.stdout), daemon=True).start()
    redis = app.connection_for_write().default_channel.client
    try:
        redis.delete(COUNTER_KEY)
        for _ in range(50):  # warm up: worker processes forked, connections made
            touch_message.apply_async(args=(message_id,), queue="sync")
        wait_for_count(redis, COUNTER_KEY, 50, worker, lines)
        redis.delete(COUNTER_KEY)
        with connection.cursor() as cursor:
            sessions_before = new_sessions(cursor)
            started = time.perf_counter()
            for _ in range(tasks):
                touch_message.apply_async(args=(message_id,), queue="sync")
            wait_for_count(redis, COUNTER_KEY, tasks, worker, lines)
            elapsed = time.perf_counter() - started
            time.sleep(1)  # statistics are flushed by the backends within a second
            sessions = new_sessions(cursor) - sessions_before
    finally:
        worker.terminate()
        worker.wait(30)
    return {"mode": mode, "tasks": tasks, "seconds": elapsed, "per_second": tasks / elapsed, "sessions": sessions}


def wait_for_count(redis, key: str, target: int, worker, lines, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while int(redis.get(key) or 0) < target:
        if worker.poll() is not None or time.monotonic() > deadline:
            sys.exit("worker stopped or stalled:\n" + "".join(lines[-30:]))
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--worker-args", default="", help="extra `celery worker` flags, e.g. '--prefetch-multiplier 4'")
    args = parser.parse_args()
    extra = args.worker_args.split()

    os.environ["DATABASE_URL"] = bench_database_url()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from messaging.models import Message
    from tests.factories import MessageFactory

    message_id = (Message.objects.first() or MessageFactory()).pk
    results = [
        run("reuse (CELERY_DB_REUSE_MAX=1000)", "1000", args.tasks, message_id, args.concurrency, extra),
        run("reconnect per task (=0)", "0", args.tasks, message_id, args.concurrency, extra),
    ]
    baseline = results[0]["per_second"]
    print(
        f"\nWorker: prefork -c {args.concurrency} {args.worker_args}, task = load a row + update it + count in Redis\n"
    )
    print(f"| {'mode':<34} | tasks | seconds | tasks/s | new PG connections | vs reuse |")
    print(f"|{'-' * 36}|-------|---------|---------|--------------------|----------|")
    for r in results:
        print(
            f"| {r['mode']:<34} | {r['tasks']:>5} | {r['seconds']:>7.2f} | {r['per_second']:>7.0f} "
            f"| {r['sessions']:>18} | {r['per_second'] / baseline:>7.2f}x |"
        )


if __name__ == "__main__":
    main()
