"""Reseller admins manage their own people: invite by e-mail, change roles, deactivate — only in their reseller."""

import re
from urllib.parse import quote

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.urls import reverse

from tenants import access, services
from tenants.models import AuditEvent, Membership
from tests import factories as f

pytestmark = pytest.mark.django_db


def invite(client, email, organization, role):
    return client.post(
        reverse("admin:tenants_membership_add"),
        {"email": email, "first_name": "Dana", "last_name": "", "organization": organization, "role": role},
    )


def invitation_link(message) -> str:
    return re.search(r"http://[^\s]+/invitations/[^\s]+/", message.body).group(0).replace("http://127.0.0.1:8000", "")


def accept_as_new_login(client, message, password: str = "a-long-new-passphrase"):
    link = invitation_link(message)
    return client.post(link, {"action": "accept", "new_password1": password, "new_password2": password})


def test_an_invited_person_chooses_a_password_from_the_link_accepts_and_signs_in(client, reseller_admin, tenant):
    client.force_login(reseller_admin)
    response = invite(client, "Dana@Customer.example", f"tenant:{tenant.pk}", "tenant_viewer")
    assert response.status_code == 302
    membership = Membership.objects.get(user__email="dana@customer.example")
    assert (membership.tenant, membership.role, membership.invited_by) == (tenant, "tenant_viewer", reseller_admin)
    assert (membership.invitation, membership.is_active) == ("pending", False)  # nothing until they accept
    assert not access.has_portal_access(membership.user)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["dana@customer.example"]
    assert "tenant viewer of Tenant A" in mail.outbox[0].body

    client.logout()
    page = client.get(invitation_link(mail.outbox[0])).content.decode()
    assert "new_password1" in page and "you will sign in with <strong>dana@customer.example</strong>" in page
    done = accept_as_new_login(client, mail.outbox[0])
    assert done.status_code == 302 and done.url == reverse("admin:index")
    assert client.get(reverse("admin:messaging_trunk_changelist")).status_code == 200  # signed in, with the role
    membership.refresh_from_db()
    assert (membership.invitation, membership.is_active) == ("accepted", True)

    client.logout()
    signed_in = client.post(
        reverse("admin:login"), {"username": "DANA@customer.example", "password": "a-long-new-passphrase"}, follow=True
    )
    assert signed_in.context["user"].email == "dana@customer.example"
    # The link worked once: now it only says so.
    again = client.get(invitation_link(mail.outbox[0])).content.decode()
    assert "You accepted this invitation" in again and "new_password1" not in again


def test_a_password_the_validators_refuse_accepts_nothing(client, reseller_admin, tenant):
    client.force_login(reseller_admin)
    invite(client, "weak@customer.example", f"tenant:{tenant.pk}", "tenant_viewer")
    client.logout()
    response = accept_as_new_login(client, mail.outbox[0], password="123")
    assert response.status_code == 200 and "This password is too short" in response.content.decode()
    assert Membership.objects.get(user__email="weak@customer.example").invitation == "pending"
    assert "_auth_user_id" not in client.session


def test_each_people_action_leaves_one_audit_row(client, reseller_admin, reseller):
    client.force_login(reseller_admin)
    invite(client, "ops@reseller.example", f"reseller:{reseller.pk}", "reseller_operator")
    membership = Membership.objects.get(user__email="ops@reseller.example")
    accept_as_new_login(Client(), mail.outbox[0])
    url = reverse("admin:tenants_membership_change", args=[membership.pk])
    assert client.post(url, {"role": "reseller_admin", "is_active": "on"}).status_code == 302
    assert client.post(url, {"role": "reseller_admin"}).status_code == 302  # unticked: deactivated
    rows = list(AuditEvent.objects.filter(object_id=str(membership.pk)).order_by("id").values_list("action", "actor"))
    assert rows == [
        ("member.invited", reseller_admin.pk),
        ("member.accepted", membership.user_id),
        ("member.role_changed", reseller_admin.pk),
        ("member.deactivated", reseller_admin.pk),
    ]


# --------------------------------------------------------------------------------------------------------------
# Invitations of logins that exist already: never attached without their owner's word, and nothing tells the inviter
# --------------------------------------------------------------------------------------------------------------


def sees_reseller(user, reseller) -> bool:
    """Does the user's membership grant them the reseller (platform staff otherwise act through Django permissions)?"""
    access.forget(user)
    return reseller.pk in access.grants(user).manager_resellers


@pytest.fixture
def staff_login(db):
    return f.UserFactory(email="reviewer@platform.example", is_staff=True, first_name="Rita", last_name="Reviewer")


@pytest.fixture(params=["another reseller's admin", "platform staff"])
def existing_login(request, other_admin, staff_login):
    user = other_admin if request.param == "another reseller's admin" else staff_login
    user.first_name, user.last_name = "Olga", "Otherside"
    user.save()
    return user


