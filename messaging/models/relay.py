"""The relay's partitions: how routing and forwarding share their work among any number of workers.

Every webhook event and every delivery belongs to one of settings.RELAY_PARTITIONS partitions, a hash of its
conversation (relay_partition): an inbound text's and its delivery's by the remote number, a delivery report's by
its message id. A drain works only the partitions it holds a lease on (PartitionLeases), so two drains never take
the same conversation at once — the order of a conversation is kept — while drains on other workers, on other
machines, take the other partitions in parallel. A lease is a row per (stage, partition) with an owner and an
expiry: a worker that dies leaves its partitions to the next drain once the lease lapses.

values_update() writes many rows' different values in one statement: the hot path's outcomes and reports.
"""

import random
import uuid
import zlib
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models
from django.utils import timezone


def relay_partition(conversation: str) -> int:
    """The partition of a conversation key (an inbound text's remote number, a report's message id).

    CRC-32, not hash(): the same on every machine and in every process, whatever PYTHONHASHSEED says."""
    return zlib.crc32(conversation.encode()) % settings.RELAY_PARTITIONS


class RelayPartition(models.Model):
    """Who works one partition of one stage of the relay, until when (a lease; see PartitionLeases)."""

    class Stage(models.TextChoices):
        ROUTING = "routing", "Routing"
        FORWARDING = "forwarding", "Forwarding"

    stage = models.CharField(max_length=10, choices=Stage.choices)
    number = models.PositiveSmallIntegerField()
    owner = models.CharField(max_length=32, blank=True, help_text="The drain holding it (a random id per drain).")
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["stage", "number"], name="relay_partition_once")]

    def __str__(self) -> str:
        return f"{self.get_stage_display()} partition {self.number}"


