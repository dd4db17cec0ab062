"""The portal's Wavix client and services against the sandbox, over real HTTP (a live server).

The sandbox checks every request it receives and every response it gives against Wavix's official spec, and in
tests a response that breaks the spec fails the request: each test here is also a conformance test.
"""

import logging
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from messaging.models import PhoneNumber, SenderID, SenderIDCountry, WavixAccount
from messaging.services import accounts, senders
from messaging.wavix import WavixClient, WavixPermanentError, WavixTransientError, explain
from sandbox.models import SandboxAccount, SandboxNumber, SandboxSenderID
from tenants.models import AuditEvent
from tests import factories as f
from tests.conftest import live_db, token_client

pytestmark = live_db


@pytest.fixture
def account(sandbox_account, tenant):
    """The portal's side of sandbox_account, dedicated to tenant."""
    return f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant, api_key=sandbox_account.api_key)


# ---------------------------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------------------------


def test_a_good_key_reads_the_profile(sandbox_account):
    assert WavixClient(sandbox_account.api_key).profile() == {"id": sandbox_account.pk, "email": sandbox_account.email}


def test_a_wrong_key_is_a_permanent_error_with_wavixs_message_and_no_key_in_sight(wavix, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(WavixPermanentError) as error:
        WavixClient("sbx_wrong_key_0123456789").profile()
    assert (error.value.status, error.value.message) == (401, "Unauthorized")
    assert "sbx_wrong_key_0123456789" not in str(error.value) + caplog.text
    assert error.value.__cause__ is None and error.value.__context__ is None  # no SDK exception attached


def test_an_outage_is_transient(sandbox_account):
    sandbox_account.failing_until = timezone.now() + timedelta(minutes=5)
    sandbox_account.save()
    with pytest.raises(WavixTransientError) as error:
        WavixClient(sandbox_account.api_key).profile()
    assert error.value.status == 500


def test_the_per_second_limit_is_transient(sandbox_account):
    sandbox_account.rate_limit_per_second = 2
    sandbox_account.save()
    client = WavixClient(sandbox_account.api_key)
    with pytest.raises(WavixTransientError) as error:
        for _ in range(20):  # some second sees more than two, even straddling a boundary
            client.profile()
    assert error.value.status == 429


def test_an_unreachable_wavix_is_transient_and_said_plainly(settings):
    settings.WAVIX_API_URL = "http://127.0.0.1:1"  # nothing listens there
    with pytest.raises(WavixTransientError, match="Could not reach Wavix for the key check") as error:
        WavixClient("any-key-1234").profile()
    assert not error.value.may_have_arrived  # never connected: a retry cannot double anything


def test_numbers_come_back_as_e164_across_pages(sandbox_account):
    for n in range(130):  # two pages of 100
        f.SandboxNumberFactory(account=sandbox_account, number=f"1415555{n:04d}")
    pages = list(WavixClient(sandbox_account.api_key).number_pages())
    assert [(page, total) for page, total, _ in pages] == [(1, 2), (2, 2)]
    numbers = [n for _, _, batch in pages for n in batch]
    assert len(numbers) == 130 and numbers[0].number == "+14155550000" and numbers[0].country == "US"


# ---------------------------------------------------------------------------------------------------------------
# Keys are checked before anything is saved
# ---------------------------------------------------------------------------------------------------------------


def test_an_account_with_a_good_key_is_saved(operator, sandbox_account, reseller):
    response = token_client(operator).post(
        "/api/v1/wavix-accounts/", {"name": "Main", "api_key": sandbox_account.api_key}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert WavixAccount.objects.get().get_api_key() == sandbox_account.api_key


def test_an_accounts_sending_rate_is_set_per_account_within_bounds(operator, account):
    client = token_client(operator)
    refused = client.patch(f"/api/v1/wavix-accounts/{account.pk}/", {"send_rate_per_second": 0}, format="json")
    assert refused.status_code == 400
    assert refused.json() == {"send_rate_per_second": ["Ensure this value is greater than or equal to 1."]}
    accepted = client.patch(f"/api/v1/wavix-accounts/{account.pk}/", {"send_rate_per_second": 40}, format="json")
    assert accepted.status_code == 200, accepted.json()
    account.refresh_from_db()
    assert account.send_rate_per_second == 40


def test_a_rejected_key_is_refused_with_wavixs_reason_and_nothing_saved(operator, wavix, reseller):
    response = token_client(operator).post(
        "/api/v1/wavix-accounts/", {"name": "Main", "api_key": "sbx_not_a_real_key"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["api_key"] == ["Wavix refused this key: Unauthorized"]
    assert not WavixAccount.objects.exists() and not AuditEvent.objects.exists()


def test_an_unreachable_wavix_refuses_the_save_with_try_again(operator, sandbox_account, reseller):
    sandbox_account.failing_until = timezone.now() + timedelta(minutes=5)
    sandbox_account.save()
    response = token_client(operator).post(
        "/api/v1/wavix-accounts/", {"name": "Main", "api_key": sandbox_account.api_key}, format="json"
    )
    assert response.status_code == 400
    message = response.json()["api_key"][0]
    assert message.startswith("Could not verify the key at Wavix right now (Wavix answered 500")
    assert message.endswith("nothing was saved. Try again in a minute.")
    assert not WavixAccount.objects.exists()


# ---------------------------------------------------------------------------------------------------------------
# Numbers: sync, wiring, drift
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def sms_trunk(tenant):
    return f.TrunkFactory(tenant=tenant, sms_enabled=True)


def test_a_sync_pulls_every_number_and_wires_those_of_sms_trunks(account, sandbox_account, sms_trunk, tenant):
    wired = f.SandboxNumberFactory(account=sandbox_account, number="14155550100")
    f.SandboxNumberFactory(account=sandbox_account, number="14155550101", sms_enabled=False)
    PhoneNumber.objects.create(
        account=account, tenant=tenant, trunk=sms_trunk, number="+14155550100", wavix_id=str(wired.pk)
    )

    result = accounts.numbers_sync(account, wire=True)

    assert result == {"numbers": 2, "wired": 1, "drift": 0}
    assert set(account.numbers.values_list("number", "sms_enabled", "tenant_id")) == {
        ("+14155550100", True, tenant.pk),
        ("+14155550101", False, tenant.pk),
    }
    wired.refresh_from_db()
    assert wired.sms_relay_url == account.inbound_webhook_url
    number = account.numbers.get(number="+14155550100")
    assert number.sms_relay_url == account.inbound_webhook_url and number.relay_set_at is not None
    account.refresh_from_db()
    assert account.sync_state == "done" and account.sync_note.startswith("2 numbers · 1 pointed at the portal")
    sandbox_account.refresh_from_db()  # a tenant's own account sends everything to the portal by default
    assert (sandbox_account.sms_relay_url, sandbox_account.dlr_relay_url) == (
        account.inbound_webhook_url,
        account.dlr_webhook_url,
    )


def test_wiring_many_numbers_goes_in_bulk_updates_of_a_hundred(account, sandbox_account, sms_trunk, tenant):
    for n in range(150):
        f.SandboxNumberFactory(account=sandbox_account, number=f"1415555{n:04d}")
    accounts.numbers_sync(account, wire=False)
    account.numbers.update(trunk=sms_trunk)
    assert accounts.numbers_sync(account, wire=True)["wired"] == 150
    assert set(SandboxNumber.objects.values_list("sms_relay_url", flat=True)) == {account.inbound_webhook_url}
    assert not account.numbers.filter(relay_set_at__isnull=True).exists()


def test_drift_is_reported_not_silently_undone_and_repaired_on_request(account, sandbox_account, sms_trunk, tenant):
    at_wavix = f.SandboxNumberFactory(account=sandbox_account, number="14155550100")
    PhoneNumber.objects.create(
        account=account, tenant=tenant, trunk=sms_trunk, number="+14155550100", wavix_id=str(at_wavix.pk)
    )
    accounts.numbers_sync(account, wire=True)
    SandboxNumber.objects.filter(pk=at_wavix.pk).update(sms_relay_url="https://someone-else.example/sms")

    assert accounts.numbers_sync(account, wire=False)["drift"] == 1  # the periodic check
    number = account.numbers.get()
    assert number.relay_drift and number.sms_relay_url == "https://someone-else.example/sms"
    at_wavix.refresh_from_db()
    assert at_wavix.sms_relay_url == "https://someone-else.example/sms"  # reported, not overwritten

    assert accounts.relay_repair(account.numbers.filter(relay_drift=True)) == 1
    at_wavix.refresh_from_db()
    number.refresh_from_db()
    assert at_wavix.sms_relay_url == account.inbound_webhook_url and not number.relay_drift


def test_a_failed_sync_says_why_and_the_next_one_recovers(account, sandbox_account):
    f.SandboxNumberFactory(account=sandbox_account, number="14155550100")
    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(failing_until=timezone.now() + timedelta(minutes=5))
    with pytest.raises(WavixTransientError):
        accounts.numbers_sync(account, wire=True)
    account.refresh_from_db()
    assert account.sync_state == "failed" and "500" in account.sync_note
    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(failing_until=None)
    accounts.numbers_sync(account, wire=True)
    account.refresh_from_db()
    assert account.sync_state == "done" and account.numbers.count() == 1


def test_a_label_set_in_the_portal_survives_the_next_sync_and_an_untouched_one_follows_wavix(account, sandbox_account):
    front = f.SandboxNumberFactory(account=sandbox_account, number="14155550100", label="Front desk")
    back = f.SandboxNumberFactory(account=sandbox_account, number="14155550101", label="Back office")
    accounts.numbers_sync(account, wire=False)
    assert dict(account.numbers.values_list("number", "label")) == {
        "+14155550100": "Front desk",
        "+14155550101": "Back office",
    }
    edited = account.numbers.get(number="+14155550100")
    edited.label = "Reception (Dr Lee)"
    accounts.phone_number_save(number=edited)
    SandboxNumber.objects.filter(pk__in=[front.pk, back.pk]).update(label="Renamed at Wavix")

    accounts.numbers_sync(account, wire=False)

    assert dict(account.numbers.values_list("number", "label")) == {
        "+14155550100": "Reception (Dr Lee)",  # set here: kept
        "+14155550101": "Renamed at Wavix",  # never edited here: follows Wavix
    }


def test_a_number_gone_from_wavix_is_marked_not_deleted(account, sandbox_account, tenant):
    gone = PhoneNumber.objects.create(account=account, tenant=tenant, number="+14155550199", sms_enabled=True)
    accounts.numbers_sync(account, wire=False)
    gone.refresh_from_db()
    assert (gone.status, gone.sms_enabled) == ("not at Wavix", False)


# ---------------------------------------------------------------------------------------------------------------
# Sender IDs
# ---------------------------------------------------------------------------------------------------------------


def register(user, tenant, **payload):
    return token_client(user).post("/api/v1/sender-ids/", {"tenant": tenant.pk, **payload}, format="json")


def test_an_alphanumeric_sender_is_registered_at_wavix_country_by_country(operator, account, sandbox_account, tenant):
    response = register(operator, tenant, type="alphanumeric", value="AcmeDental", countries=["GB", "IN", "DE"])
    assert response.status_code == 201, response.json()
    at_wavix = SandboxSenderID.objects.get()
    assert (at_wavix.sender_id, at_wavix.countries, at_wavix.allowlisted_in) == (
        "AcmeDental",
        ["DE", "GB", "IN"],
        ["DE", "GB"],
    )
    sender = SenderID.objects.get()
    assert sender.wavix_id == str(at_wavix.uid)
    assert dict(sender.countries.values_list("country", "status")) == {
        "DE": "allowlisted",
        "GB": "allowlisted",
        "IN": "needs_documents",  # India needs paperwork: it waits for Wavix's provisioning team
    }

    SandboxSenderID.objects.filter(pk=at_wavix.pk).update(allowlisted_in=["DE", "GB", "IN"])  # Wavix staff act
    assert senders.sender_ids_sync(account) == 1
    india = sender.countries.get(country="IN")
    assert india.status == "allowlisted" and india.status_changed_by is None
    assert AuditEvent.objects.filter(action="registration.status", actor=None, object_id=str(india.pk)).count() == 1
    assert senders.sender_ids_sync(account) == 0  # nothing new: nothing moves


def test_a_numeric_sender_is_registered_with_its_number(operator, account, sandbox_account, tenant):
    f.SandboxNumberFactory(account=sandbox_account, number="14155550100")
    PhoneNumber.objects.create(account=account, tenant=tenant, number="+14155550100", sms_enabled=True, wavix_id="1")
    response = register(operator, tenant, type="numeric", value="+14155550100", countries=["US", "CA"])
    assert response.status_code == 201, response.json()
    assert SandboxSenderID.objects.get().sender_id == "14155550100"  # digits, as Wavix writes numbers


def test_a_sender_wavix_refuses_is_not_saved(operator, account, sandbox_account, tenant):
    SandboxSenderID.objects.create(
        account=sandbox_account, sender_id="AcmeDental", type="alphanumeric", countries=["GB"]
    )
    response = register(operator, tenant, type="alphanumeric", value="AcmeDental", countries=["GB"])
    assert response.status_code == 400
    assert response.json()["non_field_errors"] == ["Wavix refused the sender ID: Sender ID already exists"]
    assert not SenderID.objects.exists() and not SenderIDCountry.objects.exists()


def test_a_sender_registered_while_wavix_is_down_is_refused_and_not_saved(operator, account, sandbox_account, tenant):
    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(failing_until=timezone.now() + timedelta(minutes=5))
    response = register(operator, tenant, type="alphanumeric", value="AcmeDental", countries=["GB"])
    assert response.status_code == 400
    assert "nothing was saved. Try again in a minute." in response.json()["non_field_errors"][0]
    assert not SenderID.objects.exists()


def test_deleting_a_sender_deletes_it_at_wavix_first(operator, account, sandbox_account, tenant):
    register(operator, tenant, type="alphanumeric", value="AcmeDental", countries=["GB"])
    sender = SenderID.objects.get()
    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(failing_until=timezone.now() + timedelta(minutes=5))
    with pytest.raises(ValidationError, match="nothing was deleted"):
        senders.sender_id_delete(actor=operator, sender=sender)
    assert SenderID.objects.exists() and SandboxSenderID.objects.exists()

    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(failing_until=None)
    senders.sender_id_delete(actor=operator, sender=sender)
    assert not SenderID.objects.exists() and not SandboxSenderID.objects.exists()
    assert AuditEvent.objects.filter(action="sender_id.deleted", actor=operator).count() == 1


def test_a_sender_used_as_main_trunk_number_cannot_be_deleted(operator, account, sandbox_account, tenant):
    register(operator, tenant, type="alphanumeric", value="AcmeDental", countries=["GB"])
    sender = SenderID.objects.get()
    f.TrunkFactory(tenant=tenant, name="Front desk", main_sender=sender)
    with pytest.raises(ValidationError, match="Main Trunk No. of Front desk"):
        senders.sender_id_delete(actor=operator, sender=sender)
    assert SandboxSenderID.objects.exists()  # Wavix was not asked


# ---------------------------------------------------------------------------------------------------------------
# Sub-accounts
# ---------------------------------------------------------------------------------------------------------------


def test_a_tenant_gets_a_sub_account_wired_to_the_portal(reseller_admin, sandbox_account, tenant):
    master = f.WavixAccountFactory(reseller=tenant.reseller, tenant=None, api_key=sandbox_account.api_key)
    account = accounts.wavix_sub_account_create(actor=reseller_admin, master=master, tenant=tenant)
    child = SandboxAccount.objects.get(parent=sandbox_account)
    assert account.get_api_key() == child.api_key and account.api_key_encrypted != child.api_key
    assert (account.tenant, account.wavix_sub_account_id) == (tenant, str(child.pk))
    assert (child.sms_relay_url, child.dlr_relay_url) == (account.inbound_webhook_url, account.dlr_webhook_url)
    assert WavixClient.for_account(account).profile()["id"] == child.pk


def test_a_sub_account_needs_a_shared_master_of_the_same_reseller(
    reseller_admin, sandbox_account, tenant, other_tenant
):
    other_master = f.WavixAccountFactory(reseller=other_tenant.reseller, api_key=sandbox_account.api_key)
    with pytest.raises(ValidationError, match="one of the reseller's own"):
        accounts.wavix_sub_account_create(actor=reseller_admin, master=other_master, tenant=tenant)
    assert not SandboxAccount.objects.filter(parent__isnull=False).exists()


def test_an_account_without_sms_is_explained_as_such_not_as_a_sender_not_allow_listed():
    # "not provisioned" (the sender ID entry) used to come first and shadow the narrower needle.
    assert (
        explain("SMS service is not provisioned for your account")
        == "SMS is not enabled on this Wavix account; ask Wavix."
    )
    assert explain("Sender ID is not provisioned for GB").startswith("The sender ID is not allow-listed")


def test_a_word_that_merely_contains_opt_is_not_read_as_an_opt_out():
    unsubscribed = "The recipient unsubscribed (texted STOP); they must text START first."
    assert explain("Invalid option: validity") != unsubscribed
    assert explain("The recipient has opted out") == unsubscribed
    assert explain("Destination is on the opt-out list") == unsubscribed
