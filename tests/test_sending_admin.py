"""Sending from the admin, the message page, and tenant tokens made by reseller admins."""

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils.html import escape

from messaging.models import Message, PhoneNumber, SenderID, SenderIDCountry
from tenants import services as people
from tenants.models import ApiToken
from tests import factories as f
from tests.conftest import token_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def sender(tenant):
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    PhoneNumber.objects.create(account=account, tenant=tenant, number="+14155550100", sms_enabled=True, wavix_id="1")
    sender = SenderID.objects.create(tenant=tenant, account=account, type="numeric", value="+14155550100")
    SenderIDCountry.objects.create(tenant=tenant, sender=sender, country="US", status="allowlisted")
    return sender


def test_an_operator_sends_one_message_from_the_admin(client, operator, sender):
    client.force_login(operator)
    response = client.post(
        reverse("admin:messaging_message_send"), {"sender": sender.pk, "recipients": "+14155550123", "text": "Hi"}
    )
    message = Message.objects.get()
    assert response.status_code == 302 and response.url == reverse("admin:messaging_message_change", args=[message.pk])
    assert (message.status, message.priority) == ("queued", True)


def test_several_recipients_make_a_bulk_send_with_a_result_each(client, operator, sender):
    client.force_login(operator)
    response = client.post(
        reverse("admin:messaging_message_send"),
        {"sender": sender.pk, "recipients": "+14155550123\nnope\n+14155550124", "text": "Sale"},
        follow=True,
    )
    page = response.content.decode()
    assert "Bulk send: 2 of 3 queued" in page and "&#x27;nope&#x27; is not in E.164 format" in page
    assert Message.objects.filter(priority=False).count() == 2


@pytest.mark.parametrize("recipients", ["+14155550123", "+14155550123\n+14155550124"])
def test_a_suspended_tenant_sends_nothing_from_the_admin(client, operator, sender, tenant, recipients):
    tenant.status = "suspended"
    tenant.save()
    client.force_login(operator)
    response = client.post(
        reverse("admin:messaging_message_send"), {"sender": sender.pk, "recipients": recipients, "text": "Hi"}
    )
    assert response.status_code == 200
    assert "Tenant A is suspended: nothing is sent for it." in response.content.decode()
    assert not Message.objects.exists()


@pytest.mark.parametrize("recipients", [["+14155550123"], ["+14155550123", "+14155550124"]])
def test_the_send_page_refuses_a_suspended_tenant_in_the_apis_words_and_queues_nothing(
    client, operator, sender, tenant, recipients
):
    tenant.status = "suspended"
    tenant.save()
    one_or_bulk = {"to": recipients[0]} if len(recipients) == 1 else {"recipients": recipients}
    api = token_client(operator).post(
        "/api/v1/messages/", {"sender": sender.value, "text": "Hi", **one_or_bulk}, format="json"
    )
    client.force_login(operator)
    page = client.post(
        reverse("admin:messaging_message_send"),
        {"sender": sender.pk, "recipients": "\n".join(recipients), "text": "Hi"},
    )
    # One send path: the page shows the refusal the API gives, word for word, above the form.
    (refusal,) = api.json()["tenant"]
    assert "suspended" in refusal and page.status_code == 200
    assert escape(refusal) in page.content.decode()
    assert not Message.objects.exists()


def test_a_refused_single_message_shows_why_on_the_form(client, operator, sender):
    client.force_login(operator)
    response = client.post(
        reverse("admin:messaging_message_send"), {"sender": sender.pk, "recipients": "+447400123456", "text": "Hi"}
    )
    assert "is not registered for United Kingdom (GB)" in response.content.decode()
    assert not Message.objects.exists()


def test_viewers_and_other_resellers_cannot_send_from_the_admin(client, viewer, other_admin, sender):
    client.force_login(viewer)
    assert client.get(reverse("admin:messaging_message_send")).status_code == 403
    client.force_login(other_admin)
    response = client.post(
        reverse("admin:messaging_message_send"), {"sender": sender.pk, "recipients": "+14155550123", "text": "x"}
    )
    assert "Select a valid choice" in response.content.decode() and not Message.objects.exists()


def test_the_message_page_shows_progress_and_explains_the_error(client, operator, tenant):
    message = f.MessageFactory(tenant=tenant, status="undelivered", error_message="Handset unreachable")
    client.force_login(operator)
    page = client.get(reverse("admin:messaging_message_change", args=[message.pk])).content.decode()
    assert "<strong>Created in the portal</strong>" in page and "<strong>Undelivered</strong>" in page
    assert "The phone could not be reached" in page and "Wavix said: Handset unreachable" in page