def test_an_existing_login_gets_nothing_until_it_accepts_signed_in_as_itself(
    client, reseller_admin, reseller, existing_login
):
    client.force_login(reseller_admin)
    assert invite(client, existing_login.email, f"reseller:{reseller.pk}", "reseller_operator").status_code == 302
    membership = Membership.objects.get(user=existing_login, reseller=reseller)
    assert (membership.invitation, membership.is_active) == ("pending", False)
    assert not sees_reseller(existing_login, reseller)
    assert existing_login.first_name == "Olga"  # the inviter's "Dana" is not written over a login's own name

    link = invitation_link(mail.outbox[0])
    invitee = Client()
    to_sign_in = invitee.get(link)
    assert to_sign_in.status_code == 302 and to_sign_in.url == f"{reverse('admin:login')}?next={quote(link)}"
    invitee.force_login(existing_login)
    page = invitee.get(link).content.decode()
    assert f"You are signed in as <strong>{existing_login.email}</strong>" in page and "new_password1" not in page
    assert invitee.post(link, {"action": "accept"}).status_code == 302
    membership.refresh_from_db()
    assert (membership.invitation, membership.is_active) == ("accepted", True)
    assert sees_reseller(existing_login, reseller)
    accepted = AuditEvent.objects.get(action="member.accepted")
    assert (accepted.actor, accepted.reseller, accepted.object_id) == (existing_login, reseller, str(membership.pk))


def test_a_declined_invitation_grants_nothing_and_may_be_renewed(client, reseller_admin, reseller, existing_login):
    client.force_login(reseller_admin)
    invite(client, existing_login.email, f"reseller:{reseller.pk}", "reseller_operator")
    invitee = Client()
    invitee.force_login(existing_login)
    assert invitee.post(invitation_link(mail.outbox[0]), {"action": "decline"}).status_code == 302
    membership = Membership.objects.get(user=existing_login, reseller=reseller)
    assert (membership.invitation, membership.is_active) == ("declined", False)
    assert not sees_reseller(existing_login, reseller)
    assert AuditEvent.objects.get(action="member.declined").actor == existing_login
    assert "You declined this invitation" in invitee.get(invitation_link(mail.outbox[0])).content.decode()
    # The admin cannot switch it on; a new invitation can be sent, and waits for a new answer.
    url = reverse("admin:tenants_membership_change", args=[membership.pk])
    refused = client.post(url, {"role": "reseller_operator", "is_active": "on"})
    assert "was invited and has declined it" in refused.content.decode()
    assert invite(client, existing_login.email, f"reseller:{reseller.pk}", "reseller_admin").status_code == 302
    membership.refresh_from_db()
    assert (membership.invitation, membership.role, membership.is_active) == ("pending", "reseller_admin", False)


def test_a_pending_invitation_cannot_be_switched_on_by_anyone_but_its_person(
    client, reseller_admin, reseller, existing_login
):
    client.force_login(reseller_admin)
    invite(client, existing_login.email, f"reseller:{reseller.pk}", "reseller_operator")
    membership = Membership.objects.get(user=existing_login, reseller=reseller)
    url = reverse("admin:tenants_membership_change", args=[membership.pk])
    refused = client.post(url, {"role": "reseller_operator", "is_active": "on"})
    assert refused.status_code == 200 and "was invited and has not accepted it yet" in refused.content.decode()
    with pytest.raises(ValidationError):
        services.member_set_active(actor=reseller_admin, membership=membership, active=True)
    # Signed in as someone else, the link answers nothing.
    link = invitation_link(mail.outbox[0])
    stranger = Client()
    stranger.force_login(reseller_admin)
    page = stranger.get(link)
    assert page.status_code == 403 and "this invitation was sent to another e-mail address" in page.content.decode()
    assert stranger.post(link, {"action": "accept"}).status_code == 403
    membership.refresh_from_db()
    assert (membership.invitation, membership.is_active) == ("pending", False)
    assert not sees_reseller(existing_login, reseller)


def test_a_login_with_nothing_but_an_invitation_signs_in_to_answer_it(client, reseller_admin, reseller, other_admin):
    Membership.objects.filter(user=other_admin).update(is_active=False)  # left their own reseller
    client.force_login(reseller_admin)
    invite(client, other_admin.email, f"reseller:{reseller.pk}", "reseller_operator")
    link = invitation_link(mail.outbox[0])
    invitee = Client()
    signed_in = invitee.post(
        f"{reverse('admin:login')}?next={link}", {"username": other_admin.email, "password": f.PASSWORD}
    )
    assert signed_in.status_code == 302 and signed_in.url == link
    assert invitee.get(reverse("admin:index")).status_code == 302  # nothing else until it accepts
    invitee.post(link, {"action": "accept"})
    assert invitee.get(reverse("admin:index")).status_code == 200


def test_a_new_login_may_decline_from_the_link_and_the_page_needs_its_csrf_token(client, reseller_admin, tenant):
    client.force_login(reseller_admin)
    invite(client, "no-thanks@customer.example", f"tenant:{tenant.pk}", "tenant_viewer")
    link = invitation_link(mail.outbox[0])
    forged = Client(enforce_csrf_checks=True).post(link, {"action": "decline"})
    assert forged.status_code == 403
    assert Membership.objects.get(user__email="no-thanks@customer.example").invitation == "pending"
    assert Client().post(link, {"action": "decline"}).status_code == 302
    membership = Membership.objects.get(user__email="no-thanks@customer.example")
    assert (membership.invitation, membership.is_active, membership.user.has_usable_password()) == (
        "declined",
        False,
        False,
    )


