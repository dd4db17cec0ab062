"""End-to-end relay: webhooks until each inbound text reached a fake 3CX and each delivery report was applied,
messages/s and p50/p99 latency beside same-run ceilings; peak RSS of every gunicorn and Celery process.

Real processes, with production settings (DEBUG off): gunicorn serving the portal as in the Procfile (2 workers ×
4 threads; the app is bench/ceiling_app.py, i.e. the portal's URLs plus the bench-only INSERT view) and two
`celery worker` processes, each prefork -c 1 on every queue (settings.WORKER_QUEUES), on PostgreSQL and Redis. No
beat: nothing here waits for the sweeper, so a lost wake-up shows as a stall. The fake 3CX is a threaded HTTP
server in this process on 127.0.0.1 (the trunks' URLs pass the SSRF guard through
THREECX_ALLOW_PRIVATE_ADDRESSES and SANDBOX_ENABLED, which also allows its plain http); it answers 200 and notes
when each text first arrived. The bench client (C keep-alive connections) shares the 2 cores with all of it.

  - ceilings, same run, same C connections, same bodies: the client POSTing straight to the fake 3CX (the last
    hop alone), and to the same gunicorn's bare view that INSERTs the body as one row (the first hop alone: a
    relay can never take webhooks in faster than it can receive and store them);
  - inbound, burst: N webhooks as fast as C connections go (round-robin over --conversations conversations of
    4 tenants) until all N reached 3CX; latency = from when the client began sending the webhook's POST to
    when the fake 3CX received the forward; then paced (open loop) at --paced × the burst's rate for
    --paced-seconds, latency counted from when each webhook was due;
  - delivery reports, the same on N outbound messages in status `sent`: latency = from when the client began
    sending the report to the first poll (every 20 ms) that saw the message `delivered` in the database.
    Reports are applied by the routing drain and are not forwarded to 3CX (the table says how many were);
  - peak RSS (VmHWM, reset through /proc/<pid>/clear_refs before each load) of each gunicorn worker and each
    Celery process, main and pool child.

--threecx-delay-ms D makes the fake 3CX answer every POST (its ceiling's too) D ms after it arrived, as a PBX
across the internet would; --in-flight K sets RELAY_FORWARDS_IN_FLIGHT for the workers (K = 1: one POST at a
time per drain, as before 2026-12-01).

The benchmark owns the database `portal_bench_relay` (emptied of messages, deliveries and webhooks each run) and
Redis database 13 (flushed):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/13 \\
        .venv/bin/python bench/relay.py [--messages 1000] [--clients 8] [--conversations 100] \\
        [--threecx-delay-ms 0] [--in-flight 4] [--workers 1,2,4]

--workers 1,2,4 measures scale-out instead: only the inbound burst, once per worker-process count (workers started
afresh each time), beside the same run's bare-INSERT ceiling.
"""

import argparse
import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, deque
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.intake import summary  # noqa: E402
from bench.worker_db_reuse import ensure_database  # noqa: E402

DATABASE = "portal_bench_relay"
REDIS_DB = 13
RESELLER_SLUG = "bench-relay"
TENANTS = 4
WORKERS = 2
WEB = "bench.ceiling_app:application --workers 2 --threads 4 --access-logfile -"
POLL_SECONDS = 0.02
STALL_SECONDS = 60


# --------------------------------------------------------------------------------------------------------------
# Environment and processes
# --------------------------------------------------------------------------------------------------------------


