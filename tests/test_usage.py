"""Usage (issue 19, first step): the daily rollup counts messages, segments and Wavix's charge per tenant, day,
direction, status, origin and kind (SMS or MMS); its sums agree exactly with the message log; retention never changes
the figures of days it has reached."""

import random
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from messaging.models import DailyMessageCount, Message
from messaging.services.retention import retention_purge
from tests import factories as f

S, ORIGIN = Message.Status, Message.Origin
KEY = ("tenant_id", "direction", "origin", "mms")


def month_of_traffic(tenants, days: int = 30, per_day: int = 6, seed: int = 19) -> list[Message]:
    """A month of mixed traffic for these tenants: three origins, MMS and SMS, delivered and failed, inbound."""
    pick = random.Random(seed)
    made = []
    now = timezone.now()
    for tenant in tenants:
        account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
        for day in range(days):
            for _ in range(per_day):
                inbound = pick.random() < 0.3
                mms = pick.random() < 0.2
                status = (
                    pick.choice([S.FORWARDED, S.FAILED]) if inbound else pick.choice([S.DELIVERED, S.FAILED, S.SENT])
                )
                made.append(
                    f.MessageFactory(
                        tenant=tenant,
                        account=account,
                        direction="inbound" if inbound else "outbound",
                        origin=ORIGIN.PORTAL if inbound else pick.choice(list(ORIGIN)),
                        status=status,
                        media=["https://media.example/picture.jpg"] if mms else [],
                        segments=pick.randint(1, 4),
                        charge=None if status == S.FAILED else Decimal(pick.randint(40, 900)) / 10_000,
                        created_at=now - timedelta(days=day, minutes=pick.randint(0, 600)),
                    )
                )
    return made


def log_totals(messages) -> dict[tuple, tuple[int, int, Decimal]]:
    totals: dict[tuple, list] = defaultdict(lambda: [0, 0, Decimal(0)])
    for message in messages:
        row = totals[(message.tenant_id, message.direction, message.origin, bool(message.media))]
        row[0] += 1
        row[1] += message.segments
        row[2] += message.charge or 0
    return {key: tuple(value) for key, value in totals.items()}


def rollup_totals() -> dict[tuple, tuple[int, int, Decimal]]:
    totals: dict[tuple, list] = defaultdict(lambda: [0, 0, Decimal(0)])
    for *key, count, segments, charge in DailyMessageCount.objects.values_list(*KEY, "count", "segments", "charge"):
        row = totals[tuple(key)]
        row[0] += count
        row[1] += segments
        row[2] += charge
    return {key: tuple(value) for key, value in totals.items()}


@pytest.mark.django_db
def test_the_rollup_agrees_exactly_with_the_message_log(reseller, tenant, other_tenant):
    third = f.TenantFactory(reseller=reseller, name="Tenant C")
    messages = month_of_traffic([tenant, other_tenant, third])
    assert DailyMessageCount.recompute(31) > 0
    totals = rollup_totals()
    assert totals == log_totals(messages)
    # Every origin and both kinds are there, and the charges are to the cent and below.
    assert {key[2] for key in totals} == set(ORIGIN.values)
    assert {key[3] for key in totals} == {True, False}
    assert sum(charge for _, _, charge in totals.values()) == sum(m.charge or 0 for m in messages)
    # Counted again, the same rows.
    before = set(DailyMessageCount.objects.values_list(*KEY, "day", "status", "count", "segments", "charge"))
    DailyMessageCount.recompute(31)
    assert set(DailyMessageCount.objects.values_list(*KEY, "day", "status", "count", "segments", "charge")) == before


@pytest.mark.django_db
def test_retention_never_changes_the_figures_of_days_it_reached(reseller, tenant, other_tenant):
    messages = month_of_traffic([tenant, other_tenant])
    DailyMessageCount.recompute(31)  # counted while every day was open (the default retention is 90 days)
    before = rollup_totals()
    reseller.message_retention_days = 10
    reseller.save()
    assert retention_purge() > 0
    assert (
        Message.objects.filter(tenant=tenant, media=[]).count()
        > Message.objects.filter(tenant=tenant, created_at__gte=timezone.now() - timedelta(days=10)).count()
    )  # the MMS older than ten days now look like SMS in the log
    DailyMessageCount.recompute(31)
    assert rollup_totals() == before == log_totals(messages)
    call_command("recount_messages", days=400)
    assert rollup_totals() == before


@pytest.mark.django_db
def test_days_retention_reached_are_kept_and_open_days_are_counted_again(reseller, tenant):
    reseller.message_retention_days = 3
    reseller.save()
    now = timezone.now()
    old = f.MessageFactory(tenant=tenant, status=S.SENT, created_at=now - timedelta(days=5), segments=2)
    new = f.MessageFactory(tenant=tenant, status=S.SENT, created_at=now - timedelta(hours=1), segments=3)
    DailyMessageCount.recompute(2)
    assert DailyMessageCount.first_open_day(reseller, now) == timezone.localdate(now - timedelta(days=3)) + timedelta(
        days=1
    )
    # Five days ago was never counted, and is frozen now: a recount of 10 days leaves it alone.
    Message.objects.filter(pk__in=[old.pk, new.pk]).update(status=S.DELIVERED)
    DailyMessageCount.recompute(10)
    rows = set(DailyMessageCount.objects.values_list("day", "status", "count", "segments"))
    assert rows == {(timezone.localdate(new.created_at), "delivered", 1, 3)}
