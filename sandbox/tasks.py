"""The sandbox playing Wavix's asynchronous side: delivery reports after a message was accepted."""

import logging

import requests
from celery import shared_task
from django.conf import settings
from django.utils import timezone

from messaging import dispatch
from messaging.models import Trunk
from portal.logging import mask_webhook_secret
from sandbox.models import SandboxMessage
from sandbox.spec import schema_problems

logger = logging.getLogger(__name__)


def delivery_report(message: SandboxMessage) -> dict:
    """The body Wavix POSTs for a status change (MessagesDeliveryReport)."""
    return {
        "message_id": str(message.uid),
        "message_type": "mms" if message.media else "sms",
        "from": message.from_number,
        "to": message.to_number,
        "status": message.status,
        "sent": message.sent_at.strftime("%Y-%m-%dT%H:%M:%S") if message.sent_at else None,
        "delivered": message.delivered_at.strftime("%Y-%m-%dT%H:%M:%S") if message.delivered_at else None,
        "segments_count": message.segments,
        "charge": f"{0.0075 * message.segments:.4f}",
        "carrier_fees": "0.0",
        "tag": message.tag or None,
        "error": message.error_message or None,
    }


# Queued by the sandbox's Wavix API for each message it accepts (sandbox/api.py).
DELIVERY_REPORT = dispatch.Job("the sandbox's delivery report for a message it accepted")


@DELIVERY_REPORT.runs
@shared_task
def sandbox_delivery_report(message_id: int, status: str) -> None:
    """Move a simulated message to `status` and POST its delivery report, as Wavix would."""
    message = SandboxMessage.objects.select_related("account").get(pk=message_id)
    now = timezone.now()
    message.status = status
    if status == "sent":
        message.sent_at = message.sent_at or now
    else:
        message.delivered_at = now
        if status == "undelivered":
            message.error_message = "Handset unreachable"
    message.save()
    url = message.callback_url or message.account.dlr_relay_url
    if not url:
        return
    report = delivery_report(message)
    if problem := schema_problems("MessagesDeliveryReport", report):
        raise AssertionError(f"sandbox delivery report breaks the Wavix spec: {problem}")
    try:
        requests.post(url, json=report, timeout=(3, 10))
    except requests.RequestException as error:
        # Wavix's own retry behaviour is undocumented; the sandbox tries once and says so.
        shown = mask_webhook_secret(url)  # the portal's DLR URL carries its secret: never in a log line
        logger.info("sandbox: delivery report for %s to %s failed: %s", message.uid, shown, type(error).__name__)
    if settings.DEBUG:
        logger.info("sandbox: delivery report %s → %s", status, mask_webhook_secret(url))


SANDBOX_REPLY_TEXT = "Got it! (a reply from the sandbox phone)"


@dispatch.SANDBOX_REPLY.runs
@shared_task
def sandbox_reply_inject(trunk_id: int) -> str:
    """The setup wizard's "reply from your phone": the sandbox phone texts the trunk's number back, over HTTP
    through the sandbox's inject endpoint (the sandbox then calls the portal's webhook, as Wavix would)."""
    trunk = Trunk.objects.select_related("main_sender__account").get(pk=trunk_id)
    sender = trunk.main_sender
    assert sender is not None and sender.account is not None  # the wizard offers the reply only after both are set
    account = sender.account
    answer = requests.post(
        f"{settings.WAVIX_API_URL}/_inject",
        json={"to": sender.value, "from": trunk.setup_progress["test_to"], "text": SANDBOX_REPLY_TEXT},
        headers={"Authorization": f"Bearer {account.get_api_key()}"},
        timeout=30,
    )
    return f"HTTP {answer.status_code}"
