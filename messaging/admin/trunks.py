"""Trunk pages: a tenant's 3CX trunk, its forwarding health, texts held while SMS is off, and replays."""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import RelatedOnlyFieldListFilter
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from unfold.widgets import UnfoldAdminPasswordWidget

from messaging.admin import logs
from messaging.admin.base import OwnedAdmin, narrow_to_tenant
from messaging.admin.relay import RelayRepairMixin, forwarding_health, relay_status
from messaging.admin.setup import TrunkSetupMixin
from messaging.models import Delivery, Message, PhoneNumber, Trunk
from messaging.services import accounts, forwarding
from tenants import access
from tenants.scoped_admin import ScopedReadOnlyInline


class TrunkForm(forms.ModelForm):
    threecx_webhook_url = forms.CharField(
        label="3CX webhook URL",
        required=False,
        widget=UnfoldAdminPasswordWidget(render_value=False, attrs={"autocomplete": "off"}),
        help_text="From the trunk's SMS tab in 3CX. Stored encrypted; only host and last 4 characters are shown.",
    )

    class Meta:
        model = Trunk
        fields = ["tenant", "name", "pbx_fqdn", "pbx_version", "main_sender", "sms_template", "sms_enabled"]
        fields += ["status_events"]

    def clean_threecx_webhook_url(self) -> str:
        url = self.cleaned_data["threecx_webhook_url"].strip()
        if url:
            try:
                Trunk().set_threecx_webhook_url(url)
            except ValidationError as error:
                raise ValidationError(error.message_dict["threecx_webhook_url"]) from None
        return url


class TrunkAddForm(forms.ModelForm):
    """What a new trunk needs before its setup: the rest is chosen in the wizard, or on the trunk's page."""

    class Meta:
        model = Trunk
        fields = ["tenant", "name", "pbx_fqdn"]


class NumberInline(ScopedReadOnlyInline):
    model = PhoneNumber
    readonly_fields = ["number", "sms_enabled", "status", "relay"]
    fields = list(readonly_fields)

    @admin.display(description="Inbound relay")
    def relay(self, obj):
        return relay_status(obj)


