"""The Wavix sandbox and the fake 3CX behave as the real ones are documented to, over real HTTP."""

import json
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from django.utils import timezone

from sandbox import api as sandbox_api
from sandbox import phones
from sandbox import views as sandbox_views
from sandbox.models import FakePbxInbox, FakePbxRequest, SandboxMessage
from sandbox.spec import schema_problems
from sandbox.tasks import sandbox_delivery_report
from tests import factories as f
from tests.conftest import live_db

pytestmark = live_db
ROOT = Path(__file__).resolve().parent.parent


def call(server, key, method, path, body=None, **params):
    return requests.request(
        method,
        f"{server.url}/sandbox/wavix{path}",
        headers={"Authorization": f"Bearer {key}"},
        json=body,
        params=params,
        timeout=10,
    )


def test_a_wrong_key_gets_wavixs_401_body(wavix):
    response = call(wavix, "nope", "GET", "/v1/profile")
    assert response.status_code == 401
    assert response.json() == {"success": False, "error": True, "message": "Unauthorized"}


def test_a_request_the_spec_refuses_gets_wavixs_400(wavix, sandbox_account):
    response = call(wavix, sandbox_account.api_key, "GET", "/v3/messages")  # `type` is required
    assert response.status_code == 400
    assert response.json() == {"success": False, "message": "Missing or invalid parameter type"}
    response = call(wavix, sandbox_account.api_key, "POST", "/v3/messages/sender-ids", {"sender_id": "X", "type": "x"})
    assert response.json()["message"].startswith("Missing or invalid parameter ")


def test_more_calls_than_the_per_second_limit_get_429(wavix, sandbox_account):
    sandbox_account.rate_limit_per_second = 3
    sandbox_account.save()
    # Twenty quick calls: even straddling a second boundary, some second sees more than three.
    statuses = [call(wavix, sandbox_account.api_key, "GET", "/v1/profile").status_code for _ in range(20)]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses


def test_an_outage_answers_500_until_it_ends(wavix, sandbox_account):
    sandbox_account.failing_until = timezone.now() + timedelta(minutes=1)
    sandbox_account.save()
    assert call(wavix, sandbox_account.api_key, "GET", "/v1/profile").status_code == 500
    sandbox_account.failing_until = timezone.now() - timedelta(seconds=1)
    sandbox_account.save()
    assert call(wavix, sandbox_account.api_key, "GET", "/v1/profile").status_code == 200


def test_an_account_far_away_answers_each_call_that_much_later(wavix, sandbox_account):
    sandbox_account.answer_delay_ms = 400
    sandbox_account.save()
    started = time.monotonic()
    assert call(wavix, sandbox_account.api_key, "GET", "/v1/profile").status_code == 200
    assert time.monotonic() - started >= 0.4


@pytest.fixture
def inbox(wavix):
    inbox = FakePbxInbox.objects.create(label="Test PBX")
    inbox.url = f"{wavix.url}/sandbox/3cx/{inbox.token}/"
    return inbox


def test_a_message_is_accepted_then_reported_sent_then_delivered(wavix, sandbox_account, inbox):
    f.SandboxNumberFactory(account=sandbox_account, number="14155550100")
    body = {
        "from": "14155550100",
        "to": "+447400123456",
        "message_body": {"text": "Hello", "media": None},
        "callback_url": inbox.url,
        "tag": "portal-42",
    }
    response = call(wavix, sandbox_account.api_key, "POST", "/v3/messages", body)
    assert response.status_code == 201, response.text
    assert (response.json()["status"], response.json()["segments"], response.json()["tag"]) == (
        "accepted",
        1,
        "portal-42",
    )
    message = SandboxMessage.objects.get()
    for status in ("sent", "delivered"):  # what the delayed tasks do; run here in order
        sandbox_delivery_report(message.pk, status)
    reports = [json.loads(bytes(r.body)) for r in FakePbxRequest.objects.order_by("id")]
    assert [(r["status"], r["tag"], r["message_id"]) for r in reports] == [
        ("sent", "portal-42", str(message.uid)),
        ("delivered", "portal-42", str(message.uid)),
    ]
    assert all(schema_problems("MessagesDeliveryReport", r) is None for r in reports)

    found = call(wavix, sandbox_account.api_key, "GET", "/v3/messages", type="outbound", tag="portal-42").json()
    assert [m["message_id"] for m in found["items"]] == [str(message.uid)]
    assert (
        call(wavix, sandbox_account.api_key, "GET", "/v3/messages", type="outbound", tag="other").json()["items"] == []
    )


