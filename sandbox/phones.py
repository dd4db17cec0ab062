"""The phones on the far side of the simulated Wavix: which country a number is in, a text a phone sends to a
sandbox number (kept, as Wavix lists it, and POSTed to the number's relay URL), and a text a fake 3CX's app sends
(send_from_app). Both the API (sandbox.api: its send and inject endpoints) and the pages (sandbox.views) use these."""

import uuid
from collections.abc import Sequence
from typing import Any

import phonenumbers
import requests
from django.conf import settings
from django.utils import timezone

from sandbox.models import FakePbxInbox, FakePbxSend, SandboxMessage, SandboxNumber
from sandbox.spec import schema_problems

RELAY_TIMEOUT = (3, 10)


def country_of_digits(digits: str) -> str:
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse("+" + digits)) or ""
    except phonenumbers.NumberParseException:
        return ""


def inbound_message(from_number: str, to_number: str, text: str) -> dict:
    """An inbound text as Wavix POSTs it (InboundMessage): digits without +, a fresh message_id."""
    return {
        "message_id": str(uuid.uuid4()),
        "from": from_number.lstrip("+"),
        "to": to_number.lstrip("+"),
        "message_body": {"text": text, "media": None},
        "received_at": timezone.now().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
    }


def inject_inbound(
    number: SandboxNumber, from_number: str, text: str, *, lose_webhook: bool = False
) -> tuple[str, int | None, str]:
    """Receive a text for the number: keep it (Wavix lists it under GET /v3/messages?type=inbound) and POST it
    to the number's relay URL, else the account default — unless the webhook is to be lost on the way.
    Returns (url, status, note)."""
    body = inbound_message(from_number, number.number, text)
    SandboxMessage.objects.create(
        uid=body["message_id"],
        account=number.account,
        direction="inbound",
        from_number=body["from"],
        to_number=body["to"],
        text=text,
        status="delivered",
    )
    url = number.sms_relay_url or number.account.sms_relay_url
    if lose_webhook:
        return url, None, "The webhook was lost on purpose (reconciliation will find the text)."
    if not url:
        return "", None, "The number has no SMS relay URL and the account no default endpoint."
    if problem := schema_problems("InboundMessage", body):
        raise AssertionError(f"sandbox inbound message breaks the Wavix spec: {problem}")
    try:
        response = requests.post(url, json=body, timeout=RELAY_TIMEOUT)
    except requests.RequestException as error:
        return url, None, f"{type(error).__name__}: no answer"
    is_page = "html" in response.headers.get("Content-Type", "")
    return url, response.status_code, response.reason if is_page else response.text[:200]


APP_SEND_TIMEOUT = (3, 15)


def send_from_app(inbox: FakePbxInbox, from_number: str, to: str, text: str, media: Sequence[str] = ()) -> FakePbxSend:
    """A 3CX user's text, sent the way 3CX sends it with the inbox's SMS settings, and the answer kept.

    Generic template: POST {"from", "to", "text"} (+ media_urls) to the Provider URL with the key as a Bearer token
    (DESIGN.md §8). Wavix template: POST Wavix's own shape to Wavix's /v3/messages with the account's key, no
    callback URL (Wavix then reports to the account's default endpoint).
    """
    if inbox.sms_template == FakePbxInbox.Template.WAVIX:
        url = f"{settings.WAVIX_API_URL}/v3/messages"
        body: dict[str, Any] = {
            "from": from_number.lstrip("+"),
            "to": to.lstrip("+"),
            "message_body": {"text": text, "media": list(media) or None},
        }
    else:
        url = inbox.provider_url
        body = {"from": from_number, "to": to, "text": text}
        if media:
            body["media_urls"] = list(media)
    send = FakePbxSend(inbox=inbox, url=url, body=body)
    if not url or not inbox.api_key:
        send.answer = "Type the Provider URL and the API key into this 3CX's SMS settings first."
    else:
        try:
            response = requests.post(
                url, json=body, headers={"Authorization": f"Bearer {inbox.api_key}"}, timeout=APP_SEND_TIMEOUT
            )
            send.status_code, send.answer = response.status_code, response.text[:2000]
        except requests.RequestException as error:
            send.answer = f"{type(error).__name__}: no answer"
    send.save()
    return send
