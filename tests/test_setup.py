"""The SMS setup wizard, step by step, through its pages: bad input is refused next to its field, what was typed
stays, and nothing is half-saved. Wavix is the sandbox and 3CX a fake inbox, over real HTTP."""

import datetime
import http.server
import ipaddress
import ssl
import threading
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.urls import reverse
from django.utils import timezone

from messaging import threecx
from messaging.models import Message, PhoneNumber, SenderID, SenderIDCountry, Trunk, WavixAccount
from messaging.services import accounts, setup
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


def test_another_resellers_trunk_is_404_and_a_viewer_may_not_set_up(client, line, other_admin, viewer):
    trunk, _, _ = line
    client.force_login(other_admin)
    assert client.get(url(trunk, "sender")).status_code == 404
    assert client.get(reverse("admin:messaging_trunk_threecx_pack", args=[trunk.pk])).status_code == 404
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
