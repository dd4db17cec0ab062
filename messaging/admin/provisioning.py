"""Provisioning pages: country rules, Wavix accounts and their numbers, and tenants (their accounts, trunks and
forwarding health: messaging's view of a tenant, so it is registered here; the model stays tenants.Tenant)."""

from django import forms
from django.contrib import admin
from django.contrib.admin import RelatedOnlyFieldListFilter
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from unfold.widgets import UnfoldAdminPasswordWidget

from messaging.admin.base import CallsWavixAdmin, OwnedAdmin, OwnedSelect
from messaging.admin.relay import RelayRepairMixin, forwarding_health, queue_relay_repair, relay_status, relay_summary
from messaging.models import CountryRule, PhoneNumber, Trunk, WavixAccount
from messaging.services import accounts
from tenants import access
from tenants.models import Tenant
from tenants.scoped_admin import ScopedAdmin, ScopedReadOnlyInline
from tenants.services import tenant_save


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
        widget=UnfoldAdminPasswordWidget(render_value=False, attrs={"autocomplete": "off"}),
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

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tenant":  # a tenant of the reseller picked above (clean() refuses any other)
            kwargs["widget"] = OwnedSelect(lambda tenant: [tenant.reseller_id], by="reseller")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

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

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "trunk":  # the script shows the chosen tenant's trunks; PhoneNumber.clean() insists
            kwargs["widget"] = OwnedSelect(lambda trunk: [trunk.tenant_id])
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        account = obj.account if obj is not None else None
        if account is not None:
            # The account decides whose the number may be: its tenant's, or (a shared account) its reseller's tenants'.
            mine = {"pk": account.tenant_id} if account.tenant_id else {"reseller_id": account.reseller_id}
            if "tenant" in form.base_fields:
                field = form.base_fields["tenant"]
                field.queryset = field.queryset.filter(**mine)
            if "trunk" in form.base_fields:
                field = form.base_fields["trunk"]
                field.queryset = field.queryset.filter(**{f"tenant__{key}": value for key, value in mine.items()})
        return form

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


# --------------------------------------------------------------------------------------------------------------
# Tenants
# --------------------------------------------------------------------------------------------------------------


class TrunkInline(ScopedReadOnlyInline):
    model = Trunk
    fields = ["name", "pbx_fqdn", "main_sender", "sms_template", "sms_enabled"]


@admin.register(Tenant)
class TenantAdmin(RelayRepairMixin, ScopedAdmin):
    drift_filter = "tenant"
    list_display = ["name", "home_link", "reseller", "status", "default_country", "created_at"]
    list_filter = ["status", ("reseller", RelatedOnlyFieldListFilter)]
    list_select_related = ["reseller"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    fields = ["reseller", "name", "slug", "status", "default_country"]
    price_fields = list(Tenant.PRICE_FIELDS)
    inlines = [TrunkInline]

    def get_fieldsets(self, request, obj=None):
        fieldsets = [(None, {"fields": self.fields + self.get_readonly_fields(request, obj)})]
        # Its prices show the reseller's margin: for the reseller's managers and staff, never the tenant's viewers.
        if access.may_see_costs(request.user, obj):
            description = "Leave “prices” blank to bill this tenant on the reseller's prices."
            if obj is not None:
                description += f" Now: {obj.price_terms.price_terms_label}."
            fieldsets.append(("Prices to this customer", {"fields": self.price_fields, "description": description}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        return (
            ["home_link", "wavix_accounts_panel", "forwarding_panel", self.drift_panel_for(request, obj)] if obj else []
        )

    @admin.display(description="Home page")
    def home_link(self, obj):
        return format_html('<a href="{}">Open {}</a>', reverse("admin:tenant_home", args=[obj.pk]), obj.name)

    @admin.display(description="Forwarding to 3CX")
    def forwarding_panel(self, obj):
        # Whoever may see the tenant may see its trunks: no further scoping needed here.
        trunks = list(Trunk.objects.filter(tenant=obj)) if obj else []
        if not trunks:
            return "No trunk yet."
        health = format_html_join(mark_safe("<br>"), "{}: {}", ((t.name, forwarding_health(t)) for t in trunks))
        return format_html("{}<br>{}", relay_summary(obj), health)

    @admin.display(description="Wavix accounts")
    def wavix_accounts_panel(self, obj):
        own = list(obj.wavix_accounts.all())
        listed = ", ".join(str(a) for a in own) or "Uses the reseller's shared account(s)."
        url = reverse("admin:tenants_tenant_wavix_sub_account", args=[obj.pk])
        return format_html('{} <a class="button" href="{}">Create a Wavix sub-account</a>', listed, url)

    def get_urls(self):
        view = self.admin_site.admin_view(self.wavix_sub_account_view)
        return [
            path("<int:object_id>/wavix-sub-account/", view, name="tenants_tenant_wavix_sub_account"),
            *super().get_urls(),
        ]

    def wavix_sub_account_view(self, request, object_id: int):
        """Create a Wavix sub-account for the tenant under one of the reseller's shared accounts."""
        tenant = self.get_object(request, str(object_id))  # 404 for another reseller's tenant
        if not access.can(request.user, "add", WavixAccount) or not self.has_change_permission(request, tenant):
            raise PermissionDenied
        masters = access.changeable(request.user, WavixAccount).filter(reseller=tenant.reseller, tenant=None)
        error = None
        if request.method == "POST":
            master = masters.filter(pk=request.POST.get("master")).first()
            if master is None:
                error = "Choose the reseller account to create the sub-account under."
            else:
                try:
                    account = accounts.wavix_sub_account_create(actor=request.user, master=master, tenant=tenant)
                except ValidationError as refusal:
                    error = " ".join(refusal.messages)
                else:
                    self.message_user(request, f"Created {account}: its numbers are syncing now.")
                    return redirect(reverse("admin:messaging_wavixaccount_change", args=[account.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Create a Wavix sub-account for {tenant}",
            "tenant": tenant,
            "masters": masters,
            "error": error,
        }
        return TemplateResponse(request, "tenants/wavix_sub_account.html", context)

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        resellers = list(access.resellers_for(request.user, "add")[:2])
        if len(resellers) == 1:
            initial.setdefault("reseller", resellers[0].pk)
        return initial

    def save_model(self, request, obj, form, change) -> None:
        tenant_save(actor=request.user, tenant=obj)
