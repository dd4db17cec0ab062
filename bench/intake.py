"""Webhook intake: requests/s and latency of POST /webhooks/wavix/<secret>/inbound/, beside a same-run ceiling.

Serves the portal from gunicorn exactly as the Procfile does (2 workers × 4 threads) on PostgreSQL + Redis. The
ceiling is the same gunicorn serving a bare view that INSERTs the body as one row (bench/ceiling_app.py). For
each: the sustained maximum with C concurrent keep-alive clients (closed loop), then the latency at half that
maximum, paced (open loop: latency counts from when a request was due, so a stall is not hidden). Also the
peak RSS of each gunicorn worker. No Celery worker runs: intake only stores (the relay is bench/relay.py's).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python bench/intake.py [--seconds 10] [--clients 8]

BENCH_GUNICORN="gunicorn bench.ceiling_app:application --workers 4 --access-logfile -" tries another server
configuration (both rows use it).
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PORT = 8766
TARGET_SHARE, TARGET_P99_MS = 0.70, 100  # the targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement")
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections for the maximum")
    parser.add_argument("--rounds", type=int, default=5, help="alternating ceiling/intake maxima (median is kept)")
    args = parser.parse_args()

    from bench.worker_db_reuse import bench_database_url, ensure_database

    os.environ["DATABASE_URL"] = bench_database_url()
    os.environ.update(DJANGO_SETTINGS_MODULE="portal.settings", PUBLIC_BASE_URL=f"http://127.0.0.1:{PORT}")
    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    webhook_path = prepare()
    from bench.numbers_sync import gunicorn

    server = os.environ.get(
        "BENCH_GUNICORN", "bench.ceiling_app:application --workers 2 --threads 4 --access-logfile -"
    )
    endpoints = (
        ("ceiling: bare view, INSERT one row", "/bench/insert/", ceiling_body),
        ("webhook intake (inbound)", webhook_path, inbound_body),
    )
    with gunicorn(server.removeprefix("gunicorn "), PORT) as web:
        for _name, path, body in endpoints:
            closed_loop(path, body, args.clients, 2.0)  # warm up: connections, caches, plans
        # The two alternate, round after round: the machine's speed drifts within a minute, and a ratio of
        # measurements taken apart would measure the drift.
        rounds = [
            [closed_loop(path, body, args.clients, args.seconds) for _n, path, body in endpoints]
            for _ in range(args.rounds)
        ]
        rows = []
        for index, (name, path, body) in enumerate(endpoints):
            best = median_round([r[index] for r in rounds])
            paced = open_loop(path, body, best["per_second"] / 2, args.clients, args.seconds)
            rows.append((name, best, paced))
        print(report(rows, rounds, args, worker_peak_rss(web.pid)))


def prepare() -> str:
    """A reseller, tenant and Wavix account with a webhook secret; an empty ceiling table. Returns the path."""
    from django.db import connection

    from messaging.models import WavixAccount, WebhookEvent
    from tenants.models import Reseller, Tenant

    reseller, _ = Reseller.objects.get_or_create(slug="bench-intake", defaults={"name": "Bench intake"})
    tenant, _ = Tenant.objects.get_or_create(reseller=reseller, slug="bench-intake", defaults={"name": "Bench"})
    account = WavixAccount.objects.filter(reseller=reseller, name="bench-intake").first()
    if account is None:
        account = WavixAccount(reseller=reseller, tenant=tenant, name="bench-intake")
        account.set_api_key("bench-key-not-used")
        account.save()
    WebhookEvent.objects.filter(account=account).delete()  # each run starts from the same table size
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_ceiling")
        cursor.execute("CREATE TABLE bench_ceiling (id bigserial PRIMARY KEY, body bytea NOT NULL)")
    return urlsplit(account.inbound_webhook_url).path


def ceiling_body() -> bytes:
    return inbound_body()  # the same bytes over the wire and into the row


def inbound_body() -> bytes:
    return json.dumps(
        {
            "message_id": str(uuid.uuid4()),
            "from": "447700900123",
            "to": "14155550100",
            "message_body": {"text": "Is tomorrow at 10 still OK?", "media": None},
            "received_at": "2026-11-25T10:00:00.000Z",
        }
    ).encode()


def _post(conn: http.client.HTTPConnection, path: str, body: bytes) -> int:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status


def closed_loop(path: str, make_body, clients: int, seconds: float) -> dict:
    """As fast as `clients` keep-alive connections go: the sustained maximum."""
    latencies, errors, lock = [], [0], threading.Lock()
    deadline = time.perf_counter() + seconds

    def client():
        conn, mine, bad = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30), [], 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status = _post(conn, path, make_body())
            mine.append(time.perf_counter() - started)
            bad += status != 200
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return summary(latencies, errors[0], elapsed)


def open_loop(path: str, make_body, rate: float, clients: int, seconds: float) -> dict:
    """A request due every 1/rate s, spread over the clients; latency counts from when each was due."""
    latencies, errors, lock = [], [0], threading.Lock()
    total = int(rate * seconds)
    start = time.perf_counter() + 0.2

    def client(offset: int):
        conn, mine, bad = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30), [], 0
        for slot in range(offset, total, clients):
            due = start + slot / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            status = _post(conn, path, make_body())
            mine.append(time.perf_counter() - due)
            bad += status != 200
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summary(latencies, errors[0], time.perf_counter() - start) | {"rate": rate}


def summary(latencies: list[float], errors: int, elapsed: float) -> dict:
    ordered = sorted(latencies)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {
        "requests": len(ordered),
        "per_second": len(ordered) / elapsed,
        "p50": statistics.median(ordered) * 1000,
        "p99": pick(0.99),
        "max": ordered[-1] * 1000,
        "errors": errors,
    }


def median_round(results: list[dict]) -> dict:
    """The round with the median rate (its latencies belong to it)."""
    return sorted(results, key=lambda r: r["per_second"])[len(results) // 2]


def worker_peak_rss(master_pid: int) -> list[int]:
    """Peak resident memory (VmHWM, KiB) of each gunicorn worker."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    peaks = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]))
    return peaks


