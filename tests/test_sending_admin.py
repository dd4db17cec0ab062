"""Sending from the admin, the message page, and tenant tokens made by reseller admins."""

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
    )
    page = response.content.decode()
    assert "2 of 3 queued; the others were refused" in page and "&#x27;nope&#x27; is not in E.164 format" in page
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
    assert "<strong>Created</strong>" in page and "<strong>Undelivered</strong>" in page
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
