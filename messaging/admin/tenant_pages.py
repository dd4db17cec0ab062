"""A tenant's home page and its conversations: what a reseller (or the tenant's own viewer) would rather look at
than read in lists.

- home: each trunk with a red / amber / green health badge and its setup as a stepper; the numbers; the registration
  grid (sender ID × country, coloured by status); recent conversations; usage this month; the delivery-rate trend.
- conversation: one remote number's texts with the tenant, both directions, as a chat: each text's status, and for
  an inbound text 3CX's answer to the portal's forward.

Every row is read through tenants.access, so another reseller's tenant answers 404 like one that does not exist.
"""

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import Count, Q
from django.http import Http404, HttpRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from messaging.admin.dashboard import (
    OUTBOUND_FINAL,
    PROVIDER_REFUSAL_SHOWN,
    SETUP_STEPS,
    STEP_TITLES,
    finished_steps,
    start_of_today,
)
from messaging.admin.logs import message_log_url
from messaging.models import DailyMessageCount, Delivery, Message, PhoneNumber, SenderIDCountry, Trunk
from messaging.services import usage
from tenants import access
from tenants.models import Tenant

TREND_DAYS = 30
RECENT_CONVERSATIONS = 8
# Recent conversations are found among this many latest texts: a bounded read however busy the tenant is.
RECENT_SCAN = 300
THREAD_LIMIT = 200


def urls(site) -> list:
    def wrap(view):
        return site.admin_view(lambda request, **kwargs: view(request, site, **kwargs))

    return [
        path("customers/<int:pk>/", wrap(home_view), name="tenant_home"),
        path("customers/<int:pk>/conversations/<str:number>/", wrap(conversation_view), name="conversation"),
    ]


def _tenant_or_404(request: HttpRequest, pk: int) -> Tenant:
    tenant = access.visible(request.user, Tenant).select_related("reseller").filter(pk=pk).first()
    if tenant is None:
        raise Http404("No such tenant.")
    return tenant


# --------------------------------------------------------------------------------------------------------------
# Trunks: health and setup
# --------------------------------------------------------------------------------------------------------------


@dataclass
class StepMark:
    number: int
    key: str
    title: str
    done: bool
    url: str


@dataclass
class TrunkCard:
    trunk: Trunk
    health: str  # "green", "amber" or "red"
    reasons: list[str]
    steps: list[StepMark]
    waiting: int = 0
    failed: int = 0

    @property
    def steps_done(self) -> int:
        return sum(step.done for step in self.steps)

    @property
    def health_label(self) -> str:
        return {"green": "working", "amber": "needs attention", "red": "not working"}[self.health]


def trunk_health(trunk: Trunk, *, waiting: int, failed: int, drift: int, now: datetime) -> tuple[str, list[str]]:
    """Red when texts do not get through (3CX refuses forwards, numbers relay elsewhere, SMS off after setup, the
    portal refused 3CX's last text), amber when something is unfinished or retrying, green otherwise; with why."""
    red: list[str] = []
    amber: list[str] = []
    done = (
        set((trunk.setup_progress or {}).get("steps_done") or []) if isinstance(trunk.setup_progress, dict) else set()
    )
    if trunk.forward_failures >= Trunk.UNHEALTHY_AFTER:
        red.append(f"3CX refused the last {trunk.forward_failures} texts ({trunk.forward_error or 'no answer'})")
    if drift:
        red.append(f"{drift} number(s) send their texts elsewhere than the portal")
    if failed:
        red.append(f"{failed} text(s) could not be forwarded to 3CX")
    if trunk.provider_refused_at and trunk.provider_refused_at > now - PROVIDER_REFUSAL_SHOWN:
        red.append(f"the portal refused a text 3CX sent: {trunk.provider_refusal}")
    if not trunk.sms_enabled:
        (red if "enable" in done else amber).append("SMS is off on this trunk")
    missing = [key for key in SETUP_STEPS if key not in done]
    if missing:
        amber.append(f"setup: step {SETUP_STEPS.index(missing[0]) + 1} of {len(SETUP_STEPS)} to do")
    if waiting:
        amber.append(f"{waiting} text(s) waiting to be forwarded")
    if 0 < trunk.forward_failures < Trunk.UNHEALTHY_AFTER:
        amber.append(f"3CX refused the last {trunk.forward_failures} text(s)")
    if red:
        return "red", red + amber
    if amber:
        return "amber", amber
    return "green", ["texts go both ways"]


