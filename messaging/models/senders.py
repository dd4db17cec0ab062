"""What each destination country accepts, sender IDs, their per-country registrations and documents."""

import os
import re
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import FileSystemStorage
from django.db import models
from django.utils import timezone

from messaging.models.common import IllegalTransition, to_e164
from messaging.models.provisioning import PhoneNumber, WavixAccount
from tenants.models import Tenant

# --------------------------------------------------------------------------------------------------------------
# Reference data: what each destination country accepts
# --------------------------------------------------------------------------------------------------------------


class CountryRule(models.Model):
    """Which sender types a destination country accepts, and which need paperwork first.

    Loaded from messaging/data/country_rules.csv (`manage.py load_country_rules`), then edited by staff.
    """

    class Policy(models.TextChoices):
        ALLOWED = "allowed", "Allowed"
        REGISTRATION = "registration", "Pre-registration required"
        UNSUPPORTED = "unsupported", "Not supported"

    country = models.CharField(max_length=2, primary_key=True)
    name = models.CharField(max_length=100)
    alphanumeric = models.CharField(max_length=16, choices=Policy.choices, default=Policy.ALLOWED)
    numeric = models.CharField(max_length=16, choices=Policy.choices, default=Policy.ALLOWED)
    note = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.country})"

    def policy_for(self, sender_type: str) -> str:
        return self.alphanumeric if sender_type == SenderID.Type.ALPHANUMERIC else self.numeric

    @classmethod
    def check_destinations(cls, sender_type: str, countries) -> dict[str, "CountryRule"]:
        """Return the rule of each destination country, or raise one ValidationError naming every refusal."""
        codes = sorted({(code or "").strip().upper() for code in countries})
        if not codes:
            raise ValidationError("Choose at least one destination country.")
        rules = CountryRule.objects.in_bulk(codes)
        problems = []
        for code in codes:
            rule = rules.get(code)
            if rule is None:
                problems.append(f"{code!r} is not a country code the portal knows.")
            elif rule.policy_for(sender_type) == cls.Policy.UNSUPPORTED:
                kind = "Alphanumeric" if sender_type == SenderID.Type.ALPHANUMERIC else "Numeric"
                hint = " Use a numeric sender ID (one of the tenant's numbers)." if kind == "Alphanumeric" else ""
                problems.append(f"{kind} sender IDs are not supported in {rule.name} ({code}).{hint}")
        if problems:
            raise ValidationError(problems)
        return rules


# --------------------------------------------------------------------------------------------------------------
# Sender IDs and their per-country registrations
# --------------------------------------------------------------------------------------------------------------

ALPHANUMERIC_ALLOWED = re.compile(r"[A-Za-z0-9 ]")


