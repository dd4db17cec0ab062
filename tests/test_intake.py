"""Webhook intake: every input gets its answer, nothing bad leaves a row, nothing accepted is lost."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from messaging import dispatch
from messaging.models import WebhookEvent, WebhookSecret
from messaging.services.accounts import webhook_secret_rotate
from tests import factories as f
from tests.conftest import test_database_url

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
INBOUND = {
    "message_id": "3c7a5a90-43e0-43e0-b006-fdfea30c5a7c",
    "from": "43720115661",
    "to": "447712345661",
    "message_body": {"text": "SMS message", "media": None},
    "received_at": "2022-04-14T13:51:16.096Z",
}


@pytest.fixture
def account(tenant):
    return f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)


def post(client, url, body, **extra):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.generic("POST", url, data, content_type="application/json", **extra)


def test_an_inbound_webhook_is_stored_byte_for_byte_and_answered_200(client, account):
    raw = json.dumps(INBOUND, separators=(",", ":")).encode()
    response = post(client, account.inbound_webhook_url, raw)
    assert (response.status_code, response.json()["detail"]) == (200, "Accepted.")
    event = WebhookEvent.objects.get()
    assert (bytes(event.body), event.kind, event.dedup_key, event.state) == (
        raw,
        "inbound",
        INBOUND["message_id"],
        "pending",
    )


def test_a_duplicate_answers_200_and_creates_nothing(client, account):
    post(client, account.inbound_webhook_url, INBOUND)
    response = post(client, account.inbound_webhook_url, INBOUND)
    assert (response.status_code, response.json()["detail"]) == (200, "Duplicate: already received.")
    assert WebhookEvent.objects.count() == 1


def test_delivery_reports_are_deduplicated_per_status(client, account):
    for status in ("sent", "delivered", "delivered"):
        assert post(client, account.dlr_webhook_url, {"message_id": "m1", "status": status}).status_code == 200
    assert sorted(WebhookEvent.objects.values_list("dedup_key", flat=True)) == ["m1:delivered", "m1:sent"]


ID_RULE = "a non-empty string of at most 64 characters, without control characters"


@pytest.mark.parametrize(
    "url_of,body,reason",
    [
        ("inbound", b"not json", "The body is not JSON."),
        ("inbound", b"[1, 2]", "The body is not a JSON object."),
        ("inbound", {**INBOUND, "message_id": None}, f"message_id is missing: it must be {ID_RULE}."),
        ("inbound", {**INBOUND, "to": None}, "to is missing: it must be a phone number: at most 19 digits, with or"),
        ("inbound", {**INBOUND, "to": "call me"}, "to must be a phone number: at most 19 digits, with or without a"),
        ("inbound", {**INBOUND, "message_id": True}, f"message_id must be {ID_RULE}."),
        ("inbound", {**INBOUND, "message_id": 12345}, f"message_id must be {ID_RULE}."),
        ("inbound", {**INBOUND, "to": 447712345661}, "to must be a phone number"),
        ("inbound", {**INBOUND, "from": {"weird": True}}, "from must be a phone number or a sender name of at"),
        ("dlr", {"message_id": "x"}, "status is missing: it must be one of accepted, pending, sent, delivered,"),
        ("dlr", {"message_id": "x", "status": "lost"}, "status must be one of accepted, pending, sent, delivered,"),
        ("dlr", {"status": "sent"}, f"message_id is missing: it must be {ID_RULE}."),
        ("10dlc", {"brand_id": "B1"}, "status is missing: it must be one of SELF_DECLARED, UNVERIFIED, VERIFIED,"),
        ("10dlc", {"status": "APPROVED"}, f"brand_id is missing: it must be {ID_RULE}."),
        ("inbound", b"\xff\xfe", "The body is not JSON."),
    ],
)
def test_a_bad_body_gets_400_with_the_reason_and_leaves_no_row(client, account, url_of, body, reason):
    response = post(client, account.webhook_url(url_of), body)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(reason)
    assert not WebhookEvent.objects.exists()


def test_a_body_over_the_limit_gets_413(client, account, settings):
    settings.WEBHOOK_MAX_BYTES = 1024
    big = {**INBOUND, "message_body": {"text": "x" * 2000, "media": None}}
    assert post(client, account.inbound_webhook_url, big).status_code == 413
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("secret", ["wrong-secret-0123456789abcdef", "x", "a" * 200, "../../etc"])
def test_a_wrong_secret_answers_404_and_leaves_no_row(client, account, secret):
    assert post(client, f"/webhooks/wavix/{secret}/inbound/", INBOUND).status_code == 404
    assert not WebhookEvent.objects.exists()


def test_an_unknown_kind_or_a_get_is_refused(client, account):
    assert post(client, account.webhook_url("voice"), INBOUND).status_code == 404
    assert client.get(account.inbound_webhook_url).status_code == 405


def test_a_source_address_outside_the_allowlist_answers_404(client, account):
    account.source_ips = "62.212.73.112"
    account.save()
    assert post(client, account.inbound_webhook_url, INBOUND, REMOTE_ADDR="203.0.113.9").status_code == 404
    assert post(client, account.inbound_webhook_url, INBOUND, REMOTE_ADDR="62.212.73.112").status_code == 200


def test_secrets_are_stored_hashed_and_encrypted_never_plain(account):
    secret = account.webhook_secret()
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_hash, secret_encrypted FROM messaging_webhooksecret")
        stored = " ".join(cursor.fetchone())
    assert secret not in stored and len(secret) >= 32  # 24 random bytes: 192 bits


def test_a_rotated_secret_keeps_working_until_retired(client, account, reseller_admin):
    old_url = account.inbound_webhook_url
    webhook_secret_rotate(actor=reseller_admin, account=account, overlap=timedelta(hours=1))
    account.refresh_from_db()
    new_url = account.inbound_webhook_url
    assert new_url != old_url
    assert post(client, old_url, INBOUND).status_code == 200  # the overlap window
    assert post(client, new_url, {**INBOUND, "message_id": "second"}).status_code == 200
    WebhookSecret.objects.filter(retire_at__isnull=False).update(retire_at=timezone.now() - timedelta(seconds=1))
    assert post(client, old_url, {**INBOUND, "message_id": "third"}).status_code == 404
    assert account.webhook_secrets.count() == 2


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_with_the_database_down_the_answer_is_503_so_wavix_retries():
    script = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client().post('/webhooks/wavix/abcdefghijklmnopqrstuvwxyz012345/inbound/', '{}',"
        " content_type='application/json');"
        "print(r.status_code)"
    )
    env = {**os.environ, "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip().splitlines()[-1] == "503", result.stderr[-2000:]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_with_the_broker_and_cache_down_the_event_is_stored_and_answered_200(account):
    """The event is safe in the database; the periodic sweeper dispatches it when the broker is back."""
    url = test_database_url()
    script = (
        "import django, json, time; django.setup();"
        "from django.test import Client;"
        f"body = json.dumps({INBOUND!r});"
        "started = time.monotonic();"
        f"r = Client().post({urlsplit(account.inbound_webhook_url).path!r}, body, content_type='application/json');"
        "print(r.status_code, round(time.monotonic() - started, 1))"
    )
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens: both the cache and the broker are down
        "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=90
    )
    status, seconds = result.stdout.strip().splitlines()[-1].split()
    assert status == "200", result.stderr[-2000:]
    assert float(seconds) < 10
    assert WebhookEvent.objects.get().state == "pending"


# ---------------------------------------------------------------------------------------------------------------
# Each kind's shape (messaging/webhooks.py): what Wavix's spec says, lengths from the columns, lenient where Wavix
# varies. A refused body gets a 400 naming the field; nothing is stored.
# ---------------------------------------------------------------------------------------------------------------

DLR = {"message_id": "871b4eeb-f798-4105-be23-32df9e991456", "status": "delivered"}
TENDLC = {"brand_id": "BX12JH90", "campaign_id": "CX34KL56", "number": "17029641104", "status": "APPROVED"}
BODIES = {"inbound": INBOUND, "dlr": DLR, "10dlc": TENDLC}


def refused(client, account, kind, body) -> str:
    """The 400's reason, after checking that nothing was stored."""
    response = post(client, account.webhook_url(kind), body)
    assert response.status_code == 400, response.content
    assert not WebhookEvent.objects.exists()
    return response.json()["detail"]


