"""The portal's webhook URLs carry their account's secret: whoever holds one can post forged texts and delivery
reports into every tenant of the account. Only the managers of the account's reseller and platform staff see them
whole; tenant viewers and tenant API tokens see them masked, or not at all — on every page, in every API field,
export and log line."""

import logging

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from messaging.models import masked_url
from messaging.services import accounts
from tenants import access
from tenants.models import ApiToken, Membership
from tests import factories as f
from tests.conftest import build_world, member, token_client
from tests.crawl import admin_urls, api_urls, body_of

pytestmark = pytest.mark.django_db

FOREIGN_URL = "https://elsewhere.example/hooks/f0reign-t0ken-5ecret-7788/"  # someone else's webhook, secret included


def secret_of(url: str) -> str:
    return url.rstrip("/").split("/")[-2]


def masked(url: str) -> str:
    return url.replace(secret_of(url), "•••")


@pytest.fixture
def shared(tenant):
    """A reseller account shared by tenant A and its sibling tenant, one number of A's wired to the portal, and
    a number of A's own account relaying elsewhere (drift)."""
    sibling = f.TenantFactory(reseller=tenant.reseller, name="Sibling of A")
    account = f.WavixAccountFactory(reseller=tenant.reseller, name="Shared")
    own = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant, name="Own")
    trunk = f.TrunkFactory(tenant=tenant, name="Front desk", sms_enabled=True)
    wired = f.PhoneNumberFactory(
        account=account,
        tenant=tenant,
        trunk=trunk,
        number="+14155550100",
        sms_relay_url=account.inbound_webhook_url,
        relay_set_at=timezone.now(),
    )
    drifted = f.PhoneNumberFactory(
        account=own, tenant=tenant, trunk=trunk, number="+14155550101", sms_relay_url=FOREIGN_URL, relay_drift=True
    )
    f.PhoneNumberFactory(
        account=account, tenant=sibling, number="+14155550102", sms_relay_url=account.inbound_webhook_url
    )
    return {"account": account, "own": own, "trunk": trunk, "wired": wired, "drifted": drifted, "sibling": sibling}


def tenant_token_client(reseller_admin, tenant) -> APIClient:
    """A tenant API token: made by a reseller admin for the tenant's integration."""
    client = APIClient()
    _, plaintext = ApiToken.issue(reseller_admin, "integration", tenant=tenant)
    client.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")
    return client


@pytest.fixture
def api_as(viewer, operator, reseller_admin, tenant):
    """An API client acting as a tenant viewer, a tenant token, or a reseller manager (operator)."""
    return {
        "viewer": lambda: token_client(viewer),
        "tenant token": lambda: tenant_token_client(reseller_admin, tenant),
        "manager": lambda: token_client(operator),
    }


WHO_SEES = [("viewer", False), ("tenant token", False), ("manager", True)]


# --------------------------------------------------------------------------------------------------------------
# The decision and the masking
# --------------------------------------------------------------------------------------------------------------


def test_only_the_rows_reseller_managers_and_platform_staff_may_see_webhook_urls(
    shared, tenant, viewer, operator, reseller_admin, other_admin
):
    account = shared["account"]
    superuser = f.UserFactory(is_superuser=True)
    staff = f.UserFactory(is_staff=True)
    # A manager of another reseller who is also a viewer of tenant A: viewing A does not make A's URLs theirs.
    f.MembershipFactory(user=other_admin, tenant=tenant, role=Membership.Role.TENANT_VIEWER)
    for row in (account, shared["wired"], shared["trunk"], tenant):
        assert access.may_see_webhook_urls(operator, row) and access.may_see_webhook_urls(reseller_admin, row)
        assert access.may_see_webhook_urls(superuser, row) and access.may_see_webhook_urls(staff, row)
        assert not access.may_see_webhook_urls(viewer, row)
        assert not access.may_see_webhook_urls(other_admin, row)
        assert not access.may_see_webhook_urls(reseller_admin, row, token_tenant=tenant)
        assert not access.may_see_webhook_urls(None, row)
    assert access.may_see_webhook_urls(operator) and not access.may_see_webhook_urls(viewer)


def test_a_portal_webhook_url_is_masked_to_its_kind_and_any_other_url_to_host_and_last_four(shared):
    url = shared["account"].inbound_webhook_url
    assert masked_url(url) == "http://127.0.0.1:8000/webhooks/wavix/•••/inbound/" == masked(url)
    assert masked_url(shared["account"].dlr_webhook_url).endswith("/webhooks/wavix/•••/dlr/")
    assert masked_url(FOREIGN_URL) == "https://elsewhere.example/…788/"
    assert masked_url("") == ""


