"""Outbound sending: messages/s to the Wavix sandbox with the rate limiter open, and fairness beside a bulk batch.

Serves the sandbox from gunicorn (2 workers × 4 threads) on PostgreSQL + Redis and runs one Celery worker
(prefork -c 2) on the outbound queue only: the sandbox's delivery reports for these messages are queued but
not sent back (bench/relay.py measures delivery reports), so the figure is the sending path's alone. Each measurement
runs twice: with the drain keeping one call to Wavix in flight (as it did before) and with
OUTBOUND_SENDS_IN_FLIGHT; and twice again with the sandbox answering every call --delay-ms late, as Wavix
does across the internet (on loopback a call takes ~10 ms; to Wavix, a round trip is more like 100 ms). In
the same run:
  - ceiling: the sandbox's own POST /v3/messages rate from as many clients at once as the drain keeps calls
    in flight;
  - N messages of one tenant queued in one bulk request, then the time until all are accepted by Wavix;
  - fairness: a 1,000-recipient bulk of tenant A, then one message of tenant B: how long B waited, and how
    many of A's were still queued when B went out;
  - 3CX → portal → Wavix: N texts POSTed to a trunk's provider URL by 4 clients (as 3CX's users would), from the
    first POST until Wavix accepted all, beside the same ceiling; the provider endpoint's own rate (no worker
    running) beside a bare request (/healthz) from as many clients, and its latency paced at half that rate.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python bench/outbound.py [--messages 1000] [--far-messages 300] [--delay-ms 100]
"""

