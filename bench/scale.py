"""The admin, the dashboard and the API with 500 tenants and a million messages: p50 / p95 / max per page.

Generates (or, with --reuse, finds) one reseller with N tenants, their trunks, numbers, sender IDs and Wavix
accounts, and M messages spread the way traffic is: most in the last 30 days, a few tenants much busier than
the rest (Zipf-like), both directions, every status. Runs the daily rollup, then requests each page
--requests times as a reseller admin through Django's test client (no network, no web server: the figures are
the middleware, the view, its queries and its template, with the development settings), round-robin so that
noise from the shared machine falls on every page alike. Every request's SQL is captured: a COUNT over
messaging_message that neither a LIMIT nor a created_at lower bound limits is flagged. The baseline is a
trivial authenticated admin page (the password change form) timed in the same rounds.

PostgreSQL only (DATABASE_URL names the server; the benchmark owns the database `portal_scale` on it, and
empties it before generating again):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/14 \
        .venv/bin/python bench/scale.py [--tenants 500] [--messages 1000000] [--requests 40] [--reuse]
"""

import argparse
import json
import logging
import math
import os
import random
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE = "portal_scale"
RESELLER_SLUG = "scale"
ADMIN_EMAIL = "admin@scale.example"
TARGET_P95_MS = 300
SEED = 20261125

PREFIXES = ["Harbor", "Acme", "Northside", "Summit", "Maple", "Riverside", "Oak", "Bayview", "Pioneer", "Cedar"]
PREFIXES += ["Granite", "Lakeside", "Union", "Elm", "Sunrise", "Metro", "Valley", "Coastal", "Prairie", "Redwood"]
KINDS = ["Dental", "Clinic", "Plumbing", "Law", "Motors", "Realty", "Salon", "Bakery", "Fitness", "Veterinary"]
AREAS = ["212", "305", "312", "415", "512", "617", "646", "702", "713", "818", "917", "971"]
TEXTS = [
    "Your appointment is confirmed for tomorrow at 10:30. Reply C to confirm or R to reschedule.",
    "Hi, can I move my booking to Friday?",
    "Your order has shipped and will arrive in 2-3 days.",
    "Thanks! See you then.",
    "Reminder: your vehicle is due for service next week. Call us to book.",
    "Is the office open on Saturday?",
    "Your verification code is 482913",
    "We received your payment of $120.00. Thank you!",
    "Running 10 minutes late, sorry",
    "STOP",
    "Can someone call me back about the invoice?",
    "Ihr Termin ist bestätigt. Bis morgen!",
]

# Outbound outcomes by age, as (status, weight): reports arrive within minutes, a few never do.
OUTBOUND_FRESH = [("queued", 60), ("sending", 20), ("accepted", 20)]  # under 2 minutes old
OUTBOUND_RECENT = [("accepted", 10), ("sent", 20), ("delivered", 65), ("undelivered", 3), ("failed", 2)]  # < 2 h
OUTBOUND_OLD = [("delivered", 905), ("undelivered", 40), ("failed", 20), ("rejected", 10), ("expired", 10)]
OUTBOUND_OLD += [("dlr_expired", 10), ("sent", 3), ("accepted", 2)]
INBOUND_OLD = [("forwarded", 960), ("failed", 25), ("received", 10), ("held", 5)]
FINAL = {"delivered", "undelivered", "expired", "rejected", "dlr_expired", "failed", "forwarded"}
SENT = {"accepted", "sent", "delivered", "undelivered", "expired", "dlr_expired"}


def scale_database_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL server: this benchmark measures a million rows on it, not SQLite.")
    return urlunsplit(urlsplit(url)._replace(path=f"/{DATABASE}"))


# --------------------------------------------------------------------------------------------------------------
# The data
# --------------------------------------------------------------------------------------------------------------


@dataclass
class World:
    reseller: object
    admin: object
    busiest: object  # the tenant with the most messages: its message log is the heaviest
    search_number: str  # a contact of the busiest tenant, written the way a person types it
    tenant_search: str  # a word in about one tenant name in ten
    latest: object  # the busiest tenant's latest outbound message
    remote: str  # the number it went to: a conversation to show
    wavix_id_part: str  # 8 characters from the middle of a Wavix message id


