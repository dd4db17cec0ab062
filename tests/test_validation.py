"""Bad input gets a specific error in the admin and the API alike, and nothing is saved."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from messaging.models import PhoneNumber, SenderID, SenderIDCountry, Trunk, to_e164
from tests import factories as f
from tests.conftest import live_db, token_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def account(tenant):
    return f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)


@pytest.fixture
def sms_number(account, tenant):
    return f.PhoneNumberFactory(account=account, tenant=tenant, number="+14155550100", sms_enabled=True)


@pytest.fixture
def voice_number(account, tenant):
    return f.PhoneNumberFactory(account=account, tenant=tenant, number="+14155550101", sms_enabled=False)


def nothing_saved() -> None:
    assert SenderID.objects.count() == 0
    assert SenderIDCountry.objects.count() == 0


# ---------------------------------------------------------------------------------------------------------------
# E.164
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,expected",
    [("+14155550100", "+14155550100"), ("+1 (415) 555-0100", "+14155550100"), (" +44 7400 123456 ", "+447400123456")],
)
def test_e164_numbers_are_normalised(raw, expected):
    assert to_e164(raw) == expected


@pytest.mark.parametrize(
    "raw,message",
    [
        ("4155550100", "is not in E.164 format"),
        ("+1415555", "is not a valid phone number"),
        ("+99912345", "is not a phone number"),
        ("call me", "is not in E.164 format"),
        ("+1-800-FLOWERS-NOW-NOW", "is not a valid phone number"),
        ("", "Enter a phone number"),
    ],
)
def test_invalid_numbers_are_refused_with_the_reason(raw, message):
    with pytest.raises(ValidationError, match=message):
        to_e164(raw)


def test_numbers_come_from_wavix_not_from_a_form(client, operator, account):
    client.force_login(operator)
    assert client.get(reverse("admin:messaging_phonenumber_add")).status_code == 403
    assert client.post(reverse("admin:messaging_phonenumber_add"), {"number": "+14155550100"}).status_code == 403
    assert not PhoneNumber.objects.exists()


# ---------------------------------------------------------------------------------------------------------------
# Sender IDs
# ---------------------------------------------------------------------------------------------------------------

BAD_SENDERS = [
    ("alphanumeric", "ABCDEFGHIJKL", ["GB"], "value", "is 12 characters long; alphanumeric sender IDs have 3 to 11"),
    ("alphanumeric", "AB", ["GB"], "value", "is 2 characters long"),
    ("alphanumeric", "Acme-Dental", ["GB"], "value", "contains '-'; only letters A–Z, digits and spaces"),
    ("alphanumeric", "Acme.Co!", ["GB"], "value", "contains '!', '.'"),
    ("alphanumeric", "12345", ["GB"], "value", "has no letter"),
    (
        "alphanumeric",
        "AcmeDental",
        ["US"],
        "countries",
        "Alphanumeric sender IDs are not supported in United States (US)",
    ),
    ("alphanumeric", "AcmeDental", ["GB", "CA"], "countries", "not supported in Canada (CA)"),
    ("alphanumeric", "AcmeDental", ["XX"], "countries", "'XX' is not a country code the portal knows"),
    ("numeric", "+14155550199", ["US"], "value", "+14155550199 is not one of Tenant A's numbers"),
    ("numeric", "+14155550101", ["US"], "value", "+14155550101 is not SMS-enabled at Wavix"),
    ("numeric", "4155550100", ["US"], "value", "is not in E.164 format"),
]


def admin_sender_form(client, tenant, kind, value, countries):
    return client.post(
        reverse("admin:messaging_senderid_add"),
        {"tenant": tenant.pk, "type": kind, "value": value, "countries": countries, "usecase": "transactional"},
    )


# The admin's country list offers only known countries, so "XX" is refused by the choice field itself.
ADMIN_BAD_SENDERS = [
    case if case[2] != ["XX"] else (*case[:4], "Select a valid choice. XX is not one of the available choices.")
    for case in BAD_SENDERS
]


@pytest.mark.parametrize("kind,value,countries,field,message", ADMIN_BAD_SENDERS)
def test_admin_refuses_bad_sender_ids_with_a_specific_error(
    client, operator, tenant, sms_number, voice_number, kind, value, countries, field, message
):
    client.force_login(operator)
    response = admin_sender_form(client, tenant, kind, value, countries)
    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors.get(field, []))
    nothing_saved()


@pytest.mark.parametrize("kind,value,countries,field,message", BAD_SENDERS)
def test_api_refuses_bad_sender_ids_with_a_specific_error(
    operator, tenant, sms_number, voice_number, kind, value, countries, field, message
):
    response = token_client(operator).post(
        "/api/v1/sender-ids/",
        {"tenant": tenant.pk, "type": kind, "value": value, "countries": countries},
        format="json",
    )
    assert response.status_code == 400
    assert message in " ".join(response.json()[field])
    nothing_saved()


def test_every_problem_of_an_alphanumeric_sender_is_named_at_once(operator, tenant, account):
    response = token_client(operator).post(
        "/api/v1/sender-ids/",
        {"tenant": tenant.pk, "type": "alphanumeric", "value": "Acme-Dental!", "countries": ["US"]},
        format="json",
    )
    errors = response.json()
    assert len(errors["value"]) == 2
    assert "is 12 characters long" in errors["value"][0] and "contains '!', '-'" in errors["value"][1]
    assert "not supported in United States (US)" in errors["countries"][0]
    nothing_saved()


def test_a_number_of_another_tenant_is_not_a_valid_numeric_sender(operator, tenant, reseller, account):
    sibling = f.TenantFactory(reseller=reseller, name="Sibling")
    f.PhoneNumberFactory(account=account, tenant=None, number="+14155550150")
    shared = f.WavixAccountFactory(reseller=reseller)
    f.PhoneNumberFactory(account=shared, tenant=sibling, number="+14155550160")
    for number in ("+14155550150", "+14155550160"):
        response = token_client(operator).post(
            "/api/v1/sender-ids/",
            {"tenant": tenant.pk, "type": "numeric", "value": number, "countries": ["US"]},
            format="json",
        )
        assert response.status_code == 400
        assert f"{number} is not one of Tenant A's numbers" in response.json()["value"][0]
    nothing_saved()


@pytest.fixture
def live_account(sandbox_account, tenant):
    """A Wavix account whose key the live sandbox knows, dedicated to tenant."""
    return f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant, api_key=sandbox_account.api_key)


@live_db
def test_a_valid_registration_starts_each_country_in_the_right_status(client, operator, tenant, live_account):
    account = live_account
    client.force_login(operator)
    response = admin_sender_form(client, tenant, "alphanumeric", "Acme Dental", ["GB", "IN"])
    assert response.status_code == 302, response.context["adminform"].form.errors
    sender = SenderID.objects.get()
    assert sender.account == account  # the tenant's only account, chosen for the user
    # GB is allow-listed by Wavix at once; India needs paperwork and waits.
    assert dict(sender.countries.values_list("country", "status")) == {"GB": "allowlisted", "IN": "needs_documents"}


@live_db
def test_a_numeric_sender_is_linked_to_its_number_and_account(operator, tenant, live_account, sandbox_account):
    f.SandboxNumberFactory(account=sandbox_account, number="14155550100")
    sms_number = f.PhoneNumberFactory(account=live_account, tenant=tenant, number="+14155550100", sms_enabled=True)
    response = token_client(operator).post(
        "/api/v1/sender-ids/",
        {"tenant": tenant.pk, "type": "numeric", "value": "+1 415 555 0100", "countries": ["US", "CA"]},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["value"] == "+14155550100"
    assert body["phone_number"] == sms_number.pk
    assert body["account"] == sms_number.account_id
    # The sandbox allow-lists both at once, as Wavix does for countries without paperwork.
    assert {r["country"]: r["status"] for r in body["registrations"]} == {"CA": "allowlisted", "US": "allowlisted"}


@live_db
def test_a_duplicate_sender_id_is_refused(operator, tenant, live_account):
    client = token_client(operator)
    payload = {"tenant": tenant.pk, "type": "alphanumeric", "value": "AcmeDental", "countries": ["GB"]}
    assert client.post("/api/v1/sender-ids/", payload, format="json").status_code == 201
    response = client.post("/api/v1/sender-ids/", payload, format="json")
    assert response.status_code == 400
    assert "already exists" in str(response.json())
    assert SenderID.objects.count() == 1


@live_db
def test_a_registered_sender_ids_value_cannot_change(operator, tenant, live_account):
    client = token_client(operator)
    payload = {"tenant": tenant.pk, "type": "alphanumeric", "value": "AcmeDental", "countries": ["GB"]}
    sender_id = client.post("/api/v1/sender-ids/", payload, format="json").json()["id"]
    response = client.patch(f"/api/v1/sender-ids/{sender_id}/", {"value": "Other"}, format="json")
    assert response.status_code == 400
    assert "register a new sender ID" in response.json()["value"][0]
    response = client.patch(f"/api/v1/sender-ids/{sender_id}/", {"samples": ["Your code is 1234"]}, format="json")
    assert response.status_code == 200
    assert SenderID.objects.get().samples == ["Your code is 1234"]


def test_a_sender_account_must_serve_the_tenant(operator, tenant, reseller, account):
    other_tenants_account = f.WavixAccountFactory(reseller=reseller, tenant=f.TenantFactory(reseller=reseller))
    response = token_client(operator).post(
        "/api/v1/sender-ids/",
        {
            "tenant": tenant.pk,
            "account": other_tenants_account.pk,
            "type": "alphanumeric",
            "value": "Acme",
            "countries": ["GB"],
        },
        format="json",
    )
    assert response.status_code == 400
    assert "does not serve this tenant" in response.json()["account"][0]
    nothing_saved()


# ---------------------------------------------------------------------------------------------------------------
# Trunks and tenants
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes,field,message",
    [
        ({"pbx_fqdn": "not a host"}, "pbx_fqdn", "fully qualified domain name"),
        ({"threecx_webhook_url": "pbx.example.com"}, "threecx_webhook_url", "it starts https://"),
    ],
)
def test_api_refuses_bad_trunks(operator, tenant, changes, field, message):
    payload = {"tenant": tenant.pk, "name": "Main", "pbx_fqdn": "acme.3cx.us", **changes}
    response = token_client(operator).post("/api/v1/trunks/", payload, format="json")
    assert response.status_code == 400
    assert message in response.json()[field][0]
    assert not Trunk.objects.exists()


def test_plain_http_3cx_urls_are_for_development_only(operator, tenant, settings):
    payload = {
        "tenant": tenant.pk,
        "name": "Main",
        "pbx_fqdn": "acme.3cx.us",
        "threecx_webhook_url": "http://pbx.example.com/hook",
    }
    settings.DEBUG, settings.SANDBOX_ENABLED = False, False
    response = token_client(operator).post("/api/v1/trunks/", payload, format="json")
    assert response.status_code == 400 and "it starts https://" in response.json()["threecx_webhook_url"][0]
    settings.SANDBOX_ENABLED = True  # the sandbox's fake 3CX is served over plain HTTP
    assert token_client(operator).post("/api/v1/trunks/", payload, format="json").status_code == 201


def test_trunk_main_sender_must_belong_to_the_trunks_tenant(operator, tenant, reseller):
    sibling_sender = f.SenderIDFactory(tenant=f.TenantFactory(reseller=reseller))
    response = token_client(operator).post(
        "/api/v1/trunks/",
        {"tenant": tenant.pk, "name": "Main", "pbx_fqdn": "acme.3cx.us", "main_sender": sibling_sender.pk},
        format="json",
    )
    assert response.status_code == 400
    assert "belongs to another tenant" in response.json()["main_sender"][0]


def test_tenant_default_country_must_be_a_country(operator, reseller):
    response = token_client(operator).post(
        "/api/v1/tenants/", {"name": "New", "slug": "new", "default_country": "XX"}, format="json"
    )
    assert response.status_code == 400
    assert "is not an ISO country code" in response.json()["default_country"][0]


def test_an_operator_creates_a_tenant_under_their_reseller(operator, reseller):
    response = token_client(operator).post("/api/v1/tenants/", {"name": "New Co", "slug": "new-co"}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["reseller"] == reseller.pk
