"""Wavix accounts, numbers, sender IDs, 3CX trunks, messages and the webhook inbox.

Ownership: every tenant-owned row has a non-null tenant. Two kinds of row belong to a reseller first: a
Wavix account (a reseller may share one key across tenants, or dedicate one to a tenant) and its numbers
(in the reseller's pool until assigned to a tenant). Validation lives here so the admin and the API share it.
"""

import functools
import hashlib
import os
import re
import secrets
from datetime import datetime, time, timedelta
from decimal import Decimal, InvalidOperation

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import FileSystemStorage
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from messaging import crypto
from tenants import access
from tenants.models import Reseller, Tenant

# --------------------------------------------------------------------------------------------------------------
# Phone numbers
# --------------------------------------------------------------------------------------------------------------


def to_e164(value: str, default_region: str | None = None) -> str:
    """Parse a phone number and return it as E.164 (+ and digits), or raise a ValidationError saying why."""
    raw = (value or "").strip()
    if not raw:
        raise ValidationError("Enter a phone number in E.164 format, for example +14155550123.")
    if not raw.startswith("+") and not default_region:
        raise ValidationError(
            f"{raw!r} is not in E.164 format: start with + and the country code, for example +14155550123."
        )
    try:
        parsed = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        raise ValidationError(f"{raw!r} is not a phone number.") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationError(f"{raw!r} is not a valid phone number for its country code.")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def country_of(e164: str) -> str:
    """ISO country of an E.164 number ('' when the numbering plan is shared and unassigned)."""
    return phonenumbers.region_code_for_number(phonenumbers.parse(e164)) or ""


hostname_validator = RegexValidator(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$",
    "Enter the PBX's fully qualified domain name, for example acme.3cx.eu.",
)


# The shape WavixAccount.webhook_url() builds: the secret is one path segment, the kind the last.
_PORTAL_WEBHOOK_URL = re.compile(r"(?P<start>https?://[^/?#]+/webhooks/wavix/)[^/?#]+(?P<kind>/[A-Za-z0-9]+/)")


def masked_url(url: str) -> str:
    """A URL to recognise, not to use. A webhook URL of the portal keeps all but its secret
    (https://portal.example/webhooks/wavix/•••/inbound/); any other URL (3CX's, or where a number relays after
    someone changed it at Wavix: another system's, whose secret may sit anywhere in it) keeps its scheme and host
    and only its last 4 characters."""
    if not url:
        return ""
    if portal := _PORTAL_WEBHOOK_URL.fullmatch(url):
        return f"{portal['start']}•••{portal['kind']}"
    match = re.match(r"^(https?://[^/]+)", url)
    return f"{match.group(1) if match else ''}/…{url[-4:]}"


def url_shown_to(user, row: models.Model, url: str, *, token_tenant=None) -> str:
    """A webhook URL of `row` as this user may see it: whole, or masked (tenants.access.may_see_webhook_urls)."""
    return url if access.may_see_webhook_urls(user, row, token_tenant=token_tenant) else masked_url(url)


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
        rules = cls.objects.in_bulk(codes)
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
# Wavix accounts and numbers
# --------------------------------------------------------------------------------------------------------------


