"""Saving tenants and resellers (status and price changes audited), and people management: invites, roles,
deactivation, API tokens. Reseller admins do this without platform help."""

import logging
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from tenants import access, branding
from tenants.models import ApiToken, AuditEvent, Membership, PriceTerms, Reseller, Tenant
from tenants.signals import tenant_resumed

logger = logging.getLogger(__name__)
User = get_user_model()


def _price_terms(obj: Reseller | Tenant) -> dict[str, str]:
    """The terms as text, each amount written once however the form or the column wrote it (0.019 = 0.01900)."""

    def written(value) -> str:
        if value is None:
            return ""
        return f"{value.normalize():f}" if isinstance(value, Decimal) else str(value)

    return {name: written(getattr(obj, name)) for name in PriceTerms.PRICE_FIELDS}


def _record_price_change(actor, obj: Reseller | Tenant, before: dict[str, str] | None) -> None:
    """Prices decide what customers are billed: every change is in the audit trail, old and new terms side by side."""
    if before is None:
        return  # a new row: its prices did not change, they began
    after = _price_terms(obj)
    changed = {name: [before[name], after[name]] for name in PriceTerms.PRICE_FIELDS if before[name] != after[name]}
    if changed:
        AuditEvent.record(AuditEvent.Action.PRICES_CHANGED, obj, actor=actor, changes=changed)


def tenant_save(*, actor, tenant: Tenant) -> Tenant:
    """Save a tenant; suspending or resuming it, and a change of its prices, are recorded."""
    saved = Tenant.objects.filter(pk=tenant.pk).first() if tenant.pk else None
    tenant.full_clean()
    with transaction.atomic():
        tenant.save()
        if saved is not None and saved.status != tenant.status:
            AuditEvent.record(
                AuditEvent.Action.TENANT_STATUS, tenant, actor=actor, changes={"status": [saved.status, tenant.status]}
            )
            if tenant.is_active:
                tenant_resumed.send(sender=Tenant, tenant=tenant)  # held texts go out now, in arrival order
        _record_price_change(actor, tenant, _price_terms(saved) if saved else None)
    return tenant


def reseller_save(*, actor, reseller: Reseller) -> Reseller:
    """Save a reseller; a change of its prices is recorded."""
    saved = Reseller.objects.filter(pk=reseller.pk).first() if reseller.pk else None
    reseller.full_clean()
    with transaction.atomic():
        reseller.save()
        _record_price_change(actor, reseller, _price_terms(saved) if saved else None)
    return reseller


def _reseller_id_of(organization: Reseller | Tenant) -> int:
    return organization.pk if isinstance(organization, Reseller) else organization.reseller_id


def _check_role_fits(organization: Reseller | Tenant, role: str) -> None:
    org_field = "reseller" if isinstance(organization, Reseller) else "tenant"
    Membership(role=role, **{org_field: organization}).clean()


def _check_manages_people(actor, reseller_id: int) -> None:
    if not access.people_resellers(actor).filter(pk=reseller_id).exists():
        raise PermissionDenied("You do not manage the people of this organisation.")


def member_check_invite(email: str, organization: Reseller | Tenant) -> None:
    """Refuse a second role for the same person in the same organisation (a declined invitation may be renewed)."""
    org_field = "reseller" if isinstance(organization, Reseller) else "tenant"
    held = Membership.objects.filter(user__username=email.strip().lower(), **{org_field: organization})
    if held.exclude(invitation=Membership.Invitation.DECLINED).exists():
        raise ValidationError({"email": f"{email} already has a role in {organization}; change that one instead."})


