"""Onboarding many customers from a CSV (messaging.services.onboarding): upload, see row by row what would be created
and what is wrong, then create them all at once — or fix the file and check it again. The file travels back with
the confirmation in the form, and is checked again then: what is created is what was checked, as of that moment."""

from typing import cast

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse

from messaging.services import onboarding
from tenants import access
from tenants.models import Reseller, Tenant

FILE_FIELD = "customers"


def urls(site) -> list:
    def wrap(view):
        return site.admin_view(lambda request, **kwargs: view(request, site, **kwargs))

    return [
        path("onboarding/", wrap(onboarding_view), name="onboarding"),
        path("onboarding/template.csv", wrap(template_view), name="onboarding_template"),
    ]


def may_onboard(request: HttpRequest) -> bool:
    """Those who add tenants (the page then lists the resellers they may add them to)."""
    return access.can(request.user, "add", Tenant)


def template_view(request: HttpRequest, site) -> HttpResponse:
    """The CSV to start from: the columns and two example customers."""
    if not may_onboard(request):
        raise PermissionDenied
    response = HttpResponse(onboarding.template_csv(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="customers-template.csv"'
    return response


def onboarding_view(request: HttpRequest, site) -> TemplateResponse:
    """Upload → check (nothing written) → create everything in one go, or nothing."""
    if not may_onboard(request):
        raise PermissionDenied
    resellers = list(access.resellers_for(request.user, "add").order_by("name"))
    context = {
        **site.each_context(request),
        "title": "Onboard customers from a CSV",
        "resellers": resellers,
        "columns": onboarding.COLUMNS,
        "required": onboarding.REQUIRED,
        "max_rows": onboarding.MAX_ROWS,
        "file_field": FILE_FIELD,
    }
    if request.method != "POST":
        return TemplateResponse(request, "messaging/onboarding.html", context)

    reseller = _chosen_reseller(request, resellers)
    upload = request.FILES.get(FILE_FIELD)
    if upload is not None:
        content, source = upload.read(onboarding.MAX_BYTES + 1), upload.name or ""
    else:
        content, source = request.POST.get("content", ""), request.POST.get("source", "")
    context |= {"reseller": reseller, "source": source}
    if reseller is None:
        context["error"] = "Choose the reseller these customers belong to."
        return TemplateResponse(request, "messaging/onboarding.html", context)
    if not content:
        context["error"] = "Choose the CSV file to upload (start from the template)."
        return TemplateResponse(request, "messaging/onboarding.html", context)

    actor = cast(User, request.user)  # admin_view lets no anonymous request in
    if request.POST.get("action") == "create":
        check = onboarding.onboarding_create(content, reseller=reseller, actor=actor, source=source)
        if check.ok:
            context |= {
                "title": f"{len(check.plans)} customers created",
                "created": [
                    (plan, reverse("admin:messaging_trunk_setup", args=[plan.trunk.pk]))
                    for plan in check.plans
                    if plan.trunk
                ],
            }
            return TemplateResponse(request, "messaging/onboarding_done.html", context)
    else:
        check = onboarding.onboarding_check(content, reseller=reseller, user=actor)
    text = content.decode("utf-8-sig", errors="replace") if isinstance(content, bytes) else content
    context |= {"check": check, "content": text}
    return TemplateResponse(request, "messaging/onboarding.html", context)


def _chosen_reseller(request: HttpRequest, resellers: list[Reseller]) -> Reseller | None:
    if len(resellers) == 1:
        return resellers[0]
    wanted = request.POST.get("reseller", "")
    return next((r for r in resellers if str(r.pk) == wanted), None)
