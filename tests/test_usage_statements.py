"""Usage statements and rebilling (issue 19): a month of mixed traffic for three tenants gives statements whose
figures equal the message log's, priced by the reseller's terms or a tenant's own; the API, its CSV and the pages
agree; a tenant viewer or token sees its own tenant and the price, never Wavix's charge; past months never change."""

import csv
import io
import random
import uuid
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from messaging.models import DailyMessageCount, Message
from messaging.services import usage
from messaging.services.retention import retention_purge
from tenants.models import ApiToken, AuditEvent, Pricing
from tests import factories as f
from tests.conftest import token_client

pytestmark = pytest.mark.django_db
S, ORIGIN = Message.Status, Message.Origin
CENT = Decimal("0.01")


def last_month():
    return usage.month_before(usage.this_month())


def a_month_of_traffic(tenant, month, *, seed: int, per_day: int = 5) -> list[Message]:
    """Every day of the month: texts from the three origins, SMS and MMS, delivered, failed before Wavix, expired
    before and after Wavix took them, inbound forwarded and failed."""
    pick = random.Random(seed)
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    made = []
    day = month
    while day < usage.month_after(month):
        for _ in range(per_day):
            inbound = pick.random() < 0.25
            status = (
                pick.choice([S.FORWARDED, S.FAILED])
                if inbound
                else pick.choice([S.DELIVERED, S.UNDELIVERED, S.SENT, S.FAILED, S.EXPIRED, S.EXPIRED])
            )
            # A text Wavix took has its id; a failed one never reached it; an expired one may have either way.
            took = (
                inbound
                or status in (S.DELIVERED, S.UNDELIVERED, S.SENT)
                or (status == S.EXPIRED and pick.random() < 0.5)
            )
            made.append(
                f.MessageFactory(
                    tenant=tenant,
                    account=account,
                    direction="inbound" if inbound else "outbound",
                    origin=ORIGIN.PORTAL if inbound else pick.choice(list(ORIGIN)),
                    status=status,
                    media=["https://media.example/p.jpg"] if pick.random() < 0.2 else [],
                    segments=pick.randint(1, 4),
                    wavix_message_id=str(uuid.uuid4()) if took else "",
                    charge=Decimal(pick.randint(40, 900)) / 10_000 if took else None,
                    created_at=datetime(
                        day.year, day.month, day.day, pick.randint(0, 23), tzinfo=timezone.get_current_timezone()
                    ),
                )
            )
        day += timedelta(days=1)
    return made


def expected_from_the_log(messages, terms) -> dict:
    """The statement's figures worked out from the message rows themselves, with the price's own arithmetic."""
    sent = [m for m in messages if m.direction == "outbound" and m.wavix_message_id]
    charge = sum((m.charge or Decimal(0) for m in messages), Decimal(0))
    if terms["pricing"] == Pricing.MARKUP:
        price, currency = charge * (1 + terms["markup_percent"] / 100), "USD"
    else:
        per_mms = terms.get("price_per_mms")
        price = sum(
            (per_mms if m.media and per_mms is not None else m.segments * terms["price_per_segment"] for m in sent),
            Decimal(0),
        )
        currency = terms["currency"]
    return {
        "outbound_messages": len(sent),
        "outbound_segments": sum(m.segments for m in sent),
        "inbound_messages": sum(m.direction == "inbound" for m in messages),
        "wavix_charge": f"{charge:.5f}",
        "price": f"{price.quantize(CENT, rounding=ROUND_HALF_UP):.2f}",
        "currency": currency,
    }


RESELLER_TERMS = {"pricing": Pricing.MARKUP, "markup_percent": Decimal("25")}
EURO_TERMS = {
    "pricing": Pricing.PER_SEGMENT,
    "price_per_segment": Decimal("0.021"),
    "price_per_mms": Decimal("0.1"),
    "currency": "EUR",
}
PER_SEGMENT_USD = {"pricing": Pricing.PER_SEGMENT, "price_per_segment": Decimal("0.0137"), "currency": "USD"}


