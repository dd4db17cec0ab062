"""Two-factor sign-in (issue 19): reseller admins and platform staff must set up an authenticator app; others may.
A password alone then reaches nothing but the code page; a wrong code counts toward the same lockout as a wrong
password; recovery codes work once each; API tokens are not affected; setting up and recovery are audited."""

import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from tenants.models import AuditEvent
from tests import factories as f
from tests.conftest import token_client

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def enforced(settings):
    settings.TWO_FACTOR_ENFORCED = True


@pytest.fixture
def lockout(settings):
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 5
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


def code_of(user, steps_ahead: int = 0) -> str:
    """What the user's authenticator app shows now (or a step later: a code is good once, and a test is quick)."""
    device = TOTPDevice.objects.filter(user=user).order_by("-pk").first()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def sign_in(client, user):
    response = client.post(reverse("admin:login"), {"username": user.email, "password": f.PASSWORD})
    assert response.status_code == 302, response.content
    return client.get(reverse("admin:index"))


def enrol(client, user) -> list[str]:
    assert client.get(reverse("two_factor_setup")).status_code == 200  # makes the device, shows its QR code
    done = client.post(reverse("two_factor_setup"), {"code": code_of(user), "next": "/admin/"})
    assert done.status_code == 200, done.content
    return done.context["codes"]


def test_a_reseller_admin_must_set_it_up_and_then_needs_the_code_every_sign_in(client, reseller_admin):
    first = sign_in(client, reseller_admin)
    assert first.status_code == 302 and first["Location"].startswith(reverse("two_factor_setup"))
    assert client.get("/admin/tenants/tenant/").status_code == 302  # nothing else opens
    page = client.get(reverse("two_factor_setup")).content.decode()
    assert "<svg" in page and 'id="secret"' in page

    wrong = client.post(reverse("two_factor_setup"), {"code": "000000"})
    assert "That code is not the one the app shows now" in wrong.content.decode()
    time.sleep(1.1)  # django-otp holds a device back a second after a wrong code (2^n after n of them)
    codes = enrol(client, reseller_admin)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert client.get(reverse("admin:index")).status_code == 200
    event = AuditEvent.objects.get(action=AuditEvent.Action.TWO_FACTOR_ENROLLED)
    assert (event.actor, event.reseller) == (reseller_admin, reseller_admin.memberships.get().reseller)

    client.post(reverse("admin:logout"))
    again = sign_in(client, reseller_admin)
    assert again["Location"].startswith(reverse("two_factor_verify"))
    assert client.get("/admin/tenants/tenant/").status_code == 302
    # A password alone cannot replace the authenticator: the setup page asks for the old one's code first.
    assert client.get(reverse("two_factor_setup"))["Location"].startswith(reverse("two_factor_verify"))
    refused = client.post(reverse("two_factor_verify"), {"code": "123456"})
    assert "That code is not right" in refused.content.decode()
    time.sleep(1.1)
    passed = client.post(
        reverse("two_factor_verify"), {"code": code_of(reseller_admin, 1), "next": "/admin/tenants/tenant/"}
    )
    assert passed["Location"] == "/admin/tenants/tenant/"
    assert client.get("/admin/tenants/tenant/").status_code == 200


def test_each_recovery_code_signs_in_once_and_is_audited(client, reseller_admin):
    sign_in(client, reseller_admin)
    codes = enrol(client, reseller_admin)
    client.post(reverse("admin:logout"))
    sign_in(client, reseller_admin)
    assert client.post(reverse("two_factor_verify"), {"code": codes[3]}).status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200
    event = AuditEvent.objects.get(action=AuditEvent.Action.RECOVERY_CODE_USED)
    assert event.changes == {"recovery_codes_left": 9}
    client.post(reverse("admin:logout"))
    sign_in(client, reseller_admin)
    used = client.post(reverse("two_factor_verify"), {"code": codes[3]})
    assert used.status_code == 200 and "That code is not right" in used.content.decode()


def test_wrong_codes_lock_the_sign_in_out_as_wrong_passwords_do(client, reseller_admin, lockout):
    sign_in(client, reseller_admin)
    enrol(client, reseller_admin)
    client.post(reverse("admin:logout"))
    sign_in(client, reseller_admin)
    for _ in range(4):
        assert client.post(reverse("two_factor_verify"), {"code": "000000"}).status_code == 200
    locked = client.post(reverse("two_factor_verify"), {"code": "000000"})  # the fifth
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session  # signed out
    # The right password is refused now, as after five wrong passwords.
    response = client.post(reverse("admin:login"), {"username": reseller_admin.email, "password": f.PASSWORD})
    assert response.status_code == 429


def test_platform_staff_must_and_a_tenant_viewer_may(client, viewer):
    staff = f.UserFactory(is_staff=True)
    assert sign_in(client, staff)["Location"].startswith(reverse("two_factor_setup"))
    client.post(reverse("admin:logout"))

    assert sign_in(client, viewer).status_code == 200  # not asked
    enrol(client, viewer)  # chose to
    client.post(reverse("admin:logout"))
    assert sign_in(client, viewer)["Location"].startswith(reverse("two_factor_verify"))  # and now always asked


def test_api_tokens_are_not_affected_but_an_unverified_session_is_refused(client, reseller_admin, tenant):
    assert token_client(reseller_admin).get("/api/v1/tenants/").status_code == 200  # no second factor set up
    sign_in(client, reseller_admin)
    refused = client.get("/api/v1/tenants/")
    assert refused.status_code == 403 and "second factor" in refused.json()["detail"]
    enrol(client, reseller_admin)
    assert client.get("/api/v1/tenants/").status_code == 200


def test_off_the_policy_lets_everyone_through(client, reseller_admin, settings):
    settings.TWO_FACTOR_ENFORCED = False
    assert sign_in(client, reseller_admin).status_code == 200