class WavixAccount(models.Model):
    """A Wavix API key: the reseller's own (shared by its tenants) or dedicated to one tenant."""

    reseller = models.ForeignKey(Reseller, on_delete=models.PROTECT, related_name="wavix_accounts")
    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="wavix_accounts",
        help_text="Leave empty for a reseller account whose numbers serve several tenants.",
    )
    name = models.CharField(max_length=100)
    # Only ciphertext is stored; the key is readable again only through get_api_key(), never displayed.
    api_key_encrypted = models.TextField(editable=False)
    api_key_last4 = models.CharField(max_length=4, editable=False)
    api_key_set_at = models.DateTimeField("API key set at", null=True, editable=False)
    wavix_sub_account_id = models.CharField("Wavix sub-account ID", max_length=64, blank=True)
    send_rate_per_second = models.PositiveIntegerField(
        "sending rate (messages per second)",
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="How fast the portal sends through this account, shared fairly by its tenants (Wavix's limit "
        "for it; a 429 from Wavix slows it down further for a while).",
    )
    source_ips = models.CharField(
        "accept webhooks only from",
        max_length=200,
        blank=True,
        help_text="Comma-separated IP addresses (Wavix publishes 62.212.73.112). Empty: from anywhere, "
        "the secret in the URL being the guard.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class SyncState(models.TextChoices):
        NEVER = "never", "Not synced yet"
        RUNNING = "running", "Syncing"
        DONE = "done", "Synced"
        FAILED = "failed", "Sync failed"

    # Progress of the last number sync, shown in the admin while it runs.
    sync_state = models.CharField(max_length=8, choices=SyncState.choices, default=SyncState.NEVER, editable=False)
    # Reconciliation: inbound messages Wavix received before this were compared with the webhooks that came.
    inbound_reconciled_at = models.DateTimeField(null=True, blank=True, editable=False)
    sync_note = models.CharField(max_length=300, blank=True, editable=False)
    synced_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "Wavix account"
        constraints = [models.UniqueConstraint(fields=["reseller", "name"], name="wavix_account_name_unique")]

    def __str__(self) -> str:
        return f"{self.name} (…{self.api_key_last4})" if self.api_key_last4 else self.name

    def save(self, *args, **kwargs):
        creating = self.pk is None
        super().save(*args, **kwargs)
        if creating:  # every account has a webhook secret from its first save on
            WebhookSecret.issue(self, self.webhook_secret())

    def clean(self) -> None:
        if self.tenant_id and self.reseller_id and self.tenant.reseller_id != self.reseller_id:
            raise ValidationError({"tenant": "This tenant belongs to another reseller."})

    @classmethod
    def default_for(cls, tenant: Tenant) -> "WavixAccount | None":
        """The account to use when none is named: the tenant's only own account, else the reseller's only shared one."""
        for candidates in (
            cls.objects.filter(tenant=tenant),
            cls.objects.filter(reseller_id=tenant.reseller_id, tenant=None),
        ):
            found = list(candidates[:2])
            if found:
                return found[0] if len(found) == 1 else None
        return None

    @staticmethod
    def api_key_shaped(plaintext: str) -> str:
        """The pasted key without surrounding blanks, or a ValidationError if it cannot be a Wavix key: it travels
        in an HTTP header, so printable ASCII only (anything else made the SDK's httpx fail to build the request)."""
        key = (plaintext or "").strip()
        if len(key) < 8 or not (key.isascii() and key.isprintable()) or " " in key:
            raise ValidationError(
                {
                    "api_key": "Paste the whole Wavix API key: at least 8 characters, letters, digits and punctuation "
                    "only, no spaces."
                }
            )
        return key

    def set_api_key(self, plaintext: str) -> None:
        key = self.api_key_shaped(plaintext)
        self.api_key_encrypted = crypto.encrypt(key)
        self.api_key_last4 = key[-4:]
        self.api_key_set_at = timezone.now()

    def get_api_key(self) -> str:
        return crypto.decrypt(self.api_key_encrypted)

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key_encrypted)

    def refresh_from_db(self, *args, **kwargs):
        self._webhook_secret = None  # read again: it may have been rotated
        super().refresh_from_db(*args, **kwargs)

    def webhook_secret(self) -> str:
        """The secret in the URLs the portal gives Wavix: the newest one not being retired."""
        if getattr(self, "_webhook_secret", None) is None:
            current = None
            if self.pk:
                current = self.webhook_secrets.filter(retire_at__isnull=True).order_by("-created_at").first()
            # An account not saved yet gets its secret now, so its URLs can be handed to Wavix before the save.
            self._webhook_secret = crypto.decrypt(current.secret_encrypted) if current else WebhookSecret.generate()
        return self._webhook_secret

    @staticmethod
    def webhook_url_prefix() -> str:
        """What every webhook URL the portal gives Wavix starts with, whatever its account and secret."""
        return f"{settings.PUBLIC_BASE_URL}/webhooks/wavix/"

    def webhook_url(self, kind: str) -> str:
        return f"{self.webhook_url_prefix()}{self.webhook_secret()}/{kind}/"

    @property
    def inbound_webhook_url(self) -> str:
        return self.webhook_url("inbound")

    @property
    def dlr_webhook_url(self) -> str:
        return self.webhook_url("dlr")

    @property
    def tendlc_webhook_url(self) -> str:
        return self.webhook_url("10dlc")

    def accepts_source(self, address: str) -> bool:
        allowed = {ip.strip() for ip in self.source_ips.split(",") if ip.strip()}
        return not allowed or address in allowed


def _secret_hash(secret: str) -> str:
    # 192 random bits: a fast hash is enough, and lets the secret be found by an index lookup.
    return hashlib.sha256(secret.encode()).hexdigest()


