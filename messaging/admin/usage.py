"""Usage and billing pages: the month's statement for every tenant a person sees, and a printable statement per
tenant. Figures and prices come from messaging.services.usage (the daily rollup); who sees Wavix's charge and the
reseller's terms from tenants.access.may_see_costs — a tenant viewer sees what they are billed, not the cost under it.
"""

from datetime import date

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import urlencode

from messaging.models import DailyMessageCount
from messaging.services import usage
from tenants import access
from tenants.models import Pricing, Tenant


def urls(site) -> list:
    def wrap(view):
        return site.admin_view(lambda request, **kwargs: view(request, site, **kwargs))

    return [
        path("usage/", wrap(statement_list_view), name="usage"),
        path("usage/<int:pk>/<str:month>/", wrap(statement_view), name="usage_statement"),
    ]


def may_open(request: HttpRequest) -> bool:
    """Usage is read from the rollup: whoever reads its rows opens these pages (their own tenants' rows only)."""
    return access.can(request.user, "view", DailyMessageCount)


def _month_or_error(value: str | None) -> tuple[date, str]:
    try:
        return usage.parse_month(value), ""
    except ValidationError as error:
        return usage.this_month(), " ".join(error.message_dict["month"])


def _month_links(route: str, month: date, *args) -> dict:
    def url(m: date) -> str:
        if args:
            return reverse(route, args=[*args, f"{m:%Y-%m}"])
        return f"{reverse(route)}?{urlencode({'month': f'{m:%Y-%m}'})}"

    after = usage.month_after(month)
    return {
        "previous_url": url(usage.month_before(month)),
        "next_url": url(after) if after <= usage.this_month() else "",
    }


def statement_list_view(request: HttpRequest, site) -> TemplateResponse:
    """Every tenant the person sees, for one month: texts, Wavix's charge (to those who may see it) and the price."""
    if not may_open(request):
        raise Http404("No usage to show.")
    month, error = _month_or_error(request.GET.get("month"))
    rows = usage.month_usage(access.visible(request.user, Tenant), month)
    sees_costs = [access.may_see_costs(request.user, row.tenant) for row in rows]
    resellers = {row.tenant.reseller_id for row in rows}
    context = {
        **site.each_context(request),
        "title": f"Usage and billing, {month:%B %Y}",
        "month": month,
        "month_value": f"{month:%Y-%m}",
        "max_month": f"{usage.this_month():%Y-%m}",
        "error": error,
        "rows": [
            (row, sees, reverse("admin:usage_statement", args=[row.tenant.pk, f"{month:%Y-%m}"]))
            for row, sees in zip(rows, sees_costs, strict=True)
        ],
        "sees_costs": any(sees_costs),
        "several_resellers": len(resellers) > 1,
        "totals": usage.totals_by_currency(rows),
        "sums": {
            "outbound_messages": sum(row.outbound_messages for row in rows),
            "outbound_segments": sum(row.outbound_segments for row in rows),
            "outbound_mms": sum(row.outbound_mms for row in rows),
            "not_sent": sum(row.not_sent.messages for row in rows),
            "inbound_messages": sum(row.inbound_messages for row in rows),
        },
        "wavix_total": sum((row.wavix_charge for row, sees in zip(rows, sees_costs, strict=True) if sees), 0),
        "csv_url": f"{reverse('api-usage')}?{urlencode({'month': f'{month:%Y-%m}', 'format': 'csv'})}",
        "is_open": month >= usage.this_month(),
        **_month_links("admin:usage", month),
    }
    return TemplateResponse(request, "messaging/usage.html", context)


def statement_view(request: HttpRequest, site, pk: int, month: str) -> TemplateResponse:
    """One tenant's statement for one month, laid out to print (or save as PDF from the browser)."""
    tenant = access.visible(request.user, Tenant).select_related("reseller").filter(pk=pk).first()
    if tenant is None or not may_open(request):
        raise Http404("No such tenant.")
    try:
        first_day = usage.parse_month(month)
    except ValidationError as error:
        raise Http404(" ".join(error.message_dict["month"])) from None
    rows = usage.month_usage(Tenant.objects.filter(pk=tenant.pk), first_day)
    if not rows:
        raise Http404(f"{tenant} did not exist yet in {first_day:%B %Y}.")
    row = rows[0]
    sees_costs = access.may_see_costs(request.user, tenant)
    context = {
        **site.each_context(request),
        "title": f"{tenant.name}: statement for {first_day:%B %Y}",
        "tenant": tenant,
        "row": row,
        "month": first_day,
        "period_end": date.fromordinal(usage.month_after(first_day).toordinal() - 1),
        "sees_costs": sees_costs,
        # A price per segment is what the customer pays per segment: theirs to read. A markup names the margin.
        "shows_terms": sees_costs or row.terms.pricing == Pricing.PER_SEGMENT,
        "home_url": reverse("admin:tenant_home", args=[tenant.pk]),
        "list_url": f"{reverse('admin:usage')}?{urlencode({'month': f'{first_day:%Y-%m}'})}",
        **_month_links("admin:usage_statement", first_day, tenant.pk),
    }
    return TemplateResponse(request, "messaging/usage_statement.html", context)
