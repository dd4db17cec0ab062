"""The dashboard: first what to do next — per tenant, the next action with a direct link (finish a trunk's setup,
upload the documents a reviewer asked for, fix what 3CX or Wavix refuses) — then each visible tenant's setup,
forwarding health and traffic.

Built for 500 tenants and a million messages. A page of tenants is read first; then each figure, for the
whole page at once, comes from one query grouped by tenant (index seeks and short index ranges) or from the
daily rollup (DailyMessageCount), never from one query per tenant nor from counting the message table.
"""

import operator
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import reduce
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.db.models import Count, Min, OuterRef, Q, QuerySet, Subquery, Sum
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe

from messaging.admin.logs import message_log_url, not_forwarded_since, unassigned_texts
from messaging.models import (
    DailyMessageCount,
    Delivery,
    Message,
    PhoneNumber,
    RegistrationDocument,
    SenderIDCountry,
    Trunk,
)
from messaging.services.setup import STEP_KEYS, STEPS
from tenants import access
from tenants.models import Tenant

# The setup wizard's steps, in order; a trunk's setup_progress["steps_done"] lists the ones it finished.
SETUP_STEPS = tuple(STEP_KEYS)
STEP_TITLES = dict(STEPS)
# A refusal of 3CX's own text (the provider endpoint) stays on the to-do list this long.
PROVIDER_REFUSAL_SHOWN = timedelta(hours=24)
TENANTS_PER_PAGE = 50
CHART_DAYS = 14
# An outbound text Wavix took but whose final report has not come this long after: reports are lost or late.
NO_REPORT_AFTER = timedelta(hours=2)
# ...looked for over this window only, so a forgotten message from last year does not alarm forever.
NO_REPORT_WINDOW = timedelta(days=7)
AWAITING_REPORT = (Message.Status.ACCEPTED, Message.Status.PENDING, Message.Status.SENT)
# Final outbound outcomes: the delivery rate's denominator. Texts still on their way do not count yet.
OUTBOUND_FINAL = (
    Message.Status.DELIVERED,
    Message.Status.UNDELIVERED,
    Message.Status.REJECTED,
    Message.Status.EXPIRED,
    Message.Status.FAILED,
    Message.Status.DLR_EXPIRED,
)
GAVE_UP = (Delivery.Status.FAILED, Delivery.Status.DEAD)


def finished_steps(progress) -> set[str]:
    """The setup steps a trunk finished, from whatever its setup_progress holds (tolerating any shape)."""
    done = progress.get("steps_done") if isinstance(progress, dict) else None
    if not isinstance(done, list | tuple):
        return set()
    return {step for step in done if isinstance(step, str)} & set(SETUP_STEPS)


def setup_steps_done(progress) -> int:
    return len(finished_steps(progress))


@dataclass(frozen=True)
class Rate:
    delivered: int
    final: int

    @property
    def percent(self) -> int | None:
        return round(100 * self.delivered / self.final) if self.final else None

    @property
    def low(self) -> bool:
        return self.final > 0 and self.delivered / self.final < 0.8


def delivery_rate(status_counts: dict[str, int]) -> Rate:
    """Outbound delivery rate: delivered over every final outcome (undelivered, rejected, expired, failed, …)."""
    return Rate(status_counts.get(Message.Status.DELIVERED, 0), sum(status_counts.get(s, 0) for s in OUTBOUND_FINAL))


@dataclass(frozen=True)
class Alert:
    """Something wrong, or something to do next, with where to do it: `action` names the button; with no url (the
    user may not act on it, a tenant viewer) the text stands alone."""

    text: str
    url: str
    action: str = "Open"


@dataclass(frozen=True)
class Bar:
    x: int
    y: int
    height: int
    direction: str


@dataclass(frozen=True)
class DayColumn:
    day: date
    inbound: int
    outbound: int
    x: int  # where the day's pair of bars starts
    bars: tuple[Bar, ...]


@dataclass
class Chart:
    """Messages per day, inbound beside outbound, drawn as an inline SVG by the template."""

    columns: list[DayColumn]
    width: int
    height: int
    peak: int
    bar: int = 4  # a bar's width

    def marks(self) -> str:
        """Each day's pair of bars with its tooltip, as SVG. Built here rather than in a template loop: a page of
        50 tenants draws 2,100 of them, which the template language took ~100 ms to render (bench/scale.py)."""
        return mark_safe(
            "".join(
                f"<g><title>{escape(dateformat.format(column.day, 'D j M'))}: {column.inbound} in, "
                f"{column.outbound} out</title>"
                + "".join(
                    f'<rect class="bar-{bar.direction}" x="{bar.x}" y="{bar.y}" width="{self.bar}" '
                    f'height="{bar.height}" />'
                    for bar in column.bars
                )
                + "</g>"
                for column in self.columns
            )
        )


