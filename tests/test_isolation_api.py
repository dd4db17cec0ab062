"""Every API endpoint is scoped: A sees A's rows, B's ids answer 404 for every method, viewers write nothing."""

import pytest

from messaging.models import CountryRule
from portal.urls import router
from tenants.access import PUBLIC_READ
from tests.conftest import build_world, token_client

pytestmark = pytest.mark.django_db

ENDPOINTS = [(prefix, viewset) for prefix, viewset, _ in router.registry]
SCOPED = [(p, v) for p, v in ENDPOINTS if v.queryset.model._meta.label_lower not in PUBLIC_READ]
WRITABLE = [(p, v) for p, v in SCOPED if hasattr(v, "create")]


def label_of(viewset) -> str:
    return viewset.queryset.model._meta.label_lower


@pytest.fixture
def worlds(tenant, reseller_admin, other_tenant, other_admin):
    return build_world(tenant, reseller_admin), build_world(other_tenant, other_admin)


def ids_listed(client, prefix) -> set:
    response = client.get(f"/api/v1/{prefix}/", {"page_size": 500})
    assert response.status_code == 200, response.content
    body = response.json()
    rows = body["results"] if isinstance(body, dict) else body
    return {row.get("id", row.get("country")) for row in rows}


def test_every_endpoint_is_scoped_or_public_reference_data():
    assert {label_of(v) for _, v in SCOPED} == {
        "tenants.tenant",
        "tenants.membership",
        "messaging.wavixaccount",
        "messaging.phonenumber",
        "messaging.trunk",
        "messaging.senderid",
        "messaging.message",
    }


@pytest.mark.parametrize("prefix,viewset", SCOPED)
def test_list_shows_own_rows_only(worlds, reseller_admin, prefix, viewset):
    mine, theirs = worlds
    listed = ids_listed(token_client(reseller_admin), prefix)
    assert mine[label_of(viewset)].pk in listed
    assert theirs[label_of(viewset)].pk not in listed


@pytest.mark.parametrize("prefix,viewset", SCOPED)
@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_another_resellers_id_answers_404_for_every_method(worlds, reseller_admin, prefix, viewset, method):
    _, theirs = worlds
    client = token_client(reseller_admin)
    response = getattr(client, method)(f"/api/v1/{prefix}/{theirs[label_of(viewset)].pk}/", {}, format="json")
    routed = method == "get" or (method in ("put", "patch") and hasattr(viewset, "update"))
    routed = routed or (method == "delete" and hasattr(viewset, "destroy"))
    # A method the endpoint does not offer is refused the same way for every id, so it reveals nothing.
    assert response.status_code == (404 if routed else 405)


# People are the reseller admins' business: a tenant viewer lists none (test_api_parity.py).
@pytest.mark.parametrize("prefix,viewset", [(p, v) for p, v in SCOPED if label_of(v) != "tenants.membership"])
def test_tenant_viewer_reads_own_tenant_only(worlds, viewer, prefix, viewset):
    mine, theirs = worlds
    client = token_client(viewer)
    obj = mine[label_of(viewset)]
    assert client.get(f"/api/v1/{prefix}/{obj.pk}/").status_code == 200
    assert client.get(f"/api/v1/{prefix}/{theirs[label_of(viewset)].pk}/").status_code == 404


@pytest.mark.parametrize("prefix,viewset", WRITABLE)
def test_tenant_viewer_cannot_create_or_change(worlds, viewer, prefix, viewset):
    mine, _ = worlds
    client = token_client(viewer)
    obj = mine[label_of(viewset)]
    before = type(obj).objects.filter(pk=obj.pk).values().get()
    assert client.post(f"/api/v1/{prefix}/", {"name": "new"}, format="json").status_code == 403
    patched = client.patch(f"/api/v1/{prefix}/{obj.pk}/", {"name": "changed"}, format="json").status_code
    assert patched == (403 if hasattr(viewset, "update") else 405)  # messages are sent, never edited
    assert type(obj).objects.filter(pk=obj.pk).values().get() == before


@pytest.mark.parametrize("prefix,viewset", ENDPOINTS)
def test_anonymous_requests_are_refused(api_client, prefix, viewset):
    response = api_client.get(f"/api/v1/{prefix}/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_country_rules_are_readable_by_every_member_but_not_writable(worlds, viewer):
    client = token_client(viewer)
    rules = client.get("/api/v1/countries/").json()
    assert {"country": "US", "alphanumeric": "unsupported"}.items() <= next(
        r for r in rules if r["country"] == "US"
    ).items()
    assert client.post("/api/v1/countries/", {"country": "ZZ", "name": "Nowhere"}, format="json").status_code == 403
    assert not CountryRule.objects.filter(country="ZZ").exists()


def test_a_write_cannot_point_at_another_resellers_rows(worlds, operator, other_tenant):
    client = token_client(operator)
    response = client.post(
        "/api/v1/trunks/",
        {"tenant": other_tenant.pk, "name": "Sneaky", "pbx_fqdn": "pbx.example.com"},
        format="json",
    )
    assert response.status_code == 400
    assert "does not exist" in response.json()["tenant"][0]