def configure_environment(port: int) -> None:
    """Production settings (DEBUG off) for this process and every process it starts; our database and Redis DB."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL server: this benchmark measures PostgreSQL and Redis.")
    redis = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379"
    os.environ.pop("CELERY_BROKER_URL", None)  # the broker is REDIS_URL's database, which this run flushes
    os.environ.update(
        DATABASE_URL=urlunsplit(urlsplit(url)._replace(path=f"/{DATABASE}")),
        REDIS_URL=urlunsplit(urlsplit(redis)._replace(path=f"/{REDIS_DB}")),
        DJANGO_SETTINGS_MODULE="portal.settings",
        DB_APPLICATION_NAME="bench-relay",
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        DEBUG="false",
        SECRET_KEY="bench-relay-only-not-a-secret-" + "x" * 32,
        ALLOWED_HOSTS="127.0.0.1",
        FIELD_ENCRYPTION_KEYS="ZGV2LW9ubHktZmllbGQta2V5LWRvLW5vdC11c2UtISE=",  # settings' development key
        EMAIL_HOST="127.0.0.1",  # required with DEBUG off; nothing here sends mail
        SECURE_SSL_REDIRECT="false",  # plain http on 127.0.0.1, no TLS proxy in front
        SANDBOX_ENABLED="true",  # allows the fake 3CX's plain http URL (nothing of the sandbox is used)
        THREECX_ALLOW_PRIVATE_ADDRESSES="true",  # the fake 3CX listens on loopback
        DEMO_ENABLED="false",
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Worker:
    name: str
    popen: subprocess.Popen
    output: deque = field(default_factory=lambda: deque(maxlen=200))
    ready: threading.Event = field(default_factory=threading.Event)

    def tail(self) -> str:
        return "".join(list(self.output)[-30:])


def _read_output(worker: Worker) -> None:
    for line in worker.popen.stdout:
        worker.output.append(line)
        if " ready." in line:
            worker.ready.set()
    worker.ready.set()  # it ended: whoever waits looks at poll()


@contextmanager
def celery_workers(count: int):
    """`count` separate `celery worker` processes (prefork -c 1, every queue), each in its own process group,
    stopped (TERM, then KILL after 30 s) when the block ends, however it ends."""
    from django.conf import settings

    workers: list[Worker] = []
    try:
        for n in range(1, count + 1):
            popen = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "portal", "worker", "-n", f"bench-relay-{n}@%h"]
                + ["--queues", ",".join(settings.WORKER_QUEUES), "--concurrency", "1"]
                + ["--without-mingle", "--without-gossip", "--loglevel", "INFO"],
                cwd=ROOT,
                env={**os.environ, "DB_APPLICATION_NAME": f"bench-relay-worker-{n}"},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # Ctrl-C reaches only this script, which stops the group itself
            )
            worker = Worker(f"celery worker {n}", popen)
            workers.append(worker)
            threading.Thread(target=_read_output, args=(worker,), daemon=True).start()
        for worker in workers:
            if not worker.ready.wait(90) or worker.popen.poll() is not None:
                sys.exit(f"{worker.name} did not start:\n{worker.tail()}")
        yield workers
    finally:
        for worker in workers:
            _signal_group(worker.popen, signal.SIGTERM)
        for worker in workers:
            try:
                worker.popen.wait(30)
            except subprocess.TimeoutExpired:
                _signal_group(worker.popen, signal.SIGKILL)
                worker.popen.wait(10)


def _signal_group(popen: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(popen.pid, sig)
    except ProcessLookupError:
        pass


def _stop_on_sigterm(*_) -> None:
    raise KeyboardInterrupt  # unwinds through every `finally`: the processes started here are stopped


# --------------------------------------------------------------------------------------------------------------
# The fake 3CX
# --------------------------------------------------------------------------------------------------------------

ANSWER = b'{"status":"ok"}'


class FakeThreeCX:
    """3CX's webhook endpoint as cheap as it gets: answers 200 and, under /3cx/, notes when each text
    (X-Wavix-Message-Id) first arrived, by this process's perf_counter(); a repeat is counted, not noted again."""

    def __init__(self, delay_seconds: float = 0.0):
        self.arrived: dict[str, float] = {}
        self.posts = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the worker's pooled session expects
            # Headers and body leave in two writes: with Nagle's algorithm on, the body would wait for the
            # client's delayed ACK (~40 ms a request, measured), which no real 3CX costs.
            disable_nagle_algorithm = True

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.perf_counter()
                if self.path.startswith("/3cx/"):  # a forward (the ceiling's own POSTs go elsewhere)
                    key = self.headers.get("X-Wavix-Message-Id", "")
                    with fake.lock:
                        fake.posts += 1
                        fake.arrived.setdefault(key, now)
                if delay_seconds:
                    time.sleep(delay_seconds)  # the answer's round trip from a PBX far away
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(ANSWER)))
                self.end_headers()
                self.wfile.write(ANSWER)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def arrived_of(self, keys) -> dict[str, float]:
        with self.lock:
            return {key: self.arrived[key] for key in keys if key in self.arrived}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------------------------------------------
