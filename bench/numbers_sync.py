"""How long a Wavix number sync takes for a large account, and where the time goes.

Serves the sandbox from gunicorn on PostgreSQL, gives a sandbox account N numbers, then times in the same run:
fetching every page (the baseline: HTTP + parsing only), a full sync that stores the rows, and a sync that also
wires every number (one PATCH each, as when a reseller enables SMS on a trunk holding all of them).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/14 \
        .venv/bin/python bench/numbers_sync.py [--numbers 1000]
"""

import argparse
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from messaging.services import accounts

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PORT = 8765


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=1000)
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
    with gunicorn("portal.wsgi --workers 2", PORT):
        import django

        django.setup()
        print(run(args.numbers))


@contextmanager
def gunicorn(app_and_options: str, port: int):
    """gunicorn serving `app_and_options` on 127.0.0.1:port with this process's environment, until the block
    ends; yields the master process (its children are the workers)."""
    if port_answers(port):  # a server left over from an interrupted run would be measured instead of ours
        sys.exit(f"127.0.0.1:{port} is already in use; stop whatever serves it (an earlier benchmark?) first")
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", *app_and_options.split(), "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=os.environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield web
    finally:
        web.terminate()
        web.wait(10)


def port_answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def wait_for_port(port: int) -> None:
    for _ in range(100):
        if port_answers(port):
            return
        time.sleep(0.1)
    sys.exit("gunicorn did not start")


def run(count: int) -> str:
    from messaging.models import PhoneNumber, Trunk, WavixAccount
    from messaging.wavix import WavixClient
    from sandbox.models import SandboxAccount, SandboxNumber
    from tenants.models import Reseller, Tenant

    # A clean slate from any earlier run.
    SandboxAccount.objects.filter(name="bench").delete()
    PhoneNumber.objects.filter(account__name="bench").delete()
    WavixAccount.objects.filter(name="bench").delete()
    at_wavix = SandboxAccount.objects.create(name="bench", rate_limit_per_second=100000)
    SandboxNumber.objects.bulk_create(
        SandboxNumber(account=at_wavix, number=f"1415{5550000 + n:07d}", country="US") for n in range(count)
    )
    reseller, _ = Reseller.objects.get_or_create(slug="bench", defaults={"name": "Bench reseller"})
    tenant, _ = Tenant.objects.get_or_create(reseller=reseller, slug="bench", defaults={"name": "Bench tenant"})
    account = WavixAccount(reseller=reseller, tenant=tenant, name="bench")
    account.set_api_key(at_wavix.api_key)
    account.save()
    trunk, _ = Trunk.objects.get_or_create(tenant=tenant, name="bench", defaults={"pbx_fqdn": "bench.example.com"})

    rows = []
    started = time.perf_counter()
    fetched = sum(len(numbers) for _, _, numbers in WavixClient.for_account(account).number_pages())
    rows.append(("fetch every page (baseline)", fetched, time.perf_counter() - started))

    started = time.perf_counter()
    accounts.numbers_sync(account, wire=False)
    rows.append(("sync: fetch + store rows", account.numbers.count(), time.perf_counter() - started))

    Trunk.objects.filter(pk=trunk.pk).update(sms_enabled=True)
    account.numbers.update(trunk=trunk)
    started = time.perf_counter()
    wired = accounts.numbers_sync(account, wire=True)["wired"]
    rows.append(("sync + wire every number (bulk updates of 100)", wired, time.perf_counter() - started))

    baseline = rows[0][2]
    lines = [f"\nSandbox on gunicorn (2 workers) + PostgreSQL; {count} numbers, pages of 100\n"]
    lines.append(f"| {'step':<46} | numbers | seconds | numbers/s | vs baseline |")
    lines.append(f"|{'-' * 48}|---------|---------|-----------|-------------|")
    for name, numbers, seconds in rows:
        rate, ratio = numbers / seconds, seconds / baseline
        lines.append(f"| {name:<46} | {numbers:>7} | {seconds:>7.2f} | {rate:>9.0f} | {ratio:>10.1f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
