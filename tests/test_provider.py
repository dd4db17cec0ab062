"""The portal as 3CX's SMS provider: POST /3cx/<trunk>/messages over real HTTP, provider keys, the API's contract."""

from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from messaging.models import Message, OptOut, PhoneNumber, ProviderKey, SenderID, SenderIDCountry, Trunk
from messaging.services import provider, sending
from sandbox.models import SandboxMessage
from tenants.models import AuditEvent, Tenant
from tests import factories as f
from tests.conftest import live_db, token_client

pytestmark = live_db


@pytest.fixture
def line(wavix, tenant, sandbox_account, operator):
    """A Generic-template trunk with a number (its Main Trunk No., allow-listed for the US) and a second trunk of the
    same tenant with its own number; the account is the sandbox's."""
    Tenant.objects.filter(pk=tenant.pk).update(default_country="US")
    tenant.refresh_from_db()
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant, api_key=sandbox_account.api_key)
    trunks = []
    for digits, name in (("14155550100", "Front desk"), ("14155550200", "Back office")):
        f.SandboxNumberFactory(account=sandbox_account, number=digits)
        trunk = Trunk.objects.create(
            tenant=tenant, name=name, pbx_fqdn="acme.3cx.example", sms_template=Trunk.SmsTemplate.GENERIC
        )
        number = PhoneNumber.objects.create(
            account=account, tenant=tenant, trunk=trunk, number="+" + digits, sms_enabled=True, wavix_id=digits
        )
        sender = SenderID.objects.create(
            tenant=tenant, account=account, type="numeric", value="+" + digits, phone_number=number
        )
        SenderIDCountry.objects.create(tenant=tenant, sender=sender, country="US", status="allowlisted")
        trunk.main_sender = sender
        trunk.save()
        trunks.append(trunk)
    key = provider.provider_key_issue(actor=operator, trunk=trunks[0])
    return {"trunk": trunks[0], "other_trunk": trunks[1], "key": key, "account": account}


def post(live_server, trunk, body, key=None, **kwargs):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(f"{live_server.url}/3cx/{trunk.pk}/messages", json=body, headers=headers, timeout=10, **kwargs)


TEXT = {"from": "+14155550100", "to": "+14155550123", "text": "Your appointment is at 3pm"}


def test_a_text_from_3cx_is_stored_answered_and_sent_once_through_wavix(live_server, line):
    answer = post(live_server, line["trunk"], TEXT, line["key"])
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    message = Message.objects.get()
    assert data["id"] == str(message.pk) and data["to"][0] == {"phone_number": "+14155550123", "status": "queued"}
    assert (message.origin, message.trunk, message.status, message.priority) == (
        Message.Origin.THREECX,
        line["trunk"],
        Message.Status.QUEUED,
        True,
    )
    assert not SandboxMessage.objects.exists()  # answered before any call to Wavix

    sending.outbound_drain(line["account"].pk)
    sent = SandboxMessage.objects.get()
    assert (sent.tag, sent.from_number, sent.to_number, sent.text) == (
        str(message.pk),
        "14155550100",
        "14155550123",
        "Your appointment is at 3pm",
    )
    message.refresh_from_db()
    assert message.status == Message.Status.ACCEPTED and message.wavix_message_id == str(sent.uid)
    sending.outbound_drain(line["account"].pk)
    assert SandboxMessage.objects.count() == 1


def test_what_3cx_may_vary_is_accepted(live_server, line):
    """Digits without +, `to` as a list of one, extra fields, media_urls absent or null."""
    body = {"from": "14155550100", "to": ["14155550124"], "text": "Hi", "media_urls": None, "subject": "x", "id": 7}
    answer = post(live_server, line["trunk"], body, line["key"])
    assert answer.status_code == 200, answer.text
    message = Message.objects.get()
    assert (message.from_number, message.to_number, message.media) == ("+14155550100", "+14155550124", [])
    national = post(live_server, line["trunk"], {**TEXT, "to": "4155550125"}, line["key"])
    assert national.status_code == 200 and national.json()["data"]["to"][0]["phone_number"] == "+14155550125"


def test_mms_comes_as_media_urls(live_server, line):
    media = ["https://cdn.example.com/photo.jpg"]
    answer = post(live_server, line["trunk"], {**TEXT, "media_urls": media}, line["key"])
    assert answer.status_code == 200, answer.text
    assert Message.objects.get().media == media and answer.json()["data"]["type"] == "MMS"
    refused = post(live_server, line["trunk"], {**TEXT, "media_urls": ["http://cdn.example.com/a.jpg"]}, line["key"])
    assert refused.status_code == 422 and "https" in refused.json()["errors"][0]["detail"]


@pytest.mark.parametrize(
    "key",
    [None, "pk3cx_wrong-key-that-is-long-enough", "not-even-shaped"],
    ids=["missing", "wrong", "malformed"],
)
def test_a_missing_or_wrong_key_is_401_and_nothing_is_stored(live_server, line, key):
    answer = post(live_server, line["trunk"], TEXT, key)
    assert answer.status_code == 401
    assert answer.json()["errors"][0]["title"] == "Unauthorized"
    assert not Message.objects.exists()


