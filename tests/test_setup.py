"""The SMS setup wizard, step by step, through its pages: bad input is refused next to its field, what was typed
stays, and nothing is half-saved. Wavix is the sandbox and 3CX a fake inbox, over real HTTP."""

import datetime
import http.server
import ipaddress
import re
import ssl
import threading
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.urls import reverse
from django.utils import timezone

from messaging import threecx
from messaging.models import Message, PhoneNumber, ProviderKey, SenderID, SenderIDCountry, Trunk, WavixAccount
from messaging.services import accounts, setup, setup_actions
from sandbox.models import FakePbxInbox, FakePbxRequest, SandboxAccount
from tests import factories as f
from tests.conftest import live_db

pytestmark = live_db


@pytest.fixture
def line(wavix, tenant, sandbox_account):
    """A tenant with its own Wavix account (the sandbox's), one SMS-enabled number, and a new trunk."""
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant, api_key=sandbox_account.api_key)
    f.SandboxNumberFactory(account=sandbox_account, number="14155550300")
    number = PhoneNumber.objects.create(
        account=account, tenant=tenant, number="+14155550300", sms_enabled=True, wavix_id="300", country="US"
    )
    trunk = f.TrunkFactory(tenant=tenant, name="Front desk", main_sender=None, sms_enabled=False)
    return trunk, account, number


def url(trunk, step=None):
    if step is None:
        return reverse("admin:messaging_trunk_setup", args=[trunk.pk])
    return reverse("admin:messaging_trunk_setup_step", args=[trunk.pk, step])


def test_a_new_trunk_starts_at_step_one_and_each_step_says_what_is_left(client, operator, line):
    trunk, _, _ = line
    client.force_login(operator)
    assert client.get(url(trunk)).url == url(trunk, "sender")
    steps = {s.key: s for s in setup.setup_state(trunk)}
    assert [steps[k].state for k in setup.STEP_KEYS] == ["todo"] * 6
    assert steps["verify"].reason == "Send a test text to a mobile phone."


def test_step_one_refuses_a_bad_name_next_to_the_field_and_keeps_it(client, operator, line):
    trunk, _, _ = line
    client.force_login(operator)
    response = client.post(url(trunk, "sender"), {"kind": "alphanumeric", "value": "A!"})
    page = response.content.decode()
    assert response.status_code == 200
    assert response.context["form"].errors["value"] == [
        "'A!' is 2 characters long; alphanumeric sender IDs have 3 to 11.",
        "'A!' contains '!'; only letters A–Z, digits and spaces are allowed.",
    ]
    assert 'id="error-value"' in page and 'value="A!"' in page
    trunk.refresh_from_db()
    assert not trunk.setup_progress.get("draft")


def test_the_name_is_checked_as_you_type(client, operator, line):
    trunk, _, _ = line
    client.force_login(operator)
    check = reverse("admin:messaging_trunk_check_name", args=[trunk.pk])
    assert client.get(check, {"value": "Acme Dental"}).json() == {"value": "Acme Dental", "ok": True, "problems": []}
    refused = client.get(check, {"value": "12345"}).json()
    assert refused["ok"] is False and "has no letter" in refused["problems"][0]


def test_a_number_without_sms_is_greyed_out_and_refused(client, operator, line, tenant):
    trunk, account, _ = line
    quiet = PhoneNumber.objects.create(account=account, tenant=tenant, number="+14155550301", sms_enabled=False)
    client.force_login(operator)
    page = client.get(url(trunk, "sender")).content.decode()
    assert 'title="SMS is not enabled on this number at Wavix."' in page
    response = client.post(url(trunk, "sender"), {"kind": "numeric", "number": quiet.pk})
    assert response.context["form"].errors["number"] == ["+14155550301: SMS is not enabled on this number at Wavix."]


def test_a_pending_10dlc_campaign_holds_a_us_number_back(client, operator, line):
    trunk, _, number = line
    PhoneNumber.objects.filter(pk=number.pk).update(tendlc_status="PENDING")
    client.force_login(operator)
    response = client.post(url(trunk, "sender"), {"kind": "numeric", "number": number.pk})
    assert response.context["form"].errors["number"] == [
        "+14155550300: 10DLC: number pending. US numbers text once brand, campaign and number are approved."
    ]


