"""Property-based fuzzing of what outsiders send: Wavix's webhooks and the API. No input may get a 5xx.

Example counts are bounded (the whole module runs in well under a minute); a failure prints the input that
caused it, which hypothesis then replays first on the next run.
"""

import base64
import ipaddress
import json
from urllib.parse import quote, urlencode

import pytest
import schemathesis
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error

from messaging import threecx, webhooks
from messaging.models import PhoneNumber, WebhookEvent
from messaging.services import inbound
from tenants.authentication import TokenRateThrottle
from tenants.models import ApiToken
from tests import factories as f
from tests.conftest import token_client

pytestmark = pytest.mark.django_db
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------------------------------------------
# Webhooks
# --------------------------------------------------------------------------------------------------------------

# What the view documents (messaging/views.py): 200 stored or duplicate, 400 with the reason, 404 wrong secret or
# kind, 413 too large; 405 for a method other than POST. 503 is for a database that is down, never for an input.
DOCUMENTED = {200, 400, 404, 413}

# Lone UTF-16 surrogates ("\ud800" without its pair): json.dumps writes them as escapes, as a sender would, and
# json.loads reads them back into strings no UTF-8 encoder takes (they were a 500).
surrogate_texts = st.tuples(st.text(max_size=6), st.characters(categories=["Cs"]), st.text(max_size=6)).map("".join)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=120)
    | st.from_regex(r"\+?[0-9]{1,20}", fullmatch=True)
    | surrogate_texts
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
)
# Keys the view looks at, with values of every shape, so that many bodies get past the first checks.
known_keys = st.sampled_from(
    ["message_id", "to", "from", "status", "brand_id", "campaign_id", "number", "message_body", "error"]
)
# Values at and around the columns' lengths (64 for ids, 20 for numbers), which the shapes are sized against.
long_texts = st.text(min_size=15, max_size=25) | st.text(min_size=60, max_size=70) | st.text(min_size=101, max_size=300)
any_value = json_values | long_texts
wavix_like = st.dictionaries(known_keys, any_value, max_size=6).map(lambda d: json.dumps(d).encode())


# Bodies of each kind's shape (messaging/webhooks.py), each field now and then of any other shape: most get past the
# first field, many are stored (and then processed).
ROUTED_NUMBER, SENT_ID = "14155550100", "out-1"  # the fuzzed account's routed number and a message it sent


def mostly(valid):
    """Nine times in ten a value of the field's shape, else any value."""
    return st.sampled_from([True] * 9 + [False]).flatmap(lambda shaped: valid if shaped else any_value)


numbers = st.from_regex(r"\+?[0-9]{1,19}", fullmatch=True)
shaped_by_kind = {
    "inbound": st.fixed_dictionaries(
        {
            "message_id": mostly(st.uuids().map(str)),
            "from": mostly(numbers | st.text(min_size=1, max_size=20)),
            "to": mostly(st.sampled_from([ROUTED_NUMBER, f"+{ROUTED_NUMBER}"]) | numbers),
            "message_body": mostly(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "text": mostly(st.none() | st.text(max_size=200)),
                        "media": mostly(st.none() | st.lists(mostly(st.just("https://example.com/a.png")), max_size=3)),
                    },
                )
            ),
        },
        optional={"received_at": mostly(st.just("2026-12-04T10:00:00Z")), "message_type": any_value},
    ),
    "dlr": st.fixed_dictionaries(
        {"message_id": mostly(st.just(SENT_ID)), "status": mostly(st.sampled_from(["sent", "delivered"]))},
        optional={key: any_value for key in ("segments_count", "segments", "charge", "sent", "delivered", "error")},
    ),
    "10dlc": st.fixed_dictionaries(
        {"brand_id": mostly(st.from_regex(r"[A-Z0-9]{1,64}", fullmatch=True)), "status": mostly(st.just("APPROVED"))},
        optional={"campaign_id": any_value, "number": mostly(numbers)},
    ),
}
shaped = st.one_of(*shaped_by_kind.values()).map(lambda d: json.dumps(d).encode())
bodies = st.one_of(
    wavix_like,
    shaped,
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=2000),
    st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass")),
    # Nested 1 to 65,536 levels deep (exponentially spread: hypothesis favours small numbers), under and over
    # the size limit.
    st.integers(min_value=0, max_value=16).map(lambda e: b"[" * 2**e + b"]" * 2**e),
    st.integers(min_value=0, max_value=14).map(lambda e: b'{"a":' * 2**e + b"1" + b"}" * 2**e),
    st.integers(min_value=60_000, max_value=70_000).map(lambda n: json.dumps({"message_id": "x" * n}).encode()),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=latin-1",
        "text/plain",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "",
    ]
)


