"""The sidebar groups pages by task and shows each person only what they may open; a tenant viewer opens none of the
plumbing; refusals are the portal's own styled 403 and 404 pages."""

import html
import re

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from messaging.models import Delivery
from tests import factories as f


def sidebar(client) -> dict[str, list[str]]:
    """The sidebar's groups and their entries' titles, as the dashboard page renders them."""
    page = client.get(reverse("admin:dashboard")).content.decode()
    nav = re.search(r'<nav id="nav-sidebar-inner".*?</nav>', page, re.S).group(0)
    groups: dict[str, list[str]] = {}
    for block in nav.split('<div class="hidden mb-1.5')[1:]:  # unfold's markup: one such div per group
        title = re.search(r"<h2[^>]*>\s*([^<]*?)\s*<", block)
        groups[html.unescape(title.group(1)) if title else ""] = re.findall(r"<span>([^<]*)</span>", block)
    return groups


def entry(page: str, title: str) -> str:
    """One sidebar entry's link, badge included."""
    return re.search(rf"<a [^>]*>(?:(?!</a>).)*<span>{re.escape(title)}</span>.*?</a>", page, re.S).group(0)


@pytest.fixture
def reviewer(db):
    user = f.UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name="Platform reviewers"))
    return user


def test_a_reseller_admin_finds_every_task_group_in_the_sidebar(client, reseller_admin, world):
    client.force_login(reseller_admin)
    groups = sidebar(client)
    assert groups[""] == ["Dashboard"]
    assert groups["Customers"] == ["Tenants", "Onboard customers", "Trunks", "People", "Resellers", "Usage and billing"]
    assert groups["Numbers & senders"] == ["Numbers", "Sender IDs", "Registrations"]
    assert groups["Messages"] == ["Message log", "Send a message", "Failed deliveries", "Opt-outs"]
    assert groups["Integrations"][:2] == ["Wavix accounts", "API tokens"]
    assert groups["Platform"] == ["Country rules", "Webhook events", "Audit log"]  # no review queue: not a reviewer


def test_a_tenant_viewer_sees_no_plumbing_and_no_page_they_cannot_use(client, viewer, world):
    client.force_login(viewer)
    groups = sidebar(client)
    entries = [entry for group in groups.values() for entry in group]
    hidden = ("Webhook events", "Failed deliveries", "Country rules", "Send a message", "People", "Wavix sandbox")
    assert not set(hidden) & set(entries)
    assert "Message log" in groups["Messages"] and "Registrations" in groups["Numbers & senders"]
    for name in ("messaging_webhookevent", "messaging_delivery", "messaging_countryrule"):
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 403, name
    delivery = world["messaging.delivery"]
    assert client.get(reverse("admin:messaging_delivery_change", args=[delivery.pk])).status_code == 403
    # What the viewer may read still opens.
    assert client.get(reverse("admin:messaging_message_changelist")).status_code == 200


def test_platform_reviewers_get_the_review_queue_with_its_count(client, reviewer, world):
    world["messaging.senderidcountry"].__class__.objects.filter(pk=world["messaging.senderidcountry"].pk).update(
        status="in_review"
    )
    client.force_login(reviewer)
    page = client.get(reverse("admin:dashboard")).content.decode()
    assert re.search(r">\s*1\s*</span>", entry(page, "Review queue")), "the queue's entry shows 1 waiting"
    assert "Trunks" not in sidebar(client).get("Customers", [])  # reviewers change no trunk


def test_failed_deliveries_show_their_count_to_those_who_can_replay_them(client, operator, world, other_world):
    Delivery.objects.filter(pk=world["messaging.delivery"].pk).update(status="dead")
    Delivery.objects.filter(pk=other_world["messaging.delivery"].pk).update(status="failed")  # another reseller's
    client.force_login(operator)
    page = client.get(reverse("admin:dashboard")).content.decode()
    assert re.search(r">\s*1\s*</span>", entry(page, "Failed deliveries"))
    failed = client.get(reverse("admin:messaging_delivery_changelist") + "?status__in=failed,dead")
    assert failed.status_code == 200 and failed.context["cl"].result_count == 1


def test_refusals_are_the_portals_own_pages(client, viewer, other_world):
    client.force_login(viewer)
    denied = client.get(reverse("admin:messaging_webhookevent_changelist"))
    assert denied.status_code == 403
    assert "Not available to you" in denied.content.decode() and 'id="nav-sidebar-inner"' in denied.content.decode()
    theirs = other_world["messaging.trunk"]
    missing = client.get(reverse("admin:messaging_trunk_change", args=[theirs.pk]))
    assert missing.status_code == 404
    assert "Page not found" in missing.content.decode() and theirs.name not in missing.content.decode()
    client.logout()
    anonymous = client.get("/no-such-page/")
    assert anonymous.status_code == 404 and "Sign in to the PBX Messaging Portal" in anonymous.content.decode()