def test_an_80_character_message_id_is_refused_not_answered_200_and_lost_on_its_64_character_column(client, account):
    reason = refused(client, account, "inbound", {**INBOUND, "message_id": "m" * 80})
    assert reason == f"message_id must be {ID_RULE}."


def test_an_inbound_message_id_of_exactly_its_columns_length_is_stored(client, account):
    assert post(client, account.inbound_webhook_url, {**INBOUND, "message_id": "m" * 64}).status_code == 200


def test_media_that_is_not_a_list_is_refused_not_forwarded_as_one_letter_urls(client, account):
    reason = refused(client, account, "inbound", {**INBOUND, "message_body": {"text": "Hi", "media": "notalist"}})
    assert reason == "message_body.media must be a list of URL strings (http or https) or null."


@pytest.mark.parametrize("media", [[7], ["notaurl"], ["ftp://example.com/a.png"], ["https://"], ["http://["]])
def test_media_that_are_not_urls_are_refused(client, account, media):
    reason = refused(client, account, "inbound", {**INBOUND, "message_body": {"text": "Hi", "media": media}})
    assert reason.startswith("message_body.media must be a list of URL strings")


@pytest.mark.parametrize("message_body", ["x", ["text"], 7, None])
def test_a_message_body_that_is_not_an_object_is_refused(client, account, message_body):
    reason = refused(client, account, "inbound", {**INBOUND, "message_body": message_body})
    assert reason.startswith("message_body ") and "an object with text and media" in reason