@pytest.fixture
def webhook_secret(tenant):
    """An account with a number routed to a trunk and a message it sent: webhooks that reach them are processed
    as far as they go (a message stored, a report applied), where a body the intake should have refused breaks."""
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    trunk = f.TrunkFactory(tenant=tenant, sms_enabled=True)
    PhoneNumber.objects.create(account=account, tenant=tenant, trunk=trunk, number=f"+{ROUTED_NUMBER}", wavix_id="1")
    f.MessageFactory(tenant=tenant, account=account, status="accepted", wavix_message_id=SENT_ID)
    return account.inbound_webhook_url.rstrip("/").split("/")[-2]


def _example(kind: str, body: bytes):
    return example(body=body, kind=kind, content_type="application/json", wrong_secret=False)


@FUZZ
# Inputs that once got a 500 (or, on PostgreSQL, a 503 that Wavix would retry forever): always tried first.
@_example("inbound", b"[" * 5000 + b"]" * 5000)
@_example("dlr", json.dumps({"message_id": "m" * 100, "status": "s" * 100}).encode())
@_example("10dlc", json.dumps({"status": "ok", "brand_id": "b" * 100, "campaign_id": "c" * 100}).encode())
@_example("10dlc", json.dumps({"status": "ok", "brand_id": "b\u0000"}).encode())
@_example("inbound", json.dumps({"message_id": "m1", "to": "\u00b2"}).encode())
@_example("inbound", b'{"message_id": "m1", "from": "\\ud800", "to": "14155550100", "message_body": {}}')
@_example("inbound", b'{"message_id": "\\ud800", "from": "1", "to": "14155550100", "message_body": {}}')
@_example(
    "inbound", json.dumps({"message_id": "m" * 80, "from": "1", "to": "14155550100", "message_body": {}}).encode()
)
@_example("inbound", json.dumps({"message_id": "m", "from": "1", "to": "1", "message_body": {"media": "xy"}}).encode())
@_example("dlr", json.dumps({"message_id": "m1", "status": "sent", "segments_count": 99999, "charge": "NaN"}).encode())
@given(
    body=bodies,
    # Three times in four a kind that exists: its body is read.
    kind=st.one_of(
        *[st.sampled_from(["inbound", "dlr", "10dlc"])] * 3,
        st.text(min_size=1, max_size=8).filter(lambda k: "/" not in k and k.strip(".")),
    ),
    content_type=content_types,
    wrong_secret=st.sampled_from([False] * 9 + [True]),
)
def test_a_webhook_gets_a_documented_answer_whatever_it_carries(
    client, webhook_secret, body, kind, content_type, wrong_secret
):
    secret = "x" * 32 if wrong_secret else webhook_secret
    stored_before = WebhookEvent.objects.count()
    response = client.generic(
        "POST", f"/webhooks/wavix/{secret}/{quote(kind, safe='')}/", body, content_type=content_type
    )
    answer = response.json()
    event(f"{response.status_code} {answer['detail'].split()[0] if response.status_code == 400 else ''}")
    assert response.status_code in DOCUMENTED, (response.status_code, body[:200])
    assert answer["status"] == response.status_code, kind
    if response.status_code != 200 or answer["detail"] != "Accepted.":
        assert WebhookEvent.objects.count() == stored_before, answer  # refused: nothing stored
        return
    # What the intake accepts can be processed: never parked as invalid (it was answered 200 and then lost).
    inbound.events_process()
    stored = WebhookEvent.objects.latest("id")
    assert stored.state != WebhookEvent.State.INVALID, (stored.last_error, body[:300])


