"""The admin site, and its sign-in: the login form, the lockout page and the name a lockout counts against."""

from collections.abc import Callable

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from unfold.forms import AuthenticationForm  # the admin's, with unfold's input styles
from unfold.sites import UnfoldAdminSite

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


class PortalLoginForm(AuthenticationForm):
    """Resellers and tenant users sign in without being Django staff: a membership is what lets them in."""

    username = forms.CharField(label="E-mail", widget=forms.TextInput(attrs={"autofocus": True}))
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Please enter a correct e-mail and password.",
    }

    def clean_username(self) -> str:
        return self.cleaned_data["username"].strip().lower()

    def confirm_login_allowed(self, user) -> None:
        if not access.may_sign_in(user):
            raise ValidationError(self.error_messages["invalid_login"], code="invalid_login")

    def get_invalid_login_error(self) -> ValidationError:
        return ValidationError(self.error_messages["invalid_login"], code="invalid_login")


class PortalAdminSite(UnfoldAdminSite):
    """The admin, with access decided by tenants.access. Apps add their site-level pages here from their own admin
    module (add_urls, set_dashboard), so the site imports no app."""

    site_header = "PBX Messaging Portal"
    site_title = "PBX Messaging Portal"
    index_title = "Operations"
    site_url = None  # the portal has no public site to link to
    login_form = PortalLoginForm

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)
        self._url_makers: list[Callable[[admin.AdminSite], list[URLPattern]]] = []
        self._dashboard: Callable[[HttpRequest, admin.AdminSite], HttpResponse] | None = None
        self._navigation: Callable[[HttpRequest, admin.AdminSite], list[dict]] | None = None

    def add_urls(self, make_urls: Callable[[admin.AdminSite], list[URLPattern]]) -> None:
        """Add pages that belong to no model (a review queue): make_urls(site) returns their URL patterns."""
        self._url_makers.append(make_urls)

    def set_dashboard(self, view: Callable[[HttpRequest, admin.AdminSite], HttpResponse]) -> None:
        """The page at dashboard/, where resellers and tenant viewers land: view(request, site)."""
        self._dashboard = view

    def set_navigation(self, sidebar: Callable[[HttpRequest, admin.AdminSite], list[dict]]) -> None:
        """The sidebar's groups for this request, in unfold's format: sidebar(request, site)."""
        self._navigation = sidebar

    def get_sidebar_list(self, request: HttpRequest) -> list[dict]:
        if self._navigation is None:
            return super().get_sidebar_list(request)
        groups = self._navigation(request, self)
        for group in groups:  # unfold marks the open page's entry and resolves badges
            group["items"] = self._get_navigation_items(request, group["items"])
        return groups

    def has_permission(self, request) -> bool:
        return access.has_portal_access(request.user)

    def get_urls(self):
        dashboard = path("dashboard/", self.admin_view(self.dashboard), name="dashboard")
        added = [pattern for make_urls in self._url_makers for pattern in make_urls(self)]
        return [dashboard, *added, *super().get_urls()]  # before the catch-all app pages

    def index(self, request, extra_context=None):
        # Resellers and tenant viewers land on their tenants' dashboard; platform staff keep the list of
        # models (their work is review queues) and open the dashboard of every tenant from the top bar.
        if request.user.is_staff or request.user.is_superuser or self._dashboard is None:
            return super().index(request, extra_context)
        return self.dashboard(request)

    def dashboard(self, request):
        if self._dashboard is None:
            raise Http404("No dashboard.")
        return self._dashboard(request, self)
