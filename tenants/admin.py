"""Resellers, people (memberships, invitations) and API tokens in the admin.

The tenant's page is registered by messaging (messaging.admin.provisioning.TenantAdmin): it shows the tenant's Wavix
accounts, trunks and forwarding health, and tenants imports nothing of messaging.
"""

import hashlib

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from unfold.widgets import (
    UnfoldAdminEmailInputWidget,
    UnfoldAdminFileFieldWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextInputWidget,
)

from tenants import access, branding, services
from tenants.models import ApiToken, Membership, Reseller, Tenant
from tenants.scoped_admin import ScopedAdmin


class ResellerForm(forms.ModelForm):
    """The reseller's settings, with its logo uploaded as a file (kept in the row; served by tenants.views)."""

    logo = forms.FileField(
        required=False,
        help_text=f"PNG or JPEG, at most {branding.LOGO_MAX_BYTES // 1000} kB; shown 38 px high beside the name.",
        widget=UnfoldAdminFileFieldWidget,
    )
    remove_logo = forms.BooleanField(required=False, label="Remove the logo")

    class Meta:
        model = Reseller
        fields = [
            "name",
            "slug",
            "message_retention_days",
            "brand_name",
            "brand_color",
            "support_email",
            *Reseller.PRICE_FIELDS,
        ]

    def clean_logo(self):
        upload = self.cleaned_data.get("logo")
        if not upload:
            return None
        data = upload.read(branding.LOGO_MAX_BYTES + 1)
        if len(data) > branding.LOGO_MAX_BYTES:
            raise ValidationError(f"The logo is larger than {branding.LOGO_MAX_BYTES // 1000} kB.")
        kind = branding.logo_kind(data)
        if kind is None:
            raise ValidationError("The logo must be a PNG or JPEG image.")
        return data, kind


@admin.register(Reseller)
class ResellerAdmin(ScopedAdmin):
    list_display = ["name", "slug", "tenant_count", "message_retention_days", "created_at"]
    search_fields = ["name"]
    prepopulated_fields = {"slug": ["name"]}
    form = ResellerForm

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "message_retention_days":
            field.help_text = f"{field.help_text} At most {settings.MESSAGE_RETENTION_MAX_DAYS} days."
        return field

    def get_fieldsets(self, request, obj=None):
        prices = list(Reseller.PRICE_FIELDS)
        brand = ["brand_name", "brand_color", "support_email", "logo", "remove_logo"]
        return [
            (None, {"fields": ["name", "slug", "message_retention_days"]}),
            (
                "Brand",
                {
                    "fields": brand,
                    "description": "What its people and its tenants' people see on the portal's pages and in its "
                    "e-mails. Platform staff see the platform's own.",
                },
            ),
            (
                "Prices to customers",
                {
                    "fields": prices,
                    "description": "What the usage statements bill each tenant, unless a tenant has its own prices.",
                },
            ),
        ]

    def save_model(self, request, obj, form, change) -> None:
        logo = form.cleaned_data.get("logo")
        if form.cleaned_data.get("remove_logo"):
            obj.brand_logo, obj.brand_logo_type, obj.brand_logo_hash = None, "", ""
        elif logo:
            obj.brand_logo, obj.brand_logo_type = logo
            obj.brand_logo_hash = hashlib.sha256(logo[0]).hexdigest()[:16]
        services.reseller_save(actor=request.user, reseller=obj)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(tenant_count=Count("tenants"))

    @admin.display(description="Tenants", ordering="tenant_count")
    def tenant_count(self, obj) -> int:
        return obj.tenant_count


# --------------------------------------------------------------------------------------------------------------
# People
# --------------------------------------------------------------------------------------------------------------


def _organization_choices(user) -> list[tuple[str, str]]:
    choices = []
    for reseller in access.people_resellers(user).prefetch_related("tenants"):
        choices.append((f"reseller:{reseller.pk}", f"{reseller} (reseller)"))
        choices += [(f"tenant:{t.pk}", f"{reseller} › {t}") for t in reseller.tenants.all()]
    return choices


