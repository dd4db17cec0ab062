"""Browser test: the invitation page as its people see it, in Chromium at 1400 and 390 pixels wide.

A login of another reseller signs in from the e-mail's link and accepts; a new e-mail chooses its password and
accepts. Screenshots go to var/test-artifacts/browser-invitation/ (PORTAL_TEST_ARTIFACTS overrides); the test
fails if a page shows an error or anything on it is wider than the screen.
"""

import os
import re
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail

from tenants import services
from tenants.models import Membership
from tests import factories as f
from tests.conftest import live_db

pytestmark = [pytest.mark.browser, live_db]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("PORTAL_TEST_ARTIFACTS", settings.BASE_DIR / "var" / "test-artifacts"))
SHOTS = ARTIFACTS / "browser-invitation"
ERRORS = ".errornote, .errorlist, ul.messagelist li.error"
WIDTHS = (1400, 390)


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


def look(page, name: str) -> None:
    """At each width: a screenshot, no error shown, nothing wider than the screen, both answers in reach."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        shown = [e.inner_text() for e in page.locator(ERRORS).all() if e.is_visible() and e.inner_text().strip()]
        assert not shown, f"{name} at {width}px shows {shown}"
        assert page.evaluate("document.documentElement.scrollWidth") <= width, f"{name} scrolls sideways at {width}px"
        for button in ("#accept", "#decline"):
            box = page.locator(button).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, (name, width, button, box)


def link_in(message, base: str) -> str:
    return (
        re.search(r"http://[^\s]+/invitations/[^\s]+/", message.body).group(0).replace(settings.PUBLIC_BASE_URL, base)
    )


def test_an_existing_login_and_a_new_one_accept_their_invitations_on_a_phone_and_a_desktop(
    browser, live_server, reseller, reseller_admin, other_admin
):
    services.member_invite(
        actor=reseller_admin, email=other_admin.email, organization=reseller, role="reseller_operator"
    )
    page = browser.new_page()
    page.set_default_timeout(20_000)
    page.goto(link_in(mail.outbox[-1], live_server.url))
    page.fill("#id_username", other_admin.email)  # the link asks an existing login to sign in first
    page.fill("#id_password", f.PASSWORD)
    page.click("#login-form [type=submit]")
    page.wait_for_selector("#accept")
    assert f"You are signed in as {other_admin.email}" in page.inner_text("#invitation")
    look(page, "existing-login")
    page.click("#accept")
    page.wait_for_selector("ul.messagelist li.success")
    assert "Welcome: you are now reseller operator of Reseller A." in page.inner_text("ul.messagelist")
    page.screenshot(path=str(SHOTS / "existing-login-accepted.png"), full_page=True)
    assert Membership.objects.get(user=other_admin, reseller=reseller).invitation == "accepted"

    services.member_invite(
        actor=reseller_admin, email="newcomer@customer.example", organization=reseller, role="reseller_operator"
    )
    page = browser.new_page()  # nobody signed in
    page.goto(link_in(mail.outbox[-1], live_server.url))
    page.wait_for_selector("#id_new_password1")
    look(page, "new-login")
    page.fill("#id_new_password1", "a-long-new-passphrase")
    page.fill("#id_new_password2", "a-long-new-passphrase")
    page.click("#accept")
    page.wait_for_selector("ul.messagelist li.success")
    page.screenshot(path=str(SHOTS / "new-login-accepted.png"), full_page=True)
    assert Membership.objects.get(user__email="newcomer@customer.example").is_active
