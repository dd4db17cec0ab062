"""What routing makes of an inbound text (issue 14): its real encoding and segments (item 13)."""

import json

import pytest

from messaging import services
from messaging.models import Message, WebhookEvent
from tests import factories as f

S = Message.Status


def route() -> int:
    return services.events_process()


# --------------------------------------------------------------------------------------------------------------
# Inbound encoding and segments (item 13)
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "media", "encoding", "segments"),
    [
        ("Hello", None, "gsm7", 1),
        ("x" * 160, None, "gsm7", 1),
        ("x" * 161, None, "gsm7", 2),  # 153 characters per part once there are several
        ("€" * 80, None, "gsm7", 1),  # the extension table: two septets each
        ("€" * 81, None, "gsm7", 2),
        ("Привет, как дела?", None, "ucs2", 1),
        ("😀" * 1600, None, "ucs2", 48),  # two UTF-16 units each: 3,200 units, 67 per part
        ("x" * 400, ["https://example.com/a.jpg"], "gsm7", 1),  # an MMS is one message
    ],
)
def test_an_inbound_text_records_its_real_encoding_and_segments(tenant, text, media, encoding, segments):
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    trunk = f.TrunkFactory(tenant=tenant, sms_enabled=True)
    f.PhoneNumberFactory(account=account, tenant=tenant, trunk=trunk, number="+14155550100")
    body = {"message_id": "m-1", "from": "447700900001", "to": "14155550100", "message_body": {"text": text}}
    body["message_body"]["media"] = media
    WebhookEvent.objects.create(account=account, kind="inbound", dedup_key="m-1", body=json.dumps(body).encode())
    route()
    message = Message.objects.get()
    assert (message.status, message.encoding, message.segments) == (S.RECEIVED, encoding, segments)