# The data
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One tenant: its Wavix account's webhook paths at the portal, its number, its trunk's 3CX path."""

    tenant_id: int
    account_id: int
    number: str
    inbound_path: str
    dlr_path: str


def wipe() -> None:
    """Empty what the runs fill (the database and Redis DB 13 belong to this benchmark): same table sizes each run."""
    from django.core.cache import cache
    from django.db import connection

    from messaging.models import Delivery, Message, WebhookEvent

    cache.clear()  # Redis DB 13: queues, drain flags, counters
    tables = ", ".join(model._meta.db_table for model in (Delivery, Message, WebhookEvent))
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables} CASCADE")


def prepare(fake: FakeThreeCX, tenants: int = TENANTS) -> list[Line]:
    """A reseller with `tenants` tenants, each with its own Wavix account, a number and a trunk with SMS on whose 3CX
    is the fake one; an empty ceiling table. Idempotent: a later run reuses the rows and points the trunks anew."""
    from django.db import connection

    from messaging.models import PhoneNumber, Trunk, WavixAccount
    from tenants.models import Reseller, Tenant

    reseller, _ = Reseller.objects.get_or_create(slug=RESELLER_SLUG, defaults={"name": "Bench relay"})
    lines = []
    for n in range(tenants):
        tenant, _ = Tenant.objects.get_or_create(
            reseller=reseller, slug=f"{RESELLER_SLUG}-{n}", defaults={"name": f"Bench relay {n}"}
        )
        account = WavixAccount.objects.filter(reseller=reseller, name=f"{RESELLER_SLUG}-{n}").first()
        if account is None:
            account = WavixAccount(reseller=reseller, tenant=tenant, name=f"{RESELLER_SLUG}-{n}")
            account.set_api_key("bench-key-not-used")
            account.save()
        trunk, _ = Trunk.objects.get_or_create(
            tenant=tenant, name=RESELLER_SLUG, defaults={"pbx_fqdn": f"pbx{n}.bench.example"}
        )
        trunk.sms_enabled = True
        trunk.set_threecx_webhook_url(fake.url(f"/3cx/{n}/"))
        trunk.save()
        number = f"+1415555{2000 + n:04d}"
        PhoneNumber.objects.update_or_create(
            account=account,
            number=number,
            defaults={"tenant": tenant, "trunk": trunk, "country": "US", "sms_enabled": True, "wavix_id": str(n)},
        )
        lines.append(
            Line(
                tenant.pk,
                account.pk,
                number,
                urlsplit(account.inbound_webhook_url).path,
                urlsplit(account.dlr_webhook_url).path,
            )
        )
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_ceiling")
        cursor.execute("CREATE TABLE bench_ceiling (id bigserial PRIMARY KEY, body bytea NOT NULL)")
    return lines


@dataclass(frozen=True)
class Item:
    path: str
    body: bytes
    key: str  # the Wavix message id


def inbound_items(lines: list[Line], count: int, conversations: int) -> list[Item]:
    """`count` inbound texts, round-robin over `conversations` remote numbers spread over the tenants."""
    items = []
    for n in range(count):
        conversation = n % conversations
        line = lines[conversation % len(lines)]
        message_id = str(uuid.uuid4())
        body = {
            "message_id": message_id,
            "from": f"44770090{conversation:04d}",
            "to": line.number.lstrip("+"),
            "message_body": {"text": f"Is tomorrow at 10 still OK? #{n}", "media": None},
            "received_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        }
        items.append(Item(line.inbound_path, json.dumps(body).encode(), message_id))
    return items


def outbound_messages(lines: list[Line], count: int) -> dict[str, int]:
    """`count` outbound messages in status `sent` (Wavix has them; a report is due), spread over the tenants.
    Returns their Wavix message ids → primary keys."""
    from django.utils import timezone

    from messaging.models import Message

    now = timezone.now()
    rows = []
    for n in range(count):
        line = lines[n % len(lines)]
        rows.append(
            Message(
                tenant_id=line.tenant_id,
                account_id=line.account_id,
                direction=Message.Direction.OUTBOUND,
                from_number=line.number,
                to_number=f"+1415556{n % 10000:04d}",
                text="Your order has shipped",
                status=Message.Status.SENT,
                wavix_message_id=str(uuid.uuid4()),
                sent_at=now,
            )
        )
    Message.objects.bulk_create(rows, batch_size=1000)
    return {row.wavix_message_id: row.pk for row in rows}


def report_items(lines: list[Line], message_ids: dict[str, int]) -> list[Item]:
    """A `delivered` report for each message, as Wavix (and the sandbox) POST them."""
    by_account = {line.account_id: line for line in lines}
    from messaging.models import Message

    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    items = []
    for message in (
        Message.objects.filter(pk__in=message_ids.values()).order_by("pk").only("account_id", "wavix_message_id")
    ):
        body = {
            "message_id": message.wavix_message_id,
            "message_type": "sms",
            "from": by_account[message.account_id].number.lstrip("+"),
            "to": "14155560000",
            "status": "delivered",
            "sent": stamp,
            "delivered": stamp,
            "segments_count": 1,
            "charge": "0.0075",
            "carrier_fees": "0.0",
            "tag": None,
            "error": None,
        }
        items.append(Item(by_account[message.account_id].dlr_path, json.dumps(body).encode(), message.wavix_message_id))
    return items


# --------------------------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Sending:
    sent: dict[str, float] = field(default_factory=dict)  # key → when its POST began (paced: when it was due)
    round_trips: list[float] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)  # status (0: no answer) → count, for non-200 answers
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def started(self) -> float:
        return min(self.sent.values())

    @property
    def finished(self) -> float:
        return max(self.answered_at)


def _post(conn: http.client.HTTPConnection, item: Item) -> int:
    try:
        conn.request(
            "POST",
            item.path,
            body=item.body,
            headers={"Content-Type": "application/json", "X-Wavix-Message-Id": item.key},
        )
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        conn.close()  # reconnects on the next request
        return 0


def _record(sending: Sending, item: Item, began: float, status: int) -> None:
    answered = time.perf_counter()
    with sending.lock:
        if status == 200:
            sending.sent[item.key] = began
            sending.round_trips.append(answered - began)
            sending.answered_at.append(answered)
        else:
            sending.errors[status] += 1


def _run_clients(target, clients: int) -> None:
    threads = [threading.Thread(target=target, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def post_all(port: int, items: list[Item], clients: int) -> Sending:
    """POST every item, in order, as fast as `clients` keep-alive connections go (closed loop)."""
    sending, turn = Sending(), itertools.count()

    def client(_):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while (n := next(turn)) < len(items):
            began = time.perf_counter()
            _record(sending, items[n], began, _post(conn, items[n]))
        conn.close()

    _run_clients(client, clients)
    return sending


def post_paced(port: int, items: list[Item], clients: int, rate: float) -> Sending:
    """One item due every 1/rate s, spread over the clients (open loop); each counts from when it was due, so a
    stall of the server is not hidden by the client waiting for it."""
    sending, start = Sending(), time.perf_counter() + 0.2

    def client(offset):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for slot in range(offset, len(items), clients):
            due = start + slot / rate
            if (wait := due - time.perf_counter()) > 0:
                time.sleep(wait)
            _record(sending, items[slot], due, _post(conn, items[slot]))
        conn.close()

    _run_clients(client, clients)
    return sending


# --------------------------------------------------------------------------------------------------------------
# Waiting for the relay
# --------------------------------------------------------------------------------------------------------------


class StatusWatcher(threading.Thread):
    """Polls the database every POLL_SECONDS for messages that reached `status`; notes when each was first seen
    (the time the poll began: the change had committed by then)."""

    def __init__(self, ids: dict[str, int], status: str):
        super().__init__(daemon=True)
        self.key_of = {pk: key for key, pk in ids.items()}
        self.pending = set(self.key_of)
        self.status = status
        self.seen: dict[str, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        from django.db import connection

        from messaging.models import Message

        try:
            while self.pending and not self.done.is_set():
                began = time.perf_counter()
                # The range of the ids still pending, not a list of them: a 2,000-id IN list, built and sent 50
                # times a second, cost this process and PostgreSQL more CPU than the relay's own work per report.
                found = Message.objects.filter(
                    pk__gte=min(self.pending), pk__lte=max(self.pending), status=self.status
                ).values_list("pk", flat=True)
                for pk in set(found) & self.pending:
                    self.seen[self.key_of[pk]] = began
                    self.pending.discard(pk)
                time.sleep(POLL_SECONDS)
        finally:
            connection.close()

    def stop(self) -> None:
        self.done.set()
        self.join(10)


def wait_until(progress, total: int, what: str, workers: list[Worker], stall: float = STALL_SECONDS) -> None:
    """Wait while `progress()` grows towards `total`; give up after `stall` s without progress or a dead worker."""
    last, since = -1, time.monotonic()
    while (now := progress()) < total:
        if now != last:
            last, since = now, time.monotonic()
        dead = [worker for worker in workers if worker.popen.poll() is not None]
        if dead or time.monotonic() - since > stall:
            raise SystemExit(
                f"{what}: {now} of {total} after {stall:.0f} s without progress{' (a worker died)' if dead else ''}\n"
                + relay_state()
                + "".join(f"\n--- {worker.name}:\n{worker.tail()}" for worker in workers)
            )
        time.sleep(0.05)


def relay_state() -> str:
    from messaging.models import Delivery, WebhookEvent

    events = Counter(WebhookEvent.objects.values_list("kind", "state"))
    deliveries = Counter(Delivery.objects.values_list("status", flat=True))
    return f"webhook events (kind, state): {dict(events)}; deliveries: {dict(deliveries)}"


def _result(name: str, sending: Sending, arrived: dict[str, float]) -> dict:
    latencies = [arrived[key] - began for key, began in sending.sent.items()]
    elapsed = max(arrived.values()) - sending.started
    errors = sum(sending.errors.values())
    return {
        "name": name,
        "end_to_end": summary(latencies, errors, elapsed),
        "intake": summary(sending.round_trips, errors, sending.finished - sending.started),
    }


def relay_inbound(port, fake, workers, items: list[Item], clients: int, rate: float | None, name: str) -> dict:
    """Send the webhooks (burst, or paced at `rate`) and wait until every accepted one reached the fake 3CX."""
    sending = post_all(port, items, clients) if rate is None else post_paced(port, items, clients, rate)
    keys = list(sending.sent)
    wait_until(lambda: len(fake.arrived_of(keys)), len(keys), name, workers)
    arrived = fake.arrived_of(keys)
    return _result(name, sending, arrived) | {"timeline": timeline(sending, keys, arrived)}


def timeline(sending: Sending, keys: list[str], arrived: dict[str, float]) -> dict:
    """When, from the first webhook sent, the last was answered, the first and last were routed (the workers'
    processed_at, read on the same clock), and the first and last forward reached 3CX: seconds."""
    from django.db.models import Max, Min

    from messaging.models import WebhookEvent

    wall_minus_perf = time.time() - time.perf_counter()
    routed = WebhookEvent.objects.filter(kind="inbound", dedup_key__in=keys).aggregate(
        first=Min("processed_at"), last=Max("processed_at")
    )
    start = sending.started
    return {
        "answered": sending.finished - start,
        "first_routed": routed["first"].timestamp() - wall_minus_perf - start,
        "last_routed": routed["last"].timestamp() - wall_minus_perf - start,
        "first_forward": min(arrived.values()) - start,
        "last_forward": max(arrived.values()) - start,
    }


def relay_reports(port, workers, items: list[Item], ids, clients: int, rate: float | None, name: str) -> dict:
    """Send the delivery reports and wait until every message they name is `delivered` in the database."""
    watcher = StatusWatcher(ids, "delivered")
    watcher.start()
    try:
        sending = post_all(port, items, clients) if rate is None else post_paced(port, items, clients, rate)
        wait_until(lambda: len(watcher.seen), len(sending.sent), name, workers)
    finally:
        watcher.stop()
    return _result(name, sending, watcher.seen)


def ceiling(port: int, items: list[Item], clients: int, name: str) -> dict:
    post_all(port, items[: min(100, len(items))], clients)  # warm up: connections, caches, plans
    sending = post_all(port, items, clients)
    errors = sum(sending.errors.values())
    return {"name": name, "intake": summary(sending.round_trips, errors, sending.finished - sending.started)}


# --------------------------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def peak_rss_kib(pid: int) -> int | None:
    """VmHWM: the most resident memory the process has had (since it started, or since reset_peak)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak(pid: int) -> bool:
    """Start VmHWM again from the current RSS (Linux ≥ 4.0: `echo 5 > /proc/<pid>/clear_refs`)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def tracked_processes(web_pid: int, workers: list[Worker]) -> list[tuple[str, int]]:
    """Each gunicorn worker, and each Celery worker's main process and pool child."""
    found = [(f"gunicorn worker {n}", pid) for n, pid in enumerate(children(web_pid), 1)]
    for worker in workers:
        found.append((f"{worker.name}: main process", worker.popen.pid))
        found += [(f"{worker.name}: pool process", pid) for pid in children(worker.popen.pid)]
    return found


