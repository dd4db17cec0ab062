"""Every list and every page of the admin, for each role, in Chromium: at a phone's 390 px nothing scrolls sideways
(tables scroll inside their own box), and at 1400 px no list column is clipped (the list fits, no cell is cut).

The pages come from tests/crawl.py (every admin URL for every row the user can see), opened first with the test
client to keep the HTML pages that answer 200; the browser is signed in with that client's session.
"""

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from messaging.models import Message
from tenants import access
from tenants.models import Tenant
from tests import factories as f
from tests.conftest import build_world, live_db
from tests.crawl import admin_urls

pytestmark = [pytest.mark.browser, live_db]

SHOTS = Path(os.environ.get("PORTAL_TEST_ARTIFACTS", settings.BASE_DIR / "var" / "test-artifacts")) / "layout"
# Downloads and JSON the crawl also finds: not pages to lay out.
NOT_PAGES = ("/export/", "/status/", "/check-name/", "/documents/", "/3cx-template", "/jsi18n/", "/logout/")

SIDEWAYS = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
# A list's columns, clipped: the list wider than its box (so it scrolls at 1400 px), or a cell whose content is cut.
CLIPPED = """() => {
  const table = document.querySelector('#result_list');
  if (!table) return [];
  const found = [];
  const box = table.parentElement;
  const over = box.scrollWidth - box.clientWidth;
  if (over > 1) found.push(`the list is ${over} px wider than its box`);
  for (const cell of table.querySelectorAll('th, td')) {
    const style = getComputedStyle(cell);
    // A cell cut on purpose, with an ellipsis and the whole value in a title, is a summary, not a clipped column.
    const summarised = style.textOverflow === 'ellipsis' && (cell.title || cell.querySelector('[title]'));
    const cut = cell.scrollWidth > cell.clientWidth + 1 && style.overflowX !== 'visible';
    if (style.display !== 'none' && cut && !summarised)
      found.push(`a cell is cut: ${cell.innerText.slice(0, 40)}`);
  }
  return found;
}"""


def pages_for(user) -> tuple[list[str], str]:
    """The HTML pages this user opens with a 200, and the session that opened them."""
    client = Client()
    client.force_login(user)
    pages = []
    for url in [*admin_urls(user), *tenant_pages(user)]:
        if any(part in url for part in NOT_PAGES):
            continue
        response = client.get(url)
        if response.status_code == 200 and response["Content-Type"].startswith("text/html"):
            pages.append(url)
    return pages, client.cookies[settings.SESSION_COOKIE_NAME].value


def tenant_pages(user) -> list[str]:
    """Each visible tenant's home and one conversation: site pages keyed by a tenant, which the crawl cannot guess."""
    urls = []
    for tenant in access.visible(user, Tenant):
        urls.append(reverse("admin:tenant_home", args=[tenant.pk]))
        latest = access.visible(user, Message).filter(tenant=tenant, direction="outbound").first()
        if latest:
            urls.append(reverse("admin:conversation", args=[tenant.pk, latest.to_number]))
    return urls


@pytest.fixture
def people(tenant, other_tenant, reseller_admin, viewer, other_admin):
    build_world(tenant, reseller_admin)
    build_world(other_tenant, other_admin)
    reviewer = f.UserFactory(is_staff=True)
    reviewer.groups.add(Group.objects.get(name="Platform reviewers"))
    return {"reseller-admin": reseller_admin, "tenant-viewer": viewer, "reviewer": reviewer}


@pytest.fixture(autouse=True)
def shots_folder():
    SHOTS.mkdir(parents=True, exist_ok=True)


def test_no_page_scrolls_sideways_on_a_phone_and_no_list_column_is_clipped_on_a_wide_screen(
    live_server, people, chromium
):
    problems = []
    opened = 0
    for role, user in people.items():
        pages, session = pages_for(user)
        assert len(pages) >= 10, f"{role}: only {pages}"
        context = chromium.new_context()
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}])
        page = context.new_page()
        for width in (390, 1400):
            page.set_viewport_size({"width": width, "height": 900})
            for url in pages:
                page.goto(live_server.url + url, wait_until="load")
                opened += 1
                sideways = page.evaluate(SIDEWAYS)
                found = [f"scrolls sideways by {sideways} px"] if sideways > 0 else []
                if width == 1400:
                    found += page.evaluate(CLIPPED)
                if found:
                    problems += [f"{role} {width}px {url}: {what}" for what in found]
                    page.screenshot(path=str(SHOTS / f"{role}-{width}-{url.strip('/').replace('/', '_')}.png"))
        context.close()
    assert opened > 60
    assert not problems, "\n".join(problems)
