"""People management: invites, roles, deactivation, API tokens. Reseller admins do this without platform help."""

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from messaging.models import AuditEvent
from tenants import access
from tenants.models import ApiToken, Membership, Reseller, Tenant

logger = logging.getLogger(__name__)
User = get_user_model()


def tenant_save(*, actor, tenant: Tenant) -> Tenant:
    """Save a tenant; suspending or resuming it is recorded."""
    previous = Tenant.objects.filter(pk=tenant.pk).values_list("status", flat=True).first() if tenant.pk else None
    tenant.full_clean()
    with transaction.atomic():
        tenant.save()
        if previous is not None and previous != tenant.status:
            AuditEvent.record(
                AuditEvent.Action.TENANT_STATUS, tenant, actor=actor, changes={"status": [previous, tenant.status]}
            )
            if tenant.is_active:
                from messaging.services import tenant_held_release

                tenant_held_release(tenant)  # texts held while suspended go out now, in arrival order
    return tenant


def _reseller_id_of(organization: Reseller | Tenant) -> int:
    return organization.pk if isinstance(organization, Reseller) else organization.reseller_id


def _check_role_fits(organization: Reseller | Tenant, role: str) -> None:
    org_field = "reseller" if isinstance(organization, Reseller) else "tenant"
    Membership(role=role, **{org_field: organization}).clean()


def _check_manages_people(actor, reseller_id: int) -> None:
    if not access.people_resellers(actor).filter(pk=reseller_id).exists():
        raise PermissionDenied("You do not manage the people of this organisation.")


def member_check_invite(email: str, organization: Reseller | Tenant) -> None:
    """Refuse a second role for the same person in the same organisation."""
    org_field = "reseller" if isinstance(organization, Reseller) else "tenant"
    if Membership.objects.filter(user__username=email.strip().lower(), **{org_field: organization}).exists():
        raise ValidationError({"email": f"{email} already has a role in {organization}; change that one instead."})


def member_invite(
    *, actor, email: str, organization: Reseller | Tenant, role: str, first_name: str = "", last_name: str = ""
) -> tuple[Membership, bool]:
    """Give a person a role in a reseller or one of its tenants, creating their login if they have none.

    Returns the membership and whether the e-mail went out; the membership stands even if the mail server
    failed, and the invite can be resent.
    """
    email = User.objects.normalize_email(email).strip().lower()
    _check_manages_people(actor, _reseller_id_of(organization))
    _check_role_fits(organization, role)
    org_field = "reseller" if isinstance(organization, Reseller) else "tenant"
    with transaction.atomic():
        user, created = User.objects.get_or_create(
            username=email, defaults={"email": email, "first_name": first_name, "last_name": last_name}
        )
        if created:
            user.set_unusable_password()  # the invitee chooses one through the link
            user.save(update_fields=["password"])
        member_check_invite(email, organization)
        membership = Membership.objects.create(user=user, role=role, invited_by=actor, **{org_field: organization})
        AuditEvent.record(
            AuditEvent.Action.MEMBER_INVITED,
            membership,
            actor=actor,
            changes={"email": email, "role": role, "organization": str(organization), "new_login": created},
        )
    return membership, member_send_invite(membership)


def member_send_invite(membership: Membership) -> bool:
    """E-mail the invite: a set-password link for a new login, a sign-in link for an existing one."""
    user = membership.user
    context = {
        "membership": membership,
        "organization": membership.organization,
        "login_url": settings.PUBLIC_BASE_URL + reverse("admin:login"),
        "set_password_url": None,
    }
    if not user.has_usable_password():
        uid = urlsafe_base64_encode(force_bytes(user.pk))
        token = default_token_generator.make_token(user)
        context["set_password_url"] = settings.PUBLIC_BASE_URL + reverse(
            "password_reset_confirm", kwargs={"uidb64": uid, "token": token}
        )
    subject = f"You have been invited to {membership.organization} on the PBX Messaging Portal"
    try:
        send_mail(subject, render_to_string("tenants/invite_email.txt", context), None, [user.email])
    except Exception:  # the mail server is outside our control; the admin offers "resend"
        logger.exception("invite e-mail to membership %s could not be sent", membership.pk)
        return False
    return True