class WebhookSecret(models.Model):
    """A secret in an account's webhook URLs: stored hashed (to find) and encrypted (to build the URL again).

    Rotation issues a new one and gives the old ones a retirement time: both work until then.
    """

    account = models.ForeignKey(WavixAccount, on_delete=models.CASCADE, related_name="webhook_secrets")
    secret_hash = models.CharField(max_length=64, unique=True)
    secret_encrypted = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    retire_at = models.DateTimeField(null=True, blank=True, help_text="Still accepted until then.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Webhook secret of {self.account} from {self.created_at:%Y-%m-%d %H:%M}"

    @staticmethod
    def generate() -> str:
        return secrets.token_urlsafe(24)

    @classmethod
    def issue(cls, account: WavixAccount, secret: str) -> "WebhookSecret":
        return cls.objects.create(
            account=account, secret_hash=_secret_hash(secret), secret_encrypted=crypto.encrypt(secret)
        )

    @classmethod
    def find_account(cls, secret: str) -> WavixAccount | None:
        """The account whose live secret this is; None for a wrong, retired or malformed one."""
        if not (16 <= len(secret) <= 64):
            return None
        digest = _secret_hash(secret)
        # Every webhook asks this: one raw query, because compiling the ORM's join cost more than running it
        # (bench/intake.py). The table names come from the models, the values are parameters.
        account_table, secret_table = WavixAccount._meta.db_table, cls._meta.db_table
        found = list(
            WavixAccount.objects.raw(
                f"SELECT a.* FROM {account_table} a JOIN {secret_table} s ON s.account_id = a.id "  # noqa: S608
                "WHERE s.secret_hash = %s AND (s.retire_at IS NULL OR s.retire_at > %s)",
                [digest, timezone.now()],
            )
        )
        return found[0] if found else None


class PhoneNumber(models.Model):
    """A number on a Wavix account; texts to it reach the tenant's trunk it is assigned to."""

    class TenDLCStatus(models.TextChoices):
        NOT_APPLICABLE = "", "Not applicable"
        PENDING = "PENDING", "Pending"
        APPROVED = "APPROVED", "Approved"
        REJECTED = "REJECTED", "Rejected"

    account = models.ForeignKey(WavixAccount, on_delete=models.PROTECT, related_name="numbers")
    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="numbers",
        help_text="Empty: in the reseller's pool, not yet assigned.",
    )
    trunk = models.ForeignKey(
        "Trunk",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="numbers",
        help_text="Inbound texts to this number are forwarded to this trunk's 3CX.",
    )
    number = models.CharField(max_length=16, help_text="E.164, for example +14155550123.")
    country = models.CharField(max_length=2, editable=False)
    wavix_id = models.CharField("Wavix ID", max_length=32, blank=True)
    sms_enabled = models.BooleanField("SMS enabled", default=False)
    status = models.CharField(max_length=32, blank=True, help_text="The number's status at Wavix.")
    sms_relay_url = models.URLField(
        "SMS relay URL", max_length=500, blank=True, help_text="Where Wavix sends inbound texts."
    )
    label = models.CharField(max_length=100, blank=True)
    # Wavix's label as of the last sync. Wavix's API cannot take a label (its number update has none), so a label
    # edited here stays here; the number follows Wavix's label only while nobody edited it (label == wavix_label).
    wavix_label = models.CharField("label at Wavix", max_length=100, blank=True, editable=False)
    tendlc_status = models.CharField(
        "10DLC status", max_length=16, choices=TenDLCStatus.choices, blank=True, default=""
    )
    tendlc_brand_id = models.CharField("10DLC brand", max_length=64, blank=True, editable=False)
    tendlc_campaign_id = models.CharField("10DLC campaign", max_length=64, blank=True, editable=False)
    synced_at = models.DateTimeField(null=True, blank=True, editable=False)
    relay_set_at = models.DateTimeField(
        "relay URL set at", null=True, blank=True, editable=False, help_text="When the portal pointed it at itself."
    )
    relay_drift = models.BooleanField(
        "relay drift",
        default=False,
        editable=False,
        help_text="Serves an SMS-enabled trunk, but its relay URL at Wavix points somewhere else.",
    )

    class Meta:
        ordering = ["number"]
        constraints = [models.UniqueConstraint(fields=["account", "number"], name="number_unique_per_account")]

    def __str__(self) -> str:
        return self.number

    @property
    def expected_relay_url(self) -> str | None:
        """Where Wavix must send this number's texts: the portal, if the number serves an SMS-enabled trunk."""
        if self.trunk_id and self.trunk.sms_enabled:
            return self.account.inbound_webhook_url
        return None

    @property
    def relays_to_portal(self) -> bool:
        """Wavix sends this number's texts to the portal (any of its webhook URLs), as of the last sync."""
        return self.sms_relay_url.startswith(WavixAccount.webhook_url_prefix())

    def clean(self) -> None:
        try:
            self.number = to_e164(self.number)
            self.country = country_of(self.number)
        except ValidationError as error:
            raise ValidationError({"number": error.messages}) from None
        errors = {}
        account = self.account if self.account_id else None
        if account and account.tenant_id:
            if self.tenant_id and self.tenant_id != account.tenant_id:
                errors["tenant"] = f"Numbers on {account} belong to {account.tenant}, the account's tenant."
            self.tenant_id = account.tenant_id
        if self.tenant_id and account and self.tenant.reseller_id != account.reseller_id:
            errors["tenant"] = "This tenant belongs to another reseller."
        if self.trunk_id:
            if not self.tenant_id:
                errors["trunk"] = "Assign the number to a tenant before choosing its trunk."
            elif self.trunk.tenant_id != self.tenant_id:
                errors["trunk"] = "This trunk belongs to another tenant."
        if errors:
            raise ValidationError(errors)


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
        if account.reseller_id != self.tenant.reseller_id or (
            account.tenant_id and account.tenant_id != self.tenant_id
        ):
            raise ValidationError({"account": "This Wavix account does not serve this tenant."})


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
    TRANSITIONS = {
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

    def move_to(self, status: str, *, actor=None, note: str = "") -> str:
        """Change the status if the lifecycle allows it; return the previous status. Caller saves and audits."""
        if status not in self.TRANSITIONS[self.status]:
            raise ValidationError(
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


class TenDLCRegistration(models.Model):
    """A US 10DLC brand or campaign on a Wavix account, with the status Wavix's 10DLC webhooks report.

    Numbers carry their own status (PhoneNumber.tendlc_status) and the brand and campaign they belong to.
    """

    class Kind(models.TextChoices):
        BRAND = "brand", "Brand"
        CAMPAIGN = "campaign", "Campaign"

    account = models.ForeignKey("WavixAccount", on_delete=models.CASCADE, related_name="tendlc")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    brand_id = models.CharField(max_length=64)
    campaign_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=PhoneNumber.TenDLCStatus.choices)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "10DLC registration"
        constraints = [
            models.UniqueConstraint(fields=["account", "kind", "brand_id", "campaign_id"], name="tendlc_once")
        ]

    def __str__(self) -> str:
        which = self.campaign_id if self.kind == self.Kind.CAMPAIGN else self.brand_id
        return f"{self.get_kind_display()} {which}: {self.get_status_display()}"


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


# --------------------------------------------------------------------------------------------------------------
# 3CX trunks
# --------------------------------------------------------------------------------------------------------------


class Trunk(models.Model):
    """A tenant's 3CX SIP trunk to Wavix, with what texting through it needs."""

    class SmsTemplate(models.TextChoices):
        WAVIX = "wavix", "Wavix (3CX's Wavix template: Wavix's own JSON)"
        GENERIC = "generic", "Generic (3CX's generic provider: Telnyx-style JSON)"

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="trunks")
    name = models.CharField(max_length=100)
    pbx_fqdn = models.CharField("PBX FQDN", max_length=253, validators=[hostname_validator])
    pbx_version = models.CharField("3CX version", max_length=32, blank=True)
    main_sender = models.ForeignKey(
        SenderID,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="trunks",
        verbose_name="Main Trunk No.",
        help_text="The sender ID 3CX shows as Main Trunk No.",
    )
    sms_template = models.CharField(
        "3CX SMS template", max_length=16, choices=SmsTemplate.choices, default=SmsTemplate.WAVIX
    )
    sms_enabled = models.BooleanField("SMS enabled", default=False)
    # The 3CX webhook URL carries 3CX's per-trunk token: a secret, stored encrypted, shown masked.
    threecx_webhook_url_encrypted = models.TextField(blank=True, editable=False)
    threecx_webhook_url_hint = models.CharField(max_length=300, blank=True, editable=False)
    setup_progress = models.JSONField(default=dict, blank=True, editable=False)
    # Forwarding health: consecutive failed forwards and the last error in words; a success clears both.
    forward_failures = models.PositiveIntegerField(default=0, editable=False)
    forward_error = models.CharField(max_length=300, blank=True, editable=False)
    forward_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    UNHEALTHY_AFTER = 3  # consecutive failed forwards

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="trunk_name_unique_per_tenant")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_healthy(self) -> bool:
        return self.forward_failures < self.UNHEALTHY_AFTER

    def clean(self) -> None:
        self.pbx_fqdn = (self.pbx_fqdn or "").strip().lower().rstrip(".")
        if self.main_sender_id and self.tenant_id and self.main_sender.tenant_id != self.tenant_id:
            raise ValidationError({"main_sender": "This sender ID belongs to another tenant."})

    def set_threecx_webhook_url(self, url: str) -> None:
        url = (url or "").strip()
        if not url:
            self.threecx_webhook_url_encrypted = ""
            self.threecx_webhook_url_hint = ""
            return
        plain_http_ok = settings.DEBUG or settings.SANDBOX_ENABLED  # a development PBX, or the fake 3CX
        if not re.match(r"^https://[^/\s]+/\S*$", url) and not (plain_http_ok and re.match(r"^http://[^/\s]+/", url)):
            raise ValidationError(
                {"threecx_webhook_url": "Paste the Webhook URL from the trunk's SMS tab in 3CX; it starts https://."}
            )
        from messaging.threecx import UnsafeDestination, check_destination

        try:
            check_destination(url, unresolved_ok=True)
        except UnsafeDestination as refusal:
            raise ValidationError({"threecx_webhook_url": f"This URL cannot be used: {refusal}."}) from None
        self.threecx_webhook_url_encrypted = crypto.encrypt(url)
        self.threecx_webhook_url_hint = masked_url(url)

    def get_threecx_webhook_url(self) -> str:
        return crypto.decrypt(self.threecx_webhook_url_encrypted) if self.threecx_webhook_url_encrypted else ""


