"""The admin's forms: a new trunk asks only what its setup needs, and foreign-key choices keep to the row's tenant —
narrowed on the server where the tenant is known, marked for the page's script where it is picked in the form, and
refused by name whatever is posted. Another reseller's rows are never among the choices."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.core.exceptions import ValidationError
from django.urls import reverse

from messaging.models import PhoneNumber, SenderID, Trunk
from tests import factories as f


@pytest.fixture
def sibling(reseller):
    """A second tenant of the same reseller: its rows are choices the reseller may see, but not for Tenant A's rows."""
    return f.TenantFactory(reseller=reseller, name="Tenant S")


def options(page: str, field: str) -> dict[str, str]:
    """The <option>s of a field's select: value → its data-* owners attribute (or "" if none)."""
    select = re.search(rf'<select name="{field}"[^>]*>(.*?)</select>', page, re.S)
    assert select, f"no select for {field}"
    found = re.findall(r'<option value="(\d+)"([^>]*)>', select.group(1))
    return {value: (re.search(r'data-\w+="([^"]*)"', attrs) or [None, ""])[1] for value, attrs in found}


def change_form(trunk: Trunk, **changes) -> dict:
    return {
        "name": trunk.name,
        "pbx_fqdn": trunk.pbx_fqdn,
        "pbx_version": "",
        "main_sender": trunk.main_sender_id or "",
        "sms_template": trunk.sms_template,
        "threecx_webhook_url": "",
        "numbers-TOTAL_FORMS": "0",
        "numbers-INITIAL_FORMS": "0",
        **changes,
    }


# ---------------------------------------------------------------------------------------------------------------
# Trunk → Add
# ---------------------------------------------------------------------------------------------------------------


def test_adding_a_trunk_asks_only_its_tenant_name_and_pbx_fqdn_then_opens_the_wizard(client, operator, tenant):
    client.force_login(operator)
    response = client.get(reverse("admin:messaging_trunk_add"))
    assert list(response.context["adminform"].form.fields) == ["tenant", "name", "pbx_fqdn"]
    page = response.content.decode()
    for later in ("main_sender", "sms_enabled", "sms_template", "threecx_webhook_url", "status_events"):
        assert f'name="{later}"' not in page, later

    posted = {"tenant": tenant.pk, "name": "Front desk", "pbx_fqdn": "Harbor.3CX.example", "sms_enabled": "on"}
    response = client.post(reverse("admin:messaging_trunk_add"), posted)
    trunk = Trunk.objects.get(name="Front desk")
    assert response.url == reverse("admin:messaging_trunk_setup", args=[trunk.pk])
    assert (trunk.tenant, trunk.pbx_fqdn, trunk.sms_enabled, trunk.main_sender) == (
        tenant,
        "harbor.3cx.example",
        False,  # switched on in the wizard's step 4, never by a field posted past the form
        None,
    )


# ---------------------------------------------------------------------------------------------------------------
# The trunk page: Main Trunk No. among the trunk's tenant's sender IDs
# ---------------------------------------------------------------------------------------------------------------


def test_the_trunk_page_offers_only_its_tenants_sender_ids_as_main_trunk_no(
    client, operator, tenant, sibling, other_tenant
):
    trunk = f.TrunkFactory(tenant=tenant, name="Front desk")
    mine = f.SenderIDFactory(tenant=tenant, value="AcmeDental")
    theirs = f.SenderIDFactory(tenant=sibling, value="SiblingCo")
    foreign = f.SenderIDFactory(tenant=other_tenant, value="OtherCo")
    client.force_login(operator)
    response = client.get(reverse("admin:messaging_trunk_change", args=[trunk.pk]))
    assert set(options(response.content.decode(), "main_sender")) == {str(mine.pk)}
    assert "tenant" not in response.context["adminform"].form.fields  # a trunk stays with its tenant

    for sender in (theirs, foreign):
        response = client.post(
            reverse("admin:messaging_trunk_change", args=[trunk.pk]), change_form(trunk, main_sender=sender.pk)
        )
        assert response.context["adminform"].form.errors["main_sender"] == ["Choose one of Tenant A's sender IDs."]
    assert Trunk.objects.get(pk=trunk.pk).main_sender is None

    response = client.post(
        reverse("admin:messaging_trunk_change", args=[trunk.pk]),
        change_form(trunk, main_sender=mine.pk, tenant=sibling.pk),  # a posted tenant changes nothing
    )
    assert response.status_code == 302
    assert (Trunk.objects.get(pk=trunk.pk).main_sender, Trunk.objects.get(pk=trunk.pk).tenant) == (mine, tenant)


def test_a_main_trunk_no_of_another_tenant_is_refused_by_the_model_too(tenant, sibling):
    """The last word, for every way in (the admin, the API): Trunk.clean names the field and the right tenant."""
    trunk = Trunk(tenant=tenant, name="Front desk", pbx_fqdn="pbx.3cx.example")
    trunk.main_sender = f.SenderIDFactory(tenant=sibling)
    with pytest.raises(ValidationError) as refused:
        trunk.full_clean()
    assert refused.value.message_dict["main_sender"] == [
        "This sender ID belongs to another tenant: choose one of Tenant A's sender IDs."
    ]