# --------------------------------------------------------------------------------------------------------------
# The run and the report
# --------------------------------------------------------------------------------------------------------------


def run(args, port: int, fake: FakeThreeCX, lines: list[Line], web_pid: int, workers: list[Worker]) -> dict:
    # Warm up the whole path once: workers' connections and sessions, gunicorn's, the query plans.
    relay_inbound(port, fake, workers, inbound_items(lines, 20, 20), args.clients, None, "warm-up (inbound)")
    warm = outbound_messages(lines, 20)
    relay_reports(port, workers, report_items(lines, warm), warm, args.clients, None, "warm-up (reports)")

    ceiling_items = inbound_items(lines, args.messages, args.conversations)
    results: dict = {"ceilings": []}
    results["ceilings"].append(
        ceiling(fake.port, [Item("/ceiling/", i.body, i.key) for i in ceiling_items], args.clients, "to_3cx")
    )
    results["ceilings"].append(
        ceiling(port, [Item("/bench/insert/", i.body, i.key) for i in ceiling_items], args.clients, "insert")
    )

    processes = tracked_processes(web_pid, workers)
    results["peaks_reset"] = all([reset_peak(pid) for _, pid in processes])
    burst = relay_inbound(
        port, fake, workers, inbound_items(lines, args.messages, args.conversations), args.clients, None, "inbound"
    )
    rate = burst["end_to_end"]["per_second"] * args.paced
    count = max(20, min(args.messages, int(rate * args.paced_seconds)))
    paced = relay_inbound(
        port, fake, workers, inbound_items(lines, count, args.conversations), args.clients, rate, "inbound paced"
    )
    results["inbound"] = [burst, paced | {"rate": rate}]
    results["rss_inbound"] = {label: peak_rss_kib(pid) for label, pid in processes}

    for _, pid in processes:
        reset_peak(pid)
    posts_before = fake.posts
    ids = outbound_messages(lines, args.messages)
    burst = relay_reports(port, workers, report_items(lines, ids), ids, args.clients, None, "reports")
    rate = burst["end_to_end"]["per_second"] * args.paced
    ids = outbound_messages(lines, max(20, min(args.messages, int(rate * args.paced_seconds))))
    paced = relay_reports(port, workers, report_items(lines, ids), ids, args.clients, rate, "reports paced")
    results["reports"] = [burst, paced | {"rate": rate}]
    results["rss_reports"] = {label: peak_rss_kib(pid) for label, pid in processes}
    results["forwarded_reports"] = fake.posts - posts_before
    results["inbound_repeats"] = posts_before - len(fake.arrived)  # at-least-once: a text POSTed twice
    return results