def test_the_tenants_only_number_that_can_send_is_chosen_already_so_step_one_needs_only_next(
    client, operator, line, tenant
):
    trunk, account, number = line
    PhoneNumber.objects.create(account=account, tenant=tenant, number="+14155550301", sms_enabled=False)
    client.force_login(operator)
    response = client.get(url(trunk, "sender"))
    page = response.content.decode()
    assert re.search(r'value="numeric"[^>]*checked', page)
    assert re.search(rf'id="number-{number.pk}"\s*checked', page)
    form = response.context["form"]
    pressed_next = {"kind": form["kind"].value(), "number": form["number"].value()}  # what the browser posts
    assert client.post(url(trunk, "sender"), pressed_next).url == url(trunk, "countries")
    assert setup.progress(Trunk.objects.get(pk=trunk.pk))["draft"]["value"] == "+14155550300"


def test_with_two_numbers_that_can_send_step_one_chooses_none(client, operator, line, tenant):
    trunk, account, _ = line
    PhoneNumber.objects.create(account=account, tenant=tenant, number="+14155550301", sms_enabled=True)
    client.force_login(operator)
    page = client.get(url(trunk, "sender")).content.decode()
    assert not re.search(r'id="number-\d+"\s*checked', page)


def test_step_two_pins_the_tenants_country_first_and_ticks_it_while_nothing_is_registered(
    client, operator, line, tenant
):
    trunk, _, _ = line
    tenant.default_country = "GB"
    tenant.save()
    client.force_login(operator)
    client.post(url(trunk, "sender"), {"kind": "alphanumeric", "value": "HarborDent"})
    response = client.get(url(trunk, "countries"))
    assert [c.code for c in response.context["choices"]][:2] == ["GB", "AF"]  # then the others by name
    assert list(response.context["form"]["countries"].value()) == ["GB"]
    assert re.search(r'value="GB"\s*checked', response.content.decode())
    assert "Selected: GB" in response.content.decode()

    tenant.default_country = "US"  # a country alphanumeric senders cannot text: pinned, never ticked
    tenant.save()
    response = client.get(url(trunk, "countries"))
    assert response.context["choices"][0].code == "US" and not response.context["form"]["countries"].value()


def test_step_two_ticks_nothing_once_the_trunks_sender_is_registered(client, registered, tenant):
    trunk, _ = registered
    tenant.default_country = "GB"
    tenant.save()
    client.post(url(trunk, "sender"), {"kind": "alphanumeric", "value": "HarborDent"})  # choosing anew
    response = client.get(url(trunk, "countries"))
    assert response.context["choices"][0].code == "GB"
    assert not response.context["form"]["countries"].value()


def test_step_two_greys_out_countries_the_type_cannot_text_and_reviews_before_submitting(client, operator, line):
    trunk, _, _ = line
    client.force_login(operator)
    client.post(url(trunk, "sender"), {"kind": "alphanumeric", "value": "HarborDent"})
    page = client.get(url(trunk, "countries")).content.decode()
    assert 'value="US" disabled' in page  # alphanumeric senders cannot text the US
    assert "⚑ paperwork" in page
    refused = client.post(url(trunk, "countries"), {"action": "review", "usecase": "promo", "samples": "Hi there"})
    assert refused.context["form"].errors["countries"] == ["This field is required."]
    assert "Hi there" in refused.content.decode()  # what was typed stays
    review = client.post(
        url(trunk, "countries"), {"action": "review", "countries": ["GB", "IN"], "usecase": "promo"}
    ).context["review"]
    assert [r.country for r in review["at_once"]] == ["GB"] and [r.country for r in review["paperwork"]] == ["IN"]
    assert not SenderID.objects.exists()  # a review registers nothing


def test_step_two_submits_to_wavix_and_makes_the_sender_the_main_trunk_number(client, operator, line):
    trunk, _, number = line
    client.force_login(operator)
    client.post(url(trunk, "sender"), {"kind": "numeric", "number": number.pk})
    response = client.post(
        url(trunk, "countries"), {"action": "submit", "countries": ["US"], "usecase": "transactional"}
    )
    assert response.url == url(trunk, "threecx")
    trunk.refresh_from_db()
    assert trunk.main_sender.value == "+14155550300" and trunk.main_sender.wavix_id
    assert SenderIDCountry.objects.get(sender=trunk.main_sender).status == "allowlisted"
    assert PhoneNumber.objects.get(pk=number.pk).trunk == trunk
    assert trunk.setup_progress["steps_done"] == ["sender", "countries"] and not trunk.setup_progress["draft"]


def test_a_registration_wavix_cannot_take_now_saves_nothing(client, operator, line, sandbox_account):
    trunk, _, number = line
    client.force_login(operator)
    client.post(url(trunk, "sender"), {"kind": "numeric", "number": number.pk})
    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(failing_until=timezone.now() + timedelta(minutes=5))
    response = client.post(url(trunk, "countries"), {"action": "submit", "countries": ["US"], "usecase": "promo"})
    assert "Could not register the sender ID at Wavix right now" in response.content.decode()
    assert not SenderID.objects.exists()
    assert list(response.context["form"]["countries"].value()) == ["US"]


