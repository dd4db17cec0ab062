"""Pages outside the admin: an invitation's (accept or decline it), two-factor sign-in (set up, verify), a
reseller's logo."""

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_lockout_response
from django.contrib import admin, messages
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import SetPasswordForm
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.safestring import mark_safe

from tenants import services, two_factor
from tenants.models import Membership, Reseller


def invitation(request, token: str):
    """Accept or decline an invitation.

    A new login (no password yet) answers with the link alone and chooses its password to accept: the link proves
    the mailbox, as a set-password link would. A login that existed before answers signed in as itself, so that
    whoever holds the link cannot attach someone else's login to an organisation.
    """
    membership = services.invitation_of_link(token)
    context = {**admin.site.each_context(request), "title": "Invitation", "membership": membership}
    context["is_nav_sidebar_enabled"] = False  # a page of its own: the invitee may have nothing else to open yet
    if membership is None:
        return TemplateResponse(request, "tenants/invitation.html", {**context, "problem": "expired"}, status=404)
    invitee, organization = membership.user, membership.organization
    new_login = not invitee.has_usable_password()
    context.update({"title": f"Invitation to {organization}", "organization": organization, "new_login": new_login})
    if membership.invitation != Membership.Invitation.PENDING:
        return TemplateResponse(request, "tenants/invitation.html", context)  # answered: the page says which way
    if not new_login and request.user.pk != invitee.pk:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        return TemplateResponse(request, "tenants/invitation.html", {**context, "problem": "another_login"}, status=403)

    choosing = request.method == "POST" and request.POST.get("action") == "accept"
    form = SetPasswordForm(invitee, request.POST if choosing else None) if new_login else None
    if request.method == "POST" and request.POST.get("action") == "decline":
        services.invitation_decline(user=invitee, membership=membership)
        return redirect(request.path)
    if choosing and (form is None or form.is_valid()):
        password = form.cleaned_data["new_password1"] if form else None
        services.invitation_accept(user=invitee, membership=membership, new_password=password)
        if new_login:
            login(request, invitee, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome: you are now {membership.get_role_display().lower()} of {organization}.")
        return redirect("admin:index")
    return TemplateResponse(request, "tenants/invitation.html", {**context, "form": form})


# --------------------------------------------------------------------------------------------------------------
# Two-factor sign-in (tenants.two_factor)
# --------------------------------------------------------------------------------------------------------------


def _next_url(request) -> str:
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    if wanted and url_has_allowed_host_and_scheme(wanted, {request.get_host()}, require_https=request.is_secure()):
        return wanted
    return reverse("admin:index")


def _page(request, template: str, title: str, **extra) -> TemplateResponse:
    context = {**admin.site.each_context(request), "title": title, "next": _next_url(request), **extra}
    context["is_nav_sidebar_enabled"] = False  # a page of its own: nothing else opens until it is done
    return TemplateResponse(request, template, context)


def _locked(request) -> TemplateResponse | None:
    """Too many wrong codes (or passwords) for this e-mail from this address: signed out, the lockout page."""
    credentials = {"username": request.user.get_username()}
    if not AxesProxyHandler.is_locked(request, credentials):
        return None
    logout(request)
    return get_lockout_response(request, credentials=credentials)


@login_required(login_url="admin:login")
def two_factor_setup(request):
    """Set up (or replace) the authenticator app: scan the QR code, type a code to confirm; ten recovery codes are
    shown once. Replacing one needs this session verified with the old one first."""
    user = request.user
    if two_factor.enrolled(user) and not user.is_verified():
        return redirect(f"{reverse('two_factor_verify')}?{urlencode({'next': request.get_full_path()})}")
    if locked := _locked(request):
        return locked
    device, error = two_factor.pending_device(user), ""
    if request.method == "POST":
        codes = two_factor.enrol(request, user, request.POST.get("code", ""))
        if codes is not None:
            return _page(request, "tenants/two_factor_codes.html", "Your recovery codes", codes=codes)
        if locked := _locked(request):
            return locked
        error = "That code is not the one the app shows now: type the six digits it shows for this portal."
    return _page(
        request,
        "tenants/two_factor_setup.html",
        "Set up two-factor sign-in",
        qr_svg=mark_safe(two_factor.qr_svg(device)),  # noqa: S308 - drawn by qrcode from the device's own link
        secret=two_factor.secret_for_typing(device),
        error=error,
        required=two_factor.enforced_for(user),
        replacing=two_factor.enrolled(user),
    )


@login_required(login_url="admin:login")
def two_factor_verify(request):
    """The second step of signing in: a code from the authenticator app, or a recovery code."""
    user = request.user
    if not two_factor.enrolled(user):
        return redirect(f"{reverse('two_factor_setup')}?{urlencode({'next': _next_url(request)})}")
    if user.is_verified():
        return redirect(_next_url(request))
    if locked := _locked(request):
        return locked
    error = ""
    if request.method == "POST":
        if two_factor.verify(request, user, request.POST.get("code", "")):
            return redirect(_next_url(request))
        if locked := _locked(request):
            return locked
        error = "That code is not right. Type the six digits the app shows now, or one of your recovery codes."
    return _page(request, "tenants/two_factor_verify.html", "Two-factor sign-in", error=error)


# --------------------------------------------------------------------------------------------------------------
# A reseller's logo (tenants.branding)
# --------------------------------------------------------------------------------------------------------------


def brand_logo(request, pk: int) -> HttpResponse:
    """A reseller's logo, to anyone: it heads its pages and the e-mails it sends, which mail clients fetch without
    signing in. Its URL carries a hash of the image, so it may be cached for long."""
    row = Reseller.objects.filter(pk=pk).exclude(brand_logo_type="").values("brand_logo", "brand_logo_type").first()
    if row is None or not row["brand_logo"]:
        raise Http404("No logo.")
    response = HttpResponse(bytes(row["brand_logo"]), content_type=row["brand_logo_type"])
    response["Cache-Control"] = "public, max-age=86400"
    return response
