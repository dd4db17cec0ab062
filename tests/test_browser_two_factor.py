"""Browser test: a reseller admin sets up two-factor sign-in in Chromium — reading the key off the page as an
authenticator app would — signs out, and cannot sign in again without a code. Screenshots at 1400 and 390 pixels
go to var/test-artifacts/browser-two-factor/ (PORTAL_TEST_ARTIFACTS overrides)."""

import base64
import os
import shutil
import time
from pathlib import Path

import pytest
from django.conf import settings
from django_otp.oath import TOTP

from tenants.models import AuditEvent
from tests import factories as f
from tests.conftest import live_db

pytestmark = [pytest.mark.browser, live_db]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("PORTAL_TEST_ARTIFACTS", settings.BASE_DIR / "var" / "test-artifacts"))
SHOTS = ARTIFACTS / "browser-two-factor"


@pytest.fixture
def browser(monkeypatch, settings):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    settings.TWO_FACTOR_ENFORCED = True
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop runs in this thread
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


def app_code(secret: str, steps_ahead: int = 0) -> str:
    """What an authenticator app given this key shows (RFC 6238: SHA-1, 30 s, six digits)."""
    key = secret.replace(" ", "")
    totp = TOTP(base64.b32decode(key + "=" * (-len(key) % 8)), step=30, digits=6)
    totp.time = time.time() + steps_ahead * 30
    return f"{totp.token():06d}"


def shoot(page, name: str) -> None:
    for width in (1400, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= width, f"{name} scrolls sideways at {width}px"


def sign_in(page, base: str, email: str) -> None:
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", f.PASSWORD)
    page.click("#login-form [type=submit]")


def test_an_admin_sets_up_an_authenticator_signs_out_and_cannot_sign_in_without_a_code(
    browser, live_server, reseller_admin
):
    page = browser.new_page()
    page.set_default_timeout(20_000)
    sign_in(page, live_server.url, reseller_admin.email)
    page.wait_for_selector("#two-factor-setup")  # nothing else opens first
    assert page.locator("#qr svg").count() == 1
    shoot(page, "setup")
    secret = page.inner_text("#secret")
    page.fill("#id_code", app_code(secret))
    page.click("#confirm")
    page.wait_for_selector("#recovery-codes")
    assert page.locator("#recovery-codes li").count() == 10
    shoot(page, "recovery-codes")
    page.click("#continue")
    page.wait_for_url(f"{live_server.url}/admin/**")
    assert "Dashboard" in page.inner_text("body")

    page.context.clear_cookies()  # signed out
    sign_in(page, live_server.url, reseller_admin.email)
    page.wait_for_selector("#two-factor-verify")
    page.goto(f"{live_server.url}/admin/tenants/tenant/")  # around the code page: sent back to it
    page.wait_for_selector("#two-factor-verify")
    page.fill("#id_code", "000000")
    page.click("#verify")
    page.wait_for_selector("#code-error")
    shoot(page, "verify-wrong-code")
    time.sleep(1.1)  # django-otp holds the device back a second after a wrong code
    page.fill("#id_code", app_code(secret, 1))  # the next code: the first was used to set it up
    page.click("#verify")
    page.wait_for_url(f"{live_server.url}/admin/tenants/tenant/")
    assert page.locator("#changelist").count() == 1 or "Tenant" in page.inner_text("body")
    assert AuditEvent.objects.filter(action=AuditEvent.Action.TWO_FACTOR_ENROLLED, actor=reseller_admin).exists()
