"""Outbound messages: every validation rule (its exact words, nothing queued), then sending through the sandbox
over HTTP — accepted, refused, retried, slowed down by 429, expired, and settled by tag when the outcome was lost."""

import threading
import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.utils import timezone

from messaging.models import Message, OptOut, PhoneNumber, SenderID, SenderIDCountry
from messaging.services import inbound, outbound, sending
from messaging.services.outbound import text_size
from messaging.services.sending import _next_batch, _record
from messaging.wavix import WavixSent, explain
from sandbox.models import SandboxAccount, SandboxMessage, SandboxSenderID
from tests import factories as f
from tests.conftest import live_db

pytestmark = live_db


@pytest.fixture
def acme(wavix, tenant, sandbox_account):
    """A tenant with its own Wavix account (known to the sandbox), a numeric and an alphanumeric sender."""
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant, api_key=sandbox_account.api_key)
    f.SandboxNumberFactory(account=sandbox_account, number="14155550100")
    PhoneNumber.objects.create(account=account, tenant=tenant, number="+14155550100", sms_enabled=True, wavix_id="1")
    numeric = SenderID.objects.create(tenant=tenant, account=account, type="numeric", value="+14155550100")
    alpha = SenderID.objects.create(tenant=tenant, account=account, type="alphanumeric", value="AcmeDental")
    for sender, country, status, note in [
        (numeric, "US", "allowlisted", ""),
        (numeric, "CA", "allowlisted", ""),
        (numeric, "GB", "allowlisted", ""),
        (alpha, "GB", "allowlisted", ""),
        (alpha, "IN", "in_review", "Waiting for the DLT entity ID."),
        (alpha, "DE", "rejected", "The trade licence does not show the brand."),
    ]:
        SenderIDCountry.objects.create(tenant=tenant, sender=sender, country=country, status=status, note=note)
    SandboxSenderID.objects.create(
        account=sandbox_account, sender_id="AcmeDental", type="alphanumeric", countries=["GB"], allowlisted_in=["GB"]
    )
    return account, numeric, alpha


def refused(tenant, sender, to, text="Hello", media=()):
    with pytest.raises(ValidationError) as error:
        outbound.message_send(tenant=tenant, sender=sender, to=to, text=text, media=media)
    assert not Message.objects.exists()  # nothing queued
    return error.value.message_dict


# ---------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------


def test_a_destination_must_be_a_phone_number(acme, tenant):
    _, numeric, _ = acme
    assert refused(tenant, numeric, "4155550123")["to"] == [
        "'4155550123' is not in E.164 format: start with + and the country code, for example +14155550123."
    ]


def test_a_national_number_is_read_with_the_tenants_default_country(acme, tenant):
    _, numeric, _ = acme
    tenant.default_country = "US"
    tenant.save()
    message = outbound.message_send(tenant=tenant, sender=numeric, to="(415) 555-0123", text="Hi")
    assert message.to_number == "+14155550123"


def test_a_sender_not_registered_for_the_country_is_refused(acme, tenant):
    _, numeric, _ = acme
    assert refused(tenant, numeric, "+61412345678")["sender"] == [
        "+14155550100 is not registered for Australia (AU); add the country to it first."
    ]


def test_a_registration_not_yet_allowlisted_names_its_status_and_note(acme, tenant):
    _, _, alpha = acme
    assert refused(tenant, alpha, "+919876543210")["sender"] == [
        "AcmeDental is not allow-listed for India (IN): its registration is in review. "
        "Latest note: Waiting for the DLT entity ID."
    ]
    assert refused(tenant, alpha, "+4915112345678")["sender"] == [
        "AcmeDental is not allow-listed for Germany (DE): its registration is rejected. "
        "Latest note: The trade licence does not show the brand."
    ]