@pytest.fixture
def registered(client, operator, line):
    trunk, account, number = line
    client.force_login(operator)
    client.post(url(trunk, "sender"), {"kind": "numeric", "number": number.pk})
    client.post(url(trunk, "countries"), {"action": "submit", "countries": ["US"], "usecase": "transactional"})
    client.post(url(trunk, "threecx"))
    trunk.refresh_from_db()
    return trunk, account


def test_step_three_lists_what_to_type_in_3cx_with_the_sender_as_main_trunk_number(client, registered):
    trunk, account = registered
    values = {row.field: row for row in setup.threecx_values(trunk)}
    assert (values["Main Trunk No."].value, values["Main Trunk No."].copyable) == ("+14155550300", True)
    assert values["SMS → Api Key"].value == f"the Wavix API key ending …{account.api_key_last4}"
    assert not values["SMS → Api Key"].copyable
    page = client.get(reverse("admin:messaging_trunk_threecx_pack", args=[trunk.pk])).content.decode()
    assert 'data-copy="+14155550300"' in page and "window.print()" in page
    assert account.get_api_key() not in page


def test_step_four_refuses_a_3cx_that_does_not_know_the_url_and_saves_nothing(client, registered, wavix):
    trunk, _ = registered
    inbox = FakePbxInbox.objects.create(label="PBX", mode="404")
    webhook = f"{wavix.url}/sandbox/3cx/{inbox.token}/"
    response = client.post(url(trunk, "enable"), {"threecx_webhook_url": webhook})
    assert response.context["form"].errors["threecx_webhook_url"] == [
        "Test POST: 3CX answered HTTP 404: the URL's token is not one 3CX knows. Copy the Webhook URL again from "
        "the trunk's SMS tab in 3CX, whole."
    ]
    assert f'value="{webhook}"' in response.content.decode()  # kept for correcting
    trunk.refresh_from_db()
    assert not trunk.sms_enabled and not trunk.threecx_webhook_url_encrypted
    assert [c["name"] for c in trunk.setup_progress["probe"]] == ["DNS", "TLS", "Test POST"]


@pytest.mark.parametrize(
    ("webhook", "error"),
    [
        ("ftp://pbx.example/webhook", "Paste the Webhook URL from the trunk's SMS tab in 3CX; it starts https://."),
        ("https://no-such-pbx.invalid/sms/abc", "DNS: no-such-pbx.invalid does not resolve. Check the PBX's FQDN"),
    ],
)
def test_step_four_names_what_is_wrong_with_the_url(client, registered, webhook, error):
    trunk, _ = registered
    response = client.post(url(trunk, "enable"), {"threecx_webhook_url": webhook})
    assert response.context["form"].errors["threecx_webhook_url"][0].startswith(error)
    assert not Trunk.objects.get(pk=trunk.pk).sms_enabled


def test_step_four_refuses_a_key_wavix_refuses_and_keeps_the_old_one(client, registered, wavix):
    trunk, account = registered
    inbox = FakePbxInbox.objects.create(label="PBX")
    response = client.post(
        url(trunk, "enable"),
        {"api_key": "sbx_wrong", "threecx_webhook_url": f"{wavix.url}/sandbox/3cx/{inbox.token}/"},
    )
    assert response.context["form"].errors["api_key"] == ["Wavix refused this key: Unauthorized"]
    assert WavixAccount.objects.get(pk=account.pk).get_api_key() == account.get_api_key()
    assert not FakePbxRequest.objects.exists()  # nothing was sent to 3CX either


def test_step_four_switches_sms_on_after_a_test_post_that_3cx_accepts(client, registered, wavix):
    trunk, _ = registered
    inbox = FakePbxInbox.objects.create(label="PBX")
    response = client.post(url(trunk, "enable"), {"threecx_webhook_url": f"{wavix.url}/sandbox/3cx/{inbox.token}/"})
    assert response.url == url(trunk, "enable")
    trunk.refresh_from_db()
    assert trunk.sms_enabled and trunk.get_threecx_webhook_url().endswith(f"/3cx/{inbox.token}/")
    test_post = FakePbxRequest.objects.get(inbox=inbox)
    assert b"connection test" in bytes(test_post.body) and test_post.headers.get("X-Wavix-Message-Id")


