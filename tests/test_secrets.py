"""Wavix API keys and 3CX webhook URLs: ciphertext at rest, never shown or logged, keys rotatable."""

import logging

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test import RequestFactory, override_settings
from django.urls import reverse

from messaging import crypto
from messaging.models import Trunk, WavixAccount
from portal.logging import SecretsReporterFilter
from tests import factories as f
from tests.conftest import live_db, token_client

pytestmark = pytest.mark.django_db

API_KEY = "wx_live_4Q9zT7pLmN2vB8cX5kJ1"
WEBHOOK_URL = "https://acme.3cx.us/sms/wavix/c0ffee1234567890deadbeef"


def raw_column(table: str, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table}")  # noqa: S608 - fixed names from the test
        return cursor.fetchone()[0]


@pytest.fixture
def captured_logs(caplog):
    """Every log record, SQL included, from everything the test does."""
    caplog.set_level(logging.DEBUG)
    connection.force_debug_cursor = True
    yield caplog
    connection.force_debug_cursor = False


def everything_logged(caplog) -> str:
    return "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)


def test_the_key_column_holds_ciphertext_only(reseller):
    account = f.WavixAccountFactory(reseller=reseller, api_key=API_KEY)
    stored = raw_column("messaging_wavixaccount", "api_key_encrypted")
    assert stored.startswith("gAAAAA")  # a Fernet token
    assert API_KEY not in stored
    assert WavixAccount.objects.get().get_api_key() == API_KEY
    assert account.api_key_last4 == "5kJ1"


@live_db
def test_a_key_saved_in_the_admin_appears_in_no_page_and_no_log(client, reseller_admin, reseller, wavix, captured_logs):
    f.SandboxAccountFactory(api_key=API_KEY)
    client.force_login(reseller_admin)
    response = client.post(
        reverse("admin:messaging_wavixaccount_add"),
        {"reseller": reseller.pk, "name": "Main", "api_key": API_KEY, "send_rate_per_second": 5},
    )
    assert response.status_code == 302
    account = WavixAccount.objects.get()
    pages = [
        client.get(reverse("admin:messaging_wavixaccount_changelist")),
        client.get(reverse("admin:messaging_wavixaccount_change", args=[account.pk])),
        client.get(reverse("admin:messaging_wavixaccount_history", args=[account.pk])),
        client.get(reverse("admin:tenants_auditevent_changelist")),
        client.get("/api/v1/wavix-accounts/"),
        client.get(f"/api/v1/wavix-accounts/{account.pk}/"),
    ]
    for page in pages:
        assert page.status_code == 200
        assert API_KEY not in page.content.decode()
    assert "••••5kJ1" in pages[1].content.decode()
    assert API_KEY not in everything_logged(captured_logs)
    assert account.get_api_key() == API_KEY