FIELDS = {kind: {field.path for field in fields} for kind, fields in webhooks.SHAPES.items()}


@FUZZ
@given(kind_and_body=st.sampled_from(list(shaped_by_kind)).flatmap(lambda k: st.tuples(st.just(k), shaped_by_kind[k])))
def test_a_body_near_its_kinds_shape_is_stored_and_processed_or_refused_naming_the_field(
    client, webhook_secret, kind_and_body
):
    kind, body = kind_and_body
    stored_before = WebhookEvent.objects.count()
    response = client.generic(
        "POST", f"/webhooks/wavix/{webhook_secret}/{kind}/", json.dumps(body).encode(), content_type="application/json"
    )
    detail = response.json()["detail"]
    event(f"{kind} {response.status_code} {detail.split()[0] if response.status_code == 400 else ''}")
    if response.status_code == 400:
        assert WebhookEvent.objects.count() == stored_before
        field = detail.split()[0]
        assert field in FIELDS[kind] or "lone UTF-16 surrogate" in detail, detail
        return
    assert (response.status_code, detail) in ((200, "Accepted."), (200, "Duplicate: already received.")), detail
    inbound.events_process()
    stored = WebhookEvent.objects.latest("id")
    assert stored.state != WebhookEvent.State.INVALID, (stored.last_error, body)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "OPTIONS"]),
    kind=st.sampled_from(["inbound", "dlr", "10dlc"]),
)
def test_a_webhook_sent_with_another_method_gets_405(client, webhook_secret, method, kind):
    response = client.generic(
        method, f"/webhooks/wavix/{webhook_secret}/{kind}/", b"{}", content_type="application/json"
    )
    assert response.status_code == 405


# --------------------------------------------------------------------------------------------------------------
# The API, every operation of its own OpenAPI schema
# --------------------------------------------------------------------------------------------------------------


class WsgiApp:
    """The portal's WSGI application, minus what Django's test client also leaves out: closing the database
    connection after each request (it would end the test's transaction)."""

    def __init__(self):
        self.handler = WSGIHandler()

    def __call__(self, environ, start_response):
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            response = self.handler(environ, start_response)
            try:
                return [b"".join(response)]
            finally:
                response.close()
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)


WSGI_APP = WsgiApp()


def served_schema() -> dict:
    """The OpenAPI document /api/schema/ serves (test_the_fuzzed_schema_is_the_served_one checks it is)."""
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


# Built at import, without a database: schemathesis's lazy (fixture-loaded) schemas do not work with pytest 9.
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(served_schema(), default=str)))
schema.app = WSGI_APP

# The lists' cursors: base64 of a query string (p: position, o: offset, r: reverse) that DRF decodes and used to trust
# (p=abc reached the query: a 500). A random string hardly ever decodes to one, so the run also sends cursors made
# of such query strings, with positions of every shape.
LIST_PATHS = [
    path
    for path, operations in schema.raw_schema["paths"].items()
    if any(parameter["name"] == "cursor" for parameter in operations.get("get", {}).get("parameters", []))
]
LIST_OPERATIONS = {("GET", path) for path in LIST_PATHS}


def cursor_of(tokens: str) -> str:
    """A cursor as DRF encodes one, ready for a URL."""
    return quote(base64.b64encode(tokens.encode()).decode())


cursor_values = st.sampled_from(["abc", "1e9999", "1.5", "-1", "99999999999999999999", "", "\u00b2"]) | st.text(
    alphabet=st.characters(exclude_categories=["Cs"]), max_size=24
)
cursors = st.dictionaries(st.sampled_from(["p", "o", "r"]), cursor_values, min_size=1, max_size=3).map(
    lambda tokens: base64.b64encode(urlencode(tokens).encode()).decode()
)


@schema.hook
def flatmap_query(context, query):
    if context.operation is None or (context.operation.method.upper(), context.operation.path) not in LIST_OPERATIONS:
        return st.just(query)
    return st.just(query) | cursors.map(lambda cursor: {**(query or {}), "cursor": cursor})