@admin.register(Trunk)
class TrunkAdmin(TrunkSetupMixin, RelayRepairMixin, OwnedAdmin):
    drift_filter = "trunk"
    form = TrunkForm
    list_display = ["name", "tenant", "pbx_fqdn", "main_sender", "sms_enabled", "webhook_hint", "sms_setup"]
    list_filter = ["sms_template", "sms_enabled", ("tenant", RelatedOnlyFieldListFilter)]
    list_select_related = ["tenant", "main_sender"]
    search_fields = ["name", "pbx_fqdn"]
    readonly_fields = ["sms_setup", "webhook_hint", "forwarding", "sms_off_panel", "relay_drift_panel"]
    readonly_fields += ["created_at", "updated_at"]
    inlines = [NumberInline]

    @admin.display(description="Forwarding to 3CX")
    def forwarding(self, obj):
        return forwarding_health(obj)

    @admin.display(description="While SMS is off")
    def sms_off_panel(self, obj):
        """The texts held while SMS is off, and a button to stop Wavix sending the numbers' texts here at all."""
        held = Message.objects.filter(trunk=obj, status=Message.Status.HELD).count()
        log = logs.message_log_url(trunk__id__exact=obj.pk, status__exact=Message.Status.HELD)
        panel = format_html(
            'Texts to its numbers are held, not forwarded: <a href="{}">{} held</a>. They go to 3CX in the order '
            "they came when SMS is switched on again.",
            log,
            held,
        )
        relaying = accounts.numbers_relaying_to_portal(obj)
        if not relaying:
            return format_html("{}<br>Wavix sends the texts of none of its numbers to the portal.", panel)
        fallback = ""
        if any(n.account.tenant_id for n in relaying):
            fallback = mark_safe(
                "<br><small>On a tenant's own Wavix account the account's default SMS endpoint is the portal: Wavix "
                "sends an un-pointed number's texts there, so they keep arriving here (and are held).</small>"
            )
        url = reverse("admin:messaging_trunk_unpoint_relay", args=[obj.pk])
        button = ""
        if getattr(obj, "may_change", False):
            button = format_html(
                '<br><button type="submit" class="button" formaction="{}">Un-point them at Wavix</button>', url
            )
        return format_html(
            "{}<br>Wavix still sends the texts of {} to the portal.{}{}",
            panel,
            ", ".join(n.number for n in relaying),
            button,
            fallback,
        )

    def get_urls(self):
        replay = self.admin_site.admin_view(self.replay_since_view)
        unpoint = self.admin_site.admin_view(self.unpoint_relay_view)
        return [
            path("<int:object_id>/replay-since/", replay, name="messaging_trunk_replay_since"),
            path("<int:object_id>/unpoint-relay/", unpoint, name="messaging_trunk_unpoint_relay"),
            *super().get_urls(),
        ]

    def get_object(self, request, object_id, from_field=None):
        trunk = super().get_object(request, object_id, from_field)
        trunk.may_change = self.has_change_permission(request, trunk)  # the panels offer buttons only to those
        return trunk

    def unpoint_relay_view(self, request, object_id: int):
        """Ask Wavix to stop sending a trunk's texts to the portal while its SMS is off (the numbers' relay URL)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        trunk = self.get_object(request, str(object_id))  # 404 for another reseller's trunk
        if not self.has_change_permission(request, trunk):
            raise PermissionDenied
        try:
            numbers = accounts.trunk_numbers_unpoint(actor=request.user, trunk=trunk)
        except ValidationError as refusal:
            self.message_user(request, " ".join(refusal.messages), messages.ERROR)
        else:
            if numbers:
                self.message_user(
                    request,
                    f"Un-pointing {', '.join(n.number for n in numbers)} at Wavix: in a few seconds Wavix stops "
                    "sending their texts to the portal. Switching SMS on points them back.",
                )
            else:
                self.message_user(request, "Wavix sends the texts of none of this trunk's numbers to the portal.")
        return redirect(reverse("admin:messaging_trunk_change", args=[trunk.pk]))

    def replay_since_view(self, request, object_id: int):
        """Replay every failed or dead-lettered delivery of this trunk since a time ("3CX was down from 14:00")."""
        trunk = self.get_object(request, str(object_id))  # 404 for another reseller's trunk
        if not access.can(request.user, "replay", Delivery):
            raise PermissionDenied
        failed = Delivery.objects.filter(trunk=trunk, status__in=[Delivery.Status.FAILED, Delivery.Status.DEAD])
        since, error = None, None
        if request.method == "POST":
            since = parse_datetime(request.POST.get("since", ""))
            if since is None:
                error = "Enter when the trouble started, as YYYY-MM-DD HH:MM."
            else:
                since = timezone.make_aware(since) if timezone.is_naive(since) else since
                count = forwarding.delivery_replay(actor=request.user, deliveries=failed.filter(created_at__gte=since))
                self.message_user(request, f"Replaying {count} message(s) to {trunk}.")
                return redirect(reverse("admin:messaging_trunk_change", args=[trunk.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Replay failed texts to {trunk}",
            "trunk": trunk,
            "failed": failed.select_related("message").order_by("created_at")[:50],
            "failed_count": failed.count(),
            "error": error,
            "default_since": (timezone.localtime() - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M"),
        }
        return TemplateResponse(request, "messaging/replay_since.html", context)

    @admin.display(description="Current 3CX webhook URL")
    def webhook_hint(self, obj) -> str:
        return obj.threecx_webhook_url_hint or "—"

    def get_fields(self, request, obj=None):
        if obj is None:
            return list(TrunkAddForm._meta.fields or [])
        fields = ["tenant", "name", "pbx_fqdn", "pbx_version", "main_sender", "sms_template", "sms_enabled"]
        fields += ["status_events"]
        fields += ["threecx_webhook_url"] if self.has_change_permission(request, obj) else []
        shown = self.get_readonly_fields(request, obj)
        return fields + [f for f in shown if f not in fields and (f != "sms_off_panel" or not obj.sms_enabled)]

    def get_readonly_fields(self, request, obj=None):
        # A trunk stays with its tenant: its numbers, sender ID, texts and keys are that tenant's.
        return [*super().get_readonly_fields(request, obj), "tenant"] if obj else []

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = TrunkAddForm
        form = super().get_form(request, obj, **kwargs)
        if obj is not None and "main_sender" in form.base_fields:
            narrow_to_tenant(form.base_fields["main_sender"], obj.tenant, "sender IDs")
        return form

    def save_model(self, request, obj, form, change) -> None:
        accounts.trunk_save(
            actor=request.user, trunk=obj, threecx_webhook_url=form.cleaned_data.get("threecx_webhook_url") or None
        )