@live_db
def test_a_key_saved_through_the_api_is_write_only(operator, reseller, wavix, captured_logs):
    f.SandboxAccountFactory(api_key=API_KEY)
    client = token_client(operator)
    response = client.post("/api/v1/wavix-accounts/", {"name": "Main", "api_key": API_KEY}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert "api_key" not in body and API_KEY not in response.content.decode()
    assert body["api_key_last4"] == "5kJ1"
    assert body["inbound_webhook_url"].endswith("/inbound/") and body["dlr_webhook_url"].endswith("/dlr/")
    assert API_KEY not in everything_logged(captured_logs)


@live_db
def test_replacing_a_key_is_audited_without_the_key(operator, reseller, wavix):
    from tenants.models import AuditEvent

    f.SandboxAccountFactory(api_key=API_KEY)
    f.SandboxAccountFactory(api_key="wx_live_second_key_0042")
    client = token_client(operator)
    account_id = client.post("/api/v1/wavix-accounts/", {"name": "Main", "api_key": API_KEY}, format="json").json()[
        "id"
    ]
    client.patch(f"/api/v1/wavix-accounts/{account_id}/", {"api_key": "wx_live_second_key_0042"}, format="json")
    actions = list(AuditEvent.objects.order_by("id").values_list("action", "changes"))
    assert actions == [("api_key.set", {"api_key_last4": "5kJ1"}), ("api_key.rotated", {"api_key_last4": "0042"})]
    assert WavixAccount.objects.get().get_api_key() == "wx_live_second_key_0042"


def test_an_account_needs_a_key(operator):
    response = token_client(operator).post("/api/v1/wavix-accounts/", {"name": "Main"}, format="json")
    assert response.status_code == 400
    assert "Paste the account's Wavix API key" in response.json()["api_key"][0]
    assert not WavixAccount.objects.exists()


def test_the_3cx_webhook_url_is_stored_encrypted_and_shown_masked(client, operator, tenant, captured_logs):
    response = token_client(operator).post(
        "/api/v1/trunks/",
        {"tenant": tenant.pk, "name": "Main", "pbx_fqdn": "acme.3cx.us", "threecx_webhook_url": WEBHOOK_URL},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["threecx_webhook_url_hint"] == "https://acme.3cx.us/…beef"
    assert WEBHOOK_URL not in response.content.decode()
    assert WEBHOOK_URL not in raw_column("messaging_trunk", "threecx_webhook_url_encrypted")
    client.force_login(operator)
    page = client.get(reverse("admin:messaging_trunk_change", args=[Trunk.objects.get().pk])).content.decode()
    assert WEBHOOK_URL not in page and "https://acme.3cx.us/…beef" in page
    assert WEBHOOK_URL not in everything_logged(captured_logs)
    assert Trunk.objects.get().get_threecx_webhook_url() == WEBHOOK_URL


def test_old_rows_still_decrypt_after_a_new_key_is_put_in_front(settings, reseller):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old_key]
    f.WavixAccountFactory(reseller=reseller, api_key=API_KEY)
    trunk = f.TrunkFactory(tenant=f.TenantFactory(reseller=reseller))
    trunk.set_threecx_webhook_url(WEBHOOK_URL)
    trunk.save()
    before = raw_column("messaging_wavixaccount", "api_key_encrypted")

    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    assert WavixAccount.objects.get().get_api_key() == API_KEY  # old ciphertext, new key list

    call_command("rotate_secrets", stdout=open("/dev/null", "w"))
    after = raw_column("messaging_wavixaccount", "api_key_encrypted")
    assert after != before

    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key is gone: everything was re-encrypted
    assert WavixAccount.objects.get().get_api_key() == API_KEY
    assert Trunk.objects.get().get_threecx_webhook_url() == WEBHOOK_URL

    settings.FIELD_ENCRYPTION_KEYS = [old_key]
    with pytest.raises(crypto.SecretUnreadable):
        WavixAccount.objects.get().get_api_key()


def test_a_malformed_encryption_key_fails_loudly_without_echoing_it():
    with override_settings(FIELD_ENCRYPTION_KEYS=["not-a-fernet-key-but-secret"]):
        with pytest.raises(ImproperlyConfigured) as error:
            crypto.encrypt("x")
    assert "entry #1 is not a Fernet key" in str(error.value)
    assert "not-a-fernet-key-but-secret" not in str(error.value)


def test_error_reports_hide_secret_post_fields():
    request = RequestFactory().post("/admin/", {"api_key": API_KEY, "threecx_webhook_url": WEBHOOK_URL, "name": "x"})
    shown = SecretsReporterFilter().get_post_parameters(request)
    assert shown["api_key"] != API_KEY and shown["threecx_webhook_url"] != WEBHOOK_URL
    assert shown["name"] == "x"


THREECX_TOKEN = "c0ffee1234567890deadbeef"  # the secret part of WEBHOOK_URL


def test_no_page_json_or_log_line_shows_a_key_a_3cx_url_or_a_webhook_secret(
    client, reseller_admin, tenant, other_world, captured_logs, settings
):
    from tests.conftest import build_world
    from tests.crawl import admin_urls, api_urls, body_of

    settings.WAVIX_API_URL = "http://127.0.0.1:1/wavix"  # pages that ask Wavix get "unreachable", never a real call
    world = build_world(tenant, reseller_admin)
    account, trunk = world["messaging.wavixaccount"], world["messaging.trunk"]
    account.set_api_key(API_KEY)
    account.save()
    trunk.set_threecx_webhook_url(WEBHOOK_URL)
    trunk.main_sender = world["messaging.senderid"]
    trunk.save()
    secret = account.inbound_webhook_url.rstrip("/").split("/")[-2]
    # Webhooks, answered and refused: Django logs the path (secret and all) of every 4xx answer.
    for kind, body in [("inbound", b'{"message_id": "m1", "to": "14155550100"}'), ("dlr", b"[]"), ("nope", b"{}")]:
        client.generic("POST", f"/webhooks/wavix/{secret}/{kind}/", body, content_type="application/json")
    client.get(f"/webhooks/wavix/{secret}/inbound/")
    client.post(f"/webhooks/wavix/{secret}/")  # no such URL: Django's own 404

    client.force_login(reseller_admin)
    shown_by_design = []  # the account's webhook URLs, on its own pages, for the reseller to paste into Wavix
    pages = 0
    for url in [*admin_urls(reseller_admin), *api_urls(client)]:
        response = client.get(url)
        assert response.status_code < 500, url
        text = body_of(response)
        pages += 1
        assert API_KEY not in text, url
        assert THREECX_TOKEN not in text, url
        if secret in text:
            shown_by_design.append(url)
    api = token_client(reseller_admin)
    for url in api_urls(api):
        text = body_of(api.get(url))
        assert API_KEY not in text and THREECX_TOKEN not in text, url
        if secret in text:
            shown_by_design.append(url)

    assert pages > 60  # the crawl reached the custom pages too, not only the changelists
    assert set(shown_by_design) == {
        reverse("admin:messaging_wavixaccount_change", args=[account.pk]),
        "/api/v1/wavix-accounts/",
        f"/api/v1/wavix-accounts/{account.pk}/",
    }
    logged = everything_logged(captured_logs)
    assert "/webhooks/wavix/***/" in logged  # the refused webhooks were logged, masked
    for needle in (API_KEY, THREECX_TOKEN, secret):
        assert needle not in logged
