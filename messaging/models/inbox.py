"""The webhook inbox: every Wavix webhook accepted, and its prepared INSERT."""

import functools

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.utils import timezone

from messaging.models.provisioning import WavixAccount, WebhookSecret, secret_hash
from tenants.models import Tenant

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
    # Its conversation's relay partition (models/relay.py), given at intake: routing works partitions in parallel.
    partition = models.PositiveSmallIntegerField(default=0, db_default=0, editable=False)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "kind", "dedup_key"], name="webhook_event_dedup"),
        ]
        indexes = [
            models.Index(fields=["state", "received_at"], name="webhook_event_state_age"),
            # Routing: a partition's pending events in arrival order, and which partitions have any.
            models.Index(
                fields=["partition", "id"], condition=models.Q(state="pending"), name="webhook_event_pending_part"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.dedup_key}"

    @classmethod
    def _insert(
        cls, kind: str, dedup_key: str, body: bytes, partition: int, *, account: str, source: str, params: list
    ) -> bool:
        """INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING: True if a row was stored.

        `account` is the SQL giving the account id, `source` the FROM/WHERE it may need (it must end in a WHERE:
        SQLite reads "SELECT … ON CONFLICT" ambiguously without one); `params` are account's then source's.
        The other columns and their values come from the model's own fields and defaults.
        """
        db = connections[DEFAULT_DB_ALIAS]  # once: each attribute of the `connection` proxy is a context lookup
        sql, fields = cls._insert_plan(db.vendor, account, source)
        given = {"kind": kind, "dedup_key": dedup_key, "body": body, "partition": partition}
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
    def store(cls, *, account_id: int, kind: str, dedup_key: str, body: bytes, partition: int = 0) -> bool:
        """Store a webhook for an account; False if it was already stored (a duplicate). `partition` is its
        conversation's (relay_partition of webhooks.conversation_key)."""
        return cls._insert(kind, dedup_key, body, partition, account="%s", source="WHERE 1 = 1", params=[account_id])

    @classmethod
    def store_by_secret(cls, *, secret: str, kind: str, dedup_key: str, body: bytes, partition: int = 0) -> bool:
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
            partition,
            account="s.account_id",
            source=f"FROM {secrets_table} s JOIN {accounts_table} a ON a.id = s.account_id "
            "WHERE s.secret_hash = %s AND (s.retire_at IS NULL OR s.retire_at > %s) AND a.source_ips = ''",
            params=[secret_hash(secret), timezone.now()],
        )