def test_a_text_that_is_not_a_string_is_refused(client, account):
    reason = refused(client, account, "inbound", {**INBOUND, "message_body": {"text": ["Hi"], "media": None}})
    assert reason == "message_body.text must be a string without NUL characters, or null."


@pytest.mark.parametrize("sender", ["", "   ", "4" * 20, "A sender name longer than twenty", "Acme\nDental", 4477])
def test_a_sender_that_would_be_cut_or_garbled_on_its_way_to_3cx_is_refused(client, account, sender):
    # "4" * 20 is stored as "+" and 20 digits: 21 characters for a 20-character column (and 3CX's remote number).
    reason = refused(client, account, "inbound", {**INBOUND, "from": sender})
    assert reason.startswith("from ") and "a phone number or a sender name of at most 20 characters" in reason


@pytest.mark.parametrize("to", ["+" + "1" * 20, "\u00b2\u00b3", "", "1 415 555 0100", "+-1"])
def test_a_recipient_that_is_not_a_phone_number_that_fits_is_refused(client, account, to):
    reason = refused(client, account, "inbound", {**INBOUND, "to": to})
    assert reason.startswith("to ") and "a phone number: at most 19 digits, with or without a leading +" in reason


@pytest.mark.parametrize("received_at", ["yesterday", "2026-02-30T10:00:00Z", 1764000000])
def test_a_received_at_that_is_not_a_timestamp_is_refused(client, account, received_at):
    reason = refused(client, account, "inbound", {**INBOUND, "received_at": received_at})
    assert reason == "received_at must be an ISO 8601 date and time (with or without a zone) or null."


