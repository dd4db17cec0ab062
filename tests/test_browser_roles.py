"""Browser tests of the three roles, at 1400 and 390 px, in Debian's Chromium, with screenshots kept in
var/test-artifacts/roles/:

- the review loop: a reviewer asks for documents (the note confirmed), the reseller's dashboard names it as the
  next action, the reseller uploads a PDF and submits it, the reviewer sees it waiting and approves it;
- the dashboard's next actions lead where the work is done (a trunk's next setup step);
- a tenant viewer's limits: no plumbing in the sidebar, no button they cannot use, the portal's own 403 page.
"""

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from messaging.models import SenderIDCountry
from tests import factories as f
from tests.conftest import live_db

pytestmark = [pytest.mark.browser, live_db]

SHOTS = Path(os.environ.get("PORTAL_TEST_ARTIFACTS", settings.BASE_DIR / "var" / "test-artifacts")) / "roles"
PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"
ERRORS = ".errornote, .errorlist, ul.messagelist li.error"
SIDEWAYS = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


@pytest.fixture(autouse=True)
def shots_folder():
    SHOTS.mkdir(parents=True, exist_ok=True)


class Person:
    """One person's browser tab: signed in with a session of their own, a screenshot at each step at both widths."""

    def __init__(self, browser, live_server, user, role: str):
        client = Client()
        client.force_login(user)
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        session = client.cookies[settings.SESSION_COOKIE_NAME].value
        self.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}])
        self.page, self.base, self.role, self.shots = self.context.new_page(), live_server.url, role, 0

    def go(self, url: str) -> None:
        self.page.goto(self.base + url)

    def look(self, name: str, errors_allowed: bool = False) -> None:
        """Screenshots at 1400 and 390 px; at 390 nothing may scroll sideways; no error shown unless expected."""
        self.shots += 1
        for width in (1400, 390):
            self.page.set_viewport_size({"width": width, "height": 900})
            self.page.screenshot(path=str(SHOTS / f"{self.role}-{self.shots:02d}-{name}-{width}.png"), full_page=True)
            assert self.page.evaluate(SIDEWAYS) <= 0, f"{self.role} {name}: scrolls sideways at {width} px"
        self.page.set_viewport_size({"width": 1400, "height": 900})
        if not errors_allowed:
            shown = [e.inner_text() for e in self.page.locator(ERRORS).all() if e.is_visible()]
            assert not shown, f"{self.role} {name}: the page shows {shown}"

    def sidebar(self) -> str:
        return self.page.inner_text("#nav-sidebar-apps")


@pytest.fixture
def scene(tenant, reseller_admin, viewer):
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    trunk = f.TrunkFactory(tenant=tenant, name="Front desk", setup_progress={"steps_done": ["sender", "countries"]})
    sender = f.SenderIDFactory(tenant=tenant, account=account, value="HarborDent", samples=["Your appointment is at 9"])
    registration = f.SenderIDCountryFactory(sender=sender, country="IN", status=SenderIDCountry.Status.IN_REVIEW)
    reviewer = f.UserFactory(is_staff=True, first_name="Rita", last_name="Reviewer")
    reviewer.groups.add(Group.objects.get(name="Platform reviewers"))
    return {"trunk": trunk, "registration": registration, "reviewer": reviewer}


