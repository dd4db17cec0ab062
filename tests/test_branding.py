"""The reseller's brand (issue 19): name, logo, colour and support e-mail on the pages its people and its tenants'
people see and in the e-mails sent to them; the platform's own for staff and for reviewers' e-mails."""

import struct
import zlib

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from messaging.services import senders
from tenants import branding, services
from tests import factories as f
from tests.conftest import member

pytestmark = pytest.mark.django_db


def png(width: int = 38, height: int = 38, rgb=(15, 118, 110)) -> bytes:
    """A real PNG, drawn here: a square of one colour."""
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def brand(reseller, name: str, color: str, support: str, logo: bytes | None = None) -> None:
    reseller.brand_name, reseller.brand_color, reseller.support_email = name, color, support
    if logo:
        reseller.brand_logo, reseller.brand_logo_type, reseller.brand_logo_hash = logo, "image/png", "abc123"
    reseller.full_clean()
    reseller.save()


@pytest.fixture
def two_brands(reseller, other_reseller):
    brand(reseller, "Harbor Telecom", "#0f766e", "help@harbor.example", png())
    brand(other_reseller, "Summit Voice", "#9d174d", "care@summit.example")
    return reseller, other_reseller


def rgb(color: str) -> str:
    return f"rgb({int(color[1:3], 16)}, {int(color[3:5], 16)}, {int(color[5:7], 16)})"


def test_each_resellers_people_and_tenants_see_its_brand_and_staff_the_platforms(
    client, two_brands, reseller_admin, viewer, other_admin
):
    for user, name, color in (
        (reseller_admin, "Harbor Telecom", "#0f766e"),
        (viewer, "Harbor Telecom", "#0f766e"),  # a tenant's viewer: its reseller's brand
        (other_admin, "Summit Voice", "#9d174d"),
    ):
        client.force_login(user)
        page = client.get(reverse("admin:index")).content.decode()
        assert name in page, name
        assert f"--color-primary-600: {rgb(color)};" in page
    client.force_login(reseller_admin)
    page = client.get(reverse("admin:index")).content.decode()
    assert f'src="{reverse("brand_logo", args=[two_brands[0].pk])}?v=abc123"' in page and "Summit Voice" not in page

    staff = f.UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    page = client.get(reverse("admin:index")).content.decode()
    assert branding.PLATFORM_NAME in page and "Harbor Telecom" not in page
    assert "--color-primary-600: oklch(54.6% .245 262.881);" in page
    # Someone working for both resellers gets the platform's: neither brand is theirs alone.
    both = member("reseller_operator", reseller=two_brands[0])
    f.MembershipFactory(user=both, reseller=two_brands[1], role="reseller_operator")
    assert branding.brand_for_user(both) == branding.PLATFORM


def test_invites_and_registration_e_mails_wear_the_resellers_brand_and_reviewers_the_platforms(
    two_brands, reseller_admin, other_admin, tenant, other_tenant
):
    harbor, summit = two_brands
    services.member_invite(actor=reseller_admin, email="ann@acme.example", organization=tenant, role="tenant_viewer")
    services.member_invite(actor=other_admin, email="bob@b.example", organization=other_tenant, role="tenant_viewer")
    ann, bob = mail.outbox[-2], mail.outbox[-1]
    assert ann.from_email == "Harbor Telecom <noreply@localhost>" and ann.reply_to == ["help@harbor.example"]
    assert bob.from_email == "Summit Voice <noreply@localhost>" and bob.reply_to == ["care@summit.example"]
    assert ann.subject == "You have been invited to Tenant A on Harbor Telecom"
    assert "— Harbor Telecom · help@harbor.example" in ann.body and "Summit" not in ann.body
    html = ann.alternatives[0][0]
    assert "background:#0f766e" in html and f"/brand/{harbor.pk}/logo?v=abc123" in html
    assert "background:#9d174d" in bob.alternatives[0][0] and "<img" not in bob.alternatives[0][0]

    registration = f.SenderIDCountryFactory(sender=f.SenderIDFactory(tenant=tenant), country="GB")
    f.UserFactory(is_staff=True, is_superuser=True, email="rev@platform.example")  # a reviewer
    mail.outbox.clear()
    senders.notify_reseller(registration.pk)
    senders.notify_reviewers([registration.pk], "Submitted")
    to_reseller, to_reviewers = mail.outbox
    assert to_reseller.from_email.startswith("Harbor Telecom <") and to_reseller.to == [reseller_admin.email]
    assert to_reviewers.from_email.startswith(f"{branding.PLATFORM_NAME} <") and to_reviewers.reply_to == []


def test_the_logo_is_a_small_png_or_jpeg_and_served_to_anyone(client, reseller, reseller_admin):
    client.force_login(reseller_admin)
    url = reverse("admin:tenants_reseller_change", args=[reseller.pk])
    form = {"name": reseller.name, "slug": reseller.slug, "message_retention_days": 90, "pricing": "markup"}
    form |= {"markup_percent": "0", "currency": "USD", "brand_name": "Harbor Telecom", "brand_color": "#0f766e"}

    svg = SimpleUploadedFile("logo.svg", b"<svg onload='alert(1)'/>", content_type="image/svg+xml")
    refused = client.post(url, {**form, "logo": svg})
    assert refused.status_code == 200 and "The logo must be a PNG or JPEG image." in refused.content.decode()
    huge = SimpleUploadedFile("logo.png", png(400, 400, (1, 2, 3))[:8] + b"\x00" * 250_000)
    assert "larger than 200 kB" in client.post(url, {**form, "logo": huge}).content.decode()
    light = client.post(url, {**form, "brand_color": "#fde68a"})
    assert "Too light" in light.content.decode()

    saved = client.post(url, {**form, "logo": SimpleUploadedFile("logo.png", png())})
    assert saved.status_code == 302
    reseller.refresh_from_db()
    assert (reseller.brand_logo_type, len(reseller.brand_logo_hash)) == ("image/png", 16)
    client.logout()
    logo = client.get(reverse("brand_logo", args=[reseller.pk]))  # mail clients fetch it signed out
    assert logo.status_code == 200 and logo["Content-Type"] == "image/png" and logo.content == png()
    assert "public" in logo["Cache-Control"]
    client.force_login(reseller_admin)
    assert client.post(url, {**form, "remove_logo": "on"}).status_code == 302
    assert client.get(reverse("brand_logo", args=[reseller.pk])).status_code == 404


def test_the_palette_keeps_the_colour_at_600_lighter_above_and_darker_below():
    shades = branding.palette("#0f766e")
    assert shades["600"] == "#0f766e" and list(shades) == list(branding.SHADES)
    green = [int(shades[shade][3:5], 16) for shade in branding.SHADES]
    assert green == sorted(green, reverse=True)  # lighter towards 50, darker towards 950
