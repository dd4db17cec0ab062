"""The traffic mirror: texts 3CX sent straight to Wavix (the sandbox, over real HTTP) read back into the message log
once each, under the tenant and trunk whose number sent them; their delivery reports attach to them, whether they
came before the mirror read them or after."""

import logging
from datetime import timedelta

import pytest
import requests
from django.conf import settings as django_settings
from django.utils import timezone

from messaging.models import Message, PhoneNumber, SenderID, SenderIDCountry, WavixAccount, WebhookEvent
from messaging.services import inbound, mirror, outbound, sending
from messaging.wavix import WavixClient
from sandbox.models import SandboxMessage, SandboxSenderID
from sandbox.tasks import sandbox_delivery_report
from tests import factories as f
from tests.conftest import live_db
from tests.test_settings import run_manage

pytestmark = live_db

GB = "+447400123456"


@pytest.fixture
def shared(wavix, reseller, tenant, other_tenant, sandbox_account):
    """A reseller's Wavix account (the sandbox's) serving two of its tenants, plus a number in its pool; its default
    DLR endpoint is the portal's, as the portal sets it up (accounts.py), so reports of 3CX's sends come here."""
    account = f.WavixAccountFactory(reseller=reseller, tenant=None, api_key=sandbox_account.api_key)
    WavixClient.for_account(account).set_default_endpoints(
        sms_url=account.inbound_webhook_url, dlr_url=account.dlr_webhook_url
    )
    neighbour = f.TenantFactory(reseller=reseller, name="Tenant A2")
    trunk = f.TrunkFactory(tenant=tenant, name="Front desk")
    neighbours_trunk = f.TrunkFactory(tenant=neighbour, name="Neighbour's desk")
    for digits, owner, its_trunk in [
        ("14155550100", tenant, trunk),
        ("14155550101", neighbour, neighbours_trunk),
        ("14155550102", None, None),  # in the reseller's pool
    ]:
        f.SandboxNumberFactory(account=sandbox_account, number=digits)
        PhoneNumber.objects.create(
            account=account, tenant=owner, trunk=its_trunk, number=f"+{digits}", sms_enabled=True, wavix_id=digits
        )
    f.WavixAccountFactory(reseller=other_tenant.reseller, tenant=other_tenant)  # another reseller's, never read
    return account, trunk, neighbours_trunk