def test_resend_reaches_only_invitations_without_an_answer(client, reseller_admin, reseller, operator):
    client.force_login(reseller_admin)
    invite(client, "waiting@reseller.example", f"reseller:{reseller.pk}", "reseller_operator")
    waiting = Membership.objects.get(user__email="waiting@reseller.example")
    mail.outbox.clear()
    chosen = [waiting.pk, operator.memberships.get().pk]
    client.post(reverse("admin:tenants_membership_changelist"), {"action": "resend_invite", "_selected_action": chosen})
    assert [m.to for m in mail.outbox] == [["waiting@reseller.example"]]
    assert "/invitations/" in mail.outbox[0].body


def test_an_altered_or_expired_link_opens_nothing(client, reseller_admin, tenant, settings):
    client.force_login(reseller_admin)
    invite(client, "late@customer.example", f"tenant:{tenant.pk}", "tenant_viewer")
    link = invitation_link(mail.outbox[0])
    altered = Client().get(link[:-3] + "xx/")
    assert altered.status_code == 404 and "not valid, or it has expired" in altered.content.decode()
    settings.PASSWORD_RESET_TIMEOUT = -1  # INVITE_LINK_TTL_SECONDS: every link is older than this
    expired = Client().post(
        link, {"action": "accept", "new_password1": "a-long-new-pass", "new_password2": "a-long-new-pass"}
    )
    assert expired.status_code == 404
    assert Membership.objects.get(user__email="late@customer.example").invitation == "pending"


def same_shape(html: str, email: str) -> str:
    """The page without what differs between any two invitations: the e-mail (the search that found it too), ids
    and times."""
    html = re.sub(r'\?_changelist_filters=[^"]*', "", html.replace(email, "EMAIL"))
    return re.sub(r"\d+", "N", html)


def test_the_inviter_sees_the_same_whether_the_login_existed_or_not(
    client, reseller_admin, tenant, existing_login, other_admin
):
    client.force_login(reseller_admin)
    seen = {}
    for email in ("newcomer@customer.example", existing_login.email):
        response = invite(client, email, f"tenant:{tenant.pk}", "tenant_viewer")
        page = client.get(response.url).content.decode()
        event = AuditEvent.objects.filter(action="member.invited").latest("id")
        message = mail.outbox[-1]
        membership = Membership.objects.get(user__email=email, tenant=tenant)
        row = client.get(reverse("admin:tenants_membership_changelist"), {"q": email}).content.decode()
        change_page = client.get(reverse("admin:tenants_membership_change", args=[membership.pk])).content.decode()
        seen[email] = {
            "answer": (response.status_code, response.url),
            "page": same_shape(re.search(r'<ul class="messagelist[^"]*"[^>]*>.*?</ul>', page, re.S).group(0), email),
            "audit": (
                event.actor_label,
                event.object_repr.replace(email, "EMAIL"),
                {**event.changes, "email": "EMAIL"},
            ),
            "mail": (
                message.subject,
                re.sub(r"/invitations/[^/]+/", "/invitations/TOKEN/", message.body),
                [to.replace(email, "EMAIL") for to in message.to],
            ),
            "row": same_shape(re.search(r"<tbody[^>]*>.*?</tbody>", row, re.S).group(0), email),
            "change page": same_shape(re.search(r"<fieldset.*?</fieldset>", change_page, re.S).group(0), email),
        }
    first, second = seen.values()
    for what in first:
        assert first[what] == second[what], what
    assert "Olga" not in client.get(reverse("admin:tenants_membership_changelist")).content.decode()
    hidden = client.get(reverse("admin:tenants_membership_changelist"), {"q": "Olga"}).content.decode()
    assert existing_login.email not in hidden  # a search by the login's own name does not find it either
    # Another reseller's admin sees none of it.
    client.force_login(other_admin)
    theirs = client.get(reverse("admin:tenants_membership_changelist")).content.decode()
    assert "newcomer@customer.example" not in theirs


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


def test_after_inviting_the_admin_says_to_whom_the_invitation_went(client, reseller_admin, tenant):
    client.force_login(reseller_admin)
    response = invite(client, "Dana@Customer.example", f"tenant:{tenant.pk}", "tenant_viewer")
    page = client.get(response.url).content.decode()
    assert response.url == reverse("admin:tenants_membership_changelist")
    assert "Invitation sent to dana@customer.example." in page and "was added successfully" not in page


def test_a_failed_invite_email_does_not_say_the_invitation_was_sent(client, reseller_admin, reseller, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 1  # nothing listens there
    client.force_login(reseller_admin)
    page = client.get(invite(client, "late@example.com", f"reseller:{reseller.pk}", "reseller_operator").url)
    assert "Invitation sent" not in page.content.decode() and "could not be sent" in page.content.decode()