def build_chart(per_day: dict[date, dict[str, int]], days: list[date], *, bar: int, gap: int, height: int) -> Chart:
    peak = max((max(counts.values(), default=0) for counts in per_day.values()), default=0)
    columns = []
    for index, day in enumerate(days):
        counts = per_day.get(day, {})
        x = index * (2 * bar + gap)
        bars = []
        for offset, direction in enumerate((Message.Direction.INBOUND, Message.Direction.OUTBOUND)):
            value = counts.get(direction, 0)
            # A day with any traffic shows at least a sliver, so "few" never looks like "none".
            h = 0 if not value else max(1, round(height * value / peak))
            bars.append(Bar(x + offset * bar, height - h, h, direction))
        columns.append(
            DayColumn(
                day, counts.get(Message.Direction.INBOUND, 0), counts.get(Message.Direction.OUTBOUND, 0), x, tuple(bars)
            )
        )
    return Chart(columns, len(days) * (2 * bar + gap), height, peak, bar)


@dataclass
class TenantRow:
    tenant: Tenant
    log_url: str
    setup_done: int = 0
    setup_trunk: str = ""
    trunk_count: int = 0
    last_inbound_at: datetime | None = None
    last_forward_at: datetime | None = None
    gave_up: int = 0
    retrying: int = 0
    rate_today: Rate = Rate(0, 0)
    rate_7d: Rate = Rate(0, 0)
    chart: Chart | None = None
    alerts: list[Alert] = field(default_factory=list)  # problems: something is refused, lost or late
    todos: list[Alert] = field(default_factory=list)  # work left: a setup to finish, documents to upload


def awaiting_reports(messages: QuerySet, now: datetime) -> QuerySet:
    """Outbound texts Wavix accepted over NO_REPORT_AFTER ago that still have no final delivery report."""
    cutoff = now - NO_REPORT_AFTER
    return messages.filter(
        direction=Message.Direction.OUTBOUND,
        status__in=AWAITING_REPORT,
        created_at__gte=now - NO_REPORT_WINDOW,
        created_at__lt=cutoff,
    ).filter(Q(sent_at__lt=cutoff) | Q(sent_at__isnull=True))


def alert_scopes(user, now: datetime) -> dict[str, QuerySet]:
    """For each alert, the ids of the tenants it concerns: subqueries evaluated once, not per tenant."""
    inbound = access.visible(user, Message).filter(direction=Message.Direction.INBOUND)
    return {
        "not_forwarded": inbound.filter(
            status=Message.Status.NOT_FORWARDED, created_at__gte=not_forwarded_since()[1]
        ).values("tenant_id"),
        "held": inbound.filter(status=Message.Status.HELD).values("tenant_id"),
        "unhealthy": access.visible(user, Trunk)
        .filter(forward_failures__gte=Trunk.UNHEALTHY_AFTER)
        .values("tenant_id"),
        "no_reports": awaiting_reports(access.visible(user, Message), now).values("tenant_id"),
        "rejected": access.visible(user, SenderIDCountry)
        .filter(status=SenderIDCountry.Status.REJECTED)
        .values("tenant_id"),
        "needs_documents": access.visible(user, SenderIDCountry)
        .filter(status=SenderIDCountry.Status.NEEDS_DOCUMENTS)
        .values("tenant_id"),
        "drift": access.visible(user, PhoneNumber).filter(relay_drift=True).values("tenant_id"),
    }


