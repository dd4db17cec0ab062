"""Sender IDs registered at Wavix and deleted there, and their registrations country by country: the one place
their status moves, with the timeline, the audit trail, the paperwork and the e-mails that go with each move.

- Staff reviewers decide (request documents, approve, reject with a reason, mark allow-listed); never on a
  registration of a reseller they are a member of.
- Resellers upload documents (PDF, PNG, JPEG, checked by content) and submit them for review.
- Wavix's allow-listing (sender_ids_sync) moves registrations as the system.
- Every move: one RegistrationEvent (the timeline), one AuditEvent, and after commit an e-mail to the
  reseller's admins; a new submission e-mails the reviewers; a daily digest lists what waits too long.

Registering or deleting a sender ID calls Wavix while the person waits, before anything is saved: a refusal
leaves nothing half-saved.
"""

import logging
from collections.abc import Iterable
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from messaging.models import (
    CountryRule,
    IllegalTransition,
    RegistrationDocument,
    RegistrationEvent,
    SenderID,
    SenderIDCountry,
    WavixAccount,
)
from messaging.wavix import WavixClient, WavixError, WavixPermanentError, WavixSenderID, refusal
from tenants import access, branding
from tenants.models import AuditEvent, Membership, Reseller

logger = logging.getLogger(__name__)


Status = SenderIDCountry.Status


# What a reviewer may do, by the button: the status it moves to and whether a note is required.
DECISIONS = {
    "request_documents": (Status.NEEDS_DOCUMENTS, True),
    "approve": (Status.APPROVED, False),
    "reject": (Status.REJECTED, True),
    "allowlist": (Status.ALLOWLISTED, False),
}


# Waiting on staff (in review) or on paperwork (needs documents): what the review queue lists.
QUEUE_STATUSES = (Status.NEEDS_DOCUMENTS, Status.IN_REVIEW, Status.APPROVED, Status.REJECTED)
# Whose move it is, for the queue's views: a reviewer's (documents submitted), the reseller's (paperwork to send,
# or a rejection to answer), or Wavix's (approved here, its allow-listing follows). Each queue status is in one.
WAITING_ON = {
    "reviewer": (Status.IN_REVIEW,),
    "reseller": (Status.NEEDS_DOCUMENTS, Status.REJECTED),
    "wavix": (Status.APPROVED,),
}