def test_a_destination_ending_0000_ends_undelivered_with_an_error(wavix, sandbox_account, inbox):
    f.SandboxNumberFactory(account=sandbox_account, number="14155550100")
    body = {
        "from": "14155550100",
        "to": "447400120000",
        "message_body": {"text": "x", "media": None},
        "callback_url": inbox.url,
    }
    assert call(wavix, sandbox_account.api_key, "POST", "/v3/messages", body).status_code == 201
    sandbox_delivery_report(SandboxMessage.objects.get().pk, "undelivered")
    report = json.loads(bytes(FakePbxRequest.objects.get().body))
    assert (report["status"], report["error"]) == ("undelivered", "Handset unreachable")


def test_a_sender_not_allowlisted_for_the_destination_is_refused(wavix, sandbox_account):
    body = {"from": "AcmeDental", "to": "+447400123456", "message_body": {"text": "x", "media": None}}
    response = call(wavix, sandbox_account.api_key, "POST", "/v3/messages", body)
    assert (response.status_code, response.json()["message"]) == (400, "Sender ID is not provisioned for GB")


def test_an_injected_inbound_text_reaches_the_numbers_relay_url_in_wavixs_format(wavix, sandbox_account, inbox):
    number = f.SandboxNumberFactory(account=sandbox_account, number="14155550100", sms_relay_url=inbox.url)
    url, status, _ = phones.inject_inbound(number, "+447700900123", "Is Friday OK?")
    assert (url, status) == (inbox.url, 200)
    received = FakePbxRequest.objects.get()
    body = json.loads(bytes(received.body))
    assert schema_problems("InboundMessage", body) is None
    assert (body["from"], body["to"], body["message_body"]["text"]) == ("447700900123", "14155550100", "Is Friday OK?")
    assert received.headers["Content-Type"] == "application/json"


def test_without_a_relay_url_the_account_default_gets_the_text(wavix, inbox):
    account = f.SandboxAccountFactory(sms_relay_url=inbox.url)
    number = f.SandboxNumberFactory(account=account, number="14155550100")
    assert phones.inject_inbound(number, "+447700900123", "hi")[:2] == (inbox.url, 200)