class PartitionLeases:
    """The partitions one drain holds for one stage. Claims and renewals are conditional UPDATEs, so two drains
    never both hold a partition whose lease has not lapsed; release() hands them back at once.

    claim() takes at most `share` partitions at a time: a drain that took every busy partition would leave a second
    worker nothing to do, so a burst over many conversations is split among the drains that ask (each drain asks
    for another while busy partitions are left free: see the services' drains)."""

    def __init__(self, stage: str, duration: timedelta) -> None:
        self.stage, self.duration = stage, duration
        self.owner = uuid.uuid4().hex
        self.mine: set[int] = set()
        self._renewed_at = timezone.now()
        self.free_left = False  # after claim(): were busy partitions left that nobody holds?

    @property
    def share(self) -> int:
        return max(1, settings.RELAY_PARTITIONS // settings.RELAY_DRAIN_SHARE)

    def claim(self, busy: Iterable[int] | dict[int, int], *, budget: int | None = None) -> set[int]:
        """Take up to `share` more of these busy partitions that nobody holds; returns the ones taken.

        With a `budget`, `busy` says how much work each partition holds, and the partitions are taken (in a random
        order) until their work reaches the budget instead: as many as one batch can take, all when little waits."""
        work = busy if isinstance(busy, dict) else None
        wanted = sorted(set(busy) - self.mine)
        if not wanted:
            self.free_left = False
            return set()
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        until = connection.ops.adapt_datetimefield_value(timezone.now() + self.duration)
        table = connection.ops.quote_name(RelayPartition._meta.db_table)
        marks = ", ".join(["%s"] * len(wanted))
        select = (
            f"SELECT number, (lease_until IS NULL OR lease_until < %s) FROM {table} "
            f"WHERE stage = %s AND number IN ({marks})"
        )
        with connection.cursor() as cursor:
            cursor.execute(select, [now, self.stage, *wanted])
            rows = cursor.fetchall()
            if len(rows) < len(wanted):  # first use of these partitions (the partition count is a setting)
                RelayPartition.objects.bulk_create(
                    [RelayPartition(stage=self.stage, number=number) for number in wanted], ignore_conflicts=True
                )
                cursor.execute(select, [now, self.stage, *wanted])
                rows = cursor.fetchall()
            free = [number for number, is_free in rows if is_free]
            random.shuffle(free)  # drains starting together take different partitions, not the same first ones
            if budget is not None and work is not None:
                count, total = 0, 0
                while count < len(free) and (count == 0 or total < budget):
                    total, count = total + work[free[count]], count + 1
            else:
                count = self.share
            take, rest = free[:count], free[count:]
            self.free_left = bool(rest)
            if not take:
                return set()
            cursor.execute(
                f"UPDATE {table} SET owner = %s, lease_until = %s WHERE stage = %s "
                f"AND number IN ({', '.join(['%s'] * len(take))}) AND (lease_until IS NULL OR lease_until < %s) "
                "RETURNING number",
                [self.owner, until, self.stage, *take, now],
            )
            taken = {row[0] for row in cursor.fetchall()}
        self.mine |= taken
        return taken

    def renew(self) -> None:
        """Extend the leases held, at most every third of their duration; drop any another drain has taken since
        (possible only if this one stalled past its lease)."""
        now = timezone.now()
        if not self.mine or now - self._renewed_at < self.duration / 3:
            return
        table = connection.ops.quote_name(RelayPartition._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET lease_until = %s WHERE stage = %s AND owner = %s RETURNING number",
                [connection.ops.adapt_datetimefield_value(now + self.duration), self.stage, self.owner],
            )
            self.mine = {row[0] for row in cursor.fetchall()}
        self._renewed_at = now

    def free_among(self, busy: Iterable[int]) -> set[int]:
        """Which of these partitions no drain holds now (this one included)."""
        wanted = set(busy)
        if not wanted:
            return set()
        held = RelayPartition.objects.filter(
            stage=self.stage, number__in=wanted, lease_until__gte=timezone.now()
        ).values_list("number", flat=True)
        return wanted - set(held)

    def release(self, numbers: Iterable[int] | None = None) -> None:
        """Hand back these partitions (all held, by default)."""
        let_go = self.mine if numbers is None else self.mine & set(numbers)
        if not let_go:
            return
        RelayPartition.objects.filter(stage=self.stage, owner=self.owner, number__in=let_go).update(
            owner="", lease_until=None
        )
        self.mine -= let_go


def values_update(
    model: type[models.Model], rows: Sequence[dict[str, Any]], *, where: str = "", params: Sequence[Any] = ()
) -> int:
    """UPDATE model SET each field to its row's value FROM (VALUES …), in one statement; returns rows updated.

    Each row is a dict with "pk" and the same field names. `where` adds a condition on the table (aliased t) and
    the values (aliased v), e.g. "t.status = 'pending'"; `params` are its parameters. Django's bulk_update would
    write a CASE per field with a branch per row; this is one join, however many rows."""
    if not rows:
        return 0
    fields: list[models.Field] = []
    for name in rows[0]:
        if name != "pk":
            field = model._meta.get_field(name)
            assert isinstance(field, models.Field)  # a concrete column, not a relation's other side
            fields.append(field)
    pk = model._meta.pk
    assert pk is not None
    quote = connection.ops.quote_name
    columns = [str(pk.column), *(str(field.column) for field in fields)]
    postgres = connection.vendor == "postgresql"

    def value(field: models.Field) -> str:
        # PostgreSQL types a VALUES list from its first row's literals: say each column's type.
        return f"CAST(v.{field.column} AS {field.db_type(connection)})" if postgres else f"v.{field.column}"

    assignments = ", ".join(f"{quote(str(field.column))} = {value(field)}" for field in fields)
    placeholders = ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * len(rows))
    values: list[Any] = []
    for row in rows:
        values.append(row["pk"])
        values.extend(field.get_db_prep_save(row[field.name], connection) for field in fields)
    pk_value = f"CAST(v.{pk.column} AS {pk.db_type(connection)})" if postgres else f"v.{pk.column}"
    sql = (
        f"WITH v ({', '.join(columns)}) AS (VALUES {placeholders}) "
        f"UPDATE {quote(model._meta.db_table)} AS t SET {assignments} FROM v WHERE t.{quote(pk.column)} = {pk_value}"
        + (f" AND ({where})" if where else "")
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, *params])
        if connection.vendor == "sqlite":
            # Python's sqlite3 does not count the rows of a statement that starts with WITH (rowcount -1).
            cursor.execute("SELECT changes()")
            return int(cursor.fetchone()[0])
        return cursor.rowcount
