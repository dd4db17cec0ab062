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
from django.utils import timezone

from messaging.models import WebhookEvent, WebhookSecret
from messaging.services import webhook_secret_rotate
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


@pytest.mark.parametrize(
    "url_of,body,reason",
    [
        ("inbound", b"not json", "The body is not JSON."),
        ("inbound", b"[1, 2]", "The body is not a JSON object."),
        ("inbound", {"to": "447712345661"}, "Missing or invalid message_id."),
        ("inbound", {"message_id": "x"}, "Missing or invalid to."),
        ("inbound", {"message_id": "x", "to": "call me"}, "to is not a phone number."),
        ("inbound", {"message_id": True, "to": "447712345661"}, "Missing or invalid message_id."),
        ("inbound", {"message_id": "x" * 101, "to": "447712345661"}, "message_id is too long."),
        ("dlr", {"message_id": "x"}, "Missing or invalid status."),
        ("dlr", {"status": "sent"}, "Missing or invalid message_id."),
        ("10dlc", {"brand_id": "B1"}, "Missing or invalid status."),
        ("inbound", b"\xff\xfe", "The body is not JSON."),
    ],
)
def test_a_bad_body_gets_400_with_the_reason_and_leaves_no_row(client, account, url_of, body, reason):
    response = post(client, account.webhook_url(url_of), body)
    assert (response.status_code, response.json()["detail"]) == (400, reason)
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


@pytest.mark.parametrize(
    "body",
    [
        {"message_id": "x", "to": "1234", "message_body": "not an object"},
        {"message_id": 12345, "to": 447712345661},
        {"message_id": "x", "to": "+447712345661", "from": {"weird": True}, "message_body": {"text": None, "media": 7}},
        {"message_id": "\u202ex", "to": "447712345661", "from": "\U0001f600"},
    ],
)
def test_odd_but_acceptable_bodies_are_stored_not_crashed_on(client, account, body):
    assert post(client, account.inbound_webhook_url, body).status_code == 200


def test_a_nul_character_is_refused_not_a_database_error(client, account):
    response = post(client, account.inbound_webhook_url, {"message_id": "a\u0000b", "to": "447712345661"})
    assert (response.status_code, response.json()["detail"]) == (400, "message_id contains a NUL character.")


def test_a_report_whose_key_would_not_fit_its_column_is_stored_under_a_digest(client, account):
    body = {"message_id": "m" * 100, "status": "s" * 100}  # each part at its limit; together 201 characters
    assert post(client, account.dlr_webhook_url, body).status_code == 200
    key = WebhookEvent.objects.get().dedup_key
    assert len(key) <= 200 and key.startswith("m" * 100 + ":sha256:")
    assert post(client, account.dlr_webhook_url, body).json()["detail"] == "Duplicate: already received."


@pytest.mark.parametrize(
    "body,reason",
    [
        (b"[" * 5000 + b"]" * 5000, "The body is nested too deeply."),
        ({"status": "ok", "brand_id": "b\u0000"}, "brand_id contains a NUL character."),
        ({"status": "ok", "campaign_id": "c" * 101}, "campaign_id is too long."),
        ({"status": "ok", "number": {"n": 1}}, "Missing or invalid number."),
    ],
)
def test_bodies_that_once_got_a_500_or_503_get_400_with_the_reason(client, account, body, reason):
    url = account.inbound_webhook_url if isinstance(body, bytes) else account.tendlc_webhook_url
    response = post(client, url, body)
    assert (response.status_code, response.json()["detail"]) == (400, reason)
    assert not WebhookEvent.objects.exists()


def test_a_recipient_in_superscript_digits_is_not_a_phone_number(client, account):
    response = post(client, account.inbound_webhook_url, {"message_id": "m1", "to": "\u00b2\u00b3"})
    assert (response.status_code, response.json()["detail"]) == (400, "to is not a phone number.")


def test_a_burst_asks_for_a_routing_drain_at_most_every_interval_and_once_after_its_last_webhook(
    client, account, monkeypatch
):
    """The intake does not ask the cache on every webhook; a webhook stored in a quiet interval is still seen by
    a drain asked for after it (not left for the 10 s sweeper)."""
    import time

    from django.core.cache import cache

    from messaging.services import relay

    time.sleep(2.5 * relay.ASK_EVERY_SECONDS)  # an ask an earlier test left scheduled has been made
    monkeypatch.setattr(relay, "_asked_at", {})  # and this process has not asked lately
    monkeypatch.setattr(relay, "_broker_down_until", 0.0)  # an earlier test's broker outage is over
    cache.delete(relay.EVENTS_FLAG)
    post(client, account.inbound_webhook_url, INBOUND)  # asks: the drain flag is set
    assert cache.get(relay.EVENTS_FLAG)
    relay._drain_started(relay.EVENTS_FLAG)  # a worker starts that drain (it will not see what comes next)
    post(client, account.inbound_webhook_url, {**INBOUND, "message_id": "second"})
    assert not cache.get(relay.EVENTS_FLAG)  # folded into the interval: no cache call on this webhook
    deadline = time.monotonic() + 5
    while not cache.get(relay.EVENTS_FLAG) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cache.get(relay.EVENTS_FLAG)  # asked again when the interval ended, after the second was stored


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
