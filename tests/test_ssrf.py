"""The SSRF guard on 3CX webhook URLs: only public addresses (wrapped IPv4 unwrapped first), judged on save, in the
wizard's probe and before every POST; the connection goes to exactly the address judged (DNS rebinding reaches
nothing); and no message names the non-public address a name resolves to.

DNS for a public name is outside this machine, so a fake resolver answers for `pbx.example.com`. Nothing may leave
the machine either: a test network lets connections to loopback through, sends a "public" address the test routes
to a local server, and refuses (and records) every other attempt. The guard is ON in every test here, and judges
the test's public address as public: only the network under it knows that address lands on 127.0.0.1.
"""

import datetime
import errno
import ipaddress
import json
import socket
import ssl
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.exceptions import ValidationError
from django.urls import reverse

from messaging import threecx
from messaging.models import Delivery, PhoneNumber, Trunk, WebhookEvent
from messaging.services import forwarding, inbound
from tests import factories as f

NAME = "pbx.example.com"
PUBLIC = "1.2.3.4"  # globally routable, so the guard lets it through; the test network sends it to a local server
OTHER_PUBLIC = "1.2.3.5"
LOOPBACK = "127.0.0.1"

REFUSED = {
    "100.100.100.200": "shared address space (100.64/10): Alibaba Cloud's metadata service",
    "192.0.0.8": "IETF protocol assignments: the IPv4 dummy address",
    "2002:7f00:1::": "6to4 wrapping 127.0.0.1",
    "::ffff:127.0.0.1": "IPv4-mapped loopback",
    "2001:0:4136:e378:8000:63bf:f5ff:fffe": "Teredo whose client is 10.0.0.1",
    "64:ff9b::a00:1": "NAT64 wrapping 10.0.0.1",
    "169.254.169.254": "link-local: the cloud metadata service",
    "10.1.2.3": "private (10/8)",
    "172.16.0.1": "private (172.16/12)",
    "192.168.1.1": "private (192.168/16)",
    "127.0.0.1": "loopback",
    "::1": "IPv6 loopback",
    "0.0.0.0": "this host",
    "fc00::1": "unique-local (fc00::/7)",
    "fd12:3456::1": "unique-local (fc00::/7)",
    "fe80::1": "IPv6 link-local",
    "224.0.0.1": "multicast (Python 3.11.7 calls it global)",
    "ff02::1": "IPv6 multicast",
    "198.18.0.1": "benchmarking",
    "3fff::1": "IPv6 documentation (Python 3.11.7 calls it global)",
}
ACCEPTED = {
    "8.8.8.8": "public IPv4",
    "2606:4700:4700::1111": "public IPv6",
    "::ffff:8.8.8.8": "IPv4-mapped public",
    "2002:808:808::1": "6to4 wrapping 8.8.8.8",
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7": "Teredo whose client is 8.8.8.8",
    "64:ff9b::808:808": "NAT64 wrapping 8.8.8.8 (an IPv6-only portal behind DNS64)",
}


def wrapped(address: str) -> set[str]:
    """The address in its usual spellings, and the IPv4 address it carries: none may appear in a message."""
    ip = ipaddress.ip_address(address)
    spellings = {address, str(ip), ip.exploded}
    if ip.version == 6:
        carried = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if ip in ipaddress.ip_network("64:ff9b::/96"):
            carried = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if carried:
            spellings.add(str(carried))
    return spellings


# ---------------------------------------------------------------------------------------------------------------
# The fake resolver, the test network and the servers on it
# ---------------------------------------------------------------------------------------------------------------


class FakeDns:
    """Answers for the names a test gives it, one answer per lookup (the last repeats); address literals and
    localhost resolve as they are; any other name does not resolve, so no query leaves the machine."""

    def __init__(self, real):
        self.real, self.answers, self.asked = real, {}, Counter()

    def serve(self, name: str, *answers: list[str]) -> None:
        self.answers[name] = list(answers)

    def getaddrinfo(self, host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name in self.answers:
            self.asked[name] += 1
            queue = self.answers[name]
            answer = queue.pop(0) if len(queue) > 1 else queue[0]
            port = int(port or 0)
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
                if ":" in a
                else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answer
            ]
        try:
            ipaddress.ip_address(str(name).split("%")[0])
        except ValueError:
            if name != "localhost":
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return self.real(host, port, *args, **kwargs)


