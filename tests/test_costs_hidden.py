"""Wavix's charge is the reseller's cost, not its customers' business (tenants.access.may_see_costs): a tenant viewer
and a tenant's API token never see it — not in the message log, a text's page, its live refresh, the CSV export or
the API — while the reseller's people see it everywhere."""

from decimal import Decimal

import pytest
from django.urls import reverse

from tenants.models import ApiToken
from tests import factories as f
from tests.conftest import token_client

pytestmark = pytest.mark.django_db
CHARGE = Decimal("0.01234")


@pytest.fixture
def charged(tenant):
    return f.MessageFactory(tenant=tenant, status="delivered", charge=CHARGE, wavix_message_id="w-costs")


def test_a_tenant_viewer_never_sees_wavixs_charge(client, charged, viewer, reseller_admin, tenant):
    for user, sees in ((reseller_admin, True), (viewer, False)):
        client.force_login(user)
        pages = [
            client.get(reverse("admin:messaging_message_changelist")),
            client.get(reverse("admin:messaging_message_change", args=[charged.pk])),
            client.get(reverse("admin:messaging_message_status", args=[charged.pk])),
            client.get(reverse("admin:messaging_message_export")),
        ]
        for page in pages:
            assert page.status_code == 200
            body = b"".join(page.streaming_content) if page.streaming else page.content
            assert ("0.01234" in body.decode()) is sees, (user, page.request["PATH_INFO"])
        assert (token_client(user).get(f"/api/v1/messages/{charged.pk}/").json()["charge"] == "0.01234") is sees
    _, plaintext = ApiToken.issue(reseller_admin, "integration", tenant=tenant)
    from rest_framework.test import APIClient

    integration = APIClient()
    integration.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")
    assert integration.get("/api/v1/messages/").json()["results"][0]["charge"] is None


def test_a_manager_elsewhere_who_views_this_tenant_sees_no_charge_in_lists_or_on_its_pages(
    client, charged, other_admin, tenant
):
    """Reseller B's admin who is also a viewer of reseller A's tenant: A's costs are not theirs to see. The lists
    mix tenants, so they show no charge at all to such a person; a text's own page goes by its tenant."""
    f.MembershipFactory(user=other_admin, role="tenant_viewer", tenant=tenant)
    client.force_login(other_admin)
    for url in (
        reverse("admin:messaging_message_changelist"),
        reverse("admin:messaging_message_change", args=[charged.pk]),
        reverse("admin:messaging_message_export"),
    ):
        page = client.get(url)
        assert page.status_code == 200
        body = b"".join(page.streaming_content) if page.streaming else page.content
        assert "0.01234" not in body.decode(), url
    assert token_client(other_admin).get(f"/api/v1/messages/{charged.pk}/").json()["charge"] is None