def scale_out(args, port: int, fake: FakeThreeCX, lines: list[Line], counts: list[int]) -> dict:
    """The inbound burst with 1, 2, 4… worker processes: texts/s per count, each count on workers started afresh
    (and warmed up), beside the same run's bare-INSERT ceiling."""
    ceiling_items = inbound_items(lines, args.messages, args.conversations)
    insert = ceiling(port, [Item("/bench/insert/", i.body, i.key) for i in ceiling_items], args.clients, "insert")
    runs = []
    for count in counts:
        with celery_workers(count) as workers:
            relay_inbound(port, fake, workers, inbound_items(lines, 20, 20), args.clients, None, "warm-up")
            burst = relay_inbound(
                port,
                fake,
                workers,
                inbound_items(lines, args.messages, args.conversations),
                args.clients,
                None,
                f"inbound, {count} worker(s)",
            )
        runs.append({"workers": count, **burst})
    return {"insert": insert["intake"], "runs": runs}


def report_scale_out(results: dict, args) -> str:
    ceiling_rate = results["insert"]["per_second"]
    one = results["runs"][0]["end_to_end"]["per_second"]
    rows = []
    for run_ in results["runs"]:
        e2e = run_["end_to_end"]
        rows.append(
            [
                str(run_["workers"]),
                f"{e2e['per_second']:,.0f}",
                f"{e2e['per_second'] / one:.2f}×",
                f"{100 * e2e['per_second'] / ceiling_rate:.1f} %",
                _ms(e2e["p50"]),
                _ms(e2e["p99"]),
                f"{run_['timeline']['last_forward']:.1f}",
            ]
        )
    head = (
        f"Inbound burst of {args.messages} webhooks ({args.conversations} conversations, {args.clients} clients), "
        f"fake 3CX {args.threecx_delay_ms:.0f} ms away; same-run bare-INSERT ceiling {ceiling_rate:,.0f} req/s; "
        "each worker process is prefork -c 1 on every queue.\n"
    )
    header = ["worker processes", "texts/s", "vs 1 worker", "of the ceiling", "p50 ms", "p99 ms", "last forwarded s"]
    return head + table(header, rows)


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(
        [
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in rows),
        ]
    )