def direct_send(sandbox_account, sender="14155550100", to=GB, text="Running 10 minutes late", **extra):
    """What 3CX on the Wavix template does: POST /v3/messages with the account's key, no tag, no callback URL."""
    body = {"from": sender, "to": to, "message_body": {"text": text, "media": None}, **extra}
    answer = requests.post(
        f"{django_settings.WAVIX_API_URL}/v3/messages",
        json=body,
        headers={"Authorization": f"Bearer {sandbox_account.api_key}"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return SandboxMessage.objects.get(uid=answer.json()["message_id"])


def reports(at_wavix, *statuses):
    """Wavix's delivery reports for a text, POSTed over HTTP to where Wavix sends them, then routed."""
    for status in statuses:
        sandbox_delivery_report(at_wavix.pk, status)
    inbound.events_process()


def fresh(account):
    return WavixAccount.objects.get(pk=account.pk)


def test_a_text_3cx_sent_straight_to_wavix_appears_once_as_mirrored_under_the_trunk_whose_number_sent_it(
    shared, sandbox_account, tenant, other_tenant
):
    account, trunk, neighbours_trunk = shared
    at_wavix = direct_send(sandbox_account, text="ça va? See you at 3")
    theirs = direct_send(sandbox_account, sender="14155550101", text="Hello from next door")

    assert mirror.outbound_mirror(fresh(account)) == 2
    message = Message.objects.get(wavix_message_id=str(at_wavix.uid))
    assert (message.origin, message.direction, message.tenant, message.trunk, message.account) == (
        "mirror",
        "outbound",
        tenant,
        trunk,
        account,
    )
    assert (message.from_number, message.to_number, message.text, message.status) == (
        "+14155550100",
        GB,
        "ça va? See you at 3",
        "accepted",
    )
    assert (message.encoding, message.segments, str(message.charge)) == ("ucs2", 1, "0.00750")
    assert message.created_at == at_wavix.submitted_at.replace(microsecond=0)  # Wavix's submitted_at, not ours
    neighbours = Message.objects.get(wavix_message_id=str(theirs.uid))
    assert (neighbours.tenant, neighbours.trunk) == (neighbours_trunk.tenant, neighbours_trunk)
    assert not Message.objects.filter(tenant=other_tenant).exists()

    assert mirror.outbound_mirror(fresh(account)) == 0  # the second run adds nothing
    assert Message.objects.count() == 2


def test_the_watermark_moves_to_the_start_of_each_run_and_the_overlap_rereads_without_duplicates(
    shared, sandbox_account
):
    account, _, _ = shared
    first = direct_send(sandbox_account, text="First")
    before = timezone.now()
    assert mirror.outbound_mirror(fresh(account)) == 1
    watermark = fresh(account).outbound_mirrored_at
    assert before <= watermark <= timezone.now()

    # Wavix's log shows two texts late, submitted before the watermark: one within the overlap, one before it.
    late = direct_send(sandbox_account, text="Late but within the overlap")
    too_late = direct_send(sandbox_account, text="Before the overlap")
    SandboxMessage.objects.filter(pk=late.pk).update(submitted_at=watermark - timedelta(minutes=9))
    SandboxMessage.objects.filter(pk=too_late.pk).update(submitted_at=watermark - timedelta(minutes=11))
    assert mirror.outbound_mirror(fresh(account)) == 1  # the first text is listed again, and kept once
    assert sorted(Message.objects.values_list("text", flat=True)) == ["First", "Late but within the overlap"]
    assert Message.objects.filter(wavix_message_id=str(first.uid)).count() == 1
    assert fresh(account).outbound_mirrored_at > watermark


def test_the_portals_own_sends_are_not_mirrored_even_while_their_answer_is_lost(shared, sandbox_account, tenant):
    account, _, _ = shared
    sender = SenderID.objects.create(tenant=tenant, account=account, type="numeric", value="+14155550100")
    SenderIDCountry.objects.create(tenant=tenant, sender=sender, country="GB", status="allowlisted")
    sent = outbound.message_send(tenant=tenant, sender=sender, to=GB, text="Sent through the portal")
    sending.outbound_drain(account.pk)
    sent.refresh_from_db()
    assert sent.status == "accepted" and sent.origin == "portal"
    # A send whose answer was lost: at Wavix with our id as its tag, unknown here (no Wavix id yet).
    lost = outbound.message_send(tenant=tenant, sender=sender, to=GB, text="Answer lost")
    Message.objects.filter(pk=lost.pk).update(status="unknown")
    direct_send(sandbox_account, text="Answer lost", tag=str(lost.pk))

    assert mirror.outbound_mirror(fresh(account)) == 0
    assert Message.objects.count() == 2 and not Message.objects.filter(origin="mirror").exists()
    assert sending.outbound_reconcile(lost.pk) == "accepted"  # outbound_reconcile settles it, as before
    assert mirror.outbound_mirror(fresh(account)) == 0
    assert Message.objects.count() == 2


def test_a_log_longer_than_a_page_is_read_to_its_end(shared, sandbox_account, monkeypatch):
    from messaging import wavix

    account, _, _ = shared
    monkeypatch.setattr(wavix, "PAGE_SIZE", 2)
    monkeypatch.setattr(mirror, "BATCH", 2)
    for n in range(5):
        direct_send(sandbox_account, text=f"Text {n}")
    assert mirror.outbound_mirror(fresh(account)) == 5  # three pages, three batches
    assert sorted(Message.objects.values_list("text", flat=True)) == [f"Text {n}" for n in range(5)]


def test_a_report_kept_unmatched_before_the_mirror_attaches_to_the_mirrored_text(shared, sandbox_account, tenant):
    account, _, _ = shared
    at_wavix = direct_send(sandbox_account)
    assert at_wavix.callback_url == ""  # 3CX gave none: Wavix reports to the account's default DLR endpoint
    reports(at_wavix, "sent", "delivered")
    events = WebhookEvent.objects.filter(kind="dlr")
    assert sorted(events.values_list("dedup_key", "state")) == [
        (f"{at_wavix.uid}:delivered", "unmatched"),
        (f"{at_wavix.uid}:sent", "unmatched"),
    ]
    # Wavix's log a step behind its reports: it still shows the text as sent.
    SandboxMessage.objects.filter(pk=at_wavix.pk).update(status="sent", delivered_at=None)

    assert mirror.outbound_mirror(fresh(account)) == 1
    message = Message.objects.get()
    assert message.status == "sent"
    assert set(events.values_list("state", flat=True)) == {"pending"}  # back in the drain's way
    inbound.events_process()
    message.refresh_from_db()
    assert message.status == "delivered" and message.completed_at is not None
    assert sorted(events.values_list("state", "tenant", "attempts")) == [("processed", tenant.pk, 2)] * 2


def test_a_report_arriving_after_the_mirror_matches_directly(shared, sandbox_account, tenant):
    account, _, _ = shared
    at_wavix = direct_send(sandbox_account, to="+447400120000")  # a destination the sandbox leaves undelivered
    assert mirror.outbound_mirror(fresh(account)) == 1
    reports(at_wavix, "sent", "undelivered")
    message = Message.objects.get()
    assert (message.status, message.error_message) == ("undelivered", "Handset unreachable")
    events = WebhookEvent.objects.filter(kind="dlr")
    assert sorted(events.values_list("state", "tenant", "attempts")) == [("processed", tenant.pk, 1)] * 2


def test_a_text_from_a_number_of_no_tenant_is_left_out_and_counted_in_the_log(shared, sandbox_account, caplog):
    account, _, _ = shared
    direct_send(sandbox_account, sender="14155550102", text="From the pool")
    direct_send(sandbox_account, sender="14155550102", text="From the pool again")
    mine = direct_send(sandbox_account, text="From a trunk")
    with caplog.at_level(logging.WARNING, logger="messaging.services.mirror"):
        assert mirror.outbound_mirror(fresh(account)) == 1
    assert list(Message.objects.values_list("wavix_message_id", flat=True)) == [str(mine.uid)]
    assert "2 text(s) of" in caplog.text and "+14155550102 ×2" in caplog.text
    assert fresh(account).outbound_mirrored_at is not None  # it cannot be shown to anyone: not retried either
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="messaging.services.mirror"):
        assert mirror.outbound_mirror(fresh(account)) == 0
    assert "not mirrored" not in caplog.text  # listed again within the overlap, but counted once


def test_an_alphanumeric_sender_is_its_tenants_and_its_trunks_that_shows_it(shared, sandbox_account, tenant):
    account, trunk, _ = shared
    sender = SenderID.objects.create(tenant=tenant, account=account, type="alphanumeric", value="AcmeDental")
    trunk.main_sender = sender
    trunk.save()
    SandboxSenderID.objects.create(
        account=sandbox_account, sender_id="AcmeDental", type="alphanumeric", countries=["GB"], allowlisted_in=["GB"]
    )
    direct_send(sandbox_account, sender="AcmeDental", text="Your appointment is tomorrow")
    assert mirror.outbound_mirror(fresh(account)) == 1
    message = Message.objects.get()
    assert (message.from_number, message.tenant, message.trunk, message.sender) == ("AcmeDental", tenant, trunk, sender)


def test_on_a_tenants_own_account_every_text_is_that_tenants(wavix, tenant, sandbox_account):
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant, api_key=sandbox_account.api_key)
    f.SandboxNumberFactory(account=sandbox_account, number="14155550177")  # not synced into the portal yet
    direct_send(sandbox_account, sender="14155550177")
    assert mirror.outbound_mirror(fresh(account)) == 1
    message = Message.objects.get()
    assert (message.tenant, message.trunk, message.from_number) == (tenant, None, "+14155550177")


