"""The one module that talks to 3CX: forwards an inbound text, or a status event of a text 3CX sent through the
portal, to a trunk's webhook URL.

- 3CX's Wavix template gets Wavix's own JSON byte for byte; the Generic template gets the Telnyx-style
  envelope 3CX's generic provider expects. Status events (message.sent, message.finalized) are Telnyx-style only.
- Every POST says `Content-Type: application/json` and carries the Wavix message id in X-Wavix-Message-Id, so
  3CX (or a proxy in front of it) can drop a repeat; a status event carries its event id there instead (the
  message's Wavix id would be the same for its two events, and a repeat filter would drop the second).
- SSRF guard: the portal connects only to public addresses (is_public_address(): an IPv6 address that carries an
  IPv4 one — IPv4-mapped, 6to4, Teredo, NAT64 — is judged by the IPv4 address it reaches), and every address the
  URL's host resolves to must be one, unless THREECX_ALLOW_PRIVATE_ADDRESSES (the sandbox's fake 3CX lives on
  loopback). It is checked when the URL is saved and again before every POST, since DNS answers change.
- Pinned connections: before a POST (and once per probe) the host is resolved once, judged, and the connection
  goes to exactly the addresses judged; the name is never resolved again to connect. A name that answers a public
  address to the check and 127.0.0.1 to the connect (DNS rebinding) therefore reaches nothing. TLS (SNI and the
  certificate's name) and the Host header still speak for the host name.
- A refusal never names the non-public address a name resolves to: a 3CX URL must not become a way to map the
  portal's network.
- One set of pooled connections per worker process (bench/relay.py: forwarding throughput is connection reuse),
  one pool per (scheme, host, port, addresses judged); connect and read timeouts on every call.
- probe(): the setup wizard's reachability check — DNS, the address guard, TLS and certificate expiry, then
  a test POST — each step reported in words, stopping at the first that fails.
"""

import ipaddress
import json
import os
import re
import socket
import ssl
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import requests.certs
from django.conf import settings
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import make_headers, parse_url
from urllib3.util.connection import create_connection

USER_AGENT = "pbx-messaging-portal"
RESPONSE_KEPT = 500  # characters of 3CX's answer kept on the delivery


class UnsafeDestination(Exception):
    """The URL points somewhere the portal must not send to; the message says why — never which internal
    address a name resolves to."""


class DoesNotResolve(UnsafeDestination):
    """The URL's host has no address (yet)."""


# ---------------------------------------------------------------------------------------------------------------
# The address guard
# ---------------------------------------------------------------------------------------------------------------

