"""Shared fixtures: two resellers with a tenant each, users in every role, and one row of every model."""

import ipaddress
import os
import socket
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from messaging.models import OptOut
from tenants.models import ApiToken, Membership
from tests import factories as f

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


@pytest.fixture(autouse=True)
def no_dns_off_the_machine(monkeypatch):
    """Every test's requests stay on this machine, DNS queries included: a name other than localhost (a PBX's FQDN
    such as acme.3cx.us, no-such-pbx.invalid) does not resolve instead of asking the nameserver. Address literals
    and localhost resolve as they are. A test that needs a name to resolve installs its own resolver over this one
    (tests/test_ssrf.py's FakeDns)."""
    real = socket.getaddrinfo

    def local_only(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name is None or str(name).lower() in LOCAL_NAMES:
            return real(host, port, *args, **kwargs)
        try:
            ipaddress.ip_address(str(name).split("%")[0])
        except ValueError:
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: not resolved in tests (no DNS query leaves)") from None
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)


@pytest.fixture
def reseller(db):
    return f.ResellerFactory(name="Reseller A")


@pytest.fixture
def tenant(reseller):
    return f.TenantFactory(reseller=reseller, name="Tenant A")


@pytest.fixture
def other_reseller(db):
    return f.ResellerFactory(name="Reseller B")


@pytest.fixture
def other_tenant(other_reseller):
    """A tenant of another reseller: nothing of it may ever be visible to reseller A's people."""
    return f.TenantFactory(reseller=other_reseller, name="Tenant B")


def member(role: str, **org):
    user = f.UserFactory()
    f.MembershipFactory(user=user, role=role, **org)
    return user


@pytest.fixture
def reseller_admin(reseller):
    return member(Membership.Role.RESELLER_ADMIN, reseller=reseller)


@pytest.fixture
def operator(reseller):
    return member(Membership.Role.RESELLER_OPERATOR, reseller=reseller)


@pytest.fixture
def viewer(tenant):
    return member(Membership.Role.TENANT_VIEWER, tenant=tenant)


@pytest.fixture
def other_admin(other_reseller):
    return member(Membership.Role.RESELLER_ADMIN, reseller=other_reseller)


@pytest.fixture
def api_client():
    return APIClient()


def token_client(user) -> APIClient:
    client = APIClient()
    _, plaintext = ApiToken.issue(user, "test")
    client.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")
    return client


def build_world(tenant, owner) -> dict[str, object]:
    """One row of every tenant-scoped model for this tenant; `owner` is a user of its reseller."""
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    trunk = f.TrunkFactory(tenant=tenant)
    number = f.PhoneNumberFactory(account=account, tenant=tenant, trunk=trunk)
    sender = f.SenderIDFactory(tenant=tenant, account=account)
    message = f.MessageFactory(tenant=tenant, account=account, trunk=trunk, sender=sender)
    inbound = f.MessageFactory(
        tenant=tenant, account=account, trunk=trunk, direction="inbound", status="received", from_number="+447400123456"
    )
    return {
        "tenants.reseller": tenant.reseller,
        "tenants.tenant": tenant,
        "tenants.membership": owner.memberships.get(),
        "tenants.apitoken": ApiToken.issue(owner, "world")[0],
        "messaging.wavixaccount": account,
        "messaging.phonenumber": number,
        "messaging.trunk": trunk,
        "messaging.senderid": sender,
        "messaging.senderidcountry": f.SenderIDCountryFactory(sender=sender),
        "messaging.message": message,
        "messaging.webhookevent": f.WebhookEventFactory(account=account),
        "messaging.delivery": f.DeliveryFactory(message=inbound, trunk=trunk),
        "tenants.auditevent": f.audit_event(tenant, actor=owner),
        "messaging.optout": OptOut.objects.create(tenant=tenant, number="+447700900001", keyword="STOP"),
    }


@pytest.fixture
def world(tenant, reseller_admin):
    return build_world(tenant, reseller_admin)


@pytest.fixture
def other_world(other_tenant, other_admin):
    return build_world(other_tenant, other_admin)


# A live server serving the Wavix sandbox needs committed data; flushing after each such test would also remove the
# migrated country rules and groups, hence serialized_rollback.
live_db = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(scope="session")
def live_server(django_db_setup, live_server):
    """pytest-django's live server, stopped before the test database is dropped (it holds a connection)."""
    return live_server


@pytest.fixture
def wavix(live_server, settings):
    """Point the portal at the Wavix sandbox served by a live server, over real HTTP."""
    from messaging import threecx
    from messaging import wavix as wavix_client

    settings.WAVIX_API_URL = f"{live_server.url}/sandbox/wavix"
    settings.PUBLIC_BASE_URL = live_server.url
    cache.clear()  # the sandbox's per-second counters
    yield live_server
    # A pooled keep-alive connection keeps the server's handler thread, and its database connection, alive.
    if wavix_client._http is not None:
        wavix_client._http.close()
        wavix_client._http = None
    if threecx._session is not None:
        threecx._session.close()
        threecx._session = None


@pytest.fixture
def sandbox_account(wavix):
    return f.SandboxAccountFactory(name="Northwind at Wavix")


def test_database_url() -> str:
    """The URL of the database this test runs on (the test database), for processes a test starts."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


@pytest.fixture
def chromium(monkeypatch):
    """Debian's Chromium, headless, driven by Playwright (its own browser download is blocked here)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop runs in this thread
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        yield browser
        browser.close()
