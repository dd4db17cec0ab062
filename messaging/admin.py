import json
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import RelatedOnlyFieldListFilter
from django.contrib.admin.options import IncorrectLookupParameters, csrf_protect_m
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Min
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from messaging import audit_log, dispatch, message_log
from messaging.admin_review import RegistrationPagesMixin
from messaging.admin_setup import TrunkSetupMixin
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
    masked_url,
)
from messaging.services import accounts, forwarding, outbound, senders
from messaging.wavix import explain
from portal.admin import ScopedAdmin, ScopedReadOnlyInline, show_errors
from tenants import access
from tenants.models import AuditEvent, Reseller


class CallsWavixAdmin:
    """For admins whose forms ask Wavix while validating (a key check, a registration, a deletion).

    Django runs add/change/delete views inside one transaction; a network wait inside it would hold its locks
    for the whole call (on SQLite, it blocks every other writer, the sandbox included). These views run outside
    a transaction instead; the services they call make their own writes atomic.
    """

    @csrf_protect_m
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return self._changeform_view(request, object_id, form_url, extra_context)

    @csrf_protect_m
    def delete_view(self, request, object_id, extra_context=None):
        return self._delete_view(request, object_id, extra_context)


class OwnedAdmin(ScopedAdmin):
    """Foreign-key choices for resellers follow who may create rows under them (operators included)."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.remote_field.model is Reseller:
            kwargs["queryset"] = access.resellers_for(request.user, "add")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        for field, queryset in (
            ("reseller", access.resellers_for(request.user, "add")),
            ("tenant", access.tenants_for(request.user, "add")),
        ):
            choices = list(queryset.values_list("pk", flat=True)[:2])
            if len(choices) == 1:
                initial.setdefault(field, choices[0])
        return initial


@admin.register(CountryRule)
class CountryRuleAdmin(ScopedAdmin):
    list_display = ["country", "name", "alphanumeric", "numeric", "note"]
    list_filter = ["alphanumeric", "numeric"]
    search_fields = ["country", "name"]
    list_per_page = 300

    def get_readonly_fields(self, request, obj=None):
        return ["country"] if obj else []  # a changed primary key would save a copy, not rename


# --------------------------------------------------------------------------------------------------------------
# Wavix accounts and numbers
# --------------------------------------------------------------------------------------------------------------


class WavixAccountForm(forms.ModelForm):
    api_key = forms.CharField(
        label="Wavix API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stored encrypted and never shown again; only its last 4 characters are displayed.",
    )

    class Meta:
        model = WavixAccount
        fields = ["reseller", "tenant", "name", "api_key", "send_rate_per_second", "wavix_sub_account_id"]

    def clean_api_key(self) -> str:
        key = self.cleaned_data["api_key"]
        if not key and not self.instance.has_api_key:
            raise ValidationError("Paste the account's Wavix API key.")
        if key:
            try:
                accounts.wavix_key_check(key)  # its shape, then Wavix: a refused key never reaches the database
            except ValidationError as error:
                raise ValidationError(error.message_dict["api_key"]) from None
        return key


# The account's own webhook URLs: on its page for those who may see them (the reseller pastes them into Wavix).
WEBHOOK_URL_FIELDS = frozenset({"inbound_webhook_url", "dlr_webhook_url"})


@admin.register(WavixAccount)
class WavixAccountAdmin(CallsWavixAdmin, OwnedAdmin):
    form = WavixAccountForm
    list_display = ["name", "reseller", "tenant", "key_display", "sync_display", "wavix_sub_account_id", "created_at"]
    list_filter = [("reseller", RelatedOnlyFieldListFilter), ("tenant", RelatedOnlyFieldListFilter), "sync_state"]
    list_select_related = ["reseller", "tenant"]
    search_fields = ["name"]
    readonly_fields = [
        "key_display",
        "api_key_set_at",
        "sync_display",
        "synced_at",
        "inbound_webhook_url",
        "dlr_webhook_url",
    ]
    actions = ["sync_now", "check_now", "rotate_webhook_secret"]

    @admin.display(description="API key")
    def key_display(self, obj) -> str:
        return f"••••{obj.api_key_last4}" if obj.api_key_last4 else "—"

    @admin.display(description="Numbers from Wavix", ordering="sync_state")
    def sync_display(self, obj):
        text = f"{obj.get_sync_state_display()}: {obj.sync_note}" if obj.sync_note else obj.get_sync_state_display()
        if obj.sync_state == WavixAccount.SyncState.RUNNING:
            # Reload while the sync runs, so its progress can be watched.
            return format_html("{} <script>setTimeout(() => location.reload(), 3000)</script>", text)
        return text

    @admin.action(description="Sync with Wavix now: numbers (pointing SMS trunks' numbers at the portal), sender IDs")
    def sync_now(self, request, queryset) -> None:
        for account in queryset:
            accounts.wavix_check_soon(account, wire=True)
        self.message_user(request, f"Sync queued for {queryset.count()} account(s); the status column shows progress.")

    @admin.action(description="Check with Wavix now: report relay drift and new allow-listings, re-point nothing")
    def check_now(self, request, queryset) -> None:
        for account in queryset:
            accounts.wavix_check_soon(account, wire=False)
        self.message_user(request, f"Check queued for {queryset.count()} account(s).")

    @admin.action(description="Rotate the webhook secret (the old URLs keep working for 24 hours)")
    def rotate_webhook_secret(self, request, queryset) -> None:
        for account in queryset:
            accounts.webhook_secret_rotate(actor=request.user, account=account)
        self.message_user(request, "New webhook URLs issued; Wavix is being pointed at them.")

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not access.can(request.user, "change", WavixAccount):
            for name in ("sync_now", "check_now", "rotate_webhook_secret"):
                actions.pop(name, None)
        return actions

    def get_fields(self, request, obj=None):
        fields = ["reseller", "tenant", "name", "api_key", "send_rate_per_second", "wavix_sub_account_id"]
        shown = [
            f
            for f in self.readonly_fields
            if f not in WEBHOOK_URL_FIELDS or access.may_see_webhook_urls(request.user, obj)
        ]
        return fields + (shown if obj else [])

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if obj is not None and "api_key" in form.base_fields:
            form.base_fields[
                "api_key"
            ].help_text = f"Current key ends in {obj.api_key_last4}. Paste a new key to replace it, or leave empty."
        return form

    def save_model(self, request, obj, form, change) -> None:
        accounts.wavix_account_save(
            actor=request.user, account=obj, api_key=form.cleaned_data.get("api_key") or None, key_checked=True
        )


@admin.register(PhoneNumber)
class PhoneNumberAdmin(OwnedAdmin):
    """Numbers come from Wavix (the account's sync); here they are assigned to a tenant and a trunk."""

    list_display = ["number", "country", "tenant", "trunk", "sms_enabled", "relay_display", "status", "account"]
    list_filter = ["sms_enabled", "relay_drift", "country", ("tenant", RelatedOnlyFieldListFilter), "tendlc_status"]
    list_select_related = ["tenant", "trunk", "account"]
    search_fields = ["number", "label"]
    fields = ["account", "number", "tenant", "trunk", "label", "wavix_label", "sms_enabled", "status", "tendlc_status"]
    fields += ["sms_relay_url", "relay_display", "relay_set_at", "country", "wavix_id", "synced_at"]
    readonly_fields = ["account", "number", "wavix_label", "sms_enabled", "status", "tendlc_status", "sms_relay_url"]
    readonly_fields += ["relay_display", "relay_set_at", "country", "wavix_id", "synced_at"]
    actions = ["repair_relay"]

    def get_fields(self, request, obj=None):
        # The relay URL is the account's inbound webhook URL once wired: for those who may see it, else left out
        # (the "Inbound relay" line still says whether the number relays to the portal).
        shown = access.may_see_webhook_urls(request.user, obj)
        return [f for f in super().get_fields(request, obj) if f != "sms_relay_url" or shown]

    @admin.display(description="Inbound relay", ordering="relay_drift")
    def relay_display(self, obj):
        return relay_status(obj)

    @admin.action(description="Point the selected numbers back at the portal (repair relay drift)")
    def repair_relay(self, request, queryset) -> None:
        self.message_user(request, queue_relay_repair(queryset))

    def save_model(self, request, obj, form, change) -> None:
        accounts.phone_number_save(number=obj)


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
    if number.trunk_id and number.trunk.sms_enabled and number.sms_relay_url:
        return "→ portal"
    return "—"


def queue_relay_repair(numbers) -> str:
    """Queue a repair of the drifted numbers among these; returns what to tell the user."""
    ids = list(numbers.filter(relay_drift=True).values_list("pk", flat=True))
    if not ids:
        return "No number here points away from the portal."
    dispatch.RELAY_REPAIR.soon(ids)
    return f"Repair queued for {len(ids)} number(s): they will point at the portal again in a few seconds."


class RelayRepairMixin:
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


# --------------------------------------------------------------------------------------------------------------
# Sender IDs
# --------------------------------------------------------------------------------------------------------------


class SamplesField(forms.CharField):
    """Sample messages, one per line."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        return [line.strip() for line in (value or "").splitlines() if line.strip()]


class CountryPicker(FilteredSelectMultiple):
    """The admin's two-box picker. Its script prepends itself to its parent: wrap it, so the label stays first."""

    def render(self, *args, **kwargs):
        return format_html('<div class="related-widget-wrapper">{}</div>', super().render(*args, **kwargs))


def _country_choices() -> list[tuple[str, str]]:
    return [(rule.country, f"{rule.name} ({rule.country})") for rule in CountryRule.objects.order_by("name")]


class SenderIDForm(forms.ModelForm):
    samples = SamplesField(required=False, help_text="Example messages, one per line; reviewers read these.")
    countries = forms.MultipleChoiceField(
        choices=_country_choices,
        widget=CountryPicker("countries", is_stacked=False),
        help_text="Destination countries. Countries that need paperwork start as “needs documents”.",
    )

    class Meta:
        model = SenderID
        fields = ["tenant", "account", "type", "value", "usecase", "samples"]

    actor = None  # the signed-in user, set by the admin

    def clean(self):
        cleaned = super().clean()
        if "countries" in cleaned and cleaned.get("type"):
            try:
                CountryRule.check_destinations(cleaned["type"], cleaned.get("countries") or [])
            except ValidationError as error:
                self.add_error("countries", error)
        return cleaned

    def _post_clean(self):
        # After every local check passed, register at Wavix as part of validation: Wavix's refusal (or its
        # absence) then shows on this form, and nothing is saved. The service saves only after Wavix said yes.
        super()._post_clean()
        if self.instance.pk is None and not self.errors:
            try:
                senders.sender_id_register(
                    actor=self.actor, sender=self.instance, countries=self.cleaned_data["countries"]
                )
            except ValidationError as error:
                self.add_error(None, error)


class SenderIDCountryInline(ScopedReadOnlyInline):
    model = SenderIDCountry
    fields = ["country", "status", "note", "status_changed_at"]
    readonly_fields = fields


@admin.register(SenderID)
class SenderIDAdmin(CallsWavixAdmin, OwnedAdmin):
    form = SenderIDForm
    list_display = ["value", "type", "tenant", "account", "countries_summary", "created_at"]
    list_filter = ["type", ("tenant", RelatedOnlyFieldListFilter)]
    list_select_related = ["tenant", "account"]
    search_fields = ["value"]
    inlines = [SenderIDCountryInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("countries")

    @admin.display(description="Countries")
    def countries_summary(self, obj):
        return format_html_join(
            ", ", '<span title="{}">{}</span>', ((c.get_status_display(), c.country) for c in obj.countries.all())
        )

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["tenant", "account", "type", "value", "countries", "usecase", "samples"]
        return ["tenant", "account", "type", "value", "phone_number", "usecase", "samples", "wavix_id", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        # What is registered at Wavix cannot change; register a new sender ID instead.
        return ["tenant", "account", "type", "value", "phone_number", "wavix_id", "created_at"] if obj else []

    def get_form(self, request, obj=None, **kwargs):
        if obj is not None:
            kwargs["fields"] = ["usecase", "samples"]
        form = super().get_form(request, obj, **kwargs)
        form.actor = request.user
        return form

    def save_model(self, request, obj, form, change) -> None:
        if change:
            obj.full_clean()
            obj.save(update_fields=["usecase", "samples"])
        # A new sender ID was registered and saved while its form was validated.

    def save_related(self, request, form, formsets, change) -> None:
        pass  # registrations are created by the service and never edited here

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ValidationError as error:  # Wavix could not be asked, or the sender is in use: nothing deleted
            self.message_user(request, " ".join(error.messages), messages.ERROR)
            return redirect(reverse("admin:messaging_senderid_change", args=[object_id]))

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        # Registrations go with their sender ID; nobody deletes one on its own, so no permission is asked for.
        perms_needed.discard(SenderIDCountry._meta.verbose_name)
        return deleted, counts, perms_needed, protected

    def delete_model(self, request, obj) -> None:
        senders.sender_id_delete(actor=request.user, sender=obj)

    def delete_queryset(self, request, queryset) -> None:
        for sender in queryset:
            try:
                senders.sender_id_delete(actor=request.user, sender=sender)
            except ValidationError as error:
                self.message_user(request, f"{sender}: {' '.join(error.messages)}", messages.ERROR)


@admin.register(SenderIDCountry)
class SenderIDCountryAdmin(RegistrationPagesMixin, ScopedAdmin):
    list_display = ["sender", "tenant", "country", "status", "status_changed_at"]
    list_filter = ["status", "country", ("tenant", RelatedOnlyFieldListFilter)]
    list_select_related = ["sender", "tenant"]
    search_fields = ["sender__value", "country"]
    readonly_fields = ["sender", "tenant", "country", "status", "note", "status_changed_at", "status_changed_by"]


# --------------------------------------------------------------------------------------------------------------
# Trunks
# --------------------------------------------------------------------------------------------------------------


class TrunkForm(forms.ModelForm):
    threecx_webhook_url = forms.CharField(
        label="3CX webhook URL",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "size": 80}),
        help_text="From the trunk's SMS tab in 3CX. Stored encrypted; only host and last 4 characters are shown.",
    )

    class Meta:
        model = Trunk
        fields = ["tenant", "name", "pbx_fqdn", "pbx_version", "main_sender", "sms_template", "sms_enabled"]

    def clean_threecx_webhook_url(self) -> str:
        url = self.cleaned_data["threecx_webhook_url"].strip()
        if url:
            try:
                Trunk().set_threecx_webhook_url(url)
            except ValidationError as error:
                raise ValidationError(error.message_dict["threecx_webhook_url"]) from None
        return url


class NumberInline(ScopedReadOnlyInline):
    model = PhoneNumber
    fields = ["number", "sms_enabled", "status", "relay"]
    readonly_fields = fields

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
        log = message_log.message_log_url(trunk__id__exact=obj.pk, status__exact=Message.Status.HELD)
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
        fields = ["tenant", "name", "pbx_fqdn", "pbx_version", "main_sender", "sms_template", "sms_enabled"]
        fields += ["threecx_webhook_url"] if self.has_change_permission(request, obj) else []
        if obj is None:
            return fields
        shown = self.get_readonly_fields(request, obj)
        return fields + [f for f in shown if f != "sms_off_panel" or not obj.sms_enabled]

    def save_model(self, request, obj, form, change) -> None:
        accounts.trunk_save(
            actor=request.user, trunk=obj, threecx_webhook_url=form.cleaned_data.get("threecx_webhook_url") or None
        )


# --------------------------------------------------------------------------------------------------------------
# Records: messages, webhooks, deliveries, audit (read-only)
# --------------------------------------------------------------------------------------------------------------


class RecordAdmin(ScopedAdmin):
    # Counting a million rows per page view is the slow part of a changelist; skip the total.
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]


