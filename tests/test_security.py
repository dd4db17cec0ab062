"""Sign-in lockout, security headers on every page, CSRF on every form, and what production adds (HSTS, secure
cookies, HTTPS redirect)."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests import factories as f
from tests.conftest import test_database_url, token_client
from tests.crawl import admin_urls, api_urls
from tests.test_settings import PRODUCTION, run_manage

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent

WRONG = "not-the-password-1"


# --------------------------------------------------------------------------------------------------------------
# Lockout
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def lockout(settings):
    """django-axes as in production (it is off for the rest of the suite, which signs in hundreds of times)."""
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 5
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


def sign_in(client, email: str, password: str, **extra):
    return client.post(reverse("admin:login"), {"username": email, "password": password}, **extra)


def test_five_wrong_passwords_lock_the_sixth_attempt_out_even_with_the_right_one(client, reseller_admin, lockout):
    for _ in range(4):
        response = sign_in(client, reseller_admin.email, WRONG)
        assert response.status_code == 200
        assert "Please enter a correct e-mail and password." in response.content.decode()
    response = sign_in(client, reseller_admin.email, WRONG)  # the fifth: from now on the pair is locked
    assert response.status_code == 429

    response = sign_in(client, f" {reseller_admin.email.upper()} ", f.PASSWORD)
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed sign-ins for this e-mail from your address" in page
    assert "until 15 minutes have passed since the last attempt" in page
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("admin:index")).status_code == 302  # still signed out


def test_a_lockout_touches_no_one_else_and_lifts_after_the_cool_off(client, reseller_admin, operator, lockout):
    for _ in range(5):
        sign_in(client, reseller_admin.email, WRONG)
    assert sign_in(client, reseller_admin.email, f.PASSWORD).status_code == 429

    # Another person at the same address signs in; so does the locked person from another address.
    assert sign_in(Client(), operator.email, f.PASSWORD).status_code == 302
    assert sign_in(Client(), reseller_admin.email, f.PASSWORD, REMOTE_ADDR="198.51.100.7").status_code == 302

    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert sign_in(client, reseller_admin.email, f.PASSWORD).status_code == 302


def test_a_locked_out_person_keeps_api_tokens_and_wavix_keeps_its_webhooks(client, reseller_admin, tenant, lockout):
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    api = token_client(reseller_admin)
    for _ in range(6):
        sign_in(client, reseller_admin.email, WRONG)
    assert api.get("/api/v1/tenants/").status_code == 200
    response = client.generic(
        "POST",
        account.inbound_webhook_url,
        b'{"message_id": "m1", "from": "447700900001", "to": "14155550100", "message_body": {"text": "Hi"}}',
        content_type="application/json",
    )
    assert response.status_code == 200


# --------------------------------------------------------------------------------------------------------------
# Headers and CSRF on every page
# --------------------------------------------------------------------------------------------------------------

HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Content-Security-Policy": "base-uri 'self'; form-action 'self'; frame-ancestors 'none'; object-src 'none'",
}
POST_FORM = re.compile(r"<form\b[^>]*method=[\"']post[\"'][^>]*>(.*?)</form>", re.I | re.S)


def assert_security_headers(response, url: str) -> None:
    expected = dict(HEADERS)
    if url == "/api/docs/":
        expected["Cross-Origin-Opener-Policy"] = "unsafe-none"  # drf-spectacular's, for Swagger UI's OAuth2 popup
    for name, value in expected.items():
        assert response.headers.get(name) == value, (url, name, response.headers.get(name))


def test_every_page_sends_the_security_headers_and_every_post_form_needs_its_csrf_token(client, world, reseller_admin):
    client.force_login(reseller_admin)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(reseller_admin)
    pages = forms = 0
    for url in [*admin_urls(reseller_admin), *api_urls(client)]:
        response = client.get(url)
        assert_security_headers(response, url)
        pages += 1
        if response.streaming or "text/html" not in response.headers.get("Content-Type", ""):
            continue
        for form in POST_FORM.findall(response.content.decode()):
            assert 'name="csrfmiddlewaretoken"' in form, url
            forms += 1
        if POST_FORM.search(response.content.decode()):
            refused = strict.post(url, {"name": "x"})
            assert refused.status_code == 403, url
            assert "CSRF verification failed" in refused.content.decode()
    assert pages > 60 and forms > 20
    for url in ["/admin/login/", "/healthz", "/api/v1/", "/webhooks/wavix/x/inbound/"]:
        assert_security_headers(Client().get(url), url)


def test_the_api_needs_a_csrf_token_with_a_session_and_none_with_a_token(tenant, reseller_admin):
    session = Client(enforce_csrf_checks=True)
    session.force_login(reseller_admin)
    body = {"name": "Harbor Clinic", "slug": "harbor", "default_country": "US"}
    refused = session.post("/api/v1/tenants/", body, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert token_client(reseller_admin).post("/api/v1/tenants/", body, format="json").status_code == 201


def test_webhooks_need_no_csrf_token_but_the_secret(tenant):
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    wavix = Client(enforce_csrf_checks=True)
    body = b'{"message_id": "m1", "from": "447700900001", "to": "14155550100", "message_body": {"text": "Hi"}}'
    assert wavix.generic("POST", account.inbound_webhook_url, body, content_type="application/json").status_code == 200
    wrong = account.inbound_webhook_url.replace(account.inbound_webhook_url.split("/")[-3], "x" * 32)
    assert wavix.generic("POST", wrong, body, content_type="application/json").status_code == 404


# --------------------------------------------------------------------------------------------------------------
# Production settings
# --------------------------------------------------------------------------------------------------------------

PROBE = """
import json
from django.conf import settings
from django.test import Client

