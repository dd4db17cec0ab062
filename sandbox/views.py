"""Sandbox pages: play Wavix staff (allow-list a country), cause faults, inject inbound texts, run fake 3CX inboxes.

Served only when SANDBOX_ENABLED, to reseller admins and operators and platform staff: the pages change only
simulated state, but they show what Wavix's console would (every account's keys and relay URLs, the portal's webhook
secrets among them), which no tenant viewer may see.
"""

import functools
import json
import time
from datetime import timedelta

from django.contrib import admin, messages
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from sandbox import phones
from sandbox.models import (
    FakePbxInbox,
    FakePbxRequest,
    SandboxAccount,
    SandboxMessage,
    SandboxNumber,
    SandboxSenderID,
)
from tenants.access import has_portal_access, may_see_webhook_urls

FAKE_PBX_TIMEOUT_SECONDS = 30


def sandbox_user(view):
    """Signed-out people go to the sign-in page; signed-in people who may not see webhook URLs get a 404."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if not has_portal_access(request.user):
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not may_see_webhook_urls(request.user):
            raise Http404("No such page.")
        return view(request, *args, **kwargs)

    return wrapper


def _post_only(view):
    def wrapper(request, *args, **kwargs):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        return view(request, *args, **kwargs)

    wrapper.__name__ = view.__name__
    return wrapper


@sandbox_user
def index(request):
    """The sandbox at a glance: accounts and their keys, numbers, sender IDs, messages, fake 3CX inboxes."""
    context = {
        **admin.site.each_context(request),
        "title": "Sandbox: simulated Wavix and 3CX",
        "accounts": SandboxAccount.objects.prefetch_related("numbers", "sender_ids"),
        "recent_messages": SandboxMessage.objects.select_related("account")[:20],
        "inboxes": FakePbxInbox.objects.prefetch_related("requests", "sends"),
        "modes": FakePbxInbox.Mode.choices,
        "templates": FakePbxInbox.Template.choices,
    }
    return TemplateResponse(request, "sandbox/index.html", context)


# ---------------------------------------------------------------------------------------------------------------
# Wavix-side actions
# ---------------------------------------------------------------------------------------------------------------


@sandbox_user
@_post_only
def account_create(request):
    account = SandboxAccount.objects.create(name=request.POST.get("name") or "Sandbox account")
    messages.success(request, f"Created sandbox account {account} with API key {account.api_key}.")
    return redirect("sandbox:index")


@sandbox_user
@_post_only
def account_outage(request, account_id: int):
    account = get_object_or_404(SandboxAccount, pk=account_id)
    minutes = int(request.POST.get("minutes") or 0)
    account.failing_until = timezone.now() + timedelta(minutes=minutes) if minutes > 0 else None
    account.save(update_fields=["failing_until"])
    messages.success(request, f"{account} answers 500 for {minutes} minutes." if minutes else f"{account} is back.")
    return redirect("sandbox:index")


@sandbox_user
@_post_only
def number_create(request):
    account = get_object_or_404(SandboxAccount, pk=request.POST.get("account"))
    digits = (request.POST.get("number") or "").strip().lstrip("+")
    if not digits.isdigit() or not phones.country_of_digits(digits):
        messages.error(request, f"{digits!r} is not a phone number.")
        return redirect("sandbox:index")
    SandboxNumber.objects.get_or_create(
        number=digits, defaults={"account": account, "country": phones.country_of_digits(digits), "sms_enabled": True}
    )
    return redirect("sandbox:index")


@sandbox_user
@_post_only
def number_relay(request, number_id: int):
    """Change a number's SMS relay URL as someone clicking in Wavix's own portal would (drift)."""
    number = get_object_or_404(SandboxNumber, pk=number_id)
    number.sms_relay_url = request.POST.get("sms_relay_url", "").strip()
    number.save(update_fields=["sms_relay_url"])
    messages.success(request, f"+{number.number} now relays to {number.sms_relay_url or '(nothing)'}.")
    return redirect("sandbox:index")


@sandbox_user
@_post_only
def sender_allowlist(request, sender_id: int):
    """Play Wavix's provisioning team: allow-list a country that waited for paperwork."""
    sender = get_object_or_404(SandboxSenderID, pk=sender_id)
    country = request.POST.get("country", "").upper()
    if country in sender.countries and country not in sender.allowlisted_in:
        sender.allowlisted_in = sorted([*sender.allowlisted_in, country])
        sender.save(update_fields=["allowlisted_in"])
        messages.success(request, f"{sender} is allow-listed in {country}.")
    return redirect("sandbox:index")


@sandbox_user
@_post_only
def inject(request, number_id: int):
    """Send an inbound text to a number, as if a mobile phone replied."""
    number = get_object_or_404(SandboxNumber.objects.select_related("account"), pk=number_id)
    url, status, note = phones.inject_inbound(
        number, request.POST.get("from") or "+447700900123", request.POST.get("text") or ""
    )
    level = messages.SUCCESS if status and 200 <= status < 300 else messages.ERROR
    messages.add_message(
        request, level, f"Inbound text to +{number.number} → {url or '—'}: {status or 'no answer'} {note}"
    )
    return redirect("sandbox:index")