class InviteForm(forms.ModelForm):
    """Invite a person by e-mail; they receive a link to accept or decline (choosing a password if they are new)."""

    # Declared fields get unfold's widgets by hand: it restyles only the fields it makes from model fields.
    email = forms.EmailField(label="E-mail", widget=UnfoldAdminEmailInputWidget)
    first_name = forms.CharField(required=False, widget=UnfoldAdminTextInputWidget)
    last_name = forms.CharField(required=False, widget=UnfoldAdminTextInputWidget)
    organization = forms.ChoiceField(
        label="Organisation",
        help_text="A reseller role sees every tenant; a tenant viewer only one tenant.",
        widget=UnfoldAdminSelectWidget,
    )

    class Meta:
        model = Membership
        fields = ["role"]

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request
        self.fields["organization"].choices = [("", "---------")] + _organization_choices(request.user)
        self.order_fields(["email", "first_name", "last_name", "organization", "role"])

    def clean(self):
        cleaned = super().clean()
        choice = cleaned.get("organization") or ""
        kind, _, pk = choice.partition(":")
        org = None
        if kind == "reseller":
            org = access.people_resellers(self.request.user).filter(pk=pk).first()
        elif kind == "tenant":
            org = Tenant.objects.filter(pk=pk, reseller__in=access.people_resellers(self.request.user)).first()
        if org is None:
            raise ValidationError({"organization": "Choose where the person works."})
        cleaned["organization_obj"] = org
        if cleaned.get("email"):
            try:
                services.member_check_invite(cleaned["email"], org)
            except ValidationError as error:
                self.add_error(None, error)
        # Set before the model's own validation runs, so it checks the role against this organisation.
        self.instance.reseller = org if kind == "reseller" else None
        self.instance.tenant = org if kind == "tenant" else None
        return cleaned


class MembershipChangeForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["role", "is_active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.tenant_id:
            allowed = [Membership.Role.TENANT_VIEWER]
        else:
            allowed = list(Membership.RESELLER_ROLES)
        self.fields["role"].choices = [(r.value, r.label) for r in allowed]

    def clean(self):
        cleaned = super().clean()
        try:
            services.member_check_change(
                self.instance, role=cleaned.get("role", self.instance.role), active=cleaned.get("is_active", True)
            )
        except ValidationError as error:
            raise ValidationError(error.messages) from None
        return cleaned


@admin.register(Membership)
class MembershipAdmin(ScopedAdmin):
    list_display = ["email", "name", "role", "organization_display", "is_active", "invitation", "created_at"]
    list_filter = ["role", "is_active", "invitation"]
    list_select_related = ["user", "reseller", "tenant__reseller"]
    search_fields = ["user__email", "user__first_name", "user__last_name"]
    readonly_fields = ["email", "organization_display", "invitation", "invited_by", "created_at"]
    actions = ["resend_invite", "deactivate"]

    @admin.display(description="E-mail", ordering="user__email")
    def email(self, obj) -> str:
        return obj.user.email

    @admin.display(description="Name")
    def name(self, obj) -> str:
        # Until the person accepts, a login that existed before has its own name, not the one typed in the invite:
        # showing it would tell the inviter that the login existed.
        return obj.user.get_full_name() if obj.invitation == Membership.Invitation.ACCEPTED else ""

    def get_search_results(self, request, queryset, search_term):
        # By e-mail, as the list shows it; by name only among accepted memberships, for the reason above.
        term = search_term.strip()
        if not term:
            return queryset, False
        by_name = Q(user__first_name__icontains=term) | Q(user__last_name__icontains=term)
        accepted = Q(invitation=Membership.Invitation.ACCEPTED)
        return queryset.filter(Q(user__email__icontains=term) | (accepted & by_name)), False

    @admin.display(description="Organisation")
    def organization_display(self, obj) -> str:
        return f"{obj.tenant.reseller} › {obj.tenant}" if obj.tenant_id else str(obj.reseller)

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = InviteForm if obj is None else MembershipChangeForm
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is not None:
            return form

        class InviteFormForRequest(form):
            def __init__(self, *args, **kw):
                super().__init__(*args, request=request, **kw)

        return InviteFormForRequest

    def add_view(self, request, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "title": "Invite a person"}
        return super().add_view(request, form_url, extra_context)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ["email", "first_name", "last_name", "organization", "role"]})]
        fields = ["email", "organization_display", "role", "is_active", "invitation", "invited_by", "created_at"]
        return [(None, {"fields": fields})]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            data = form.cleaned_data
            membership, sent = services.member_invite(
                actor=request.user,
                email=data["email"],
                organization=data["organization_obj"],
                role=data["role"],
                first_name=data["first_name"],
                last_name=data["last_name"],
            )
            obj.pk, obj.user = membership.pk, membership.user  # for the admin's own log entry and redirect
            if sent:
                messages.success(request, f"Invitation sent to {membership.user.email}.")
            else:
                messages.warning(request, "The invite e-mail could not be sent; use “Resend invite” to try again.")
            return
        saved = Membership.objects.get(pk=obj.pk)
        services.member_change_role(actor=request.user, membership=saved, role=obj.role)
        services.member_set_active(actor=request.user, membership=saved, active=obj.is_active)
        access.forget(request.user)

    def save_related(self, request, form, formsets, change) -> None:
        pass  # no related rows on these forms

    def response_add(self, request, obj, post_url_continue=None):
        # save_model said what happened (the invitation sent, or not); the admin's "was added successfully" would
        # add only a second, vaguer line. Its redirects are kept.
        if "_addanother" in request.POST:
            return HttpResponseRedirect(request.path)
        if "_continue" in request.POST:
            return HttpResponseRedirect(reverse("admin:tenants_membership_change", args=[obj.pk]))
        return self.response_post_save_add(request, obj)

    @admin.action(description="Resend the invite e-mail (invitations not answered yet)")
    def resend_invite(self, request, queryset) -> None:
        waiting = queryset.filter(invitation=Membership.Invitation.PENDING).select_related("user", "invited_by")
        sent = sum(services.member_send_invite(m) for m in waiting)
        self.message_user(request, f"Sent {sent} invite e-mail(s).")

    @admin.action(description="Deactivate the selected people")
    def deactivate(self, request, queryset) -> None:
        done = 0
        for membership in queryset.select_related("user", "reseller"):
            try:
                services.member_set_active(actor=request.user, membership=membership, active=False)
                done += 1
            except ValidationError as error:
                self.message_user(request, " ".join(error.messages), messages.ERROR)
        self.message_user(request, f"Deactivated {done} member(s).")


