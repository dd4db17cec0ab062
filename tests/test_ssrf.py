"""The SSRF guard on 3CX webhook URLs: only public addresses (wrapped IPv4 unwrapped first), judged on save, in the
wizard's probe and before every POST; and no message names the non-public address a name resolves to.

DNS for a public name is outside this machine, so a fake resolver answers for `pbx.example.com`. Nothing may leave
the machine either: a test network lets connections to loopback through and refuses (and records) every other
attempt. The guard is ON in every test here.
"""

import errno
import ipaddress
import socket
from collections import Counter

import pytest
from django.core.exceptions import ValidationError

from messaging import threecx
from messaging.models import Trunk

NAME = "pbx.example.com"
PUBLIC = "1.2.3.4"  # globally routable, so the guard lets it through

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
# The fake resolver and the test network
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
    """Connections to loopback go through; every other attempt is refused and kept in `outside`."""

    def __init__(self, real_connect):
        self.real_connect, self.outside = real_connect, []

    def connect(self, sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host, port = address[0], address[1]
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
