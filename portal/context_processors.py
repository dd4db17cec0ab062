from django.conf import settings


def sandbox(request) -> dict:
    """Lets every page link to the Wavix sandbox when it is on."""
    return {"sandbox_enabled": settings.SANDBOX_ENABLED}
