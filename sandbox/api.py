"""The simulated Wavix REST API under /sandbox/wavix/: the endpoints the portal calls, as the spec describes them.

Behaviour worth knowing when testing against it:
- `Authorization: Bearer <key>` of a SandboxAccount, else 401 with Wavix's body;
- more than the account's `rate_limit_per_second` calls in one second → 429;
- an account with `failing_until` in the future answers 500 to everything (an outage);
- an account's `answer_delay_ms` delays every answer (a round trip across the internet);
- sender IDs are allow-listed at once except in MANUAL_ALLOWLIST countries, which wait for a staff action on
  the sandbox page; alphanumeric senders are refused for the US and Canada;
- messages: 201, then delivery reports to `callback_url` (else the account's DLR endpoint): `sent` after about
  a second, then `delivered` — or `undelivered` for a destination ending in UNDELIVERED_SUFFIX; a destination
  ending in SLOW_SUFFIX is accepted but answered only after SLOW_SECONDS (longer than the portal's timeout).
"""

import json
import logging
import math
import time
import uuid
from functools import wraps

from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt

from sandbox import phones
from sandbox.models import SandboxAccount, SandboxMessage, SandboxNumber, SandboxSenderID
from sandbox.spec import SpecRequest, SpecResponse, request_problems, response_problems
from sandbox.tasks import DELIVERY_REPORT

logger = logging.getLogger(__name__)

PREFIX = "/sandbox/wavix"
MANUAL_ALLOWLIST = frozenset("AE BD BH EG ID IN JO KE KW KZ LK MY NG OM PH PK QA RU SA SG TH TR UA UZ VN".split())
NO_ALPHANUMERIC = frozenset({"US", "CA", "PR"})
UNDELIVERED_SUFFIX = "0000"
SLOW_SUFFIX = "0999"
SLOW_SECONDS = 20


