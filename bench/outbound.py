"""Outbound sending: messages/s to the Wavix sandbox with the rate limiter open, and fairness beside a bulk batch.

Serves the sandbox from gunicorn (2 workers × 4 threads) on PostgreSQL + Redis and runs one Celery worker
(prefork -c 2, queues outbound and inbound) with the sandbox's delivery reports turned into no-ops' cost
(they still arrive). In the same run:
  - baseline: the sandbox's own POST /v3/messages rate from one client in this process (what one sender can
    at most get from this server);
  - N messages of one tenant queued in one bulk request, until all are accepted by Wavix;
  - fairness: a 1,000-recipient bulk of tenant A, then one message of tenant B: how long B waited, and how
    many of A's were still queued when B went out.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python bench/outbound.py [--messages 1000]
"""

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PORT = 8767


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    args = parser.parse_args()

    from bench.worker_db_reuse import bench_database_url, ensure_database

    os.environ["DATABASE_URL"] = bench_database_url()
    os.environ.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        SANDBOX_ENABLED="true",
        PUBLIC_BASE_URL=f"http://127.0.0.1:{PORT}",
        WAVIX_API_URL=f"http://127.0.0.1:{PORT}/sandbox/wavix",
    )
    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from bench.numbers_sync import gunicorn

    with gunicorn("portal.wsgi --workers 2 --threads 4", PORT):
        world = prepare()
        baseline = sandbox_rate(world["key"], 300)
        worker = start_worker()
        try:
            throughput = bulk_throughput(world, args.messages)
            fairness = bulk_beside_single(world)
        finally:
            worker.terminate()
            worker.wait(30)
        print(report(args.messages, baseline, throughput, fairness))


def prepare() -> dict:
    """Two tenants on one shared Wavix account (limit 1,000/s: open), each with a US number as sender."""
    from django.core.cache import cache

    from messaging.models import Message, PhoneNumber, SenderID, SenderIDCountry, WavixAccount
    from sandbox.models import SandboxAccount, SandboxMessage, SandboxNumber
    from tenants.models import Reseller, Tenant

    cache.clear()
    reseller, _ = Reseller.objects.get_or_create(slug="bench-outbound", defaults={"name": "Bench outbound"})
    Message.objects.filter(tenant__reseller=reseller).delete()
    at_wavix, _ = SandboxAccount.objects.get_or_create(name="bench-outbound")
    SandboxAccount.objects.filter(pk=at_wavix.pk).update(rate_limit_per_second=100000)
    SandboxMessage.objects.filter(account=at_wavix).delete()
    account = WavixAccount.objects.filter(reseller=reseller, name="bench-outbound").first()
    if account is None:
        account = WavixAccount(reseller=reseller, name="bench-outbound")
        account.set_api_key(at_wavix.api_key)
    account.send_rate_per_second = 1000
    account.save()
    senders = []
    for n, name in enumerate(("Bulk tenant", "Single tenant")):
        tenant, _ = Tenant.objects.get_or_create(reseller=reseller, slug=f"bench-{n}", defaults={"name": name})
        number = f"+1415444{n:04d}"  # apart from bench/numbers_sync.py's 1415555…, in the same database
        SandboxNumber.objects.get_or_create(account=at_wavix, number=number[1:], defaults={"country": "US"})
        PhoneNumber.objects.get_or_create(
            account=account, number=number, defaults={"tenant": tenant, "sms_enabled": True, "wavix_id": number[-4:]}
        )
        sender, _ = SenderID.objects.get_or_create(
            tenant=tenant, value=number, defaults={"account": account, "type": "numeric"}
        )
        SenderIDCountry.objects.get_or_create(
            tenant=tenant, sender=sender, country="US", defaults={"status": "allowlisted"}
        )
        senders.append(sender)
    return {"key": at_wavix.api_key, "bulk": senders[0], "single": senders[1]}


