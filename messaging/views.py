"""Wavix's webhooks, and 3CX's provider endpoint (the texts 3CX's users send, below).

Wavix's webhooks: stored as received before anything else happens, answered at once, processed after.

Answers: 200 once the event is stored (or was already: a duplicate); 404 for a wrong or retired secret (or a
source address the account does not accept); 413 for a body over WEBHOOK_MAX_BYTES; 400 with the reason for
a body that is not a JSON object (or is nested too deeply to read) or not of its kind's shape (messaging.webhooks
names the field and what it must be), and nothing is stored; 503 when the database cannot store it, so Wavix
tries again. A broker outage does not matter here: the periodic sweeper dispatches what was stored. Django's log
lines for 4xx and 5xx answers show the path with its secret masked (portal.logging.WebhookSecretFilter).
"""

import hmac
import json
import logging

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from messaging import dispatch, metrics, webhooks
from messaging.models import ProviderKey, WebhookEvent, WebhookSecret, relay_partition
from messaging.services import provider

logger = logging.getLogger(__name__)

KINDS = {"inbound": WebhookEvent.Kind.INBOUND, "dlr": WebhookEvent.Kind.DLR, "10dlc": WebhookEvent.Kind.TENDLC}


class BodyTooLarge(Exception):
    pass


def _answer(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"status": status, "detail": detail}, status=status)


def _read_body(request) -> bytes:
    limit = settings.WEBHOOK_MAX_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise BodyTooLarge
    body = request.read(limit + 1)  # a chunked body has no length to trust: read one byte past the limit
    if len(body) > limit:
        raise BodyTooLarge
    return body


@csrf_exempt
def wavix_webhook(request, secret: str, kind: str):
    """Accept one webhook from Wavix: answer 200 only once it is stored."""
    if kind not in KINDS:
        return _answer(404, "Not found.")
    if request.method != "POST":
        return _answer(405, "POST only.")
    outcome, response = _intake(request, secret, KINDS[kind])
    metrics.count("webhook", KINDS[kind], outcome)
    return response


def _intake(request, secret: str, kind: str) -> tuple[str, JsonResponse]:
    """Store the webhook if it may be stored; returns the outcome (for the metrics) and the answer.

    The common case — a live secret, an account open to any source, a new webhook — is one statement
    (WebhookEvent.store_by_secret). Anything else takes the long way, which decides between 404, 413, 400 and
    duplicate exactly as before: a wrong secret is a 404 whatever the body.
    """
    try:
        try:
            body, too_large = _read_body(request), False
        except BodyTooLarge:
            body, too_large = b"", True
        payload, problem = (None, None) if too_large else webhooks.parse(kind, body)
        partition = relay_partition(webhooks.conversation_key(kind, payload)) if payload is not None else 0
        if payload is not None and WebhookEvent.store_by_secret(
            secret=secret, kind=kind, dedup_key=webhooks.dedup_key(kind, payload), body=body, partition=partition
        ):
            dispatch.EVENTS_DRAIN.ask_at_most_every()
            return "accepted", _answer(200, "Accepted.")
        account = WebhookSecret.find_account(secret)
        if account is None or not account.accepts_source(request.META.get("REMOTE_ADDR", "")):
            return "not_found", _answer(404, "Not found.")
        if too_large:
            return "too_large", _answer(413, f"The body is larger than {settings.WEBHOOK_MAX_BYTES} bytes.")
        if problem:
            return "bad_request", _answer(400, problem)
        assert payload is not None  # parse() gives a payload whenever it finds no problem
        key = webhooks.dedup_key(kind, payload)
        if not WebhookEvent.store(account_id=account.pk, kind=kind, dedup_key=key, body=body, partition=partition):
            return "duplicate", _answer(200, "Duplicate: already received.")
    except DatabaseError:
        logger.exception("webhook intake: the database could not store a %s webhook", kind)
        return "unavailable", _answer(503, "Cannot store the webhook right now; please retry.")
    dispatch.EVENTS_DRAIN.ask_at_most_every()
    return "accepted", _answer(200, "Accepted.")


