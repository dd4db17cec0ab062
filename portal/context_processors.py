from django.conf import settings

from tenants.access import may_see_webhook_urls


def sandbox(request) -> dict:
    """Lets pages link to the Wavix sandbox when it is on, for those who may open it (see sandbox.views)."""
    return {"sandbox_enabled": settings.SANDBOX_ENABLED and may_see_webhook_urls(getattr(request, "user", None))}