def sandbox_rate(key: str, count: int) -> float:
    """POST /v3/messages straight to the sandbox from one client: the most one sender gets from this server."""
    import httpx

    body = {
        "from": "14154440000",
        "to": "14155559999",
        "message_body": {"text": "baseline", "media": None},
        "callback_url": f"http://127.0.0.1:{PORT}/nowhere/",
        "tag": "baseline",
    }
    with httpx.Client(
        base_url=f"http://127.0.0.1:{PORT}/sandbox/wavix", headers={"Authorization": f"Bearer {key}"}
    ) as client:
        for _ in range(20):
            answer = client.post("/v3/messages", json=body)
            if not answer.is_success:
                sys.exit(f"the sandbox refused the baseline request: {answer.text}")
        started = time.perf_counter()
        for _ in range(count):
            client.post("/v3/messages", json=body).raise_for_status()
        return count / (time.perf_counter() - started)


def start_worker() -> subprocess.Popen:
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "--queues", "outbound,inbound,sync"]
        + ["--concurrency", "2", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
        cwd=ROOT,
        env=os.environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    threading.Thread(target=lambda: worker.stdout.read(), daemon=True).start()
    time.sleep(4)
    return worker


def _went_out(ids) -> int:
    from messaging.models import Message

    return Message.objects.filter(pk__in=ids).exclude(wavix_message_id="").count()


def _wait(ids, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while _went_out(ids) < len(ids):
        if time.monotonic() > deadline:
            sys.exit(f"only {_went_out(ids)} of {len(ids)} went out in {timeout:.0f} s")
        time.sleep(0.2)


def bulk_throughput(world: dict, count: int) -> dict:
    from messaging import services

    sender = world["bulk"]
    started = time.perf_counter()
    results = services.message_send_bulk(
        tenant=sender.tenant, sender=sender, recipients=[f"+1415556{n:04d}" for n in range(count)], text="Sale!"
    )
    queued_in = time.perf_counter() - started
    ids = [r["id"] for r in results if "id" in r]
    _wait(ids)
    elapsed = time.perf_counter() - started
    return {"count": len(ids), "queued_in": queued_in, "seconds": elapsed, "per_second": len(ids) / elapsed}


def bulk_beside_single(world: dict) -> dict:
    from messaging import services
    from messaging.models import Message

    bulk, single = world["bulk"], world["single"]
    results = services.message_send_bulk(
        tenant=bulk.tenant, sender=bulk, recipients=[f"+1415557{n:04d}" for n in range(1000)], text="Sale!"
    )
    ids = [r["id"] for r in results if "id" in r]
    while _went_out(ids) < 20:
        time.sleep(0.05)
    message = services.message_send(tenant=single.tenant, sender=single, to="+14155559876", text="Test")
    _wait([message.pk], 60)
    message.refresh_from_db()
    waited = (message.sent_at - message.created_at).total_seconds()
    queued = Message.objects.filter(pk__in=ids, status="queued").count()
    _wait(ids)
    return {"waited": waited, "bulk_still_queued": queued}


def report(count: int, baseline: float, throughput: dict, fairness: dict) -> str:
    ratio = throughput["per_second"] / baseline
    return "\n".join(
        [
            "\nsandbox on gunicorn (2 × 4 threads) + PostgreSQL + Redis; one Celery worker -c 2; "
            "account limit 1,000/s\n",
            "| measurement | result |",
            "|---|---|",
            f"| baseline: one client POSTing to the sandbox | {baseline:.0f} msg/s |",
            f"| {throughput['count']} messages in one bulk request, queued | in {throughput['queued_in']:.1f} s |",
            f"| … all accepted by Wavix | {throughput['seconds']:.1f} s: {throughput['per_second']:.0f} msg/s "
            f"({ratio:.0%} of the baseline) |",
            f"| a single message of another tenant, sent beside a 1,000-recipient bulk | left after "
            f"{fairness['waited']:.2f} s, {fairness['bulk_still_queued']} of the bulk still queued |",
        ]
    )


if __name__ == "__main__":
    main()