def test_step_five_refuses_a_bad_number_next_to_the_field(client, registered):
    trunk, _ = registered
    response = client.post(url(trunk, "verify"), {"to": "12"})
    assert response.context["form"].errors["to"] == [
        "'12' is not in E.164 format: start with + and the country code, for example +14155550123."
    ]
    assert 'value="12"' in response.content.decode()
    assert "test_message" not in Trunk.objects.get(pk=trunk.pk).setup_progress


def test_step_five_sends_no_test_text_for_a_suspended_tenant(client, registered, tenant):
    trunk, _ = registered
    tenant.status = "suspended"
    tenant.save()
    response = client.post(url(trunk, "verify"), {"to": "+14155550123"})
    assert response.context["form"].errors["to"] == [
        "Tenant A is suspended: nothing is sent for it. Resume it on the tenant's page first."
    ]
    assert not Message.objects.exists()


def test_troubleshooting_names_the_failing_check_and_its_fix(client, registered):
    trunk, _ = registered
    checks = setup.troubleshoot(trunk, destination="+447400123456")
    assert [c.ok for c in checks] == [False, True, False]
    assert checks[1].name == "Destination in E.164: +447400123456"
    assert (
        checks[2].fix
        == "+14155550300 is not registered for GB: register it for that country (Sender IDs → +14155550300)."
    )
    not_e164 = setup.troubleshoot(trunk, destination="07400 123456")
    assert not_e164[-1].name == "Destination in E.164" and "Write it as +<country code><number>." in not_e164[-1].fix
    page = client.get(url(trunk, "troubleshoot"), {"destination": "+447400123456"}).content.decode()
    assert "is not registered for GB" in page


def test_troubleshootings_header_says_failing_above_the_failing_checks_it_lists(client, registered):
    trunk, _ = registered
    response = client.get(url(trunk, "troubleshoot"), {"destination": "+447400123456"})
    failing = [c.name for c in response.context["checks"] if not c.ok]
    assert failing == ["Every setup step is done", "+14155550300 allow-listed for United Kingdom"]
    step = response.context["step"]
    assert (step.state, step.reason) == ("todo", "Failing (2 of 3): " + "; ".join(failing))
    page = response.content.decode()
    assert f'<p id="current-reason">{step.reason}</p>' in page
    assert f"<small data-reason>{step.reason}</small>" in page  # the step list says the same


@pytest.fixture
def all_done(registered):
    """A straight-to-Wavix trunk with every step before troubleshooting done: SMS on, its number wired, the test
    text delivered and the reply forwarded to 3CX."""
    trunk, account = registered
    Trunk.objects.filter(pk=trunk.pk).update(sms_enabled=True, threecx_webhook_url_encrypted="stored")
    PhoneNumber.objects.filter(trunk=trunk).update(
        relay_set_at=timezone.now(), sms_relay_url=account.inbound_webhook_url
    )
    test = f.MessageFactory(
        tenant=trunk.tenant, account=account, to_number="+14155550142", status=Message.Status.DELIVERED
    )
    f.MessageFactory(
        tenant=trunk.tenant,
        account=account,
        trunk=trunk,
        direction=Message.Direction.INBOUND,
        from_number="+14155550142",
        to_number="+14155550300",
        status=Message.Status.FORWARDED,
    )
    setup.remember(
        trunk,
        test_message=test.pk,
        test_to="+14155550142",
        test_sent_at=(test.created_at - timedelta(seconds=1)).isoformat(),
    )
    return Trunk.objects.get(pk=trunk.pk)


def test_troubleshooting_is_done_only_while_every_check_it_lists_passes(client, all_done):
    trunk = all_done
    response = client.get(url(trunk, "troubleshoot"))
    assert all(c.ok for c in response.context["checks"]) and len(response.context["checks"]) == 3
    assert (response.context["step"].state, response.context["step"].reason) == ("done", "All 3 checks pass")

    response = client.get(url(trunk, "troubleshoot"), {"destination": "+447400123456"})  # not registered for GB
    step = response.context["step"]
    assert (step.state, step.reason) == ("todo", "Failing (1 of 3): +14155550300 allow-listed for United Kingdom")
    assert "pass" not in response.content.decode().split('id="checks"')[0].split('id="step-troubleshoot"')[1]


def test_another_resellers_trunk_is_404_and_a_viewer_may_not_set_up(client, line, other_admin, viewer):
    trunk, _, _ = line
    client.force_login(other_admin)
    assert client.get(url(trunk, "sender")).status_code == 404
    assert client.get(reverse("admin:messaging_trunk_threecx_pack", args=[trunk.pk])).status_code == 404
    assert client.get(reverse("admin:messaging_trunk_3cx_template", args=[trunk.pk])).status_code == 404
    client.force_login(viewer)
    assert client.get(url(trunk, "sender")).status_code == 403