# ---------------------------------------------------------------------------------------------------------------
# Fake 3CX
# ---------------------------------------------------------------------------------------------------------------


@sandbox_user
@_post_only
def inbox_create(request):
    inbox = FakePbxInbox.objects.create(label=request.POST.get("label") or "Fake 3CX")
    messages.success(request, f"Fake 3CX inbox {inbox}: {request.build_absolute_uri(inbox_url(inbox))}")
    return redirect("sandbox:index")


@sandbox_user
@_post_only
def inbox_mode(request, inbox_id: int):
    inbox = get_object_or_404(FakePbxInbox, pk=inbox_id)
    inbox.mode = request.POST.get("mode", FakePbxInbox.Mode.OK)
    minutes = int(request.POST.get("minutes") or 5)
    inbox.mode_until = timezone.now() + timedelta(minutes=minutes) if inbox.mode != FakePbxInbox.Mode.OK else None
    inbox.save(update_fields=["mode", "mode_until"])
    return redirect("sandbox:index")


@sandbox_user
@_post_only
def inbox_settings(request, inbox_id: int):
    """The SMS tab of the fake 3CX: which template, and the Provider URL and key typed into it."""
    inbox = get_object_or_404(FakePbxInbox, pk=inbox_id)
    inbox.sms_template = request.POST.get("sms_template") or FakePbxInbox.Template.GENERIC
    inbox.provider_url = (request.POST.get("provider_url") or "").strip()
    inbox.api_key = (request.POST.get("api_key") or "").strip()
    inbox.save(update_fields=["sms_template", "provider_url", "api_key"])
    messages.success(request, f"{inbox}: SMS settings saved.")
    return redirect("sandbox:index")


@sandbox_user
@_post_only
def inbox_send(request, inbox_id: int):
    """A user of the fake 3CX sends a text from the 3CX app."""
    inbox = get_object_or_404(FakePbxInbox, pk=inbox_id)
    send = phones.send_from_app(
        inbox, request.POST.get("from") or "", request.POST.get("to") or "", request.POST.get("text") or ""
    )
    level = messages.SUCCESS if send.shown_as_sent else messages.ERROR
    shown = "sent" if send.shown_as_sent else "failed"
    messages.add_message(request, level, f"3CX shows the text as {shown}: {send.status_code or '—'} {send.answer}")
    return redirect("sandbox:index")


@csrf_exempt
def fake_3cx_send(request, token: str):
    """Not a 3CX endpoint: make the fake 3CX's app send a text (for scripts and tests). POST {"from", "to", "text",
    "media_urls"?}; the inbox's token (its webhook URL's secret) is the guard. Answers what 3CX got back."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    inbox = get_object_or_404(FakePbxInbox, token=token)
    try:
        body = json.loads(request.body)
        send = phones.send_from_app(
            inbox, str(body["from"]), str(body["to"]), str(body.get("text") or ""), body.get("media_urls") or ()
        )
    except (ValueError, KeyError, TypeError):
        return HttpResponse(json.dumps({"error": "POST JSON with from, to and text."}), status=400)
    answer = {"shown_as_sent": send.shown_as_sent, "status": send.status_code, "answer": send.answer}
    return HttpResponse(json.dumps(answer), status=200, content_type="application/json")


def inbox_url(inbox: FakePbxInbox) -> str:
    return reverse("sandbox:fake-3cx", args=[inbox.token])


@csrf_exempt
def fake_3cx(request, token: str):
    """A 3CX trunk's webhook: keeps every POST (body byte for byte, headers, time) and answers per its mode."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    inbox = get_object_or_404(FakePbxInbox, token=token)
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if len(request.body) < declared:
        # The sender died between its headers and the end of its body (a worker killed mid-POST): a web server in
        # front of a real 3CX drops such a request, so 3CX never sees it. Nothing is kept; nobody reads the answer.
        return HttpResponse(status=400)
    mode = inbox.current_mode()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in ("cookie", "authorization")}
    FakePbxRequest.objects.create(inbox=inbox, headers=headers, body=request.body, answered=mode)
    if mode == FakePbxInbox.Mode.TIMEOUT:
        time.sleep(FAKE_PBX_TIMEOUT_SECONDS)
        return HttpResponse(status=504)
    if mode == FakePbxInbox.Mode.ERROR_500:
        return HttpResponse(json.dumps({"error": "internal"}), status=500, content_type="application/json")
    if mode == FakePbxInbox.Mode.ERROR_404:
        return HttpResponse(status=404)
    return HttpResponse(json.dumps({"ok": True}), status=200, content_type="application/json")
