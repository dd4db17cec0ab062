"""Reseller admins manage their own people: invite by e-mail, change roles, deactivate — only in their reseller."""

import re

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from messaging.models import AuditEvent
from tenants import services
from tenants.models import Membership
from tests import factories as f

pytestmark = pytest.mark.django_db


def invite(client, email, organization, role):
    return client.post(
        reverse("admin:tenants_membership_add"),
        {"email": email, "first_name": "Dana", "last_name": "", "organization": organization, "role": role},
    )


def set_password_link(message) -> str:
    return re.search(r"http://[^\s]+/accounts/reset/[^\s]+/", message.body).group(0)


def test_an_invited_person_sets_a_password_and_signs_in(client, reseller_admin, reseller, tenant):
    client.force_login(reseller_admin)
    response = invite(client, "Dana@Customer.example", f"tenant:{tenant.pk}", "tenant_viewer")
    assert response.status_code == 302
    membership = Membership.objects.get(user__email="dana@customer.example")
    assert (membership.tenant, membership.role, membership.invited_by) == (tenant, "tenant_viewer", reseller_admin)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["dana@customer.example"]
    assert "tenant viewer of Tenant A" in mail.outbox[0].body

    client.logout()
    link = set_password_link(mail.outbox[0]).replace("http://127.0.0.1:8000", "")
    form_page = client.get(link, follow=True)
    assert form_page.status_code == 200 and "new_password1" in form_page.content.decode()
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "a-long-new-passphrase", "new_password2": "a-long-new-passphrase"},
    )
    assert done.status_code == 302

    signed_in = client.post(
        reverse("admin:login"), {"username": "DANA@customer.example", "password": "a-long-new-passphrase"}, follow=True
    )
    assert signed_in.status_code == 200
    assert signed_in.context["user"].email == "dana@customer.example"
    assert client.get(reverse("admin:messaging_trunk_changelist")).status_code == 200
    # The link worked once; it does not work again.
    assert "new_password1" not in client.get(link, follow=True).content.decode()


def test_inviting_someone_who_already_has_a_login_sends_no_password_link(client, reseller_admin, reseller, other_admin):
    client.force_login(reseller_admin)
    assert invite(client, other_admin.email, f"reseller:{reseller.pk}", "reseller_operator").status_code == 302
    assert "/accounts/reset/" not in mail.outbox[0].body
    assert other_admin.memberships.count() == 2


def test_each_people_action_leaves_one_audit_row(client, reseller_admin, reseller):
    client.force_login(reseller_admin)
    invite(client, "ops@reseller.example", f"reseller:{reseller.pk}", "reseller_operator")
    membership = Membership.objects.get(user__email="ops@reseller.example")
    url = reverse("admin:tenants_membership_change", args=[membership.pk])
    assert client.post(url, {"role": "reseller_admin", "is_active": "on"}).status_code == 302
    assert client.post(url, {"role": "reseller_admin"}).status_code == 302  # unticked: deactivated
    rows = list(AuditEvent.objects.filter(object_id=str(membership.pk)).order_by("id").values_list("action", "actor"))
    assert rows == [
        ("member.invited", reseller_admin.pk),
        ("member.role_changed", reseller_admin.pk),
        ("member.deactivated", reseller_admin.pk),
    ]


def test_a_deactivated_member_loses_access_at_once(client, reseller_admin, operator):
    membership = operator.memberships.get()
    services.member_set_active(actor=reseller_admin, membership=membership, active=False)
    client.force_login(operator)
    assert client.get(reverse("admin:index")).status_code == 302  # back to the login page
    response = client.post(reverse("admin:login"), {"username": operator.email, "password": f.PASSWORD})
    assert "Please enter a correct e-mail and password." in response.content.decode()


def test_the_last_admin_cannot_leave_their_reseller_without_an_admin(client, reseller_admin):
    membership = reseller_admin.memberships.get()
    client.force_login(reseller_admin)
    url = reverse("admin:tenants_membership_change", args=[membership.pk])
    response = client.post(url, {"role": "reseller_operator", "is_active": "on"})
    assert response.status_code == 200
    assert "is the last active admin" in response.content.decode()
    membership.refresh_from_db()
    assert membership.role == "reseller_admin" and membership.is_active


def test_a_role_must_fit_the_organisation(client, reseller_admin, tenant):
    client.force_login(reseller_admin)
    response = invite(client, "x@example.com", f"tenant:{tenant.pk}", "reseller_admin")
    assert response.status_code == 200
    assert "People of the tenant Tenant A are tenant viewers." in response.content.decode()
    assert not Membership.objects.filter(user__email="x@example.com").exists()


def test_an_admin_cannot_invite_into_another_reseller(client, reseller_admin, other_reseller, other_tenant):
    client.force_login(reseller_admin)
    for organization in (f"reseller:{other_reseller.pk}", f"tenant:{other_tenant.pk}"):
        response = invite(client, "spy@example.com", organization, "tenant_viewer")
        assert response.status_code == 200
        assert "Select a valid choice" in response.content.decode()
    assert other_tenant.name not in client.get(reverse("admin:tenants_membership_add")).content.decode()
    with pytest.raises(PermissionDenied):
        services.member_invite(
            actor=reseller_admin, email="spy@example.com", organization=other_tenant, role="tenant_viewer"
        )
    assert not Membership.objects.filter(user__email="spy@example.com").exists()


def test_operators_and_viewers_do_not_manage_people(client, operator, viewer, tenant):
    for user in (operator, viewer):
        client.force_login(user)
        assert client.get(reverse("admin:tenants_membership_changelist")).status_code == 403
        with pytest.raises(PermissionDenied):
            services.member_invite(actor=user, email="x@example.com", organization=tenant, role="tenant_viewer")


def test_a_failed_invite_email_keeps_the_membership_and_says_so(client, reseller_admin, reseller, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 1  # nothing listens there
    client.force_login(reseller_admin)
    response = invite(client, "late@example.com", f"reseller:{reseller.pk}", "reseller_operator")
    assert response.status_code == 302
    assert Membership.objects.filter(user__email="late@example.com").exists()
    page = client.get(response.url).content.decode()
    assert "could not be sent" in page


def test_inviting_the_same_person_twice_is_refused(client, reseller_admin, reseller):
    client.force_login(reseller_admin)
    invite(client, "twice@example.com", f"reseller:{reseller.pk}", "reseller_operator")
    response = invite(client, "twice@example.com", f"reseller:{reseller.pk}", "reseller_admin")
    assert response.status_code == 200
    assert "already has a role in Reseller A" in response.content.decode()
    assert Membership.objects.filter(user__email="twice@example.com").count() == 1