def test_the_review_loop_runs_from_the_reviewers_request_to_the_resellers_upload_and_the_approval(
    live_server, chromium, scene, reseller_admin, tmp_path
):
    registration = scene["registration"]
    reviewer = Person(chromium, live_server, scene["reviewer"], "reviewer")
    reseller = Person(chromium, live_server, reseller_admin, "reseller")

    # The reviewer finds it waiting, and asks for documents; the note is confirmed on a page of its own.
    reviewer.go(reverse("admin:review_queue"))
    reviewer.look("queue")
    reviewer.page.click(f"a[href='{reverse('admin:review_detail', args=[registration.pk])}']")
    reviewer.look("detail")
    reviewer.page.fill("#id_note_request_documents", "A DLT registration letter for India, please.")
    with reviewer.page.expect_navigation():
        reviewer.page.click("#decide-request_documents")
    assert "A DLT registration letter for India, please." in reviewer.page.inner_text("#content")
    reviewer.look("confirm-request")
    with reviewer.page.expect_navigation():
        reviewer.page.click("#confirm")
    registration.refresh_from_db()
    assert registration.status == SenderIDCountry.Status.NEEDS_DOCUMENTS

    # The reseller's dashboard names it first, with the reviewer's note; its button opens the upload.
    reseller.go(reverse("admin:dashboard"))
    first = reseller.page.locator("#next-actions li").first
    assert "asked for documents: A DLT registration letter for India, please." in first.inner_text()
    reseller.look("dashboard-documents-asked")
    with reseller.page.expect_navigation():
        first.get_by_role("link", name="Upload documents").click()
    document = tmp_path / "dlt-letter.pdf"
    document.write_bytes(PDF)
    reseller.page.set_input_files("#id_file", str(document))
    with reseller.page.expect_navigation():
        reseller.page.click("button[value=upload]")
    assert "dlt-letter.pdf" in reseller.page.inner_text("#documents")
    with reseller.page.expect_navigation():
        reseller.page.click("button[value=submit]")
    reseller.look("documents-submitted")
    registration.refresh_from_db()
    assert registration.status == SenderIDCountry.Status.IN_REVIEW

    # Back on the reviewer's queue, it waits again, with its document; approved in one click.
    reviewer.go(reverse("admin:review_detail", args=[registration.pk]))
    assert "dlt-letter.pdf" in reviewer.page.inner_text("#content")
    with reviewer.page.expect_navigation():
        reviewer.page.click("#decide-approve")
    reviewer.look("approved")
    registration.refresh_from_db()
    assert registration.status == SenderIDCountry.Status.APPROVED
    reseller.go(reverse("admin:dashboard"))
    assert "HarborDent" not in reseller.page.inner_text("#next-actions")


def test_the_dashboards_next_action_opens_the_trunks_next_setup_step(live_server, chromium, scene, reseller_admin):
    reseller = Person(chromium, live_server, reseller_admin, "reseller-setup")
    reseller.go(reverse("admin:dashboard"))
    action = reseller.page.locator("#next-actions li", has_text="Trunk Front desk")
    assert "step 3 of 6, 3CX trunk" in action.inner_text()
    reseller.look("dashboard")
    with reseller.page.expect_navigation():
        action.get_by_role("link", name="Continue setup").click()
    assert reseller.page.url.endswith(reverse("admin:messaging_trunk_setup_step", args=[scene["trunk"].pk, "threecx"]))
    reseller.look("wizard-step-3")


def test_a_tenant_viewer_sees_their_tenant_and_none_of_what_they_cannot_use(live_server, chromium, scene, viewer):
    person = Person(chromium, live_server, viewer, "viewer")
    person.go(reverse("admin:dashboard"))
    sidebar = person.sidebar()
    for hidden in ("Webhook events", "Failed deliveries", "Country rules", "Send a message", "People", "Review queue"):
        assert hidden not in sidebar
    assert "Message log" in sidebar and "Registrations" in sidebar
    assert person.page.locator("#next-actions a.portal-button").count() == 0  # told, not offered buttons
    person.look("dashboard")
    person.go(reverse("admin:tenant_home", args=[scene["trunk"].tenant_id]))
    assert person.page.get_by_text("Edit tenant").count() == 0
    person.look("tenant-home")
    response = person.page.goto(person.base + reverse("admin:messaging_webhookevent_changelist"))
    assert response.status == 403 and "Not available to you" in person.page.inner_text("body")
    person.look("refused", errors_allowed=True)
    response = person.page.goto(person.base + reverse("admin:messaging_message_send"))
    assert response.status == 403
