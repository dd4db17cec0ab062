"""Acceptance: sending through real Celery workers (and beat) to the Wavix sandbox over HTTP.

A worker killed between Wavix's acceptance and the database update causes no second send; 30 s of 429s fail
nothing; a 1,000-recipient bulk send of one tenant does not hold up another tenant's single message.
"""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.models import Message, PhoneNumber, SenderID, SenderIDCountry
from messaging.services import outbound
from sandbox import api as sandbox_api
from sandbox.models import SandboxAccount, SandboxMessage
from tests import factories as f
from tests.conftest import live_db
from tests.processes import Celery, purge_queues, wait_for

pytestmark = [pytest.mark.worker, live_db]


def went_out(**filters):
    """Messages Wavix accepted: their status may already have moved on with the sandbox's delivery reports."""
    return Message.objects.filter(**filters).exclude(wavix_message_id="")


def numeric_sender(tenant, account, number: str) -> SenderID:
    PhoneNumber.objects.create(account=account, tenant=tenant, number=number, sms_enabled=True, wavix_id=number[-4:])
    sender = SenderID.objects.create(tenant=tenant, account=account, type="numeric", value=number)
    SenderIDCountry.objects.create(tenant=tenant, sender=sender, country="US", status="allowlisted")
    return sender


@pytest.fixture
def celery(wavix):
    purge_queues()
    processes = Celery()
    processes.env = {
        "PUBLIC_BASE_URL": wavix.url,
        "WAVIX_API_URL": f"{wavix.url}/sandbox/wavix",
        "OUTBOUND_UNKNOWN_AFTER_SECONDS": "5",
        "WAVIX_READ_TIMEOUT": "30",
    }
    processes.worker(concurrency=2, **processes.env)
    processes.beat(**processes.env)
    yield processes
    processes.stop_all()


@pytest.fixture
def acme(wavix, tenant, sandbox_account):
    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(rate_limit_per_second=1000)
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant, api_key=sandbox_account.api_key)
    for n in range(4):
        f.SandboxNumberFactory(account=sandbox_account, number=f"1415555010{n}")
    return account, numeric_sender(tenant, account, "+14155550100")


def test_a_worker_killed_between_wavixs_acceptance_and_the_database_update_sends_nothing_twice(
    celery, acme, tenant, monkeypatch
):
    account, sender = acme
    monkeypatch.setattr(sandbox_api, "SLOW_SECONDS", 8)  # Wavix stores the message, then answers 8 s later
    message = outbound.message_send(tenant=tenant, sender=sender, to="+14155550999", text="Your code is 4711")
    wait_for(lambda: SandboxMessage.objects.filter(tag=str(message.pk)).exists(), 60, "the send to reach Wavix")
    celery.started[0].kill()  # SIGKILL while Wavix holds the answer: the worker never records it
    assert Message.objects.get(pk=message.pk).status == "sending"
    celery.worker(concurrency=2, **celery.env)
    wait_for(lambda: went_out(pk=message.pk).exists(), 120, "the sweeper to settle it by tag")
    message.refresh_from_db()
    at_wavix = SandboxMessage.objects.filter(tag=str(message.pk))
    assert at_wavix.count() == 1  # sent once
    assert message.wavix_message_id == str(at_wavix.get().uid)


def test_thirty_seconds_of_429_fail_nothing_and_every_message_goes_out(celery, acme, tenant, sandbox_account):
    account, sender = acme
    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(throttled_until=timezone.now() + timedelta(seconds=30))
    started = time.monotonic()
    messages = [
        outbound.message_send(tenant=tenant, sender=sender, to=f"+1415555{1000 + n:04d}", text=f"Update {n}")
        for n in range(20)
    ]
    ids = [m.pk for m in messages]
    wait_for(lambda: went_out(pk__in=ids).count() == 20, 180, "all 20 to go out")
    assert time.monotonic() - started >= 29  # nothing got through while Wavix answered 429
    assert not Message.objects.filter(pk__in=ids, status="failed").exists()
    for pk in ids:
        assert SandboxMessage.objects.filter(tag=str(pk)).count() == 1


def test_a_bulk_send_of_one_tenant_does_not_hold_up_another_tenants_single_message(
    wavix, celery, reseller, sandbox_account
):
    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(rate_limit_per_second=1000)
    shared = f.WavixAccountFactory(reseller=reseller, api_key=sandbox_account.api_key, send_rate_per_second=20)
    bulk_tenant, single_tenant = f.TenantFactory(reseller=reseller), f.TenantFactory(reseller=reseller)
    for number in ("14155550100", "14155550200"):
        f.SandboxNumberFactory(account=sandbox_account, number=number)
    bulk_sender = numeric_sender(bulk_tenant, shared, "+14155550100")
    single_sender = numeric_sender(single_tenant, shared, "+14155550200")

    recipients = [f"+1415556{n:04d}" for n in range(1000)]
    results = outbound.message_send_bulk(tenant=bulk_tenant, sender=bulk_sender, recipients=recipients, text="Sale!")
    assert sum("id" in r for r in results) == 1000
    wait_for(lambda: went_out(tenant=bulk_tenant).count() >= 40, 60, "the bulk send to run")

    single = outbound.message_send(tenant=single_tenant, sender=single_sender, to="+14155559876", text="Test message")
    wait_for(lambda: went_out(pk=single.pk).exists(), 30, "the single message")
    single.refresh_from_db()
    waited = (single.sent_at - single.created_at).total_seconds()
    still_queued = Message.objects.filter(tenant=bulk_tenant, status="queued").count()
    print(f"\nsingle message waited {waited:.2f} s while {still_queued} bulk messages were still queued")
    assert waited < 3
    assert still_queued > 500  # it really went ahead of the batch