def trunk_cards(user, tenant: Tenant, now: datetime) -> list[TrunkCard]:
    trunks = list(access.visible(user, Trunk).filter(tenant=tenant).order_by("name"))
    ids = [t.pk for t in trunks]
    deliveries: dict[tuple[int, str], int] = {
        (trunk_id, status): n
        for trunk_id, status, n in access.visible(user, Delivery)
        .filter(trunk_id__in=ids, status__in=[Delivery.S.PENDING, Delivery.S.FAILED, Delivery.S.DEAD])
        .values_list("trunk_id", "status")
        .annotate(n=Count("pk"))
        .order_by()
    }
    drift = dict(
        access.visible(user, PhoneNumber)
        .filter(trunk_id__in=ids, relay_drift=True)
        .values_list("trunk_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    manages = access.can(user, "change", Trunk)
    cards = []
    for trunk in trunks:
        done = finished_steps(trunk.setup_progress)
        steps = [
            StepMark(
                number,
                key,
                STEP_TITLES[key],
                key in done,
                reverse("admin:messaging_trunk_setup_step", args=[trunk.pk, key]) if manages else "",
            )
            for number, key in enumerate(SETUP_STEPS, start=1)
        ]
        waiting = deliveries.get((trunk.pk, Delivery.S.PENDING), 0)
        failed = deliveries.get((trunk.pk, Delivery.S.FAILED), 0) + deliveries.get((trunk.pk, Delivery.S.DEAD), 0)
        health, reasons = trunk_health(trunk, waiting=waiting, failed=failed, drift=drift.get(trunk.pk, 0), now=now)
        cards.append(TrunkCard(trunk, health, reasons, steps, waiting, failed))
    return cards


# --------------------------------------------------------------------------------------------------------------
# The registration grid
# --------------------------------------------------------------------------------------------------------------

# Each registration status as the grid colours it: green goes, amber waits (on a reviewer, Wavix or the reseller),
# red does not go.
GRID_COLOURS = {
    SenderIDCountry.Status.ALLOWLISTED: "green",
    SenderIDCountry.Status.APPROVED: "green",
    SenderIDCountry.Status.REQUESTED: "amber",
    SenderIDCountry.Status.NEEDS_DOCUMENTS: "amber",
    SenderIDCountry.Status.IN_REVIEW: "amber",
    SenderIDCountry.Status.REJECTED: "red",
    SenderIDCountry.Status.NOT_SUPPORTED: "red",
}


@dataclass
class GridCell:
    status: str = ""
    label: str = "not registered"
    colour: str = "none"
    url: str = ""


@dataclass
class Grid:
    countries: list[str]
    rows: list[tuple[str, list[GridCell]]] = field(default_factory=list)


def registration_grid(user, tenant: Tenant) -> Grid:
    registrations = list(
        access.visible(user, SenderIDCountry)
        .filter(tenant=tenant)
        .select_related("sender")
        .order_by("sender__value", "country")
    )
    countries = sorted({r.country for r in registrations})
    by_sender: dict[str, dict[str, SenderIDCountry]] = defaultdict(dict)
    for registration in registrations:
        by_sender[registration.sender.value][registration.country] = registration
    grid = Grid(countries)
    for sender, cells in by_sender.items():
        row = []
        for country in countries:
            cell = cells.get(country)
            if cell is None:
                row.append(GridCell())
                continue
            row.append(
                GridCell(
                    cell.status,
                    cell.get_status_display(),
                    GRID_COLOURS.get(SenderIDCountry.Status(cell.status), "amber"),
                    reverse("admin:messaging_senderidcountry_change", args=[cell.pk]),
                )
            )
        grid.rows.append((sender, row))
    return grid


# --------------------------------------------------------------------------------------------------------------
# Conversations, usage and the trend
# --------------------------------------------------------------------------------------------------------------


def remote_number(message: Message) -> str:
    return message.from_number if message.direction == Message.Direction.INBOUND else message.to_number


@dataclass
class ConversationSummary:
    number: str
    last: Message
    texts: int
    url: str


def recent_conversations(user, tenant: Tenant) -> list[ConversationSummary]:
    latest = list(access.visible(user, Message).filter(tenant=tenant).order_by("-created_at", "-id")[:RECENT_SCAN])
    seen: dict[str, ConversationSummary] = {}
    for message in latest:
        number = remote_number(message)
        if number in seen:
            seen[number].texts += 1
        elif len(seen) < RECENT_CONVERSATIONS:
            url = reverse("admin:conversation", args=[tenant.pk, number])
            seen[number] = ConversationSummary(number, message, 1, url)
    return list(seen.values())


@dataclass
class MonthSoFar:
    """This month on the tenant's page: its usage (from the rollup, as its statement) and the delivery rate."""

    figures: usage.TenantUsage
    delivered: int
    final: int
    statement_url: str

    @property
    def rate(self) -> int | None:
        return round(100 * self.delivered / self.final) if self.final else None


def month_so_far(tenant: Tenant, trend: dict) -> MonthSoFar:
    """This month's usage and price, and its delivery rate added up from the trend's days of this month."""
    month = usage.this_month()
    row = usage.month_usage(Tenant.objects.filter(pk=tenant.pk), month)[0]
    days = [timezone.localdate() - timedelta(days=n) for n in range(TREND_DAYS - 1, -1, -1)]
    this_month = [i for i, day in enumerate(days) if day >= month]
    return MonthSoFar(
        row,
        sum(trend["delivered"][i] for i in this_month),
        sum(trend["final"][i] for i in this_month),
        reverse("admin:usage_statement", args=[tenant.pk, f"{month:%Y-%m}"]),
    )


def delivery_trend(user, tenant: Tenant) -> dict:
    """Per day over TREND_DAYS: outbound texts with a final outcome, how many were delivered, and the rate. Earlier
    days from the rollup, today live — as the dashboard counts them."""
    today = timezone.localdate()
    days = [today - timedelta(days=n) for n in range(TREND_DAYS - 1, -1, -1)]
    delivered: dict[date, int] = defaultdict(int)
    final: dict[date, int] = defaultdict(int)
    for day, status, count in (
        access.visible(user, DailyMessageCount)
        .filter(tenant=tenant, direction=Message.Direction.OUTBOUND, day__gte=days[0], day__lt=today)
        .values_list("day", "status", "count")
    ):
        if status in OUTBOUND_FINAL:
            final[day] += count
            delivered[day] += count if status == Message.Status.DELIVERED else 0
    for status, count in (
        access.visible(user, Message)
        .filter(tenant=tenant, direction=Message.Direction.OUTBOUND, created_at__gte=start_of_today())
        .values_list("status")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        if status in OUTBOUND_FINAL:
            final[today] += count
            delivered[today] += count if status == Message.Status.DELIVERED else 0
    return {
        "labels": [day.strftime("%-d %b") for day in days],
        "final": [final[day] for day in days],
        "delivered": [delivered[day] for day in days],
        "rate": [round(100 * delivered[day] / final[day]) if final[day] else None for day in days],
    }


# --------------------------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------------------------


def home_view(request: HttpRequest, site, pk: int) -> TemplateResponse:
    """Show one tenant at a glance: trunks, numbers, registrations, conversations, usage and the trend."""
    tenant = _tenant_or_404(request, pk)
    user, now = request.user, timezone.now()
    trend = delivery_trend(user, tenant)
    context = {
        **site.each_context(request),
        "title": tenant.name,
        "tenant": tenant,
        "trunks": trunk_cards(user, tenant, now),
        "numbers": access.visible(user, PhoneNumber).filter(tenant=tenant).select_related("trunk").order_by("number"),
        "grid": registration_grid(user, tenant),
        "conversations": recent_conversations(user, tenant),
        "month": month_so_far(tenant, trend),
        "sees_costs": access.may_see_costs(user, tenant),
        "trend": trend,
        "trend_json": json.dumps(trend),
        "trend_days": TREND_DAYS,
        "log_url": message_log_url(tenant__id__exact=tenant.pk),
        "may_change_tenant": access.can(user, "change", tenant),
        "steps_total": len(SETUP_STEPS),
    }
    return TemplateResponse(request, "messaging/tenant_home.html", context)


@dataclass
class Bubble:
    message: Message
    inbound: bool
    answer: str = ""  # 3CX's answer to the forward of an inbound text
    answer_ok: bool | None = None


def conversation_view(request: HttpRequest, site, pk: int, number: str) -> TemplateResponse:
    """Show one remote number's texts with the tenant, oldest first, as a chat."""
    tenant = _tenant_or_404(request, pk)
    texts = access.visible(request.user, Message).filter(tenant=tenant)
    texts = texts.filter(
        Q(direction=Message.Direction.INBOUND, from_number=number)
        | Q(direction=Message.Direction.OUTBOUND, to_number=number)
    )
    latest = list(texts.select_related("trunk").order_by("-created_at", "-id")[:THREAD_LIMIT])
    if not latest:
        raise Http404("No texts with this number.")
    answers: dict[int, Delivery] = {}
    for forward in access.visible(request.user, Delivery).filter(
        message_id__in=[m.pk for m in latest if m.direction == Message.Direction.INBOUND], event=""
    ):
        answers[forward.message_id] = forward
    bubbles = []
    for message in reversed(latest):
        bubble = Bubble(message, message.direction == Message.Direction.INBOUND)
        delivery = answers.get(message.pk)
        if delivery is not None and delivery.last_status_code:
            bubble.answer = f"3CX answered HTTP {delivery.last_status_code}"
            bubble.answer_ok = 200 <= delivery.last_status_code < 300
        elif delivery is not None and delivery.last_error:
            bubble.answer, bubble.answer_ok = f"3CX did not answer: {delivery.last_error}", False
        elif delivery is not None:
            bubble.answer = "waiting to be forwarded to 3CX"
        bubbles.append(bubble)
    context = {
        **site.each_context(request),
        "title": f"{tenant.name} and {number}",
        "tenant": tenant,
        "number": number,
        "bubbles": bubbles,
        "capped": len(latest) == THREAD_LIMIT,
        "thread_limit": THREAD_LIMIT,
        "log_url": message_log_url(tenant__id__exact=tenant.pk, q=number),
    }
    return TemplateResponse(request, "messaging/conversation.html", context)