def report(results: dict, args) -> str:
    to_3cx, insert = (c["intake"] for c in results["ceilings"])
    inbound_ceiling = min(to_3cx["per_second"], insert["per_second"])
    rows = [
        [f"ceiling: client → fake 3CX directly ({args.clients} connections)", f"{to_3cx['requests']:,}"]
        + [f"{to_3cx['per_second']:,.0f}", "—", _ms(to_3cx["p50"]), _ms(to_3cx["p99"]), _ms(to_3cx["max"])],
        [f"ceiling: client → gunicorn, bare INSERT view ({args.clients} connections)", f"{insert['requests']:,}"]
        + [f"{insert['per_second']:,.0f}", "—", _ms(insert["p50"]), _ms(insert["p99"]), _ms(insert["max"])],
    ]
    for kind, ceiling_rate, arrow in (
        ("inbound", inbound_ceiling, "webhook sent → 3CX received"),
        ("reports", insert["per_second"], "report sent → message `delivered` in the DB"),
    ):
        burst, paced = results[kind]
        label = "inbound texts" if kind == "inbound" else "delivery reports"
        for name, result in (
            (f"{label}, burst: {arrow}", burst),
            (f"{label}, paced at {paced['rate']:.0f}/s ({args.paced:.0%} of the burst): {arrow}", paced),
        ):
            e2e = result["end_to_end"]
            errors = f" ({e2e['errors']} refused)" if e2e["errors"] else ""
            rows.append(
                [name, f"{e2e['requests']:,}{errors}", f"{e2e['per_second']:,.1f}"]
                + [f"{e2e['per_second'] / ceiling_rate:.1%}", _ms(e2e["p50"]), _ms(e2e["p99"]), _ms(e2e["max"])]
            )
        intake = burst["intake"]
        rows.append(
            [f"… of which the burst's webhooks answered 200 (intake, {args.clients} connections)"]
            + [
                f"{intake['requests']:,}",
                f"{intake['per_second']:,.0f}",
                f"{intake['per_second'] / insert['per_second']:.0%}",
            ]
            + [_ms(intake["p50"]), _ms(intake["p99"]), _ms(intake["max"])]
        )
    header = ["measurement", "messages", "msg/s", "of ceiling", "p50 ms", "p99 ms", "max ms"]
    memory_rows = [
        [label, _mib(kib), _mib(results["rss_reports"].get(label))] for label, kib in results["rss_inbound"].items()
    ]
    peaks = "reset before each load" if results["peaks_reset"] else "since the process started (reset refused)"
    return "\n".join(
        [
            f"\ngunicorn 2 workers × 4 threads, {WORKERS} × `celery worker` prefork -c 1 (all queues), PostgreSQL + "
            f"Redis, DEBUG off; {TENANTS} tenants, {args.conversations} conversations; {args.clients} keep-alive "
            "client connections in the same process as the fake 3CX; everything shares the machine's cores; "
            f"the fake 3CX answers after {args.threecx_delay_ms:.0f} ms; forwards in flight per drain: "
            f"{os.environ.get('RELAY_FORWARDS_IN_FLIGHT', 'the default (16)')}\n",
            table(header, rows),
            "\nof ceiling: inbound against the slower ceiling hop, reports against the bare INSERT; the intake rows "
            f"against the bare INSERT. Delivery reports forwarded to 3CX: {results['forwarded_reports']}; inbound "
            f"texts POSTed to 3CX more than once: {results['inbound_repeats']}. Report latency is seen by polling "
            f"every {POLL_SECONDS * 1000:.0f} ms.\n",
            "inbound burst, seconds after the first webhook: "
            + ", ".join(f"{what.replace('_', ' ')} {at:.2f}" for what, at in results["inbound"][0]["timeline"].items())
            + "\n",
            table(["process", "peak RSS, inbound loads", "peak RSS, report loads"], memory_rows),
            f"\n(VmHWM, {peaks})",
        ]
    )


