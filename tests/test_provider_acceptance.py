"""Acceptance: 3CX's own texts through the provider endpoint, real Celery workers (and beat), the Wavix sandbox over
HTTP: 500 texts from two trunks of two tenants sharing one account, a worker SIGKILLed mid-run and 30 s of 429s;
every text reaches Wavix exactly once with its trunk's sender, and the quiet tenant's one text is not held behind
the busy tenant's burst.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from messaging.models import Message, PhoneNumber, SenderID, SenderIDCountry, Trunk
from messaging.services import provider
from sandbox.models import SandboxAccount, SandboxMessage
from tests import factories as f
from tests.conftest import live_db
from tests.processes import Celery, purge_queues, wait_for

pytestmark = [pytest.mark.worker, live_db]

BURST = 499  # from the busy tenant's 3CX; with the quiet tenant's one text, 500


@pytest.fixture
def celery(wavix):
    purge_queues()
    processes = Celery()
    processes.env = {
        "PUBLIC_BASE_URL": wavix.url,
        "WAVIX_API_URL": f"{wavix.url}/sandbox/wavix",
        "OUTBOUND_UNKNOWN_AFTER_SECONDS": "5",
        "WAVIX_MIRROR_SECONDS": "3",
    }
    processes.worker(concurrency=2, **processes.env)
    processes.beat(**processes.env)
    yield processes
    processes.stop_all()


def generic_trunk(tenant, account, sandbox_account, digits: str) -> tuple[Trunk, str]:
    """A tenant's Generic-template trunk with its own number (Main Trunk No., allow-listed for the US) and a key."""
    f.SandboxNumberFactory(account=sandbox_account, number=digits)
    trunk = Trunk.objects.create(
        tenant=tenant, name=f"PBX {digits}", pbx_fqdn="pbx.3cx.example", sms_template=Trunk.SmsTemplate.GENERIC
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
    return trunk, provider.provider_key_issue(actor=None, trunk=trunk)


def test_500_texts_from_two_tenants_3cx_reach_wavix_once_each_through_a_kill_and_429s(
    wavix, celery, reseller, sandbox_account
):
    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(rate_limit_per_second=1000)
    # 10 a second: the burst takes ~50 s to drain, longer than its 499 POSTs take even on a slow machine (at 20 a
    # second the burst had drained before the quiet text came, on 2026-12-06's slower machine, and proved nothing).
    shared = f.WavixAccountFactory(reseller=reseller, api_key=sandbox_account.api_key, send_rate_per_second=10)
    busy, quiet = f.TenantFactory(reseller=reseller), f.TenantFactory(reseller=reseller)
    busy_trunk, busy_key = generic_trunk(busy, shared, sandbox_account, "14155550100")
    quiet_trunk, quiet_key = generic_trunk(quiet, shared, sandbox_account, "14155550200")

    def send(trunk: Trunk, key: str, n: int) -> str:
        body = {"from": trunk.main_sender.value, "to": f"+1415556{n:04d}", "text": f"Reminder {n}"}
        answer = requests.post(trunk.provider_url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]["id"]

    with ThreadPoolExecutor(4) as pool:  # 3CX's users typing at once
        busy_ids = list(pool.map(lambda n: send(busy_trunk, busy_key, n), range(BURST)))
    assert len(set(busy_ids)) == BURST

    # The quiet tenant's one text, while the busy tenant's burst still waits.
    quiet_id = send(quiet_trunk, quiet_key, 9000)
    wait_for(lambda: Message.objects.filter(pk=quiet_id).exclude(wavix_message_id="").exists(), 30, "the quiet text")
    quiet_text = Message.objects.get(pk=quiet_id)
    waited = (quiet_text.sent_at - quiet_text.created_at).total_seconds()
    still_queued = Message.objects.filter(tenant=busy, status="queued").count()
    print(f"\nthe quiet tenant's text waited {waited:.2f} s with {still_queued} of the burst still queued")
    assert waited < 3 and still_queued > 100

    # A worker killed mid-run, then 30 s in which Wavix answers 429 to everything.
    wait_for(lambda: SandboxMessage.objects.count() >= 150, 60, "a third of the burst to reach Wavix")
    celery.started[0].kill()
    celery.worker(concurrency=2, **celery.env)
    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(throttled_until=timezone.now() + timedelta(seconds=30))
    started = time.monotonic()

    ids = [int(pk) for pk in [*busy_ids, quiet_id]]
    wait_for(lambda: not Message.objects.filter(pk__in=ids, wavix_message_id="").exists(), 240, "every text to go out")
    print(f"all out {time.monotonic() - started:.0f} s after the kill and the 429s began")
    assert not Message.objects.filter(pk__in=ids, status="failed").exists()
    at_wavix = dict(SandboxMessage.objects.values_list("tag", "from_number"))
    assert SandboxMessage.objects.count() == len(ids) == 500  # once each: nothing lost, nothing twice
    for message in Message.objects.filter(pk__in=ids).select_related("trunk"):
        assert message.origin == Message.Origin.THREECX
        assert at_wavix[str(message.pk)] == message.trunk.main_sender.value.lstrip("+")  # its own trunk's number


def test_direct_sends_of_a_wavix_template_3cx_appear_once_as_mirror_with_their_delivery_reports(
    wavix, celery, tenant, sandbox_account
):
    """3CX left on the Wavix template sends straight to Wavix: beat's mirror (every WAVIX_MIRROR_SECONDS, 3 here)
    brings each text into the log once, and the delivery reports that came before it attach to it."""
    from sandbox.models import FakePbxInbox

    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(rate_limit_per_second=1000)
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant, api_key=sandbox_account.api_key)
    # The account's default endpoints are the portal's, as the portal sets them for a tenant's own account.
    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(
        sms_relay_url=account.inbound_webhook_url, dlr_relay_url=account.dlr_webhook_url
    )
    trunk, _ = generic_trunk(tenant, account, sandbox_account, "14155550300")
    Trunk.objects.filter(pk=trunk.pk).update(sms_template=Trunk.SmsTemplate.WAVIX)
    inbox = FakePbxInbox.objects.create(
        label="Old style", sms_template=FakePbxInbox.Template.WAVIX, api_key=sandbox_account.api_key
    )
    for n in range(1, 4):  # (a destination ending 0000 the sandbox reports undelivered)
        answer = requests.post(
            f"{wavix.url}/sandbox/3cx/{inbox.token}/send",
            json={"from": "+14155550300", "to": f"+1415557{n:04d}", "text": f"Straight to Wavix {n}"},
            timeout=10,
        ).json()
        assert answer["shown_as_sent"], answer
    mirrored = Message.objects.filter(origin=Message.Origin.MIRROR)
    wait_for(lambda: mirrored.filter(status="delivered").count() == 3, 60, "the mirror and the reports")
    assert SandboxMessage.objects.count() == 3 and mirrored.count() == 3 == Message.objects.count()
    assert set(mirrored.values_list("trunk", "tenant")) == {(trunk.pk, tenant.pk)}
    time.sleep(7)  # two more mirror runs over the same overlap: still once each
    assert Message.objects.count() == 3