@pytest.mark.parametrize("mode,status", [("500", 500), ("404", 404), ("ok", 200)])
def test_a_fake_3cx_answers_as_told_and_keeps_every_request(inbox, mode, status):
    FakePbxInbox.objects.filter(pk=inbox.pk).update(mode=mode, mode_until=timezone.now() + timedelta(minutes=5))
    response = requests.post(inbox.url, data=b'{"a": 1}', headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == status
    assert bytes(FakePbxRequest.objects.get().body) == b'{"a": 1}'  # byte for byte


def test_a_fake_3cx_that_times_out_gives_no_timely_answer(inbox, monkeypatch):
    monkeypatch.setattr(sandbox_views, "FAKE_PBX_TIMEOUT_SECONDS", 2)
    FakePbxInbox.objects.filter(pk=inbox.pk).update(mode="timeout", mode_until=timezone.now() + timedelta(minutes=5))
    with pytest.raises(requests.Timeout):
        requests.post(inbox.url, json={}, timeout=0.5)


def test_a_fake_3cx_returns_to_200_when_its_fault_expires(inbox):
    FakePbxInbox.objects.filter(pk=inbox.pk).update(mode="500", mode_until=timezone.now() - timedelta(seconds=1))
    assert requests.post(inbox.url, json={}, timeout=10).status_code == 200


def test_the_sandbox_pages_need_a_portal_login(client, wavix, operator):
    assert client.get("/sandbox/").status_code == 302
    client.force_login(operator)
    assert "simulated Wavix" in client.get("/sandbox/").content.decode()


def test_wavix_staff_allowlisting_a_country_in_the_sandbox(client, wavix, operator, sandbox_account):
    sender = sandbox_account.sender_ids.create(
        sender_id="Acme", type="alphanumeric", countries=["GB", "IN"], allowlisted_in=["GB"]
    )
    client.force_login(operator)
    client.post(f"/sandbox/sender-ids/{sender.pk}/allowlist/", {"country": "IN"})
    sender.refresh_from_db()
    assert sender.allowlisted_in == ["GB", "IN"]


def test_the_sandbox_is_not_served_when_it_is_off():
    env = {"SANDBOX_ENABLED": "false", "DJANGO_SETTINGS_MODULE": "portal.settings"}
    script = (
        "import django; django.setup(); from django.test import Client; print(Client().get('/sandbox/').status_code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**__import__("os").environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip().splitlines()[-1] == "404", result.stderr


# ---------------------------------------------------------------------------------------------------------------
# Wavix's own examples, through our parsers
# ---------------------------------------------------------------------------------------------------------------


def spec_example(path: str, method: str, status: str) -> dict:
    spec = yaml.safe_load((ROOT / "sandbox" / "spec" / "wavix-api.yaml").read_text())
    content = spec["paths"][path][method]["responses"][status]["content"]["application/json"]
    return next(iter(content["examples"].values()))["value"]


@pytest.mark.django_db
def test_the_specs_number_example_parses_into_an_e164_number():
    from wavix.types import NumberListResponse

    from messaging.wavix import WavixClient

    parsed = NumberListResponse.model_validate(spec_example("/v1/numbers", "get", "200"))
    number = WavixClient._number(parsed.items[0])
    assert number.number.startswith("+") and number.number[1:].isdigit() and number.wavix_id.isdigit()


@pytest.mark.django_db
def test_the_specs_sender_id_examples_parse():
    from wavix.types import SenderIdDetails, SenderIdListResponse

    from messaging.wavix import WavixClient

    listed = SenderIdListResponse.model_validate(spec_example("/v3/messages/sender-ids", "get", "200"))
    created = SenderIdDetails.model_validate(spec_example("/v3/messages/sender-ids", "post", "201"))
    for raw in [*listed.items, created]:
        sender = WavixClient._sender(raw)
        assert sender.wavix_id and sender.value and isinstance(sender.allowlisted_in, frozenset)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "schema,example",
    [
        (
            "InboundMessage",
            {
                "message_id": "3c7a5a90-43e0-43e0-b006-fdfea30c5a7c",
                "from": "43720115661",
                "to": "447712345661",
                "message_body": {"text": "SMS message", "media": None},
                "received_at": "2022-04-14T13:51:16.096Z",
            },
        ),
        (
            "MessagesDeliveryReport",
            {
                "delivered": None,
                "error": None,
                "from": "SenderID",
                "message_id": "62845007-931a-4c3c-a581-6bdeffec75dc",
                "message_type": "sms",
                "segments_count": 1,
                "sent": "2025-03-21T08:09:02",
                "status": "sent",
                "to": "16865550123",
                "tag": "Message tag",
                "charge": "0.0",
                "carrier_fees": "0.0",
            },
        ),
    ],
)
def test_wavixs_published_webhook_samples_pass_our_spec_check(schema, example):
    assert schema_problems(schema, example) is None
    assert schema_problems(schema, {**example, "message_id": None}) is not None  # and the check can fail


def test_an_answer_later_than_the_read_timeout_is_transient_and_may_have_arrived(
    wavix, sandbox_account, settings, monkeypatch
):
    from messaging import wavix as wavix_module
    from messaging.wavix import WavixClient, WavixTransientError

    monkeypatch.setattr(sandbox_api, "SLOW_SECONDS", 3)
    monkeypatch.setattr(wavix_module, "_http", None)  # a new HTTP client with the short timeout below
    settings.WAVIX_READ_TIMEOUT = 1
    f.SandboxNumberFactory(account=sandbox_account, number="14155550100")
    client = WavixClient(sandbox_account.api_key)
    with pytest.raises(WavixTransientError) as error:
        client._call(
            "sending a message",
            client._sdk.sms_and_mms.messages.send,
            from_="14155550100",
            to="14155550999",  # ends in SLOW_SUFFIX: accepted, answered too late
            message_body={"text": "hi", "media": None},
        )
    assert error.value.may_have_arrived  # the request went out: resending blindly could send twice
    assert SandboxMessage.objects.filter(to_number="14155550999").exists()
    monkeypatch.setattr(wavix_module, "_http", None)


def test_the_inject_endpoint_delivers_an_inbound_text(wavix, sandbox_account, inbox):
    f.SandboxNumberFactory(account=sandbox_account, number="14155550100", sms_relay_url=inbox.url)
    response = requests.post(
        f"{wavix.url}/sandbox/wavix/_inject",
        headers={"Authorization": f"Bearer {sandbox_account.api_key}"},
        json={"to": "+14155550100", "from": "+447700900123", "text": "Running late"},
        timeout=10,
    )
    assert response.json()["relayed_to"] == inbox.url and response.json()["status"] == 200
    assert json.loads(bytes(FakePbxRequest.objects.get().body))["message_body"]["text"] == "Running late"
    unknown = requests.post(
        f"{wavix.url}/sandbox/wavix/_inject",
        headers={"Authorization": f"Bearer {sandbox_account.api_key}"},
        json={"to": "+14155550199"},
        timeout=10,
    )
    assert unknown.status_code == 400  # not this account's number
    assert requests.post(f"{wavix.url}/sandbox/wavix/_inject", json={}, timeout=10).status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path,method,status,model",
    [("/v3/messages", "post", "201", "SendMessagesResponse"), ("/v3/messages", "get", "200", "MessageListResponse")],
)
def test_the_specs_message_examples_parse(path, method, status, model):
    import wavix.types

    spec = yaml.safe_load((ROOT / "sandbox" / "spec" / "wavix-api.yaml").read_text())
    content = spec["paths"][path][method]["responses"][status]["content"]["application/json"]
    examples = [e["value"] for e in content.get("examples", {}).values()]
    examples += [part["example"] for part in content["schema"].get("allOf", []) if "example" in part]
    assert examples, "the spec has an example for this response"
    for example in examples:
        getattr(wavix.types, model).model_validate(example)


def test_the_fake_3cx_keeps_no_post_whose_sender_died_before_the_end_of_its_body(wavix):
    """A worker killed mid-POST sends headers and part of a body: a real 3CX never sees that request, nor does its
    fake (the relay's acceptance test counts what the fake kept as what 3CX received)."""
    inbox = FakePbxInbox.objects.create(label="Acme PBX")
    address = urlsplit(wavix.url)
    with socket.create_connection((address.hostname, address.port)) as conn:
        conn.sendall(
            f"POST /sandbox/3cx/{inbox.token}/ HTTP/1.1\r\nHost: {address.netloc}\r\n"
            "Content-Type: application/json\r\nX-Wavix-Message-Id: m-1\r\nContent-Length: 100\r\n\r\n".encode()
            + b'{"message_id":'
        )
    complete = b'{"message_id": "m-2"}'
    answer = requests.post(
        f"{wavix.url}/sandbox/3cx/{inbox.token}/", data=complete, headers={"X-Wavix-Message-Id": "m-2"}, timeout=5
    )
    assert answer.status_code == 200
    time.sleep(0.2)  # the truncated request's thread has read to the end of its stream
    assert [bytes(r.body) for r in FakePbxRequest.objects.filter(inbox=inbox)] == [complete]
