"""Whose brand a page or an e-mail wears: the reseller's (name, logo, colour, support e-mail) for its people and its
tenants' people, the platform's for platform staff and anyone between resellers. The one place that decides.

Pages get it through the admin theme's settings (UNFOLD in portal.settings names the functions below), e-mails
through send_branded_mail(): From shows the brand's name, Reply-To its support address, and the HTML part its logo
and colour over the same text as the plain part.
"""

import logging
import re
from dataclasses import dataclass
from email.utils import formataddr, parseaddr
from html import escape

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.http import HttpRequest
from django.urls import reverse

from tenants import access
from tenants.models import Reseller, Tenant

logger = logging.getLogger(__name__)

PLATFORM_NAME = "PBX Messaging Portal"
PLATFORM_TAGLINE = "SMS for 3CX over Wavix"
LOGO_MAX_BYTES = 200_000
LOGO_KINDS = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}  # no SVG: it can carry script
COLOR = re.compile(r"#[0-9a-fA-F]{6}")
SHADES = ("50", "100", "200", "300", "400", "500", "600", "700", "800", "900", "950")


@dataclass(frozen=True)
class Brand:
    name: str
    tagline: str = ""
    color: str = ""  # "#rrggbb", or "" for the platform's palette
    logo_url: str = ""  # a path on the portal, or ""
    support_email: str = ""
    reseller_id: int | None = None


PLATFORM = Brand(PLATFORM_NAME, PLATFORM_TAGLINE)


def logo_kind(data: bytes) -> str | None:
    """The logo's content type, judged by its first bytes: PNG or JPEG only."""
    return next((kind for magic, kind in LOGO_KINDS.items() if data.startswith(magic)), None)


def brand_of(reseller: Reseller | None) -> Brand:
    if reseller is None:
        return PLATFORM
    logo = ""
    if reseller.brand_logo_type:
        logo = f"{reverse('brand_logo', args=[reseller.pk])}?v={reseller.brand_logo_hash}"
    return Brand(
        name=reseller.brand_name or reseller.name,
        tagline=PLATFORM_TAGLINE,
        color=reseller.brand_color,
        logo_url=logo,
        support_email=reseller.support_email,
        reseller_id=reseller.pk,
    )


def brand_for_user(user: access.Principal) -> Brand:
    """The reseller's brand for someone who works for (or at a tenant of) exactly one reseller; else the platform's
    (platform staff, people of several resellers, anyone signed out)."""
    if not getattr(user, "is_authenticated", False) or user.is_staff or user.is_superuser:
        return PLATFORM
    grants = access.grants(user)
    resellers = set(grants.manager_resellers)
    if grants.viewer_tenants:
        resellers |= set(Tenant.objects.filter(pk__in=grants.viewer_tenants).values_list("reseller_id", flat=True))
    if len(resellers) != 1:
        return PLATFORM
    return brand_of(Reseller.objects.filter(pk=resellers.pop()).first())


def for_request(request: HttpRequest) -> Brand:
    cached = getattr(request, "_portal_brand", None)
    if isinstance(cached, Brand):
        return cached
    user = getattr(request, "user", None)  # none on a page answered before the auth middleware ran
    brand = PLATFORM if user is None else brand_for_user(user)
    request._portal_brand = brand  # type: ignore[attr-defined]  # once per request
    return brand


# The admin theme's settings call these with the request (portal.settings UNFOLD).


def site_header(request: HttpRequest) -> str:
    return for_request(request).name


def site_subheader(request: HttpRequest) -> str:
    return for_request(request).tagline


def site_icon(request: HttpRequest) -> str | None:
    return for_request(request).logo_url or None


def primary_colors(request: HttpRequest) -> dict[str, str]:
    """The theme's primary palette: shades of the brand's colour, or the platform's own (a fresh dict each time:
    the theme converts the values in place)."""
    color = for_request(request).color
    return palette(color) if color else dict(settings.PORTAL_PRIMARY_COLORS)


def palette(color: str) -> dict[str, str]:
    """Eleven shades around a colour, as the theme's weights name them: 600 is the colour itself (buttons, links),
    lighter towards 50 (mixed with white), darker towards 950 (mixed with black)."""
    rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    mix = {"50": 0.95, "100": 0.9, "200": 0.75, "300": 0.6, "400": 0.4, "500": 0.2, "600": 0.0}
    dark = {"700": 0.15, "800": 0.3, "900": 0.45, "950": 0.6}
    shades = {}
    for shade in SHADES:
        if shade in mix:
            parts = [round(c + (255 - c) * mix[shade]) for c in rgb]
        else:
            parts = [round(c * (1 - dark[shade])) for c in rgb]
        shades[shade] = "#" + "".join(f"{p:02x}" for p in parts)
    return shades


# --------------------------------------------------------------------------------------------------------------
# E-mails
# --------------------------------------------------------------------------------------------------------------


def _linked(escaped: str) -> str:
    """The links in an escaped text made clickable (an invitation's, a registration's page)."""
    return re.sub(
        r"https?://[^\s<]+", lambda m: f'<a href="{m.group(0)}" style="color:inherit">{m.group(0)}</a>', escaped
    )


def _html(brand: Brand, subject: str, body: str) -> str:
    color = brand.color or "#2563eb"
    logo = (
        f'<img src="{escape(settings.PUBLIC_BASE_URL + brand.logo_url)}" alt="" height="40" style="height:40px">'
        if brand.logo_url
        else ""
    )
    paragraphs = "".join(
        f'<p style="margin:0 0 12px;overflow-wrap:anywhere">{_linked(escape(part)).replace(chr(10), "<br>")}</p>'
        for part in body.split("\n\n")
    )
    support = (
        f'Questions? <a href="mailto:{escape(brand.support_email)}">{escape(brand.support_email)}</a>'
        if brand.support_email
        else ""
    )
    return (
        f'<div style="font-family:Arial,sans-serif;max-width:600px">'
        f'<div style="background:{color};color:#fff;padding:12px 16px;font-size:18px;font-weight:bold">'
        f"{logo} {escape(brand.name)}</div>"
        f'<div style="padding:16px;color:#111">{paragraphs}</div>'
        f'<div style="padding:0 16px 16px;color:#555;font-size:12px">{escape(brand.name)}. {support}</div></div>'
    )


def send_branded_mail(subject: str, body: str, recipients: list[str], *, reseller: Reseller | None) -> None:
    """Send an e-mail in the reseller's brand (the platform's without one): From its name, Reply-To its support
    address, a plain part ending with who sent it, and an HTML part with its logo and colour. Raises what the mail
    server raises: the caller decides whether that undoes anything."""
    brand = brand_of(reseller)
    footer = f"\n\n— {brand.name}" + (f" · {brand.support_email}" if brand.support_email else "")
    message = EmailMultiAlternatives(
        subject,
        body.rstrip() + footer + "\n",
        formataddr((brand.name, parseaddr(settings.DEFAULT_FROM_EMAIL)[1])),
        recipients,
        reply_to=[brand.support_email] if brand.support_email else None,
    )
    message.attach_alternative(_html(brand, subject, body.strip()), "text/html")
    message.send()