def tenant_weights(count: int) -> list[float]:
    """Zipf-like (s = 0.9): with 500 tenants the busiest has ~9% of all messages, the median ~0.1%."""
    weights = [1 / (rank + 1) ** 0.9 for rank in range(count)]
    total = sum(weights)
    return [w / total for w in weights]


def split(total: int, weights: list[float]) -> list[int]:
    counts = [math.floor(total * w) for w in weights]
    for i in range(total - sum(counts)):
        counts[i % len(counts)] += 1
    return counts


def pick(rng: random.Random, choices: list[tuple[str, int]]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def generate(tenants: int, messages: int, progress=lambda text: None) -> World:
    """One reseller with its tenants and their messages; the caller provides an empty enough database."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from messaging.models import (
        Message,
        PhoneNumber,
        SenderID,
        SenderIDCountry,
        Trunk,
        WavixAccount,
    )
    from tenants.models import Membership, Reseller, Tenant

    rng = random.Random(SEED)
    reseller = Reseller.objects.create(name="Scale Telecom", slug=RESELLER_SLUG)
    admin = get_user_model().objects.create_user(username=ADMIN_EMAIL, email=ADMIN_EMAIL)
    Membership.objects.create(user=admin, reseller=reseller, role=Membership.Role.RESELLER_ADMIN)
    shared = WavixAccount(reseller=reseller, name="Scale shared")
    shared.set_api_key("scale-shared-key-0000")
    shared.save()

    rows = []
    for i in range(tenants):
        name = f"{PREFIXES[(i // len(KINDS)) % len(PREFIXES)]} {KINDS[i % len(KINDS)]} {i + 1:03d}"
        suspended = i % 97 == 50
        rows.append(Tenant(reseller=reseller, name=name, slug=f"t{i + 1:04d}", default_country="US"))
        if suspended:
            rows[-1].status = Tenant.Status.SUSPENDED
    tenant_rows = Tenant.objects.bulk_create(rows)
    # Customers for a year, as their texts are: last month's statements list every one of them.
    Tenant.objects.filter(reseller=reseller).update(created_at=timezone.now() - timedelta(days=366))

    # Three tenants in four have their own Wavix account; the rest use the reseller's (the save issues the
    # webhook secret, so accounts are saved one by one).
    accounts = {}
    for i, tenant in enumerate(tenant_rows):
        if i % 4 == 3:
            accounts[tenant.pk] = shared
            continue
        account = WavixAccount(reseller=reseller, tenant=tenant, name=f"{tenant.name} Wavix")
        account.set_api_key(f"scale-key-{i:06d}-abcd")
        account.save()
        accounts[tenant.pk] = account

    steps = ["sender", "countries", "threecx", "enable", "verify"]
    trunks, numbers, senders = {}, {}, {}
    trunk_rows = []
    for i, tenant in enumerate(tenant_rows):
        for t in range(1 + (i % 5 == 0)):
            done = steps[: 5 if rng.random() < 0.8 else rng.randrange(5)]
            trunk_rows.append(
                Trunk(
                    tenant=tenant,
                    name=f"Trunk {t + 1}",
                    pbx_fqdn=f"t{i + 1}-{t + 1}.3cx.example",
                    sms_enabled=len(done) == 5,
                    setup_progress={"steps_done": done},
                    forward_failures=5 if rng.random() < 0.02 else 0,
                    forward_error="3CX answered 401",
                )
            )
    for trunk in Trunk.objects.bulk_create(trunk_rows):
        trunks.setdefault(trunk.tenant_id, trunk)
    number_rows = []
    for i, tenant in enumerate(tenant_rows):
        for n in range(1 + i % 3):
            number_rows.append(
                PhoneNumber(
                    account=accounts[tenant.pk],
                    tenant=tenant,
                    trunk=trunks[tenant.pk],
                    number=f"+1415{2000000 + i * 10 + n:07d}",
                    country="US",
                    sms_enabled=True,
                    status="active",
                    relay_drift=rng.random() < 0.01,
                )
            )
    for number in PhoneNumber.objects.bulk_create(number_rows):
        numbers.setdefault(number.tenant_id, []).append(number.number)
    sender_rows = [
        SenderID(tenant=t, account=accounts[t.pk], type=SenderID.Type.ALPHANUMERIC, value=f"Scale{i + 1:04d}")
        for i, t in enumerate(tenant_rows)
    ]
    for sender in SenderID.objects.bulk_create(sender_rows):
        senders[sender.tenant_id] = sender
    SenderIDCountry.objects.bulk_create(
        SenderIDCountry(
            tenant_id=s.tenant_id,
            sender=s,
            country=country,
            status="rejected" if rng.random() < 0.02 else "allowlisted",
            note="Use case unclear",
        )
        for s in senders.values()
        for country in ("GB", "DE")
    )
    progress(
        f"{tenants} tenants, {len(trunk_rows)} trunks, {len(number_rows)} numbers, {len(set(accounts.values()))} "
        "Wavix accounts"
    )

    now = timezone.now()
    counts = split(messages, tenant_weights(tenants))
    columns = [
        "tenant_id", "account_id", "trunk_id", "sender_id", "direction", "from_number", "to_number", "text",
        "media", "encoding", "segments", "wavix_message_id", "status", "error_code", "error_message", "charge",
        "created_at", "updated_at", "sent_at", "completed_at", "priority", "attempts",
    ]  # fmt: skip

    def message_rows() -> Iterator[tuple]:
        seq = 0
        for tenant, count in zip(tenant_rows, counts, strict=True):
            contacts = [
                f"+1{rng.choice(AREAS)}{rng.randrange(2000000, 9999999)}" if rng.random() < 0.85
                else f"+447700{rng.randrange(900000, 999999)}"
                for _ in range(max(5, count // 25))
            ]  # fmt: skip
            own = numbers[tenant.pk]
            account, trunk, sender = accounts[tenant.pk].pk, trunks[tenant.pk].pk, senders[tenant.pk]
            for _ in range(count):
                seq += 1
                # 80% in the last 30 days, the rest over the year before.
                age = rng.uniform(0, 30) if rng.random() < 0.8 else rng.uniform(30, 365)
                created = now - timedelta(days=age)
                contact, number = rng.choice(contacts), rng.choice(own)
                text = rng.choice(TEXTS) if age < 90 else ""  # the default retention purged older texts
                if rng.random() < 0.6:
                    minutes = age * 1440
                    table = OUTBOUND_FRESH if minutes < 2 else OUTBOUND_RECENT if minutes < 120 else OUTBOUND_OLD
                    status = pick(rng, table)
                    alpha = rng.random() < 0.2
                    sent = created + timedelta(seconds=2) if status in SENT or status == "failed" else None
                    yield (
                        tenant.pk, account, trunk, sender.pk if alpha else None, "outbound",
                        sender.value if alpha else number, contact, text, "[]", "gsm7", 1 + (rng.random() < 0.1),
                        f"scale-{seq:09d}" if status in SENT else "", status,
                        "30003" if status in ("undelivered", "failed") else "",
                        "Unreachable destination handset" if status in ("undelivered", "failed") else "",
                        Decimal("0.00750") if sent else None, created, created, sent,
                        created + timedelta(seconds=20) if status in FINAL else None, rng.random() < 0.3,
                        1 if sent else 0,
                    )  # fmt: skip
                else:
                    status = "received" if age * 1440 < 1 else pick(rng, INBOUND_OLD)
                    yield (
                        tenant.pk, account, trunk, None, "inbound", contact, number, text, "[]", "gsm7", 1,
                        f"scale-{seq:09d}", status, "", "", None, created, created, None,
                        created + timedelta(seconds=1) if status in FINAL else None, False, 0,
                    )  # fmt: skip

    insert(Message, columns, message_rows(), progress)
    # One forward to 3CX per inbound text, in the state its message reached.
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO messaging_delivery (tenant_id, message_id, trunk_id, remote_number, status, attempts,
                next_attempt_at, last_response, last_error, delivered_at, created_at, last_attempt_at,
                last_status_code)
            SELECT tenant_id, id, trunk_id, from_number,
                CASE status WHEN 'forwarded' THEN 'delivered' WHEN 'failed' THEN 'dead' ELSE 'pending' END,
                CASE status WHEN 'forwarded' THEN 1 WHEN 'failed' THEN 9 WHEN 'received' THEN 1 ELSE 0 END,
                created_at, '', '', CASE status WHEN 'forwarded' THEN completed_at END, created_at,
                CASE status WHEN 'held' THEN NULL ELSE created_at END,
                CASE status WHEN 'forwarded' THEN 200 WHEN 'held' THEN NULL ELSE 503 END
            FROM messaging_message WHERE direction = 'inbound' AND tenant_id IN (
                SELECT id FROM tenants_tenant WHERE reseller_id = %s)
            """,
            [reseller.pk],
        )
    if connection.vendor == "postgresql" and not connection.in_atomic_block:  # not inside a test's transaction
        # A production table has been vacuumed and analysed by autovacuum long since; a fresh load has not.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    return find_world(reseller)