def test_a_key_opens_only_its_own_trunks_url(live_server, line, operator):
    other_key = provider.provider_key_issue(actor=operator, trunk=line["other_trunk"])
    assert post(live_server, line["trunk"], TEXT, other_key).status_code == 401
    assert post(live_server, line["other_trunk"], TEXT, line["key"]).status_code == 401
    assert not Message.objects.exists()


def test_wrong_keys_are_counted_per_address_then_throttled_but_the_right_key_still_sends(live_server, line, settings):
    """Behind a proxy every 3CX shares one address: a stranger's wrong keys must not stop the tenants' texts."""
    settings.PROVIDER_AUTH_FAILURE_LIMIT = 3
    from django.core.cache import cache

    cache.delete("provider:auth-failures:127.0.0.1")
    for _ in range(3):
        assert post(live_server, line["trunk"], TEXT, "pk3cx_guessing-guessing-guessing").status_code == 401
    throttled = post(live_server, line["trunk"], TEXT, "pk3cx_guessing-guessing-guessing")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == str(settings.PROVIDER_AUTH_WINDOW_SECONDS)
    assert post(live_server, line["trunk"], TEXT).status_code == 429  # no key at all: the same
    assert not Message.objects.exists()
    assert post(live_server, line["trunk"], TEXT, line["key"]).status_code == 200
    cache.delete("provider:auth-failures:127.0.0.1")
    assert post(live_server, line["trunk"], TEXT, "pk3cx_guessing-guessing-guessing").status_code == 401


def test_another_trunks_number_as_from_is_refused(live_server, line):
    answer = post(live_server, line["trunk"], {**TEXT, "from": "+14155550200"}, line["key"])
    assert answer.status_code == 403
    error = answer.json()["errors"][0]
    assert (
        error["source"] == {"pointer": "/from"} and "not a number or sender ID of trunk Front desk" in error["detail"]
    )
    assert not Message.objects.exists()


def test_refusals_name_their_reason_and_queue_nothing(live_server, line, tenant):
    OptOut.objects.create(tenant=tenant, number="+14155550199", keyword="STOP")
    cases = {
        "opted out": ({**TEXT, "to": "+14155550199"}, "opted out (STOP"),
        "unregistered country": ({**TEXT, "to": "+447400123456"}, "is not registered for United Kingdom"),
        "too long": ({**TEXT, "text": "x" * 1631}, "Wavix takes at most 1630"),
        "no words": ({**TEXT, "text": ""}, "Write the message"),
        "bad destination": ({**TEXT, "to": "+1999"}, "not a valid phone number"),
        "no to": ({"from": TEXT["from"], "text": "Hi"}, "`to` is required"),
    }
    for name, (body, reason) in cases.items():
        answer = post(live_server, line["trunk"], body, line["key"])
        assert answer.status_code == 422, name
        assert reason in answer.json()["errors"][0]["detail"], (name, answer.json())
    Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.SUSPENDED)
    suspended = post(live_server, line["trunk"], TEXT, line["key"])
    assert suspended.status_code == 422 and "is suspended" in suspended.json()["errors"][0]["detail"]
    not_json = requests.post(
        f"{live_server.url}/3cx/{line['trunk'].pk}/messages",
        data=b"from=me",
        headers={"Authorization": f"Bearer {line['key']}"},
        timeout=10,
    )
    assert not_json.status_code == 400 and not_json.json()["errors"][0]["detail"] == "Not JSON."
    assert not Message.objects.exists()
    line["trunk"].refresh_from_db()
    assert line["trunk"].provider_refusal == "400 Invalid body: Not JSON." and line["trunk"].provider_refused_at


def test_a_repeated_post_within_the_window_is_answered_with_the_first_text_and_not_sent_twice(live_server, line):
    first = post(live_server, line["trunk"], TEXT, line["key"])
    again = post(live_server, line["trunk"], {**TEXT, "to": "14155550123"}, line["key"])
    assert first.status_code == again.status_code == 200
    assert first.json()["data"]["id"] == again.json()["data"]["id"]
    assert Message.objects.count() == 1
    different = post(live_server, line["trunk"], {**TEXT, "text": "Your appointment is at 4pm"}, line["key"])
    assert different.json()["data"]["id"] != first.json()["data"]["id"]
    # Past the window the same words are a new text: a person may well send "OK" twice in a day.
    Message.objects.update(created_at=timezone.now() - provider.DUPLICATE_WINDOW - timedelta(seconds=1))
    later = post(live_server, line["trunk"], TEXT, line["key"])
    assert later.json()["data"]["id"] not in (first.json()["data"]["id"], different.json()["data"]["id"])
    assert Message.objects.count() == 3