class SenderID(models.Model):
    """What recipients see as the sender: one of the tenant's numbers, or a name (one-way only)."""

    class Type(models.TextChoices):
        NUMERIC = "numeric", "Numeric (a phone number, two-way)"
        ALPHANUMERIC = "alphanumeric", "Alphanumeric (a name, one-way)"

    class UseCase(models.TextChoices):
        TRANSACTIONAL = "transactional", "Transactional (account or order notifications)"
        PROMO = "promo", "Promotional"
        AUTHENTICATION = "authentication", "Authentication (one-time codes)"

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="sender_ids")
    account = models.ForeignKey(
        WavixAccount,
        on_delete=models.PROTECT,
        related_name="sender_ids",
        help_text="The Wavix account the sender ID is registered on (a numeric one's number decides it).",
        null=True,
        blank=True,
    )
    type = models.CharField(max_length=16, choices=Type.choices)
    value = models.CharField(max_length=16, help_text="The name (3–11 letters, digits, spaces) or an E.164 number.")
    phone_number = models.ForeignKey(
        PhoneNumber, on_delete=models.PROTECT, null=True, blank=True, editable=False, related_name="sender_ids"
    )
    usecase = models.CharField("use case", max_length=16, choices=UseCase.choices, default=UseCase.TRANSACTIONAL)
    samples = models.JSONField(default=list, blank=True, help_text="Sample messages shown to reviewers.")
    wavix_id = models.CharField("Wavix ID", max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["value"]
        verbose_name = "sender ID"
        constraints = [models.UniqueConstraint(fields=["tenant", "value"], name="sender_id_unique_per_tenant")]
        permissions = [("review_senderid", "Can review sender-ID registrations")]

    def __str__(self) -> str:
        return self.value

    def clean(self) -> None:
        if self.type == self.Type.ALPHANUMERIC:
            self.value = (self.value or "").strip()
            self.phone_number = None
            problems = alphanumeric_problems(self.value)
            if problems:
                raise ValidationError({"value": problems})
        elif self.type == self.Type.NUMERIC:
            self._resolve_number()
        if not isinstance(self.samples, list) or not all(isinstance(s, str) for s in self.samples):
            raise ValidationError({"samples": "Samples are a list of example messages."})
        self._check_account()

    def _resolve_number(self) -> None:
        """A numeric sender must be one of the tenant's SMS-enabled numbers; it fixes the Wavix account."""
        try:
            self.value = to_e164(self.value)
        except ValidationError as error:
            raise ValidationError({"value": error.messages}) from None
        if not self.tenant_id:
            return
        number = PhoneNumber.objects.select_related("account").filter(tenant=self.tenant, number=self.value).first()
        if number is None:
            raise ValidationError({"value": f"{self.value} is not one of {self.tenant}'s numbers."})
        if not number.sms_enabled:
            raise ValidationError(
                {"value": f"{self.value} is not SMS-enabled at Wavix; enable SMS on the number first."}
            )
        if self.account_id and self.account_id != number.account_id:
            raise ValidationError({"account": f"{self.value} is on the Wavix account {number.account}."})
        self.phone_number = number
        self.account = number.account

    def _check_account(self) -> None:
        if not self.tenant_id:
            return
        if not self.account_id:
            self.account = WavixAccount.default_for(self.tenant)
            if self.account is None:
                raise ValidationError({"account": "Choose the Wavix account to register this sender ID on."})
        account = self.account
        assert account is not None  # account_id was set, or default_for() found one
        if account.reseller_id != self.tenant.reseller_id or (
            account.tenant_id and account.tenant_id != self.tenant_id
        ):
            raise ValidationError(
                {
                    "account": f"This Wavix account does not serve this tenant: choose {self.tenant}'s own account or "
                    "one its reseller shares."
                }
            )


def alphanumeric_problems(value: str) -> list[str]:
    """Every reason an alphanumeric sender ID is refused, in words a reseller can act on."""
    problems = []
    if len(value) < 3 or len(value) > 11:
        problems.append(f"{value!r} is {len(value)} characters long; alphanumeric sender IDs have 3 to 11.")
    bad = sorted({ch for ch in value if not ALPHANUMERIC_ALLOWED.fullmatch(ch)})
    if bad:
        shown = ", ".join(repr(ch) for ch in bad)
        problems.append(f"{value!r} contains {shown}; only letters A–Z, digits and spaces are allowed.")
    if value and not any(ch.isalpha() for ch in value):
        problems.append(f"{value!r} has no letter; an all-digit sender is a phone number, so use a numeric sender ID.")
    return problems


class SenderIDCountry(models.Model):
    """One destination country of a sender ID, with the portal's own registration status.

    Wavix reports only where a sender is allow-listed; paperwork is tracked here. Moves:

        requested ──────────────────────────────> allowlisted   (no paperwork: Wavix allow-lists it)
        needs_documents ──> in_review ──> approved ──> allowlisted
              ▲                 │  └─────> rejected ──> in_review (documents resubmitted)
              └─────────────────┘
        any non-final ──> not_supported, rejected
    """

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested"  # submitted; no paperwork needed, waiting for Wavix to allow-list
        ALLOWLISTED = "allowlisted", "Allow-listed"  # Wavix lists the country: sending works
        NEEDS_DOCUMENTS = "needs_documents", "Needs documents"  # the country asks for paperwork first
        IN_REVIEW = "in_review", "In review"  # documents submitted, platform staff reviewing
        APPROVED = "approved", "Approved"  # staff approved; sending works, Wavix allow-listing follows
        REJECTED = "rejected", "Rejected"  # refused, with the reason in the note
        NOT_SUPPORTED = "not_supported", "Not supported"  # the country refuses this sender type

    SENDABLE = frozenset({Status.ALLOWLISTED, Status.APPROVED})
    TRANSITIONS: dict[str, set[str]] = {
        Status.REQUESTED: {Status.ALLOWLISTED, Status.NEEDS_DOCUMENTS, Status.REJECTED, Status.NOT_SUPPORTED},
        Status.NEEDS_DOCUMENTS: {Status.IN_REVIEW, Status.ALLOWLISTED, Status.REJECTED, Status.NOT_SUPPORTED},
        Status.IN_REVIEW: {Status.APPROVED, Status.REJECTED, Status.NEEDS_DOCUMENTS, Status.ALLOWLISTED},
        Status.APPROVED: {Status.ALLOWLISTED, Status.REJECTED},
        Status.REJECTED: {Status.IN_REVIEW},
        Status.ALLOWLISTED: set(),
        Status.NOT_SUPPORTED: set(),
    }

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    sender = models.ForeignKey(SenderID, on_delete=models.CASCADE, related_name="countries")
    country = models.CharField(max_length=2)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.REQUESTED)
    note = models.TextField(blank=True, help_text="The latest reason or request from the reviewer.")
    status_changed_at = models.DateTimeField(default=timezone.now)
    status_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["country"]
        verbose_name = "sender ID country"
        verbose_name_plural = "sender ID countries"
        constraints = [models.UniqueConstraint(fields=["sender", "country"], name="sender_country_unique")]

    def __str__(self) -> str:
        return f"{self.sender} → {self.country}: {self.get_status_display()}"

    def clean(self) -> None:
        if self.sender_id and self.tenant_id != self.sender.tenant_id:
            raise ValidationError("A registration belongs to its sender ID's tenant.")

    @classmethod
    def initial_status(cls, rule: CountryRule, sender_type: str) -> str:
        if rule.policy_for(sender_type) == CountryRule.Policy.REGISTRATION:
            return cls.Status.NEEDS_DOCUMENTS
        return cls.Status.REQUESTED

    @property
    def can_send(self) -> bool:
        return self.status in self.SENDABLE

    def transition(self, status: str, *, actor=None, note: str = "") -> str:
        """Change the status if the lifecycle allows it; return the previous status. Caller saves and audits.

        IllegalTransition for a move the lifecycle forbids (its text is shown to the reviewer); ValidationError for
        a rejection without a reason."""
        if status not in self.TRANSITIONS[self.status]:
            raise IllegalTransition(
                f"A registration cannot go from {self.get_status_display()} to {self.Status(status).label}."
            )
        if status == self.Status.REJECTED and not note.strip():
            raise ValidationError({"note": "Say why the registration is rejected."})
        previous = self.status
        self.status = status
        self.note = note
        self.status_changed_at = timezone.now()
        self.status_changed_by = actor
        return previous


