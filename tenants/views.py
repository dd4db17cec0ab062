"""The page an invitation e-mail links to: the person invited accepts or declines it."""

from django.contrib import admin, messages
from django.contrib.auth import login
from django.contrib.auth.forms import SetPasswordForm
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from tenants import services
from tenants.models import Membership


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
