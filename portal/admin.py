"""The admin site and the base class that scopes every model admin through tenants.access."""

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.db import models
from django.http import Http404, HttpResponse
from django.template.response import TemplateResponse

from tenants import access


def lockout_username(request, credentials: dict | None) -> str:
    """The e-mail a sign-in attempt is counted against: trimmed and lower-cased, as PortalLoginForm reads it."""
    raw = (credentials or {}).get("username") or request.POST.get("username") or ""
    return str(raw).strip().lower()


def locked_out(request, original_response=None, credentials=None) -> HttpResponse:
    """The page django-axes shows instead of the login form while an e-mail is locked out here (429)."""
    from django.conf import settings

    site = admin.site
    context = {
        **site.each_context(request),
        "title": "Sign-in locked",
        "minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
    }
    return TemplateResponse(request, "admin/locked_out.html", context, status=429).render()


class PortalLoginForm(AdminAuthenticationForm):
    """Resellers and tenant users sign in without being Django staff: a membership is what lets them in."""

    username = forms.CharField(label="E-mail", widget=forms.TextInput(attrs={"autofocus": True}))
    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "invalid_login": "Please enter a correct e-mail and password.",
    }

    def clean_username(self) -> str:
        return self.cleaned_data["username"].strip().lower()

    def confirm_login_allowed(self, user) -> None:
        if not access.may_sign_in(user):
            raise ValidationError(self.error_messages["invalid_login"], code="invalid_login")

    def get_invalid_login_error(self) -> ValidationError:
        return ValidationError(self.error_messages["invalid_login"], code="invalid_login")


def show_errors(form: forms.Form, error: ValidationError, renamed: dict[str, str] | None = None) -> None:
    """Put a service's ValidationError on the form: each message beside its field (`renamed` maps a service's
    field name to the form's), the rest above the form."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error.messages)
        return
    for name, messages in error.message_dict.items():
        name = (renamed or {}).get(name, name)
        form.add_error(name if name in form.fields else None, messages)


class PortalAdminSite(admin.AdminSite):
    site_header = "PBX Messaging Portal"
    site_title = "PBX Messaging Portal"
    index_title = "Operations"
    site_url = None  # the portal has no public site to link to
    login_form = PortalLoginForm

    def has_permission(self, request) -> bool:
        return access.has_portal_access(request.user)

    def get_urls(self):
        from django.urls import path

        from messaging.admin.senders import review_urls  # messaging's models load after this module

        dashboard = path("dashboard/", self.admin_view(self.dashboard), name="dashboard")
        return [dashboard, *review_urls(self), *super().get_urls()]  # before the catch-all app pages

    def index(self, request, extra_context=None):
        # Resellers and tenant viewers land on their tenants' dashboard; platform staff keep the list of
        # models (their work is review queues) and open the dashboard of every tenant from the top bar.
        if request.user.is_staff or request.user.is_superuser:
            return super().index(request, extra_context)
        return self.dashboard(request)

    def dashboard(self, request):
        from messaging.admin.dashboard import dashboard_view  # messaging's models load after this module

        return dashboard_view(request, self)


class ScopedAdmin(admin.ModelAdmin):
    """A model admin whose rows, choices and permissions all come from tenants.access.

    Another reseller's object opened by URL answers 404, exactly like one that does not exist.
    """

    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def get_queryset(self, request):
        return access.visible(request.user, super().get_queryset(request))

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # inlines here show existing rows only

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such object.")
        return obj

    def has_module_permission(self, request) -> bool:
        return access.can(request.user, "view", self.model)

    def has_view_permission(self, request, obj=None) -> bool:
        return access.can(request.user, "view", obj if obj is not None else self.model)

    def has_add_permission(self, request) -> bool:
        return access.can(request.user, "add", self.model)

    def has_change_permission(self, request, obj=None) -> bool:
        return access.can(request.user, "change", obj if obj is not None else self.model)

    def has_delete_permission(self, request, obj=None) -> bool:
        return access.can(request.user, "delete", obj if obj is not None else self.model)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        # Choices list only rows the user may attach things to: a typed-in foreign id fails validation.
        related = db_field.remote_field.model
        if "queryset" not in kwargs:
            kwargs["queryset"] = access.changeable(request.user, related)
            if related._meta.label_lower in access.PUBLIC_READ:
                kwargs["queryset"] = access.visible(request.user, related)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ScopedReadOnlyInline(admin.TabularInline):
    """An inline of records that are shown, never edited, in the parent's page."""

    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request):
        return access.visible(request.user, super().get_queryset(request))

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_view_permission(self, request, obj=None) -> bool:
        return access.can(request.user, "view", self.model)