@pytest.mark.parametrize(
    "kind,body,field",
    [
        ("10dlc", {**TENDLC, "brand_id": "b" * 65}, "brand_id"),
        ("10dlc", {**TENDLC, "campaign_id": "c" * 65}, "campaign_id"),
        ("10dlc", {**TENDLC, "brand_id": "b\u0000"}, "brand_id"),
        ("10dlc", {**TENDLC, "number": {"n": 1}}, "number"),
        ("10dlc", {**TENDLC, "number": "1" * 16}, "number"),
        ("10dlc", {**TENDLC, "status": "VERIFIED_BY_SOMEONE"}, "status"),
        ("dlr", {**DLR, "message_id": "m" * 65}, "message_id"),
        ("dlr", {**DLR, "status": "DELIVERED"}, "status"),
    ],
)
def test_reports_and_10dlc_statuses_are_refused_when_a_field_the_portal_acts_on_is_bad(
    client, account, kind, body, field
):
    assert refused(client, account, kind, body).startswith(f"{field} must be ")


@pytest.mark.parametrize(
    "kind,field,value",
    [
        ("inbound", "message_id", "m\ud800"),
        ("inbound", "from", "\udfff"),
        ("inbound", "to", "\ud800"),
        ("inbound", "message_body.text", "Hi \ud83d"),  # the first half of an emoji, without its second
        ("inbound", "message_body.media[0]", "https://example.com/\udc00.png"),
        ("inbound", "received_at", "2026-12-04T10:00:00\ud800"),
        ("inbound", "carrier", "\ud800"),  # a field the portal does not read: it is forwarded to 3CX byte for byte
        ("dlr", "message_id", "\ud800"),
        ("dlr", "status", "\ud800"),
        ("dlr", "error", "Handset \ud800"),
        ("dlr", "tag", "\ud800"),
        ("10dlc", "brand_id", "\ud800"),
        ("10dlc", "campaign_id", "\ud800"),
        ("10dlc", "number", "\ud800"),
        ("10dlc", "status", "\ud800"),
    ],
)
def test_a_lone_utf16_surrogate_in_any_field_gets_400_naming_it_not_a_500(client, account, kind, field, value):
    body = json.loads(json.dumps(BODIES[kind]))
    if field == "message_body.media[0]":
        body["message_body"]["media"] = [value]
    elif field == "message_body.text":
        body["message_body"]["text"] = value
    else:
        body[field] = value
    raw = json.dumps(body).encode()  # ensure_ascii: the surrogate travels as its \\uXXXX escape, as Wavix's would
    assert b"\\ud" in raw or b"\\udfff" in raw
    reason = refused(client, account, kind, raw)
    assert reason == f"{field} contains a lone UTF-16 surrogate (an unpaired \\ud800–\\udfff escape): send UTF-8 text."


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32-le"])
def test_a_lone_surrogate_is_refused_in_every_encoding_json_reads(client, account, encoding):
    raw = json.dumps({**INBOUND, "message_id": "m\ud800"}).encode(encoding)
    assert refused(client, account, "inbound", raw).startswith("message_id contains a lone UTF-16 surrogate")


def test_a_lone_surrogate_in_a_key_is_refused_and_the_answer_carries_it_escaped(client, account):
    reason = refused(client, account, "inbound", b'{"message_id": "m1", "x\\ud800": 1}')
    assert reason.startswith("x\\ud800 contains a lone UTF-16 surrogate")


def test_a_complete_surrogate_pair_is_an_emoji_and_accepted(client, account):
    raw = json.dumps({**INBOUND, "message_body": {"text": "Hi \U0001f600", "media": None}}).encode()
    assert b"\\ud83d\\ude00" in raw
    assert post(client, account.inbound_webhook_url, raw).status_code == 200