# --------------------------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------------------------


class Message(models.Model):
    """One SMS or MMS, in or out. Status moves only through transition(), which refuses illegal moves.

    Outbound (portal → Wavix → handset):

        queued   ──claimed by one worker──────────────────> sending
        queued   ──validity passed before sending─────────> expired
        queued   ──refused before sending─────────────────> failed
        sending  ──Wavix answered 201─────────────────────> accepted
        sending  ──transient error, retried later─────────> queued
        sending  ──permanent error────────────────────────> failed
        sending  ──timeout or worker died mid-call────────> unknown
        unknown  ──found at Wavix by tag──────────────────> accepted
        unknown  ──not at Wavix: a resend is safe─────────> queued   (or expired, if its validity passed)
        accepted ──> pending ──> sent ──> delivered | undelivered | expired | rejected | dlr_expired

      Delivery reports may skip steps, repeat or arrive out of order: a move back is ignored and a final
      status never changes.

    Inbound (handset → Wavix → portal → 3CX); routing creates each text received, held or not_forwarded:

        received ──3CX answered 2xx───────────────────────> forwarded
        received ──retries exhausted, or 3CX refused it───> failed ──replayed──> received
        held     ──tenant active and trunk's SMS on again─> received   (a trunk's or tenant's, in arrival order)
        not_forwarded                                                  (final)

      held: the tenant is suspended or the trunk has SMS off (not_forwarded_reason says which; it goes on only
      once neither holds). not_forwarded: the receiving number has no trunk (or is not in the portal at all, on a
      tenant's own account), or Wavix's webhook could not be read. Final on purpose: a number given a trunk later
      does not push texts days old to 3CX, whose users would take them for new ones; the text stays in the log,
      with its reason, for a person to read and answer.
    """

    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"  # validated, waiting for a worker
        SENDING = "sending", "Sending"  # claimed by a worker, request to Wavix in flight
        UNKNOWN = "unknown", "Outcome unknown"  # the request may have reached Wavix: reconcile before resending
        ACCEPTED = "accepted", "Accepted by Wavix"
        PENDING = "pending", "Pending at carrier"
        SENT = "sent", "Sent to carrier"
        DELIVERED = "delivered", "Delivered"  # final
        UNDELIVERED = "undelivered", "Undelivered"  # final
        EXPIRED = "expired", "Expired"  # final: validity passed, here or at Wavix
        REJECTED = "rejected", "Rejected"  # final: refused by Wavix or the carrier
        DLR_EXPIRED = "dlr_expired", "No delivery report"  # final
        FAILED = "failed", "Failed"  # final for outbound: permanent error; inbound: forwarding gave up
        RECEIVED = "received", "Received"  # inbound, to be forwarded to 3CX
        HELD = "held", "Held"  # inbound: the tenant is suspended or the trunk has SMS off; released later
        FORWARDED = "forwarded", "Forwarded to 3CX"  # final
        NOT_FORWARDED = "not_forwarded", "Not forwarded"  # final: inbound with nowhere to go, or unreadable

    class Encoding(models.TextChoices):
        GSM7 = "gsm7", "GSM-7"
        UCS2 = "ucs2", "UCS-2"

    S = Status
    TRANSITIONS = {
        S.QUEUED: {S.SENDING, S.EXPIRED, S.FAILED},
        S.SENDING: {S.ACCEPTED, S.QUEUED, S.UNKNOWN, S.FAILED},
        S.UNKNOWN: {S.ACCEPTED, S.QUEUED, S.EXPIRED, S.FAILED},
        S.ACCEPTED: {S.PENDING, S.SENT, S.DELIVERED, S.UNDELIVERED, S.EXPIRED, S.REJECTED, S.DLR_EXPIRED},
        S.PENDING: {S.SENT, S.DELIVERED, S.UNDELIVERED, S.EXPIRED, S.REJECTED, S.DLR_EXPIRED},
        S.SENT: {S.DELIVERED, S.UNDELIVERED, S.EXPIRED, S.REJECTED, S.DLR_EXPIRED},
        S.RECEIVED: {S.FORWARDED, S.FAILED, S.HELD},
        S.HELD: {S.RECEIVED},
        S.FAILED: {S.RECEIVED},  # inbound replay only; see transition()
    }
    FINAL = frozenset({S.DELIVERED, S.UNDELIVERED, S.EXPIRED, S.REJECTED, S.DLR_EXPIRED, S.FORWARDED, S.NOT_FORWARDED})

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="messages")
    account = models.ForeignKey(WavixAccount, on_delete=models.PROTECT, related_name="messages")
    trunk = models.ForeignKey(Trunk, on_delete=models.SET_NULL, null=True, blank=True, related_name="messages")
    # A deregistered sender ID leaves its messages: they keep the sender's text in from_number.
    sender = models.ForeignKey(SenderID, on_delete=models.SET_NULL, null=True, blank=True, related_name="messages")
    # The webhook an inbound message came in: its body is forwarded byte for byte.
    source_event = models.ForeignKey(
        "WebhookEvent", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    direction = models.CharField(max_length=8, choices=Direction.choices)
    from_number = models.CharField(max_length=20, help_text="E.164, or the alphanumeric sender.")
    to_number = models.CharField(max_length=20)
    text = models.TextField(blank=True)
    media = models.JSONField(default=list, blank=True)
    encoding = models.CharField(max_length=4, choices=Encoding.choices, default=Encoding.GSM7)
    segments = models.PositiveSmallIntegerField(default=1)
    wavix_message_id = models.CharField("Wavix message ID", max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    error_code = models.CharField(max_length=16, blank=True)
    error_message = models.TextField(blank=True)
    not_forwarded_reason = models.CharField(
        "why not forwarded",
        max_length=300,
        blank=True,
        default="",
        db_default="",  # code of the release before, still running while this one migrates, inserts without it
        help_text="Inbound: why the text is held, or was not forwarded to 3CX, in words a reseller can act on.",
    )
    charge = models.DecimalField(max_digits=10, decimal_places=5, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True, help_text="When the message reached a final status.")
    # Outbound sending: the priority lane (a single message, never behind a bulk batch), retries, expiry.
    priority = models.BooleanField(default=False, help_text="A single message: sent before queued bulk ones.")
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    send_started_at = models.DateTimeField(null=True, blank=True, help_text="When a worker claimed it to send.")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Not sent after this: it would arrive too late.")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "wavix_message_id"],
                condition=~Q(wavix_message_id=""),
                name="wavix_message_id_unique_per_account",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="message_tenant_recent"),
            models.Index(fields=["status", "created_at"], name="message_status_age"),
            models.Index(fields=["account", "status", "priority", "id"], name="message_outbound_queue"),
            models.Index(fields=["account", "to_number", "created_at"], name="message_destination_recent"),
            # The dashboard: a tenant's latest inbound text, its outbound texts of the last 24 h (index seeks).
            models.Index(fields=["tenant", "direction", "-created_at"], name="message_tenant_direction"),
            # The daily rollup's GROUP BY over recent days reads only these columns (an index-only scan).
            models.Index(fields=["created_at", "tenant", "direction", "status"], name="message_rollup"),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.from_number} → {self.to_number} ({self.status})"

    @property
    def status_explained(self) -> str:
        """The status in words, with the reason when an inbound text is held or was not forwarded."""
        label = self.get_status_display()
        return f"{label}: {self.not_forwarded_reason}" if self.not_forwarded_reason else label

    # A text has at most a few dozen segments: the portal sends at most 1,630 GSM-7 characters (11 segments), Wavix
    # counts an MMS as one. Far above that a count Wavix reports is garbled, whatever the column could hold.
    SEGMENTS_MAX = 50

    @classmethod
    def segments_from(cls, value) -> int | None:
        """A segment count Wavix reported, if it is one (1 to SEGMENTS_MAX); None for anything else."""
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= cls.SEGMENTS_MAX:
            return None
        return value

    @classmethod
    def charge_from(cls, value) -> Decimal | None:
        """A charge Wavix reported (a string, or a number), if it is a finite amount the column holds; else None.
        "NaN" or "1e30" would fail the row's save, and with it the send or the report that carried them."""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return None
        try:
            charge = Decimal(str(value).strip())
        except InvalidOperation:
            return None
        return charge if charge.is_finite() and abs(charge) < cls.charge_limit() else None

    @classmethod
    def charge_limit(cls) -> Decimal:
        """The first amount the charge column cannot hold (10 ** (max_digits - decimal_places))."""
        field = cls._meta.get_field("charge")
        return Decimal(10) ** (field.max_digits - field.decimal_places)

    def can_transition(self, status: str) -> bool:
        if status not in self.TRANSITIONS.get(self.status, ()):
            return False
        # Only an inbound message that failed is replayed; a failed outbound message is never resent.
        return not (self.status == self.Status.FAILED and self.direction == self.Direction.OUTBOUND)

    def transition(self, status: str) -> None:
        """Move to a new status, or raise ValueError for a move the state machine forbids. Caller saves."""
        if not self.can_transition(status):
            raise ValueError(f"message {self.pk}: {self.status} → {status} is not allowed")
        self.status = status
        if status in self.FINAL or status == self.Status.FAILED:
            self.completed_at = timezone.now()