def test_reseller_admins_make_tenant_tokens_and_others_cannot(client, reseller_admin, operator, tenant):
    client.force_login(reseller_admin)
    response = client.post(reverse("admin:tenants_apitoken_add"), {"name": "Acme CRM", "tenant": tenant.pk})
    assert response.status_code == 200 and ApiToken.objects.get().tenant == tenant
    client.force_login(operator)
    assert 'name="tenant"' not in client.get(reverse("admin:tenants_apitoken_add")).content.decode()
    with pytest.raises(PermissionDenied):
        people.api_token_create(actor=operator, name="sneaky", tenant=tenant)
    # the admin who did not make it may still revoke it
    other_admin = f.UserFactory()
    f.MembershipFactory(user=other_admin, reseller=tenant.reseller, role="reseller_admin")
    client.force_login(other_admin)
    token = ApiToken.objects.get()
    client.post(reverse("admin:tenants_apitoken_changelist"), {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.revoked_at is not None


# ---------------------------------------------------------------------------------------------------------------
# After a bulk send: an empty form, the send's summary, its messages in the log
# ---------------------------------------------------------------------------------------------------------------


def bulk_send(client, sender, recipients="+14155550123\nnope\n+14155550124", text="Sale"):
    return client.post(
        reverse("admin:messaging_message_send"), {"sender": sender.pk, "recipients": recipients, "text": text}
    )


def test_a_bulk_send_redirects_to_an_empty_form_with_the_sends_summary(client, operator, sender):
    client.force_login(operator)
    response = bulk_send(client, sender)
    (batch,) = set(Message.objects.values_list("batch", flat=True))
    assert response.status_code == 302 and response.url == f"{reverse('admin:messaging_message_send')}?batch={batch}"
    page = client.get(response.url).content.decode()
    assert "Bulk send: 2 of 3 queued" in page and "Now: 2 queued." in page
    assert "&#x27;nope&#x27; is not in E.164 format" in page
    assert f'href="{reverse("admin:messaging_message_changelist")}?batch={batch}"' in page
    # The form is empty: no recipients, no text.
    assert "+14155550124</textarea>" not in page and "Sale</textarea>" not in page


def test_reloading_the_page_after_a_bulk_send_sends_nothing_again(client, operator, sender):
    client.force_login(operator)
    summary = bulk_send(client, sender).url
    for _ in range(2):
        assert client.get(summary).status_code == 200
    assert Message.objects.count() == 2


def test_the_sends_link_lists_its_messages_and_no_others(client, operator, sender, tenant):
    client.force_login(operator)
    bulk_send(client, sender, recipients="+14155550123\n+14155550124")
    bulk_send(client, sender, recipients="+14155550125\n+14155550126")
    first = Message.objects.get(to_number="+14155550123").batch
    page = client.get(f"{reverse('admin:messaging_message_changelist')}?batch={first}").content.decode()
    assert "+14155550123" in page and "+14155550124" in page
    assert "+14155550125" not in page and "+14155550126" not in page
    # The message page links back to its send; a single text has no send to link to.
    message = Message.objects.get(to_number="+14155550123")
    page = client.get(reverse("admin:messaging_message_change", args=[message.pk])).content.decode()
    assert f"?batch={first}" in page
    single = f.MessageFactory(tenant=tenant)
    page = client.get(reverse("admin:messaging_message_change", args=[single.pk])).content.decode()
    assert "All messages of this bulk send" not in page


def test_a_single_text_and_a_bulk_send_through_the_api_each_get_a_batch_only_when_bulk(operator, sender):
    api = token_client(operator)
    api.post("/api/v1/messages/", {"sender": sender.value, "text": "Hi", "to": "+14155550123"}, format="json")
    api.post(
        "/api/v1/messages/",
        {"sender": sender.value, "text": "Hi", "recipients": ["+14155550124", "+14155550125"]},
        format="json",
    )
    assert Message.objects.get(to_number="+14155550123").batch is None
    assert len({m.batch for m in Message.objects.exclude(to_number="+14155550123")}) == 1


def test_another_resellers_send_summary_answers_404_and_its_filter_shows_nothing(client, operator, other_admin, sender):
    client.force_login(operator)
    summary = bulk_send(client, sender, recipients="+14155550123\n+14155550124").url
    batch = Message.objects.first().batch
    client.force_login(other_admin)
    assert client.get(summary).status_code == 404
    assert client.get(f"{reverse('admin:messaging_message_send')}?batch=not-a-uuid").status_code == 404
    page = client.get(f"{reverse('admin:messaging_message_changelist')}?batch={batch}").content.decode()
    assert "+14155550123" not in page


def test_a_bulk_send_refused_for_every_recipient_keeps_the_form_to_correct(client, operator, sender):
    client.force_login(operator)
    response = bulk_send(client, sender, recipients="nope\nnada")
    page = response.content.decode()
    assert response.status_code == 200 and "None of the 2 recipients could be sent to" in page
    assert "Sale</textarea>" in page and not Message.objects.exists()


# ---------------------------------------------------------------------------------------------------------------
# The counter, line breaks, charges
# ---------------------------------------------------------------------------------------------------------------


def test_the_send_page_counts_the_text_under_its_box(client, operator, sender):
    client.force_login(operator)
    page = client.get(reverse("admin:messaging_message_send")).content.decode()
    assert 'id="sms-size"' in page and "messaging/sms_size.js" in page
    assert page.index('id="id_text"') < page.index('id="sms-size"') < page.index('id="id_media"')


def test_a_browsers_line_breaks_are_sent_as_one_character_each_as_the_counter_counts_them(client, operator, sender):
    client.force_login(operator)
    client.post(
        reverse("admin:messaging_message_send"),
        {"sender": sender.pk, "recipients": "+14155550123", "text": "a" * 79 + "\r\n" + "b" * 80},
    )
    message = Message.objects.get()
    assert message.text == "a" * 79 + "\n" + "b" * 80 and (message.encoding, message.segments) == ("gsm7", 1)


@pytest.mark.parametrize(
    "charge, shown",
    [(None, "—"), ("0", "0.00 USD"), ("0.01000", "0.01 USD"), ("0.00590", "0.0059 USD"), ("24.637", "24.637 USD")],
)
def test_a_charge_is_shown_in_us_dollars_as_wavix_bills(charge, shown):
    assert Message(charge=None if charge is None else Decimal(charge)).charge_shown == shown


def test_the_log_and_the_message_page_show_the_charges_currency(client, operator, tenant):
    message = f.MessageFactory(tenant=tenant, status="delivered", charge=Decimal("0.0059"))
    client.force_login(operator)
    assert "0.0059 USD" in client.get(reverse("admin:messaging_message_changelist")).content.decode()
    assert "0.0059 USD" in client.get(reverse("admin:messaging_message_change", args=[message.pk])).content.decode()


# ---------------------------------------------------------------------------------------------------------------
# The message page's live status
# ---------------------------------------------------------------------------------------------------------------


def test_the_message_page_asks_for_its_status_until_it_is_final(client, operator, tenant):
    message = f.MessageFactory(tenant=tenant, status="accepted")
    client.force_login(operator)
    status_url = reverse("admin:messaging_message_status", args=[message.pk])
    page = client.get(reverse("admin:messaging_message_change", args=[message.pk])).content.decode()
    assert f'data-status-url="{status_url}"' in page and 'data-final="0"' in page
    assert "messaging/message_live.js" in page
    answer = client.get(status_url).json()
    assert answer["status"] == "accepted" and answer["final"] is False
    assert "<strong>Accepted by Wavix</strong>" in answer["fields"]["progress"]

    message.status, message.charge, message.wavix_message_id = "delivered", Decimal("0.01"), "wx-1"
    message.error_message = ""
    message.save()
    answer = client.get(status_url).json()
    assert answer["final"] is True and 'data-final="1"' in answer["fields"]["progress"]
    assert "0.01 USD" in answer["fields"]["charge_live"] and "wx-1" in answer["fields"]["wavix_id_live"]
    assert 'data-final="1"' in client.get(reverse("admin:messaging_message_change", args=[message.pk])).content.decode()


def test_a_tenant_viewer_follows_its_own_messages_status(client, viewer, tenant):
    message = f.MessageFactory(tenant=tenant)
    client.force_login(viewer)
    assert client.get(reverse("admin:messaging_message_status", args=[message.pk])).json()["status"] == "queued"


def test_another_tenants_message_status_answers_404(client, operator, viewer, other_tenant, tenant):
    theirs = f.MessageFactory(tenant=other_tenant)
    neighbour = f.MessageFactory(tenant=f.TenantFactory(reseller=tenant.reseller, name="Tenant A2"))
    client.force_login(operator)
    assert client.get(reverse("admin:messaging_message_status", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("admin:messaging_message_status", args=["999999"])).status_code == 404
    client.force_login(viewer)  # a tenant viewer: not even its reseller's other tenants
    assert client.get(reverse("admin:messaging_message_status", args=[neighbour.pk])).status_code == 404
