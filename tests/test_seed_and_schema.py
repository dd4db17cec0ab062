"""The demo seed is repeatable and its printed login works; the OpenAPI schema and docs are served locally."""

import io

import pytest
from django.core.management import CommandError, call_command

from messaging.models import Message, SenderIDCountry
from tenants.models import Tenant

pytestmark = pytest.mark.django_db


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_seed_demo_is_idempotent_and_its_login_works(client):
    printed = seed()
    counts = (Tenant.objects.count(), Message.objects.count(), SenderIDCountry.objects.count())
    seed()
    assert (Tenant.objects.count(), Message.objects.count(), SenderIDCountry.objects.count()) == counts
    assert counts[0] == 2 and counts[1] > 0
    assert set(SenderIDCountry.objects.values_list("status", flat=True)) >= {
        "allowlisted",  # paperwork-free countries: Wavix (and the sandbox) allow-list them at once
        "in_review",
        "approved",
        "rejected",
    }
    assert "demo@northwind.example / demo-portal-2026" in printed
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "demo@northwind.example", "password": "demo-portal-2026"},
        follow=True,
    )
    page = response.content.decode()
    assert response.status_code == 200 and "Log out" in page
    tenants_page = client.get("/admin/tenants/tenant/").content.decode()
    assert "Acme Dental" in tenants_page and "Bistro Uno" in tenants_page


def test_seed_demo_refuses_outside_development(settings):
    settings.DEMO_ENABLED = False
    with pytest.raises(CommandError, match="only created when DEBUG"):
        call_command("seed_demo")


def test_the_openapi_schema_builds_without_warnings_and_validates():
    out = io.StringIO()
    call_command("spectacular", "--fail-on-warn", "--validate", "--format", "openapi-json", stdout=out)
    schema = out.getvalue()
    for path in ("/api/v1/tenants/", "/api/v1/trunks/", "/api/v1/sender-ids/", "/api/v1/messages/"):
        assert f'"{path}"' in schema
    assert '"ApiToken"' in schema


def test_the_api_docs_page_uses_local_assets(client):
    page = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in page
    assert "cdn.jsdelivr.net" not in page and "unpkg.com" not in page
    assert client.get("/api/schema/").status_code == 200
