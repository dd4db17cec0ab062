"""The password-reset pages and e-mail carry the portal's name, as the admin's own pages do."""

import re

import pytest
from django.core import mail
from django.urls import reverse

pytestmark = pytest.mark.django_db

PORTAL = "PBX Messaging Portal"


def title(page: str) -> str:
    return " ".join(re.search(r"<title>(.*?)</title>", page, re.S).group(1).split())


@pytest.mark.parametrize(
    "url_name", ["admin_password_reset", "password_reset", "password_reset_done", "password_reset_complete"]
)
def test_each_password_reset_page_carries_the_portals_name(client, url_name):
    page = client.get(reverse(url_name)).content.decode()
    assert title(page).endswith(f"| {PORTAL}") and "Django site admin" not in page


def test_the_reset_e_mail_and_the_set_password_page_it_links_to_carry_the_portals_name(client, operator):
    client.post(reverse("admin_password_reset"), {"email": operator.email})
    (message,) = mail.outbox
    assert message.subject == f"Password reset on {PORTAL}" and f"user account at {PORTAL}" in message.body
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", message.body).group(1)
    page = client.get(link, follow=True)
    assert 'name="new_password1"' in page.content.decode()  # the set-password form, not "reset unsuccessful"
    assert title(page.content.decode()) == f"Enter new password | {PORTAL}"


def test_a_stale_set_password_link_still_carries_the_portals_name(client):
    page = client.get(reverse("password_reset_confirm", args=["MQ", "set-password"])).content.decode()
    assert "Password reset unsuccessful" in title(page) and title(page).endswith(f"| {PORTAL}")
