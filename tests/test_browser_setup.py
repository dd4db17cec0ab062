"""Browser test: a new reseller takes a tenant from nothing to a verified two-way SMS trunk, in Chromium.

Log in, add a tenant, its Wavix account (the sandbox's key), a trunk; then the wizard: a numeric sender,
the US, the 3CX values, the fake 3CX's webhook URL, a test text seen delivered, the sandbox phone's reply seen
forwarded to 3CX. Real Celery worker and beat, the sandbox over HTTP. Screenshots of every step go to
var/test-artifacts/browser/ (PORTAL_TEST_ARTIFACTS overrides); the test fails if any step shows an error.

A second walk takes the portal as 3CX's SMS provider: the key read off step 3 is typed into the fake 3CX, whose app
then sends a text that step 5 follows live to Delivered; at 1400 and 390 px wide (browser/portal/), nothing scrolling
sideways on the phone.
"""

import os
import shutil
from pathlib import Path

import pytest
import requests
from django.conf import settings

from messaging.models import Message, PhoneNumber, ProviderKey, Trunk
from sandbox.models import FakePbxInbox, FakePbxRequest
from tests import factories as f
from tests.conftest import live_db
from tests.processes import Celery, purge_queues, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.browser, live_db]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("PORTAL_TEST_ARTIFACTS", settings.BASE_DIR / "var" / "test-artifacts")) / "browser"
PASSWORD = "fresh-reseller-2026"
ERRORS = ".errornote, .field-error, .errorlist, ul.messagelist li.error"


@pytest.fixture(scope="session")
def artifacts():
    """The screenshot folder, emptied once per run (each walk keeps its own screenshots)."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture
def browser_page(monkeypatch, artifacts):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(20_000)
        yield page
        page.screenshot(path=str(ARTIFACTS / "last.png"), full_page=True)  # where it ended, failed or not
        browser.close()


@pytest.fixture
def celery(wavix):
    purge_queues()
    processes = Celery()
    env = {"PUBLIC_BASE_URL": wavix.url, "WAVIX_API_URL": f"{wavix.url}/sandbox/wavix"}
    processes.worker(concurrency=2, **env)
    processes.beat(**env)
    yield processes
    processes.stop_all()


class Walk:
    """The page, with a screenshot after every step and no error allowed on it."""

    def __init__(self, page, base: str, folder: Path = ARTIFACTS):
        self.page, self.base, self.shots, self.folder = page, base, 0, folder
        folder.mkdir(parents=True, exist_ok=True)

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)

    def shot(self, name: str) -> None:
        self.shots += 1
        self.page.screenshot(path=str(self.folder / f"{self.shots:02d}-{name}.png"), full_page=True)

    def on_a_phone(self, name: str, width: int = 390) -> None:
        """The same page at a phone's width: a screenshot, and nothing may scroll sideways."""
        wide = self.page.viewport_size
        self.page.set_viewport_size({"width": width, "height": 844})
        try:
            self.no_errors(f"{name}-{width}px")
            overflow = self.page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{name}: the page scrolls sideways by {overflow} px at {width} px wide"
        finally:
            self.page.set_viewport_size(wide)

    def no_errors(self, name: str) -> None:
        self.shot(name)
        shown = [e.inner_text() for e in self.page.locator(ERRORS).all() if e.is_visible() and e.inner_text().strip()]
        assert not shown, f"{name}: the page shows {shown}"