def _mib(kib: int | None) -> str:
    return "—" if kib is None else f"{kib / 1024:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000, help="webhooks in each burst (and ceiling)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent keep-alive client connections")
    parser.add_argument("--conversations", type=int, default=100, help="remote numbers the texts come from")
    parser.add_argument("--paced", type=float, default=0.5, help="paced rate, as a share of the burst's")
    parser.add_argument("--paced-seconds", type=float, default=15.0, help="length of each paced load")
    parser.add_argument("--threecx-delay-ms", type=float, default=0.0, help="the fake 3CX answers this late")
    parser.add_argument("--in-flight", type=int, default=None, help="RELAY_FORWARDS_IN_FLIGHT for the workers")
    parser.add_argument(
        "--workers",
        default="",
        help="comma-separated worker-process counts (e.g. 1,2,4): measure only the inbound burst at each (scale-out)",
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    port = free_port()
    configure_environment(port)
    if args.in_flight is not None:
        os.environ["RELAY_FORWARDS_IN_FLIGHT"] = str(args.in_flight)
    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from bench.numbers_sync import gunicorn

    started = time.monotonic()
    with ExitStack() as stack:
        fake = stack.enter_context(FakeThreeCX(args.threecx_delay_ms / 1000))
        wipe()
        lines = prepare(fake)
        web = stack.enter_context(gunicorn(WEB, port))
        if counts:
            text = report_scale_out(scale_out(args, port, fake, lines, counts), args)
        else:
            workers = stack.enter_context(celery_workers(WORKERS))
            text = report(run(args, port, fake, lines, web.pid, workers), args)
    print(text)
    print(f"\n({time.monotonic() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