def insert(model, columns: list[str], rows: Iterator[tuple], progress) -> None:
    """PostgreSQL: COPY (the quickest honest path: every index and constraint is maintained as rows arrive).
    Elsewhere: bulk_create in batches of 10,000."""
    from django.db import connection

    started = time.perf_counter()
    if connection.vendor == "postgresql":
        table = model._meta.db_table
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for n, row in enumerate(rows, 1):
                copy.write_row(row)
                if n % 200_000 == 0:
                    progress(f"{table}: {n:,} rows in {time.perf_counter() - started:.0f} s")
        return
    batch = []
    for row in rows:
        values = dict(zip(columns, row, strict=True))
        values["media"] = json.loads(values["media"])
        batch.append(model(**values))
        if len(batch) == 10_000:
            model.objects.bulk_create(batch)
            batch = []
    model.objects.bulk_create(batch)


def find_world(reseller) -> World:
    """The admin, the busiest tenant and a number to search for, read back from the data (for --reuse too)."""
    from django.contrib.auth import get_user_model
    from django.db.models import Count

    from messaging.models import Message
    from tenants.models import Tenant

    admin = get_user_model().objects.get(username=ADMIN_EMAIL)
    busiest_id = (
        Message.objects.filter(tenant__reseller=reseller)
        .values("tenant_id")
        .annotate(n=Count("id"))
        .order_by("-n")
        .values_list("tenant_id", flat=True)
        .first()
    )
    busiest = Tenant.objects.get(pk=busiest_id)
    contact = (
        Message.objects.filter(tenant=busiest, direction="inbound", from_number__startswith="+1")
        .order_by("created_at", "id")
        .values_list("from_number", flat=True)
        .first()
    )
    digits = contact.removeprefix("+1")  # as a person types it: national format
    typed = f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
    kind = next((k for k in KINDS if k in busiest.name), busiest.name.split()[0])
    latest = Message.objects.filter(tenant=busiest, direction="outbound").order_by("-created_at", "-id").first()
    with_id = Message.objects.filter(tenant=busiest).exclude(wavix_message_id="").order_by("created_at", "id").first()
    middle = len(with_id.wavix_message_id) // 2
    return World(
        reseller=reseller,
        admin=admin,
        busiest=busiest,
        search_number=typed,
        tenant_search=kind.lower(),
        latest=latest,
        remote=latest.to_number,
        wavix_id_part=with_id.wavix_message_id[middle - 4 : middle + 4],
    )