class LocalNetwork:
    """Connections to loopback go through; `routes` send a public (address, port) to a local one; every other
    attempt is refused and kept in `outside`."""

    def __init__(self, real_connect):
        self.real_connect, self.routes, self.outside = real_connect, {}, []

    def connect(self, sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host, port = address[0], address[1]
            if (host, port) in self.routes:
                return self.real_connect(sock, self.routes[(host, port)])
            if not ipaddress.ip_address(host.split("%")[0]).is_loopback:
                self.outside.append((host, port))
                raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        return self.real_connect(sock, address)


@pytest.fixture
def dns(monkeypatch):
    fake = FakeDns(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    return fake


@pytest.fixture
def network(monkeypatch):
    local_network = LocalNetwork(socket.socket.connect)
    monkeypatch.setattr(socket.socket, "connect", lambda sock, address: local_network.connect(sock, address))
    return local_network


@pytest.fixture(autouse=True)
def guard_on(settings):
    settings.THREECX_ALLOW_PRIVATE_ADDRESSES = False
    settings.SANDBOX_ENABLED = True  # plain http:// to the local servers, as in development
    threecx._session = None
    yield
    if threecx._session is not None:
        threecx._session.close()
    threecx._session = None


class LoopbackService:
    """What a rebinding name would lead the portal to: a service on 127.0.0.1 at the URL's own port. It counts the
    connections it gets and answers anything with 200 "loopback secrets"."""

    def __init__(self):
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port, self.connections = self.listener.getsockname()[1], 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with connection:
                connection.settimeout(2)
                try:
                    connection.recv(65536)
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\nloopback secrets")
                except OSError:
                    pass

    def close(self):
        self.listener.close()


class PinnedFake(ThreadingHTTPServer):
    """The 3CX behind the public address: an HTTP/1.1 server (TLS if given a context) on 127.0.0.1 keeping every
    request's Host, path and body, the TLS server names asked for, and how many connections it accepted."""

    daemon_threads = True

    def __init__(self, answer: bytes = b"pinned 3CX", tls: ssl.SSLContext | None = None):
        self.answer, self.requests, self.server_names, self.connections = answer, [], [], 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a PBX behind a proxy would

            def do_POST(handler):
                body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
                self.requests.append({"host": handler.headers["Host"], "path": handler.path, "body": body})
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(self.answer)))
                handler.end_headers()
                handler.wfile.write(self.answer)

            def log_message(handler, *args):
                pass

        super().__init__((LOOPBACK, 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _context: self.server_names.append(name)
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def get_request(self):
        request = super().get_request()
        self.connections += 1
        return request

    @property
    def port(self) -> int:
        return self.server_address[1]

    def stop(self):
        self.shutdown()
        self.server_close()


@pytest.fixture
def loopback_service():
    service = LoopbackService()
    yield service
    service.close()


@pytest.fixture
def pinned(network, loopback_service):
    """The 3CX the public address stands for: PUBLIC at the URL's port leads to it, over the test network."""
    fake = PinnedFake()
    network.routes[(PUBLIC, loopback_service.port)] = (LOOPBACK, fake.port)
    yield fake
    fake.stop()


def _certificate(subject, key, issuer, issuer_key, *, ca=False, names=()):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def pinned_tls(network, loopback_service, tmp_path, monkeypatch):
    """The same over TLS, with a certificate for pbx.example.com only (from a CA the portal is told to trust): the
    handshake passes only if the portal speaks for the name while it connects to the address."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca = _certificate("Test CA", ca_key, ca_name, ca_key, ca=True)
    leaf = _certificate(NAME, leaf_key, ca_name, ca_key, names=[NAME])
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))
    threecx._session = None  # the CA bundle is read when the session is made
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    fake = PinnedFake(tls=context)
    network.routes[(PUBLIC, loopback_service.port)] = (LOOPBACK, fake.port)
    yield fake
    fake.stop()


# ---------------------------------------------------------------------------------------------------------------
# Which addresses pass
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", REFUSED)
def test_an_address_off_the_public_internet_is_not_public(address):
    assert not threecx.is_public_address(address), REFUSED[address]


@pytest.mark.parametrize("address", ACCEPTED)
def test_a_public_address_is_public_and_so_is_a_public_ipv4_inside_ipv6(address):
    assert threecx.is_public_address(address), ACCEPTED[address]


# ---------------------------------------------------------------------------------------------------------------
# On save
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", REFUSED)
def test_saving_a_url_whose_name_resolves_to_a_non_public_address_is_refused_without_naming_it(dns, address):
    dns.serve(NAME, [address])
    with pytest.raises(ValidationError) as refusal:
        Trunk().set_threecx_webhook_url(f"https://{NAME}/sms/token")
    (message,) = refusal.value.message_dict["threecx_webhook_url"]
    assert f"{NAME} resolves to a non-public address" in message
    assert not any(spelling in message for spelling in wrapped(address)), message


@pytest.mark.parametrize("address", ["10.1.2.3", "[2002:7f00:1::]", "[::ffff:127.0.0.1]", "100.100.100.200"])
def test_saving_a_url_that_names_a_non_public_address_itself_is_refused(address):
    with pytest.raises(ValidationError, match=r"is not a public address; the portal sends only to a 3CX on the"):
        Trunk().set_threecx_webhook_url(f"https://{address}/sms/token")


@pytest.mark.parametrize("address", ACCEPTED)
def test_saving_a_url_whose_name_resolves_to_a_public_address_is_accepted(dns, address):
    dns.serve(NAME, [address])
    trunk = Trunk()
    trunk.set_threecx_webhook_url(f"https://{NAME}/sms/token")
    assert trunk.get_threecx_webhook_url() == f"https://{NAME}/sms/token"


def test_a_name_with_one_public_and_one_private_address_is_refused(dns):
    dns.serve(NAME, [PUBLIC, "10.0.0.7"])
    with pytest.raises(ValidationError, match="resolves to a non-public address") as refusal:
        Trunk().set_threecx_webhook_url(f"https://{NAME}/sms/token")
    assert "10.0.0.7" not in str(refusal.value)


def test_a_url_whose_port_is_not_a_port_is_refused_with_a_reason():
    with pytest.raises(ValidationError, match="the URL's port must be a number from 1 to 65535"):
        Trunk().set_threecx_webhook_url(f"https://{NAME}:99999/sms/token")


# ---------------------------------------------------------------------------------------------------------------
# Before every POST, and in the wizard's probe
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", REFUSED)
def test_forward_refuses_a_non_public_address_without_a_connection_or_naming_it(dns, network, address):
    dns.serve(NAME, [address])
    outcome = threecx.forward(f"https://{NAME}/sms/token", b"{}", "msg-1")
    assert (outcome.delivered, outcome.transient) == (False, False)
    assert outcome.error.startswith(f"Refused: {NAME} resolves to a non-public address")
    assert not any(spelling in outcome.error for spelling in wrapped(address)), outcome.error
    assert network.outside == []


@pytest.mark.parametrize("address", ACCEPTED)
def test_forward_connects_to_exactly_the_public_address_it_judged(dns, network, address):
    dns.serve(NAME, [address])
    outcome = threecx.forward(f"https://{NAME}/sms/token", b"{}", "msg-1")
    # The test network refused it: nothing left the machine.
    assert [(ipaddress.ip_address(host), port) for host, port in network.outside] == [
        (ipaddress.ip_address(address), 443)
    ]
    assert outcome.transient and outcome.error.startswith("Connection failed"), outcome.error


@pytest.mark.parametrize("address", REFUSED)
def test_the_probe_refuses_a_non_public_address_and_no_line_names_it(dns, network, address):
    dns.serve(NAME, [address])
    checks = threecx.probe(f"https://{NAME}/sms/token", b"{}", "test")
    assert [(c.name, c.ok) for c in checks] == [("DNS", True), ("Address", False)]
    assert checks[0].detail == f"{NAME} resolves to a non-public address"
    assert checks[1].detail.startswith(f"Refused: {NAME} resolves to a non-public address")
    assert not any(spelling in c.detail for c in checks for spelling in wrapped(address)), checks
    assert network.outside == []


def test_the_probes_dns_line_shows_public_addresses_and_only_counts_the_others(dns, network):
    dns.serve(NAME, [PUBLIC, "10.0.0.7", "fd00::7"])
    checks = threecx.probe(f"https://{NAME}/sms/token", b"{}", "test")
    assert checks[0].detail == f"{NAME} resolves to {PUBLIC} and 2 non-public addresses"
    assert checks[1].name == "Address" and not checks[1].ok
    assert network.outside == []


def test_with_the_guard_off_the_dns_line_still_does_not_name_a_non_public_address(dns, network, settings):
    settings.THREECX_ALLOW_PRIVATE_ADDRESSES = True  # a development portal: the URL is tried…
    dns.serve(NAME, ["10.0.0.7"])
    checks = threecx.probe(f"http://{NAME}/sms/token", b"{}", "test")
    assert checks[0].detail == f"{NAME} resolves to a non-public address"
    assert network.outside == [("10.0.0.7", 80)]  # …at the address judged (the test network refused it)
    assert not any("10.0.0.7" in c.detail for c in checks), checks


# ---------------------------------------------------------------------------------------------------------------
# DNS rebinding: a name that answers a public address to the check and 127.0.0.1 after
# ---------------------------------------------------------------------------------------------------------------


def test_forward_posts_to_the_address_it_checked_when_the_name_then_answers_loopback(
    dns, pinned, loopback_service, network
):
    dns.serve(NAME, [PUBLIC], [LOOPBACK])
    url = f"http://{NAME}:{loopback_service.port}/sms/token?x=1"
    outcome = threecx.forward(url, b'{"text": "hi"}', "msg-1")
    assert outcome.delivered and outcome.response == "pinned 3CX"
    assert pinned.requests == [
        {"host": f"{NAME}:{loopback_service.port}", "path": "/sms/token?x=1", "body": b'{"text": "hi"}'}
    ]
    assert loopback_service.connections == 0
    assert dns.asked[NAME] == 1  # resolved once: to judge and to connect
    assert network.outside == []


@pytest.mark.parametrize("honest", [1, 2, 4], ids=["rebinds-after-the-dns-check", "before-tls", "before-the-post"])
def test_the_probe_checks_tls_and_posts_to_the_address_it_checked_speaking_for_the_name(
    dns, pinned_tls, loopback_service, network, honest
):
    dns.serve(NAME, *[[PUBLIC]] * honest, [LOOPBACK])  # public to the first `honest` lookups, loopback after
    checks = threecx.probe(f"https://{NAME}:{loopback_service.port}/sms/token", b"{}", "test")
    assert [(c.name, c.ok) for c in checks] == [("DNS", True), ("TLS", True), ("Test POST", True)], checks
    assert checks[0].detail == f"{NAME} resolves to {PUBLIC}"
    assert checks[2].detail == "3CX answered HTTP 200: pinned 3CX"
    assert pinned_tls.server_names == [NAME, NAME]  # the certificate check and the POST: SNI is the name…
    assert [r["host"] for r in pinned_tls.requests] == [f"{NAME}:{loopback_service.port}"]  # …and so is Host
    assert loopback_service.connections == 0
    assert dns.asked[NAME] == 1
    assert network.outside == []


def test_a_certificate_for_another_name_fails_even_at_the_right_address(dns, pinned_tls, loopback_service):
    dns.serve("elsewhere.example.com", [PUBLIC])
    checks = threecx.probe(f"https://elsewhere.example.com:{loopback_service.port}/sms/token", b"{}", "test")
    assert [(c.name, c.ok) for c in checks] == [("DNS", True), ("TLS", False)]
    assert "certificate is not trusted" in checks[1].detail and "elsewhere.example.com" in checks[1].detail
    assert pinned_tls.requests == []


def test_the_tls_check_trusts_the_ca_bundle_the_post_trusts(dns, pinned_tls, loopback_service):
    dns.serve(NAME, [PUBLIC])  # a PBX with a private CA, which REQUESTS_CA_BUNDLE names (and nothing else does)
    checks = threecx.probe(f"https://{NAME}:{loopback_service.port}/sms/token", b"{}", "test")
    assert [(c.name, c.ok) for c in checks] == [("DNS", True), ("TLS", True), ("Test POST", True)], checks


def test_a_pooled_connection_is_reused_while_the_answer_holds_and_never_after_it_changes(
    dns, pinned, loopback_service, network
):
    other = PinnedFake(answer=b"the new 3CX")
    network.routes[(OTHER_PUBLIC, loopback_service.port)] = (LOOPBACK, other.port)
    url = f"http://{NAME}:{loopback_service.port}/sms/token"
    try:
        dns.serve(NAME, [PUBLIC])
        assert [threecx.forward(url, b"{}", f"m{n}").response for n in range(3)] == ["pinned 3CX"] * 3
        assert pinned.connections == 1  # one warm connection for three POSTs (bench/relay.py's throughput)
        dns.serve(NAME, [OTHER_PUBLIC])  # the PBX moved: its warm connection is to an address no longer judged
        assert threecx.forward(url, b"{}", "m3").response == "the new 3CX"
        dns.serve(NAME, [LOOPBACK])
        assert threecx.forward(url, b"{}", "m4").error.startswith("Refused: ")
        assert (len(pinned.requests), len(other.requests), loopback_service.connections) == (3, 1, 0)
    finally:
        other.stop()


@pytest.fixture
def other_pbx(network, loopback_service):
    """Another reseller's tenant's 3CX, at another public address."""
    fake = PinnedFake(answer=b"other tenant's 3CX")
    network.routes[(OTHER_PUBLIC, loopback_service.port)] = (LOOPBACK, fake.port)
    yield fake
    fake.stop()


def line_to(tenant, name: str, port: int, number: str) -> Trunk:
    """A trunk of this tenant with SMS on, its 3CX at http://name:port/, and a number routed to it."""
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    trunk = f.TrunkFactory(tenant=tenant, sms_enabled=True)
    trunk.set_threecx_webhook_url(f"http://{name}:{port}/sms/token")
    trunk.save()
    PhoneNumber.objects.create(account=account, tenant=tenant, trunk=trunk, number=number, wavix_id=number)
    return trunk


@pytest.mark.django_db
def test_a_relayed_text_keeps_the_answer_of_the_3cx_it_checked_and_no_other_tenant_sees_it(
    dns, pinned, other_pbx, loopback_service, network, tenant, other_tenant, other_admin, client
):
    dns.serve(NAME, [PUBLIC])
    dns.serve("pbx.other.example", [OTHER_PUBLIC])
    trunk = line_to(tenant, NAME, loopback_service.port, "+14155550100")
    line_to(other_tenant, "pbx.other.example", loopback_service.port, "+14155550199")
    body = {"message_id": "msg-1", "from": "447700900001", "to": "14155550100", "message_body": {"text": "Hi"}}
    account = trunk.numbers.get().account
    WebhookEvent.objects.create(account=account, kind="inbound", dedup_key="msg-1", body=json.dumps(body).encode())

    dns.serve(NAME, [PUBLIC], [LOOPBACK])  # rebinding between the check and the connect
    inbound.events_process()
    assert forwarding.deliveries_process() == 1

    delivery = Delivery.objects.get()
    assert (delivery.trunk, delivery.status, delivery.last_response) == (trunk, "delivered", "pinned 3CX")
    assert json.loads(pinned.requests[0]["body"]) == body
    assert (loopback_service.connections, other_pbx.requests, network.outside) == (0, [], [])
    client.force_login(other_admin)
    assert client.get(reverse("admin:messaging_delivery_change", args=[delivery.pk])).status_code == 404


def test_in_tests_no_name_but_localhost_resolves_so_no_dns_query_leaves_the_machine():
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("acme.3cx.us", 443)
    assert {info[4][0] for info in socket.getaddrinfo("127.0.0.1", 443)} == {"127.0.0.1"}
    assert socket.getaddrinfo("localhost", 443)
