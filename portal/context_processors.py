from django.conf import settings

from tenants.access import may_see_webhook_urls


def sandbox(request) -> dict:
    """Lets pages link to the Wavix sandbox when it is on, for those who may open it (see sandbox.views)."""
    user = getattr(request, "user", None)  # none on a page answered before the auth middleware ran
    return {"sandbox_enabled": settings.SANDBOX_ENABLED and user is not None and may_see_webhook_urls(user)}