# --------------------------------------------------------------------------------------------------------------
# The webhook inbox and forwarding to 3CX
# --------------------------------------------------------------------------------------------------------------


class WebhookEvent(models.Model):
    """A webhook from Wavix exactly as received: stored before anything else happens, processed after commit."""

    class Kind(models.TextChoices):
        INBOUND = "inbound", "Inbound message"
        DLR = "dlr", "Delivery report"
        TENDLC = "10dlc", "10DLC status"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"  # stored, not yet processed
        PROCESSED = "processed", "Processed"
        UNROUTABLE = "unroutable", "Unroutable"  # no number or trunk to route it to; nothing forwarded
        HELD = "held", "Held"  # the tenant is suspended or the trunk has SMS off: its body is forwarded later
        UNMATCHED = "unmatched", "Unmatched"  # a delivery report for a message the portal did not send
        INVALID = "invalid", "Invalid"  # stored but could not be interpreted

    # No index of its own: the dedup constraint's index starts with the account, and one index fewer to update
    # on every webhook is intake's rate (bench/intake.py).
    account = models.ForeignKey(WavixAccount, on_delete=models.PROTECT, related_name="webhook_events", db_index=False)
    tenant = models.ForeignKey(
        Tenant, on_delete=models.PROTECT, null=True, blank=True, related_name="+", help_text="Set once routed."
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    dedup_key = models.CharField(max_length=200, help_text="Wavix message_id (and status, for reports).")
    body = models.BinaryField(help_text="The request body byte for byte.")
    received_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    recovered = models.BooleanField(
        default=False, help_text="Found by reconciliation with Wavix: the webhook itself never arrived."
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "kind", "dedup_key"], name="webhook_event_dedup"),
        ]
        indexes = [models.Index(fields=["state", "received_at"], name="webhook_event_state_age")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.dedup_key}"

    @classmethod
    def _insert(cls, kind: str, dedup_key: str, body: bytes, *, account: str, source: str, params: list) -> bool:
        """INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING: True if a row was stored.

        `account` is the SQL giving the account id, `source` the FROM/WHERE it may need (it must end in a WHERE:
        SQLite reads "SELECT … ON CONFLICT" ambiguously without one); `params` are account's then source's.
        The other columns and their values come from the model's own fields and defaults.
        """
        db = connections[DEFAULT_DB_ALIAS]  # once: each attribute of the `connection` proxy is a context lookup
        sql, fields = cls._insert_plan(db.vendor, account, source)
        given = {"kind": kind, "dedup_key": dedup_key, "body": body}
        values = [f.get_db_prep_save(given[f.name] if f.name in given else f.get_default(), db) for f in fields]
        account_params = params[: account.count("%s")]
        all_params = [*account_params, *values, *params[len(account_params) :]]
        if db.vendor != "postgresql":
            with db.cursor() as cursor:
                cursor.execute(sql, all_params)
                return cursor.fetchone() is not None
        # A prepared statement: PostgreSQL plans this INSERT … SELECT … JOIN once per connection instead of on
        # every webhook, where planning cost as much as running it (docs/benchmarks.md). Django's cursors bind on
        # the client and cannot prepare; a server-binding cursor on the same connection can (settings.py lets
        # psycopg prepare what asks to be: DB_PREPARED_STATEMENTS).
        import psycopg

        db.close_if_health_check_failed()  # what db.cursor() would do first: no stale connection after a restart
        db.ensure_connection()
        with db.wrap_database_errors, psycopg.Cursor(db.connection) as prepared:
            prepared.execute(sql, all_params, prepare=True)
            return prepared.fetchone() is not None

    @classmethod
    @functools.cache
    def _insert_plan(cls, vendor: str, account: str, source: str) -> tuple[str, list[models.Field]]:
        """_insert()'s SQL and the fields whose values it takes, for one database vendor."""
        fields = [field for field in cls._meta.concrete_fields if not field.primary_key and field.name != "account"]
        quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
        sql = (
            f"INSERT INTO {quote(cls._meta.db_table)} (account_id, {', '.join(quote(f.column) for f in fields)}) "
            f"SELECT {account}, {', '.join(['%s'] * len(fields))} {source} "
            "ON CONFLICT (account_id, kind, dedup_key) DO NOTHING RETURNING id"
        )
        return sql, fields

    @classmethod
    def store(cls, *, account_id: int, kind: str, dedup_key: str, body: bytes) -> bool:
        """Store a webhook for an account; False if it was already stored (a duplicate)."""
        return cls._insert(kind, dedup_key, body, account="%s", source="WHERE 1 = 1", params=[account_id])

    @classmethod
    def store_by_secret(cls, *, secret: str, kind: str, dedup_key: str, body: bytes) -> bool:
        """The intake's one-statement path: store the webhook if the secret is live and its account takes
        webhooks from anywhere. False means "not stored, look closer" (wrong or retired secret, an account
        limited to some source addresses, or a duplicate): the caller then asks find_account() and store().

        Every webhook comes this way, so lookup and insert are one round trip with no transaction, savepoint
        or error on a duplicate (with _insert's prepared statement, intake went from a third of the same-run
        ceiling to four fifths of it: docs/benchmarks.md).
        The secret's rule is WebhookSecret.find_account()'s, in SQL: the hash matches, not yet retired.
        """
        if not (16 <= len(secret) <= 64):
            return False
        secrets_table, accounts_table = WebhookSecret._meta.db_table, WavixAccount._meta.db_table
        return cls._insert(
            kind,
            dedup_key,
            body,
            account="s.account_id",
            source=f"FROM {secrets_table} s JOIN {accounts_table} a ON a.id = s.account_id "
            "WHERE s.secret_hash = %s AND (s.retire_at IS NULL OR s.retire_at > %s) AND a.source_ips = ''",
            params=[_secret_hash(secret), timezone.now()],
        )


