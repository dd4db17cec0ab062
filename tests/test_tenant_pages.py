"""A tenant's home page (trunk health and setup, the registration grid, usage, conversations, the trend) and a
conversation's thread: right figures, scoped to who may see the tenant."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from messaging.models import Delivery, Message, SenderIDCountry, Trunk
from messaging.services.setup import STEP_KEYS
from messaging.tasks import message_counts_rollup
from tests import factories as f

S = Message.Status
CUSTOMER = "+447700900123"


def home(client, tenant):
    return client.get(reverse("admin:tenant_home", args=[tenant.pk]))


@pytest.fixture
def account(tenant):
    return f.WavixAccountFactory(reseller=tenant.reseller)


def text(tenant, account, *, direction="outbound", status=S.DELIVERED, ago=timedelta(minutes=5), **fields):
    fields.setdefault("to_number" if direction == "outbound" else "from_number", CUSTOMER)
    fields.setdefault("from_number" if direction == "outbound" else "to_number", "+14155550100")
    return f.MessageFactory(
        tenant=tenant, account=account, direction=direction, status=status, created_at=timezone.now() - ago, **fields
    )


def test_each_trunk_is_green_amber_or_red_with_the_reason_and_its_setup_as_a_stepper(client, reseller_admin, tenant):
    done = {"steps_done": list(STEP_KEYS)}
    f.TrunkFactory(tenant=tenant, name="A working", setup_progress=done, sms_enabled=True)
    f.TrunkFactory(tenant=tenant, name="B halfway", setup_progress={"steps_done": ["sender", "countries"]})
    broken = f.TrunkFactory(tenant=tenant, name="C refused", setup_progress=done, sms_enabled=True)
    Trunk.objects.filter(pk=broken.pk).update(forward_failures=Trunk.UNHEALTHY_AFTER, forward_error="HTTP 500")
    client.force_login(reseller_admin)
    cards = {card.trunk.name: card for card in home(client, tenant).context["trunks"]}
    assert cards["A working"].health == "green"
    assert (cards["B halfway"].health, cards["B halfway"].steps_done) == ("amber", 2)
    assert "setup: step 3 of 6 to do" in cards["B halfway"].reasons
    assert cards["C refused"].health == "red"
    assert cards["C refused"].reasons[0] == "3CX refused the last 3 texts (HTTP 500)"
    step3 = cards["B halfway"].steps[2]
    assert (step3.title, step3.done) == ("3CX trunk", False)
    assert step3.url == reverse("admin:messaging_trunk_setup_step", args=[cards["B halfway"].trunk.pk, "threecx"])


def test_the_registration_grid_colours_each_sender_and_country_by_status(client, reseller_admin, tenant, account):
    brand = f.SenderIDFactory(tenant=tenant, account=account, value="Harbor")
    number = f.SenderIDFactory(tenant=tenant, account=account, value="+14155550100", type="numeric")
    f.SenderIDCountryFactory(sender=brand, country="GB", status=SenderIDCountry.Status.ALLOWLISTED)
    f.SenderIDCountryFactory(sender=brand, country="IN", status=SenderIDCountry.Status.REJECTED)
    f.SenderIDCountryFactory(sender=number, country="US", status=SenderIDCountry.Status.IN_REVIEW)
    client.force_login(reseller_admin)
    grid = home(client, tenant).context["grid"]
    assert grid.countries == ["GB", "IN", "US"]
    colours = {sender: [cell.colour for cell in cells] for sender, cells in grid.rows}
    assert colours == {"+14155550100": ["none", "none", "amber"], "Harbor": ["green", "red", "none"]}


def test_this_months_usage_comes_from_the_rollup_with_the_price_and_the_cost_for_managers_only(
    client, reseller_admin, viewer, tenant, account
):
    text(tenant, account, segments=2, charge=Decimal("0.01500"), wavix_message_id="w-1")
    text(tenant, account, status=S.UNDELIVERED, segments=1, charge=Decimal("0.00750"), wavix_message_id="w-2")
    text(tenant, account, status=S.QUEUED)  # not at Wavix yet: not sent, not billed
    text(tenant, account, direction="inbound", status=S.FORWARDED, wavix_message_id="w-3")
    other = f.TenantFactory(reseller=tenant.reseller)
    text(other, account, wavix_message_id="w-4")  # another tenant's text is not this one's usage
    tenant.reseller.markup_percent = Decimal(20)
    tenant.reseller.save()
    client.force_login(reseller_admin)
    assert home(client, tenant).context["month"].figures.outbound_messages == 0  # not counted yet: the rollup's
    message_counts_rollup(2)
    response = home(client, tenant)
    month = response.context["month"]
    assert (month.figures.outbound_messages, month.figures.outbound_segments, month.figures.inbound_messages) == (
        2,
        3,
        1,
    )
    assert (month.figures.not_sent.messages, month.figures.wavix_charge) == (1, Decimal("0.02250"))
    assert month.figures.price == Decimal("0.03")  # 0.0225 + 20 %, to the cent
    assert (month.delivered, month.final, month.rate) == (1, 2, 50)
    page = response.content.decode()
    assert "Wavix's charge (USD)" in page and 'id="usage-price">0.03<' in page
    assert month.statement_url in page
    client.force_login(viewer)
    page = home(client, tenant).content.decode()
    assert "Wavix's charge" not in page and 'id="usage-price">0.03<' in page


def test_the_trend_counts_earlier_days_from_the_rollup_and_today_live(client, reseller_admin, tenant, account):
    for status in (S.DELIVERED, S.DELIVERED, S.UNDELIVERED, S.SENT):
        text(tenant, account, status=status, ago=timedelta(days=3))
    message_counts_rollup(10)
    text(tenant, account, status=S.DELIVERED, ago=timedelta(seconds=1))  # after the rollup: live
    client.force_login(reseller_admin)
    response = home(client, tenant)
    trend = response.context["trend"]
    assert len(trend["labels"]) == 30
    assert (trend["final"][-4], trend["delivered"][-4], trend["rate"][-4]) == (3, 2, 67)
    assert (trend["final"][-1], trend["rate"][-1]) == (1, 100)
    assert json.loads(response.context["trend_json"]) == trend
    assert 'id="trend-chart"' in response.content.decode()


def test_recent_conversations_and_the_thread_with_3cxs_answers(client, reseller_admin, tenant, account):
    trunk = f.TrunkFactory(tenant=tenant)
    asked = text(tenant, account, direction="inbound", status=S.FORWARDED, ago=timedelta(minutes=30), text="Open?")
    f.DeliveryFactory(message=asked, trunk=trunk, status=Delivery.S.DELIVERED, last_status_code=200)
    refused = text(tenant, account, direction="inbound", status=S.FAILED, ago=timedelta(minutes=20), text="Hello?")
    f.DeliveryFactory(message=refused, trunk=trunk, status=Delivery.S.FAILED, last_status_code=403)
    text(tenant, account, ago=timedelta(minutes=10), text="Yes, until 6.")
    text(tenant, account, to_number="+447700900999", ago=timedelta(minutes=1), text="Someone else")
    client.force_login(reseller_admin)
    conversations = home(client, tenant).context["conversations"]
    assert [(c.number, c.texts) for c in conversations] == [("+447700900999", 1), (CUSTOMER, 3)]
    thread = client.get(conversations[1].url)
    bubbles = thread.context["bubbles"]
    assert [(b.message.text, b.inbound) for b in bubbles] == [
        ("Open?", True),
        ("Hello?", True),
        ("Yes, until 6.", False),
    ]
    assert (bubbles[0].answer, bubbles[0].answer_ok) == ("3CX answered HTTP 200", True)
    assert (bubbles[1].answer, bubbles[1].answer_ok) == ("3CX answered HTTP 403", False)
    assert "Someone else" not in thread.content.decode()


def test_another_resellers_tenant_and_its_conversations_are_not_found(
    client, reseller_admin, viewer, tenant, other_tenant
):
    theirs = f.WavixAccountFactory(reseller=other_tenant.reseller)
    text(other_tenant, theirs)
    client.force_login(reseller_admin)
    assert home(client, other_tenant).status_code == 404
    assert client.get(reverse("admin:conversation", args=[other_tenant.pk, CUSTOMER])).status_code == 404
    assert client.get(reverse("admin:conversation", args=[tenant.pk, CUSTOMER])).status_code == 404  # no texts
    client.force_login(viewer)  # the viewer of `tenant`: their own home, nothing else
    assert home(client, tenant).status_code == 200 and home(client, other_tenant).status_code == 404


def test_a_tenant_viewer_sees_the_setup_but_gets_no_link_to_change_it(client, viewer, tenant):
    f.TrunkFactory(tenant=tenant, setup_progress={"steps_done": ["sender"]})
    client.force_login(viewer)
    response = home(client, tenant)
    [card] = response.context["trunks"]
    assert all(step.url == "" for step in card.steps)
    page = response.content.decode()
    assert "Edit tenant" not in page and "/setup/" not in page