def member_invite(
    *, actor, email: str, organization: Reseller | Tenant, role: str, first_name: str = "", last_name: str = ""
) -> tuple[Membership, bool]:
    """Invite a person to a role in a reseller or one of its tenants; the role is theirs once they accept.

    Whether the e-mail already has a login (another reseller's person, platform staff) must not show: such a login
    is never attached without its owner's word, and the inviter sees the same thing either way — the same
    pending membership, audit row and e-mail. The person answers from the e-mail's link: a new login chooses its
    password there, an existing one signs in (see invitation_accept). First and last name are kept for a new
    login only: an existing login's own name is not the inviter's to change.

    Returns the membership and whether the e-mail went out; the invitation stands even if the mail server
    failed, and can be resent.
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
        organization_lookup: dict[str, Any] = {org_field: organization}  # Any: mypy checks ** against defaults too
        membership, _ = Membership.objects.update_or_create(  # a declined invitation is renewed in its own row
            user=user,
            **organization_lookup,
            defaults={
                "role": role,
                "invited_by": actor,
                "is_active": False,
                "invitation": Membership.Invitation.PENDING,
            },
        )
        AuditEvent.record(
            AuditEvent.Action.MEMBER_INVITED,
            membership,
            actor=actor,
            changes={"email": email, "role": role, "organization": str(organization)},
        )
    return membership, member_send_invite(membership)


INVITATION_SALT = "tenants.invitation"


def invitation_link(membership: Membership) -> str:
    """The link in the invitation e-mail: signed, and good for INVITE_LINK_TTL_SECONDS from the sending."""
    token = signing.dumps(membership.pk, salt=INVITATION_SALT)
    return settings.PUBLIC_BASE_URL + reverse("invitation", args=[token])


def invitation_of_link(token: str) -> Membership | None:
    """The invitation a link names; None for a link that was altered or has expired."""
    try:
        pk = signing.loads(token, salt=INVITATION_SALT, max_age=settings.PASSWORD_RESET_TIMEOUT)
    except signing.BadSignature:  # SignatureExpired included
        return None
    return Membership.objects.select_related("user", "reseller", "tenant__reseller", "invited_by").filter(pk=pk).first()


def member_send_invite(membership: Membership) -> bool:
    """E-mail an invitation that waits for its answer. The same e-mail for a new and an existing login: one link,
    whose page asks a new login for its password and an existing one to sign in."""
    if membership.invitation != Membership.Invitation.PENDING:
        return False
    context: dict[str, Any] = {
        "membership": membership,
        "organization": membership.organization,
        "invitation_url": invitation_link(membership),
        "days": settings.PASSWORD_RESET_TIMEOUT // 86400,
    }
    reseller = membership.reseller or membership.tenant.reseller  # type: ignore[union-attr]  # one of them is set
    brand = branding.brand_of(reseller)
    context["brand"] = brand
    subject = f"You have been invited to {membership.organization} on {brand.name}"
    try:
        branding.send_branded_mail(
            subject, render_to_string("tenants/invite_email.txt", context), [membership.user.email], reseller=reseller
        )
    except Exception:  # the mail server is outside our control; the admin offers "resend"
        logger.exception("invite e-mail to membership %s could not be sent", membership.pk)
        return False
    return True


def _answer_invitation(*, user, membership: Membership, accept: bool, new_password: str | None) -> Membership:
    if user is None or user.pk != membership.user_id:
        raise PermissionDenied("This invitation is for another login.")
    with transaction.atomic():
        membership = Membership.objects.select_for_update().get(pk=membership.pk)
        if membership.invitation != Membership.Invitation.PENDING:
            return membership  # answered by a request that held the lock first (a double submit): one audit row
        if new_password is not None:
            user.set_password(new_password)
            user.save(update_fields=["password"])
        membership.invitation = Membership.Invitation.ACCEPTED if accept else Membership.Invitation.DECLINED
        membership.is_active = accept
        membership.save(update_fields=["invitation", "is_active"])
        AuditEvent.record(
            AuditEvent.Action.MEMBER_ACCEPTED if accept else AuditEvent.Action.MEMBER_DECLINED,
            membership,
            actor=user,
            changes={"email": user.email, "role": membership.role, "organization": str(membership.organization)},
        )
    access.forget(user)
    return membership


def invitation_accept(*, user, membership: Membership, new_password: str | None = None) -> Membership:
    """Accept an invitation as the person it was sent to: the role is in force from now on. A new login sets its
    password with it (`new_password`); the page lets only the invitee's own session, or a new login's link, here."""
    return _answer_invitation(user=user, membership=membership, accept=True, new_password=new_password)


def invitation_decline(*, user, membership: Membership) -> Membership:
    """Decline an invitation as the person it was sent to: it grants nothing, ever (a new invitation may follow)."""
    return _answer_invitation(user=user, membership=membership, accept=False, new_password=None)


def _check_not_last_admin(membership: Membership) -> None:
    if membership.role != Membership.Role.RESELLER_ADMIN or not membership.is_active:
        return
    others = Membership.objects.filter(
        # A reseller admin's membership always has a reseller; the stub refuses the None its field type allows.
        reseller_id=membership.reseller_id,  # type: ignore[misc]
        role=Membership.Role.RESELLER_ADMIN,
        is_active=True,
    ).exclude(pk=membership.pk)
    if not others.exists():
        raise ValidationError(
            f"{membership.user.email} is the last active admin of {membership.reseller}; make someone else admin first."
        )


def member_check_change(membership: Membership, *, role: str, active: bool) -> None:
    """Refuse a change that would leave a reseller without an active admin, or put an invitation in force that its
    person has not accepted."""
    if active and not membership.is_active and membership.invitation != Membership.Invitation.ACCEPTED:
        answer = "declined it" if membership.invitation == Membership.Invitation.DECLINED else "not accepted it yet"
        raise ValidationError(
            f"{membership.user.email} was invited and has {answer}: only they can accept it, from the invitation "
            "e-mail (resend it, or invite them again)."
        )
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
