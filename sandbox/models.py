"""State of the simulated Wavix and of the fake 3CX inboxes.

This is the other side of the wire: what Wavix (or a PBX) would hold. The portal never reads these tables; it
talks to the sandbox over HTTP exactly as it talks to Wavix. Keys here are plain: they are test keys of a
simulator, not customers' secrets.
"""

import secrets
import uuid

from django.db import models
from django.utils import timezone


def new_api_key() -> str:
    return f"sbx_{secrets.token_hex(16)}"


def new_inbox_token() -> str:
    return secrets.token_urlsafe(24)  # 32 characters, 192 bits


class SandboxAccount(models.Model):
    """A Wavix account (or sub-organization) with its API key, default endpoints, limit and faults."""

    name = models.CharField(max_length=100)
    email = models.EmailField(default="owner@example.com")
    api_key = models.CharField(max_length=80, unique=True, default=new_api_key)
    parent = models.ForeignKey("self", on_delete=models.CASCADE, null=True, blank=True, related_name="children")
    sms_relay_url = models.CharField("default SMS endpoint", max_length=500, blank=True)
    dlr_relay_url = models.CharField("default DLR endpoint", max_length=500, blank=True)
    rate_limit_per_second = models.PositiveIntegerField(default=20)
    # Until then, every API call of this account answers 500: an outage to recover from.
    failing_until = models.DateTimeField(null=True, blank=True)
    # Until then, every API call answers 429, as Wavix does when an account sends too fast.
    throttled_until = models.DateTimeField(null=True, blank=True)
    # Every API call of this account is answered this much later: Wavix across the internet, not on loopback.
    answer_delay_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_failing(self) -> bool:
        return self.failing_until is not None and self.failing_until > timezone.now()

    @property
    def is_throttled(self) -> bool:
        return self.throttled_until is not None and self.throttled_until > timezone.now()


class SandboxNumber(models.Model):
    account = models.ForeignKey(SandboxAccount, on_delete=models.CASCADE, related_name="numbers")
    number = models.CharField(max_length=20, help_text="Digits, as Wavix writes them.")
    country = models.CharField(max_length=2)
    city = models.CharField(max_length=100, default="")
    label = models.CharField(max_length=100, blank=True)
    sms_enabled = models.BooleanField(default=True)
    sms_relay_url = models.CharField(max_length=500, blank=True)
    added = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["number"], name="sandbox_number_unique")]

    def __str__(self) -> str:
        return f"+{self.number}"


class SandboxSenderID(models.Model):
    uid = models.UUIDField(default=uuid.uuid4, unique=True)
    account = models.ForeignKey(SandboxAccount, on_delete=models.CASCADE, related_name="sender_ids")
    sender_id = models.CharField(max_length=20)
    type = models.CharField(max_length=16)
    countries = models.JSONField(default=list)
    allowlisted_in = models.JSONField(default=list)
    usecase = models.CharField(max_length=20, default="transactional")
    samples = models.JSONField(default=list)
    monthly_volume = models.CharField(max_length=30, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.sender_id

    @property
    def pending_countries(self) -> list[str]:
        return [c for c in self.countries if c not in self.allowlisted_in]


class SandboxMessage(models.Model):
    uid = models.UUIDField(default=uuid.uuid4, unique=True)
    account = models.ForeignKey(SandboxAccount, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=8, default="outbound")
    from_number = models.CharField(max_length=20)
    to_number = models.CharField(max_length=20)
    text = models.TextField(blank=True)
    media = models.JSONField(null=True, blank=True)
    tag = models.CharField(max_length=100, blank=True)
    callback_url = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=16, default="accepted")
    segments = models.PositiveSmallIntegerField(default=1)
    error_message = models.CharField(max_length=200, blank=True)
    submitted_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.from_number} → {self.to_number} ({self.status})"


class FakePbxInbox(models.Model):
    """A 3CX trunk's webhook as a fake PBX: records what it receives; can be told to fail for a while."""

    class Mode(models.TextChoices):
        OK = "ok", "Answer 200"
        ERROR_500 = "500", "Answer 500"
        ERROR_404 = "404", "Answer 404"
        TIMEOUT = "timeout", "Time out (no answer)"

    token = models.CharField(max_length=40, unique=True, default=new_inbox_token)
    label = models.CharField(max_length=100)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.OK)
    mode_until = models.DateTimeField(null=True, blank=True, help_text="Back to answering 200 after this.")
    created_at = models.DateTimeField(default=timezone.now)

    # The sending side, as typed into 3CX's SMS tab. 3CX keeps the key in its own configuration, so does this.
    class Template(models.TextChoices):
        GENERIC = "generic", "Generic (through the portal's Provider URL)"
        WAVIX = "wavix", "Wavix (straight to Wavix with the account's key)"

    sms_template = models.CharField(max_length=8, choices=Template.choices, default=Template.GENERIC)
    provider_url = models.CharField("Provider URL", max_length=500, blank=True)
    api_key = models.CharField("Messaging API key", max_length=200, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.label

    def current_mode(self) -> str:
        if self.mode != self.Mode.OK and self.mode_until and self.mode_until <= timezone.now():
            return self.Mode.OK
        return self.mode


class FakePbxSend(models.Model):
    """A text the fake 3CX's app sent, as 3CX would: to the portal's Provider URL with the provider key (the Generic
    template), or straight to Wavix with the account's key (the Wavix template); and the answer it got."""

    inbox = models.ForeignKey(FakePbxInbox, on_delete=models.CASCADE, related_name="sends")
    sent_at = models.DateTimeField(default=timezone.now)
    url = models.CharField(max_length=500)
    body = models.JSONField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    answer = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Sent from {self.inbox} at {self.sent_at:%H:%M:%S} ({self.status_code or 'no answer'})"

    @property
    def shown_as_sent(self) -> bool:
        """What 3CX shows: sent on a 2xx with a non-empty body, failed otherwise."""
        return bool(self.status_code and 200 <= self.status_code < 300 and self.answer.strip())


class FakePbxRequest(models.Model):
    inbox = models.ForeignKey(FakePbxInbox, on_delete=models.CASCADE, related_name="requests")
    received_at = models.DateTimeField(default=timezone.now)
    headers = models.JSONField(default=dict)
    body = models.BinaryField()
    answered = models.CharField(max_length=8)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"POST to {self.inbox} at {self.received_at:%H:%M:%S} ({self.answered})"

    @property
    def body_text(self) -> str:
        return bytes(self.body).decode("utf-8", "replace")