def test_the_fuzzed_schema_is_the_served_one(reseller_admin):
    response = token_client(reseller_admin).get("/api/schema/?format=json")
    assert response.status_code == 200
    assert json.loads(response.content) == schema.raw_schema


@pytest.fixture
def reseller_token(world, reseller_admin, settings, monkeypatch):
    """A reseller admin's token over a tenant with one row of everything; Wavix and 3CX are out of reach."""
    settings.WAVIX_API_URL = "http://127.0.0.1:1/wavix"  # nothing listens: every call fails fast, as "unreachable"
    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"api_token": "100000/min"})
    # Random host names must not leave the machine as DNS queries: every name "resolves" to a documentation address.
    # Addresses resolve as they are, so a call to Wavix (the SDK's httpx passes four arguments) fails fast as above.
    real_getaddrinfo = threecx.socket.getaddrinfo

    def no_dns(host, port, *args, **kwargs):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return [(2, 1, 6, "", ("192.0.2.10", port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(threecx.socket, "getaddrinfo", no_dns)
    yield ApiToken.issue(reseller_admin, "fuzz")[1]
    cache.clear()  # the throttle's request history: a later test's token may get this one's id (SQLite reuses ids)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_api_input_gets_a_server_error(case, reseller_token):
    response = case.call(headers={"Authorization": f"Token {reseller_token}"})
    event(f"{case.method} {response.status_code}" + (" with a cursor" if "cursor" in (case.query or {}) else ""))
    case.validate_response(response, checks=[not_a_server_error])


@pytest.mark.parametrize("sender", ["\u00b2", "\uff11\uff12", "99999999999999999999", "x" * 5000])
def test_a_sender_of_any_shape_is_refused_with_a_reason(world, reseller_admin, sender):
    # "²" once got a 500: isdigit() accepted it and int() did not.
    body = {"sender": sender, "to": "+14155550142", "text": "Hello"}
    response = token_client(reseller_admin).post("/api/v1/messages/", body, format="json")
    assert response.status_code == 400
    assert "sender" in response.json()


@pytest.mark.parametrize(
    "api_key", ["2\u836b8K\u00c6\x02u\U000f4855", "wx live key", "wx_live_\u00e9t\u00e9", "wx_key_\x7f42"]
)
def test_a_wavix_key_that_cannot_travel_in_a_header_is_refused_with_a_reason(world, operator, api_key):
    # Schemathesis found it: a key with a non-ASCII character got a 500 — httpx cannot put it in a header.
    response = token_client(operator).post(
        "/api/v1/wavix-accounts/", {"name": "Main", "api_key": api_key}, format="json"
    )
    assert response.status_code == 400
    assert "letters, digits and punctuation only, no spaces" in response.json()["api_key"][0]


# Every operation of the API that reads a body, and the world row its {id} names.
BODY_OPERATIONS = [
    (method.upper(), path)
    for path, operations in schema.raw_schema["paths"].items()
    for method, operation in operations.items()
    if "requestBody" in operation
]
WORLD_ROWS = {
    "tenants": "tenants.tenant",
    "wavix-accounts": "messaging.wavixaccount",
    "trunks": "messaging.trunk",
    "sender-ids": "messaging.senderid",
    "messages": "messaging.message",
    "numbers": "messaging.phonenumber",
    "people": "tenants.membership",
}


def api_url(path: str, world: dict) -> str:
    return path.replace("{id}", str(world[WORLD_ROWS[path.split("/")[3]]].pk))


@pytest.mark.parametrize("method,path", BODY_OPERATIONS)
def test_a_body_nested_100000_deep_gets_400_from_every_api_route_that_reads_one(world, reseller_admin, method, path):
    # DRF's JSON parser let the RecursionError through: a 500.
    body = b"[" * 100_000 + b"]" * 100_000
    response = token_client(reseller_admin).generic(method, api_url(path, world), body, content_type="application/json")
    assert (response.status_code, response.json()) == (
        400,
        {"detail": "JSON parse error - the body is nested too deeply."},
    )


@pytest.mark.parametrize("method,path", BODY_OPERATIONS)
def test_a_lone_surrogate_anywhere_in_an_api_body_gets_400_naming_where(world, reseller_admin, method, path):
    body = b'{"note": {"deep": ["fine", "half an emoji \\ud83d"]}}'
    response = token_client(reseller_admin).generic(method, api_url(path, world), body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "JSON parse error - note.deep[1] contains a lone UTF-16 surrogate (an unpaired \\ud800–\\udfff escape): "
        "send UTF-8 text."
    )


@pytest.mark.parametrize(
    "path,body",
    [
        ("/api/v1/sender-ids/", {"type": "\ud800", "value": "Acme", "countries": ["GB"]}),
        ("/api/v1/trunks/", {"name": "T", "sms_template": "\udfff"}),
    ],
)
def test_a_lone_surrogate_that_drf_would_echo_in_its_answer_gets_400_not_a_500(world, reseller_admin, path, body):
    # A choice DRF refuses comes back quoted in the answer, which cannot be encoded as UTF-8.
    response = token_client(reseller_admin).post(path, json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert "lone UTF-16 surrogate" in response.json()["detail"]


def test_another_resellers_row_answers_404_whatever_the_body(world, other_world, reseller_admin):
    api = token_client(reseller_admin)
    for body in (b'{"name": "x"}', b"[" * 100_000 + b"]" * 100_000, b'{"name": "\\ud800"}'):
        url = f"/api/v1/trunks/{other_world['messaging.trunk'].pk}/"
        assert api.generic("PATCH", url, body, content_type="application/json").status_code == 404


@pytest.mark.parametrize("tokens", ["p=abc", "p=1e9999", "p=1.5", "p=\u00b2", "p=%00", "o=abc", "r=x", "o=-1"])
@pytest.mark.parametrize("path", LIST_PATHS)
def test_a_cursor_that_decodes_but_does_not_parse_is_an_invalid_cursor_not_a_500(world, reseller_admin, path, tokens):
    response = token_client(reseller_admin).get(f"{path}?cursor={cursor_of(tokens)}")
    assert (response.status_code, response.json()) == (404, {"detail": "Invalid cursor"})


@pytest.mark.parametrize("tokens", ["p=99999999999999999999", "p=-1", "p=0&r=1", "o=3&p=5"])
def test_a_cursor_at_any_position_a_key_can_have_pages_on(world, other_world, reseller_admin, tokens):
    response = token_client(reseller_admin).get(f"/api/v1/trunks/?cursor={cursor_of(tokens)}")
    assert response.status_code == 200
    assert other_world["messaging.trunk"].pk not in [row["id"] for row in response.json()["results"]]


def test_a_real_cursor_pages_through_only_ones_own_rows(world, other_world, reseller_admin):
    f.TrunkFactory.create_batch(2, tenant=world["tenants.tenant"])
    api, seen, url = token_client(reseller_admin), [], "/api/v1/trunks/?page_size=1"
    while url:
        page = api.get(url).json()
        seen += [row["id"] for row in page["results"]]
        url = page["next"]
    assert len(seen) == 3 and other_world["messaging.trunk"].pk not in seen


# Bodies for the API: objects of the request schemas' field names with values of any shape (lone surrogates
# included), any JSON, and nesting up to 131,072 deep (past the 100,000 that once got a 500).
REQUEST_FIELDS = sorted(
    {
        name
        for component, definition in schema.raw_schema["components"]["schemas"].items()
        if component.endswith("Request")
        for name in definition.get("properties", {})
    }
)
api_bodies = st.one_of(
    st.dictionaries(st.sampled_from(REQUEST_FIELDS), json_values, max_size=5).map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=0, max_value=17).map(lambda e: b"[" * 2**e + b"]" * 2**e),
    st.integers(min_value=0, max_value=15).map(lambda e: b'{"a":' * 2**e + b"1" + b"}" * 2**e),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(operation=st.sampled_from(BODY_OPERATIONS), body=api_bodies)
def test_no_api_body_gets_a_server_error_whatever_it_carries(world, reseller_token, operation, body):
    method, path = operation
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {reseller_token}")
    api.raise_request_exception = False
    response = api.generic(method, api_url(path, world), body, content_type="application/json")
    event(f"{method} {response.status_code}")
    assert response.status_code < 500, (method, path, body[:300])