# --------------------------------------------------------------------------------------------------------------
# The measurement
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Page:
    name: str
    url: str
    api: bool = False
    timings: list[float] = field(default_factory=list)  # ms
    queries: list[int] = field(default_factory=list)
    slowest_query_ms: float = 0.0
    unbounded: list[str] = field(default_factory=list)

    def percentile(self, p: float) -> float:
        """Nearest rank: with 40 requests, p95 is the 38th fastest."""
        ordered = sorted(self.timings)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _parse(sql: str, start: int = 0) -> tuple[list, int]:
    """The statement as nested lists, one per pair of parentheses (string literals skipped)."""
    node: list = []
    text, i = [], start
    while i < len(sql):
        char = sql[i]
        if char == "'":
            end = sql.index("'", i + 1)
            while end + 1 < len(sql) and sql[end + 1] == "'":  # '' inside a literal
                end = sql.index("'", end + 2)
            text.append(sql[i : end + 1])
            i = end + 1
            continue
        if char == "(":
            node.append("".join(text))
            text = []
            child, i = _parse(sql, i + 1)
            node.append(child)
        elif char == ")":
            break
        else:
            text.append(char)
        i += 1
    node.append("".join(text))
    return node, i


def _top(node: list) -> str:
    """This level's text, each parenthesised part shown as (#n), n its index among the children."""
    children = [part for part in node if isinstance(part, list)]
    return "".join(part if isinstance(part, str) else f"(#{children.index(part)})" for part in node)


def _is_select(node: list) -> bool:
    return _top(node).lstrip().upper().startswith("SELECT")