# --------------------------------------------------------------------------------------------------------------
# API tokens
# --------------------------------------------------------------------------------------------------------------


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["name", "tenant"]


@admin.register(ApiToken)
class ApiTokenAdmin(ScopedAdmin):
    list_display = ["name", "token_prefix", "tenant", "user", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["user", "tenant"]
    readonly_fields = ["token_prefix", "tenant", "user", "created_at", "last_used_at", "revoked_at"]
    form = ApiTokenForm
    actions = ["revoke"]

    @admin.display(description="Token")
    def token_prefix(self, obj) -> str:
        return f"{ApiToken.PREFIX}_{obj.lookup_id}_…"

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def get_fields(self, request, obj=None):
        if obj is None:
            # Reseller admins may make a token for a tenant's integration; everyone may make their own.
            return ["name", "tenant"] if access.people_resellers(request.user).exists() else ["name"]
        return ["name", *self.readonly_fields]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tenant":
            kwargs["queryset"] = Tenant.objects.filter(reseller__in=access.people_resellers(request.user))
            kwargs["help_text"] = "Empty: a token for yourself. A tenant: a token for its integration, seeing it only."
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a token is created or revoked, never edited

    def save_model(self, request, obj, form, change) -> None:
        token, plaintext = services.api_token_create(
            actor=request.user, name=form.cleaned_data["name"], tenant=form.cleaned_data.get("tenant")
        )
        obj.pk = token.pk
        obj._plaintext = plaintext

    def response_add(self, request, obj, post_url_continue=None):
        # Shown on this one response only: not kept in a message cookie or the session.
        context = {
            **self.admin_site.each_context(request),
            "token": obj,
            "plaintext": obj._plaintext,
            "opts": self.opts,
            "title": "API token created",
        }
        return TemplateResponse(request, "tenants/token_created.html", context)

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset) -> None:
        for token in queryset:
            services.api_token_revoke(actor=request.user, token=token)
        self.message_user(request, "Revoked.")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        if not access.can(request.user, "add", ApiToken):
            actions.pop("revoke", None)
        return actions
