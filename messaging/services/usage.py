"""Usage per tenant and month, and what the reseller bills for it: the one place statements are figured.

Every figure is read from the daily rollup (DailyMessageCount), never by scanning the message log, and agrees with
the log exactly (tests/test_usage.py sums both). The rollup is recounted every five minutes for today and yesterday,
hourly for the fortnight before; a day the reseller's retention has reached is never recounted, so a past month's
statement never changes.

What is billed:

- outbound texts Wavix took (they have a Wavix message id), from every origin: the portal, 3CX through the portal,
  and 3CX straight to Wavix (the mirror). A text refused or expired before it reached Wavix is listed, not billed;
- inbound texts are counted, and billed only through a markup on whatever Wavix charged for them.

The price, per the terms in force (the tenant's own, else its reseller's; tenants.models.PriceTerms):

- a markup: Wavix's charge for the month (USD) × (1 + markup / 100), in USD;
- a price per segment: the segments of the texts Wavix took × the price, with each MMS at the price per MMS when
  one is set; in the currency chosen.

Rounded once per tenant and month, half up, to the cent; a reseller's total is the sum of its tenants' prices, as
the lines of an invoice add up.
"""

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from messaging.models import DailyMessageCount, Message
from tenants.models import WAVIX_CURRENCY, PriceTerms, Pricing, Tenant

CENT = Decimal("0.01")
# Each origin on a statement, after "SMS sent" or "MMS sent".
SENT_FROM = {
    Message.Origin.PORTAL: "from the portal (admin or API)",
    Message.Origin.THREECX: "by 3CX through the portal",
    Message.Origin.MIRROR: "by 3CX straight to Wavix (mirrored)",
}
MONTH_FORMAT = re.compile(r"(\d{4})-(\d{2})")


def this_month() -> date:
    return timezone.localdate().replace(day=1)


def month_after(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def month_before(month: date) -> date:
    return date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)


def parse_month(value: str | None) -> date:
    """The first day of the month "YYYY-MM" names (this month when not given); a month not begun yet is refused."""
    if value is None or value == "":
        return this_month()
    match = MONTH_FORMAT.fullmatch(value.strip())
    if match is None or not 1 <= int(match[2]) <= 12 or int(match[1]) < 2000:
        raise ValidationError({"month": f"Give the month as YYYY-MM, such as {this_month():%Y-%m}."})
    month = date(int(match[1]), int(match[2]), 1)
    if month > this_month():
        raise ValidationError({"month": f"{month:%B %Y} has not begun: there is no usage yet."})
    return month


@dataclass
class Line:
    """Texts of one kind: how many, their segments, and what Wavix charged for them."""

    messages: int = 0
    segments: int = 0
    charge: Decimal = Decimal(0)

    def add(self, messages: int, segments: int, charge: Decimal) -> None:
        self.messages += messages
        self.segments += segments
        self.charge += charge


@dataclass
class TenantUsage:
    """One tenant's month: its texts by direction, origin and kind, Wavix's charge, and the price to the customer."""

    tenant: Tenant
    month: date
    terms: PriceTerms
    # Outbound texts Wavix took, per (origin, is MMS): the billed lines.
    sent: dict[tuple[str, bool], Line] = field(default_factory=lambda: defaultdict(Line))
    not_sent: Line = field(default_factory=Line)  # outbound that never reached Wavix (refused, expired, still queued)
    inbound_sms: Line = field(default_factory=Line)
    inbound_mms: Line = field(default_factory=Line)

    @property
    def outbound_messages(self) -> int:
        return sum(line.messages for line in self.sent.values())

    @property
    def outbound_segments(self) -> int:
        return sum(line.segments for line in self.sent.values())

    @property
    def outbound_mms(self) -> int:
        return sum(line.messages for (_, mms), line in self.sent.items() if mms)

    @property
    def inbound_messages(self) -> int:
        return self.inbound_sms.messages + self.inbound_mms.messages

    @property
    def sent_charge(self) -> Decimal:
        return sum((line.charge for line in self.sent.values()), Decimal(0))

    @property
    def wavix_charge(self) -> Decimal:
        lines = [*self.sent.values(), self.not_sent, self.inbound_sms, self.inbound_mms]
        return sum((line.charge for line in lines), Decimal(0))

    def by_origin(self) -> list[tuple[str, str, Line]]:
        """The billed lines in a stable order: (where from, "SMS" or "MMS", line), the empty ones left out."""
        rows = []
        for origin, words in SENT_FROM.items():
            for mms in (False, True):
                line = self.sent.get((origin, mms))
                if line is not None and line.messages:
                    rows.append((words, "MMS" if mms else "SMS", line))
        return rows

    @property
    def currency(self) -> str:
        return WAVIX_CURRENCY if self.terms.pricing == Pricing.MARKUP else self.terms.currency

    @property
    def price(self) -> Decimal:
        terms = self.terms
        if terms.pricing == Pricing.MARKUP:
            amount = self.wavix_charge * (1 + (terms.markup_percent or 0) / Decimal(100))
        else:
            per_segment = terms.price_per_segment or Decimal(0)
            amount = Decimal(0)
            for (_, mms), line in self.sent.items():
                if mms and terms.price_per_mms is not None:
                    amount += line.messages * terms.price_per_mms
                else:
                    amount += line.segments * per_segment
        return amount.quantize(CENT, rounding=ROUND_HALF_UP)

    @property
    def is_open(self) -> bool:
        """The month is not over: its figures still grow (counted every five minutes)."""
        return self.month >= this_month()


def month_usage(tenants: QuerySet[Tenant], month: date) -> list[TenantUsage]:
    """Each of these tenants' usage in the month beginning on `month`, by reseller and name; a tenant created after
    the month has no row (unless it has texts in it). One aggregate over the rollup's rows for the month."""
    end = month_after(month)
    in_month = DailyMessageCount.objects.filter(day__gte=month, day__lt=end)
    existed = Q(created_at__date__lt=end) | Q(pk__in=in_month.values("tenant_id"))
    listed = list(tenants.select_related("reseller").filter(existed).order_by("reseller__name", "name", "pk"))
    usage = {tenant.pk: TenantUsage(tenant, month, tenant.price_terms) for tenant in listed}
    counted = (
        in_month.filter(tenant_id__in=list(usage))
        .values_list("tenant_id", "direction", "origin", "mms", "at_wavix")
        .annotate(n=Sum("count"), parts=Sum("segments"), cost=Sum("charge"))
        .order_by()
    )
    for tenant_id, direction, origin, mms, at_wavix, n, parts, cost in counted:
        row = usage[tenant_id]
        if direction == Message.Direction.INBOUND:
            line = row.inbound_mms if mms else row.inbound_sms
        else:
            line = row.sent[(origin, mms)] if at_wavix else row.not_sent
        line.add(n, parts, cost)
    return list(usage.values())


def totals_by_currency(rows: list[TenantUsage]) -> dict[str, Decimal]:
    """The prices added up per currency (tenants with their own terms may bill in another)."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        totals[row.currency] += row.price
    return dict(sorted(totals.items()))
