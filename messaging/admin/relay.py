"""Inbound relay and forwarding health on trunk, number and tenant pages, and the repair of relay drift."""

from datetime import timedelta

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Min
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from messaging import dispatch
from messaging.admin.base import AdminMixin
from messaging.models import Delivery, Message, PhoneNumber, Trunk, masked_url
from tenants import access


def relay_summary(tenant) -> str:
    """The tenant's inbound texts over the last day, and how long the oldest one has been waiting."""
    since = timezone.now() - timedelta(hours=24)
    counts = dict(
        Message.objects.filter(tenant=tenant, direction=Message.Direction.INBOUND, created_at__gte=since)
        .values_list("status")
        .annotate(n=Count("id"))
    )
    waiting = Delivery.objects.filter(tenant=tenant, status=Delivery.Status.PENDING).aggregate(oldest=Min("created_at"))
    oldest = ""
    if waiting["oldest"]:
        oldest = f" · oldest waiting {int((timezone.now() - waiting['oldest']).total_seconds() // 60)} min"
    received = sum(counts.values())
    return (
        f"Last 24 h: {received} received · {counts.get('forwarded', 0)} forwarded · "
        f"{counts.get('failed', 0)} failed · {counts.get('held', 0)} held · "
        f"{counts.get('not_forwarded', 0)} not forwarded{oldest}"
    )


def forwarding_health(trunk: Trunk):
    """Whether the trunk's 3CX takes its texts, the last error in words, and what waits or failed."""
    waiting = Delivery.objects.filter(trunk=trunk, status=Delivery.Status.PENDING).count()
    failed = Delivery.objects.filter(trunk=trunk, status__in=[Delivery.Status.FAILED, Delivery.Status.DEAD]).count()
    counts = f"{waiting} waiting, {failed} failed"
    replay = ""
    if failed and trunk.pk:
        url = reverse("admin:messaging_trunk_replay_since", args=[trunk.pk])
        replay = format_html(' <a class="button" href="{}">Replay failed texts…</a>', url)
    if trunk.forward_checked_at is None:
        return format_html("Nothing forwarded yet ({}){}", counts, replay)
    if trunk.is_healthy:
        return format_html("Healthy: 3CX took the last text ({}){}", counts, replay)
    return format_html(
        '<strong style="color:var(--error-fg)">Unhealthy: {} failures in a row — {}</strong> ({}){}',
        trunk.forward_failures,
        trunk.forward_error,
        counts,
        replay,
    )


def relay_status(number: PhoneNumber):
    if number.relay_drift:
        # Lists show this to everyone who opens them: masked. The whole URL is on the number's own page, for those
        # who may see it.
        shown = masked_url(number.sms_relay_url) or "(none)"
        return format_html('<strong style="color:var(--error-fg)">drift: {}</strong>', shown)
    if number.trunk_id and number.trunk is not None and number.trunk.sms_enabled and number.sms_relay_url:
        return "→ portal"
    return "—"


def queue_relay_repair(numbers) -> str:
    """Queue a repair of the drifted numbers among these; returns what to tell the user."""
    ids = list(numbers.filter(relay_drift=True).values_list("pk", flat=True))
    if not ids:
        return "No number here points away from the portal."
    dispatch.RELAY_REPAIR.soon(ids)
    return f"Repair queued for {len(ids)} number(s): they will point at the portal again in a few seconds."


class RelayRepairMixin(AdminMixin):
    """A "Repair" button on a change page for the drifted numbers of the object (a trunk or a tenant)."""

    drift_filter: str  # lookup from PhoneNumber to the object

    def drifted_numbers(self, obj):
        return PhoneNumber.objects.filter(**{self.drift_filter: obj}, relay_drift=True).select_related("trunk")

    def drift_panel_for(self, request, obj) -> str:
        """Which drift panel this person gets. Where a drifted number relays now is someone else's URL, not the
        portal's secret; it may still be another system's secret, so it is shown whole only to those who may see
        the row's webhook URLs — who are also those who repair."""
        return "relay_drift_panel" if access.may_see_webhook_urls(request.user, obj) else "relay_drift_masked"

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return [self.drift_panel_for(request, obj) if f == "relay_drift_panel" else f for f in fields]

    @admin.display(description="Inbound relay")
    def relay_drift_panel(self, obj):
        return self._drift_panel(obj, whole_urls=True)

    @admin.display(description="Inbound relay")
    def relay_drift_masked(self, obj):
        return self._drift_panel(obj, whole_urls=False)

    def _drift_panel(self, obj, *, whole_urls: bool):
        drifted = list(self.drifted_numbers(obj)) if obj and obj.pk else []
        if not drifted:
            return "Every number of an SMS-enabled trunk sends its texts to the portal."
        rows = format_html_join(
            "",
            "<li>{} (trunk {}) now relays to <code>{}</code></li>",
            ((n.number, n.trunk, n.sms_relay_url if whole_urls else masked_url(n.sms_relay_url)) for n in drifted),
        )
        heading = format_html(
            '<strong style="color:var(--error-fg)">{} number(s) no longer send their texts to the portal:</strong>'
            "<ul>{}</ul>",
            len(drifted),
            rows,
        )
        if not whole_urls:
            return heading
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_repair_relay", args=[obj.pk])
        return format_html(
            '{}<button type="submit" class="button" formaction="{}">Repair: point them at the portal</button>',
            heading,
            url,
        )

    def get_urls(self):
        repair = self.admin_site.admin_view(self.repair_relay_view)
        name = f"{self.opts.app_label}_{self.opts.model_name}_repair_relay"
        return [path("<int:object_id>/repair-relay/", repair, name=name), *super().get_urls()]

    def repair_relay_view(self, request, object_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = self.get_object(request, str(object_id))  # 404 for another reseller's object
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        self.message_user(request, queue_relay_repair(PhoneNumber.objects.filter(**{self.drift_filter: obj})))
        return redirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk]))