def _check_not_last_admin(membership: Membership) -> None:
    if membership.role != Membership.Role.RESELLER_ADMIN or not membership.is_active:
        return
    others = Membership.objects.filter(
        reseller_id=membership.reseller_id, role=Membership.Role.RESELLER_ADMIN, is_active=True
    ).exclude(pk=membership.pk)
    if not others.exists():
        raise ValidationError(
            f"{membership.user.email} is the last active admin of {membership.reseller}; make someone else admin first."
        )


def member_check_change(membership: Membership, *, role: str, active: bool) -> None:
    """Refuse a change that would leave a reseller without an active admin."""
    if membership.role == Membership.Role.RESELLER_ADMIN and (role != membership.role or not active):
        _check_not_last_admin(membership)


def member_change_role(*, actor, membership: Membership, role: str) -> Membership:
    """Change a member's role within the same organisation."""
    _check_manages_people(actor, membership.owning_reseller_id)
    _check_role_fits(membership.organization, role)
    if role == membership.role:
        return membership
    with transaction.atomic():
        membership = Membership.objects.select_for_update().get(pk=membership.pk)
        if membership.role == role:
            return membership  # changed by a request that held the lock first (a double submit): one audit row
        member_check_change(membership, role=role, active=membership.is_active)
        previous, membership.role = membership.role, role
        membership.save(update_fields=["role"])
        AuditEvent.record(
            AuditEvent.Action.MEMBER_ROLE_CHANGED, membership, actor=actor, changes={"role": [previous, role]}
        )
    return membership


def member_set_active(*, actor, membership: Membership, active: bool) -> Membership:
    """Deactivate a member (their access ends at once) or bring them back."""
    _check_manages_people(actor, membership.owning_reseller_id)
    if membership.is_active == active:
        return membership
    with transaction.atomic():
        membership = Membership.objects.select_for_update().get(pk=membership.pk)
        if membership.is_active == active:
            return membership  # done by a request that held the lock first: no second audit row
        member_check_change(membership, role=membership.role, active=active)
        membership.is_active = active
        membership.save(update_fields=["is_active"])
        action = AuditEvent.Action.MEMBER_REACTIVATED if active else AuditEvent.Action.MEMBER_DEACTIVATED
        AuditEvent.record(action, membership, actor=actor, changes={"is_active": [not active, active]})
    return membership


def _token_reseller(token: ApiToken) -> Reseller | None:
    """Whose audit trail a token's events belong to: its tenant's reseller, else the one reseller its person works
    for (platform staff, and people of several resellers, leave it to the platform's trail)."""
    if token.tenant_id:
        return None  # read off the tenant
    ids = {m.owning_reseller_id for m in token.user.memberships.filter(is_active=True).select_related("tenant")}
    return Reseller.objects.get(pk=ids.pop()) if len(ids) == 1 else None


def api_token_create(*, actor, name: str, tenant: Tenant | None = None) -> tuple[ApiToken, str]:
    """Issue an API token: the actor's own, or (reseller admins) one for a tenant's integration, which sees that
    tenant only. The plaintext is returned once and never stored."""
    if not access.can(actor, "add", ApiToken):
        raise PermissionDenied("You cannot create API tokens.")
    if tenant is not None and not access.people_resellers(actor).filter(pk=tenant.reseller_id).exists():
        raise PermissionDenied("Only the reseller's admins create tokens for its tenants.")
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Name the token after what will use it, e.g. 'billing export'."})
    with transaction.atomic():
        token, plaintext = ApiToken.issue(actor, name, tenant=tenant)
        AuditEvent.record(
            AuditEvent.Action.TOKEN_CREATED,
            token,
            actor=actor,
            changes={"name": name, "tenant": str(tenant or "")},
            reseller=_token_reseller(token),
        )
    return token, plaintext


def api_token_revoke(*, actor, token: ApiToken) -> None:
    """Revoke a token; requests carrying it are refused from now on."""
    if not access.can(actor, "change", token):
        raise PermissionDenied("You cannot revoke this token.")
    with transaction.atomic():
        # Claimed with a conditional update: two revocations at once (a double click) leave one audit row.
        now = timezone.now()
        if not ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now):
            return
        token.revoked_at = now
        AuditEvent.record(
            AuditEvent.Action.TOKEN_REVOKED,
            token,
            actor=actor,
            changes={"name": token.name, "revoked_at": [None, now.isoformat()]},
            reseller=_token_reseller(token),
        )
