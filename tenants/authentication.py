"""API authentication and permission, kept apart from the viewsets: DRF imports these while loading its views."""

import logging
from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.throttling import SimpleRateThrottle

from tenants import access
from tenants.models import ApiToken

logger = logging.getLogger(__name__)

# Writing last_used_at on every request would turn each GET into a write; once a minute says enough.
LAST_USED_GRANULARITY = timedelta(minutes=1)


class ApiTokenAuthentication(BaseAuthentication):
    """`Authorization: Token pmp_…` (or `Bearer pmp_…`) → the token's user."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in (b"token", b"bearer"):
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Send the header as `Authorization: Token <token>`.")
        token = ApiToken.authenticate(parts[1].decode("latin-1"))
        if token is None or not token.user.is_active or (token.tenant_id and token.tenant.status != "active"):
            raise AuthenticationFailed("Unknown or revoked token.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_GRANULARITY:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request) -> str:
        return "Token"


_ACTION_OF_METHOD: dict[str, access.Action] = {"POST": "add", "PUT": "change", "PATCH": "change", "DELETE": "delete"}


class AccessPermission(BasePermission):
    """Every API permission comes from tenants.access.

    On a detail URL the object is looked up first, so another tenant's id answers 404 whatever the method.
    """

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not access.has_portal_access(user):
            return False
        queryset = getattr(view, "queryset", None)
        if queryset is None:
            return True  # views without a model (schema, docs) only need a portal login
        if request.method in SAFE_METHODS:
            return access.can(user, "view", queryset.model)
        if view.lookup_url_kwarg in view.kwargs or view.lookup_field in view.kwargs:
            return True  # decided per object, after the 404 check
        action = _ACTION_OF_METHOD.get(request.method, "change")
        if action == "add":
            action = getattr(view, "create_action", "add")  # e.g. messages are sent, not added
        return access.can(user, action, queryset.model)

    def has_object_permission(self, request, view, obj) -> bool:
        if request.method in SAFE_METHODS:
            return True  # the queryset already holds only visible rows
        return access.can(request.user, _ACTION_OF_METHOD.get(request.method, "change"), obj)


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Describes the token header in the OpenAPI schema."""

    target_class = ApiTokenAuthentication
    name = "ApiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token pmp_…` — create one under API tokens in the portal.",
        }


def token_tenant(request):
    """The tenant a tenant API token is limited to, or None (a personal token, or a browser session)."""
    token = getattr(request, "auth", None)
    return token.tenant if isinstance(token, ApiToken) and token.tenant_id else None


class TokenRateThrottle(SimpleRateThrottle):
    """Requests per token (or per user, for a browser session): API_TOKEN_RATE."""

    scope = "api_token"

    def allow_request(self, request, view) -> bool:
        # The limit guards the portal from a runaway client; the sending rate at Wavix is kept by each account's
        # own limiter. With the cache down the request goes through unlimited: refusing it (or answering 500)
        # would stop every API client for as long as Redis is away, though the database could take the send.
        try:
            return super().allow_request(request, view)
        except Exception:  # noqa: BLE001 - any cache failure: redis-py's, or the file cache's OSError
            logger.warning("api: the cache is unreachable; %s is not rate-limited for now", self.scope)
            return True

    def get_cache_key(self, request, view):
        token = getattr(request, "auth", None)
        ident = f"token-{token.pk}" if isinstance(token, ApiToken) else f"user-{request.user.pk}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