def report(rows, rounds, args, peaks: list[int]) -> str:
    ceiling = rows[0][1]["per_second"]
    shares = [intake["per_second"] / bare["per_second"] for bare, intake in rounds]
    lines = [
        f"\ngunicorn 2 workers × 4 threads + PostgreSQL + Redis; {args.clients} keep-alive clients; "
        f"{args.seconds:g} s per measurement; client and server share the 2 cores\n",
        "rounds (ceiling → intake req/s): "
        + "; ".join(
            f"{bare['per_second']:.0f} → {intake['per_second']:.0f} ({share:.0%})"
            for (bare, intake), share in zip(rounds, shares, strict=True)
        )
        + "\n",
        "| endpoint | max req/s | of ceiling | p50 ms | p99 ms | errors | at half max: req/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, best, paced in rows:
        lines.append(
            f"| {name} | {best['per_second']:.0f} | {best['per_second'] / ceiling:.0%} | {best['p50']:.1f} | "
            f"{best['p99']:.1f} | {best['errors'] + paced['errors']} | {paced['per_second']:.0f} | "
            f"{paced['p50']:.1f} | {paced['p99']:.1f} |"
        )
    paced = rows[1][2]
    share = statistics.median(shares)
    share_ok = share >= TARGET_SHARE
    lines.append(
        f"\ntargets: intake ≥ {TARGET_SHARE:.0%} of the ceiling (median of the rounds' ratios: {share:.0%}): "
        f"{'met' if share_ok else 'MISSED'}; "
        f"p99 < {TARGET_P99_MS} ms at half the maximum: {'met' if paced['p99'] < TARGET_P99_MS else 'MISSED'}"
    )
    lines.append("peak RSS per gunicorn worker: " + ", ".join(f"{kib / 1024:.0f} MiB" for kib in peaks))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