def test_an_alphanumeric_sender_to_a_country_that_refuses_it(acme, tenant):
    _, _, alpha = acme
    assert refused(tenant, alpha, "+14155550123")["sender"] == [
        "Alphanumeric sender IDs are not supported in United States (US)."
    ]


@pytest.mark.parametrize(
    "text,encoding,units,segments",
    [
        ("a" * 160, "gsm7", 160, 1),
        ("a" * 161, "gsm7", 161, 2),
        ("a" * 306, "gsm7", 306, 2),
        ("a" * 307, "gsm7", 307, 3),
        ("€" * 80, "gsm7", 160, 1),  # the extension table: two septets each
        ("€" * 81, "gsm7", 162, 2),
        ("Grüße, Ça va? ¿Qué tal?", "gsm7", 23, 1),
        ("ça va", "ucs2", 5, 1),  # lowercase ç is not in GSM-7 (only Ç is)
        ("ж" * 70, "ucs2", 70, 1),
        ("ж" * 71, "ucs2", 71, 2),
        ("ж" * 134, "ucs2", 134, 2),
        ("ж" * 135, "ucs2", 135, 3),
        ("🙂" * 35, "ucs2", 70, 1),  # outside the BMP: two units each
        ("Hi 🙂", "ucs2", 5, 1),
    ],
)
def test_encoding_and_segments(text, encoding, units, segments):
    assert text_size(text) == (encoding, units, segments)


@pytest.mark.parametrize(
    "text,message",
    [
        ("a" * 1631, "The text is 1631 GSM-7 characters; Wavix takes at most 1630."),
        ("€" * 816, "The text is 1632 GSM-7 characters; Wavix takes at most 1630."),
        ("ж" * 671, "The text is 671 UCS-2 characters; Wavix takes at most 670."),
        ("   ", "Write the message (or attach media)."),
    ],
)
def test_text_limits(acme, tenant, text, message):
    _, numeric, _ = acme
    assert refused(tenant, numeric, "+14155550123", text=text)["text"] == [message]


def test_the_longest_texts_wavix_takes_are_accepted(acme, tenant):
    _, numeric, _ = acme
    outbound.message_send(tenant=tenant, sender=numeric, to="+14155550123", text="a" * 1630)
    outbound.message_send(tenant=tenant, sender=numeric, to="+14155550124", text="ж" * 670)
    assert list(Message.objects.order_by("id").values_list("segments", flat=True)) == [11, 10]


@pytest.mark.parametrize(
    "sender_kind,to,media,message",
    [
        (
            "alpha",
            "+447400123456",
            ["https://cdn.example.com/a.jpg"],
            "MMS goes only from a numeric sender ID (a phone number).",
        ),
        (
            "numeric",
            "+447400123456",
            ["https://cdn.example.com/a.jpg"],
            "MMS is possible only to the US and Canada, not to United Kingdom (GB).",
        ),
        (
            "numeric",
            "+14155550123",
            [f"https://cdn.example.com/{n}.jpg" for n in range(6)],
            "6 attachments; at most 5.",
        ),
        (
            "numeric",
            "+14155550123",
            ["http://cdn.example.com/a.jpg"],
            "http://cdn.example.com/a.jpg is not an https:// URL.",
        ),
        (
            "numeric",
            "+14155550123",
            ["https://cdn.example.com/a.exe"],
            "https://cdn.example.com/a.exe: .exe files cannot be sent; "
            "use 3gpp, aac, amr, bmp, gif, jpeg, jpg, mid, midi, mp3, png, vcf, wav.",
        ),
    ],
)
def test_mms_rules(acme, tenant, sender_kind, to, media, message):
    _, numeric, alpha = acme
    sender = alpha if sender_kind == "alpha" else numeric
    assert refused(tenant, sender, to, media=media)["media"] == [message]


def test_an_opted_out_recipient_is_refused(acme, tenant):
    _, numeric, _ = acme
    OptOut.objects.create(tenant=tenant, number="+14155550123", keyword="STOP")
    message = refused(tenant, numeric, "+14155550123")["to"][0]
    assert message.startswith("+14155550123 opted out (STOP, ") and message.endswith(
        "they must text START before they can be messaged again."
    )