from django.test.utils import override_settings

# Production's static storage needs collectstatic's manifest; the page's headers and cookies do not depend on it.
with override_settings(STORAGES={**settings.STORAGES, "staticfiles": {
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
}}):
    client = Client(HTTP_HOST="portal.example.com")
    secure = client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")
    plain = client.get("/admin/login/")
print(json.dumps({
    "status": secure.status_code,
    "headers": dict(secure.headers),
    "cookies": {n: {"secure": bool(c["secure"]), "httponly": bool(c["httponly"])} for n, c in secure.cookies.items()},
    "plain": [plain.status_code, plain.headers.get("Location")],
    "settings": {name: getattr(settings, name) for name in (
        "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "AXES_ENABLED", "AXES_FAILURE_LIMIT"
    )},
}))
"""


def test_production_adds_hsts_secure_cookies_and_the_https_redirect():
    result = run_manage("shell", "-c", PROBE, **PRODUCTION)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["status"] == 200
    assert seen["headers"]["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    for name, value in HEADERS.items():
        assert seen["headers"][name] == value
    assert seen["cookies"]["csrftoken"] == {"secure": True, "httponly": True}
    assert seen["plain"] == [301, "https://portal.example.com/admin/login/"]
    assert seen["settings"] == {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "AXES_ENABLED": True,
        "AXES_FAILURE_LIMIT": 5,
    }


# --------------------------------------------------------------------------------------------------------------
# gunicorn's logs
# --------------------------------------------------------------------------------------------------------------

SECRET = "Gq3vX9-secret-of-a-wavix-account-0123"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_gunicorns_access_and_error_logs_mask_the_webhook_secret(tmp_path, tenant):
    """A real gunicorn with the Procfile's logger class: a webhook answered 404, and a request line gunicorn
    refuses itself (its error log quotes the line, secret and all)."""
    port = free_port()
    logs = {name: tmp_path / f"{name}.log" for name in ("access", "error")}
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "portal.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"),
            *("--logger-class", "portal.logging.GunicornLogger", "--log-level", "debug"),
            *("--access-logfile", str(logs["access"]), "--error-logfile", str(logs["error"])),
        ],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": test_database_url()},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "gunicorn did not start"
                time.sleep(0.1)
        for request_line in (
            f"POST /webhooks/wavix/{SECRET}/inbound/ HTTP/1.1",
            f"GET /webhooks/wavix/{SECRET}/\x01 HTTP/1.1",
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
                connection.sendall(
                    f"{request_line}\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}".encode()
                )
                answer = connection.recv(1000)
            assert answer.split()[1] in (b"404", b"400"), answer
    finally:
        server.terminate()
        server.wait(15)
    access, error = (logs[name].read_text() for name in ("access", "error"))
    assert '"POST /webhooks/wavix/***/inbound/ HTTP/1.1" 404' in access
    assert "[DEBUG] POST /webhooks/wavix/***/inbound/" in error
    assert "Invalid HTTP request line: 'GET /webhooks/wavix/***/\\x01 HTTP/1.1'" in error
    assert SECRET not in access + error


def test_gunicorns_error_log_masks_the_secret_in_arguments_messages_and_tracebacks(tmp_path):
    """What gunicorn logs when a request fails inside the application: the URI as an argument, with the exception's
    traceback (which may quote the URL), or an exception object as the message."""
    from gunicorn.config import Config

    from portal.logging import GunicornLogger

    config = Config()
    config.set("errorlog", str(tmp_path / "error.log"))
    log = GunicornLogger(config)
    url = f"/webhooks/wavix/{SECRET}/inbound/"
    try:
        raise ValueError(f"cannot read {url}")
    except ValueError as error:
        log.exception("Error handling request %s %s", "POST", url)
        log.error(error)
    log.warning("Invalid request: %(line)s", {"line": f"GET {url}"})
    for handler in log.error_log.handlers:
        handler.flush()
    text = (tmp_path / "error.log").read_text()
    assert "Error handling request POST /webhooks/wavix/***/inbound/" in text
    assert "ValueError: cannot read /webhooks/wavix/***/inbound/" in text  # the traceback
    assert "Invalid request: GET /webhooks/wavix/***/inbound/" in text
    assert SECRET not in text
    assert text.count("/webhooks/wavix/***/") == 4