class RegistrationEvent(models.Model):
    """One entry on a registration's timeline, shown to the reseller and the tenant: who moved it where, when,
    and the note. Written only by services.registration_set_status (and the registration itself)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    registration = models.ForeignKey(SenderIDCountry, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=16, choices=SenderIDCountry.Status.choices, blank=True)
    to_status = models.CharField(max_length=16, choices=SenderIDCountry.Status.choices)
    note = models.TextField(blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_label = models.CharField(max_length=254, help_text="Who, at the time: an e-mail, or 'system'.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["registration", "created_at"], name="registration_timeline")]

    def __str__(self) -> str:
        return f"{self.registration}: {self.from_status or 'submitted'} → {self.to_status}"


class PrivateStorage(FileSystemStorage):
    """Files outside the web root, with no URL: documents are served only through a view that checks access.
    The location is read from settings at each use, not frozen when the model loads."""

    @property
    def base_location(self):
        return settings.PRIVATE_MEDIA_ROOT

    @property
    def location(self):
        return os.path.abspath(self.base_location)


def _private_storage():
    return PrivateStorage()


def _document_path(document: "RegistrationDocument", filename: str) -> str:
    # Never the uploader's file name on disk: a random name in the tenant's folder.
    extension = {"application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg"}.get(document.content_type, "")
    return f"registrations/{document.tenant_id}/{secrets.token_hex(16)}{extension}"


class RegistrationDocument(models.Model):
    """Paperwork a country asks for (PDF, PNG or JPEG), kept outside the web root."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    registration = models.ForeignKey(SenderIDCountry, on_delete=models.CASCADE, related_name="documents")
    file = models.FileField(storage=_private_storage, upload_to=_document_path, max_length=200)
    name = models.CharField(max_length=200, help_text="The file's name as uploaded.")
    content_type = models.CharField(max_length=32)
    size = models.PositiveIntegerField()
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    uploaded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["uploaded_at", "id"]

    def __str__(self) -> str:
        return self.name
