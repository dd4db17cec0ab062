"""The role matrix of tenants.access, checked directly."""

import os

import pytest
from django.contrib.auth.models import Group

from messaging.models import SenderID, Trunk
from tenants import access
from tenants.models import Membership, Reseller, Tenant
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def trunk(tenant):
    return f.TrunkFactory(tenant=tenant)


def test_reseller_staff_manage_every_tenant_of_their_reseller(operator, reseller_admin, trunk, other_tenant):
    for user in (operator, reseller_admin):
        assert access.can(user, "change", trunk)
        assert access.can(user, "add", Trunk)
        assert access.can(user, "change", trunk.tenant)
        assert not access.can(user, "view", other_tenant)
        assert set(access.tenants_for(user, "change")) == {trunk.tenant}


def test_only_reseller_admins_manage_people_and_the_reseller(operator, reseller_admin, reseller):
    assert access.can(reseller_admin, "change", reseller) and not access.can(operator, "change", reseller)
    assert access.can(reseller_admin, "add", Membership) and not access.can(operator, "add", Membership)
    assert not access.can(reseller_admin, "add", Reseller) and not access.can(reseller_admin, "delete", reseller)


def test_a_tenant_viewer_reads_its_tenant_and_writes_nothing(viewer, trunk, reseller):
    sibling_trunk = f.TrunkFactory(tenant=f.TenantFactory(reseller=reseller))
    assert access.can(viewer, "view", trunk)
    assert not access.can(viewer, "view", sibling_trunk)
    for action in ("add", "change", "delete"):
        assert not access.can(viewer, action, trunk)
        assert not access.can(viewer, action, Trunk)
    assert list(access.changeable(viewer, Trunk)) == []


def test_a_deactivated_membership_or_user_sees_nothing(operator, trunk):
    Membership.objects.filter(user=operator).update(is_active=False)
    access.forget(operator)
    assert not access.has_portal_access(operator)
    assert list(access.visible(operator, Trunk)) == []
    user = f.UserFactory(is_active=False)
    f.MembershipFactory(user=user, reseller=trunk.tenant.reseller)
    assert list(access.visible(user, Tenant)) == []


def test_platform_reviewers_see_registrations_everywhere_but_change_no_trunk(tenant, other_tenant, trunk):
    reviewer = f.UserFactory(is_staff=True)
    reviewer.groups.add(Group.objects.get(name="Platform reviewers"))
    senders = [f.SenderIDFactory(tenant=tenant), f.SenderIDFactory(tenant=other_tenant)]
    assert access.is_reviewer(reviewer)
    assert set(access.visible(reviewer, SenderID)) == set(senders)
    assert list(access.visible(reviewer, Trunk)) == []
    assert not access.can(reviewer, "change", trunk)


def test_staff_without_permissions_see_nothing(trunk):
    staff = f.UserFactory(is_staff=True)
    assert access.has_portal_access(staff)
    assert list(access.visible(staff, Trunk)) == [] and list(access.visible(staff, Tenant)) == []


def test_a_superuser_sees_everything(trunk, other_tenant):
    root = f.UserFactory(is_superuser=True, is_staff=True)
    assert set(access.visible(root, Tenant)) == {trunk.tenant, other_tenant}


def test_someone_without_any_membership_cannot_sign_in(db):
    assert not access.has_portal_access(f.UserFactory())


def test_platform_reviewers_edit_country_rules_and_resellers_only_read_them(client, operator):
    from messaging.models import CountryRule

    reviewer = f.UserFactory(is_staff=True)
    reviewer.groups.add(Group.objects.get(name="Platform reviewers"))
    url = "/admin/messaging/countryrule/GB/change/"
    change = {"name": "United Kingdom", "alphanumeric": "registration", "numeric": "allowed", "note": "New rule."}

    client.force_login(operator)
    assert client.get(url).status_code == 200  # readable
    assert client.post(url, change).status_code == 403
    assert CountryRule.objects.get(country="GB").alphanumeric == "allowed"

    client.force_login(reviewer)
    assert client.post(url, change).status_code == 302
    assert CountryRule.objects.get(country="GB").alphanumeric == "registration"


def test_loading_the_rules_file_again_keeps_staff_edits_unless_asked(db):
    from django.core.management import call_command

    from messaging.models import CountryRule

    CountryRule.objects.filter(country="GB").update(alphanumeric="registration")
    call_command("load_country_rules", stdout=open(os.devnull, "w"))
    assert CountryRule.objects.get(country="GB").alphanumeric == "registration"
    call_command("load_country_rules", "--update", stdout=open(os.devnull, "w"))
    assert CountryRule.objects.get(country="GB").alphanumeric == "allowed"
    assert CountryRule.objects.get(country="US").alphanumeric == "unsupported"
    assert CountryRule.objects.get(country="IN").alphanumeric == "registration"
