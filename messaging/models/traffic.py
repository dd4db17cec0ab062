"""Messages and their deliveries to 3CX, opt-outs, idempotent API requests and the daily rollup."""

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import BooleanField, Count, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from messaging.models.common import IllegalTransition
from messaging.models.provisioning import Trunk, WavixAccount
from messaging.models.relay import relay_partition
from messaging.models.senders import SenderID
from tenants.models import Reseller, Tenant

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

    class Origin(models.TextChoices):
        PORTAL = "portal", "Portal (admin or API)"
        THREECX = "3cx", "3CX (through the portal)"
        MIRROR = "mirror", "3CX straight to Wavix (mirrored)"

    S = Status
    TRANSITIONS: dict[str, set[str]] = {
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
    # Who asked for an outbound text: the portal's own send paths, 3CX through the provider endpoint, or 3CX straight
    # to Wavix, read back from Wavix's log by the mirror. Inbound texts are "portal": the portal received them.
    origin = models.CharField(
        max_length=8,
        choices=Origin.choices,
        default=Origin.PORTAL,
        db_default=Origin.PORTAL,  # the release before, still running while this one migrates, inserts without it
    )
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
    # The messages of one bulk send share it, so that the send page and the log can show that send and nothing else.
    batch = models.UUIDField(null=True, blank=True, editable=False, help_text="The bulk send this message was part of.")

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
            # A bulk send's messages (the send page's summary, the log's batch filter); single texts are not in it.
            models.Index(fields=["batch"], condition=Q(batch__isnull=False), name="message_batch"),
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

    # Wavix bills in US dollars: its API has no currency field and gives every charge "in USD" (the message's
    # `charge`: "Total charge for the message in USD."), so the portal stores the amount alone and names it here.
    CHARGE_CURRENCY = "USD"

    @property
    def charge_shown(self) -> str:
        """The charge with its currency ("0.0059 USD", two decimals at least), or "—" until Wavix reports one."""
        if self.charge is None:
            return "—"
        amount = self.charge.normalize()
        if amount.as_tuple().exponent > -2:  # type: ignore[operator]  # a finite amount has an int exponent
            amount = amount.quantize(Decimal("0.01"))
        return f"{amount:f} {self.CHARGE_CURRENCY}"

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
        assert isinstance(field, models.DecimalField)
        return Decimal(10) ** (field.max_digits - field.decimal_places)

    def can_transition(self, status: str) -> bool:
        if status not in self.TRANSITIONS.get(self.status, ()):
            return False
        # Only an inbound message that failed is replayed; a failed outbound message is never resent.
        return not (self.status == self.Status.FAILED and self.direction == self.Direction.OUTBOUND)

    def transition(self, status: str) -> None:
        """Move to a new status, or raise IllegalTransition for a move the state machine forbids. Caller saves."""
        if not self.can_transition(status):
            raise IllegalTransition(f"message {self.pk}: {self.status} → {status} is not allowed")
        self.status = status
        if status in self.FINAL or status == self.Status.FAILED:
            self.completed_at = timezone.now()

    EXPIRED_NOTE = "Not sent within its validity: it would have arrived too late."

    @classmethod
    def claim(cls, pks: list[int], *, on_expire: Callable[["Message", str], object] | None = None) -> list["Message"]:
        """Take these queued messages for sending, in this order: the one place that makes a send single.

        A row another worker holds (locked) or has taken (no longer queued) is left out. A message past its validity
        moves to expired here, with EXPIRED_NOTE, instead of going out late; on_expire(message, previous status) is
        called in the same transaction (the sender queues the text's status event to 3CX with it). The rest move to
        sending in one UPDATE (one statement per batch, not one per message), and each object makes the same move
        through transition(), so what the caller holds matches its row.
        """
        if not pks:
            return []
        now = timezone.now()
        with transaction.atomic():
            queued = cls.objects.select_for_update(skip_locked=True).filter(pk__in=pks, status=cls.Status.QUEUED)
            claimed = []
            for message in queued:
                if message.expires_at and message.expires_at <= now:
                    previous_status = message.status
                    message.transition(cls.Status.EXPIRED)
                    message.error_message = cls.EXPIRED_NOTE
                    message.save()
                    if on_expire:
                        on_expire(message, previous_status)
                else:
                    claimed.append(message)
            cls.objects.filter(pk__in=[message.pk for message in claimed]).update(
                status=cls.Status.SENDING, send_started_at=now, attempts=F("attempts") + 1
            )
        for message in claimed:
            message.transition(cls.Status.SENDING)
            message.send_started_at, message.attempts = now, message.attempts + 1
        order = {pk: index for index, pk in enumerate(pks)}
        return sorted(claimed, key=lambda message: order[message.pk])


class Delivery(models.Model):
    """One forward to one trunk's 3CX — an inbound text, or a status event of a text 3CX sent through the portal:
    attempts, the next one, and 3CX's last answer."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"  # due at next_attempt_at
        DELIVERED = "delivered", "Delivered"  # 3CX answered 2xx
        FAILED = "failed", "Failed"  # 3CX refused it (4xx other than 429): retrying will not help
        DEAD = "dead", "Dead-lettered"  # retries exhausted; replayable

    S = Status
    TRANSITIONS: dict[str, set[str]] = {
        S.PENDING: {S.DELIVERED, S.FAILED, S.DEAD},
        S.FAILED: {S.PENDING},  # replayed
        S.DEAD: {S.PENDING},  # replayed
        S.DELIVERED: set(),
    }
    REPLAYABLE = frozenset({S.FAILED, S.DEAD})  # the statuses a replay takes back to pending

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    message = models.ForeignKey(Message, on_delete=models.PROTECT, related_name="deliveries")
    trunk = models.ForeignKey(Trunk, on_delete=models.PROTECT, related_name="deliveries")
    # The conversation is (trunk, remote number): a message waits while an earlier one of it is pending.
    remote_number = models.CharField(max_length=20, default="")
    # What is forwarded: the inbound text itself (""), or a status event of an outbound text 3CX sent through the
    # portal (trunk.status_events): Telnyx-style "message.sent" or "message.finalized".
    event = models.CharField(max_length=20, blank=True, default="", db_default="")
    # The conversation's relay partition (models/relay.py), from remote_number: forwarding works partitions apart.
    partition = models.PositiveSmallIntegerField(default=0, db_default=0, editable=False)
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
        constraints = [
            # Each status event once per text (forwarding.status_event_queue checks first under the text's lock;
            # this is the backstop that holds whatever calls it).
            models.UniqueConstraint(fields=["message", "event"], condition=~Q(event=""), name="status_event_once"),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
            # Forwarding: the pending deliveries of some partitions, each conversation in order (the due heads).
            models.Index(
                fields=["partition", "trunk", "remote_number", "id"],
                condition=Q(status="pending"),
                name="delivery_pending_part",
            ),
            models.Index(fields=["trunk", "remote_number", "status", "id"], name="delivery_conversation"),
            # The dashboard: a tenant's failing deliveries (counted) and its latest successful forward (a seek).
            models.Index(fields=["tenant", "status", "-delivered_at"], name="delivery_tenant_status"),
        ]

    def __str__(self) -> str:
        return f"Delivery of message {self.message_id} to {self.trunk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._state.adding:
            self.partition = relay_partition(self.remote_number)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if self.message_id and self.trunk_id and self.message.tenant_id != self.trunk.tenant_id:
            raise ValidationError("A delivery goes to a trunk of the message's own tenant.")

    def transition(self, status: str, *, at: datetime | None = None) -> None:
        """Move to a new status, or raise IllegalTransition for a move the state machine forbids. Caller saves.

        A replay (back to pending) is claimed with a conditional UPDATE instead, so that two replays of one delivery
        asked at once replay it once: see forwarding's delivery_replay(); REPLAYABLE names the statuses it takes.
        """
        if status not in self.TRANSITIONS[self.status]:
            raise IllegalTransition(f"delivery {self.pk}: {self.status} → {status} is not allowed")
        self.status = status
        if status == self.Status.DELIVERED:
            self.delivered_at = at or timezone.now()


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
# Dashboard rollup
# --------------------------------------------------------------------------------------------------------------


class DailyMessageCount(models.Model):
    """How many messages a tenant had per day, direction, status, origin and kind (SMS or MMS), with their segments
    and Wavix's charge: what the dashboard charts and the usage statements read.

    Derived data, recomputed for recent days by a periodic task (recompute()); the dashboard and the statements
    never count the message table itself, which may hold millions of rows. A day whose content retention may have
    purged is never recomputed (an MMS whose media is purged looks like an SMS): past months keep their figures.
    """

    # Derived and recomputable: it must not keep a tenant from being deleted, unlike the records it counts.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    direction = models.CharField(max_length=8, choices=Message.Direction.choices)
    status = models.CharField(max_length=16, choices=Message.Status.choices)
    # db_default: the release before, still counting while this one migrates, inserts without them.
    origin = models.CharField(
        max_length=8, choices=Message.Origin.choices, default=Message.Origin.PORTAL, db_default=Message.Origin.PORTAL
    )
    mms = models.BooleanField("MMS", default=False, db_default=False)
    # Wavix took the text (it has a Wavix message id): what a price per segment bills. Status alone cannot tell, as
    # "expired" is both a text the portal gave up on before sending and one Wavix accepted and then let expire.
    at_wavix = models.BooleanField("at Wavix", default=False, db_default=False)
    count = models.PositiveIntegerField()
    segments = models.PositiveIntegerField(default=0, db_default=0)
    charge = models.DecimalField(max_digits=14, decimal_places=5, default=Decimal(0), db_default=Decimal(0))

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "day", "direction", "status", "origin", "mms", "at_wavix"], name="daily_count_once"
            ),
        ]
        # The unique constraint's index serves per-tenant reads; this one the "every day since" deletes.
        indexes = [models.Index(fields=["day"], name="daily_count_day")]

    def __str__(self) -> str:
        return (
            f"{self.tenant_id} {self.day} {self.direction} {self.status} {self.origin} mms={self.mms} "
            f"at_wavix={self.at_wavix}: {self.count}"
        )

    @classmethod
    def recompute(cls, days: int, *, now: datetime | None = None) -> int:
        """Count again the last `days` days (today included) that retention has not reached, replacing their rows;
        returns the rows written.

        Running it twice gives the same rows. Late status changes (delivery reports come hours later) are
        picked up by recomputing a day again, which is why whole days are replaced rather than incremented. A
        reseller's days up to its retention cutoff's are left as they were last counted (first_open_day()).
        """
        now = now or timezone.now()
        first_day = timezone.localdate(now) - timedelta(days=days - 1)
        rows: list[DailyMessageCount] = []
        with transaction.atomic():
            for reseller in Reseller.objects.order_by("pk"):
                start = max(first_day, cls.first_open_day(reseller, now))
                tenants = Tenant.objects.filter(reseller=reseller).values("pk")
                counted = (
                    Message.objects.filter(
                        tenant__in=tenants, created_at__gte=timezone.make_aware(datetime.combine(start, time.min))
                    )
                    .annotate(
                        day=TruncDate("created_at"),
                        is_mms=ExpressionWrapper(~Q(media=[]), BooleanField()),
                        took=ExpressionWrapper(~Q(wavix_message_id=""), BooleanField()),
                    )
                    .values_list("tenant_id", "day", "direction", "status", "origin", "is_mms", "took")
                    .annotate(n=Count("id"), parts=Sum("segments"), cost=Coalesce(Sum("charge"), Decimal(0)))
                    .order_by()
                )
                rows += [
                    cls(
                        tenant_id=t,
                        day=d,
                        direction=direction,
                        status=s,
                        origin=o,
                        mms=m,
                        at_wavix=w,
                        count=n,
                        segments=p,
                        charge=c,
                    )
                    for t, d, direction, s, o, m, w, n, p, c in counted
                ]
                cls.objects.filter(tenant__in=tenants, day__gte=start).delete()
            DailyMessageCount.objects.bulk_create(rows, batch_size=1000)
        return len(rows)

    @staticmethod
    def first_open_day(reseller: Reseller, now: datetime) -> date:
        """The first day none of whose messages the reseller's retention may have purged yet (the purge empties
        messages older than now minus its retention days): days before it are frozen."""
        return timezone.localdate(now - timedelta(days=reseller.retention_days)) + timedelta(days=1)