def _flat(node: list) -> str:
    """This level's text with its parenthesised parts, leaving out nested SELECTs (their filters are theirs)."""
    return "".join(
        part if isinstance(part, str) else "(…)" if _is_select(part) else f"({_flat(part)})" for part in node
    )


FROM_TARGET = re.compile(r'\bFROM\s+(?:"(\w+)"|\(#(\d+)\))', re.IGNORECASE)
CREATED_SINCE = re.compile(r'"created_at" >=?')


def _bounded(node: list) -> bool:
    return " LIMIT " in f" {_top(node).upper()} " or bool(CREATED_SINCE.search(_flat(node)))


def _unbounded_in(node: list) -> bool:
    children = [part for part in node if isinstance(part, list)]
    if _is_select(node) and re.search(r"\bCOUNT\(#", _top(node), re.IGNORECASE):
        target = FROM_TARGET.search(_top(node))
        if target and target.group(1) == "messaging_message" and not _bounded(node):
            return True
        if target and target.group(2) is not None:  # SELECT COUNT(*) FROM (SELECT ... ) subquery
            inner = children[int(target.group(2))]
            inner_target = FROM_TARGET.search(_top(inner))
            if inner_target and inner_target.group(1) == "messaging_message":
                if not (_bounded(inner) or _bounded(node)):
                    return True
    return any(_unbounded_in(child) for child in children)


def unbounded_counts(statements: list[str]) -> list[str]:
    """The statements with a COUNT over messaging_message that neither a LIMIT nor a created_at lower bound
    limits: a tenant or status filter alone does not bound it (the busiest tenant has a tenth of the table).
    A COUNT over another table with a subquery on messages (the dashboard's alert totals) is not one."""
    return [sql for sql in statements if _unbounded_in(_parse(sql)[0])]


def pages(world: World) -> list[Page]:
    from messaging.services import usage

    messages = "/admin/messaging/message/"
    last_month = f"{usage.month_before(usage.this_month()):%Y-%m}"
    return [
        Page("baseline: /admin/password_change/", "/admin/password_change/"),
        Page("message list", messages),
        Page("message list, status = failed", f"{messages}?status__exact=failed"),
        Page(f"message list, search {world.search_number}", f"{messages}?{urlencode({'q': world.search_number})}"),
        Page("message log of the busiest tenant", f"{messages}?tenant__id__exact={world.busiest.pk}"),
        Page("message list, search two words of a text", f"{messages}?{urlencode({'q': 'invoice call'})}"),
        Page("message list, part of a Wavix id", f"{messages}?{urlencode({'q': world.wavix_id_part})}"),
        Page("a message's page (its lifecycle)", f"{messages}{world.latest.pk}/change/"),
        Page("dashboard, page 1", "/admin/"),
        Page(f"dashboard, search '{world.tenant_search}'", f"/admin/?{urlencode({'q': world.tenant_search})}"),
        Page("the busiest tenant's home page", f"/admin/customers/{world.busiest.pk}/"),
        Page(
            "a conversation of the busiest tenant", f"/admin/customers/{world.busiest.pk}/conversations/{world.remote}/"
        ),
        Page(f"usage and billing, {last_month}, every tenant", f"/admin/usage/?month={last_month}"),
        Page(f"the busiest tenant's statement, {last_month}", f"/admin/usage/{world.busiest.pk}/{last_month}/"),
        Page(f"API /api/v1/usage/?month={last_month}", f"/api/v1/usage/?month={last_month}", api=True),
        Page(f"API /api/v1/usage/, {last_month} as CSV", f"/api/v1/usage/?month={last_month}&format=csv", api=True),
        Page("API /api/v1/messages/, first page", "/api/v1/messages/", api=True),
        Page("API /api/v1/messages/, a cursor page", "", api=True),  # the URL comes from the first page
    ]