def test_more_than_twenty_messages_to_one_destination_in_a_day_are_refused(acme, tenant):
    _, numeric, _ = acme
    for _ in range(20):
        outbound.message_send(tenant=tenant, sender=numeric, to="+14155550123", text="Reminder")
    with pytest.raises(ValidationError) as error:
        outbound.message_send(tenant=tenant, sender=numeric, to="+14155550123", text="One too many")
    assert error.value.message_dict["to"] == [
        "+14155550123 already has 20 messages in the last 24 hours (Wavix's limit)."
    ]
    assert Message.objects.count() == 20


SUSPENDED = "is suspended: nothing is sent for it. Resume it on the tenant's page first."


def test_a_suspended_tenant_cannot_queue_a_message_or_a_bulk_send(acme, tenant):
    _, numeric, _ = acme
    tenant.status = "suspended"
    tenant.save()
    assert refused(tenant, numeric, "+14155550123")["tenant"] == [f"Tenant A {SUSPENDED}"]
    with pytest.raises(ValidationError) as error:
        outbound.message_send_bulk(tenant=tenant, sender=numeric, recipients=["+14155550123"] * 3, text="Sale")
    assert error.value.message_dict == {"tenant": [f"Tenant A {SUSPENDED}"]}  # one refusal, not one per recipient
    assert not Message.objects.exists()


# ---------------------------------------------------------------------------------------------------------------
# Sending through the sandbox
# ---------------------------------------------------------------------------------------------------------------


def send_one(tenant, sender, to="+14155550123", text="Your table is ready"):
    message = outbound.message_send(tenant=tenant, sender=sender, to=to, text=text)
    sending.outbound_drain(message.account_id)
    message.refresh_from_db()
    return message


def test_a_message_is_sent_once_with_our_id_as_tag_and_the_report_url(acme, tenant):
    account, numeric, _ = acme
    message = send_one(tenant, numeric)
    at_wavix = SandboxMessage.objects.get()
    assert (at_wavix.tag, at_wavix.callback_url, at_wavix.to_number) == (
        str(message.pk),
        account.dlr_webhook_url,
        "14155550123",
    )
    assert (message.status, message.wavix_message_id, message.segments) == ("accepted", str(at_wavix.uid), 1)
    assert message.sent_at is not None and str(message.charge) == "0.00750"


@pytest.mark.parametrize(("charge", "segments"), [("NaN", 99999), ("1e30", 0), ("Infinity", True)])
def test_a_garbled_charge_or_segment_count_in_wavixs_answer_is_left_out_not_a_lost_send(acme, tenant, charge, segments):
    _, numeric, _ = acme
    message = outbound.message_send(tenant=tenant, sender=numeric, to="+14155550123", text="Your table is ready")
    (claimed,) = Message.claim([message.pk])
    _record(claimed, WavixSent(wavix_id="6e1b0a52-wavix", status="accepted", segments=segments, charge=charge))
    message.refresh_from_db()
    assert (message.status, message.wavix_message_id) == ("accepted", "6e1b0a52-wavix")  # Wavix has it: recorded
    assert (message.charge, message.segments) == (None, 1)  # its own count kept, no charge rather than a wrong one


def test_delivery_reports_close_the_loop(acme, tenant):
    from sandbox.tasks import sandbox_delivery_report

    _, numeric, _ = acme
    message = send_one(tenant, numeric)
    for status in ("sent", "delivered"):
        sandbox_delivery_report(SandboxMessage.objects.get().pk, status)  # POSTs to the portal's DLR URL
    inbound.events_process()
    message.refresh_from_db()
    assert message.status == "delivered"