@pytest.fixture
def billed(reseller, tenant, other_tenant):
    """Three tenants of reseller A with a month of traffic last month: one on the reseller's 25 % markup, one on its
    own price per segment in euros (MMS at their own price), one on its own price per segment in dollars."""
    for name, value in RESELLER_TERMS.items():
        setattr(reseller, name, value)
    reseller.full_clean()
    reseller.save()
    euro = f.TenantFactory(reseller=reseller, name="Tenant Euro", **EURO_TERMS)
    dollar = f.TenantFactory(reseller=reseller, name="Tenant Dollar", **PER_SEGMENT_USD)
    month = last_month()
    traffic = {
        tenant.pk: (a_month_of_traffic(tenant, month, seed=1), RESELLER_TERMS),
        euro.pk: (a_month_of_traffic(euro, month, seed=2), EURO_TERMS),
        dollar.pk: (a_month_of_traffic(dollar, month, seed=3), PER_SEGMENT_USD),
    }
    # Traffic this month too, and another reseller's: in no row of last month's statement.
    a_month_of_traffic(tenant, usage.this_month(), seed=4, per_day=1)
    a_month_of_traffic(other_tenant, month, seed=5, per_day=2)
    DailyMessageCount.recompute(70)
    return month, traffic


def api_rows(client, month, **params) -> list[dict]:
    response = client.get("/api/v1/usage/", {"month": f"{month:%Y-%m}", **params})
    assert response.status_code == 200, response.content
    return response.json()


def test_the_months_statements_equal_the_message_log_priced_by_each_tenants_terms(billed, reseller_admin):
    month, traffic = billed
    rows = api_rows(token_client(reseller_admin), month)
    assert [row["tenant_name"] for row in rows] == ["Tenant A", "Tenant Dollar", "Tenant Euro"]
    for row in rows:
        messages, terms = traffic[row["tenant"]]
        expected = expected_from_the_log(messages, terms)
        assert {key: row[key] for key in expected} == expected, row["tenant_name"]
        assert row["month"] == f"{month:%Y-%m}"
    # The mix is what the test says it is: three origins, MMS, texts Wavix never took, expired both ways.
    everything = [m for messages, _ in traffic.values() for m in messages]
    assert {m.origin for m in everything} == set(ORIGIN.values) and any(m.media for m in everything)
    expired = [m for m in everything if m.status == S.EXPIRED]
    assert {bool(m.wavix_message_id) for m in expired} == {True, False}
    # Each price is not zero, and the overrides are in force (a markup would be in dollars).
    assert all(Decimal(row["price"]) > 0 for row in rows)
    assert [row["currency"] for row in rows] == ["USD", "USD", "EUR"]