def test_a_new_key_leaves_the_old_one_working_for_24_hours(live_server, line, operator):
    old = line["key"]
    new = provider.provider_key_issue(actor=operator, trunk=line["trunk"])
    assert post(live_server, line["trunk"], TEXT, old).status_code == 200
    assert post(live_server, line["trunk"], {**TEXT, "text": "second"}, new).status_code == 200
    retiring = ProviderKey.objects.get(trunk=line["trunk"], last4=old[-4:])
    assert timedelta(hours=23) < retiring.retire_at - timezone.now() <= timedelta(hours=24)
    ProviderKey.objects.filter(pk=retiring.pk).update(retire_at=timezone.now() - timedelta(seconds=1))
    assert post(live_server, line["trunk"], {**TEXT, "text": "third"}, old).status_code == 401
    assert post(live_server, line["trunk"], {**TEXT, "text": "third"}, new).status_code == 200
    events = AuditEvent.objects.filter(action=AuditEvent.Action.PROVIDER_KEY_ISSUED, object_id=str(line["trunk"].pk))
    assert events.count() == 2 and all(old not in str(e.changes) and new not in str(e.changes) for e in events)


# ---------------------------------------------------------------------------------------------------------------
# The API's contract
# ---------------------------------------------------------------------------------------------------------------


def test_trunks_show_provider_url_only_on_the_generic_template(operator, tenant, settings):
    trunk = f.TrunkFactory(tenant=tenant)
    client = token_client(operator)
    assert client.get(f"/api/v1/trunks/{trunk.pk}/").json()["provider_url"] is None
    changed = client.patch(f"/api/v1/trunks/{trunk.pk}/", {"sms_template": "generic"}, format="json")
    assert changed.status_code == 200, changed.json()
    assert changed.json()["provider_url"] == f"{settings.PUBLIC_BASE_URL}/3cx/{trunk.pk}/messages"


def test_provider_key_is_issued_by_reseller_managers_only(operator, viewer, other_admin, tenant):
    trunk = f.TrunkFactory(tenant=tenant, sms_template=Trunk.SmsTemplate.GENERIC)
    url = f"/api/v1/trunks/{trunk.pk}/provider-key/"
    issued = token_client(operator).post(url)
    assert issued.status_code == 201
    key = issued.json()["provider_key"]
    assert ProviderKey.trunk_for(trunk.pk, key) == trunk
    assert not ProviderKey.objects.filter(key_hash=key).exists()  # stored hashed only
    assert token_client(viewer).post(url).status_code == 403
    assert token_client(other_admin).post(url).status_code == 404
    assert ProviderKey.objects.filter(trunk=trunk).count() == 1


def test_a_provider_key_needs_the_generic_template(operator, tenant):
    trunk = f.TrunkFactory(tenant=tenant)
    refused = token_client(operator).post(f"/api/v1/trunks/{trunk.pk}/provider-key/")
    assert refused.status_code == 400 and "generic" in refused.json()["sms_template"][0]
    assert not ProviderKey.objects.exists()


def test_messages_carry_their_origin_and_filter_on_it(operator, tenant):
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    for origin in ("portal", "3cx", "mirror"):
        f.MessageFactory(tenant=tenant, account=account, origin=origin)
    client = token_client(operator)
    assert sorted(m["origin"] for m in client.get("/api/v1/messages/").json()["results"]) == ["3cx", "mirror", "portal"]
    only = client.get("/api/v1/messages/?origin=3cx").json()["results"]
    assert [m["origin"] for m in only] == ["3cx"]
    assert client.get("/api/v1/messages/?origin=fax").status_code == 400


# ---------------------------------------------------------------------------------------------------------------
# The sandbox plays 3CX's sending side
# ---------------------------------------------------------------------------------------------------------------


def test_the_fake_3cx_sends_through_the_provider_url_as_3cx_does(live_server, line):
    from sandbox.models import FakePbxInbox

    inbox = FakePbxInbox.objects.create(
        label="Front desk", provider_url=line["trunk"].provider_url, api_key=line["key"]
    )
    answer = requests.post(f"{live_server.url}/sandbox/3cx/{inbox.token}/send", json=TEXT, timeout=10).json()
    assert answer["shown_as_sent"] and answer["status"] == 200
    message = Message.objects.get()
    assert message.origin == Message.Origin.THREECX and str(message.pk) in answer["answer"]
    assert inbox.sends.get().body == TEXT  # what 3CX POSTs: from, to, text

    inbox.api_key = "pk3cx_not-the-key-at-all-not-the-key"
    inbox.save()
    refused = requests.post(f"{live_server.url}/sandbox/3cx/{inbox.token}/send", json=TEXT, timeout=10).json()
    assert not refused["shown_as_sent"] and refused["status"] == 401


def test_the_fake_3cx_on_the_wavix_template_sends_straight_to_wavix(live_server, line, sandbox_account):
    from sandbox.models import FakePbxInbox

    inbox = FakePbxInbox.objects.create(
        label="Old style", sms_template=FakePbxInbox.Template.WAVIX, api_key=sandbox_account.api_key
    )
    answer = requests.post(f"{live_server.url}/sandbox/3cx/{inbox.token}/send", json=TEXT, timeout=10).json()
    assert answer["shown_as_sent"], answer
    sent = SandboxMessage.objects.get()
    assert (sent.from_number, sent.to_number, sent.tag) == ("14155550100", "14155550123", "")
    assert not Message.objects.exists()  # the portal never saw it: only the mirror can read it back