def test_a_refusal_by_wavix_fails_the_message_with_its_reason_explained(acme, tenant, sandbox_account):
    _, _, alpha = acme
    SandboxSenderID.objects.filter(account=sandbox_account).update(allowlisted_in=[])  # Wavix disagrees with us
    message = send_one(tenant, alpha, to="+447400123456")
    assert (message.status, message.error_message) == ("failed", "Sender ID is not provisioned for GB")
    assert explain(message.error_message).startswith("The sender ID is not allow-listed for this country at Wavix.")


def test_an_outage_requeues_with_backoff_and_the_message_goes_when_wavix_is_back(acme, tenant, sandbox_account):
    _, numeric, _ = acme
    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(failing_until=timezone.now() + timedelta(minutes=5))
    message = send_one(tenant, numeric)
    assert (message.status, message.attempts) == ("queued", 1)
    assert message.next_attempt_at > timezone.now() + timedelta(seconds=5)
    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(failing_until=None)
    Message.objects.update(next_attempt_at=timezone.now())
    sending.outbound_drain(message.account_id)
    message.refresh_from_db()
    assert message.status == "accepted" and SandboxMessage.objects.count() == 1


def test_a_429_slows_the_account_down_and_fails_nothing(acme, tenant, sandbox_account):
    from messaging import ratelimit

    _, numeric, _ = acme
    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(throttled_until=timezone.now() + timedelta(minutes=5))
    message = send_one(tenant, numeric)
    assert (message.status, message.attempts) == ("queued", 0)  # not counted as a failed attempt
    assert ratelimit.effective_rate(message.account_id, 8) == 2  # a quarter of the rate while Wavix pushes back


def test_the_token_bucket_allows_a_seconds_burst_then_the_rate_and_a_quarter_of_it_after_a_429(tenant):
    from messaging import ratelimit

    fresh, slowed = 10_000_000 + tenant.pk, 20_000_000 + tenant.pk  # account ids no other test uses
    assert [ratelimit.take(fresh, 4) for _ in range(4)] == [0, 0, 0, 0]  # a second's worth at once
    assert 0 < ratelimit.take(fresh, 4) <= 0.25  # then one every 1/4 s
    ratelimit.slow_down(slowed)
    assert ratelimit.take(slowed, 4) == 0
    assert 0.9 < ratelimit.take(slowed, 4) <= 1.0  # at a quarter of the rate: one a second


def test_a_lost_answer_is_settled_by_tag_and_never_sent_twice(acme, tenant, settings, monkeypatch):
    from messaging import wavix as wavix_module
    from sandbox import api as sandbox_api

    _, numeric, _ = acme
    monkeypatch.setattr(sandbox_api, "SLOW_SECONDS", 3)
    monkeypatch.setattr(wavix_module, "_http", None)
    settings.WAVIX_READ_TIMEOUT = 1
    message = send_one(tenant, numeric, to="+14155550999")  # accepted by Wavix, but the answer comes too late
    assert message.status == "unknown"
    monkeypatch.setattr(wavix_module, "_http", None)
    settings.WAVIX_READ_TIMEOUT = 15
    assert sending.outbound_reconcile(message.pk) == "accepted"
    message.refresh_from_db()
    assert message.wavix_message_id == str(SandboxMessage.objects.get().uid)
    sending.outbound_drain(message.account_id)  # nothing left to send
    assert SandboxMessage.objects.filter(tag=str(message.pk)).count() == 1


def test_a_send_that_never_reached_wavix_is_queued_again(acme, tenant):
    _, numeric, _ = acme
    message = outbound.message_send(tenant=tenant, sender=numeric, to="+14155550123", text="Hi")
    Message.objects.filter(pk=message.pk).update(status="unknown")
    assert sending.outbound_reconcile(message.pk) == "queued"
    sending.outbound_drain(message.account_id)
    assert SandboxMessage.objects.filter(tag=str(message.pk)).count() == 1