class SendForm(forms.Form):
    sender = forms.ModelChoiceField(queryset=SenderID.objects.none(), help_text="One of a tenant's sender IDs.")
    recipients = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One number per line (E.164, or national if the tenant has a default country). Several: a bulk send.",
    )
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False, strip=False)
    media = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, help_text="MMS (US/Canada): https URLs, one per line."
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        senders = access.changeable(user, SenderID).select_related("tenant").order_by("tenant__name", "value")
        self.fields["sender"].queryset = senders
        self.fields["sender"].label_from_instance = lambda s: f"{s.tenant} › {s.value}"


@admin.register(Message)
class MessageAdmin(RecordAdmin):
    """The message log (see messaging.message_log): searched, filtered and exported without scanning every row."""

    list_display = ["created_at", "direction", "from_number", "to_number", "status_column", "tenant", "segments"]
    list_display += ["charge"]
    list_filter = [
        "direction",
        "status",
        "priority",
        message_log.CreatedDateRangeFilter,
        ("tenant", message_log.TenantListFilter),
    ]
    list_select_related = ["tenant", "trunk"]
    search_fields = ["from_number", "to_number", "text", "wavix_message_id"]  # shows the box; see get_search_results
    search_help_text = "A number in any format (or part of one), words of the text, or a Wavix message ID."
    change_list_template = "messaging/message_change_list.html"
    paginator = message_log.CappedCountPaginator
    show_facets = admin.ShowFacets.NEVER  # a count per filter choice would scan the whole table each time

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        return queryset.filter(message_log.message_search(search_term)), False

    @admin.display(description="Status", ordering="status")
    def status_column(self, obj) -> str:
        return obj.status_explained

    def changelist_view(self, request, extra_context=None):
        # Texts that belong to no tenant are in no message: reseller staff are told here, where they look for texts.
        extra_context = {**(extra_context or {}), "unassigned_texts": message_log.unassigned_texts(request.user)}
        return super().changelist_view(request, extra_context)

    def export_csv_view(self, request):
        """Export the log exactly as filtered and searched on screen, as a streamed CSV file."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)  # the same filters, search and scope as the list
        except IncorrectLookupParameters:
            return redirect(f"{reverse('admin:messaging_message_changelist')}?e=1")
        filename = f"messages-{timezone.localtime():%Y%m%d-%H%M}.csv"
        return message_log.messages_csv_response(changelist.queryset, filename)

    def get_fields(self, request, obj=None):
        return [
            "progress",
            *(["not_forwarded_reason"] if obj is not None and obj.not_forwarded_reason else []),
            "error_explanation",
            "reports",
            "tenant",
            "direction",
            "from_number",
            "to_number",
            "text",
        ] + ["media", "encoding", "segments", "charge", "wavix_message_id", "trunk", "sender", "priority", "attempts"]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    @admin.display(description="Progress")
    def progress(self, obj):
        steps = [("Created", obj.created_at)]
        if obj.direction == Message.Direction.OUTBOUND:
            steps += [("Sent to Wavix", obj.sent_at), (obj.get_status_display(), obj.completed_at)]
        else:
            steps += [(obj.get_status_display(), obj.completed_at)]
        return format_html_join(
            " → ",
            "<strong>{}</strong> {}",
            ((name, timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S") if at else "…") for name, at in steps),
        )

    @admin.display(description="What went wrong")
    def error_explanation(self, obj):
        if not obj.error_message:
            return "—"
        return format_html("{}<br><small>Wavix said: {}</small>", explain(obj.error_message), obj.error_message)

    @admin.display(description="Delivery reports")
    def reports(self, obj):
        from messaging.serializers import MessageDetailSerializer

        rows = MessageDetailSerializer().get_reports(obj)
        if not rows:
            return "—"
        return format_html_join(
            mark_safe("<br>"),
            "{} at {}{}{}",
            (
                (
                    r["status"],
                    timezone.localtime(r["received_at"]).strftime("%H:%M:%S"),
                    f" ({r['error']})" if r["error"] else "",
                    f" — {r['note']}" if r["note"] else "",
                )
                for r in rows
            ),
        )

    def get_urls(self):
        send = self.admin_site.admin_view(self.send_view)
        export = self.admin_site.admin_view(self.export_csv_view)
        return [
            path("send/", send, name="messaging_message_send"),
            path("export.csv", export, name="messaging_message_export"),
            *super().get_urls(),
        ]

    def send_view(self, request):
        """Send one message, or the same text to many recipients (a bulk send), as the API does."""
        if not access.can(request.user, "send", Message):
            raise PermissionDenied
        form = SendForm(request.POST or None, user=request.user)
        results = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            sender = data["sender"]
            recipients = [line.strip() for line in data["recipients"].splitlines() if line.strip()]
            media = [line.strip() for line in data["media"].splitlines() if line.strip()]
            try:
                if len(recipients) == 1:
                    message = outbound.message_send(
                        tenant=sender.tenant, sender=sender, to=recipients[0], text=data["text"], media=media
                    )
                    self.message_user(request, f"Queued for {message.to_number}: it goes out in a moment.")
                    return redirect(reverse("admin:messaging_message_change", args=[message.pk]))
                results = outbound.message_send_bulk(
                    tenant=sender.tenant, sender=sender, recipients=recipients, text=data["text"], media=media
                )
            except ValidationError as error:
                show_errors(form, error, renamed={"to": "recipients"})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Send a message",
            "form": form,
            "results": results,
            "queued": sum("id" in result for result in results or ()),
        }
        return TemplateResponse(request, "messaging/send.html", context)


@admin.register(WebhookEvent)
class WebhookEventAdmin(RecordAdmin):
    list_display = ["received_at", "kind", "dedup_key", "state", "recovered", "account", "tenant", "last_error"]
    list_filter = ["kind", "state", "recovered"]
    list_select_related = ["account", "tenant"]
    search_fields = ["=dedup_key"]
    exclude = ["body"]

    def get_readonly_fields(self, request, obj=None):
        return [f for f in super().get_readonly_fields(request, obj) if f != "body"] + ["body_text"]

    @admin.display(description="Body as received")
    def body_text(self, obj):
        raw = bytes(obj.body)
        if not raw:
            return "— (purged after the reseller's retention period)"
        try:
            shown = json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
            shown.encode()  # a lone surrogate (stored before the intake refused them): shown as received instead
        except ValueError:
            shown = raw.decode("utf-8", "replace")
        return format_html("<pre>{}</pre>", shown)


@admin.register(Delivery)
class DeliveryAdmin(RecordAdmin):
    """Forwards to 3CX; the failed and dead-lettered ones can be replayed."""

    list_display = ["created_at", "remote_number", "trunk", "tenant", "status", "attempts", "next_attempt_at"]
    list_display += ["last_status_code", "last_error"]
    list_filter = ["status", ("tenant", RelatedOnlyFieldListFilter), ("trunk", RelatedOnlyFieldListFilter)]
    list_select_related = ["trunk", "tenant"]
    search_fields = ["=remote_number", "=message__wavix_message_id"]
    actions = ["replay"]

    @admin.action(description="Replay the selected failed or dead-lettered deliveries")
    def replay(self, request, queryset) -> None:
        count = forwarding.delivery_replay(actor=request.user, deliveries=queryset)
        self.message_user(request, f"Replaying {count} delivery(ies); the others had not failed.")

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not access.can(request.user, "replay", Delivery):
            actions.pop("replay", None)
        return actions


@admin.register(OptOut)
class OptOutAdmin(RecordAdmin):
    list_display = ["created_at", "number", "tenant", "keyword"]
    list_filter = [("tenant", RelatedOnlyFieldListFilter)]
    list_select_related = ["tenant"]
    search_fields = ["=number"]


@admin.register(AuditEvent)
class AuditEventAdmin(RecordAdmin):
    """The audit trail (see messaging.audit_log): read-only for everyone, superusers included."""

    list_display = ["created_at", "actor_label", "action", "object_repr", "tenant", "reseller"]
    list_filter = [
        "action",
        audit_log.ActorListFilter,
        ("tenant", message_log.TenantListFilter),
        ("reseller", audit_log.ResellerListFilter),
        message_log.CreatedDateRangeFilter,
    ]
    list_select_related = ["tenant", "reseller"]
    search_fields = ["actor_label", "object_repr"]
    change_list_template = "messaging/audit_change_list.html"
    show_facets = admin.ShowFacets.NEVER

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        export = self.admin_site.admin_view(self.export_csv_view)
        return [path("export.csv", export, name="tenants_auditevent_export"), *super().get_urls()]

    def export_csv_view(self, request):
        """Export the audit trail exactly as filtered and searched on screen, as a streamed CSV file."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)  # the same filters, search and scope as the list
        except IncorrectLookupParameters:
            return redirect(f"{reverse('admin:tenants_auditevent_changelist')}?e=1")
        return audit_log.audit_csv_response(changelist.queryset)