def dashboard_context(request: HttpRequest) -> dict:
    """Everything the dashboard shows for this user's tenants, in a constant number of queries."""
    user, now = request.user, timezone.now()
    today = timezone.localdate()
    chart_days = [today - timedelta(days=n) for n in range(CHART_DAYS - 1, -1, -1)]
    search = request.GET.get("q", "").strip()
    only_alerts = request.GET.get("alerts") == "1"

    scopes = alert_scopes(user, now)
    tenants = access.tenants_for(user).select_related("reseller").order_by("name", "pk")
    if search:
        tenants = tenants.filter(name__icontains=search)
    any_alert = reduce(operator.or_, (Q(pk__in=scope) for scope in scopes.values()))
    alert_totals = tenants.aggregate(
        **{name: Count("pk", filter=Q(pk__in=scope)) for name, scope in scopes.items()},
        any=Count("pk", filter=any_alert),
    )
    if only_alerts:
        tenants = tenants.filter(any_alert)

    # The latest inbound text and the latest successful forward: one index seek per tenant of the page,
    # done as correlated subqueries of the page's own query.
    latest_inbound = (
        access.visible(user, Message)
        .filter(tenant=OuterRef("pk"), direction=Message.Direction.INBOUND)
        .order_by("-created_at")
        .values("created_at")[:1]
    )
    latest_forward = (
        access.visible(user, Delivery)
        .filter(tenant=OuterRef("pk"), status=Delivery.Status.DELIVERED, delivered_at__isnull=False)
        .order_by("-delivered_at")
        .values("delivered_at")[:1]
    )
    paginator = Paginator(
        tenants.annotate(last_inbound_at=Subquery(latest_inbound), last_forward_at=Subquery(latest_forward)),
        TENANTS_PER_PAGE,
    )
    page = paginator.get_page(request.GET.get("page"))
    rows = {
        t.pk: TenantRow(
            tenant=t,
            log_url=message_log_url(tenant__id__exact=t.pk),
            last_inbound_at=t.last_inbound_at,
            last_forward_at=t.last_forward_at,
        )
        for t in page.object_list
    }
    ids = list(rows)

    _add_trunks(user, rows, ids, now)
    _add_deliveries(user, rows, ids)
    _add_traffic(user, rows, ids, chart_days, now)
    _add_alerts(user, rows, ids, now)

    overall: dict[date, dict[str, int]] = defaultdict(dict)
    for day, direction, total in (
        access.visible(user, DailyMessageCount)
        .filter(tenant__in=tenants.values("pk"), day__gte=chart_days[0], day__lt=today)
        .values_list("day", "direction")
        .annotate(total=Sum("count"))
        .order_by()
    ):
        overall[day][direction] = total
    for direction, total in (  # today live, as in each tenant's row
        access.visible(user, Message)
        .filter(tenant__in=tenants.values("pk"), created_at__gte=start_of_today())
        .values_list("direction")
        .annotate(total=Count("pk"))
        .order_by()
    ):
        overall[today][direction] = total

    query = {"q": search} if search else {}
    # The to-do list: problems first, then work left; each tenant's in its own order.
    next_actions = [(row.tenant, alert, "problem") for row in rows.values() for alert in row.alerts]
    next_actions += [(row.tenant, todo, "todo") for row in rows.values() for todo in row.todos]
    return {
        "next_actions": next_actions,
        "rows": list(rows.values()),
        "page": page,
        "paginator": paginator,
        "search": search,
        "only_alerts": only_alerts,
        "alert_totals": alert_totals,
        "unassigned_texts": unassigned_texts(user),
        "chart": build_chart(overall, chart_days, bar=14, gap=10, height=120),
        "chart_days": CHART_DAYS,
        "steps_total": len(SETUP_STEPS),
        "query_string": urlencode(query),
        "alerts_query_string": urlencode({**query, "alerts": "1"}),
        "page_query_string": urlencode({**query, **({"alerts": "1"} if only_alerts else {})}),
    }


def next_setup_step(progress) -> str | None:
    """The first step of the wizard a trunk has not finished, or None when all are done."""
    finished = finished_steps(progress)
    return next((key for key in SETUP_STEPS if key not in finished), None)


