"""The second factor, before anything else (tenants.two_factor says who and how)."""

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode

from tenants import two_factor

# What a signed-in person reaches before the second factor: those pages themselves, signing out, static files, the
# logos those pages show, and an invitation's page (answering it comes before anything else).
OPEN_PREFIXES = ("/accounts/two-factor/", "/admin/logout/", "/accounts/logout/", "/static/", "/brand/", "/invitations/")


class TwoFactorMiddleware:
    """A person signed in with a password but not yet with their second factor reaches only OPEN_PREFIXES: they are
    sent to give the code (or, if they must use one and have none yet, to set it up). Requests that do not come
    from a signed-in session (API tokens, webhooks, 3CX) are not its business."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            refused = self._gate(request)
        except (OperationalError, InterfaceError):
            # The database is down (reading the session or the devices): the view meets the same error, which
            # portal.middleware.DatabaseUnavailableMiddleware answers with a 503, not a 500.
            refused = None
        return refused or self.get_response(request)

    def _gate(self, request: HttpRequest) -> HttpResponse | None:
        """Where to send a person who owes a second factor, or None to let the request through."""
        user = request.user
        verified = getattr(user, "is_verified", None)  # django_otp's OTPMiddleware, just before, adds it
        if not user.is_authenticated or request.path.startswith(OPEN_PREFIXES) or (verified and verified()):
            return None
        if request.headers.get("Authorization"):  # the API's token: checked by the API, not a session's business
            return None
        if request.session.get(two_factor.NO_SECOND_FACTOR) == user.pk:
            return None
        if two_factor.enrolled(user):
            target = "two_factor_verify"
        elif two_factor.enforced_for(user):
            target = "two_factor_setup"
        else:
            # Neither set up nor required (a session from before two_factor.note_at_sign_in): noted once.
            request.session[two_factor.NO_SECOND_FACTOR] = user.pk
            return None
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": "Give your second factor first: sign in again in the portal."}, status=403)
        return redirect(f"{reverse(target)}?{urlencode({'next': request.get_full_path()})}")
