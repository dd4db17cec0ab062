"""Operational endpoints."""

import time

from django.conf import settings
from django.contrib import admin
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from kombu import Connection

BROKER_TIMEOUT_SECONDS = 2


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def _broker_ok() -> bool:
    try:
        with Connection(
            settings.CELERY_BROKER_URL,
            transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
            connect_timeout=BROKER_TIMEOUT_SECONDS,
        ) as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
            # Opening a channel is what talks to the server (a Redis PING, a folder check).
            conn.default_channel  # noqa: B018
        return True
    except Exception:
        return False


def _worker_ages() -> dict[str, int | None]:
    """Seconds since each queue's worker last ran its heartbeat; None if never seen (informational)."""
    try:
        seen = cache.get_many([f"worker-heartbeat:{q}" for q in settings.WORKER_QUEUES])
    except Exception:
        return {}
    now = time.time()
    return {
        q: (round(now - seen[f"worker-heartbeat:{q}"]) if f"worker-heartbeat:{q}" in seen else None)
        for q in settings.WORKER_QUEUES
    }


@never_cache
def healthz(request) -> JsonResponse:
    """200 when the database and the broker answer; 503 naming whichever does not."""
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    failing = [name for name, ok in checks.items() if not ok]
    body: dict[str, object] = {
        "status": "ok" if not failing else "unavailable",
        **{name: "ok" if ok else "unreachable" for name, ok in checks.items()},
        "worker_heartbeat_age_seconds": _worker_ages(),
    }
    if failing:
        body["failing"] = failing
    return JsonResponse(body, status=503 if failing else 200)


def _error_page(request, status: int, title: str, explanation: str) -> HttpResponse:
    """An error page in the portal's look: inside the admin (sidebar and all) for a signed-in member, plain for
    anyone else — the sidebar lists only what the person may open, so it gives nothing away."""
    from tenants.access import has_portal_access

    context = {"title": title, "explanation": explanation, "status": status}
    user = getattr(request, "user", None)  # none when the error came before the auth middleware
    if user is not None and has_portal_access(user):
        context.update(admin.site.each_context(request))
        return render(request, "portal/error.html", context, status=status)
    return render(request, "portal/error_plain.html", context, status=status)


def permission_denied(request, exception=None) -> HttpResponse:
    """403: the page exists and is not for this person (a tenant viewer opening webhook events)."""
    return _error_page(
        request, 403, "Not available to you", "Your role does not include this page. Ask your reseller's admin."
    )


def page_not_found(request, exception=None) -> HttpResponse:
    """404: nothing here, or nothing this person may see (another tenant's row answers the same)."""
    return _error_page(
        request, 404, "Page not found", "There is nothing here, or it is not yours to see. Check the address."
    )