class Delivery(models.Model):
    """One inbound message forwarded to one trunk's 3CX: attempts, the next one, and 3CX's last answer."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"  # due at next_attempt_at
        DELIVERED = "delivered", "Delivered"  # 3CX answered 2xx
        FAILED = "failed", "Failed"  # 3CX refused it (4xx other than 429): retrying will not help
        DEAD = "dead", "Dead-lettered"  # retries exhausted; replayable

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    message = models.ForeignKey(Message, on_delete=models.PROTECT, related_name="deliveries")
    trunk = models.ForeignKey(Trunk, on_delete=models.PROTECT, related_name="deliveries")
    # The conversation is (trunk, remote number): a message waits while an earlier one of it is pending.
    remote_number = models.CharField(max_length=20, default="")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # A worker holds the delivery while it POSTs; a worker that died lets go when the lease runs out.
    lease_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_response = models.TextField(blank=True, help_text="The start of 3CX's last answer.")
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
            models.Index(fields=["trunk", "remote_number", "status", "id"], name="delivery_conversation"),
            # The dashboard: a tenant's failing deliveries (counted) and its latest successful forward (a seek).
            models.Index(fields=["tenant", "status", "-delivered_at"], name="delivery_tenant_status"),
        ]

    def __str__(self) -> str:
        return f"Delivery of message {self.message_id} to {self.trunk}"

    def clean(self) -> None:
        if self.message_id and self.trunk_id and self.message.tenant_id != self.trunk.tenant_id:
            raise ValidationError("A delivery goes to a trunk of the message's own tenant.")


class IdempotentRequest(models.Model):
    """A send request made with an Idempotency-Key: the same key within 24 h gets the same answer, nothing new."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    TTL = timedelta(hours=24)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="idempotency_key_once_per_tenant")]

    def __str__(self) -> str:
        return f"Idempotency-Key {self.key} of {self.tenant}"