import argparse
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PORT = 8767


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000, help="per run with Wavix on loopback")
    parser.add_argument("--far-messages", type=int, default=300, help="per run with Wavix --delay-ms away")
    parser.add_argument("--delay-ms", type=int, default=100, help="Wavix's answer delay in the far runs")
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
    from django.conf import settings

    from bench.numbers_sync import gunicorn

    in_flight = settings.OUTBOUND_SENDS_IN_FLIGHT
    runs = []
    with gunicorn("portal.wsgi --workers 2 --threads 4", PORT):
        world = prepare()
        for delay_ms, count in ((0, args.messages), (args.delay_ms, args.far_messages)):
            set_answer_delay(world, delay_ms)
            ceiling = {n: sandbox_rate(world["key"], max(100, count // 3), clients=n) for n in {1, in_flight}}
            for sends in (1, in_flight):
                with worker(sends):
                    throughput = bulk_throughput(world, count)
                    fairness = bulk_beside_single(world) if delay_ms == 0 and sends == in_flight else None
                runs.append({"delay_ms": delay_ms, "sends": sends, "ceiling": ceiling[sends], **throughput})
                if fairness:
                    runs[-1]["fairness"] = fairness
        set_answer_delay(world, 0)
        threecx = prepare_3cx(world)
        ceiling_3cx = sandbox_rate(world["key"], max(100, args.messages // 3), clients=in_flight)
        with worker(in_flight):
            through = threecx_through(threecx, args.messages)
        endpoint = provider_endpoint(threecx, args.messages)
        purge_sandbox_reports()
    print(report(runs))
    print(report_3cx(through, ceiling_3cx, in_flight, endpoint))


def set_answer_delay(world: dict, delay_ms: int) -> None:
    from sandbox.models import SandboxAccount

    SandboxAccount.objects.filter(api_key=world["key"]).update(answer_delay_ms=delay_ms)


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


def sandbox_rate(key: str, count: int, clients: int) -> float:
    """POST /v3/messages straight to the sandbox from `clients` clients at once: the most a sender gets from it."""
    import httpx

    body = {
        "from": "14154440000",
        "to": "14155559999",
        "message_body": {"text": "baseline", "media": None},
        "callback_url": f"http://127.0.0.1:{PORT}/nowhere/",
        "tag": "baseline",
    }

    def post(times: int) -> None:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{PORT}/sandbox/wavix", headers={"Authorization": f"Bearer {key}"}
        ) as client:
            for _ in range(times):
                answer = client.post("/v3/messages", json=body)
                if not answer.is_success:
                    sys.exit(f"the sandbox refused the baseline request: {answer.text}")

    post(20)  # warm up
    threads = [threading.Thread(target=post, args=(count // clients,)) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return clients * (count // clients) / (time.perf_counter() - started)


def purge_sandbox_reports() -> None:
    """Drop the sandbox's delivery-report tasks this run queued (no worker consumed their queue)."""
    from portal.celery import app

    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("sync")
        connection.default_channel.queue_purge("outbound")  # drains asked while no worker ran (provider_endpoint)


@contextmanager
def worker(sends_in_flight: int):
    """One Celery worker (prefork -c 2) on the outbound queue, each drain keeping this many calls in flight."""
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "--queues", "outbound"]
        + ["--concurrency", "2", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
        cwd=ROOT,
        env={**os.environ, "OUTBOUND_SENDS_IN_FLIGHT": str(sends_in_flight)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    threading.Thread(target=lambda: process.stdout.read(), daemon=True).start()
    time.sleep(4)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(30)


def _went_out(ids) -> int:
    from messaging.models import Message

    return Message.objects.filter(pk__in=ids).exclude(wavix_message_id="").count()


def _wait(ids, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while _went_out(ids) < len(ids):
        if time.monotonic() > deadline:
            sys.exit(f"only {_went_out(ids)} of {len(ids)} went out in {timeout:.0f} s")
        time.sleep(0.2)


def recipients(prefix: str, count: int) -> list[str]:
    """`count` numbers, none of them one the sandbox treats specially (answered after 20 s, or undelivered)."""
    from sandbox.api import SLOW_SUFFIX, UNDELIVERED_SUFFIX

    numbers = (f"{prefix}{n:04d}" for n in range(10_000))
    return [number for number in numbers if not number.endswith((SLOW_SUFFIX, UNDELIVERED_SUFFIX))][:count]


def bulk_throughput(world: dict, count: int) -> dict:
    from messaging.services import outbound

    sender = world["bulk"]
    started = time.perf_counter()
    results = outbound.message_send_bulk(
        tenant=sender.tenant, sender=sender, recipients=recipients("+1415556", count), text="Sale!"
    )
    queued_in = time.perf_counter() - started
    ids = [r["id"] for r in results if "id" in r]
    _wait(ids)
    sending = time.perf_counter() - started - queued_in  # the drain starts once the request has queued them all
    return {"count": len(ids), "queued_in": queued_in, "seconds": sending, "per_second": len(ids) / sending}


def bulk_beside_single(world: dict) -> dict:
    from messaging.models import Message
    from messaging.services import outbound

    bulk, single = world["bulk"], world["single"]
    results = outbound.message_send_bulk(
        tenant=bulk.tenant, sender=bulk, recipients=recipients("+1415557", 1000), text="Sale!"
    )
    ids = [r["id"] for r in results if "id" in r]
    while _went_out(ids) < 20:
        time.sleep(0.05)
    message = outbound.message_send(tenant=single.tenant, sender=single, to="+14155559876", text="Test")
    _wait([message.pk], 60)
    message.refresh_from_db()
    waited = (message.sent_at - message.created_at).total_seconds()
    queued = Message.objects.filter(pk__in=ids, status="queued").count()
    _wait(ids)
    return {"waited": waited, "bulk_still_queued": queued}


# ---------------------------------------------------------------------------------------------------------------
# 3CX → portal → Wavix
# ---------------------------------------------------------------------------------------------------------------

CLIENTS_3CX = 4  # 3CX's users typing at once


def prepare_3cx(world: dict) -> dict:
    """A third tenant whose 3CX sends through the portal: a Generic-template trunk, its number, a fresh key."""
    from messaging.models import PhoneNumber, SenderID, SenderIDCountry, Trunk
    from messaging.services import provider
    from tenants.models import Tenant

    account = world["bulk"].account
    tenant, _ = Tenant.objects.get_or_create(
        reseller=account.reseller, slug="bench-3cx", defaults={"name": "3CX tenant"}
    )
    trunk, _ = Trunk.objects.get_or_create(
        tenant=tenant, name="bench", defaults={"pbx_fqdn": "bench.3cx.example", "sms_template": "generic"}
    )
    number = "+14154440002"
    from sandbox.models import SandboxAccount, SandboxNumber

    SandboxNumber.objects.get_or_create(
        account=SandboxAccount.objects.get(api_key=world["key"]), number=number[1:], defaults={"country": "US"}
    )
    phone, _ = PhoneNumber.objects.get_or_create(
        account=account, number=number, defaults={"tenant": tenant, "sms_enabled": True, "wavix_id": "0002"}
    )
    PhoneNumber.objects.filter(pk=phone.pk).update(tenant=tenant, trunk=trunk)
    sender, _ = SenderID.objects.get_or_create(
        tenant=tenant, value=number, defaults={"account": account, "type": "numeric", "phone_number": phone}
    )
    SenderIDCountry.objects.get_or_create(
        tenant=tenant, sender=sender, country="US", defaults={"status": "allowlisted"}
    )
    Trunk.objects.filter(pk=trunk.pk).update(main_sender=sender)
    trunk.refresh_from_db()
    return {"trunk": trunk, "key": provider.provider_key_issue(actor=None, trunk=trunk), "from": number}


def post_3cx(world: dict, destinations: list[str], clients: int, pace_per_second: float | None = None) -> dict:
    """POST a text to each destination through the provider URL from `clients` clients at once, optionally paced
    (each client at pace / clients a second, on a schedule); returns the rate, the latencies and the message ids."""
    import httpx

    latencies: list[float] = []
    ids: list[int] = []
    lock = threading.Lock()

    def client_run(share: list[str]) -> None:
        interval = clients / pace_per_second if pace_per_second else 0.0
        with httpx.Client(headers={"Authorization": f"Bearer {world['key']}"}, timeout=30) as client:
            started = time.perf_counter()
            for n, to in enumerate(share):
                if interval:
                    time.sleep(max(0.0, started + n * interval - time.perf_counter()))
                sent = time.perf_counter()
                answer = client.post(world["trunk"].provider_url, json={"from": world["from"], "to": to, "text": "Hi"})
                took = time.perf_counter() - sent
                if answer.status_code != 200:
                    sys.exit(f"the provider endpoint refused a text: {answer.status_code} {answer.text}")
                with lock:
                    latencies.append(took)
                    ids.append(int(answer.json()["data"]["id"]))

    shares = [destinations[n::clients] for n in range(clients)]
    threads = [threading.Thread(target=client_run, args=(share,)) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return {"count": len(ids), "seconds": seconds, "per_second": len(ids) / seconds, "latencies": latencies, "ids": ids}


def threecx_through(world: dict, count: int) -> dict:
    """From the first POST of 3CX's texts until Wavix accepted every one (a worker sending meanwhile)."""
    started = time.perf_counter()
    posted = post_3cx(world, recipients("+1415558", count), CLIENTS_3CX)
    _wait(posted["ids"])
    seconds = time.perf_counter() - started
    return {"count": posted["count"], "seconds": seconds, "per_second": posted["count"] / seconds}


def bare_rate(count: int, clients: int) -> float:
    """GET /healthz from `clients` clients at once: what the web tier answers when a request does no work."""
    import httpx

    def run(times: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{PORT}") as client:
            for _ in range(times):
                client.get("/healthz")

    threads = [threading.Thread(target=run, args=(count // clients,)) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return clients * (count // clients) / (time.perf_counter() - started)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def provider_endpoint(world: dict, count: int) -> dict:
    """The provider endpoint alone (no worker: texts are stored and queued, not sent): its fastest rate beside a
    bare request's, then its latency with 3CX's POSTs paced at half that rate for as many texts."""
    from messaging.models import Message

    Message.objects.filter(trunk=world["trunk"]).delete()
    fastest = post_3cx(world, recipients("+1415559", count), CLIENTS_3CX)
    bare = bare_rate(count, CLIENTS_3CX)
    Message.objects.filter(trunk=world["trunk"]).delete()
    half = fastest["per_second"] / 2
    paced = post_3cx(world, recipients("+1415559", count), CLIENTS_3CX, pace_per_second=half)
    Message.objects.filter(trunk=world["trunk"]).delete()
    return {
        "fastest": fastest["per_second"],
        "bare": bare,
        "paced_rate": paced["per_second"],
        "p50": _percentile(paced["latencies"], 0.50),
        "p99": _percentile(paced["latencies"], 0.99),
        "max": max(paced["latencies"]),
        "count": paced["count"],
    }


def report_3cx(through: dict, ceiling: float, in_flight: int, endpoint: dict) -> str:
    return "\n".join(
        [
            f"\n3CX → portal → Wavix: {through['count']} texts POSTed to the provider URL by {CLIENTS_3CX} clients, "
            f"a worker -c 2 sending ({in_flight} calls in flight), Wavix on loopback\n",
            "| path | texts | first POST → all accepted by Wavix | msg/s | ceiling msg/s | of the ceiling |",
            "|---|---|---|---|---|---|",
            f"| 3CX → portal → Wavix | {through['count']} | {through['seconds']:.1f} s | {through['per_second']:.0f} "
            f"| {ceiling:.0f} | {through['per_second'] / ceiling:.0%} |",
            f"\nThe provider endpoint alone ({CLIENTS_3CX} clients): {endpoint['fastest']:.0f} texts/s stored and "
            f"queued, beside {endpoint['bare']:.0f} req/s for a bare request "
            f"({endpoint['fastest'] / endpoint['bare']:.0%}). Paced at half its rate "
            f"({endpoint['paced_rate']:.0f}/s, {endpoint['count']} texts): p50 {endpoint['p50'] * 1000:.1f} ms, "
            f"p99 {endpoint['p99'] * 1000:.1f} ms, max {endpoint['max'] * 1000:.1f} ms.",
        ]
    )


def report(runs: list[dict]) -> str:
    lines = [
        "\nsandbox on gunicorn (2 × 4 threads) + PostgreSQL + Redis; one Celery worker -c 2 on the outbound queue; "
        "account limit 1,000/s (open); the ceiling is as many clients POSTing straight to the sandbox at once as "
        "the drain keeps calls in flight\n",
        "| Wavix answers after | calls in flight per drain | messages | queued in | then all accepted in | msg/s "
        "| ceiling msg/s | of the ceiling |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run['delay_ms']} ms | {run['sends']} | {run['count']} | {run['queued_in']:.1f} s "
            f"| {run['seconds']:.1f} s | {run['per_second']:.0f} | {run['ceiling']:.0f} "
            f"| {run['per_second'] / run['ceiling']:.0%} |"
        )
    for run in runs:
        if fairness := run.get("fairness"):
            lines.append(
                f"\nA single message of another tenant beside a 1,000-recipient bulk ({run['sends']} in flight): left "
                f"after {fairness['waited']:.2f} s, {fairness['bulk_still_queued']} of the bulk still queued."
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
