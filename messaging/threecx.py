"""The one module that talks to 3CX: forwards an inbound text to a trunk's webhook URL.

- 3CX's Wavix template gets Wavix's own JSON byte for byte; the Generic template gets the Telnyx-style
  envelope 3CX's generic provider expects.
- Every POST says `Content-Type: application/json` and carries the Wavix message id in X-Wavix-Message-Id, so
  3CX (or a proxy in front of it) can drop a repeat.
- SSRF guard: the URL's host must not resolve to a loopback, private, link-local, reserved or metadata
  address, unless THREECX_ALLOW_PRIVATE_ADDRESSES (the sandbox's fake 3CX lives on loopback). It is checked
  when the URL is saved and again before every POST, since DNS answers change.
- One pooled requests.Session per worker process; connect and read timeouts on every call.
- probe(): the setup wizard's reachability check — DNS, the address guard, TLS and certificate expiry, then
  a test POST — each step reported in words, stopping at the first that fails.
"""

import ipaddress
import json
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from django.conf import settings

USER_AGENT = "pbx-messaging-portal"
RESPONSE_KEPT = 500  # characters of 3CX's answer kept on the delivery


class UnsafeDestination(Exception):
    """The URL points somewhere the portal must not send to; the message says where and why."""


def check_destination(url: str, *, unresolved_ok: bool = False) -> None:
    """Refuse URLs whose host resolves to an address inside a private network, or (unless unresolved_ok, as
    when a URL is saved before the PBX's DNS exists) that does not resolve."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise UnsafeDestination("the URL has no https:// host")
    if parts.scheme == "http" and not (settings.DEBUG or settings.SANDBOX_ENABLED):
        raise UnsafeDestination("the URL must start with https://")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)}
    except (socket.gaierror, UnicodeError):
        if unresolved_ok:
            return
        raise UnsafeDestination(f"DNS: {host} does not resolve") from None
    if settings.THREECX_ALLOW_PRIVATE_ADDRESSES:
        return
    for address in sorted(addresses):
        ip = ipaddress.ip_address(address.split("%")[0])
        if (
            ip.is_loopback
            or ip.is_private
            or ip.is_link_local
            or ip.is_reserved
            or ip.is_multicast
            or ip.is_unspecified
        ):
            raise UnsafeDestination(f"{host} resolves to {ip}, an address inside a private network")


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    transient: bool  # worth retrying: network trouble, timeout, 5xx, 429
    status_code: int | None
    response: str  # the start of 3CX's answer
    error: str  # what went wrong, in words a reseller can act on ("" when delivered)


def generic_envelope(message, received_at: str) -> bytes:
    """The Telnyx-style body 3CX's Generic SMS provider reads (numbers in E.164 with +)."""
    payload = {
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


_session: requests.Session | None = None
_session_pid: int | None = None


def _http() -> requests.Session:
    global _session, _session_pid
    if _session is None or _session_pid != os.getpid():  # never share a pool across a fork
        _session, _session_pid = requests.Session(), os.getpid()
        # No proxy or ~/.netrc from the environment: check_destination() vetted the address this session
        # connects to, which an HTTP(S)_PROXY would make moot, and netrc credentials must never reach a PBX.
        # Requests read them on every call (a scan of os.environ: a third of a forward's HTTP time in
        # bench/relay.py's profile); a CA bundle for PBXs with a private CA is still honoured, read once here.
        _session.trust_env = False
        _session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return _session


def forward(url: str, body: bytes, wavix_message_id: str) -> Outcome:
    """POST one inbound text to a 3CX webhook URL and say what happened."""
    try:
        check_destination(url)
    except UnsafeDestination as refusal:
        return Outcome(False, transient=False, status_code=None, response="", error=f"Refused: {refusal}")
    headers = {"Content-Type": "application/json", "X-Wavix-Message-Id": wavix_message_id, "User-Agent": USER_AGENT}
    try:
        answer = _http().post(
            url,
            data=body,
            headers=headers,
            timeout=(settings.THREECX_CONNECT_TIMEOUT, settings.THREECX_READ_TIMEOUT),
            allow_redirects=False,
        )
    except requests.exceptions.SSLError as error:
        return Outcome(False, True, None, "", f"TLS/certificate: {_short(error)}")
    except requests.exceptions.ConnectTimeout:
        return Outcome(False, True, None, "", "Timeout: 3CX did not accept the connection in time")
    except requests.exceptions.ReadTimeout:
        return Outcome(False, True, None, "", "Timeout: 3CX did not answer in time")
    except requests.exceptions.ConnectionError as error:
        text = _short(error)
        reason = "DNS: the host does not resolve" if "resolve" in text.lower() else f"Connection failed: {text}"
        return Outcome(False, True, None, "", reason)
    except requests.RequestException as error:
        return Outcome(False, True, None, "", f"Request failed: {_short(error)}")
    response = answer.text[:RESPONSE_KEPT]
    if 200 <= answer.status_code < 300:
        return Outcome(True, False, answer.status_code, response, "")
    transient = answer.status_code >= 500 or answer.status_code == 429
    return Outcome(False, transient, answer.status_code, response, f"HTTP {answer.status_code} from 3CX")


def _short(error: Exception) -> str:
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

    Stops at the first check that fails: what follows could only fail for the same reason.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    checks = []
    try:
        addresses = sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
    except (socket.gaierror, UnicodeError):
        return [Check("DNS", False, f"{host} does not resolve. Check the PBX's FQDN in 3CX and its DNS record.")]
    checks.append(Check("DNS", True, f"{host} resolves to {', '.join(addresses[:3])}"))
    try:
        check_destination(url)
    except UnsafeDestination as refusal:
        return [*checks, Check("Address", False, f"Refused: {refusal}.")]
    if parts.scheme == "https":
        tls = _certificate_check(host, port)
        checks.append(tls)
        if not tls.ok:
            return checks
    else:
        checks.append(Check("TLS", True, "plain http: accepted only in development and the sandbox"))
    outcome = forward(url, body, test_id)
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


def _certificate_check(host: str, port: int) -> Check:
    context = ssl.create_default_context()
    try:
        with socket.create_connection((host, port), timeout=settings.THREECX_CONNECT_TIMEOUT) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                certificate = tls.getpeercert()
    except ssl.SSLCertVerificationError as error:
        return Check("TLS", False, f"The certificate is not trusted: {error.verify_message}. 3CX needs a valid one.")
    except (OSError, ssl.SSLError) as error:
        return Check("TLS", False, f"No TLS connection to {host}:{port}: {_short(error)}")
    expires = ssl.cert_time_to_seconds(certificate["notAfter"])
    days = int((expires - time.time()) // 86400)
    until = time.strftime("%Y-%m-%d", time.gmtime(expires))
    soon = " — renew it soon, or texts stop reaching 3CX" if days < CERTIFICATE_WARNING_DAYS else ""
    return Check("TLS", True, f"certificate valid until {until} ({days} days){soon}")
