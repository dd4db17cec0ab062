"""Two-factor sign-in: an authenticator app (TOTP) and ten one-time recovery codes, on django-otp.

Who must use it is decided in tenants.access.must_use_two_factor (reseller admins, platform staff); anyone else may
set it up. tenants.middleware.TwoFactorMiddleware sends a signed-in person who has not given their second factor
in this session to the verify page (or, if they must and have none yet, to the setup page) before anything else.
API tokens are not affected: a token is a credential of its own, made by a person who signed in.

A wrong code counts as a failed sign-in for django-axes, exactly as a wrong password does: the same lockout for the
same e-mail and address, the same AccessAttempt rows. Setting up, and signing in with a recovery code, go to the
audit trail.
"""

import base64
import re

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_login_failed
from django.db import transaction
from django.http import HttpRequest
from django_otp import login as otp_login
from django_otp import match_token, user_has_device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from tenants import access
from tenants.models import AuditEvent, Membership

RECOVERY_CODES = 10
APP_NAME = "Authenticator app"
NO_SECOND_FACTOR = "two_factor_none"  # the session's note that its person has none and needs none


def note_at_sign_in(sender, request: HttpRequest, user: User, **kwargs) -> None:
    """At sign-in, note in the session whether its person has a second factor to give, so that the pages after it
    do not look it up each time. One set up later in the session is verified there and then (enrol())."""
    if request is not None and hasattr(request, "session") and not enrolled(user) and not enforced_for(user):
        request.session[NO_SECOND_FACTOR] = user.pk


def enforced_for(user: User) -> bool:
    """Must this person set up a second factor before using the portal (with the policy switched on)?"""
    return bool(settings.TWO_FACTOR_ENFORCED) and access.must_use_two_factor(user)


def enrolled(user: User) -> bool:
    return user_has_device(user, confirmed=True)


def pending_device(user: User) -> TOTPDevice:
    """The authenticator being set up: the same one (and QR code) until it is confirmed with a code."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    return device or TOTPDevice.objects.create(user=user, name=APP_NAME, confirmed=False)


def qr_svg(device: TOTPDevice) -> str:
    """The device's otpauth:// link as an inline SVG QR code, for the authenticator app's camera."""
    image = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    return image.to_string(encoding="unicode")


def secret_for_typing(device: TOTPDevice) -> str:
    """The secret as an app asks for it when typed in: base32, in groups of four."""
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def _code(raw: str) -> str:
    return re.sub(r"[\s-]", "", raw or "")


def _failed(request: HttpRequest, user: User) -> None:
    """A wrong code is a failed sign-in: django-axes counts it against the e-mail and address, as a wrong password."""
    user_login_failed.send(sender=__name__, credentials={"username": user.get_username()}, request=request)


def _audit(action: str, user: User, changes: dict[str, int]) -> None:
    """An audit row the person's reseller sees (platform staff have none: only the platform sees theirs)."""
    membership = (
        Membership.objects.filter(user=user, is_active=True).select_related("reseller", "tenant__reseller").first()
    )
    reseller = None
    if membership is not None:
        reseller = membership.reseller or (membership.tenant.reseller if membership.tenant else None)
    AuditEvent.record(action, user, actor=user, changes=changes, reseller=reseller)


def enrol(request: HttpRequest, user: User, code: str) -> list[str] | None:
    """Confirm the authenticator being set up with a code from it: it replaces any before it, ten new recovery
    codes are made (returned, to be shown once) and this session counts as verified. None if the code is wrong."""
    device = pending_device(user)
    if not device.verify_token(_code(code)):
        _failed(request, user)
        return None
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=True).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        StaticDevice.objects.filter(user=user).delete()
        recovery = StaticDevice.objects.create(user=user, name="Recovery codes", confirmed=True)
        codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
        recovery.token_set.bulk_create([StaticToken(device=recovery, token=c) for c in codes])
        _audit(AuditEvent.Action.TWO_FACTOR_ENROLLED, user, {"recovery_codes": RECOVERY_CODES})
    otp_login(request, device)
    return codes


def verify(request: HttpRequest, user: User, code: str) -> bool:
    """Check a code from the app, or a recovery code (used up by this); on success the session is verified."""
    device = match_token(user, _code(code))
    if device is None:
        _failed(request, user)
        return False
    otp_login(request, device)
    if isinstance(device, StaticDevice):
        _audit(AuditEvent.Action.RECOVERY_CODE_USED, user, {"recovery_codes_left": device.token_set.count()})
    return True