# Where no 3CX can be reached: IANA's special-purpose blocks that are not globally reachable, plus multicast.
# Python's is_global covers most of them, but what it says has changed between patch releases (ours, 3.11.7, calls
# 192.0.0.8, 224.0.0.1 and 3fff::1 global): this table is what the portal promises, whatever the interpreter.
# Wrapped IPv4 (mapped, 6to4, Teredo, NAT64) is unwrapped first.
NOT_PUBLIC = tuple(
    (ipaddress.ip_network(network), why)
    for network, why in (
        ("0.0.0.0/8", "'this network'"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space: carrier-grade NAT, and cloud metadata such as 100.100.100.200"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local, and cloud metadata at 169.254.169.254"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments (192.0.0.8: IPv4 dummy address)"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast, deprecated"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved, and the broadcast address"),
        ("2001::/23", "IETF protocol assignments (Teredo, 2001::/32, is judged by the IPv4 it carries)"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
    )
)
# Public IPv6 unicast is all inside 2000::/3; outside it are loopback, unspecified, IPv4-compatible, discard,
# unique-local (fc00::/7), link-local (fe80::/10), site-local (fec0::/10), multicast (ff00::/8) and reserved space.
GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052's well-known prefix: the last 32 bits are the IPv4 reached


def is_public_address(address: str) -> bool:
    """May the portal connect to this address? Only if it is on the public internet; an IPv6 address that carries
    an IPv4 one is judged by the IPv4 address(es) a connection to it reaches."""
    ip = ipaddress.ip_address(address.split("%")[0])  # an IPv6 zone ("%eth0") says nothing about the address
    carried = _carried_ipv4(ip)
    if carried:
        return all(is_public_address(str(ipv4)) for ipv4 in carried)
    if ip.version == 6 and ip not in GLOBAL_UNICAST_V6:
        return False
    return ip.is_global and not ip.is_multicast and not any(ip in network for network, _ in NOT_PUBLIC)


def _carried_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 address(es) inside an IPv6 one that reaches them: 2002:7f00:1:: (6to4) is 127.0.0.1 in disguise."""
    if ip.version == 4:
        return ()
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo  # (server, client): the packets pass through both
    if ip in NAT64:
        return (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF),)
    return ()


@dataclass(frozen=True)
class Destination:
    """A 3CX webhook URL and the addresses its host resolved to when it was judged: the only ones to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def plain_http_allowed() -> bool:
    """Plain http:// to a 3CX: only in development and the sandbox (whose fake 3CX is served over plain HTTP)."""
    return bool(settings.DEBUG or settings.SANDBOX_ENABLED)


def _split(url: str) -> tuple[str, str, int]:
    """The URL's scheme, host and port, or why the portal will not send to it whatever the host resolves to."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise UnsafeDestination("the URL has no https:// host")
    if parts.scheme == "http" and not plain_http_allowed():
        raise UnsafeDestination("the URL must start with https://")
    try:
        port = parts.port if parts.port is not None else (443 if parts.scheme == "https" else 80)
    except ValueError:  # not a number, or past 65535
        port = 0
    if not 0 < port < 65536:
        raise UnsafeDestination("the URL's port must be a number from 1 to 65535")
    return parts.scheme, host, port


def _resolve(host: str, port: int) -> tuple[str, ...]:
    """Every address the host resolves to, in the resolver's order of preference (the order to connect in)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))  # str: an IPv4/IPv6 sockaddr starts with text


def _judge(host: str, addresses: tuple[str, ...]) -> None:
    """Refuse a host with any non-public address: one private answer among public ones is enough to be led to it."""
    if settings.THREECX_ALLOW_PRIVATE_ADDRESSES or all(is_public_address(address) for address in addresses):
        return
    if _is_address(host):  # the URL names the address itself: saying so tells nobody anything new
        raise UnsafeDestination(f"{host} is not a public address; the portal sends only to a 3CX on the internet")
    raise UnsafeDestination(
        f"{host} resolves to a non-public address; the portal sends only to a 3CX on the internet (use its public name)"
    )


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


def destination(url: str) -> Destination:
    """Resolve the URL's host once and judge every address it gave: where a POST to this URL may go, and only there."""
    scheme, host, port = _split(url)
    try:
        addresses = _resolve(host, port)
    except (socket.gaierror, UnicodeError):
        raise DoesNotResolve(f"DNS: {host} does not resolve") from None
    _judge(host, addresses)
    return Destination(url, scheme, host, port, addresses)


def check_destination(url: str, *, unresolved_ok: bool = False) -> None:
    """Refuse URLs whose host resolves to a non-public address, or (unless unresolved_ok, as when a URL is saved
    before the PBX's DNS exists) that does not resolve."""
    try:
        destination(url)
    except DoesNotResolve:
        if not unresolved_ok:
            raise


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    transient: bool  # worth retrying: network trouble, timeout, 5xx, 429
    status_code: int | None
    response: str  # the start of 3CX's answer
    error: str  # what went wrong, in words a reseller can act on ("" when delivered)


class InboundText(Protocol):
    """What an envelope carries of an inbound text (messaging.models.Message, or the wizard's test text)."""

    @property
    def media(self) -> Sequence[str]: ...
    @property
    def text(self) -> str: ...
    @property
    def from_number(self) -> str: ...
    @property
    def to_number(self) -> str: ...
    @property
    def wavix_message_id(self) -> str: ...


def generic_envelope(message: InboundText, received_at: str) -> bytes:
    """The Telnyx-style body 3CX's Generic SMS provider reads (numbers in E.164 with +)."""
    payload: dict[str, object] = {
        "direction": "inbound",
        "type": "MMS" if message.media else "SMS",
        "text": message.text,
        "from": {"phone_number": message.from_number},
        "to": [{"phone_number": message.to_number}],
        "received_at": received_at,
    }
    if message.media:
        payload["media"] = [{"url": url} for url in message.media]
    envelope = {
        "data": {
            "event_type": "message.received",
            "id": message.wavix_message_id,
            "occurred_at": received_at,
            "record_type": "event",
            "payload": payload,
        }
    }
    return json.dumps(envelope).encode()


class OutboundText(Protocol):
    """What a status event carries of an outbound text 3CX sent through the portal (messaging.models.Message)."""

    @property
    def pk(self) -> int: ...
    @property
    def media(self) -> Sequence[str]: ...
    @property
    def text(self) -> str: ...
    @property
    def from_number(self) -> str: ...
    @property
    def to_number(self) -> str: ...
    @property
    def segments(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def error_code(self) -> str: ...
    @property
    def error_message(self) -> str: ...


STATUS_EVENTS = ("message.sent", "message.finalized")

# A final status of the portal's (Message.Status, outbound) → Telnyx v2's per-recipient status (to[].status) and, for
# the ones that are not a delivery, the title of the error the event carries. Telnyx's sending_failed is "never left
# for the carrier" (Wavix refused it, or the portal could not hand it over); delivery_failed "the carrier could not
# deliver it"; delivery_unconfirmed "sent, and no receipt came".
TELNYX_FINAL_STATUS: dict[str, tuple[str, str]] = {
    "delivered": ("delivered", ""),
    "undelivered": ("delivery_failed", "Undelivered"),
    "rejected": ("sending_failed", "Rejected"),
    "failed": ("sending_failed", "Failed"),
    "expired": ("expired", "Expired"),
    "dlr_expired": ("delivery_unconfirmed", "No delivery report"),
}


def status_event_id(message_id: int, event_type: str) -> str:
    """The event's id: one per message and kind, the same on every retry and replay (3CX may drop a repeat by it)."""
    return f"{message_id}-{event_type}"


def generic_status_event(message: OutboundText, event_type: str, occurred_at: str) -> bytes:
    """A Telnyx-style delivery status event (message.sent or message.finalized) for a text 3CX sent through the
    portal: the shape of Telnyx v2's outbound message webhooks, as far as this portal can fill it.

    payload.id is the portal's message id, the id the provider endpoint answered 3CX with. message.sent always says
    to[].status "sent" (the event is about that moment, even when it reaches 3CX after the text was delivered);
    message.finalized says the final status, which never changes, so every retry of an event carries the same body.
    """
    if event_type not in STATUS_EVENTS:
        raise ValueError(f"not a status event: {event_type!r}")
    errors: list[dict[str, str]] = []
    if event_type == "message.sent":
        status = "sent"
    else:
        status, title = TELNYX_FINAL_STATUS.get(message.status, ("delivery_failed", message.status))
        if title:
            errors.append({"code": message.error_code, "title": title, "detail": message.error_message})
    payload: dict[str, object] = {
        "id": str(message.pk),
        "record_type": "message",
        "direction": "outbound",
        "type": "MMS" if message.media else "SMS",
        "from": {"phone_number": message.from_number},
        "to": [{"phone_number": message.to_number, "status": status}],
        "text": message.text,
        "media": [{"url": url} for url in message.media],
        "parts": message.segments,
        "errors": errors,
    }
    envelope = {
        "data": {
            "event_type": event_type,
            "id": status_event_id(message.pk, event_type),
            "occurred_at": occurred_at,
            "record_type": "event",
            "payload": payload,
        }
    }
    return json.dumps(envelope).encode()


# ---------------------------------------------------------------------------------------------------------------
# Connections to the judged addresses only
# ---------------------------------------------------------------------------------------------------------------


def _connect(
    addresses: tuple[str, ...],
    port: int,
    timeout: float | None,
    socket_options: list[tuple[int, int, int | bytes]] | None = None,
) -> socket.socket:
    """A TCP connection to the first judged address that takes it, in the resolver's order (as a client tries a
    name's addresses) — never to the name, which may answer differently by now."""
    error: OSError | None = None
    for address in addresses:
        try:
            return create_connection((address, port), timeout, socket_options=socket_options)
        except OSError as failed:
            error = failed
    raise error or OSError("no address to connect to")


class _ConnectsToJudgedAddresses(HTTPConnection):
    """A urllib3 connection that opens its socket to the addresses judged for its host. Everything else — SNI, the
    certificate's name, the Host header — stays the host name's, as urllib3 does it. Mixed in before HTTPConnection
    or HTTPSConnection (which is one too), so the method resolution order is the same either way."""

    def __init__(self, *args: Any, addresses: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.addresses = addresses

    def _new_conn(self) -> socket.socket:
        # urllib3's own _new_conn resolves self.host again; the errors are the ones its callers expect.
        try:
            sock = _connect(self.addresses, self.port, self.timeout, self.socket_options)
        except TimeoutError as error:
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from error
        except OSError as error:
            raise NewConnectionError(self, f"Failed to establish a new connection: {error}") from error
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock


class _PinnedHTTPConnection(_ConnectsToJudgedAddresses, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_ConnectsToJudgedAddresses, HTTPSConnection):
    pass


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


def _tls_context() -> ssl.SSLContext:
    """What a 3CX certificate must be signed by — the same for the wizard's TLS check and every POST, so the check
    cannot pass a PBX the POST then refuses: requests' bundle (certifi), or a bundle for PBXs with a private CA."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or requests.certs.where()
    if os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle)


class _Session:
    """This worker process's connections to 3CX: one pool per (scheme, host, port, addresses judged), the most
    recently used kept. Keyed by the addresses, a pooled connection is always to an address judged for this very
    POST; a host whose answer did not change keeps its warm connections (bench/relay.py: reuse is the throughput).

    No proxy and no ~/.netrc from the environment: the guard vets the address the portal connects to, which a proxy
    would make moot, and netrc credentials must never reach a PBX."""

    POOLS_KEPT = 32  # hosts a worker forwards to at once, with room; an evicted pool closes its idle connections
    # Idle connections kept per pool: requests' default, or a drain's POSTs in flight if more — several trunks may
    # share one host and port, and a connection past the pool's size is closed after its POST, not reused.
    CONNECTIONS_PER_POOL = 10

    def __init__(self) -> None:
        self.tls = _tls_context()
        self._pools: OrderedDict[tuple[str, str, int, frozenset[str]], HTTPConnectionPool] = OrderedDict()
        self._lock = threading.Lock()  # forwards run on several threads of one drain

    def pool(self, target: Destination) -> HTTPConnectionPool:
        key = (target.scheme, target.host, target.port, frozenset(target.addresses))
        with self._lock:
            pool = self._pools.pop(key, None)
            if pool is None:
                pool = self._new_pool(target)
            self._pools[key] = pool  # the most recently used last
            while len(self._pools) > self.POOLS_KEPT:
                self._pools.popitem(last=False)[1].close()
        return pool

    def _new_pool(self, target: Destination) -> HTTPConnectionPool:
        maxsize = max(self.CONNECTIONS_PER_POOL, settings.RELAY_FORWARDS_IN_FLIGHT)
        addresses = target.addresses  # goes on to each connection
        if target.scheme == "https":
            return _PinnedHTTPSPool(
                target.host, target.port, maxsize=maxsize, retries=False, addresses=addresses, ssl_context=self.tls
            )
        return _PinnedHTTPPool(target.host, target.port, maxsize=maxsize, retries=False, addresses=addresses)

    def close(self) -> None:
        with self._lock:
            while self._pools:
                self._pools.popitem()[1].close()


_session: _Session | None = None
_session_pid: int | None = None
_session_lock = threading.Lock()


def _http() -> _Session:
    global _session, _session_pid
    with _session_lock:
        if _session is None or _session_pid != os.getpid():  # never share a pool across a fork
            _session, _session_pid = _Session(), os.getpid()
        return _session


def forward(url: str, body: bytes, wavix_message_id: str) -> Outcome:
    """POST one inbound text (or status event) to a 3CX webhook URL and say what happened."""
    try:
        target = destination(url)
    except UnsafeDestination as refusal:
        return Outcome(False, transient=False, status_code=None, response="", error=f"Refused: {refusal}")
    return _post(target, body, wavix_message_id)


def _post(target: Destination, body: bytes, wavix_message_id: str) -> Outcome:
    """POST to the addresses judged for this destination, and to nothing else."""
    headers = {"Content-Type": "application/json", "X-Wavix-Message-Id": wavix_message_id, "User-Agent": USER_AGENT}
    try:
        url = parse_url(target.url)  # its request_uri is percent-encoded as a server expects
        if url.auth:  # https://user:password@… becomes Basic auth, as requests did it
            headers.update(make_headers(basic_auth=unquote(url.auth)))
        pool = _http().pool(target)
        answer = pool.urlopen(
            "POST",
            url.request_uri,
            body=body,
            headers=headers,
            timeout=Timeout(connect=settings.THREECX_CONNECT_TIMEOUT, read=settings.THREECX_READ_TIMEOUT),
            retries=False,
            redirect=False,
        )
    except SSLError as error:
        return Outcome(False, True, None, "", f"TLS/certificate: {_short(error)}")
    except NewConnectionError as error:  # before ConnectTimeoutError, which it subclasses
        return Outcome(False, True, None, "", f"Connection failed: {_short(error.__cause__ or error)}")
    except ConnectTimeoutError:
        return Outcome(False, True, None, "", "Timeout: 3CX did not accept the connection in time")
    except ReadTimeoutError:
        return Outcome(False, True, None, "", "Timeout: 3CX did not answer in time")
    except ProtocolError as error:
        return Outcome(False, True, None, "", f"Connection failed: {_short(error)}")
    except (HTTPError, OSError) as error:
        return Outcome(False, True, None, "", f"Request failed: {_short(error)}")
    response = _text(answer.data, answer.headers.get("Content-Type", ""))
    if 200 <= answer.status < 300:
        return Outcome(True, False, answer.status, response, "")
    transient = answer.status >= 500 or answer.status == 429
    return Outcome(False, transient, answer.status, response, f"HTTP {answer.status} from 3CX")


def _text(data: bytes, content_type: str) -> str:
    """The start of 3CX's answer as text, in the charset it names (UTF-8 if none or an unknown one)."""
    charset = re.search(r"charset=[\"']?([\w.:-]+)", content_type, re.IGNORECASE)
    head = data[: RESPONSE_KEPT * 4]  # enough bytes for RESPONSE_KEPT characters in any encoding
    try:
        return head.decode(charset.group(1) if charset else "utf-8", errors="replace")[:RESPONSE_KEPT]
    except LookupError:
        return head.decode("utf-8", errors="replace")[:RESPONSE_KEPT]


def _short(error: BaseException) -> str:
    """The error's reason without the URL: requests repeats the URL, and its path carries 3CX's token."""
    text = re.sub(r"url: \S+", "", str(error))
    text = re.sub(r"https?://\S+", "…", text)
    text = re.sub(r"<[^>]+>: ", "", text)  # object reprs such as <urllib3.connection...>
    caused = re.search(r"Caused by \w+\((.*)\)\)?$", text)
    return (caused.group(1) if caused else text).strip("'\" )")[:200] or type(error).__name__


CERTIFICATE_WARNING_DAYS = 14


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def probe(url: str, body: bytes, test_id: str) -> list[Check]:
    """Can the portal reach this 3CX webhook URL? DNS, address, TLS and certificate, then a test POST of `body`.

    The host is resolved once: the TLS check and the test POST connect to the addresses the guard judged. Stops at
    the first check that fails: what follows could only fail for the same reason.
    """
    try:
        scheme, host, port = _split(url)
    except UnsafeDestination as refusal:
        return [Check("Address", False, f"Refused: {refusal}.")]
    try:
        addresses = _resolve(host, port)
    except (socket.gaierror, UnicodeError):
        return [Check("DNS", False, f"{host} does not resolve. Check the PBX's FQDN in 3CX and its DNS record.")]
    checks = [Check("DNS", True, _resolved_to(host, addresses))]
    try:
        _judge(host, addresses)
    except UnsafeDestination as refusal:
        return [*checks, Check("Address", False, f"Refused: {refusal}.")]
    target = Destination(url, scheme, host, port, addresses)
    if scheme == "https":
        tls = _certificate_check(target)
        checks.append(tls)
        if not tls.ok:
            return checks
    else:
        checks.append(Check("TLS", True, "plain http: accepted only in development and the sandbox"))
    outcome = _post(target, body, test_id)
    if outcome.delivered:
        detail = f"3CX answered HTTP {outcome.status_code}" + (
            f": {outcome.response[:120]}" if outcome.response else ""
        )
    elif outcome.status_code in (401, 403, 404):
        detail = (
            f"3CX answered HTTP {outcome.status_code}: the URL's token is not one 3CX knows. Copy the Webhook URL "
            "again from the trunk's SMS tab in 3CX, whole."
        )
    else:
        detail = outcome.error + (f" ({outcome.response[:120]})" if outcome.response else "")
    checks.append(Check("Test POST", outcome.delivered, detail))
    return checks


def _resolved_to(host: str, addresses: tuple[str, ...]) -> str:
    """The DNS check's words: the public addresses, and only how many others (never which: see UnsafeDestination)."""
    if _is_address(host):
        return f"{host} is an address: nothing to look up"
    public = [address for address in addresses if is_public_address(address)]
    named = ", ".join(public[:3]) + (f" and {len(public) - 3} more" if len(public) > 3 else "")
    others = len(addresses) - len(public)
    if not others:
        return f"{host} resolves to {named}"
    hidden = "a non-public address" if others == 1 else f"{others} non-public addresses"
    return f"{host} resolves to {named} and {hidden}" if public else f"{host} resolves to {hidden}"


def _certificate_check(target: Destination) -> Check:
    host, port = target.host, target.port
    try:
        with _connect(target.addresses, port, settings.THREECX_CONNECT_TIMEOUT) as raw:
            with _http().tls.wrap_socket(raw, server_hostname=host) as tls:
                certificate = tls.getpeercert()
    except ssl.SSLCertVerificationError as error:
        return Check("TLS", False, f"The certificate is not trusted: {error.verify_message}. 3CX needs a valid one.")
    except (OSError, ssl.SSLError) as error:
        return Check("TLS", False, f"No TLS connection to {host}:{port}: {_short(error)}")
    # The context requires a certificate, so a handshake that succeeded has one, and its notAfter is text.
    expires = ssl.cert_time_to_seconds(str(certificate["notAfter"] if certificate else ""))
    days = int((expires - time.time()) // 86400)
    until = time.strftime("%Y-%m-%d", time.gmtime(expires))
    soon = " — renew it soon, or texts stop reaching 3CX" if days < CERTIFICATE_WARNING_DAYS else ""
    return Check("TLS", True, f"certificate valid until {until} ({days} days){soon}")