# --------------------------------------------------------------------------------------------------------------
# API
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who,whole", WHO_SEES)
def test_the_numbers_api_shows_relay_urls_whole_only_to_managers(api_as, shared, other_world, who, whole):
    client = api_as[who]()
    account, wired, drifted = shared["account"], shared["wired"], shared["drifted"]
    listed = {row["number"]: row for row in client.get("/api/v1/numbers/").json()["results"]}
    detail = client.get(f"/api/v1/numbers/{wired.pk}/").json()
    seen_wired = account.inbound_webhook_url if whole else masked(account.inbound_webhook_url)
    assert listed[wired.number]["sms_relay_url"] == detail["sms_relay_url"] == seen_wired
    assert listed[drifted.number]["sms_relay_url"] == (FOREIGN_URL if whole else "https://elsewhere.example/…788/")
    assert other_world["messaging.phonenumber"].number not in listed
    if not whole:
        text = (
            client.get("/api/v1/numbers/").content.decode()
            + client.get(f"/api/v1/numbers/{wired.pk}/").content.decode()
        )
        assert secret_of(account.inbound_webhook_url) not in text and "f0reign-t0ken" not in text


@pytest.mark.parametrize("who,whole", WHO_SEES)
def test_the_wavix_accounts_api_shows_webhook_urls_whole_only_to_managers(api_as, shared, other_world, who, whole):
    client = api_as[who]()
    own = shared["own"]
    listed = {row["id"]: row for row in client.get("/api/v1/wavix-accounts/").json()["results"]}
    detail = client.get(f"/api/v1/wavix-accounts/{own.pk}/").json()
    for body in (listed[own.pk], detail):
        for field, url in (("inbound_webhook_url", own.inbound_webhook_url), ("dlr_webhook_url", own.dlr_webhook_url)):
            assert body[field] == (url if whole else masked(url))
    assert other_world["messaging.wavixaccount"].pk not in listed


# --------------------------------------------------------------------------------------------------------------
# Admin pages
# --------------------------------------------------------------------------------------------------------------


def page(client, user, url) -> str:
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def test_the_number_page_shows_the_relay_url_to_managers_and_not_to_viewers(client, shared, viewer, operator):
    account, wired = shared["account"], shared["wired"]
    url = reverse("admin:messaging_phonenumber_change", args=[wired.pk])
    assert account.inbound_webhook_url in page(client, operator, url)
    shown = page(client, viewer, url)
    assert secret_of(account.inbound_webhook_url) not in shown
    assert "→ portal" in shown  # whether it relays to the portal is still said


def test_the_drifted_number_page_shows_where_it_relays_to_managers_only(client, shared, viewer, operator):
    url = reverse("admin:messaging_phonenumber_change", args=[shared["drifted"].pk])
    assert FOREIGN_URL in page(client, operator, url)
    shown = page(client, viewer, url)
    assert "f0reign-t0ken" not in shown and "drift: https://elsewhere.example/…788/" in shown


def test_the_number_list_masks_drift_urls_for_everyone(client, shared, viewer, operator):
    url = reverse("admin:messaging_phonenumber_changelist")
    for user in (viewer, operator):
        shown = page(client, user, url)
        assert "drift: https://elsewhere.example/…788/" in shown and "f0reign-t0ken" not in shown
        assert secret_of(shared["account"].inbound_webhook_url) not in shown


@pytest.mark.parametrize("model", ["messaging_trunk", "tenants_tenant"])
def test_drift_panels_show_the_url_and_the_repair_to_managers_and_a_masked_list_to_viewers(
    client, shared, viewer, operator, model
):
    obj = shared["trunk"] if model == "messaging_trunk" else shared["trunk"].tenant
    url = reverse(f"admin:{model}_change", args=[obj.pk])
    managed = page(client, operator, url)
    assert f"now relays to <code>{FOREIGN_URL}</code>" in managed and "Repair: point them at the portal" in managed
    shown = page(client, viewer, url)
    assert "now relays to <code>https://elsewhere.example/…788/</code>" in shown
    assert "f0reign-t0ken" not in shown and "Repair: point them at the portal" not in shown


def test_the_account_page_shows_its_webhook_urls_to_managers_and_not_to_viewers(client, shared, viewer, operator):
    own = shared["own"]
    url = reverse("admin:messaging_wavixaccount_change", args=[own.pk])
    managed = page(client, operator, url)
    assert own.inbound_webhook_url in managed and own.dlr_webhook_url in managed
    shown = page(client, viewer, url)
    assert secret_of(own.inbound_webhook_url) not in shown and "••••" in shown  # the key's last 4 still shown