def _add_trunks(user, rows: dict[int, TenantRow], ids: list[int], now: datetime) -> None:
    """Setup progress (the best trunk's) and each unfinished setup's next step; 3CX refusing forwards, and the
    portal refusing 3CX's own texts."""
    manages = access.can(user, "change", Trunk)  # a tenant viewer reads the to-do, their reseller does it
    trunks = (
        access.visible(user, Trunk)
        .filter(tenant_id__in=ids)
        .order_by("name")
        .values_list(
            "pk",
            "tenant_id",
            "name",
            "setup_progress",
            "forward_failures",
            "forward_error",
            "provider_refusal",
            "provider_refused_at",
        )
    )
    for pk, tenant_id, name, progress, failures, error, refusal, refused_at in trunks:
        row = rows[tenant_id]
        row.trunk_count += 1
        done = setup_steps_done(progress)
        if done > row.setup_done:
            row.setup_done, row.setup_trunk = done, name
        step = next_setup_step(progress)
        if step is not None:
            number = SETUP_STEPS.index(step) + 1
            row.todos.append(
                Alert(
                    f"Trunk {name}: finish the SMS setup — step {number} of {len(SETUP_STEPS)}, {STEP_TITLES[step]}",
                    reverse("admin:messaging_trunk_setup_step", args=[pk, step]) if manages else "",
                    "Continue setup",
                )
            )
        if refused_at and refused_at > now - PROVIDER_REFUSAL_SHOWN:
            row.alerts.append(
                Alert(
                    f"Trunk {name}: the portal refused a text 3CX sent {_ago(now, refused_at)} ago — {refusal}",
                    reverse("admin:messaging_trunk_setup_step", args=[pk, "verify"]) if manages else "",
                    "See why",
                )
            )
        if failures >= Trunk.UNHEALTHY_AFTER:
            row.alerts.append(
                Alert(
                    f"Trunk {name}: 3CX refused the last {failures} texts ({error or 'no answer'})",
                    reverse("admin:messaging_trunk_change", args=[pk]),
                )
            )
    if manages:
        for tenant_id, row in rows.items():
            if not row.trunk_count:
                row.todos.append(
                    Alert(
                        "No 3CX trunk yet: add one to start the SMS setup",
                        f"{reverse('admin:messaging_trunk_add')}?{urlencode({'tenant': tenant_id})}",
                        "Add a trunk",
                    )
                )