def test_a_new_reseller_sets_up_a_two_way_sms_trunk_in_the_wizard(wavix, celery, browser_page):
    reseller = f.ResellerFactory(name="Harbor Telecom")
    user = f.UserFactory(email="owner@harbor.example", username="owner@harbor.example", password=PASSWORD)
    f.MembershipFactory(user=user, reseller=reseller, role="reseller_admin")
    at_wavix = f.SandboxAccountFactory(name="Harbor at Wavix", rate_limit_per_second=1000)
    f.SandboxNumberFactory(account=at_wavix, number="14155550300")  # bought and SMS-enabled at Wavix
    inbox = FakePbxInbox.objects.create(label="Harbor Clinic PBX")
    page = browser_page
    walk = Walk(page, wavix.url)

    walk.go("/admin/login/")
    page.fill("#id_username", "owner@harbor.example")
    page.fill("#id_password", PASSWORD)
    page.click("#login-form [type=submit]")
    walk.no_errors("signed-in")

    walk.go("/admin/tenants/tenant/add/")
    page.fill("#id_name", "Harbor Clinic")
    if page.locator("#id_default_country").count():
        page.fill("#id_default_country", "US")
    page.click("[name=_save]")
    walk.no_errors("tenant-added")

    walk.go("/admin/messaging/wavixaccount/add/")
    page.select_option("#id_tenant", label="Harbor Clinic")
    page.fill("#id_name", "Harbor Clinic at Wavix")
    page.fill("#id_api_key", at_wavix.api_key)
    page.click("[name=_save]")
    walk.no_errors("wavix-account-added")
    wait_for(lambda: PhoneNumber.objects.filter(number="+14155550300").exists(), 60, "the number sync")

    walk.go("/admin/messaging/trunk/add/")
    page.select_option("#id_tenant", label="Harbor Clinic")
    page.fill("#id_name", "Front desk")
    page.fill("#id_pbx_fqdn", "harbor-clinic.3cx.example")
    page.click("[name=_save]")
    page.wait_for_url("**/setup/sender/")
    walk.no_errors("wizard-1-sender")
    trunk = Trunk.objects.get(name="Front desk")

    # 1. Sender ID: the tenant's only number, shown with its Wavix status and chosen already: just Next.
    assert page.is_checked("input[name=kind][value=numeric]") and page.is_checked("input[name=number]")
    page.click("text=Next: destination countries")
    page.wait_for_url("**/setup/countries/")
    walk.no_errors("wizard-2-countries")

    # 2. Countries: the tenant's own (the US) first and ticked already; reviewed, then submitted to Wavix.
    assert page.locator("input[name=countries]").first.get_attribute("value") == "US"
    assert page.is_checked("input[name=countries][value=US]")
    page.click("button[value=review]")
    assert "Allow-listed at once" in page.inner_text("#review")
    walk.no_errors("wizard-2-review")
    page.click("button[value=submit]")
    page.wait_for_url("**/setup/threecx/")
    walk.no_errors("wizard-3-threecx")

    # 3. Straight to Wavix (3CX's Wavix template), then what to type in 3CX: Main Trunk No. = the sender ID.
    page.check("input[name=via][value=wavix]")
    with page.expect_navigation():
        page.click("#choose-sending")
    assert "+14155550300" in page.inner_text("#threecx-values")
    assert "the Wavix API key ending" in page.inner_text("#threecx-values")
    page.click("text=I have entered these in 3CX")
    page.wait_for_url("**/setup/enable/")

    # 4. Enable SMS: the key is checked, the URL probed (DNS, TLS, a test POST), the Wavix side wired.
    page.fill("#id_threecx_webhook_url", f"{wavix.url}/sandbox/3cx/{inbox.token}/")
    page.click("input[type=submit]")
    page.wait_for_selector("#probe")
    assert "3CX answered HTTP 200" in page.inner_text("#probe")
    page.wait_for_function(
        "(document.querySelector('#wiring-list')?.innerText || '').includes('texts go to the portal')"
    )
    walk.no_errors("wizard-4-enabled")

    # 5. Verify: the test text goes out and its status moves live to Delivered, without a reload.
    walk.go(f"/admin/messaging/trunk/{trunk.pk}/setup/verify/")
    page.fill("#id_to", "(415) 555-0142")  # national format: the tenant's default country is the US
    with page.expect_navigation():
        page.click("input[value='Send a test text']")
    page.wait_for_selector("#test-status:not([hidden])")
    page.wait_for_function("document.querySelector('[data-test-status]')?.innerText === 'Delivered'", timeout=60_000)
    walk.no_errors("wizard-5-delivered")
    with page.expect_navigation():
        page.click("#sandbox-reply")
    page.wait_for_function(
        "(document.querySelector('[data-reply]')?.innerText || '').includes('Forwarded to 3CX')", timeout=60_000
    )
    assert "3CX answered HTTP 200" in page.inner_text("[data-reply]")
    badge = page.locator("#setup-steps li[data-step=verify] [data-badge]")
    page.wait_for_function(
        "document.querySelector('#setup-steps li[data-step=verify] [data-badge]')?.innerText === 'done'"
    )
    assert badge.inner_text() == "done"
    walk.no_errors("wizard-5-reply-forwarded")

    # 6. Troubleshoot: every check passes.
    walk.go(f"/admin/messaging/trunk/{trunk.pk}/setup/troubleshoot/")
    assert page.locator("#checks .check-fail").count() == 0
    walk.no_errors("wizard-6-troubleshoot")
    walk.go(f"/admin/messaging/trunk/{trunk.pk}/3cx-pack/")
    walk.no_errors("threecx-pack")

    # What really happened behind the pages.
    test = Message.objects.get(direction="outbound", tenant=trunk.tenant)
    assert (test.to_number, test.status) == ("+14155550142", "delivered")
    reply = Message.objects.get(direction="inbound", tenant=trunk.tenant)
    assert (reply.from_number, reply.status) == ("+14155550142", "forwarded")
    bodies = [bytes(r.body) for r in FakePbxRequest.objects.filter(inbox=inbox)]
    assert any(b"connection test" in body for body in bodies) and any(b"Got it!" in body for body in bodies)
    trunk.refresh_from_db()
    assert trunk.setup_progress["steps_done"] == ["sender", "countries", "threecx", "enable", "verify", "troubleshoot"]