# ---------------------------------------------------------------------------------------------------------------
# TLS: the reachability check reads the certificate
# ---------------------------------------------------------------------------------------------------------------


def _certificate(subject: str, key, issuer_name, issuer_key, days: int, ca: bool = False):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def https_pbx(tmp_path, monkeypatch):
    """A TLS server on 127.0.0.1 answering 200, with a certificate from our own CA that expires in 10 days."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca = _certificate("Test CA", ca_key, ca_name, ca_key, 365, ca=True)
    leaf = _certificate("localhost", leaf_key, ca_name, ca_key, 10)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], tmp_path / "ca.pem", monkeypatch
    server.shutdown()


def test_an_untrusted_certificate_fails_the_tls_check(https_pbx, settings):
    port, _, _ = https_pbx
    checks = threecx.probe(f"https://localhost:{port}/sms/token", b"{}", "test")
    assert [c.name for c in checks] == ["DNS", "TLS"]
    assert not checks[1].ok and checks[1].detail.startswith("The certificate is not trusted")


def test_a_certificate_that_expires_soon_passes_with_a_warning(https_pbx, settings):
    port, ca_file, monkeypatch = https_pbx
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # trusted by the TLS check…
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))  # …and by the test POST
    threecx._session = None
    checks = threecx.probe(f"https://localhost:{port}/sms/token", b"{}", "test")
    assert [c.ok for c in checks] == [True, True, True], checks
    assert "(9 days) — renew it soon" in checks[1].detail or "(10 days) — renew it soon" in checks[1].detail
    assert checks[2].detail == "3CX answered HTTP 200: OK"
    threecx._session = None


def test_a_trunk_set_up_by_hand_shows_its_progress_too(operator, line, tenant):
    trunk, account, number = line
    sender = f.SenderIDFactory(tenant=tenant, account=account, type="numeric", value=number.number)
    f.SenderIDCountryFactory(sender=sender, country="US", status="allowlisted")
    trunk.main_sender = sender
    accounts.trunk_save(actor=operator, trunk=trunk)
    assert Trunk.objects.get(pk=trunk.pk).setup_progress["steps_done"] == ["sender", "countries"]


# ---------------------------------------------------------------------------------------------------------------
# Which way 3CX sends: through the portal (a provider key, shown once) or straight to Wavix
# ---------------------------------------------------------------------------------------------------------------


def through_the_portal(client, trunk):
    """Choose the portal on step 3: the page that answers, with the key it shows once."""
    response = client.post(url(trunk, "threecx"), {"action": "sending", "via": "portal"})
    assert response.status_code == 200, response
    return response.content.decode(), response.context["new_key"]


def test_step_three_recommends_the_portal_and_shows_its_key_once_then_only_the_last_four(client, registered):
    trunk, account = registered
    page = client.get(url(trunk, "threecx")).content.decode()
    assert "Through the portal (recommended)" in page and "Straight to Wavix" in page

    page, key = through_the_portal(client, trunk)
    trunk.refresh_from_db()
    assert key.startswith(ProviderKey.PREFIX) and f'data-copy="{key}"' in page
    assert "it will not be shown again" in page
    assert trunk.sms_template == Trunk.SmsTemplate.GENERIC  # nothing was forwarded yet: no format to keep
    assert f'data-copy="{trunk.provider_url}"' in page
    steps = {s.key: s for s in setup.setup_state(trunk)}
    assert steps["threecx"].state == "todo"  # the values to type in 3CX changed: confirm them again

    again = client.get(url(trunk, "threecx")).content.decode()
    assert key not in again and f"the key ending …{key[-4:]}" in again
    assert "Wavix API key" not in again and account.api_key_last4 not in again
    values = {row.field: row.value for row in setup.threecx_values(trunk)}
    assert values["Provider template"] == "Generic" and values["SMS → Provider URL"] == trunk.provider_url
    assert values["SMS → Messaging API key"] == f"the portal key ending …{key[-4:]}"
    assert "SMS → Api Key" not in values

    # Pressing the same choice again issues nothing; "Issue a new key" does, and the old one retires in 24 h.
    assert client.post(url(trunk, "threecx"), {"action": "sending", "via": "portal"}).status_code == 302
    assert ProviderKey.objects.filter(trunk=trunk).count() == 1
    rotated = client.post(url(trunk, "threecx"), {"action": "rotate"})
    new_key = rotated.context["new_key"]
    assert new_key != key and "keeps working 24 hours more" in rotated.content.decode()
    old = ProviderKey.objects.get(trunk=trunk, last4=key[-4:])
    assert old.retire_at and timedelta(hours=23) < old.retire_at - timezone.now() <= timedelta(hours=24)

    assert client.post(url(trunk, "threecx")).url == url(trunk, "enable")
    steps = {s.key: s for s in setup.setup_state(Trunk.objects.get(pk=trunk.pk))}
    assert (steps["threecx"].state, steps["threecx"].reason) == (
        "done",
        f"Entered in 3CX: Generic template, sending through the portal (key …{new_key[-4:]})",
    )


def test_the_printable_pack_never_holds_the_provider_key_nor_a_wavix_key_hint(client, registered):
    trunk, account = registered
    _, key = through_the_portal(client, trunk)
    trunk.refresh_from_db()
    pack = client.get(reverse("admin:messaging_trunk_threecx_pack", args=[trunk.pk])).content.decode()
    assert key not in pack and f"…{key[-4:]}" in pack
    assert trunk.provider_url in pack and "Generic" in pack
    assert "Wavix API key" not in pack and account.api_key_last4 not in pack and account.get_api_key() not in pack


def test_the_3cx_template_file_holds_the_provider_url_and_not_the_key(client, registered):
    trunk, _ = registered
    template = reverse("admin:messaging_trunk_3cx_template", args=[trunk.pk])
    assert client.get(template).status_code == 404  # straight to Wavix: no provider template
    _, key = through_the_portal(client, trunk)
    trunk.refresh_from_db()
    response = client.get(template)
    assert response["Content-Disposition"] == f'attachment; filename="pbx-messaging-portal-trunk-{trunk.pk}.xml"'
    body = response.content.decode()
    assert key not in body and key[-4:] not in body
    variables = {v.get("Name"): v for v in ET.fromstring(response.content).iter("Variable")}
    assert variables["PROVIDER_URL"].get("Title") == "Provider URL"
    assert variables["PROVIDER_URL"].get("Value") == trunk.provider_url
    assert (variables["MESSAGING_API_KEY"].get("Title"), variables["MESSAGING_API_KEY"].get("Value")) == (
        "Messaging API key",
        "",
    )
    assert "not verified against a live 3CX" in body


def test_a_new_trunk_is_asked_which_way_before_the_values_and_straight_to_wavix_keeps_todays(client, operator, line):
    trunk, _, _ = line
    client.force_login(operator)
    page = client.get(url(trunk, "threecx")).content.decode()
    assert 'name="via" value="portal" checked' in page and 'id="threecx-values"' not in page
    assert client.post(url(trunk, "threecx"), {"action": "sending", "via": "wavix"}).status_code == 302
    page = client.get(url(trunk, "threecx")).content.decode()
    assert 'id="threecx-values"' in page and "SMS → Api Key" in page and "provider-url" not in page
    assert Trunk.objects.get(pk=trunk.pk).sms_template == Trunk.SmsTemplate.WAVIX
    assert not ProviderKey.objects.exists()


def test_straight_to_wavix_keeps_todays_values_and_a_fresh_generic_trunk_can_go_back(client, registered):
    trunk, account = registered
    _, key = through_the_portal(client, trunk)
    assert client.post(url(trunk, "threecx"), {"action": "sending", "via": "wavix"}).status_code == 302
    trunk.refresh_from_db()
    assert trunk.sms_template == Trunk.SmsTemplate.WAVIX and setup.sending_way(trunk) == setup.WAVIX
    values = {row.field: row.value for row in setup.threecx_values(trunk)}
    assert values["Provider template"] == "Wavix"
    assert values["SMS → Api Key"] == f"the Wavix API key ending …{account.api_key_last4}"
    assert "SMS → Provider URL" not in values
    page = client.get(url(trunk, "threecx")).content.decode()
    assert "provider-url" not in page and f"…{key[-4:]}" not in page


@pytest.fixture
def forwarding(client, registered, wavix):
    """The registered trunk with SMS on (step 4 passed against a fake 3CX): the portal forwards its inbound texts in
    the Wavix format, and 3CX sends straight to Wavix."""
    trunk, account = registered
    inbox = FakePbxInbox.objects.create(label="PBX")
    client.post(url(trunk, "enable"), {"threecx_webhook_url": f"{wavix.url}/sandbox/3cx/{inbox.token}/"})
    trunk.refresh_from_db()
    assert trunk.sms_enabled and trunk.sms_template == Trunk.SmsTemplate.WAVIX
    return trunk, account


def test_a_forwarding_wavix_trunk_switches_to_the_portal_only_when_3cx_is_confirmed_generic(client, forwarding, wavix):
    trunk, _ = forwarding
    page = client.get(url(trunk, "threecx")).content.decode()
    assert "Switch to the portal" in page and 'id="choose-sending"' not in page

    page, key = through_the_portal(client, trunk)
    trunk.refresh_from_db()
    assert trunk.sms_template == Trunk.SmsTemplate.WAVIX  # inbound texts keep the Wavix format meanwhile
    assert setup.switch_pending(trunk) and trunk.provider_url is None
    assert "3CX now uses the Generic template" in page and "I have entered these in 3CX" not in page
    assert f"/3cx/{trunk.pk}/messages" in page and key in page
    assert {s.key: s.state for s in setup.setup_state(trunk)}["threecx"] == "waiting"
    refused = client.post(url(trunk, "threecx"))  # the plain confirm is not the way out of a switch
    assert "Confirm the switch instead" in refused.content.decode()

    # The key already works at the provider endpoint, whatever the template: 3CX may move at its own pace.
    answer = requests.post(
        f"{wavix.url}/3cx/{trunk.pk}/messages",
        json={"from": "+14155550300", "to": "+14155550123", "text": "Moved to the portal"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert Message.objects.get(origin=Message.Origin.THREECX).trunk == trunk

    assert client.post(url(trunk, "threecx"), {"action": "switch"}).url == url(trunk, "threecx")
    trunk.refresh_from_db()
    assert trunk.sms_template == Trunk.SmsTemplate.GENERIC and not setup.switch_pending(trunk)
    assert {s.key: s.state for s in setup.setup_state(trunk)}["threecx"] == "done"
    assert ProviderKey.objects.filter(trunk=trunk).count() == 1


def test_going_back_to_wavix_on_a_forwarding_generic_trunk_is_refused_with_the_way_out(client, forwarding):
    trunk, _ = forwarding
    through_the_portal(client, trunk)
    client.post(url(trunk, "threecx"), {"action": "switch"})
    response = client.post(url(trunk, "threecx"), {"action": "sending", "via": "wavix"})
    assert "Move 3CX to the Wavix template first" in response.content.decode()
    assert Trunk.objects.get(pk=trunk.pk).sms_template == Trunk.SmsTemplate.GENERIC


# ---------------------------------------------------------------------------------------------------------------
# Step 5 for a portal-sending trunk: 3CX's own text, stage by stage
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def verified(client, registered):
    """A portal-sending trunk whose test text was delivered and whose reply reached 3CX (the seed's step 5)."""
    trunk, account = registered
    through_the_portal(client, trunk)
    trunk.refresh_from_db()
    test = f.MessageFactory(
        tenant=trunk.tenant, account=account, to_number="+14155550142", status=Message.Status.DELIVERED
    )
    f.MessageFactory(
        tenant=trunk.tenant,
        account=account,
        trunk=trunk,
        direction=Message.Direction.INBOUND,
        from_number="+14155550142",
        to_number="+14155550300",
        status=Message.Status.FORWARDED,
    )
    setup.remember(
        trunk,
        test_message=test.pk,
        test_to="+14155550142",
        test_sent_at=(test.created_at - timedelta(seconds=1)).isoformat(),
    )
    return trunk, account


def app_text(trunk, account, status, **fields):
    return f.MessageFactory(
        tenant=trunk.tenant,
        account=account,
        trunk=trunk,
        origin=Message.Origin.THREECX,
        from_number="+14155550300",
        to_number="+14155550199",
        text="Sent from the 3CX app",
        status=status,
        **fields,
    )


def verify_step(trunk):
    step = {s.key: s for s in setup.setup_state(Trunk.objects.get(pk=trunk.pk))}["verify"]
    return step.state, step.reason


def test_step_five_waits_for_3cxs_own_text_and_counts_it_once_it_reached_wavix(client, verified):
    trunk, account = verified
    page = client.get(url(trunk, "verify")).content.decode()  # the first look starts the watch
    assert "Send a text from the 3CX app now" in page and 'id="app-stages"' in page
    assert setup.progress(Trunk.objects.get(pk=trunk.pk))["app_since"]
    assert verify_step(trunk) == (
        "waiting",
        "Now send a text from the 3CX app: it shows here as it goes through the portal.",
    )

    text = app_text(trunk, account, Message.Status.QUEUED)
    assert verify_step(trunk) == ("waiting", "3CX's text arrived and passed the checks: queued…")
    stages = client.get(reverse("admin:messaging_trunk_setup_status", args=[trunk.pk])).json()["app"]["stages"]
    assert [(s["key"], s["state"]) for s in stages] == [
        ("arrived", "done"),
        ("validated", "done"),
        ("reached", "waiting"),
        ("delivered", "waiting"),
    ]

    Message.objects.filter(pk=text.pk).update(status=Message.Status.ACCEPTED)
    state, reason = verify_step(trunk)
    assert state == "done" and reason.endswith("3CX's own text went through the portal and reached Wavix")
    Message.objects.filter(pk=text.pk).update(status=Message.Status.DELIVERED)
    status = client.get(reverse("admin:messaging_trunk_setup_status", args=[trunk.pk])).json()
    assert [s["state"] for s in status["app"]["stages"]] == ["done"] * 4
    assert status["app"]["text"]["status_display"] == "Delivered"

    # "Watch for a new text": the delivered one no longer counts.
    client.post(url(trunk, "verify"), {"action": "watch"})
    assert verify_step(trunk)[0] == "waiting"


def test_step_five_names_a_refusal_and_a_failed_text_in_words(client, verified):
    trunk, account = verified
    client.get(url(trunk, "verify"))
    Trunk.objects.filter(pk=trunk.pk).update(
        provider_refusal="403 Sender not allowed: +14155550999 is not a number or sender ID of trunk Front desk",
        provider_refused_at=timezone.now(),
    )
    assert verify_step(trunk) == (
        "problem",
        "The portal refused 3CX's last text: 403 Sender not allowed: +14155550999 is not a number or sender ID of "
        "trunk Front desk",
    )
    page = client.get(url(trunk, "verify")).content.decode()
    assert "The portal refused 3CX's last attempt" in page

    app_text(trunk, account, Message.Status.FAILED, error_message="Insufficient balance")  # a later text was taken
    state, reason = verify_step(trunk)
    assert state == "problem" and reason.startswith("3CX's text was failed: ")
    stages = setup.app_status(Trunk.objects.get(pk=trunk.pk))["stages"]
    assert [s["state"] for s in stages] == ["done", "done", "problem", "todo"]
    assert setup.app_status(Trunk.objects.get(pk=trunk.pk))["refusal"] == ""


def test_a_refusal_before_the_watch_began_is_history(client, verified):
    trunk, _ = verified
    Trunk.objects.filter(pk=trunk.pk).update(provider_refusal="401 Unauthorized", provider_refused_at=timezone.now())
    client.get(url(trunk, "verify"))
    assert verify_step(trunk)[0] == "waiting"


def test_a_straight_to_wavix_trunk_does_not_wait_for_3cx_through_the_portal(client, registered):
    trunk, _ = registered
    page = client.get(url(trunk, "verify")).content.decode()
    assert 'id="app-stages"' not in page
    assert "app" not in setup.verify_status(trunk) and "app_since" not in setup.progress(trunk)


def test_troubleshooting_checks_3cxs_sending_side_through_the_portal(client, verified, operator):
    trunk, account = verified
    ProviderKey.objects.filter(trunk=trunk).update(retire_at=timezone.now() - timedelta(minutes=1))
    checks = {c.name: c for c in setup.troubleshoot(Trunk.objects.get(pk=trunk.pk))}
    assert not checks["3CX's provider key is live"].ok
    assert not checks["3CX has sent a text through the portal"].ok

    key = setup_actions.setup_provider_key_rotate(actor=operator, trunk=trunk)
    app_text(trunk, account, Message.Status.REJECTED, error_message="Destination blocked")
    checks = {c.name: c for c in setup.troubleshoot(Trunk.objects.get(pk=trunk.pk))}
    assert checks[f"3CX's provider key is live (…{key[-4:]})"].ok
    assert not checks["3CX's last text (+14155550199) was sent"].ok
    assert checks["3CX's last text (+14155550199) was sent"].fix.startswith("Rejected: ")

    Trunk.objects.filter(pk=trunk.pk).update(
        provider_refusal="422 Message refused: opted out", provider_refused_at=timezone.now()
    )
    checks = {c.name: c for c in setup.troubleshoot(Trunk.objects.get(pk=trunk.pk))}
    assert checks["The portal took 3CX's latest text"].fix.endswith("422 Message refused: opted out")
    page = client.get(url(trunk, "troubleshoot")).content.decode()
    assert "The portal took 3CX&#x27;s latest text" in page and "Switch to the portal" not in page


def test_the_trunk_list_and_the_wizard_count_six_steps(client, registered):
    trunk, _ = registered
    page = client.get(reverse("admin:messaging_trunk_changelist")).content.decode()
    assert "3 of 6 steps done" in page
    page = client.get(url(trunk, "enable")).content.decode()
    assert "Step 4 of 6: Enable SMS" in page