class OptOut(models.Model):
    """A remote number that texted a stop word to one of the tenant's numbers; START or UNSTOP removes it."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="opt_outs")
    number = models.CharField(max_length=20)
    keyword = models.CharField(max_length=20)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "opt-out"
        constraints = [models.UniqueConstraint(fields=["tenant", "number"], name="opt_out_once_per_tenant")]

    def __str__(self) -> str:
        return f"{self.number} opted out of {self.tenant}"


# --------------------------------------------------------------------------------------------------------------
# Audit trail
# --------------------------------------------------------------------------------------------------------------


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("the audit trail is append-only")

    def delete(self):
        raise PermissionError("the audit trail is append-only")


class AuditEvent(models.Model):
    """A security-relevant change: who did what to which object, when. Append-only."""

    class Action(models.TextChoices):
        API_KEY_SET = "api_key.set", "Wavix API key set"
        API_KEY_ROTATED = "api_key.rotated", "Wavix API key replaced"
        WEBHOOK_URL_SET = "threecx_url.set", "3CX webhook URL set"
        SECRETS_REENCRYPTED = "secrets.reencrypted", "Secrets re-encrypted with a new key"
        SENDER_ID_REGISTERED = "sender_id.registered", "Sender ID registered"
        SENDER_ID_DELETED = "sender_id.deleted", "Sender ID deleted"
        REGISTRATION_STATUS = "registration.status", "Registration status changed"
        MEMBER_INVITED = "member.invited", "Member invited"
        MEMBER_ACCEPTED = "member.accepted", "Invitation accepted"
        MEMBER_DECLINED = "member.declined", "Invitation declined"
        MEMBER_ROLE_CHANGED = "member.role_changed", "Member role changed"
        MEMBER_DEACTIVATED = "member.deactivated", "Member deactivated"
        MEMBER_REACTIVATED = "member.reactivated", "Member reactivated"
        TOKEN_CREATED = "token.created", "API token created"
        TOKEN_REVOKED = "token.revoked", "API token revoked"
        TENANT_STATUS = "tenant.status", "Tenant status changed"
        REPLAY = "delivery.replayed", "Delivery replayed"
        WEBHOOK_SECRET_ROTATED = "webhook_secret.rotated", "Webhook secret rotated"
        NUMBERS_UNPOINTED = "numbers.unpointed", "Numbers un-pointed at Wavix (trunk's SMS off)"
        DOCUMENT_UPLOADED = "registration.document", "Registration document uploaded"
        RETENTION_PURGED = "retention.purged", "Old message content purged"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_label = models.CharField(max_length=254, help_text="The actor's e-mail at the time, or 'system'.")
    reseller = models.ForeignKey(Reseller, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    action = models.CharField(max_length=32, choices=Action.choices)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    changes = models.JSONField(default=dict, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["reseller", "-created_at"], name="audit_reseller_recent")]

    def __str__(self) -> str:
        return f"{self.get_action_display()}: {self.object_repr}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionError("the audit trail is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("the audit trail is append-only")

    @classmethod
    def record(
        cls,
        action: str,
        obj: models.Model,
        *,
        actor=None,
        changes: dict | None = None,
        reseller: Reseller | None = None,
    ) -> "AuditEvent":
        """Append one event about obj; its tenant and reseller are read off the object (or the reseller is given,
        for an object that belongs to none, so that the reseller's people still see the event)."""
        tenant = obj if isinstance(obj, Tenant) else getattr(obj, "tenant", None)
        reseller = reseller or (obj if isinstance(obj, Reseller) else getattr(obj, "reseller", None))
        if reseller is None and tenant is not None:
            reseller = tenant.reseller
        if reseller is None and getattr(obj, "account", None) is not None:
            reseller = obj.account.reseller
        label = "system"
        if actor is not None:
            label = actor.email or actor.get_username()
        return cls.objects.create(
            actor=actor,
            actor_label=label,
            reseller=reseller,
            tenant=tenant,
            action=action,
            object_type=obj._meta.label,
            object_id=str(obj.pk),
            object_repr=str(obj)[:200],
            changes=changes or {},
        )


# --------------------------------------------------------------------------------------------------------------
# Dashboard rollup
# --------------------------------------------------------------------------------------------------------------


class DailyMessageCount(models.Model):
    """How many messages a tenant had per day, direction and status: what the dashboard charts read.

    Derived data, recomputed for recent days by a periodic task (recompute()); the dashboard never counts
    the message table itself, which may hold millions of rows.
    """

    # Derived and recomputable: it must not keep a tenant from being deleted, unlike the records it counts.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    direction = models.CharField(max_length=8, choices=Message.Direction.choices)
    status = models.CharField(max_length=16, choices=Message.Status.choices)
    count = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "day", "direction", "status"], name="daily_count_once"),
        ]
        # The unique constraint's index serves per-tenant reads; this one the "every day since" deletes.
        indexes = [models.Index(fields=["day"], name="daily_count_day")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day} {self.direction} {self.status}: {self.count}"

    @classmethod
    def recompute(cls, days: int) -> int:
        """Count again the last `days` days (today included), replacing their rows; returns the rows written.

        Running it twice gives the same rows. Late status changes (delivery reports come hours later) are
        picked up by recomputing a day again, which is why whole days are replaced rather than incremented.
        """
        first_day = timezone.localdate() - timedelta(days=days - 1)
        since = timezone.make_aware(datetime.combine(first_day, time.min))
        # One GROUP BY over a created_at range: the message_rollup index covers every column it reads.
        counted = (
            Message.objects.filter(created_at__gte=since)
            .annotate(day=TruncDate("created_at"))
            .values_list("tenant_id", "day", "direction", "status")
            .annotate(n=Count("id"))
            .order_by()
        )
        rows = [cls(tenant_id=t, day=d, direction=direction, status=s, count=n) for t, d, direction, s, n in counted]
        with transaction.atomic():
            cls.objects.filter(day__gte=first_day).delete()
            cls.objects.bulk_create(rows, batch_size=1000)
        return len(rows)