@pytest.mark.parametrize(
    "kind,changes",
    [
        ("inbound", {"to": "+447712345661", "from": "+43720115661"}),  # numbers with a +
        ("inbound", {"from": "Wavix"}),  # an alphanumeric sender
        ("inbound", {"from": "\U0001f600"}),
        ("inbound", {"message_id": "\u202ex"}),
        ("inbound", {"from": "4" * 19}),  # "+" and 19 digits: exactly the column
        ("inbound", {"received_at": "2022-04-14T13:51:16"}),  # no zone
        ("inbound", {"received_at": "2022-04-14 13:51:16.096+02:00"}),
        ("inbound", {"received_at": None}),
        ("inbound", {"message_type": "mms", "message_body": {"text": None, "media": ["https://example.com/a.jpg"]}}),
        ("inbound", {"message_body": {"text": "Hi"}}),  # media missing
        ("inbound", {"message_body": {}}),
        ("inbound", {"extra": {"whatever": [1, 2]}, "tag": None}),
        ("dlr", {"segments_count": "lots", "charge": "NaN", "sent": "never", "from": 7}),  # side fields: see relay
        ("dlr", {"message_id": "m" * 64}),
        ("10dlc", {"status": "approved"}),  # any case
        ("10dlc", {"campaign_id": None, "number": None, "status": "VETTED_VERIFIED"}),  # a brand's status
        ("10dlc", {"campaign_id": "", "number": "+17029641104"}),
    ],
)
def test_what_wavix_really_varies_is_accepted(client, account, kind, changes):
    body = {**BODIES[kind], **changes}
    assert post(client, account.webhook_url(kind), body).status_code == 200
    assert bytes(WebhookEvent.objects.get().body) == json.dumps(body).encode()


@pytest.mark.parametrize("missing", ["received_at", "message_type"])
def test_an_inbound_message_without_fields_the_portal_does_not_need_is_accepted(client, account, missing):
    body = {key: value for key, value in {**INBOUND, "message_type": "sms"}.items() if key != missing}
    assert post(client, account.inbound_webhook_url, body).status_code == 200


def test_the_longest_webhook_of_each_kind_fits_its_columns_and_its_dedup_key(client, account):
    longest = {
        "inbound": {**INBOUND, "message_id": "m" * 64, "from": "S" * 20, "to": "+" + "4" * 19},
        "dlr": {**DLR, "message_id": "m" * 64, "status": "dlr_expired"},
        "10dlc": {"brand_id": "b" * 64, "campaign_id": "c" * 64, "number": "+" + "1" * 15, "status": "VETTED_VERIFIED"},
    }
    for kind, body in longest.items():
        assert post(client, account.webhook_url(kind), body).status_code == 200, kind
        assert post(client, account.webhook_url(kind), body).json()["detail"] == "Duplicate: already received."
    assert WebhookEvent.objects.count() == 3


def test_the_intakes_statuses_are_the_specs_enums_and_fit_their_columns():
    from messaging import webhooks
    from messaging.models import Message, PhoneNumber
    from sandbox.spec import _components

    schemas = _components()["components"]["schemas"]
    assert set(webhooks.REPORT_STATUSES) == set(schemas["MessageDeliveryStatus"]["enum"])
    assert set(webhooks.REPORT_STATUSES) <= set(Message.Status.values)
    tendlc = ("BrandStatusUpdatedWebhook", "CampaignStatusUpdatedWebhook", "NumberStatusUpdatedWebhook")
    assert set(webhooks.TENDLC_STATUSES) == {
        s for name in tendlc for s in schemas[name]["properties"]["status"]["enum"]
    }
    assert max(map(len, webhooks.TENDLC_STATUSES)) <= PhoneNumber._meta.get_field("tendlc_status").max_length


