"""Wavix accounts, their webhook secrets, numbers, 10DLC registrations and 3CX trunks.

Ownership: a Wavix account (a reseller may share one key across tenants, or dedicate one to a tenant) and its
numbers (in the reseller's pool until assigned to a tenant) belong to a reseller first; every other row has a
non-null tenant."""

import hashlib
import re
import secrets
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from messaging import crypto
from messaging.models.common import country_of, hostname_validator, masked_url, to_e164
from tenants.models import Reseller, Tenant

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
    # The traffic mirror: outbound texts Wavix sent before this were read into the message log (3CX on the Wavix
    # template sends straight to Wavix; the mirror is how those texts reach the log).
    outbound_mirrored_at = models.DateTimeField(null=True, blank=True, editable=False)
    sync_note = models.CharField(max_length=300, blank=True, editable=False)
    synced_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "Wavix account"
        constraints = [models.UniqueConstraint(fields=["reseller", "name"], name="wavix_account_name_unique")]

    def __str__(self) -> str:
        return f"{self.name} (…{self.api_key_last4})" if self.api_key_last4 else self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        creating = self.pk is None
        super().save(*args, **kwargs)
        if creating:  # every account has a webhook secret from its first save on
            WebhookSecret.issue(self, self.webhook_secret())

    def clean(self) -> None:
        tenant = self.tenant if self.tenant_id and self.reseller_id else None
        if tenant is not None and tenant.reseller_id != self.reseller_id:
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

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        self._webhook_secret: str | None = None  # read again: it may have been rotated
        super().refresh_from_db(*args, **kwargs)

    def webhook_secret(self) -> str:
        """The secret in the URLs the portal gives Wavix: the newest one not being retired."""
        secret: str | None = getattr(self, "_webhook_secret", None)
        if secret is None:
            current = None
            if self.pk:
                current = self.webhook_secrets.filter(retire_at__isnull=True).order_by("-created_at").first()
            # An account not saved yet gets its secret now, so its URLs can be handed to Wavix before the save.
            secret = crypto.decrypt(current.secret_encrypted) if current else WebhookSecret.generate()
            self._webhook_secret = secret
        return secret

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


def secret_hash(secret: str) -> str:
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
            account=account, secret_hash=secret_hash(secret), secret_encrypted=crypto.encrypt(secret)
        )

    @classmethod
    def find_account(cls, secret: str) -> WavixAccount | None:
        """The account whose live secret this is; None for a wrong, retired or malformed one."""
        if not (16 <= len(secret) <= 64):
            return None
        digest = secret_hash(secret)
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
        if self.trunk_id and self.trunk is not None and self.trunk.sms_enabled:
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
        if self.tenant_id and account and self.tenant is not None and self.tenant.reseller_id != account.reseller_id:
            errors["tenant"] = "This tenant belongs to another reseller."
        if self.trunk_id:
            if not self.tenant_id:
                errors["trunk"] = "Assign the number to a tenant before choosing its trunk."
            elif self.trunk is not None and self.trunk.tenant_id != self.tenant_id:
                errors["trunk"] = f"This trunk belongs to another tenant: choose one of {self.tenant}'s trunks."
        if errors:
            raise ValidationError(errors)


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
        "SenderID",
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
    status_events = models.BooleanField(
        "delivery status to 3CX",
        default=False,
        help_text="Post Telnyx-style message.sent and message.finalized events for texts 3CX sent through the "
        "portal to the trunk's webhook URL. Whether 3CX uses them is not confirmed.",
    )
    # The 3CX webhook URL carries 3CX's per-trunk token: a secret, stored encrypted, shown masked.
    threecx_webhook_url_encrypted = models.TextField(blank=True, editable=False)
    threecx_webhook_url_hint = models.CharField(max_length=300, blank=True, editable=False)
    setup_progress = models.JSONField(default=dict, blank=True, editable=False)
    # Forwarding health: consecutive failed forwards and the last error in words; a success clears both.
    forward_failures = models.PositiveIntegerField(default=0, editable=False)
    forward_error = models.CharField(max_length=300, blank=True, editable=False)
    forward_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The provider endpoint's last refusal of a text this trunk's 3CX sent (authenticated, then refused: wrong
    # sender, opted out, unregistered country…), in words, and when: step 5 and the dashboard show it.
    provider_refusal = models.CharField(max_length=300, blank=True, editable=False)
    provider_refused_at = models.DateTimeField(null=True, blank=True, editable=False)
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
        main_sender = self.main_sender if self.main_sender_id and self.tenant_id else None
        if main_sender is not None and main_sender.tenant_id != self.tenant_id:
            raise ValidationError(
                {"main_sender": f"This sender ID belongs to another tenant: choose one of {self.tenant}'s sender IDs."}
            )

    def set_threecx_webhook_url(self, url: str) -> None:
        url = (url or "").strip()
        if not url:
            self.threecx_webhook_url_encrypted = ""
            self.threecx_webhook_url_hint = ""
            return
        from messaging.threecx import UnsafeDestination, check_destination, plain_http_allowed

        plain_http_ok = plain_http_allowed()
        if not re.match(r"^https://[^/\s]+/\S*$", url) and not (plain_http_ok and re.match(r"^http://[^/\s]+/", url)):
            raise ValidationError(
                {"threecx_webhook_url": "Paste the Webhook URL from the trunk's SMS tab in 3CX; it starts https://."}
            )

        try:
            check_destination(url, unresolved_ok=True)
        except UnsafeDestination as refusal:
            raise ValidationError({"threecx_webhook_url": f"This URL cannot be used: {refusal}."}) from None
        self.threecx_webhook_url_encrypted = crypto.encrypt(url)
        self.threecx_webhook_url_hint = masked_url(url)

    def get_threecx_webhook_url(self) -> str:
        return crypto.decrypt(self.threecx_webhook_url_encrypted) if self.threecx_webhook_url_encrypted else ""

    @property
    def provider_url(self) -> str | None:
        """Where 3CX's Generic SMS provider POSTs the texts its users send (None on the Wavix template)."""
        if self.sms_template != self.SmsTemplate.GENERIC or not self.pk:
            return None
        return f"{settings.PUBLIC_BASE_URL}/3cx/{self.pk}/messages"


class ProviderKey(models.Model):
    """A key 3CX sends with on a Generic-template trunk (its *Messaging API key*): stored as a hash only, shown once.

    Issuing a new key gives the trunk's older keys a retirement time (24 h): both work until then, so 3CX keeps
    sending while someone types the new key in.
    """

    trunk = models.ForeignKey(Trunk, on_delete=models.CASCADE, related_name="provider_keys")
    key_hash = models.CharField(max_length=64, unique=True)
    last4 = models.CharField(max_length=4)
    created_at = models.DateTimeField(default=timezone.now)
    retire_at = models.DateTimeField(null=True, blank=True, help_text="Still accepted until then.")

    PREFIX = "pk3cx_"

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "3CX provider key"

    def __str__(self) -> str:
        return f"Provider key …{self.last4} of {self.trunk}"

    @classmethod
    def trunk_for(cls, trunk_id: int, key: str) -> Trunk | None:
        """The trunk, if `key` is one of its live keys; None for a wrong, retired, malformed or other trunk's key."""
        if not key.startswith(cls.PREFIX) or not (20 <= len(key) <= 100):
            return None
        found = (
            cls.objects.filter(trunk_id=trunk_id, key_hash=secret_hash(key))
            .filter(models.Q(retire_at__isnull=True) | models.Q(retire_at__gt=timezone.now()))
            .select_related("trunk", "trunk__tenant")
            .first()
        )
        return found.trunk if found else None
