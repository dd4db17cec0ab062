"""Fault runs: inbound and outbound traffic over HTTP while a worker, Redis, PostgreSQL, 3CX or Wavix fails.

Starts its OWN PostgreSQL cluster (initdb in a temporary directory, run as the `postgres` user) and its own
redis-server, on free 127.0.0.1 ports, and never touches the shared ones; then gunicorn serving the portal and
the sandbox (fake Wavix, fake 3CX inboxes), one Celery worker (-c 2, every queue) and beat. Each scenario gets
its own tenants, Wavix accounts and 3CX inboxes, streams webhooks (4 lanes, 5 % re-sent as Wavix would) and
API sends (Idempotency-Key on each) for --load-seconds, applies its fault a few seconds in, then waits —
bounded — until every accepted text is settled. Prints one markdown table; exits 1 if anything was lost.

    .venv/bin/python bench/faults.py [--only 3cx-down] [--outage-seconds 300]

Counted per scenario (ids: the Wavix message id inbound, the message id = Wavix tag outbound):
  accepted    inbound: a WebhookEvent stored for the id (or a 200 answered for it, stored or not);
              outbound: a Message stored by the API (or a 202 answered for it).
  forwarded   inbound: 3CX answered 200 to a POST carrying the id (X-Wavix-Message-Id).
  sent        outbound: the sandbox Wavix stored a message with the tag.
  duplicated  inbound: 200-answered POSTs of an id beyond its first; outbound: sandbox messages of a tag
              beyond its first. Inbound repeats are counted apart as "worker died mid-POST" when the previous
              POST of the id reached 3CX at most one forward lease (the longest a POST holds its delivery) before
              a SIGKILL this bench sent, and the repeat after it: at-least-once to 3CX, what the relay promises.
              Any other duplicate (outbound: every one) must be explained.
  3CX back → last text delivered (3cx-down): from the moment every 3CX answers 200 again to the last POST it
              answered 200.
  failed      accepted, not forwarded/sent, and in a final failed state with its reason recorded: a delivery
              failed/dead-lettered with last_error, an event invalid/unroutable with last_error; a message
              failed/rejected/expired with error_message.
  lost        accepted - forwarded/sent - failed, once the scenario settled or its deadline passed.
"""

import argparse
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from glob import glob
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LANES = 4
FAULT_AT = 5.0  # seconds into the load
PG_DOWN_SECONDS, REDIS_DOWN_SECONDS, WAVIX_FAULT_SECONDS = 10, 20, 60
SETTLE_MARGIN = 180  # beyond the last retry the schedule can need


# ---------------------------------------------------------------------------------------------------------------
# Counting and reporting (pure; tests/test_bench_faults.py)
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    accepted: int
    arrived: int  # forwarded (inbound) or sent (outbound): distinct accepted ids that reached the other side
    duplicated: int  # repeats not explained by a killed worker: each must be explained
    failed: int
    lost: int
    lost_ids: list[str] = field(default_factory=list)
    contradicted: int = 0  # marked failed here, yet the other side has it
    duplicated_mid_post: int = 0  # repeats of a POST that was in flight when the bench SIGKILLed its worker
    unexplained: list[tuple[str, float, float]] = field(default_factory=list)  # (id, previous, repeat) of the others


def tally(
    stored: set[str],
    acknowledged: set[str],
    arrivals: list[tuple[str, float]],
    failed: dict[str, str],
    kills: tuple[float, ...] = (),
    in_flight_for: float = 0.0,
) -> Tally:
    """`stored`: ids in our database; `acknowledged`: ids the client got a success answer for; `arrivals`: (id, when)
    per successful arrival at 3CX / Wavix (repeats are duplicates); `failed`: id → recorded reason; `kills`: when
    the bench SIGKILLed a worker; `in_flight_for`: the longest a POST can be in flight (its delivery's lease)."""
    accepted = stored | acknowledged
    times: dict[str, list[float]] = {}
    for message_id, at in arrivals:
        times.setdefault(message_id, []).append(at)
    arrived = accepted & times.keys()
    with_reason = {i for i, reason in failed.items() if reason and i in accepted} - arrived
    lost = sorted(accepted - arrived - with_reason)
    mid_post, unexplained = 0, []
    for message_id, ats in times.items():
        ats.sort()
        for before, repeat in zip(ats, ats[1:], strict=False):
            if any(before <= kill < repeat and kill - before <= in_flight_for for kill in kills):
                mid_post += 1
            else:
                unexplained.append((message_id, before, repeat))
    return Tally(
        accepted=len(accepted),
        arrived=len(arrived),
        duplicated=len(unexplained),
        failed=len(with_reason),
        lost=len(lost),
        lost_ids=lost,
        contradicted=len(arrived & {i for i, reason in failed.items() if reason}),
        duplicated_mid_post=mid_post,
        unexplained=sorted(unexplained, key=lambda repeat: repeat[1]),
    )