def measure(world: World, requests: int, warmup: int = 2) -> list[Page]:
    """Request every page `requests` times, round-robin, timing each and capturing its SQL."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from tenants.models import ApiToken

    logging.getLogger("axes").setLevel(logging.WARNING)  # one line per sign-in otherwise
    browser = Client()
    browser.force_login(world.admin)
    # A reseller admin signs in with a second factor (tenants.two_factor): the session says which device it used.
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device, _ = TOTPDevice.objects.get_or_create(user=world.admin, name="bench", defaults={"confirmed": True})
    session = browser.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    _, plaintext = ApiToken.issue(world.admin, "scale benchmark")
    api = Client(HTTP_AUTHORIZATION=f"Token {plaintext}")
    todo = pages(world)
    first = api.get("/api/v1/messages/").json()
    # Five pages in: a cursor that is not the first one, as a client walking the list sends it.
    cursor_url = first["next"]
    for _ in range(4):
        cursor_url = api.get(cursor_url).json()["next"]
    todo[-1].url = urlsplit(cursor_url)._replace(scheme="", netloc="").geturl()

    for round_ in range(warmup + requests):
        for page in todo:
            client = api if page.api else browser
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(page.url)
                elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise SystemExit(f"{page.url} answered {response.status_code}")
            if round_ < warmup:
                continue
            page.timings.append(elapsed)
            page.queries.append(len(captured.captured_queries))
            sqls = [q["sql"] for q in captured.captured_queries]
            page.slowest_query_ms = max(
                [page.slowest_query_ms, *(float(q["time"]) * 1000 for q in captured.captured_queries)]
            )
            for sql in unbounded_counts(sqls):
                if sql not in page.unbounded:
                    page.unbounded.append(sql)
    return todo


def table(results: list[Page], heading: str) -> str:
    baseline = results[0]
    lines = [heading, ""]
    lines.append(
        f"| {'page':<46} | p50 ms | p95 ms | max ms | p95 vs baseline | queries | slowest query ms | unbounded COUNT |"
    )
    lines.append(
        f"|{'-' * 48}|-------:|-------:|-------:|----------------:|--------:|-----------------:|-----------------|"
    )
    for page in results:
        queries = sorted(set(page.queries))
        shown = str(queries[0]) if len(queries) == 1 else f"{queries[0]}–{queries[-1]}"
        p95 = page.percentile(95)
        lines.append(
            f"| {page.name:<46} | {page.percentile(50):>6.0f} | {p95:>6.0f} | {max(page.timings):>6.0f} "
            f"| {p95 / baseline.percentile(95):>14.1f}x | {shown:>7} | {page.slowest_query_ms:>16.1f} "
            f"| {'**' + str(len(page.unbounded)) + '**' if page.unbounded else 'none':<15} |"
        )
    slow = [p.name for p in results[1:] if p.percentile(95) >= TARGET_P95_MS]
    lines.append("")
    lines.append(f"p95 under {TARGET_P95_MS} ms: " + ("every page" if not slow else "NOT " + "; ".join(slow)))
    for page in results:
        for sql in page.unbounded:
            lines.append(f"unbounded COUNT in {page.name}: {sql[:300]}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=40, help="timed requests per page (after 2 warm-ups)")
    parser.add_argument("--reuse", action="store_true", help="skip generation if the data is already there")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = scale_database_url()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    from bench.worker_db_reuse import ensure_database

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    from messaging.models import DailyMessageCount, Message
    from tenants.models import Reseller

    def say(text: str) -> None:
        print(f"  {text}", file=sys.stderr, flush=True)

    reseller = Reseller.objects.filter(slug=RESELLER_SLUG).first()
    have = (reseller.tenants.count(), Message.objects.filter(tenant__reseller=reseller).count()) if reseller else None
    if args.reuse and have == (args.tenants, args.messages):
        world = find_world(reseller)
        generated = "reused"
    else:
        if args.reuse:
            say(f"nothing to reuse (found {have}); generating")
        call_command("flush", interactive=False, verbosity=0)  # the benchmark owns this database
        started = time.perf_counter()
        world = generate(args.tenants, args.messages, say)
        generated = f"generated in {time.perf_counter() - started:.0f} s"

    rollup = []
    for days in (2, 15, 62):  # 62: last month too, whose statement is measured
        started = time.perf_counter()
        DailyMessageCount.recompute(days)
        rollup.append(f"{days} days {time.perf_counter() - started:.2f} s")

    results = measure(world, args.requests)
    heading = (
        f"\n{args.tenants} tenants, {args.messages:,} messages ({generated}; busiest tenant {world.busiest.name}: "
        f"{Message.objects.filter(tenant=world.busiest).count():,}); rollup {', '.join(rollup)}.\n"
        f"{args.requests} requests per page through Django's test client as a reseller admin, round-robin."
    )
    print(table(results, heading))


if __name__ == "__main__":
    main()