def test_a_reseller_makes_the_portal_3cxs_sms_provider_and_sees_3cxs_own_text_delivered(wavix, celery, browser_page):
    reseller = f.ResellerFactory(name="Harbor Telecom")
    user = f.UserFactory(email="owner@harbor.example", username="owner@harbor.example", password=PASSWORD)
    f.MembershipFactory(user=user, reseller=reseller, role="reseller_admin")
    tenant = f.TenantFactory(reseller=reseller, name="Harbor Clinic", default_country="US")
    at_wavix = f.SandboxAccountFactory(name="Harbor at Wavix", rate_limit_per_second=1000)
    f.SandboxNumberFactory(account=at_wavix, number="14155550300")
    inbox = FakePbxInbox.objects.create(label="Harbor Clinic PBX")
    page = browser_page
    page.set_viewport_size({"width": 1400, "height": 900})
    walk = Walk(page, wavix.url, ARTIFACTS / "portal")

    walk.go("/admin/login/")
    page.fill("#id_username", "owner@harbor.example")
    page.fill("#id_password", PASSWORD)
    page.click("#login-form [type=submit]")
    walk.go("/admin/messaging/wavixaccount/add/")
    page.select_option("#id_tenant", label="Harbor Clinic")
    page.fill("#id_name", "Harbor Clinic at Wavix")
    page.fill("#id_api_key", at_wavix.api_key)
    page.click("[name=_save]")
    wait_for(lambda: PhoneNumber.objects.filter(number="+14155550300").exists(), 60, "the number sync")
    trunk = f.TrunkFactory(tenant=tenant, name="Front desk", main_sender=None, sms_enabled=False)

    # Steps 1 and 2: the number, the US.
    walk.go(f"/admin/messaging/trunk/{trunk.pk}/setup/sender/")
    page.check("input[name=kind][value=numeric]")
    page.check("input[name=number]")
    page.click("text=Next: destination countries")
    page.fill("#country-filter", "united states")
    page.check("input[name=countries][value=US]")
    page.click("button[value=review]")
    page.click("button[value=submit]")
    page.wait_for_url("**/setup/threecx/")

    # 3. Through the portal (recommended): the key is shown once, with the Provider URL and the template file.
    assert page.is_checked("input[name=via][value=portal]")
    walk.no_errors("wizard-3-choice")
    walk.on_a_phone("wizard-3-choice")
    with page.expect_navigation():
        page.click("#choose-sending")
    key = page.inner_text("#provider-key").strip()
    provider_url = page.inner_text("#provider-url").strip()
    assert key.startswith(ProviderKey.PREFIX) and provider_url == f"{wavix.url}/3cx/{trunk.pk}/messages"
    assert "it will not be shown again" in page.inner_text("#key-once")
    assert "Wavix API key" not in page.inner_text("#content")
    walk.no_errors("wizard-3-portal-key")
    walk.on_a_phone("wizard-3-portal-key")

    # The fake 3CX's SMS tab, on the sandbox page: the Generic template, the Provider URL and the key.
    walk.go("/sandbox/")
    settings_form = page.locator(f"form[action$='/3cx/inboxes/{inbox.pk}/settings/']")
    settings_form.locator("select[name=sms_template]").select_option("generic")
    settings_form.locator("input[name=provider_url]").fill(provider_url)
    settings_form.locator("input[name=api_key]").fill(key)
    with page.expect_navigation():
        settings_form.locator("button[type=submit]").click()
    inbox.refresh_from_db()
    assert (inbox.provider_url, inbox.api_key) == (provider_url, key)

    walk.go(f"/admin/messaging/trunk/{trunk.pk}/setup/threecx/")
    assert key not in page.content() and f"…{key[-4:]}" in page.inner_text("#provider-values")
    page.click("text=I have entered these in 3CX")
    page.wait_for_url("**/setup/enable/")

    # 4. The fake 3CX's webhook URL, probed and wired.
    page.fill("#id_threecx_webhook_url", f"{wavix.url}/sandbox/3cx/{inbox.token}/")
    page.click("input[type=submit]")
    page.wait_for_function(
        "(document.querySelector('#wiring-list')?.innerText || '').includes('texts go to the portal')"
    )

    # 5. The portal's test text and the reply, then a text from the 3CX app, followed live without a reload.
    walk.go(f"/admin/messaging/trunk/{trunk.pk}/setup/verify/")
    page.fill("#id_to", "(415) 555-0142")
    with page.expect_navigation():
        page.click("input[value='Send a test text']")
    page.wait_for_function("document.querySelector('[data-test-status]')?.innerText === 'Delivered'", timeout=60_000)
    with page.expect_navigation():
        page.click("#sandbox-reply")
    page.wait_for_function(
        "(document.querySelector('[data-reply]')?.innerText || '').includes('Forwarded to 3CX')", timeout=60_000
    )
    assert page.locator("#app-stages li.stage-done").count() == 0
    walk.no_errors("wizard-5-waiting-for-3cx")
    page.evaluate("window.__noReload = true")  # gone if the page reloads

    sent = requests.post(
        f"{wavix.url}/sandbox/3cx/{inbox.token}/send",
        json={"from": "+14155550300", "to": "+14155550143", "text": "Your table is ready"},
        timeout=30,
    ).json()
    assert sent["shown_as_sent"] and sent["status"] == 200, sent
    page.wait_for_selector("#app-stages li[data-stage=arrived].stage-done")
    page.wait_for_selector("#app-stages li[data-stage=reached].stage-done", timeout=60_000)
    page.wait_for_selector("#app-stages li[data-stage=delivered].stage-done", timeout=60_000)
    assert "Your table is ready" in page.inner_text("[data-app-text]")
    assert page.evaluate("window.__noReload") is True
    page.wait_for_function(
        "document.querySelector('#setup-steps li[data-step=verify] [data-badge]')?.innerText === 'done'"
    )
    walk.no_errors("wizard-5-3cx-text-delivered")
    walk.on_a_phone("wizard-5-3cx-text-delivered")

    # 6. Every check passes, the portal's included.
    walk.go(f"/admin/messaging/trunk/{trunk.pk}/setup/troubleshoot/")
    assert page.locator("#checks .check-fail").count() == 0
    assert f"3CX's provider key is live (…{key[-4:]})" in page.inner_text("#checks")
    walk.no_errors("wizard-6-troubleshoot")
    walk.on_a_phone("wizard-6-troubleshoot")
    walk.go(f"/admin/messaging/trunk/{trunk.pk}/3cx-pack/")
    assert key not in page.content()
    walk.no_errors("threecx-pack")

    text = Message.objects.get(origin=Message.Origin.THREECX, trunk=trunk)
    assert (text.to_number, text.status) == ("+14155550143", "delivered")
    trunk.refresh_from_db()
    assert trunk.sms_template == Trunk.SmsTemplate.GENERIC
    assert trunk.setup_progress["steps_done"] == ["sender", "countries", "threecx", "enable", "verify", "troubleshoot"]