def retry_horizon(outage: float, delays: tuple[int, ...]) -> float:
    """The latest moment, from the start of an outage of `outage` seconds, at which a text first refused during
    it is tried again with success: a retry schedule (waits after each failure) can overshoot by almost a wait."""
    cumulative, total = [0], 0
    for delay in delays:
        total += delay
        cumulative.append(total)
    worst = outage
    for first_failure in range(int(outage) + 1):
        due = next((first_failure + c for c in cumulative if first_failure + c >= outage), None)
        worst = max(worst, due if due is not None else float("inf"))
    return worst


def render(rows: list[dict]) -> str:
    lines = [
        "| scenario | what was done, when (s from the start of the load) | accepted | forwarded / sent "
        "| duplicated (worker died mid-POST) | duplicated (other) | failed (with reason) | lost "
        "| 3CX back → last text delivered | wall time |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        t = row["tally"]
        lost = f"**{t.lost}**" if t.lost else "0"
        other = f"**{t.duplicated}**" if t.duplicated else "0"
        recovery = "—" if row.get("recovery") is None else f"{row['recovery']:.1f} s"
        lines.append(
            f"| {row['scenario']} | {row['what']} | {t.accepted} | {t.arrived} | {t.duplicated_mid_post} | {other} "
            f"| {t.failed} | {lost} | {recovery} | {row['seconds']:.0f} s |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Private PostgreSQL and Redis: the bench stops and starts these, never the shared ones
# ---------------------------------------------------------------------------------------------------------------


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return probe.getsockname()[1]
            except OSError:
                continue
    raise RuntimeError("no free port")


class PrivatePostgres:
    def __init__(self, port: int):
        binaries = sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not binaries:
            sys.exit("No PostgreSQL server binaries under /usr/lib/postgresql/*/bin.")
        self.bin, self.port = Path(binaries[-1]).parent, port
        self.dir = Path(tempfile.mkdtemp(prefix="bench-faults-pg-"))
        self.data = self.dir / "data"
        user = pwd.getpwnam("postgres")
        os.chown(self.dir, user.pw_uid, user.pw_gid)
        self.url = f"postgres://postgres@127.0.0.1:{port}/portal_faults"
        self._as_postgres(self.bin / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _as_postgres(self, *args, check: bool = True, timeout: float = 120) -> None:
        command = [str(a) for a in args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stdout}{result.stderr}")

    def _pg_ctl(self, *args, check: bool = True) -> None:
        self._as_postgres(self.bin / "pg_ctl", "-D", self.data, "-w", "-t", "60", *args, check=check)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=100"
        self._pg_ctl("-o", options, "-l", self.dir / "postgres.log", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "stop")

    def create_database(self) -> None:
        import psycopg

        with psycopg.connect(f"postgres://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE portal_faults")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    def __init__(self, port: int):
        self.port, self.dir = port, tempfile.mkdtemp(prefix="bench-faults-redis-")
        self.url, self.process = f"redis://127.0.0.1:{port}/0", None

    def _cli(self, *args: str) -> str:
        result = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10)
        return result.stdout.strip()

    def up(self) -> bool:
        return self._cli("ping") == "PONG"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(self.up, 20, "the private Redis to start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self._cli("shutdown", "nosave")
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _db(function, *args):
    """Run an ORM call from this process, reconnecting once the database is back (it is restarted here)."""
    from django.db import Error, connection

    for attempt in range(60):
        try:
            return function(*args)
        except Error as error:
            print(f"[faults] database: {type(error).__name__}: {error}".strip(), file=sys.stderr, flush=True)
            connection.close()
            if attempt == 59:
                raise
            time.sleep(1)


# ---------------------------------------------------------------------------------------------------------------
# One scenario's world and load
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class World:
    name: str
    inbound_urls: list[tuple[str, str]] = field(default_factory=list)  # (webhook URL, our number)
    accounts: list[int] = field(default_factory=list)
    inboxes: list[int] = field(default_factory=list)
    tenant_id: int | None = None
    sender: str = ""
    token: str = ""
    sandbox_account_id: int | None = None


def prepare(name: str, seed: int, inbound: bool, outbound: bool) -> World:
    """Its own reseller, tenants, accounts, numbers (unique to the scenario) and inboxes, all or nothing."""
    from django.db import transaction

    with transaction.atomic():
        return _prepare(name, seed, inbound, outbound)


def _prepare(name: str, seed: int, inbound: bool, outbound: bool) -> World:
    from messaging.models import PhoneNumber, SenderID, SenderIDCountry, WavixAccount
    from sandbox.models import FakePbxInbox, SandboxAccount, SandboxNumber
    from tenants.models import ApiToken, Membership, Reseller, Tenant
    from tests import factories as f

    world = World(name)
    reseller = Reseller.objects.create(name=f"Faults {name}", slug=f"faults-{name}")
    if inbound:
        for index in range(3):
            tenant = Tenant.objects.create(reseller=reseller, name=f"{name} in {index}", slug=f"{name}-in-{index}")
            at_wavix = SandboxAccount.objects.create(name=f"{name}-in-{index}", rate_limit_per_second=1000)
            account = WavixAccount(reseller=reseller, tenant=tenant, name=f"{name} in {index}")
            account.set_api_key(at_wavix.api_key)
            account.save()
            inbox = FakePbxInbox.objects.create(label=f"{name} PBX {index}")
            trunk = f.TrunkFactory(tenant=tenant, sms_enabled=True)
            trunk.set_threecx_webhook_url(f"{os.environ['PUBLIC_BASE_URL']}/sandbox/3cx/{inbox.token}/")
            trunk.save()
            number = f"+1415555{seed:02d}{index:02d}"
            PhoneNumber.objects.create(
                account=account, tenant=tenant, trunk=trunk, number=number, wavix_id=f"in-{seed}-{index}"
            )
            world.inbound_urls.append((account.inbound_webhook_url, number))
            world.accounts.append(account.pk)
            world.inboxes.append(inbox.pk)
    if outbound:
        tenant = Tenant.objects.create(reseller=reseller, name=f"{name} out", slug=f"{name}-out")
        at_wavix = SandboxAccount.objects.create(name=f"{name}-out", rate_limit_per_second=1000)
        account = WavixAccount(reseller=reseller, tenant=tenant, name=f"{name} out", send_rate_per_second=20)
        account.set_api_key(at_wavix.api_key)
        account.save()
        number = f"+1415444{seed:04d}"
        SandboxNumber.objects.create(account=at_wavix, number=number[1:], country="US")
        PhoneNumber.objects.create(
            account=account, tenant=tenant, number=number, sms_enabled=True, wavix_id=f"out-{seed}"
        )
        sender = SenderID.objects.create(tenant=tenant, account=account, type="numeric", value=number)
        SenderIDCountry.objects.create(tenant=tenant, sender=sender, country="US", status="allowlisted")
        user = f.UserFactory(email=f"{name}@faults.example")
        Membership.objects.create(user=user, reseller=reseller, role=Membership.Role.RESELLER_ADMIN)
        _, world.token = ApiToken.issue(user, "faults", tenant=tenant)
        world.tenant_id, world.sender, world.sandbox_account_id = tenant.pk, number, at_wavix.pk
    return world


@dataclass
class Load:
    acknowledged_in: set[str] = field(default_factory=set)
    acknowledged_out: set[str] = field(default_factory=set)
    answers: Counter = field(default_factory=Counter)
    gave_up: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, direction: str, code: int) -> None:
        with self.lock:
            self.answers[f"{direction} {code}"] += 1


def _retrying(session, load: Load, direction: str, post, ok: int, budget: float = 120):
    """POST until answered `ok` (as Wavix retries a webhook, as a careful API client retries); None on giving up."""
    give_up = time.monotonic() + budget
    while time.monotonic() < give_up:
        try:
            response = post(session)
            code = response.status_code
        except Exception:  # noqa: BLE001 - refused, reset, timed out: all retried
            response, code = None, 0
        load.note(direction, code)
        if code == ok:
            return response
        if 400 <= code < 500 and code not in (408, 409, 429) and "being handled" not in response.text:
            return None  # refused for good (counted in answers)
        time.sleep(1)
    with load.lock:
        load.gave_up += 1
    return None


def inbound_lane(world: World, load: Load, texts: list[tuple[str, bytes, str]], start: float, rate: float) -> None:
    import requests

    with requests.Session() as session:
        for n, (url, raw, message_id) in enumerate(texts):
            wait = start + n / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            post = lambda s, url=url, raw=raw: s.post(  # noqa: E731
                url, data=raw, headers={"Content-Type": "application/json"}, timeout=(3, 10)
            )
            if _retrying(session, load, "webhook", post, 200) is not None:
                with load.lock:
                    load.acknowledged_in.add(message_id)


def outbound_lane(world: World, load: Load, recipients: list[str], start: float, rate: float) -> None:
    import requests

    url = f"{os.environ['PUBLIC_BASE_URL']}/api/v1/messages/"
    headers = {"Authorization": f"Token {world.token}"}
    with requests.Session() as session:
        for n, to in enumerate(recipients):
            wait = start + n / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            body = {"sender": world.sender, "to": to, "text": f"Fault run {world.name}: your code is {to[-4:]}"}
            post = lambda s, body=body, key=f"{world.name}-{to}": s.post(  # noqa: E731
                url, json=body, headers={**headers, "Idempotency-Key": key}, timeout=(3, 15)
            )
            response = _retrying(session, load, "api", post, 202)
            if response is not None:
                with load.lock:
                    load.acknowledged_out.add(str(response.json()["id"]))


def webhook_stream(world: World, count: int, seed: int) -> list[list[tuple[str, bytes, str]]]:
    """`count` texts over 12 conversations (4 per number), in lanes by conversation; 5 % re-sent later."""
    rng = random.Random(seed)
    conversations = [
        (url, number, f"+4477009{i}{c:04d}") for i, (url, number) in enumerate(world.inbound_urls) for c in range(4)
    ]
    lanes: list[list] = [[] for _ in range(LANES)]
    sent = []
    for n in range(count):
        index = rng.randrange(len(conversations))
        url, number, remote = conversations[index]
        body = {
            "message_id": str(uuid.uuid4()),
            "from": remote.lstrip("+"),
            "to": number.lstrip("+"),
            "message_body": {"text": f"{world.name} #{n} ✓", "media": None},
            "received_at": "2026-11-25T10:00:00.000Z",
        }
        text = (url, json.dumps(body, ensure_ascii=False).encode(), body["message_id"])
        lanes[index % LANES].append(text)
        sent.append((index % LANES, text))
    for lane, text in rng.sample(sent, count // 20):
        lanes[lane].insert(rng.randint(lanes[lane].index(text) + 1, len(lanes[lane])), text)
    return lanes


# ---------------------------------------------------------------------------------------------------------------
# Counting from the database
# ---------------------------------------------------------------------------------------------------------------


def count_inbound(world: World, load: Load, kills: tuple[float, ...] = ()) -> tuple[Tally, bool]:
    from messaging.models import Delivery, WebhookEvent
    from messaging.services.forwarding import forward_lease

    events = WebhookEvent.objects.filter(account__in=world.accounts, kind=WebhookEvent.Kind.INBOUND)
    stored = set(events.values_list("dedup_key", flat=True))
    arrivals = [
        (headers.get("X-Wavix-Message-Id", ""), at.timestamp())
        for headers, at in _forwards(world).values_list("headers", "received_at")
    ]
    failed = dict(
        events.filter(state__in=[WebhookEvent.State.INVALID, WebhookEvent.State.UNROUTABLE]).values_list(
            "dedup_key", "last_error"
        )
    )
    deliveries = Delivery.objects.filter(message__account__in=world.accounts)
    failed.update(
        deliveries.filter(status__in=[Delivery.Status.FAILED, Delivery.Status.DEAD]).values_list(
            "message__wavix_message_id", "last_error"
        )
    )
    busy = (
        events.filter(state=WebhookEvent.State.PENDING).exists()
        or deliveries.filter(status=Delivery.Status.PENDING).exists()
    )
    lease = forward_lease().total_seconds()
    return tally(stored, set(load.acknowledged_in), arrivals, failed, kills, lease), busy


def _forwards(world: World):
    """The POSTs the scenario's 3CXs answered 200."""
    from sandbox.models import FakePbxRequest

    return FakePbxRequest.objects.filter(inbox__in=world.inboxes, answered="ok").order_by("id")


def last_forward_at(world: World) -> float | None:
    last = _forwards(world).order_by("-received_at").values_list("received_at", flat=True).first()
    return last.timestamp() if last else None


def count_outbound(world: World, load: Load, kills: tuple[float, ...] = ()) -> tuple[Tally, bool]:
    from messaging.models import Message
    from sandbox.models import SandboxMessage

    messages = Message.objects.filter(tenant_id=world.tenant_id, direction=Message.Direction.OUTBOUND)
    stored = {str(pk) for pk in messages.values_list("pk", flat=True)}
    # Sent to Wavix exactly once, killed worker or not: every repeat counts as unexplained.
    arrivals = [
        (tag, at.timestamp())
        for tag, at in SandboxMessage.objects.filter(account_id=world.sandbox_account_id).values_list(
            "tag", "submitted_at"
        )
    ]
    final = [Message.Status.FAILED, Message.Status.REJECTED, Message.Status.EXPIRED]
    failed = {str(pk): reason for pk, reason in messages.filter(status__in=final).values_list("pk", "error_message")}
    busy = messages.filter(status__in=[Message.Status.QUEUED, Message.Status.SENDING, Message.Status.UNKNOWN]).exists()
    return tally(stored, set(load.acknowledged_out), arrivals, failed), busy


# ---------------------------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Stack:
    args: argparse.Namespace
    pg: PrivatePostgres
    redis: PrivateRedis
    celery: object
    env: dict
    started: float = 0.0
    log: list[str] = field(default_factory=list)
    killed: set[int] = field(default_factory=set)  # pids this bench SIGKILLed on purpose
    kill_times: list[float] = field(default_factory=list)  # when (time.time()) it did, in this scenario
    threecx_back_at: float | None = None  # when every 3CX answers 200 again, in this scenario
    died: set[int] = field(default_factory=set)  # Celery processes that exited by themselves, already reported

    def check_celery(self) -> None:
        """A worker or beat that exited without being told to is noted and started again, as the supervisor does
        in production (docker-compose.yml: `restart: unless-stopped`)."""
        for process in list(self.celery.started):
            pid, code = process.popen.pid, process.popen.poll()
            if code is not None and pid not in self.killed and pid not in self.died:
                self.died.add(pid)
                role = "beat" if "beat" in process.popen.args else "worker"
                print(f"[faults] {role} {pid} exited with {code}; its last lines:\n{process.tail(40)}", file=sys.stderr)
                self.at(f"**the {role} exited by itself (code {code})**, restarted")
                try:
                    (self.celery.beat if role == "beat" else partial(self.celery.worker, concurrency=2))(**self.env)
                except AssertionError as error:  # did not become ready: tried again on the next check
                    print(f"[faults] could not restart the {role}: {error}", file=sys.stderr)

    def at(self, what: str) -> None:
        self.log.append(f"t={time.monotonic() - self.started:.0f} s {what}")

    def sleep_until(self, offset: float) -> None:
        time.sleep(max(0.0, self.started + offset - time.monotonic()))


def fault_kill_worker(stack: Stack) -> None:
    stack.sleep_until(FAULT_AT)
    victim = next(p for p in stack.celery.started if p.popen.poll() is None and "worker" in p.popen.args)
    stack.killed.add(victim.popen.pid)
    victim.kill()  # SIGKILL the worker and its pool, mid-forward / mid-send
    stack.kill_times.append(time.time())  # once it is dead: what it had in flight reached 3CX before this
    stack.at("SIGKILL worker + pool")
    stack.celery.worker(concurrency=2, **stack.env)
    stack.at("new worker ready")


def fault_redis(stack: Stack) -> None:
    stack.sleep_until(FAULT_AT)
    stack.redis.stop()  # broker and cache gone; queued tasks lost with it (no persistence)
    stack.at("Redis shut down (nosave)")
    time.sleep(REDIS_DOWN_SECONDS)
    stack.redis.start()
    stack.at("started again")


def fault_postgres(stack: Stack) -> None:
    stack.sleep_until(FAULT_AT)
    stack.pg.stop("fast")  # every connection cut, in-flight transactions rolled back
    stack.at("PostgreSQL stopped (fast)")
    time.sleep(PG_DOWN_SECONDS)
    stack.pg.start()
    stack.at("started again")


def fault_3cx(world: World):
    def apply(stack: Stack) -> None:
        from datetime import timedelta

        from django.utils import timezone

        from sandbox.models import FakePbxInbox

        stack.sleep_until(FAULT_AT)
        until = timezone.now() + timedelta(seconds=stack.args.outage_seconds)
        _db(lambda: FakePbxInbox.objects.filter(pk__in=world.inboxes).update(mode="500", mode_until=until))
        stack.threecx_back_at = until.timestamp()
        stack.at(f"every 3CX answers 500 for {stack.args.outage_seconds:g} s from")

    return apply


def fault_wavix(world: World, field_name: str, code: int):
    def apply(stack: Stack) -> None:
        from datetime import timedelta

        from django.utils import timezone

        from sandbox.models import SandboxAccount

        stack.sleep_until(FAULT_AT)
        until = timezone.now() + timedelta(seconds=WAVIX_FAULT_SECONDS)
        _db(lambda: SandboxAccount.objects.filter(pk=world.sandbox_account_id).update(**{field_name: until}))
        stack.at(f"Wavix answers {code} to every call for {WAVIX_FAULT_SECONDS} s from")

    return apply


SCENARIOS = {
    # name: (inbound, outbound, fault factory taking the world)
    "worker-kill": (True, True, lambda world: fault_kill_worker),
    "redis-restart": (True, True, lambda world: fault_redis),
    "postgres-restart": (True, True, lambda world: fault_postgres),
    "3cx-down": (True, False, fault_3cx),
    "wavix-500": (False, True, lambda world: fault_wavix(world, "failing_until", 500)),
    "wavix-429": (False, True, lambda world: fault_wavix(world, "throttled_until", 429)),
}


def settle_seconds(name: str, args) -> float:
    from messaging.services.forwarding import RETRY_DELAYS

    window = args.outage_seconds if name == "3cx-down" else 90  # the longest other fault, plus a lease
    return args.load_seconds + retry_horizon(window, RETRY_DELAYS) + SETTLE_MARGIN


def run_scenario(name: str, stack: Stack, seed: int) -> list[dict]:
    inbound, outbound, fault = SCENARIOS[name]
    world = _db(prepare, name, seed, inbound, outbound)
    load = Load()
    threads = []
    stack.log, stack.started = [], time.monotonic() + 0.5
    stack.kill_times, stack.threecx_back_at = [], None
    if inbound:
        lanes = webhook_stream(world, stack.args.texts, seed)
        rate = stack.args.texts / stack.args.load_seconds / LANES
        threads += [
            threading.Thread(target=inbound_lane, args=(world, load, lane, stack.started, rate)) for lane in lanes
        ]
    if outbound:
        recipients = [f"+1415556{n + 1:04d}" for n in range(stack.args.messages)]  # never …0999 (slow)
        rate = stack.args.messages / stack.args.load_seconds / LANES
        threads += [
            threading.Thread(target=outbound_lane, args=(world, load, recipients[i::LANES], stack.started, rate))
            for i in range(LANES)
        ]
    for thread in threads:
        thread.daemon = True
        thread.start()
    fault(world)(stack)
    for thread in threads:
        thread.join(timeout=stack.args.load_seconds + 300)

    deadline = stack.started + settle_seconds(name, stack.args)
    counters = [("inbound", count_inbound)] * inbound + [("outbound", count_outbound)] * outbound
    while True:
        stack.check_celery()
        results = [(direction, *_db(counter, world, load, tuple(stack.kill_times))) for direction, counter in counters]
        settled = all(t.lost == 0 and not busy for _, t, busy in results)
        if settled or time.monotonic() > deadline:
            break
        time.sleep(1)
    if settled:
        time.sleep(5)  # anything still in flight (a killed worker's lease, a late retry) shows as a duplicate
        results = [(direction, *_db(counter, world, load, tuple(stack.kill_times))) for direction, counter in counters]
    seconds = time.monotonic() - stack.started
    recovery = None
    if stack.threecx_back_at is not None:
        last = _db(last_forward_at, world)
        recovery = last - stack.threecx_back_at if last is not None else None
    what = ", ".join(stack.log)
    rows = []
    for direction, t, _busy in results:
        rows.append(
            {
                "scenario": f"{name} ({direction})",
                "what": what,
                "tally": t,
                "seconds": seconds,
                "recovery": recovery if direction == "inbound" else None,
                "epoch": time.time() - (time.monotonic() - stack.started),  # t=0 of the load, in time.time()
                "answers": {
                    k: v
                    for k, v in load.answers.items()
                    if k.startswith("webhook" if direction == "inbound" else "api")
                },
                "gave_up": load.gave_up,
                "unsettled": not settled,
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=list(SCENARIOS), help="run only this scenario (repeatable)")
    parser.add_argument("--outage-seconds", type=float, default=300, help="how long 3CX answers 500 (default 300)")
    parser.add_argument("--load-seconds", type=float, default=30, help="how long traffic is streamed per scenario")
    parser.add_argument("--texts", type=int, default=300, help="unique inbound webhooks per scenario")
    parser.add_argument("--messages", type=int, default=120, help="outbound API sends per scenario")
    args = parser.parse_args()
    names = args.only or list(SCENARIOS)

    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGALRM, interrupted)
    signal.alarm(900)  # hard stops, cleaned up like a Ctrl-C: for starting everything, then for the scenarios

    pg = redis = celery = None
    web = None
    try:
        pg = PrivatePostgres(free_port(5441))
        pg.start()
        pg.create_database()
        redis = PrivateRedis(free_port(6391))
        redis.start()
        port = free_port(8768)
        os.environ.update(
            DATABASE_URL=pg.url,
            REDIS_URL=redis.url,
            DJANGO_SETTINGS_MODULE="portal.settings",
            SANDBOX_ENABLED="true",
            PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
            WAVIX_API_URL=f"http://127.0.0.1:{port}/sandbox/wavix",
            API_TOKEN_RATE="100000/min",
            OUTBOUND_UNKNOWN_AFTER_SECONDS="30",
        )
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True, timeout=600)
        import django

        django.setup()
        from bench.numbers_sync import gunicorn
        from tests.processes import Celery

        web = gunicorn("portal.wsgi --workers 2 --threads 4", port)
        web.__enter__()
        celery = Celery()
        env = {k: os.environ[k] for k in ("DATABASE_URL", "PUBLIC_BASE_URL", "WAVIX_API_URL")}
        env["OUTBOUND_UNKNOWN_AFTER_SECONDS"] = os.environ["OUTBOUND_UNKNOWN_AFTER_SECONDS"]
        celery.worker(concurrency=2, **env)
        celery.beat(**env)
        stack = Stack(args, pg, redis, celery, env)
        signal.alarm(int(120 + sum(settle_seconds(name, args) + 60 for name in names)))
        rows = []
        for seed, name in enumerate(names, start=1):
            print(f"[faults] {name} …", file=sys.stderr, flush=True)
            rows += run_scenario(name, stack, seed)
            print("\n".join(render(rows).splitlines()[2:]), file=sys.stderr, flush=True)
    finally:
        signal.alarm(0)
        if celery is not None:
            celery.stop_all()
        if web is not None:
            web.__exit__(None, None, None)
        if redis is not None:
            redis.destroy()
        if pg is not None:
            pg.destroy()

    print(
        f"\nPrivate PostgreSQL + Redis; gunicorn 2 × 4 threads (portal + sandbox); one Celery worker -c 2 + beat; "
        f"per scenario {args.texts} webhooks (+5 % re-sent) and {args.messages} API sends over "
        f"{args.load_seconds:g} s; fault at t={FAULT_AT:g} s\n"
    )
    print(render(rows))
    print()
    for row in rows:
        t = row["tally"]
        notes = [f"answers {dict(sorted(row['answers'].items()))}"]
        if row["gave_up"]:
            notes.append(f"{row['gave_up']} requests given up by the client")
        if t.duplicated:
            when = ", ".join(
                f"{message_id[:8]}… at t={before - row['epoch']:.1f} s and {repeat - row['epoch']:.1f} s"
                for message_id, before, repeat in t.unexplained[:5]
            )
            notes.append(f"**{t.duplicated} duplicate(s) not explained by a killed worker**: {when}")
        if t.contradicted:
            notes.append(f"{t.contradicted} marked failed but present at the other side")
        if row["unsettled"]:
            notes.append("NOT SETTLED by its deadline")
        if t.lost_ids:
            notes.append(f"lost ids: {', '.join(t.lost_ids[:5])}")
        print(f"- {row['scenario']}: " + "; ".join(notes))
    return 1 if any(row["tally"].lost for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