@pytest.mark.parametrize(
    "kind,schema,body",
    [
        ("inbound", "InboundMessage", {**INBOUND, "message_body": {"text": "Hi", "media": "notalist"}}),
        ("inbound", "InboundMessage", {**INBOUND, "message_body": "x"}),
        ("inbound", "InboundMessage", {**INBOUND, "message_id": 12345}),
        ("inbound", "InboundMessage", {**INBOUND, "from": None}),
        ("inbound", "InboundMessage", {key: value for key, value in INBOUND.items() if key != "to"}),
        ("inbound", "InboundMessage", {**INBOUND, "message_body": {"text": "Hi", "media": [7]}}),
        ("dlr", "MessagesDeliveryReport", {**DLR, "status": "lost"}),
        ("10dlc", "NumberStatusUpdatedWebhook", {**TENDLC, "status": "LOST"}),
        ("10dlc", "BrandStatusUpdatedWebhook", {"status": "VERIFIED"}),
    ],
)
def test_what_the_intake_refuses_the_spec_refuses_too(client, account, kind, schema, body):
    from sandbox.spec import schema_problems

    assert schema_problems(schema, body)
    refused(client, account, kind, body)


def test_the_sandboxs_webhooks_which_follow_the_spec_are_accepted(client, account):
    from sandbox.models import SandboxAccount, SandboxMessage
    from sandbox.tasks import delivery_report
    from sandbox.views import inbound_message

    inbound = inbound_message("+447700900123", "+14155550100", "Hi")
    assert post(client, account.inbound_webhook_url, inbound).status_code == 200
    sent = SandboxMessage.objects.create(
        account=SandboxAccount.objects.create(name="Spec"),
        from_number="Acme",
        to_number="14155550100",
        status="sent",
        sent_at=timezone.now(),
    )
    assert post(client, account.dlr_webhook_url, delivery_report(sent)).status_code == 200


def test_a_webhook_is_stored_for_its_own_account_and_another_reseller_sees_none_of_it(
    client, account, other_tenant, other_admin
):
    other_account = f.WavixAccountFactory(reseller=other_tenant.reseller, tenant=other_tenant)
    assert post(client, account.inbound_webhook_url, INBOUND).status_code == 200
    event = WebhookEvent.objects.get()
    assert event.account == account and not other_account.webhook_events.exists()
    other = Client()
    other.force_login(other_admin)
    assert INBOUND["message_id"] not in other.get("/admin/messaging/webhookevent/").content.decode()
    assert other.get(f"/admin/messaging/webhookevent/{event.pk}/change/").status_code == 404


def test_a_nul_character_is_refused_not_a_database_error(client, account):
    response = post(client, account.inbound_webhook_url, {**INBOUND, "message_id": "a\u0000b"})
    assert (response.status_code, response.json()["detail"]) == (400, f"message_id must be {ID_RULE}.")


def test_a_nul_character_in_the_text_is_refused(client, account):
    reason = refused(client, account, "inbound", {**INBOUND, "message_body": {"text": "a\u0000b", "media": None}})
    assert reason == "message_body.text must be a string without NUL characters, or null."


def test_a_body_nested_too_deeply_to_read_gets_400_not_a_500(client, account):
    response = post(client, account.inbound_webhook_url, b"[" * 5000 + b"]" * 5000)
    assert (response.status_code, response.json()["detail"]) == (400, "The body is nested too deeply.")
    assert not WebhookEvent.objects.exists()


def test_a_burst_asks_for_a_routing_drain_at_most_every_interval_and_once_after_its_last_webhook(
    client, account, monkeypatch
):
    """The intake does not ask the cache on every webhook; a webhook stored in a quiet interval is still seen by
    a drain asked for after it (not left for the 10 s sweeper)."""
    import time

    from django.core.cache import cache

    time.sleep(2.5 * dispatch.ASK_EVERY_SECONDS)  # an ask an earlier test left scheduled has been made
    monkeypatch.setattr(dispatch, "_asked_at", {})  # and this process has not asked lately
    monkeypatch.setattr(dispatch, "_broker_down_until", 0.0)  # an earlier test's broker outage is over
    cache.delete(dispatch.EVENTS_DRAIN.flag)
    post(client, account.inbound_webhook_url, INBOUND)  # asks: the drain flag is set
    assert cache.get(dispatch.EVENTS_DRAIN.flag)
    dispatch.EVENTS_DRAIN.started()  # a worker starts that drain (it will not see what comes next)
    post(client, account.inbound_webhook_url, {**INBOUND, "message_id": "second"})
    assert not cache.get(dispatch.EVENTS_DRAIN.flag)  # folded into the interval: no cache call on this webhook
    deadline = time.monotonic() + 5
    while not cache.get(dispatch.EVENTS_DRAIN.flag) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cache.get(dispatch.EVENTS_DRAIN.flag)  # asked again when the interval ended, after the second was stored


