"""API tokens: shown once, stored as a hash, revocable."""

import pytest
from django.urls import reverse

from tenants.models import ApiToken, AuditEvent
from tests.conftest import token_client

pytestmark = pytest.mark.django_db


def test_a_token_created_in_the_admin_is_shown_once_and_stored_hashed(client, operator, tenant):
    client.force_login(operator)
    response = client.post(reverse("admin:tenants_apitoken_add"), {"name": "billing export"})
    assert response.status_code == 200
    plaintext = response.context["plaintext"]
    assert plaintext.startswith("pmp_")
    token = ApiToken.objects.get()
    assert plaintext not in token.key_hash and len(token.key_hash) == 64
    assert plaintext not in client.get(reverse("admin:tenants_apitoken_changelist")).content.decode()

    api = client.__class__()
    listed = api.get("/api/v1/tenants/", HTTP_AUTHORIZATION=f"Token {plaintext}")
    assert listed.status_code == 200 and listed.json()["results"][0]["name"] == "Tenant A"
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert AuditEvent.objects.filter(action="token.created", actor=operator).count() == 1


def test_a_revoked_token_is_refused(client, operator):
    token, plaintext = ApiToken.issue(operator, "old")
    client.force_login(operator)
    client.post(reverse("admin:tenants_apitoken_changelist"), {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.revoked_at is not None
    response = client.__class__().get("/api/v1/tenants/", HTTP_AUTHORIZATION=f"Token {plaintext}")
    assert response.status_code == 401
    assert AuditEvent.objects.filter(action="token.revoked").count() == 1


@pytest.mark.parametrize(
    "header",
    ["Token", "Token pmp_abc", "Token pmp_000000000000_wrong", "Token a b", "Bearer pmp_x_y"],
)
def test_malformed_or_unknown_tokens_are_refused(api_client, operator, header):
    ApiToken.issue(operator, "real")
    assert api_client.get("/api/v1/tenants/", HTTP_AUTHORIZATION=header).status_code == 401


def test_a_token_of_a_deactivated_user_is_refused(operator):
    client = token_client(operator)
    operator.is_active = False
    operator.save()
    assert client.get("/api/v1/tenants/").status_code == 401


def test_a_token_acts_with_its_users_current_rights(operator, reseller_admin):
    from tenants import services

    client = token_client(operator)
    assert client.get("/api/v1/trunks/").status_code == 200
    services.member_set_active(actor=reseller_admin, membership=operator.memberships.get(), active=False)
    assert client.get("/api/v1/trunks/").status_code == 403


def test_other_peoples_tokens_are_invisible(client, operator, reseller_admin):
    theirs, _ = ApiToken.issue(reseller_admin, "admin's")
    client.force_login(operator)
    assert client.get(reverse("admin:tenants_apitoken_change", args=[theirs.pk])).status_code == 404


def test_a_new_token_has_a_copy_button_beside_it(client, operator):
    client.force_login(operator)
    page = client.post(reverse("admin:tenants_apitoken_add"), {"name": "billing export"}).content.decode()
    assert 'id="copy-token" data-copy-target="token"' in page and 'id="token"' in page
    assert "navigator.clipboard.writeText" in page
