"""Accessibility, checked by machine: axe-core (from npm, run in Debian's Chromium through Playwright) finds no
serious or critical violation on the main pages of each role, and the setup wizard can be walked with the keyboard
alone, every focused control visibly marked.

axe-core is installed from the npm registry into var/axe on first use (AXE_VERSION); without npm the test skips,
and CI, which has npm, fails on any skip.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from messaging.models import SenderIDCountry
from messaging.services.setup import STEP_KEYS
from tests import factories as f
from tests.conftest import build_world, live_db

pytestmark = [pytest.mark.browser, live_db]

AXE_VERSION = "4.14.1"
AXE_DIR = settings.BASE_DIR / "var" / "axe"
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = Path(os.environ.get("PORTAL_TEST_ARTIFACTS", settings.BASE_DIR / "var" / "test-artifacts")) / "accessibility"

RUN_AXE = """async () => {
  const result = await axe.run(document, { resultTypes: ['violations'] });
  return result.violations
    .filter(v => v.impact === 'serious' || v.impact === 'critical')
    .map(v => `${v.impact} ${v.id} (${v.help}): ` + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '));
}"""
# What the focused element looks like: a focus indicator is an outline or a ring (box-shadow) that is not none.
FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const ring = (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0) || style.boxShadow !== 'none';
  return { tag: el.tagName, text: (el.innerText || el.value || el.getAttribute('aria-label') || '').trim().slice(0, 60),
           href: el.getAttribute('href') || '', visible: ring };
}"""


@pytest.fixture(scope="session")
def axe_js() -> str:
    if not AXE_JS.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("no npm to install axe-core from the npm registry")
        AXE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                npm,
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(AXE_DIR),
                f"axe-core@{AXE_VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return AXE_JS.read_text()


@pytest.fixture(autouse=True)
def shots_folder():
    SHOTS.mkdir(parents=True, exist_ok=True)


def signed_in(browser, live_server, user, width: int = 1400):
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport={"width": width, "height": 900})
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}])
    return context.new_page()


@pytest.fixture
def world(tenant, reseller_admin, viewer):
    world = build_world(tenant, reseller_admin)
    registration = world["messaging.senderidcountry"]
    SenderIDCountry.objects.filter(pk=registration.pk).update(status=SenderIDCountry.Status.IN_REVIEW)
    reviewer = f.UserFactory(is_staff=True)
    reviewer.groups.add(Group.objects.get(name="Platform reviewers"))
    return {**world, "reviewer": reviewer, "viewer": viewer}


def main_pages(world) -> dict[str, list[str]]:
    tenant, trunk, message = world["tenants.tenant"], world["messaging.trunk"], world["messaging.message"]
    admin_pages = [
        reverse("admin:dashboard"),
        reverse("admin:tenant_home", args=[tenant.pk]),
        reverse("admin:conversation", args=[tenant.pk, message.to_number]),
        reverse("admin:messaging_message_changelist"),
        reverse("admin:messaging_message_change", args=[message.pk]),
        reverse("admin:messaging_message_send"),
        reverse("admin:messaging_trunk_changelist"),
        reverse("admin:messaging_trunk_change", args=[trunk.pk]),
        reverse("admin:messaging_trunk_add"),
        *[reverse("admin:messaging_trunk_setup_step", args=[trunk.pk, step]) for step in STEP_KEYS],
        reverse("admin:messaging_senderid_add"),
        reverse("admin:messaging_senderidcountry_changelist"),
        reverse("admin:tenants_membership_add"),
        reverse("admin:messaging_wavixaccount_changelist"),
    ]
    return {
        "reseller-admin": admin_pages,
        "tenant-viewer": [
            reverse("admin:dashboard"),
            reverse("admin:tenant_home", args=[tenant.pk]),
            reverse("admin:messaging_message_changelist"),
            reverse("admin:messaging_webhookevent_changelist"),  # the styled 403
        ],
        "reviewer": [
            reverse("admin:review_queue"),
            reverse("admin:review_detail", args=[world["messaging.senderidcountry"].pk]),
            reverse("admin:messaging_countryrule_changelist"),
        ],
    }


def test_axe_core_finds_no_serious_or_critical_violation_on_the_main_pages(live_server, chromium, axe_js, world):
    users = {"reseller-admin": world["tenants.membership"].user, "tenant-viewer": world["viewer"]}
    users["reviewer"] = world["reviewer"]
    found, checked = [], 0
    anonymous = chromium.new_page()
    anonymous.goto(live_server.url + reverse("admin:login"))
    anonymous.add_script_tag(content=axe_js)
    found += [f"sign-in page: {v}" for v in anonymous.evaluate(RUN_AXE)]
    for role, pages in main_pages(world).items():
        for width in (1400, 390):
            page = signed_in(chromium, live_server, users[role], width)
            for url in pages:
                page.goto(live_server.url + url)
                page.add_script_tag(content=axe_js)
                violations = page.evaluate(RUN_AXE)
                checked += 1
                if violations:
                    page.screenshot(path=str(SHOTS / f"{role}-{width}-{url.strip('/').replace('/', '_')}.png"))
                found += [f"{role} {width}px {url}: {v}" for v in violations]
            page.context.close()
    assert checked >= 50
    assert not found, "\n".join(found)


def test_the_wizard_can_be_walked_with_the_keyboard_alone(live_server, chromium, world):
    trunk = world["messaging.trunk"]
    page = signed_in(chromium, live_server, world["tenants.membership"].user)
    page.goto(live_server.url + reverse("admin:messaging_trunk_setup_step", args=[trunk.pk, STEP_KEYS[0]]))
    walked, unmarked = [], []
    for number, step in enumerate(STEP_KEYS[1:], start=2):
        # Tab, from the top of the page, to the step list's link to the next step; Enter follows it.
        target = reverse("admin:messaging_trunk_setup_step", args=[trunk.pk, step])
        for _ in range(80):
            page.keyboard.press("Tab")
            focused = page.evaluate(FOCUSED)
            if focused is None:
                continue
            if not focused["visible"]:
                unmarked.append(f"{focused['tag']} {focused['text'] or focused['href']}")
            if focused["href"] == target:
                break
        else:
            pytest.fail(f"Tab never reached step {number} ({step}) from {page.url}")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.url.endswith(target)
        walked.append(step)
        # Each step's own form is reachable too: its first field or button takes the focus in turn.
        controls = page.locator("#setup-steps ~ * :is(input:not([type=hidden]), select, textarea, button)")
        if controls.count():
            controls.first.focus()
            focused = page.evaluate(FOCUSED)
            assert focused is not None and focused["visible"], f"step {step}: its first control shows no focus"
    page.screenshot(path=str(SHOTS / "keyboard-walk-end.png"))
    assert walked == list(STEP_KEYS[1:])
    assert not unmarked, f"focused without a visible mark: {sorted(set(unmarked))}"
