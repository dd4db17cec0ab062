"""Resellers, their tenants, and who belongs to which.

Who may see or change what is decided in tenants/access.py, never here.
"""

import hashlib
import hmac
import secrets
from decimal import Decimal
from typing import cast

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

# Currencies a reseller may bill in: those with two minor units (prices are rounded to the cent), most asked for.
CURRENCIES = [
    ("USD", "US dollar"),
    ("EUR", "Euro"),
    ("GBP", "Pound sterling"),
    ("CAD", "Canadian dollar"),
    ("AUD", "Australian dollar"),
    ("NZD", "New Zealand dollar"),
    ("CHF", "Swiss franc"),
    ("SEK", "Swedish krona"),
    ("NOK", "Norwegian krone"),
    ("DKK", "Danish krone"),
    ("PLN", "Polish złoty"),
    ("CZK", "Czech koruna"),
    ("ZAR", "South African rand"),
    ("SGD", "Singapore dollar"),
    ("HKD", "Hong Kong dollar"),
    ("MXN", "Mexican peso"),
    ("BRL", "Brazilian real"),
    ("INR", "Indian rupee"),
    ("AED", "UAE dirham"),
    ("ILS", "Israeli shekel"),
]
# Wavix bills in US dollars (messaging.models.Message.CHARGE_CURRENCY says why): a markup on its charge is in them too.
WAVIX_CURRENCY = "USD"


class Pricing(models.TextChoices):
    MARKUP = "markup", "A markup on Wavix's charge"
    PER_SEGMENT = "per_segment", "A price per segment sent"


class PriceTerms(models.Model):
    """What a reseller charges its customers for texts: a markup on Wavix's charge, or a price per segment Wavix
    took (an MMS at its own price if one is set), in a currency. A reseller sets them; a tenant may override them.

    What they price (usage per month) and the arithmetic live in messaging.services.usage; the rules here are those a
    form can check on its own."""

    # db_default on each: the release before, still running while this one migrates, inserts without them.
    pricing = models.CharField(
        max_length=12, choices=Pricing.choices, default=Pricing.MARKUP, db_default=Pricing.MARKUP
    )
    markup_percent = models.DecimalField(
        "markup (%)",
        max_digits=7,
        decimal_places=2,
        null=True,
        blank=True,
        default=Decimal(0),
        db_default=Decimal(0),
        validators=[MinValueValidator(Decimal("-100"))],
        help_text="Added to Wavix's charge: 25 bills $1.25 for each $1.00 Wavix charges. Billed in US dollars.",
    )
    price_per_segment = models.DecimalField(
        max_digits=10,
        decimal_places=5,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="For each segment of a text Wavix took (an MMS counts as its segments unless priced below). "
        "Failed before Wavix, or inbound: not billed.",
    )
    price_per_mms = models.DecimalField(
        "price per MMS",
        max_digits=10,
        decimal_places=5,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Optional: one price for each MMS Wavix took, whatever its segments.",
    )
    currency = models.CharField(max_length=3, choices=CURRENCIES, default=WAVIX_CURRENCY, db_default=WAVIX_CURRENCY)

    PRICE_FIELDS = ("pricing", "markup_percent", "price_per_segment", "price_per_mms", "currency")  # forms, audit

    class Meta:
        abstract = True

    def clean_price_terms(self) -> None:
        """Complete terms for the pricing chosen; a markup bills in Wavix's currency (there is no rate to convert)."""
        errors = {}
        if self.pricing == Pricing.MARKUP:
            if self.markup_percent is None:
                errors["markup_percent"] = "Give the markup, in per cent (0 bills Wavix's charge as it is)."
            if self.currency != WAVIX_CURRENCY:
                errors["currency"] = (
                    f"A markup on Wavix's charge bills in {WAVIX_CURRENCY}, the currency Wavix charges in. To bill in "
                    f"{self.currency}, price per segment."
                )
        elif self.pricing == Pricing.PER_SEGMENT and self.price_per_segment is None:
            errors["price_per_segment"] = "Give the price per segment."
        if errors:
            raise ValidationError(errors)

    @property
    def price_terms_label(self) -> str:
        """The terms in words: "Wavix's charge + 25 %", "0.021 EUR per segment, 0.10 EUR per MMS"."""
        if self.pricing == Pricing.MARKUP:
            percent = (self.markup_percent or Decimal(0)).normalize()
            return (
                f"Wavix's charge + {percent.quantize(Decimal(1)) if percent == percent.to_integral() else percent:f} %"
            )
        if self.pricing == Pricing.PER_SEGMENT:
            mms = f", {_money(self.price_per_mms)} {self.currency} per MMS" if self.price_per_mms is not None else ""
            return f"{_money(self.price_per_segment or Decimal(0))} {self.currency} per segment{mms}"
        return "the reseller's prices"


def _money(amount: Decimal) -> str:
    """An amount as a person writes a price: the cents always, further digits only where there are some."""
    amount = amount.normalize()
    if amount.as_tuple().exponent > -2:  # type: ignore[operator]  # a finite amount has an int exponent
        amount = amount.quantize(Decimal("0.01"))
    return f"{amount:f}"