def test_counts_are_sent_to_the_cache_together_within_a_second_without_another_count(client, account):
    import time

    from django.core.cache import cache

    from messaging import metrics

    metrics.flush()
    key = "metrics:webhook:dlr:bad_request"
    before = cache.get(key, 0)
    for _ in range(3):
        post(client, account.dlr_webhook_url, b"not json")
    deadline = time.monotonic() + metrics.FLUSH_SECONDS + 4
    while cache.get(key, 0) < before + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cache.get(key, 0) == before + 3


@pytest.mark.redis
def test_a_flush_returns_only_once_counts_the_timer_was_sending_are_in_the_cache(monkeypatch):
    import threading

    from django.core.cache import cache

    from messaging import metrics

    metrics.flush()
    key = "metrics:webhook:inbound:too_large"
    before = cache.get(key, 0)
    sending, slow = threading.Event(), threading.Event()
    redis_client_class = type(cache._cache)  # each thread has its own cache object: patch what they all use
    real_get_client = redis_client_class.get_client

    class SlowPipeline:  # Redis a round trip away: the timer's flush is still sending when the scrape flushes
        def __init__(self, pipeline):
            self.pipeline = pipeline

        def incrby(self, *args):
            self.pipeline.incrby(*args)

        def execute(self):
            sending.set()
            slow.wait(0.5)
            return self.pipeline.execute()

    class SlowPipelines:
        def __init__(self, client):
            self.client = client

        def pipeline(self, transaction=False):
            return SlowPipeline(self.client.pipeline(transaction=transaction))

        def __getattr__(self, name):
            return getattr(self.client, name)

    monkeypatch.setattr(
        redis_client_class, "get_client", lambda self, *a, **kw: SlowPipelines(real_get_client(self, *a, **kw))
    )
    metrics.count("webhook", "inbound", "too_large")
    timer_flush = threading.Thread(target=metrics.flush)  # as the FLUSH_SECONDS timer would
    timer_flush.start()
    assert sending.wait(5)
    metrics.flush()  # what a scrape does first
    assert cache.get(key, 0) == before + 1
    timer_flush.join()


@pytest.mark.postgres
def test_on_postgresql_the_intake_statement_is_prepared_once_per_connection(client, account):
    """Planning the INSERT … SELECT cost as much as running it; Django's default (no prepared statements at all)
    silently ignored the intake's prepare=True."""
    for n in range(3):
        assert post(client, account.inbound_webhook_url, {**INBOUND, "message_id": f"p{n}"}).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ['INSERT INTO "messaging_webhookevent"%ON CONFLICT%'],
        )
        assert cursor.fetchone()[0] == 1
    assert WebhookEvent.objects.filter(account=account, dedup_key__in=["p0", "p1", "p2"]).count() == 3


def test_an_event_stored_before_surrogates_were_refused_still_shows_on_its_page(client, account, reseller_admin):
    # Rows stored by the earlier intake may hold one: the page showed the body decoded, which no UTF-8 answer holds.
    event = WebhookEvent.objects.create(
        account=account, kind="inbound", dedup_key="old", body=b'{"message_id": "old", "from": "\\ud800"}'
    )
    client.force_login(reseller_admin)
    response = client.get(f"/admin/messaging/webhookevent/{event.pk}/change/")
    assert response.status_code == 200
    assert "&quot;from&quot;: &quot;\\ud800&quot;" in response.content.decode()  # as received