# ---------------------------------------------------------------------------------------------------------------
# 3CX's Generic SMS provider: POST /3cx/<trunk>/messages
# ---------------------------------------------------------------------------------------------------------------

AUTH_FAILURES = "provider:auth-failures:{}"  # per source address


def _refusal(refused: provider.Refused) -> JsonResponse:
    return JsonResponse(refused.as_json(), status=refused.status)


def _auth_failures(address: str, *, add: bool) -> int:
    """Wrong or missing keys from this address in the current window (one more if `add`); 0 without a cache."""
    key, window = AUTH_FAILURES.format(address), settings.PROVIDER_AUTH_WINDOW_SECONDS
    try:
        if add:
            cache.add(key, 0, timeout=window)  # the window starts at the first failure
            return int(cache.incr(key))
        return int(cache.get(key) or 0)
    except Exception:  # noqa: BLE001 - the cache being down costs the throttle, never a text
        logger.warning("3cx provider: the cache is down; wrong keys are not being counted")
        return 0


@csrf_exempt
def provider_messages(request, trunk_id: int):
    """A text 3CX's user sent: 200 with the portal's message (Telnyx's shape) once it is stored and queued — before
    any call to Wavix; 401 for a missing or wrong key, 429 once an address sent too many; 400/403/422 with
    Telnyx-style errors naming the reason, nothing stored. See messaging.services.provider."""
    if request.method != "POST":
        return _refusal(provider.Refused(405, "Method not allowed", "POST a message."))
    # Keys are 256 random bits: no throttle is needed against guessing them. What it does is answer a flood of
    # wrong keys from one address with 429 — and only wrong ones: behind a proxy every 3CX shares the proxy's
    # address, and a stranger's wrong keys must not stop the tenants' texts.
    given = request.headers.get("Authorization", "")
    key = given[7:].strip() if given[:7].lower() == "bearer " else ""
    trunk = ProviderKey.trunk_for(trunk_id, key) if key else None
    if trunk is None:
        address = request.META.get("REMOTE_ADDR", "")
        if _auth_failures(address, add=True) > settings.PROVIDER_AUTH_FAILURE_LIMIT:
            metrics.count("provider", "throttled")
            response = _refusal(provider.Refused(429, "Too many requests", "Too many wrong keys from this address."))
            response["Retry-After"] = str(settings.PROVIDER_AUTH_WINDOW_SECONDS)
            return response
        metrics.count("provider", "unauthorized")
        detail = "Wrong provider key for this URL." if key else "Send the provider key as Authorization: Bearer <key>."
        return _refusal(provider.Refused(401, "Unauthorized", detail))
    try:
        body = _read_body(request)
        taken = provider.message_from_3cx(trunk, json.loads(body))
    except BodyTooLarge:
        return _refusal(provider.Refused(413, "Too large", f"The body is over {settings.WEBHOOK_MAX_BYTES} bytes."))
    except (ValueError, provider.Refused) as error:  # ValueError: not JSON (JSONDecodeError, UnicodeDecodeError)
        refused = error if isinstance(error, provider.Refused) else provider.Refused(400, "Invalid body", "Not JSON.")
        metrics.count("provider", "refused")
        logger.info("3cx provider: trunk %s: refused (%s): %s", trunk.pk, refused.status, refused.detail)
        provider.refusal_note(trunk, refused)
        return _refusal(refused)
    except DatabaseError:
        logger.exception("3cx provider: the database could not store a text of trunk %s", trunk.pk)
        return _refusal(provider.Refused(503, "Unavailable", "Cannot store the message right now; please retry."))
    metrics.count("provider", "repeated" if taken.repeated else "accepted")
    return JsonResponse(provider.answer(taken.message), status=200)


def prometheus_metrics(request):
    """The portal's counters and gauges in Prometheus format, for a bearer token or a signed-in platform user."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    allowed = (token and hmac.compare_digest(given.encode(), token.encode())) or (
        request.user.is_authenticated and request.user.is_active and request.user.is_staff
    )
    if not allowed:
        return _answer(404, "Not found.")
    registry = CollectorRegistry()
    registry.register(metrics.PortalCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