def _ago(now: datetime, then: datetime) -> str:
    minutes = int((now - then).total_seconds() // 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h"


def _add_deliveries(user, rows: dict[int, TenantRow], ids: list[int]) -> None:
    """Forwards to 3CX that gave up (failed, dead-lettered) or are being retried."""
    failing = (
        access.visible(user, Delivery)
        .filter(tenant_id__in=ids)
        .filter(Q(status__in=GAVE_UP) | Q(status=Delivery.Status.PENDING, attempts__gt=0))
        .values_list("tenant_id", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for tenant_id, status, n in failing:
        if status == Delivery.Status.PENDING:
            rows[tenant_id].retrying += n
        else:
            rows[tenant_id].gave_up += n


def start_of_today() -> datetime:
    return timezone.make_aware(datetime.combine(timezone.localdate(), datetime.min.time()))


def _add_traffic(user, rows: dict[int, TenantRow], ids: list[int], chart_days: list[date], now: datetime) -> None:
    """Delivery rates and the chart. Today is counted live (a short index range); the days before come from the
    rollup, which is complete for them. So "7 days" is the 6 days before plus today's live count, and always agrees
    with "today" and with the log (a rate of 24 h live beside 7 days of a 5-minute-old rollup did not)."""
    today = chart_days[-1]
    live: dict[int, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for tenant_id, direction, status, n in (
        access.visible(user, Message)
        .filter(tenant_id__in=ids, created_at__gte=start_of_today())
        .values_list("tenant_id", "direction", "status")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        live[tenant_id][direction][status] = n

    week_start = chart_days[-7]
    week: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    per_day: dict[int, dict[date, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for tenant_id, day, direction, status, count in (
        access.visible(user, DailyMessageCount)
        .filter(tenant_id__in=ids, day__gte=chart_days[0], day__lt=today)
        .values_list("tenant_id", "day", "direction", "status", "count")
    ):
        per_day[tenant_id][day][direction] += count
        if direction == Message.Direction.OUTBOUND and day >= week_start:
            week[tenant_id][status] += count

    for tenant_id, row in rows.items():
        today_counts = live.get(tenant_id, {})
        outbound_today = today_counts.get(Message.Direction.OUTBOUND, {})
        for direction, statuses in today_counts.items():
            per_day[tenant_id][today][direction] = sum(statuses.values())
        for status, n in outbound_today.items():
            week[tenant_id][status] += n
        row.rate_today = delivery_rate(outbound_today)
        row.rate_7d = delivery_rate(week.get(tenant_id, {}))
        row.chart = build_chart(per_day.get(tenant_id, {}), chart_days, bar=4, gap=2, height=28)


def _reasons(counted: list[tuple[str, int]], shown: int = 2) -> str:
    """The commonest reasons, each with its count, and how many other reasons there were."""
    counted = sorted(counted, key=lambda reason_count: (-reason_count[1], reason_count[0]))
    text = "; ".join(f"{reason} ({n})" for reason, n in counted[:shown])
    return text + (f"; {len(counted) - shown} other reason(s)" if len(counted) > shown else "")


def _add_inbound_alerts(user, rows: dict[int, TenantRow], ids: list[int]) -> None:
    """Inbound texts not forwarded since yesterday, and texts held now, each with their reasons: the alert's figure
    is what its link to the message log lists."""
    day, since = not_forwarded_since()
    alerts: dict[str, tuple[str, dict[str, str]]] = {
        Message.Status.NOT_FORWARDED: ("not forwarded since yesterday", {"created_from": day.isoformat()}),
        Message.Status.HELD: ("held, waiting to be forwarded", {}),
    }
    reasons: dict[tuple[int, str], list[tuple[str, int]]] = defaultdict(list)
    for tenant_id, status, reason, n in (
        access.visible(user, Message)
        .filter(tenant_id__in=ids, direction=Message.Direction.INBOUND)
        .filter(Q(status=Message.Status.NOT_FORWARDED, created_at__gte=since) | Q(status=Message.Status.HELD))
        .values_list("tenant_id", "status", "not_forwarded_reason")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        reasons[tenant_id, status].append((reason or "no reason recorded", n))
    for (tenant_id, status), counted in sorted(reasons.items(), key=lambda item: (item[0][0], item[0][1] != "held")):
        what, window = alerts[status]
        total = sum(n for _, n in counted)
        rows[tenant_id].alerts.append(
            Alert(
                f"{total} text{'s' if total != 1 else ''} {what}: {_reasons(counted)}",
                message_log_url(tenant__id__exact=tenant_id, status__exact=status, **window),
            )
        )


def _add_alerts(user, rows: dict[int, TenantRow], ids: list[int], now: datetime) -> None:
    """Texts not forwarded or held, texts without delivery reports, refused sender-ID countries and numbers relaying
    elsewhere."""
    _add_inbound_alerts(user, rows, ids)
    for tenant_id, n, oldest in (
        awaiting_reports(access.visible(user, Message), now)
        .filter(tenant_id__in=ids)
        .values_list("tenant_id")
        .annotate(n=Count("pk"), oldest=Min("created_at"))
        .order_by()
    ):
        hours = int((now - oldest).total_seconds() // 3600)
        rows[tenant_id].alerts.append(
            Alert(
                f"{n} text(s) sent but no delivery report yet, the oldest for {hours} h",
                message_log_url(
                    tenant__id__exact=tenant_id,
                    direction__exact=Message.Direction.OUTBOUND,
                    status__in=",".join(AWAITING_REPORT),
                ),
            )
        )
    uploads = access.can(user, "add", RegistrationDocument)
    for pk, tenant_id, sender, country, status, note in (
        access.visible(user, SenderIDCountry)
        .filter(tenant_id__in=ids, status__in=[SenderIDCountry.Status.REJECTED, SenderIDCountry.Status.NEEDS_DOCUMENTS])
        .order_by("sender__value", "country")
        .values_list("pk", "tenant_id", "sender__value", "country", "status", "note")
    ):
        because = f": {note}" if note else ""
        if status == SenderIDCountry.Status.REJECTED:
            rows[tenant_id].alerts.append(
                Alert(
                    f"Sender ID {sender} rejected for {country}{because}",
                    reverse("admin:messaging_senderidcountry_change", args=[pk]),
                    "See why",
                )
            )
        else:  # a reviewer asked for documents: nothing moves until they are uploaded
            rows[tenant_id].alerts.append(
                Alert(
                    f"Sender ID {sender} for {country}: the reviewer asked for documents{because}",
                    reverse("admin:messaging_senderidcountry_documents", args=[pk]) if uploads else "",
                    "Upload documents",
                )
            )
    for tenant_id, n in (
        access.visible(user, PhoneNumber)
        .filter(tenant_id__in=ids, relay_drift=True)
        .values_list("tenant_id")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        rows[tenant_id].alerts.append(
            Alert(
                f"{n} number(s) relay their texts elsewhere than the portal (drift)",
                reverse("admin:tenants_tenant_change", args=[tenant_id]),
            )
        )


def dashboard_view(request: HttpRequest, admin_site) -> TemplateResponse:
    """Show the dashboard of the user's tenants (the admin pages are listed in the sidebar, as on every page)."""
    context = {
        **admin_site.each_context(request),
        "title": "Dashboard",
        **dashboard_context(request),
    }
    return TemplateResponse(request, "messaging/dashboard.html", context)