DOCUMENT_TYPES = {b"%PDF-": "application/pdf", b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


# ---------------------------------------------------------------------------------------------------------------
# Sender IDs at Wavix
# ---------------------------------------------------------------------------------------------------------------


def sender_id_register(
    *, actor: User | None, sender: SenderID, countries: Iterable[str], registered: WavixSenderID | None = None
) -> SenderID:
    """Register a sender ID at Wavix with one registration per destination country, or save nothing at all.

    Local rules first (format, the tenant's numbers, countries that refuse the type), then Wavix — unless
    `registered` names a registration that already exists there, which is adopted as it is. A country Wavix
    allow-lists at once starts allow-listed; one that needs paperwork starts at 'needs documents'; the others
    at 'requested' until Wavix allow-lists them (the periodic sync notices).
    """
    errors: dict[str, list[str]] = {}
    try:
        sender.full_clean()
    except ValidationError as error:
        errors.update(error.message_dict)
    try:
        rules = CountryRule.check_destinations(sender.type, countries)
    except ValidationError as error:
        errors["countries"] = error.messages
    if errors:
        raise ValidationError(errors)
    assert sender.account is not None  # full_clean() gave it one, or refused
    if registered is None:
        try:
            registered = WavixClient.for_account(sender.account).create_sender_id(
                value=sender.value,
                type=sender.type,
                countries=sorted(rules),
                usecase=sender.usecase,
                samples=sender.samples,
            )
        except WavixError as error:
            raise ValidationError(refusal(error, "the sender ID", doing="register the sender ID")) from None
    sender.wavix_id = registered.wavix_id
    with transaction.atomic():
        sender.save()
        registrations = SenderIDCountry.objects.bulk_create(
            SenderIDCountry(
                tenant_id=sender.tenant_id,
                sender=sender,
                country=code,
                status=SenderIDCountry.Status.ALLOWLISTED
                if code in registered.allowlisted_in
                else SenderIDCountry.initial_status(rule, sender.type),
            )
            for code, rule in sorted(rules.items())
        )
        registrations_submitted(actor, registrations)
        AuditEvent.record(
            AuditEvent.Action.SENDER_ID_REGISTERED,
            sender,
            actor=actor,
            changes={"type": sender.type, "countries": {r.country: r.status for r in registrations}},
        )
    return sender


def sender_id_deletion_problem(sender: SenderID) -> str | None:
    """Why this sender ID cannot be deleted now (checked before Wavix is asked to delete it)."""
    trunks = list(sender.trunks.values_list("name", flat=True))
    if trunks:
        return f"{sender} is the Main Trunk No. of {', '.join(trunks)}; choose another sender there first."
    return None


def sender_id_delete(*, actor: User | None, sender: SenderID) -> None:
    """Delete a sender ID at Wavix, then here; if Wavix cannot be asked, nothing is deleted."""
    if problem := sender_id_deletion_problem(sender):
        raise ValidationError(problem)
    if sender.wavix_id:
        assert sender.account is not None  # registered at Wavix through its account
        try:
            WavixClient.for_account(sender.account).delete_sender_id(sender.wavix_id)
        except WavixError as error:
            already_gone = isinstance(error, WavixPermanentError) and error.status == 404  # what we wanted anyway
            if not already_gone:
                raise ValidationError(
                    refusal(error, "the deletion", doing="delete the sender ID", nothing="deleted")
                ) from None
    with transaction.atomic():
        AuditEvent.record(
            AuditEvent.Action.SENDER_ID_DELETED,
            sender,
            actor=actor,
            changes={"value": sender.value, "type": sender.type},
        )
        sender.delete()


def sender_ids_sync(account: WavixAccount) -> int:
    """Mark every country Wavix now lists in `allowlisted_in` as allow-listed; returns how many moved."""
    registered = {s.wavix_id: s for s in WavixClient.for_account(account).sender_ids()}
    moved = 0
    # Only moves the lifecycle allows: a rejected registration stays rejected until it is reviewed again.
    movable = [s for s, nexts in SenderIDCountry.TRANSITIONS.items() if SenderIDCountry.Status.ALLOWLISTED in nexts]
    waiting = SenderIDCountry.objects.filter(
        sender__account=account, sender__wavix_id__in=registered, status__in=movable
    )
    for registration in waiting.select_related("sender"):
        if registration.country in registered[registration.sender.wavix_id].allowlisted_in:
            registration_set_status(
                actor=None,
                registration=registration,
                status=SenderIDCountry.Status.ALLOWLISTED,
                note="Wavix lists the sender as allow-listed in this country.",
            )
            moved += 1
    return moved


# ---------------------------------------------------------------------------------------------------------------
# Registrations: status moves, review, documents
# ---------------------------------------------------------------------------------------------------------------


def _label(actor: User | None) -> str:
    return actor.email or actor.get_username() if actor else "system"


def registration_set_status(
    *, actor: User | None, registration: SenderIDCountry, status: str, note: str = ""
) -> SenderIDCountry:
    """Move one registration along its lifecycle, recording who did it and why (actor None = the system)."""
    with transaction.atomic():
        registration = SenderIDCountry.objects.select_for_update().select_related("sender").get(pk=registration.pk)
        try:
            previous = registration.transition(status, actor=actor, note=note)
        except IllegalTransition as error:
            raise ValidationError(str(error)) from None  # shown on the reviewer's form like any other refusal
        registration.save()
        _timeline(registration, previous, actor, note)
        AuditEvent.record(
            AuditEvent.Action.REGISTRATION_STATUS,
            registration,
            actor=actor,
            changes={"country": registration.country, "status": [previous, status], "note": note},
        )
        transaction.on_commit(partial(notify_reseller, registration.pk))
        if status == Status.IN_REVIEW:
            transaction.on_commit(partial(notify_reviewers, [registration.pk], "Documents submitted for review"))
    return registration


def _timeline(registration: SenderIDCountry, previous: str, actor: User | None, note: str) -> RegistrationEvent:
    return RegistrationEvent.objects.create(
        tenant_id=registration.tenant_id,
        registration=registration,
        from_status=previous,
        to_status=registration.status,
        note=note,
        actor=actor,
        actor_label=_label(actor),
    )


def registrations_submitted(actor: User | None, registrations: list[SenderIDCountry]) -> None:
    """New registrations (a sender ID registered): their first timeline entry; reviewers hear of paperwork."""
    for registration in registrations:
        _timeline(registration, "", actor, "Submitted with the sender ID.")
    paperwork = [r.pk for r in registrations if r.status == Status.NEEDS_DOCUMENTS]
    if paperwork:
        transaction.on_commit(partial(notify_reviewers, paperwork, "New registration needing paperwork"))


def review_problem(user: User, registration: SenderIDCountry) -> str | None:
    """Why this user may not decide on this registration, or None."""
    if not access.is_reviewer(user):
        return "Only platform reviewers decide on registrations."
    reseller_id = registration.tenant.reseller_id
    own = Membership.objects.filter(user=user, is_active=True).filter(
        Q(reseller_id=reseller_id) | Q(tenant__reseller_id=reseller_id)
    )
    if own.exists():
        return "You are a member of this registration's reseller: another reviewer must decide."
    return None


def registration_decide(
    *, reviewer: User, registration: SenderIDCountry, decision: str, note: str = ""
) -> SenderIDCountry:
    """A reviewer's decision: request documents, approve, reject (with the reason) or mark allow-listed."""
    if problem := review_problem(reviewer, registration):
        raise PermissionDenied(problem)
    note = decision_validate(decision, note)
    return registration_set_status(actor=reviewer, registration=registration, status=DECISIONS[decision][0], note=note)


def decision_validate(decision: str, note: str) -> str:
    """Refuse an unknown decision, or one that needs a note without it; return the note as it will be kept."""
    if decision not in DECISIONS:
        raise ValidationError({"decision": "Choose what to do with the registration."})
    note = (note or "").strip()
    if DECISIONS[decision][1] and not note:
        what = "why it is rejected" if decision == "reject" else "which documents are needed"
        raise ValidationError({"note": f"Write {what}: the reseller reads it."})
    return note


def review_queue() -> QuerySet[SenderIDCountry]:
    """Every registration that needs paperwork or a decision, oldest first (by when it entered its status)."""
    return (
        SenderIDCountry.objects.filter(status__in=QUEUE_STATUSES)
        .select_related("sender", "tenant__reseller")
        .order_by("status_changed_at", "id")
    )


def document_upload(*, actor: User, registration: SenderIDCountry, upload: UploadedFile) -> RegistrationDocument:
    """Keep one document for a registration: PDF, PNG or JPEG by its content (never its name), size-limited."""
    if (
        not access.can(actor, "add", RegistrationDocument)
        or not access.visible(actor, SenderIDCountry).filter(pk=registration.pk).exists()
    ):
        raise PermissionDenied
    if registration.status not in (Status.NEEDS_DOCUMENTS, Status.REJECTED, Status.IN_REVIEW):
        raise ValidationError(
            {"file": f"This registration is {registration.get_status_display().lower()}: it takes no documents."}
        )
    limit = settings.REGISTRATION_DOCUMENT_MAX_BYTES
    assert upload.size is not None and upload.name is not None  # a file a form received has both
    if upload.size > limit:
        raise ValidationError({"file": f"{upload.name} is {upload.size // 1024} KB; the limit is {limit // 1024} KB."})
    head = upload.read(16)
    upload.seek(0)
    content_type = next((kind for magic, kind in DOCUMENT_TYPES.items() if head.startswith(magic)), None)
    if content_type is None:
        raise ValidationError({"file": f"{upload.name} is not a PDF, PNG or JPEG file (checked by its content)."})
    with transaction.atomic():
        document = RegistrationDocument(
            tenant_id=registration.tenant_id,
            registration=registration,
            name=upload.name[:200],
            content_type=content_type,
            size=upload.size,
            uploaded_by=actor,
        )
        document.file.save("upload", upload, save=False)
        document.save()
        AuditEvent.record(
            AuditEvent.Action.DOCUMENT_UPLOADED,
            registration,
            actor=actor,
            changes={"document": document.name, "type": content_type, "size": document.size},
        )
    return document


def documents_submit(*, actor: User, registration: SenderIDCountry) -> SenderIDCountry:
    """The reseller sends the paperwork for review (needs documents or rejected → in review)."""
    if not access.visible(actor, SenderIDCountry).filter(pk=registration.pk).exists() or not access.can(
        actor, "add", RegistrationDocument
    ):
        raise PermissionDenied
    if not registration.documents.exists():
        raise ValidationError({"file": "Upload the documents the country asks for first."})
    if registration.status not in (Status.NEEDS_DOCUMENTS, Status.REJECTED):
        raise ValidationError(
            {"file": f"This registration is {registration.get_status_display().lower()}: nothing to submit."}
        )
    return registration_set_status(
        actor=actor, registration=registration, status=Status.IN_REVIEW, note="Documents submitted for review."
    )


def document_for(user: access.Principal, pk: int) -> RegistrationDocument | None:
    """The document if this user may read it: its reseller's staff, or a platform reviewer."""
    documents = RegistrationDocument.objects.select_related("registration")
    if access.is_reviewer(user):
        return documents.filter(pk=pk).first()
    return access.visible(user, documents).filter(pk=pk).first()


# ---------------------------------------------------------------------------------------------------------------
# E-mails
# ---------------------------------------------------------------------------------------------------------------


def _reseller_admin_emails(reseller_id: int) -> list[str]:
    return sorted(
        Membership.objects.filter(
            reseller_id=reseller_id, role=Membership.Role.RESELLER_ADMIN, is_active=True, user__is_active=True
        ).values_list("user__email", flat=True)
    )


def _reviewer_emails() -> list[str]:
    permission = Permission.objects.get(
        codename=access.REVIEW_PERMISSION.split(".")[1], content_type__app_label="messaging"
    )
    users = (
        get_user_model()
        .objects.filter(is_active=True, is_staff=True)
        .filter(Q(user_permissions=permission) | Q(groups__permissions=permission) | Q(is_superuser=True))
    )
    return sorted({email for email in users.values_list("email", flat=True) if email})


def _send(subject: str, body: str, recipients: list[str], *, reseller: Reseller | None = None) -> None:
    """E-mail in the reseller's brand (the platform's for reviewers: reseller=None)."""
    if not recipients:
        return
    try:
        branding.send_branded_mail(subject, body, recipients, reseller=reseller)
    except Exception:  # noqa: BLE001 - a mail server down must not undo a decision already committed
        logger.exception("registrations: could not send %r to %d recipient(s)", subject, len(recipients))


def notify_reseller(registration_id: int) -> None:
    registration = SenderIDCountry.objects.select_related("sender", "tenant").get(pk=registration_id)
    event = registration.events.order_by("-id").first()
    subject = f"{registration.sender.value} → {registration.country}: {registration.get_status_display()}"
    lines = [
        f"The registration of sender ID {registration.sender.value} for {registration.country} "
        f"({registration.tenant}) is now: {registration.get_status_display()}.",
    ]
    if registration.note:
        lines.append(f"Note: {registration.note}")
    if event:
        lines.append(f"By {event.actor_label} at {timezone.localtime(event.created_at):%Y-%m-%d %H:%M}.")
    if registration.status == Status.NEEDS_DOCUMENTS:
        documents = reverse("admin:messaging_senderidcountry_documents", args=[registration.pk])
        lines.append(f"Upload the documents, which submits them for review: {settings.PUBLIC_BASE_URL}{documents}")
    reseller = registration.tenant.reseller
    _send(subject, "\n\n".join(lines), _reseller_admin_emails(reseller.pk), reseller=reseller)


def notify_reviewers(registration_ids: list[int], what: str) -> None:
    registrations = list(SenderIDCountry.objects.filter(pk__in=registration_ids).select_related("sender", "tenant"))
    if not registrations:
        return
    lines = [f"- {r.sender.value} → {r.country} ({r.tenant}, {r.get_status_display()})" for r in registrations]
    _send(f"{what}: {len(registrations)} registration(s)", "\n".join(lines), _reviewer_emails())


def review_digest() -> int:
    """Daily: tell the reviewers what has waited longer than REGISTRATION_DIGEST_AFTER_DAYS; returns how many."""
    cutoff = timezone.now() - timedelta(days=settings.REGISTRATION_DIGEST_AFTER_DAYS)
    waiting = list(review_queue().filter(status__in=(Status.IN_REVIEW, Status.APPROVED), status_changed_at__lt=cutoff))
    if waiting:
        now = timezone.now()
        lines = [
            f"- {r.sender.value} → {r.country} ({r.tenant}): {r.get_status_display().lower()} for "
            f"{(now - r.status_changed_at).days} days"
            for r in waiting
        ]
        _send(f"Waiting for review: {len(waiting)} registration(s)", "\n".join(lines), _reviewer_emails())
    return len(waiting)