# ---------------------------------------------------------------------------------------------------------------
# The phone number page: its trunk among the chosen tenant's trunks
# ---------------------------------------------------------------------------------------------------------------


def test_a_shared_accounts_number_offers_its_resellers_trunks_marked_with_their_tenant(
    client, operator, reseller, tenant, sibling, other_tenant
):
    shared = f.WavixAccountFactory(reseller=reseller, tenant=None)
    number = PhoneNumber.objects.create(account=shared, tenant=tenant, number="+14155550100", wavix_id="1")
    desk = f.TrunkFactory(tenant=tenant, name="Front desk")
    branch = f.TrunkFactory(tenant=sibling, name="Branch")
    f.TrunkFactory(tenant=other_tenant, name="Elsewhere")
    client.force_login(operator)
    page = client.get(reverse("admin:messaging_phonenumber_change", args=[number.pk])).content.decode()
    assert options(page, "trunk") == {str(desk.pk): str(tenant.pk), str(branch.pk): str(sibling.pk)}
    assert set(options(page, "tenant")) == {str(tenant.pk), str(sibling.pk)}
    assert 'data-narrow-by="tenant"' in page and "messaging/tenant_choices.js" in page
    assert finders.find("messaging/tenant_choices.js")

    response = client.post(
        reverse("admin:messaging_phonenumber_change", args=[number.pk]),
        {"tenant": tenant.pk, "trunk": branch.pk, "label": ""},
    )
    assert response.context["adminform"].form.errors["trunk"] == [
        "This trunk belongs to another tenant: choose one of Tenant A's trunks."
    ]
    assert PhoneNumber.objects.get(pk=number.pk).trunk is None
    response = client.post(
        reverse("admin:messaging_phonenumber_change", args=[number.pk]),
        {"tenant": sibling.pk, "trunk": branch.pk, "label": ""},  # the tenant and its trunk, chosen together
    )
    assert response.status_code == 302
    assert PhoneNumber.objects.get(pk=number.pk).trunk == branch


def test_a_tenants_own_accounts_number_offers_only_that_tenants_trunks(client, operator, tenant, sibling):
    own = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    number = PhoneNumber.objects.create(account=own, tenant=tenant, number="+14155550100", wavix_id="1")
    desk = f.TrunkFactory(tenant=tenant, name="Front desk")
    f.TrunkFactory(tenant=sibling, name="Branch")
    client.force_login(operator)
    page = client.get(reverse("admin:messaging_phonenumber_change", args=[number.pk])).content.decode()
    assert set(options(page, "trunk")) == {str(desk.pk)}
    assert set(options(page, "tenant")) == {str(tenant.pk)}


# ---------------------------------------------------------------------------------------------------------------
# Sender ID → Add: the Wavix accounts the chosen tenant may use
# ---------------------------------------------------------------------------------------------------------------


def test_adding_a_sender_id_marks_each_account_with_the_tenants_it_serves_and_refuses_another_tenants(
    client, operator, reseller, tenant, sibling, other_tenant
):
    own = f.WavixAccountFactory(reseller=reseller, tenant=tenant, name="Tenant A's own")
    siblings = f.WavixAccountFactory(reseller=reseller, tenant=sibling, name="Tenant S's own")
    shared = f.WavixAccountFactory(reseller=reseller, tenant=None, name="Shared")
    f.WavixAccountFactory(reseller=other_tenant.reseller, tenant=None, name="Another reseller's")
    client.force_login(operator)
    page = client.get(reverse("admin:messaging_senderid_add")).content.decode()
    marked = options(page, "account")
    assert marked == {
        str(own.pk): str(tenant.pk),
        str(siblings.pk): str(sibling.pk),
        str(shared.pk): " ".join(str(pk) for pk in sorted([tenant.pk, sibling.pk])),
    }

    response = client.post(
        reverse("admin:messaging_senderid_add"),
        {
            "tenant": tenant.pk,
            "account": siblings.pk,
            "type": "alphanumeric",
            "value": "AcmeDental",
            "countries": ["GB"],
            "usecase": "transactional",
        },
    )
    assert response.context["adminform"].form.errors["account"] == [
        "This Wavix account does not serve this tenant: choose Tenant A's own account or one its reseller shares."
    ]
    assert not SenderID.objects.exists()  # refused before anything was asked of Wavix


def test_another_reseller_sees_none_of_these_choices(client, other_admin, tenant, sibling):
    trunk = f.TrunkFactory(tenant=tenant)
    f.SenderIDFactory(tenant=tenant)
    client.force_login(other_admin)
    assert client.get(reverse("admin:messaging_trunk_change", args=[trunk.pk])).status_code == 404
    for add in ("admin:messaging_senderid_add", "admin:messaging_trunk_add"):
        page = client.get(reverse(add)).content.decode()
        assert "Tenant A" not in page and "Tenant S" not in page, add


def test_adding_a_wavix_account_marks_each_tenant_with_its_reseller(client, operator, reseller, tenant, sibling):
    client.force_login(operator)
    page = client.get(reverse("admin:messaging_wavixaccount_add")).content.decode()
    assert options(page, "tenant") == {str(tenant.pk): str(reseller.pk), str(sibling.pk): str(reseller.pk)}
    assert 'data-narrow-by="reseller"' in page