class WavixError(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


def _json(status: int, data) -> tuple[int, bytes]:
    return status, json.dumps(data).encode()


def _error(status: int, message: str) -> tuple[int, bytes]:
    body = {"success": False, "message": message}
    if status == 401:
        body = {"success": False, "error": True, "message": message}
    return _json(status, body)


def _authenticate(request) -> SandboxAccount | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    return SandboxAccount.objects.filter(api_key=header.removeprefix("Bearer ").strip()).first()


def _over_rate_limit(account: SandboxAccount) -> bool:
    key = f"sandbox-rate:{account.pk}:{int(time.time())}"
    cache.add(key, 0, timeout=5)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        count = 1
    return count > account.rate_limit_per_second


def wavix_endpoint(handler):
    """Authenticate, apply faults and limits, validate the request and the response against the spec."""

    @csrf_exempt
    @wraps(handler)
    def view(request, *args, **kwargs):
        spec_request = SpecRequest(
            request.method,
            request.path.removeprefix(PREFIX),
            query=request.GET,
            headers={"Authorization": request.headers.get("Authorization", "")},
            body=request.body,
        )
        account = _authenticate(request)
        if account is None:
            status, data = _error(401, "Unauthorized")
        elif account.is_failing:
            status, data = _error(500, "Internal server error")
        elif account.is_throttled or _over_rate_limit(account):
            status, data = _error(429, "Too many requests")
        elif problem := request_problems(spec_request):
            logger.info("sandbox: %s %s refused by the spec: %s", request.method, request.path, problem.details)
            status, data = _error(400, f"Missing or invalid parameter {problem.parameter}")
        else:
            body = json.loads(request.body) if request.body else {}
            try:
                status, data = handler(request, account, body, *args, **kwargs)
            except WavixError as error:
                status, data = _error(error.status, error.message)
            if problem := response_problems(spec_request, SpecResponse(status, data)):
                logger.error("sandbox: response to %s %s breaks the spec: %s", request.method, request.path, problem)
                if settings.TESTING:
                    raise AssertionError(f"sandbox response breaks the Wavix spec: {problem}")
        if account is not None and account.answer_delay_ms:
            time.sleep(account.answer_delay_ms / 1000)
        response = HttpResponse(data, status=status, content_type="application/json")
        if status == 429:
            response["Retry-After"] = "1"
        return response

    return view


def _digits(number: str) -> str:
    return number.strip().lstrip("+")


def _iso(moment) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _pagination(request, total: int, default_per_page: int = 25) -> tuple[int, int, dict]:
    page = max(int(request.GET.get("page", 1)), 1)
    per_page = min(max(int(request.GET.get("per_page", default_per_page)), 1), 100)
    pages = math.ceil(total / per_page) if total else 0
    return page, per_page, {"current_page": page, "per_page": per_page, "total": total, "total_pages": pages}


# ---------------------------------------------------------------------------------------------------------------
# Profile and sub-organizations
# ---------------------------------------------------------------------------------------------------------------


def _profile(account: SandboxAccount) -> dict:
    return {
        "id": account.pk,
        "email": account.email,
        "first_name": account.name,
        "last_name": None,
        "phone": None,
        "additional_info": None,
        "contact_email": account.email,
        "timezone": "UTC",
        "job_title": None,
        "default_short_link_endpoint": None,
        # Wavix lists default endpoints as transport/value pairs; "dlr" is the sandbox's name for the DLR one.
        "default_destinations": [
            {"transport": transport, "value": url}
            for transport, url in (("sms", account.sms_relay_url), ("dlr", account.dlr_relay_url))
            if url
        ],
        "company_info": None,
    }


@wavix_endpoint
def profile(request, account, body):
    if request.method == "PUT":
        for field in ("sms_relay_url", "dlr_relay_url"):
            if field in body:
                setattr(account, field, body[field] or "")
        account.save(update_fields=["sms_relay_url", "dlr_relay_url"])
    return _json(200, _profile(account))


@wavix_endpoint
def sub_organizations(request, account, body):
    destinations = body.get("default_destinations") or {}
    child = SandboxAccount.objects.create(
        name=body["name"],
        parent=account,
        email=account.email,
        sms_relay_url=destinations.get("sms_endpoint") or "",
        dlr_relay_url=destinations.get("dlr_endpoint") or "",
    )
    return _json(
        200,
        {
            "id": child.pk,
            "created_at": _iso(child.created_at),
            "name": child.name,
            "api_key": child.api_key,
            "master_organization": account.pk,
            "status": "enabled",
            "default_destinations": {"sms_endpoint": child.sms_relay_url, "dlr_endpoint": child.dlr_relay_url},
        },
    )


# ---------------------------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------------------------


def _number(number: SandboxNumber) -> dict:
    added = number.added
    return {
        "id": number.pk,
        "number": number.number,
        "activation_fee": "0.00",
        "monthly_fee": "1.00",
        "per_min": "0.0100",
        "city": number.city or "Sandbox City",
        "state": None,
        "country": number.country,
        "country_short_name": number.country,
        "destination": [],
        "channels": 2,
        "require_docs": [],
        "documents": [],
        "label": number.label or None,
        "status": "active",
        "seconds": "0",
        "added": _iso(added),
        "paid_until": added.replace(year=added.year + 1).date().isoformat(),
        "sms_enabled": number.sms_enabled,
        "sms_relay_url": number.sms_relay_url or None,
        "cnam": False,
        "call_recording_enabled": False,
        "transcription_enabled": False,
        "transcription_threshold": 0,
        "domestic_cli": False,
    }


@wavix_endpoint
def numbers(request, account, body):
    if request.method == "PATCH":  # bulk update: one patch for every listed number
        found = list(account.numbers.filter(pk__in=body["ids"]))
        if len(found) != len(set(body["ids"])):
            raise WavixError(404, "Record not found")
        for number in found:
            if "sms_relay_url" in body:
                number.sms_relay_url = body["sms_relay_url"] or ""
            if "sms_enabled" in body:
                number.sms_enabled = body["sms_enabled"]
        SandboxNumber.objects.bulk_update(found, ["sms_relay_url", "sms_enabled"])
        return _json(200, {"items": [_number(n) for n in found]})
    rows = account.numbers.order_by("id")
    page, per_page, pagination = _pagination(request, rows.count())
    items = [_number(n) for n in rows[(page - 1) * per_page : page * per_page]]
    return _json(200, {"items": items, "doc_types": [], "pagination": pagination})


@wavix_endpoint
def number(request, account, body, number_id: int):
    found = account.numbers.filter(pk=number_id).first()
    if found is None:
        raise WavixError(404, "Record not found")
    if request.method == "PATCH":
        if "sms_relay_url" in body:
            found.sms_relay_url = body["sms_relay_url"] or ""
        if "sms_enabled" in body:
            found.sms_enabled = body["sms_enabled"]
        found.save()
    return _json(200, _number(found))


# ---------------------------------------------------------------------------------------------------------------
# Sender IDs
# ---------------------------------------------------------------------------------------------------------------


def _sender(sender: SandboxSenderID) -> dict:
    return {
        "id": str(sender.uid),
        "sender_id": sender.sender_id,
        "type": sender.type,
        "allowlisted_in": sender.allowlisted_in,
        "usecase": sender.usecase,
        "samples": sender.samples,
    }


@wavix_endpoint
def sender_ids(request, account, body):
    if request.method == "GET":
        return _json(200, {"items": [_sender(s) for s in account.sender_ids.all()]})
    countries = sorted({c.upper() for c in body["countries"]})
    if body["type"] == "alphanumeric" and NO_ALPHANUMERIC & set(countries):
        raise WavixError(400, "Missing or invalid parameter countries")
    if (
        body["type"] == "numeric"
        and not account.numbers.filter(number=_digits(body["sender_id"]), sms_enabled=True).exists()
    ):
        raise WavixError(400, "Missing or invalid parameter sender_id")
    if account.sender_ids.filter(sender_id=body["sender_id"]).exists():
        raise WavixError(400, "Sender ID already exists")
    sender = SandboxSenderID.objects.create(
        account=account,
        sender_id=body["sender_id"],
        type=body["type"],
        countries=countries,
        allowlisted_in=[c for c in countries if c not in MANUAL_ALLOWLIST],
        usecase=body["usecase"],
        samples=body.get("samples") or [],
        monthly_volume=body.get("monthly_volume") or "",
    )
    return _json(201, _sender(sender))


@wavix_endpoint
def sender_id(request, account, body, uid: str):
    try:
        sender = account.sender_ids.filter(uid=uuid.UUID(uid)).first()
    except ValueError:
        sender = None
    if sender is None:
        raise WavixError(404, "Record not found")
    if request.method == "DELETE":
        sender.delete()
        return _json(200, {"success": True})
    return _json(200, _sender(sender))


# ---------------------------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------------------------


def _message(message: SandboxMessage) -> dict:
    return {
        "message_id": str(message.uid),
        "message_type": "mms" if message.media else "sms",
        "from": message.from_number,
        "to": message.to_number,
        "direction": message.direction,
        "message_body": {"text": message.text, "media": message.media},
        "tag": message.tag or None,
        "status": message.status,
        "segments": message.segments,
        "charge": f"{0.0075 * message.segments:.4f}",
        "carrier_fees": "0.0",
        "submitted_at": _iso(message.submitted_at),
        "sent_at": _iso(message.sent_at),
        "delivered_at": _iso(message.delivered_at),
        "error_message": message.error_message or None,
        "mcc": None,
        "mnc": None,
    }


def _segments(text: str) -> int:
    is_gsm = all(ord(ch) < 128 for ch in text)
    single, part = (160, 153) if is_gsm else (70, 67)
    return 1 if len(text) <= single else math.ceil(len(text) / part)


def _sender_may_send(account: SandboxAccount, sender: str, country: str) -> bool:
    if sender.isdigit() or sender.startswith("+"):
        return account.numbers.filter(number=_digits(sender), sms_enabled=True).exists()
    return any(country in s.allowlisted_in for s in account.sender_ids.filter(sender_id=sender))


@wavix_endpoint
def messages(request, account, body):
    if request.method == "GET":
        return _list_messages(request, account)
    to = _digits(body["to"])
    country = phones.country_of_digits(to)
    if not country:
        raise WavixError(400, "Missing or invalid parameter to")
    if not _sender_may_send(account, body["from"], country):
        raise WavixError(400, f"Sender ID is not provisioned for {country}")
    media = body["message_body"].get("media") or None
    if media and country not in ("US", "CA"):
        raise WavixError(400, "MMS is supported in the US and Canada only")
    text = body["message_body"].get("text") or ""
    message = SandboxMessage.objects.create(
        account=account,
        from_number=body["from"],
        to_number=to,
        text=text,
        media=media,
        tag=body.get("tag") or "",
        callback_url=body.get("callback_url") or "",
        segments=1 if media else _segments(text),
    )
    final = "undelivered" if to.endswith(UNDELIVERED_SUFFIX) else "delivered"
    DELIVERY_REPORT.soon(message.pk, "sent", countdown=1)
    DELIVERY_REPORT.soon(message.pk, final, countdown=3)
    if to.endswith(SLOW_SUFFIX):
        time.sleep(SLOW_SECONDS)  # accepted, but the answer comes too late: the caller cannot know
    return _json(201, _message(message))


def _list_messages(request, account):
    rows = account.messages.filter(direction=request.GET["type"]).order_by("-id")
    if request.GET.get("sent_after"):
        after = parse_datetime(request.GET["sent_after"])
        if after is None:
            raise WavixError(400, "Missing or invalid parameter sent_after")
        rows = rows.filter(submitted_at__gt=after if timezone.is_aware(after) else timezone.make_aware(after))
    for param, field in (("tag", "tag"), ("from", "from_number"), ("to", "to_number"), ("status", "status")):
        if request.GET.get(param):
            value = request.GET[param]
            rows = rows.filter(**{field: _digits(value) if param == "to" else value})
    page, per_page, pagination = _pagination(request, rows.count())
    items = [_message(m) for m in rows[(page - 1) * per_page : page * per_page]]
    return _json(200, {"items": items, "pagination": pagination})


@csrf_exempt
def inject(request):
    """Not a Wavix endpoint: make the sandbox deliver an inbound text, as if a phone texted one of its numbers.

    POST {"to": "+1415…", "from": "+4477…", "text": "…"} with the account's Bearer key; answers where the text
    was POSTed and what that endpoint answered.
    """
    account = _authenticate(request)
    if request.method != "POST" or account is None:
        status, data = _error(401 if account is None else 405, "Unauthorized" if account is None else "POST only")
        return HttpResponse(data, status=status, content_type="application/json")
    try:
        body = json.loads(request.body)
        number = account.numbers.get(number=_digits(body["to"]))
    except (ValueError, KeyError, TypeError, SandboxNumber.DoesNotExist):
        status, data = _error(400, "Missing or invalid parameter to")
        return HttpResponse(data, status=status, content_type="application/json")
    url, answered, note = phones.inject_inbound(
        number,
        str(body.get("from") or "+447700900123"),
        str(body.get("text") or ""),
        lose_webhook=bool(body.get("lose_webhook")),
    )
    data = json.dumps({"relayed_to": url or None, "status": answered, "answer": note}).encode()
    return HttpResponse(data, status=200, content_type="application/json")
