"""Bulk onboarding (messaging.services.onboarding): how long the check and the one-transaction create take for a file
of N customers, each with a trunk, two numbers and a sender ID, against a baseline measured in the same run — the
same rows written by bare bulk inserts, with no check, no audit and no wizard state.

PostgreSQL only (DATABASE_URL names the server; the benchmark owns the database `portal_onboarding`, and empties it
before each size):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/onboarding.py [--customers 50,500,1000]
"""

import argparse
import csv
import io
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE = "portal_onboarding"


def world(customers: int):
    """A reseller with its admin and a shared Wavix account holding two numbers per customer."""
    from django.contrib.auth import get_user_model

    from messaging.models import PhoneNumber, WavixAccount
    from tenants.models import Membership, Reseller

    reseller = Reseller.objects.create(name="Onboarding Telecom", slug="onboarding")
    admin = get_user_model().objects.create_user(username="admin@onboarding.example", email="admin@onboarding.example")
    Membership.objects.create(user=admin, reseller=reseller, role=Membership.Role.RESELLER_ADMIN)
    account = WavixAccount(reseller=reseller, name="Shared")
    account.set_api_key("onboarding-shared-key-0000")
    account.save()
    PhoneNumber.objects.bulk_create(
        PhoneNumber(account=account, number=f"+1415555{n:04d}", country="US", sms_enabled=True)
        for n in range(customers * 2)
    )
    return reseller, admin, account


def customers_csv(customers: int) -> bytes:
    from messaging.services.onboarding import COLUMNS

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for i in range(customers):
        numbers = f"+1415555{2 * i:04d} +1415555{2 * i + 1:04d}"
        sender = f"+1415555{2 * i:04d}" if i % 2 else f"Brand{i:05d}"
        writer.writerow([f"Customer {i:05d}", "US", "Main office", f"customer-{i:05d}.3cx.us", numbers, sender])
    return out.getvalue().encode()


def bare(reseller, customers: int) -> None:
    """The baseline: the same tenants, trunks and assignments as bulk inserts and one bulk update."""
    from messaging.models import PhoneNumber, Trunk
    from tenants.models import Tenant

    tenants = Tenant.objects.bulk_create(
        Tenant(reseller=reseller, name=f"Bare {i:05d}", slug=f"bare-{i:05d}", default_country="US")
        for i in range(customers)
    )
    trunks = Trunk.objects.bulk_create(
        Trunk(tenant=t, name="Main office", pbx_fqdn=f"bare-{i:05d}.3cx.us") for i, t in enumerate(tenants)
    )
    numbers = list(PhoneNumber.objects.order_by("number")[: customers * 2])
    for i, number in enumerate(numbers):
        number.tenant, number.trunk = tenants[i // 2], trunks[i // 2]
    PhoneNumber.objects.bulk_update(numbers, ["tenant", "trunk"], batch_size=1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", default="50,500,1000")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL server.")
    os.environ["DATABASE_URL"] = urlunsplit(urlsplit(url)._replace(path=f"/{DATABASE}"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    from bench.worker_db_reuse import ensure_database

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    from messaging.models import PhoneNumber, Trunk
    from messaging.services import onboarding
    from tenants.models import Tenant

    print("| customers | check s | create s | create ms per customer | bare inserts s | create ÷ bare |")
    print("|---:|---:|---:|---:|---:|---:|")
    for customers in (int(n) for n in args.customers.split(",")):
        call_command("flush", interactive=False, verbosity=0)
        reseller, admin, _ = world(customers)
        content = customers_csv(customers)
        started = time.perf_counter()
        check = onboarding.onboarding_check(content, reseller=reseller, user=admin)
        checked = time.perf_counter() - started
        assert check.ok, [p.errors for p in check.bad_rows][:3]
        started = time.perf_counter()
        created = onboarding.onboarding_create(content, reseller=reseller, actor=admin, source="bench.csv")
        create = time.perf_counter() - started
        assert created.ok and Tenant.objects.count() == customers
        assert PhoneNumber.objects.exclude(tenant=None).count() == customers * 2
        # The baseline in the same run: the same rows again, bare (its own tenants, the numbers re-assigned).
        started = time.perf_counter()
        with transaction.atomic():
            bare(reseller, customers)
        baseline = time.perf_counter() - started
        assert Trunk.objects.count() == customers * 2
        print(
            f"| {customers} | {checked:.2f} | {create:.2f} | {1000 * create / customers:.1f} | {baseline:.2f} "
            f"| {create / baseline:.0f}× |"
        )


if __name__ == "__main__":
    main()