def test_beat_runs_the_mirror_for_every_account_through_the_sync_queue(shared, sandbox_account):
    from messaging.tasks import wavix_mirror_all
    from portal.celery import app

    account, _, _ = shared
    direct_send(sandbox_account)
    entry = django_settings.CELERY_BEAT_SCHEDULE["wavix-mirror-all"]
    assert (entry["task"], entry["schedule"]) == ("messaging.tasks.wavix_mirror_all", 60.0)
    route = app.amqp.router.route({}, "messaging.tasks.wavix_outbound_mirror")
    assert route["queue"].name == "sync"
    app.conf.task_always_eager = True  # the worker's part, run here
    try:
        wavix_mirror_all()
    finally:
        app.conf.task_always_eager = False
    assert Message.objects.get().origin == "mirror"


def test_the_beat_entry_honours_wavix_mirror_seconds():
    show = (
        "from django.conf import settings; entry = settings.CELERY_BEAT_SCHEDULE['wavix-mirror-all']; "
        "print(entry['schedule'], entry['options']['expires'])"
    )
    result = run_manage("shell", "-c", show, WAVIX_MIRROR_SECONDS="15")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split() == ["15.0", "14"]
    result = run_manage("shell", "-c", show, WAVIX_MIRROR_SECONDS="0")
    assert result.returncode != 0 and "WAVIX_MIRROR_SECONDS=0 must be at least 1" in result.stderr