def test_the_setup_wizard_shows_the_dlr_url_to_managers_and_is_closed_to_viewers(client, shared, viewer, operator):
    trunk, account = shared["trunk"], shared["account"]
    sender = f.SenderIDFactory(tenant=trunk.tenant, account=account, type="numeric", value=shared["wired"].number)
    trunk.main_sender = sender
    trunk.save()
    url = reverse("admin:messaging_trunk_setup_step", args=[trunk.pk, "enable"])
    assert f"names {account.dlr_webhook_url} as its callback" in page(client, operator, url)
    client.force_login(viewer)
    refused = client.get(url)
    assert refused.status_code == 403 and secret_of(account.dlr_webhook_url) not in refused.content.decode()


def test_the_sandbox_and_its_link_are_for_managers_not_viewers(client, shared, viewer, operator, settings):
    assert settings.SANDBOX_ENABLED
    f.SandboxNumberFactory(number="14155550100", sms_relay_url=shared["account"].inbound_webhook_url)
    client.force_login(viewer)
    assert client.get(reverse("sandbox:index")).status_code == 404
    assert client.post(reverse("sandbox:account-create"), {"name": "x"}).status_code == 404
    assert "Wavix sandbox" not in page(client, viewer, reverse("admin:index"))
    assert "Wavix sandbox" in page(client, operator, reverse("admin:index"))
    assert shared["account"].inbound_webhook_url in page(client, operator, reverse("sandbox:index"))


def test_the_sandbox_logs_its_delivery_reports_without_the_portals_secret(shared, caplog, settings):
    from sandbox.models import SandboxMessage
    from sandbox.tasks import sandbox_delivery_report

    settings.DEBUG = True  # the sandbox logs every report only then
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:1"  # nothing listens there: the report fails, and says so
    url = shared["account"].dlr_webhook_url
    message = SandboxMessage.objects.create(
        account=f.SandboxAccountFactory(), from_number="14155550100", to_number="447400123456", callback_url=url
    )
    caplog.set_level(logging.INFO, logger="sandbox.tasks")
    sandbox_delivery_report(message.pk, "sent")
    logged = [r.getMessage() for r in caplog.records if r.name == "sandbox.tasks"]
    assert len(logged) == 2 and all("/webhooks/wavix/***/dlr/" in line for line in logged)
    assert secret_of(url) not in " ".join(logged)


# --------------------------------------------------------------------------------------------------------------
# Everything a viewer and a tenant token can reach, and every log line
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def captured_logs(caplog):
    """Every log record, SQL included."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")  # pinned to INFO by the settings
    connection.force_debug_cursor = True
    yield caplog
    connection.force_debug_cursor = False


def test_no_page_export_api_answer_or_log_line_shows_a_viewer_or_a_tenant_token_a_webhook_secret(
    client, shared, tenant, viewer, reseller_admin, other_world, captured_logs, settings
):

    settings.WAVIX_API_URL = "http://127.0.0.1:1/wavix"  # pages that ask Wavix get "unreachable", never a real call
    world = build_world(tenant, member(Membership.Role.RESELLER_ADMIN, reseller=tenant.reseller))
    world_account = world["messaging.wavixaccount"]
    world["messaging.phonenumber"].sms_relay_url = world_account.inbound_webhook_url
    world["messaging.phonenumber"].save()
    accounts.webhook_secret_rotate(actor=reseller_admin, account=shared["account"])  # an audit row, and a new secret
    every_account = [shared["account"], shared["own"], world_account]
    secrets = {secret_of(a.inbound_webhook_url) for a in every_account}
    for account in every_account:
        account.refresh_from_db()
        secrets.add(secret_of(account.inbound_webhook_url))
    needles = [*secrets, "f0reign-t0ken"]
    captured_logs.clear()  # the set-up's own SQL wrote the URLs; from here on, only what the crawl logs

    client.force_login(viewer)
    reached = 0
    for url in [*admin_urls(viewer), *api_urls(client), "/sandbox/"]:
        response = client.get(url)
        assert response.status_code < 500, url
        text = body_of(response)
        reached += 1
        for needle in needles:
            assert needle not in text, (url, needle)
    integration = tenant_token_client(reseller_admin, tenant)
    for url in api_urls(integration):
        text = body_of(integration.get(url))
        reached += 1
        for needle in needles:
            assert needle not in text, (url, needle)
    assert reached > 40  # the crawl reached detail pages and custom pages, not only the lists

    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in captured_logs.records)
    assert "SELECT" in logged  # SQL was captured too
    for needle in needles:
        assert needle not in logged, needle