def test_a_message_past_its_validity_expires_instead_of_going_late(acme, tenant):
    _, numeric, _ = acme
    message = outbound.message_send(tenant=tenant, sender=numeric, to="+14155550123", text="Hi")
    Message.objects.filter(pk=message.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    sending.outbound_drain(message.account_id)
    message.refresh_from_db()
    assert message.status == "expired" and not SandboxMessage.objects.exists()


def test_a_message_is_claimed_once(acme, tenant):
    _, numeric, _ = acme
    message = outbound.message_send(tenant=tenant, sender=numeric, to="+14155550123", text="Hi")
    assert [claimed.pk for claimed in Message.claim([message.pk])] == [message.pk]
    assert Message.claim([message.pk]) == []
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sending", 1)


def test_a_send_whose_worker_died_is_settled_by_the_sweeper(acme, tenant, settings):
    _, numeric, _ = acme
    message = outbound.message_send(tenant=tenant, sender=numeric, to="+14155550123", text="Hi")
    Message.objects.filter(pk=message.pk).update(
        status="sending", send_started_at=timezone.now() - timedelta(minutes=3)
    )
    sending.outbound_sweep()
    message.refresh_from_db()
    assert message.status == "unknown" and "checking with Wavix" in message.error_message


def test_single_messages_go_first_and_tenants_take_turns(wavix, reseller, sandbox_account):
    shared = f.WavixAccountFactory(reseller=reseller, api_key=sandbox_account.api_key)
    tenants = [f.TenantFactory(reseller=reseller) for _ in range(2)]
    for n, tenant in enumerate(tenants):
        for i in range(3):
            Message.objects.create(
                tenant=tenant,
                account=shared,
                direction="outbound",
                from_number="x",
                to_number=f"+1415555{n}{i:03d}",
                status="queued",
                priority=False,
            )
    single = Message.objects.create(
        tenant=tenants[1],
        account=shared,
        direction="outbound",
        from_number="x",
        to_number="+14155559999",
        status="queued",
        priority=True,
    )
    order = [Message.objects.get(pk=pk) for pk in _next_batch(shared.pk, {}, size=7)]
    assert (order[0].pk, order[0].priority) == (single.pk, True)  # the single message first
    bulk_tenants = [message.tenant_id for message in order[1:]]
    assert all(a != b for a, b in zip(bulk_tenants, bulk_tenants[1:], strict=False))  # then turns
    for tenant in tenants:  # each tenant's own messages oldest first
        own = [message.pk for message in order[1:] if message.tenant_id == tenant.pk]
        assert own == sorted(own) and len(own) == 3


def test_single_messages_take_turns_too_so_a_burst_holds_nobody_back(wavix, reseller, sandbox_account):
    """A 3CX burst is hundreds of single messages; another tenant's one text goes in the first batch all the same."""
    shared = f.WavixAccountFactory(reseller=reseller, api_key=sandbox_account.api_key)
    busy, quiet = f.TenantFactory(reseller=reseller), f.TenantFactory(reseller=reseller)
    for i in range(50):
        Message.objects.create(
            tenant=busy, account=shared, direction="outbound", from_number="x", to_number=f"+1415555{i:04d}",
            status="queued", priority=True,
        )  # fmt: skip
    late = Message.objects.create(
        tenant=quiet, account=shared, direction="outbound", from_number="x", to_number="+14155559999",
        status="queued", priority=True,
    )  # fmt: skip
    batch = _next_batch(shared.pk, {}, size=4)
    assert late.pk in batch[:2]
    busy_own = [pk for pk in batch if pk != late.pk]
    assert busy_own == sorted(busy_own) and len(busy_own) == 3  # the busy tenant's own still oldest first


def test_the_tenant_served_longest_ago_goes_first_in_the_next_batch(wavix, reseller, sandbox_account):
    shared = f.WavixAccountFactory(reseller=reseller, api_key=sandbox_account.api_key)
    tenants = [f.TenantFactory(reseller=reseller) for _ in range(3)]
    for n, tenant in enumerate(tenants):
        Message.objects.create(
            tenant=tenant, account=shared, direction="outbound", from_number="x", to_number=f"+1415555{n}000",
            status="queued", priority=False,
        )  # fmt: skip
    served = {tenants[0].pk: 30.0, tenants[1].pk: 10.0, tenants[2].pk: 20.0}
    batch = _next_batch(shared.pk, served, size=2)
    assert [Message.objects.get(pk=pk).tenant_id for pk in batch] == [tenants[1].pk, tenants[2].pk]


def test_a_drain_keeps_several_calls_to_wavix_in_flight(acme, tenant, settings, monkeypatch):
    """Sent one at a time, a drain could never beat 1 / round trip; the sandbox answers these after 3 s."""
    from sandbox import api as sandbox_api

    _, numeric, _ = acme
    monkeypatch.setattr(sandbox_api, "SLOW_SECONDS", 3)
    settings.OUTBOUND_SENDS_IN_FLIGHT = 4
    messages = [
        outbound.message_send(tenant=tenant, sender=numeric, to=f"+141555{5 + n}0999", text="Hi") for n in range(4)
    ]
    assert sending.outbound_drain(numeric.account_id) == 4
    arrived = sorted(SandboxMessage.objects.values_list("submitted_at", flat=True))
    assert len(arrived) == 4 and arrived[-1] - arrived[0] < timedelta(seconds=3)  # all four before any answer
    for message in messages:
        message.refresh_from_db()
        assert message.status == "accepted" and SandboxMessage.objects.filter(tag=str(message.pk)).count() == 1


def test_what_a_tenant_queued_before_its_suspension_waits_and_goes_once_it_is_resumed(acme, tenant):
    _, numeric, _ = acme
    message = outbound.message_send(tenant=tenant, sender=numeric, to="+14155550123", text="Queued just before")
    tenant.status = "suspended"
    tenant.save()
    assert sending.outbound_drain(numeric.account_id) == 0
    message.refresh_from_db()
    assert message.status == "queued" and not SandboxMessage.objects.exists()
    tenant.status = "active"
    tenant.save()
    assert sending.outbound_drain(numeric.account_id) == 1
    message.refresh_from_db()
    assert message.status == "accepted" and SandboxMessage.objects.count() == 1


def test_a_drain_longer_than_its_lease_renews_it_so_no_second_drain_starts_meanwhile(acme, tenant, monkeypatch):
    """The draining lock is a short lease (a worker killed mid-drain blocks its account for that long only),
    renewed while the drain runs: a drain outliving the first lease still holds the account."""
    account, numeric, _ = acme
    monkeypatch.setattr(sending, "DRAIN_LEASE_SECONDS", 2)
    monkeypatch.setattr(sending, "DRAIN_RENEW_EVERY_SECONDS", 0.5)
    account.send_rate_per_second = 2
    account.save()
    messages = [
        outbound.message_send(tenant=tenant, sender=numeric, to=f"+1415555{n:04d}", text="Hi") for n in range(8)
    ]
    lock = sending.DRAINING_LOCK.format(account.pk)
    seen: dict[str, object] = {}

    def while_it_drains() -> None:
        time.sleep(3)  # past the first lease: only a renewal keeps the lock
        seen["held"] = cache.get(lock) is not None
        seen["second drain sent"] = sending.outbound_drain(account.pk)

    checker = threading.Thread(target=while_it_drains)
    checker.start()
    started = time.monotonic()
    sent = sending.outbound_drain(account.pk)
    checker.join()
    assert time.monotonic() - started > 3  # 8 at 2 a second: the drain outlived the lease
    assert seen == {"held": True, "second drain sent": 0}
    assert sent == 8 and cache.get(lock) is None  # released on leaving
    for message in messages:
        assert SandboxMessage.objects.filter(tag=str(message.pk)).count() == 1
