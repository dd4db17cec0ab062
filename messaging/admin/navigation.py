"""The sidebar: the portal's pages grouped by the task a person comes to do, not by database table.

Each entry is shown only to those who may open it — a model's entry asks that model's admin (so tenants.access
decides, as it does for the page itself), a page's entry asks the same rule its view asks. A tenant viewer thus sees
their texts, numbers and registrations, and none of the plumbing (webhook events, deliveries, country rules).
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest
from django.urls import reverse

from messaging.admin import onboarding, usage
from messaging.models import (
    CountryRule,
    Delivery,
    Message,
    OptOut,
    PhoneNumber,
    SenderID,
    SenderIDCountry,
    Trunk,
    WavixAccount,
    WebhookEvent,
)
from messaging.services import senders
from tenants import access
from tenants.models import ApiToken, AuditEvent, Membership, Reseller, Tenant


@dataclass(frozen=True)
class Entry:
    title: str
    icon: str  # a Material Symbols name (unfold ships the font)
    model: type[Model] | None = None  # its list page, shown to whoever its admin lets see the list
    url: str = ""  # or a page by URL name, shown to whoever `allowed` lets in
    query: str = ""
    allowed: Callable[[HttpRequest], bool] | None = None
    badge: Callable[[HttpRequest], int] | None = None  # a count shown beside it when not 0
    badge_variant: str = "info"


def _sends(request: HttpRequest) -> bool:
    return access.can(request.user, "send", Message)


def _reviews(request: HttpRequest) -> bool:
    return access.is_reviewer(request.user)


def _opens_sandbox(request: HttpRequest) -> bool:
    return bool(settings.SANDBOX_ENABLED) and access.may_see_webhook_urls(request.user)


def _everyone(request: HttpRequest) -> bool:
    return True


def failed_deliveries(request: HttpRequest) -> int:
    """Texts 3CX refused or that ran out of retries, among those the user may see: a number to act on."""
    return access.visible(request.user, Delivery).filter(status__in=[Delivery.S.FAILED, Delivery.S.DEAD]).count()


def waiting_on_review(request: HttpRequest) -> int:
    """Registrations waiting on a reviewer's decision."""
    return SenderIDCountry.objects.filter(status=senders.Status.IN_REVIEW).count()


GROUPS: list[tuple[str, list[Entry]]] = [
    ("", [Entry("Dashboard", "space_dashboard", url="admin:dashboard", allowed=_everyone)]),
    (
        "Customers",
        [
            Entry("Tenants", "domain", Tenant),
            Entry("Onboard customers", "group_add", url="admin:onboarding", allowed=onboarding.may_onboard),
            Entry("Trunks", "dns", Trunk),
            Entry("People", "group", Membership),
            Entry("Resellers", "storefront", Reseller),
            Entry("Usage and billing", "receipt_long", url="admin:usage", allowed=usage.may_open),
        ],
    ),
    (
        "Numbers & senders",
        [
            Entry("Numbers", "dialpad", PhoneNumber),
            Entry("Sender IDs", "badge", SenderID),
            Entry("Registrations", "flag", SenderIDCountry),
        ],
    ),
    (
        "Messages",
        [
            Entry("Message log", "forum", Message),
            Entry("Send a message", "send", url="admin:messaging_message_send", allowed=_sends),
            Entry(
                "Failed deliveries",
                "sms_failed",
                Delivery,
                query="status__in=failed,dead",
                badge=failed_deliveries,
                badge_variant="danger",
            ),
            Entry("Opt-outs", "block", OptOut),
        ],
    ),
    (
        "Integrations",
        [
            Entry("Wavix accounts", "hub", WavixAccount),
            Entry("API tokens", "key", ApiToken),
            Entry("Two-factor sign-in", "phonelink_lock", url="two_factor_setup", allowed=_everyone),
            Entry("Wavix sandbox", "science", url="sandbox:index", allowed=_opens_sandbox),
        ],
    ),
    (
        "Platform",
        [
            Entry(
                "Review queue",
                "fact_check",
                url="admin:review_queue",
                allowed=_reviews,
                badge=waiting_on_review,
            ),
            Entry("Country rules", "public", CountryRule),
            Entry("Webhook events", "webhook", WebhookEvent),
            Entry("Audit log", "history", AuditEvent),
        ],
    ),
]


def _model_entry_allowed(site: admin.AdminSite, model: type[Model], request: HttpRequest) -> bool:
    model_admin = site._registry.get(model)
    return model_admin is not None and model_admin.has_module_permission(request)


def sidebar(request: HttpRequest, site: admin.AdminSite) -> list[dict]:
    """The groups and entries this user may open, in unfold's sidebar format; a group with none is left out."""
    groups = []
    for title, entries in GROUPS:
        items = []
        for entry in entries:
            if entry.model is not None:
                if not _model_entry_allowed(site, entry.model, request):
                    continue
                meta = entry.model._meta
                link = reverse(f"{site.name}:{meta.app_label}_{meta.model_name}_changelist")
            else:
                if entry.allowed is None or not entry.allowed(request):
                    continue
                link = reverse(entry.url)
            item: dict[str, object] = {
                "title": entry.title,
                "icon": entry.icon,
                "link": link + (f"?{entry.query}" if entry.query else ""),
            }
            count = entry.badge(request) if entry.badge else 0
            if count:  # an int: unfold shows it as it is (a string would be imported as a callback)
                item.update(badge=count, badge_variant=entry.badge_variant)
            items.append(item)
        if items:
            groups.append({"title": title, "separator": bool(title), "items": items})
    return groups