def test_the_csv_is_the_json_and_the_pages_show_the_same_figures(billed, reseller_admin, client):
    month, _ = billed
    api = token_client(reseller_admin)
    rows = api_rows(api, month)
    response = api.get("/api/v1/usage/", {"month": f"{month:%Y-%m}", "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == f'attachment; filename="usage-{month:%Y-%m}.csv"'
    lines = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert lines == [{key: str(value) for key, value in row.items()} for row in rows]

    client.force_login(reseller_admin)
    page = client.get(reverse("admin:usage"), {"month": f"{month:%Y-%m}"})
    assert page.status_code == 200
    listed = {row.tenant.pk: row for row, _, _ in page.context["rows"]}
    for row in rows:
        assert f"{listed[row['tenant']].price:.2f}" == row["price"]
        assert listed[row["tenant"]].outbound_segments == row["outbound_segments"]
    totals = page.context["totals"]
    assert totals == {
        "EUR": sum(Decimal(r["price"]) for r in rows if r["currency"] == "EUR"),
        "USD": sum(Decimal(r["price"]) for r in rows if r["currency"] == "USD"),
    }
    html = page.content.decode()
    assert f'data-total="EUR">{totals["EUR"]} EUR<' in html and "Tenant B" not in html
    euro = next(r for r in rows if r["currency"] == "EUR")
    statement = client.get(reverse("admin:usage_statement", args=[euro["tenant"], f"{month:%Y-%m}"]))
    assert statement.status_code == 200
    text = statement.content.decode()
    assert f'id="statement-price">{euro["price"]} EUR<' in text
    assert f'id="wavix-charge">{euro["wavix_charge"]}<' in text
    assert "0.021 EUR per segment, 0.10 EUR per MMS" in text


def test_a_tenant_viewer_or_token_sees_its_own_tenant_and_the_price_never_the_cost(
    billed, reseller_admin, viewer, tenant, other_admin, client
):
    month, traffic = billed
    expected = expected_from_the_log(*traffic[tenant.pk])
    for who in (token_client(viewer), tenant_token_client(reseller_admin, tenant)):
        rows = api_rows(who, month)
        assert [row["tenant"] for row in rows] == [tenant.pk]
        assert rows[0]["price"] == expected["price"] and rows[0]["wavix_charge"] is None
    # Another reseller's admin sees only their own tenant.
    assert [row["tenant_name"] for row in api_rows(token_client(other_admin), month)] == ["Tenant B"]

    client.force_login(viewer)
    page = client.get(reverse("admin:usage"), {"month": f"{month:%Y-%m}"}).content.decode()
    assert "Tenant A" in page and "Tenant Euro" not in page and "Wavix's charge" not in page
    statement = client.get(reverse("admin:usage_statement", args=[tenant.pk, f"{month:%Y-%m}"])).content.decode()
    assert f'id="statement-price">{expected["price"]} USD<' in statement
    assert 'id="wavix-charge"' not in statement and "Wavix's charge" not in statement and "25 %" not in statement
    euro = next(pk for pk, (_, terms) in traffic.items() if terms is EURO_TERMS)
    assert client.get(reverse("admin:usage_statement", args=[euro, f"{month:%Y-%m}"])).status_code == 404
    client.force_login(other_admin)
    assert client.get(reverse("admin:usage_statement", args=[tenant.pk, f"{month:%Y-%m}"])).status_code == 404


def tenant_token_client(admin, tenant):
    from rest_framework.test import APIClient

    _, plaintext = ApiToken.issue(admin, "integration", tenant=tenant)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")
    return client


def test_past_months_statements_never_change_after_a_retention_purge(billed, reseller, reseller_admin):
    month, _ = billed
    api = token_client(reseller_admin)
    before = api_rows(api, month)
    reseller.message_retention_days = 3
    reseller.save()
    assert retention_purge() > 0
    assert Message.objects.filter(tenant__reseller=reseller, created_at__date__lt=usage.this_month(), media=[]).exists()
    DailyMessageCount.recompute(70)
    assert api_rows(api, month) == before


def test_a_month_given_wrong_or_not_begun_is_refused_in_words(reseller_admin):
    api = token_client(reseller_admin)
    for value in ("2026-13", "november", "1999-12", "2026-1"):
        response = api.get("/api/v1/usage/", {"month": value})
        assert response.status_code == 400, value
        assert "YYYY-MM" in response.json()["month"][0]
    ahead = usage.month_after(usage.this_month())
    response = api.get("/api/v1/usage/", {"month": f"{ahead:%Y-%m}", "format": "csv"})
    assert response.status_code == 400 and response["Content-Type"].startswith("text/csv")
    assert response.content.decode().splitlines() == [
        "field,error",
        f"month,{ahead:%B %Y} has not begun: there is no usage yet.",
    ]
    assert api.get("/api/v1/usage/").status_code == 200  # this month, by default


def test_price_terms_are_complete_a_markup_bills_in_dollars_and_every_change_is_audited(
    reseller, tenant, reseller_admin, client
):
    reseller.pricing, reseller.currency = Pricing.MARKUP, "EUR"
    with pytest.raises(ValidationError) as refused:
        reseller.full_clean()
    assert "price per segment" in refused.value.message_dict["currency"][0]
    tenant.pricing, tenant.price_per_segment = Pricing.PER_SEGMENT, None
    with pytest.raises(ValidationError) as refused:
        tenant.full_clean()
    assert "price_per_segment" in refused.value.message_dict

    client.force_login(reseller_admin)
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    form = {
        "reseller": reseller.pk,
        "name": tenant.name,
        "slug": tenant.slug,
        "status": "active",
        "default_country": "",
    }
    form |= {"pricing": "per_segment", "price_per_segment": "", "currency": "GBP", "markup_percent": "0"}
    form |= {"trunks-TOTAL_FORMS": "0", "trunks-INITIAL_FORMS": "0"}
    answer = client.post(url, form)
    assert answer.status_code == 200 and "Give the price per segment." in answer.content.decode()
    tenant.refresh_from_db()
    assert tenant.pricing == ""  # nothing half-written
    assert client.post(url, form | {"price_per_segment": "0.019"}).status_code == 302
    tenant.refresh_from_db()
    assert tenant.price_terms_label == "0.019 GBP per segment"
    event = AuditEvent.objects.get(action=AuditEvent.Action.PRICES_CHANGED)
    assert event.changes["pricing"] == ["", "per_segment"] and event.changes["price_per_segment"] == ["", "0.019"]
    assert event.actor == reseller_admin and event.tenant == tenant
    # Saved again unchanged (the column now writes 0.01900): no second event.
    assert client.post(url, form | {"price_per_segment": "0.01900"}).status_code == 302
    assert AuditEvent.objects.filter(action=AuditEvent.Action.PRICES_CHANGED).count() == 1
