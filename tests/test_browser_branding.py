"""Browser test: two resellers' brands side by side in Chromium — each admin's pages in its name, logo and colour, and
each reseller's invitation e-mail as a mail client would show it. Screenshots at 1400 and 390 pixels go to
var/test-artifacts/browser-branding/ (PORTAL_TEST_ARTIFACTS overrides)."""

import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail

from tenants import services
from tests import factories as f
from tests.conftest import live_db
from tests.test_branding import brand, png

pytestmark = [pytest.mark.browser, live_db]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("PORTAL_TEST_ARTIFACTS", settings.BASE_DIR / "var" / "test-artifacts"))
SHOTS = ARTIFACTS / "browser-branding"
BRANDS = {"harbor": ("Harbor Telecom", "#0f766e", (15, 118, 110)), "summit": ("Summit Voice", "#9d174d", (157, 23, 77))}


@pytest.fixture
def browser(monkeypatch):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop runs in this thread
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


def test_two_resellers_pages_and_e_mails_side_by_side(
    browser, live_server, settings, reseller, other_reseller, reseller_admin, other_admin, tenant, other_tenant
):
    settings.PUBLIC_BASE_URL = live_server.url  # the e-mails' logo comes from the portal, as a mail client fetches it
    brand(reseller, BRANDS["harbor"][0], BRANDS["harbor"][1], "help@harbor.example", png(38, 38, (255, 255, 255)))
    brand(other_reseller, BRANDS["summit"][0], BRANDS["summit"][1], "care@summit.example", png(38, 38, (250, 204, 21)))
    for key, admin in (("harbor", reseller_admin), ("summit", other_admin)):
        name, _, channels = BRANDS[key]
        page = browser.new_context().new_page()
        page.set_default_timeout(20_000)
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", admin.email)
        page.fill("#id_password", f.PASSWORD)
        page.click("#login-form [type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/**")
        for width in (1400, 390):
            page.set_viewport_size({"width": width, "height": 900})
            page.screenshot(path=str(SHOTS / f"{key}-dashboard-{width}.png"), full_page=True)
        page.set_viewport_size({"width": 1400, "height": 900})
        assert name in page.inner_text("#nav-sidebar")
        other = next(n for n, *_ in BRANDS.values() if n != name)
        assert other not in page.content()
        logo = page.locator("#nav-sidebar img").first
        assert logo.evaluate("img => img.complete && img.naturalWidth") == 38
        # The theme's primary colour is the brand's: the active sidebar entry's icon and every primary button.
        primary = page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--color-primary-600')")
        assert primary.strip() == f"rgb({', '.join(str(c) for c in channels)})"

    services.member_invite(actor=reseller_admin, email="ann@acme.example", organization=tenant, role="tenant_viewer")
    services.member_invite(actor=other_admin, email="bob@b.example", organization=other_tenant, role="tenant_viewer")
    for key, message in zip(BRANDS, mail.outbox[-2:], strict=True):
        name, _, channels = BRANDS[key]
        assert message.from_email.startswith(f"{name} <")
        page = browser.new_page(viewport={"width": 600, "height": 700})
        page.set_content(message.alternatives[0][0], wait_until="load")
        page.screenshot(path=str(SHOTS / f"{key}-invitation-email.png"), full_page=True)
        bar = page.locator("div > div").first
        assert bar.evaluate("e => getComputedStyle(e).backgroundColor") == f"rgb({', '.join(str(c) for c in channels)})"
        assert name in bar.inner_text()
        assert page.locator("img").evaluate("img => img.complete && img.naturalWidth") == 38  # fetched from the portal
