"""Every admin page is scoped: reseller A's people see A's rows only, B's ids answer 404, viewers change nothing."""

import pytest
from django.contrib import admin
from django.urls import reverse

from tenants import access
from tenants.access import PUBLIC_READ
from tests.conftest import build_world

pytestmark = pytest.mark.django_db

# Platform-only admins (Django's users and groups): resellers never reach them.
# django-axes's sign-in attempts: platform staff lift lockouts there.
PLATFORM_ONLY = {"auth.user", "auth.group", "axes.accessattempt", "axes.accessfailurelog", "axes.accesslog"}
# Two-factor devices: platform superusers delete a lost authenticator there, so its person sets up a new one.
PLATFORM_ONLY |= {"otp_totp.totpdevice", "otp_static.staticdevice"}
SCOPED_LABELS = [
    "tenants.reseller",
    "tenants.tenant",
    "tenants.membership",
    "tenants.apitoken",
    "messaging.wavixaccount",
    "messaging.phonenumber",
    "messaging.trunk",
    "messaging.senderid",
    "messaging.senderidcountry",
    "messaging.message",
    "messaging.webhookevent",
    "messaging.delivery",
    "tenants.auditevent",
    "messaging.optout",
]
# What a tenant viewer may open read-only; everything else is invisible (404) to them.
VIEWER_VISIBLE = {
    "tenants.tenant",
    "messaging.wavixaccount",
    "messaging.phonenumber",
    "messaging.trunk",
    "messaging.senderid",
    "messaging.senderidcountry",
    "messaging.message",
    "tenants.auditevent",
    "messaging.optout",
}


def admin_url(obj, view: str = "change") -> str:
    meta = obj._meta
    if view == "changelist":
        return reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=[obj.pk])


def test_every_registered_admin_is_covered_by_these_tests():
    registered = {model._meta.label_lower for model in admin.site._registry}
    assert registered == set(SCOPED_LABELS) | PLATFORM_ONLY | PUBLIC_READ


@pytest.fixture
def worlds(tenant, reseller_admin, other_tenant, other_admin):
    return build_world(tenant, reseller_admin), build_world(other_tenant, other_admin)


@pytest.mark.parametrize("label", SCOPED_LABELS)
def test_changelist_lists_own_rows_and_never_another_resellers(client, worlds, reseller_admin, label):
    mine, theirs = worlds
    client.force_login(reseller_admin)
    response = client.get(admin_url(mine[label], "changelist"))
    assert response.status_code == 200
    shown = {obj.pk for obj in response.context["cl"].result_list}
    assert mine[label].pk in shown
    assert theirs[label].pk not in shown
    assert str(theirs["tenants.tenant"]) not in response.content.decode()


@pytest.mark.parametrize("label", SCOPED_LABELS)
@pytest.mark.parametrize("view", ["change", "history", "delete"])
def test_another_resellers_object_answers_404(client, worlds, reseller_admin, label, view):
    _, theirs = worlds
    client.force_login(reseller_admin)
    assert client.get(admin_url(theirs[label], view)).status_code == 404


@pytest.mark.parametrize("label", SCOPED_LABELS)
def test_another_resellers_object_cannot_be_changed_by_post(client, worlds, reseller_admin, label):
    _, theirs = worlds
    client.force_login(reseller_admin)
    assert client.post(admin_url(theirs[label]), {"name": "hijacked"}).status_code == 404


@pytest.mark.parametrize("label", SCOPED_LABELS)
def test_own_object_opens(client, worlds, reseller_admin, label):
    mine, _ = worlds
    client.force_login(reseller_admin)
    assert client.get(admin_url(mine[label])).status_code == 200


@pytest.mark.parametrize("label", SCOPED_LABELS)
def test_tenant_viewer_reads_own_rows_and_changes_nothing(client, worlds, viewer, label):
    mine, theirs = worlds
    obj = mine[label]
    client.force_login(viewer)
    # The plumbing's pages are closed to viewers whichever row is asked for: 403 for every id, so nothing leaks.
    closed = 403 if label in access.PLUMBING and access.can(viewer, "view", type(obj)) else 404
    expected = 200 if label in VIEWER_VISIBLE else closed
    assert client.get(admin_url(obj)).status_code == expected
    assert client.post(admin_url(obj), {"name": "changed"}).status_code in (403, 404)
    assert client.post(admin_url(obj, "delete"), {"post": "yes"}).status_code in (403, 404)
    assert type(obj).objects.filter(pk=obj.pk).exists()
    assert client.get(admin_url(theirs[label])).status_code == closed


# A viewer may create an API token for themselves: it acts as them, so it can only read too.
@pytest.mark.parametrize("label", sorted(set(SCOPED_LABELS) - {"tenants.apitoken"}))
def test_tenant_viewer_cannot_open_add_forms(client, worlds, viewer, label):
    client.force_login(viewer)
    meta = worlds[0][label]._meta
    assert client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_add")).status_code == 403


def test_tenant_viewer_changelists_show_only_own_tenant(client, worlds, viewer, tenant):
    mine, theirs = worlds
    client.force_login(viewer)
    for label in VIEWER_VISIBLE:
        response = client.get(admin_url(mine[label], "changelist"))
        shown = {obj.pk for obj in response.context["cl"].result_list}
        assert mine[label].pk in shown, label
        assert theirs[label].pk not in shown, label


@pytest.mark.parametrize("label", sorted(PLATFORM_ONLY))
def test_reseller_admin_cannot_reach_platform_admins(client, reseller_admin, label):
    app, model = label.split(".")
    client.force_login(reseller_admin)
    assert client.get(reverse(f"admin:{app}_{model}_changelist")).status_code == 403


def test_foreign_key_choices_list_only_own_rows(client, worlds, operator, other_tenant):
    client.force_login(operator)
    response = client.get(reverse("admin:messaging_trunk_add"))
    choices = {str(pk) for pk, _ in response.context["adminform"].form.fields["tenant"].choices if pk}
    assert str(worlds[0]["tenants.tenant"].pk) in choices
    assert str(other_tenant.pk) not in choices


def test_a_typed_in_foreign_id_is_refused_and_nothing_saved(client, worlds, operator, other_tenant):
    from messaging.models import Trunk

    client.force_login(operator)
    response = client.post(
        reverse("admin:messaging_trunk_add"),
        {"tenant": other_tenant.pk, "name": "Sneaky", "pbx_fqdn": "pbx.example.com", "sms_template": "wavix"},
    )
    assert response.status_code == 200
    assert "Select a valid choice" in str(response.context["adminform"].form.errors["tenant"])
    assert not Trunk.objects.filter(name="Sneaky").exists()


def test_filter_sidebar_lists_only_own_tenants(client, worlds, reseller_admin, other_tenant):
    client.force_login(reseller_admin)
    response = client.get(reverse("admin:messaging_message_changelist"))
    assert other_tenant.name not in response.content.decode()


def test_admin_index_lists_models_by_role(client, worlds, reseller_admin, operator, viewer):
    client.force_login(reseller_admin)
    page = client.get(reverse("admin:index")).content.decode()
    assert "Trunks" in page and ">People<" in page
    client.force_login(operator)
    page = client.get(reverse("admin:index")).content.decode()
    assert "Trunks" in page and ">People<" not in page
    client.force_login(viewer)
    page = client.get(reverse("admin:index")).content.decode()
    assert "Trunks" in page and "Webhook events" not in page and "Wavix accounts" in page
