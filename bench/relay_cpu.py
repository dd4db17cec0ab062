"""Worker CPU per relayed text, in one process: routing, forwarding and delivery reports, on PostgreSQL.

N inbound webhooks (bench/relay.py's bodies: 4 tenants, --conversations remote numbers) are stored as the intake
stores them; then `events_process()` routes them all and `deliveries_process()` forwards them all to a fake 3CX
that answers 200 at once (in another process, so its CPU is not counted here); then N delivery reports of N
outbound texts in `sent` are stored and `events_process()` applies them. Each stage's CPU time
(time.process_time(): this process, every thread — the forwarding threads' HTTP included) and wall time are
divided by N; a last round counts the SQL statements per text. To compare the code before a change, copy this file
into a checkout of it (with its own virtualenv) and run both in turn.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/13 \\
        .venv/bin/python bench/relay_cpu.py [--messages 500] [--rounds 3] [--conversations 100]

It owns the database `portal_bench_relay` and Redis DB 13, as bench/relay.py does (never run both at once).
"""

import argparse
import inspect
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.relay import configure_environment, free_port, inbound_items, outbound_messages, report_items  # noqa: E402
from bench.worker_db_reuse import ensure_database  # noqa: E402

FAKE_3CX = """
import sys, time
sys.path.insert(0, {root!r})
from bench.relay import FakeThreeCX
fake = FakeThreeCX()
print(fake.port, flush=True)
sys.stdin.read()
"""


def store(items, kind: str) -> None:
    """Store the webhooks as the intake does (with their relay partition, where the code has them)."""
    from messaging import webhooks
    from messaging.models import WebhookEvent

    partitioned = "partition" in inspect.signature(WebhookEvent.store).parameters
    for account_id, item in items:
        payload, problem = webhooks.parse(kind, item.body)
        assert problem is None, problem
        extra = {}
        if partitioned:
            from messaging.models import relay_partition

            extra["partition"] = relay_partition(webhooks.conversation_key(kind, payload))
        WebhookEvent.store(
            account_id=account_id, kind=kind, dedup_key=webhooks.dedup_key(kind, payload), body=item.body, **extra
        )


def one_round(lines, args, count_queries: bool = False) -> dict[str, tuple[float, float, int]]:
    """(CPU ms, wall ms, statements) per text for each stage."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bench.relay import wipe
    from messaging.models import Delivery, Message
    from messaging.services import forwarding, inbound

    wipe()
    account_of = {line.inbound_path: line.account_id for line in lines}
    account_of.update({line.dlr_path: line.account_id for line in lines})
    texts = inbound_items(lines, args.messages, args.conversations)
    store([(account_of[item.path], item) for item in texts], "inbound")
    results = {}

    def measure(name: str, work) -> None:
        captured = CaptureQueriesContext(connection)
        if count_queries:
            captured.__enter__()
        cpu, wall = time.process_time(), time.perf_counter()
        work()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        queries = 0
        if count_queries:
            captured.__exit__(None, None, None)
            queries = len(captured.captured_queries)
        results[name] = (1000 * cpu / args.messages, 1000 * wall / args.messages, queries / args.messages)

    measure("routing", inbound.events_process)

    def forward_all() -> None:
        while Delivery.objects.filter(status="pending").exists():
            forwarding.deliveries_process()

    measure("forwarding", forward_all)
    delivered = Delivery.objects.filter(status="delivered").count()
    assert delivered == args.messages, f"{delivered} of {args.messages} forwarded"
    ids = outbound_messages(lines, args.messages)
    reports = report_items(lines, ids)
    store([(account_of[item.path], item) for item in reports], "dlr")
    measure("reports", inbound.events_process)
    done = Message.objects.filter(pk__in=ids.values(), status="delivered").count()
    assert done == args.messages, f"{done} of {args.messages} reports applied"
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conversations", type=int, default=100)
    args = parser.parse_args()

    configure_environment(free_port())
    ensure_database(os.environ["DATABASE_URL"])
    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE_3CX.format(root=str(ROOT))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(fake.stdout.readline())
        import django

        django.setup()
        from bench.relay import prepare

        class Remote:  # prepare() only asks the fake for its URLs
            def url(self, path: str) -> str:
                return f"http://127.0.0.1:{port}{path}"

        lines = prepare(Remote())
        one_round(lines, args)  # warm-up: connections, query plans, imports
        rounds = [one_round(lines, args) for _ in range(args.rounds)]
        queries = one_round(lines, args, count_queries=True)
    finally:
        fake.kill()
    print(f"code: {ROOT}; {args.messages} texts, {args.conversations} conversations, {args.rounds} rounds")
    print("| per text | CPU ms (median, range) | wall ms (median) | statements |")
    print("|---|---:|---:|---:|")
    for stage in ("routing", "forwarding", "reports"):
        cpus = [r[stage][0] for r in rounds]
        walls = [r[stage][1] for r in rounds]
        print(
            f"| {stage} | {statistics.median(cpus):.2f} ({min(cpus):.2f}–{max(cpus):.2f}) | "
            f"{statistics.median(walls):.2f} | {queries[stage][2]:.2f} |"
        )
    inbound_cpu = [r["routing"][0] + r["forwarding"][0] for r in rounds]
    print(
        f"| inbound text (routing + forwarding) | {statistics.median(inbound_cpu):.2f} "
        f"({min(inbound_cpu):.2f}–{max(inbound_cpu):.2f}) | | |"
    )


if __name__ == "__main__":
    main()