def contrast_with_white(color: str) -> float:
    """WCAG's contrast ratio of white text on this #rrggbb colour (buttons and the e-mails' bar put white on it)."""
    try:
        channels = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    except ValueError:
        return 21.0  # not a colour: its validator says so
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return 1.05 / (luminance + 0.05)


class Reseller(PriceTerms):
    """A managed-service provider that sells 3CX systems to its tenants."""

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    # The platform's maximum is a setting, checked in clean(): as a validator its value would be frozen into a
    # migration, and changing the environment would then look like a model change.
    message_retention_days = models.PositiveIntegerField(
        "message retention (days)",
        default=90,
        validators=[MinValueValidator(1)],
        help_text="Message texts, media links and raw webhook bodies older than this are purged every night; "
        "status, segments, charges, numbers and times are kept for counts and billing.",
    )
    # Its brand, on the pages its people and its tenants' people see and in the e-mails sent to them
    # (tenants.branding); db_default: the release before, still running while this one migrates, inserts without them.
    brand_name = models.CharField(
        max_length=120, blank=True, default="", db_default="", help_text="Blank: the reseller's name."
    )
    brand_color = models.CharField(
        "brand colour",
        max_length=7,
        blank=True,
        default="",
        db_default="",
        validators=[RegexValidator(r"^#[0-9a-fA-F]{6}$", "A colour as #rrggbb, such as #0f766e.")],
        help_text="Buttons, links and the e-mails' header bar. Blank: the portal's blue.",
    )
    support_email = models.EmailField(
        "support e-mail",
        blank=True,
        default="",
        db_default="",
        help_text="Shown to its people and tenants; the e-mails' Reply-To.",
    )
    brand_logo = models.BinaryField(null=True, blank=True, editable=False)  # PNG or JPEG, at most 200 kB
    brand_logo_type = models.CharField(max_length=16, blank=True, default="", db_default="", editable=False)
    brand_logo_hash = models.CharField(max_length=16, blank=True, default="", db_default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        limit = settings.MESSAGE_RETENTION_MAX_DAYS
        if self.message_retention_days is not None and self.message_retention_days > limit:
            raise ValidationError(
                {
                    "message_retention_days": f"At most {limit} days: the platform keeps message content no "
                    f"longer than that."
                }
            )
        if self.brand_color and (ratio := contrast_with_white(self.brand_color)) < 4.5:
            raise ValidationError(
                {
                    "brand_color": f"Too light: white text on it would be hard to read (contrast {ratio:.1f}:1; at "
                    f"least 4.5:1). Choose a darker shade."
                }
            )
        self.clean_price_terms()

    @property
    def retention_days(self) -> int:
        """The retention in force: the reseller's choice, capped by the platform's maximum (which may have dropped)."""
        return min(self.message_retention_days, settings.MESSAGE_RETENTION_MAX_DAYS)


class Tenant(PriceTerms):
    """A reseller's customer: one company with one or more 3CX systems."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        # Suspended: inbound texts are held (not forwarded, not lost), nothing is sent.
        SUSPENDED = "suspended", "Suspended"

    reseller = models.ForeignKey(Reseller, on_delete=models.PROTECT, related_name="tenants")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    default_country = models.CharField(
        max_length=2,
        blank=True,
        help_text="ISO country code used to read destination numbers written without a country code.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Its own prices, or (blank, the default) its reseller's. The other price fields matter only when set here.
    pricing = models.CharField(
        "prices",
        max_length=12,
        choices=Pricing.choices,
        blank=True,
        default="",
        db_default="",
        help_text="Blank: the reseller's prices.",
    )
    currency = models.CharField(max_length=3, choices=CURRENCIES, blank=True, default="", db_default="")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["reseller", "slug"], name="tenant_slug_unique_per_reseller"),
            models.UniqueConstraint(fields=["reseller", "name"], name="tenant_name_unique_per_reseller"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        self.default_country = self.default_country.upper()
        if self.default_country:
            import phonenumbers

            if self.default_country not in phonenumbers.SUPPORTED_REGIONS:
                raise ValidationError({"default_country": f"{self.default_country!r} is not an ISO country code."})
        if self.pricing:
            self.currency = self.currency or WAVIX_CURRENCY
            self.clean_price_terms()

    @property
    def price_terms(self) -> PriceTerms:
        """The terms this tenant is billed on: its own if it has them, else its reseller's."""
        return self if self.pricing else self.reseller

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class Membership(models.Model):
    """A user's role in one reseller (admin, operator) or one tenant (viewer)."""

    class Role(models.TextChoices):
        RESELLER_ADMIN = "reseller_admin", "Reseller admin"
        RESELLER_OPERATOR = "reseller_operator", "Reseller operator"
        TENANT_VIEWER = "tenant_viewer", "Tenant viewer"

    RESELLER_ROLES = (Role.RESELLER_ADMIN, Role.RESELLER_OPERATOR)

    class Invitation(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        PENDING = "pending", "Invited: no answer yet"
        DECLINED = "declined", "Declined"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    reseller = models.ForeignKey(Reseller, on_delete=models.PROTECT, null=True, blank=True, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, null=True, blank=True, related_name="memberships")
    role = models.CharField(max_length=24, choices=Role.choices)
    is_active = models.BooleanField(default=True)
    # An invitation is a membership its person has not accepted yet (or declined): inactive until they accept,
    # so whatever reads active memberships (tenants.access.grants and every other) cannot count it.
    invitation = models.CharField(max_length=8, choices=Invitation.choices, default=Invitation.ACCEPTED)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user__email"]
        # Reseller admins manage "people"; a person with roles in two organisations has two rows.
        verbose_name = "person"
        verbose_name_plural = "people"
        constraints = [
            # A reseller role hangs on a reseller, a tenant role on a tenant, never both.
            models.CheckConstraint(
                condition=(
                    Q(role__in=["reseller_admin", "reseller_operator"], reseller__isnull=False, tenant__isnull=True)
                    | Q(role="tenant_viewer", tenant__isnull=False, reseller__isnull=True)
                ),
                name="membership_role_matches_organization",
            ),
            models.CheckConstraint(
                condition=Q(invitation="accepted") | Q(is_active=False), name="membership_active_once_accepted"
            ),
            models.UniqueConstraint(
                fields=["user", "reseller"], condition=Q(reseller__isnull=False), name="membership_once_per_reseller"
            ),
            models.UniqueConstraint(
                fields=["user", "tenant"], condition=Q(tenant__isnull=False), name="membership_once_per_tenant"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user.email} — {self.get_role_display()} of {self.organization}"

    @property
    def organization(self) -> Reseller | Tenant:
        # The check constraint gives every membership a reseller or a tenant, so one without a reseller has a tenant.
        return cast(Reseller | Tenant, self.reseller if self.reseller_id else self.tenant)

    @property
    def owning_reseller_id(self) -> int:
        return self.reseller_id or cast(Tenant, self.tenant).reseller_id

    def clean(self) -> None:
        if self.tenant_id and self.role != self.Role.TENANT_VIEWER:
            raise ValidationError({"role": f"People of the tenant {self.tenant} are tenant viewers."})
        if self.reseller_id and self.role not in self.RESELLER_ROLES:
            raise ValidationError({"role": f"People of {self.reseller} are reseller admins or operators."})
        if bool(self.tenant_id) == bool(self.reseller_id):
            raise ValidationError("A membership belongs to one reseller or one tenant.")


def _hash_token(token: str) -> str:
    # The token carries 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for the REST API, acting as its user. Only a hash is stored; the token is shown once."""

    PREFIX = "pmp"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    # A tenant token (made by a reseller admin for a tenant's integration) sees that tenant only.
    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, null=True, blank=True, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    # The public part of the token, shown in lists so a user can tell their tokens apart.
    lookup_id = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.PREFIX}_{self.lookup_id}_…)"

    @classmethod
    def issue(cls, user, name: str, tenant=None) -> tuple["ApiToken", str]:
        """Create a token; returns the row and the plaintext, which is never available again."""
        lookup_id = secrets.token_hex(6)
        plaintext = f"{cls.PREFIX}_{lookup_id}_{secrets.token_urlsafe(32)}"
        token = cls.objects.create(
            user=user, tenant=tenant, name=name, lookup_id=lookup_id, key_hash=_hash_token(plaintext)
        )
        return token, plaintext

    @classmethod
    def authenticate(cls, plaintext: str) -> "ApiToken | None":
        """Find the live token for this plaintext, comparing hashes in constant time."""
        parts = plaintext.split("_", 2)  # the random part may itself contain "_"
        if len(parts) != 3 or parts[0] != cls.PREFIX:
            return None
        token = cls.objects.select_related("user").filter(lookup_id=parts[1], revoked_at__isnull=True).first()
        if token is None or not hmac.compare_digest(token.key_hash, _hash_token(plaintext)):
            return None
        return token

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


# --------------------------------------------------------------------------------------------------------------
# Audit trail (who did what in the portal: members, tokens, tenants, keys, sender IDs, deliveries)
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
        PROVIDER_KEY_ISSUED = "provider_key.issued", "3CX provider key issued"
        NUMBERS_UNPOINTED = "numbers.unpointed", "Numbers un-pointed at Wavix (trunk's SMS off)"
        DOCUMENT_UPLOADED = "registration.document", "Registration document uploaded"
        RETENTION_PURGED = "retention.purged", "Old message content purged"
        PRICES_CHANGED = "prices.changed", "Prices to customers changed"
        TENANT_ONBOARDED = "tenant.onboarded", "Tenant onboarded from a CSV"
        TWO_FACTOR_ENROLLED = "two_factor.enrolled", "Two-factor sign-in set up"
        RECOVERY_CODE_USED = "two_factor.recovery_code", "Signed in with a recovery code"

    PRICES_CHANGED = "prices.changed", "Prices to customers changed"

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
        db_table = "messaging_auditevent"  # its table from when it lived in messaging; renaming it buys nothing
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
        account = getattr(obj, "account", None) if reseller is None else None  # read only when needed: a query
        if account is not None:
            reseller = account.reseller
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
