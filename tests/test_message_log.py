"""The message log (the admin's Messages list): search by number and text, filters including a date range,
bounded counts, and a streamed CSV export of exactly what is filtered, scoped to what the user may see."""

import csv
import io
from datetime import datetime, time, timedelta

import pytest
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from messaging.admin.logs import CappedCountPaginator
from messaging.models import Message
from tests import factories as f

pytestmark = pytest.mark.django_db

LOG = reverse("admin:messaging_message_changelist")
EXPORT = reverse("admin:messaging_message_export")
S = Message.Status


def at_noon(days_ago: int) -> datetime:
    day = timezone.localdate() - timedelta(days=days_ago)
    return timezone.make_aware(datetime.combine(day, time(12, 0)))


@pytest.fixture
def log(reseller, tenant, other_tenant):
    """Messages of tenant A, of a second tenant of the same reseller, and of another reseller's tenant."""
    account = f.WavixAccountFactory(reseller=reseller, tenant=None)
    sister = f.TenantFactory(reseller=reseller, name="Sister Clinic")
    other_account = f.WavixAccountFactory(reseller=other_tenant.reseller, tenant=None)

    def make(owner, acct, text, created, **fields):
        fields.setdefault("status", S.DELIVERED)
        return f.MessageFactory(tenant=owner, account=acct, text=text, created_at=created, **fields)

    return {
        "booking": make(
            tenant,
            account,
            "Can I move my Booking to Friday?",
            at_noon(0),
            direction="inbound",
            from_number="+14155550142",
            to_number="+14155550100",
            status=S.FORWARDED,
        ),
        "reminder": make(tenant, account, "Reminder: appointment tomorrow", at_noon(3), to_number="+447700900123"),
        "late": make(
            tenant, account, "We are running late", at_noon(10), to_number="+447700900555", status=S.UNDELIVERED
        ),
        "sister": make(sister, account, "Sister booking confirmed", at_noon(0), to_number="+14155550142"),
        "other": make(other_tenant, other_account, "Other reseller booking", at_noon(0), to_number="+14155550142"),
        "sister_tenant": sister,
    }


def listed(client, **params) -> set[str]:
    response = client.get(LOG, params)
    assert response.status_code == 200
    return {m.text for m in response.context["cl"].result_list}


def exported(client, **params) -> list[dict[str, str]]:
    response = client.get(EXPORT, params)
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def texts(rows) -> set[str]:
    return {row["text"] for row in rows}


# --------------------------------------------------------------------------------------------------------------
# Search and filters
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["+14155550142", "(415) 555-0142", "415 555 0142", "5550142"])
def test_search_finds_a_number_however_it_is_written(client, reseller_admin, log, query):
    client.force_login(reseller_admin)
    # From or to: the inbound text came from it, the sister tenant's text went to it. Never the other reseller's.
    assert listed(client, q=query) == {"Can I move my Booking to Friday?", "Sister booking confirmed"}


def test_search_finds_words_of_the_text_in_any_case(client, reseller_admin, log):
    client.force_login(reseller_admin)
    assert listed(client, q="booking") == {"Can I move my Booking to Friday?", "Sister booking confirmed"}
    assert listed(client, q="running late") == {"We are running late"}


def test_search_needs_every_word_each_anywhere_in_the_message(client, reseller_admin, reseller, tenant, other_tenant):
    account = f.WavixAccountFactory(reseller=reseller, tenant=None)
    f.MessageFactory(tenant=tenant, account=account, text="See the dentist at 9 tomorrow", to_number="+14155550142")
    f.MessageFactory(tenant=tenant, account=account, text="The dentist called", to_number="+14155550199")
    f.MessageFactory(tenant=tenant, account=account, text="Rain tomorrow", to_number="+14155550142")
    f.MessageFactory(tenant=other_tenant, text="See the dentist at 9 tomorrow", to_number="+14155550142")
    client.force_login(reseller_admin)
    assert listed(client, q="dentist tomorrow") == {"See the dentist at 9 tomorrow"}
    assert listed(client, q="  TOMORROW   Dentist ") == {"See the dentist at 9 tomorrow"}  # any order, any case
    # A word may match the text and another a number: "0142" is part of the number the text went to.
    assert listed(client, q="dentist 0142") == {"See the dentist at 9 tomorrow"}
    assert listed(client, q="tomorrow (415)") == {"See the dentist at 9 tomorrow", "Rain tomorrow"}
    assert listed(client, q="dentist dentures") == set()  # each word must match, not any one of them


def test_part_of_a_wavix_message_id_finds_its_message(client, reseller_admin, reseller, tenant, other_tenant):
    account = f.WavixAccountFactory(reseller=reseller, tenant=None)
    uuid = "3f2a9c1e-7b4d-4e8a-9f1c-2d3e4f5a6b7c"
    f.MessageFactory(tenant=tenant, account=account, text="Ours", wavix_message_id=uuid)
    f.MessageFactory(tenant=tenant, account=account, text="Another", wavix_message_id="0b9e77aa-1c2d-4f00-8e3b-aa01")
    f.MessageFactory(tenant=other_tenant, text="Theirs", wavix_message_id=uuid)  # the same id at another account
    client.force_login(reseller_admin)
    assert listed(client, q=uuid) == {"Ours"}
    assert listed(client, q=uuid[14:22]) == {"Ours"}  # "4e8a-9f1", the middle 8 characters
    assert listed(client, q="7B4D-4E8A") == {"Ours"}  # pasted in capitals
    assert listed(client, q="1234-4e8a") == set()
    client.force_login(f.UserFactory(is_staff=True))  # no membership, no permission: nothing, whatever the query
    assert client.get(LOG, {"q": uuid[14:22]}).status_code == 403


def test_an_alphanumeric_sender_is_found_by_part_of_its_name(client, reseller_admin, reseller, tenant):
    account = f.WavixAccountFactory(reseller=reseller, tenant=None)
    f.MessageFactory(tenant=tenant, account=account, text="Your cleaning is due", from_number="AcmeDental")
    f.MessageFactory(tenant=tenant, account=account, text="Your cleaning is booked")
    client.force_login(reseller_admin)
    assert listed(client, q="acmedental") == {"Your cleaning is due"}
    assert listed(client, q="cleaning acme") == {"Your cleaning is due"}


@pytest.mark.postgres
def test_every_part_of_a_search_is_answered_by_a_trigram_index_on_postgresql(reseller, tenant):
    """One column the indexes do not cover turns every search into a scan of the whole table (1M rows: ~1 s)."""
    from messaging.admin.logs import message_search

    f.MessageFactory(tenant=tenant, account=f.WavixAccountFactory(reseller=reseller))
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a few rows: make the planner show what it could use
    for query in ("dentist tomorrow", "(415) 555-0142", "4e8a-9f1"):
        plan = Message.objects.filter(message_search(query)).order_by().explain()
        assert "Seq Scan" not in plan, plan
        for index in ("message_text_trgm", "message_from_number_upper_trgm", "message_to_number_upper_trgm"):
            assert index in plan, plan
        assert "message_wavix_id_trgm" in plan, plan


def test_the_list_shows_the_start_of_each_text_and_the_whole_text_on_hover(client, viewer, log, reseller, tenant):
    account = f.WavixAccountFactory(reseller=reseller, tenant=None)
    long = "Your appointment with Dr Okafor is confirmed for Tuesday 14 May at 10:30. Reply C to confirm, R to move it."
    f.MessageFactory(tenant=tenant, account=account, text=long)
    client.force_login(viewer)
    page = client.get(LOG).content.decode()
    assert f'title="{long}"' in page
    assert f">{long[:59]}…</span>" in page
    assert ">We are running late</span>" in page
    assert "Sister booking confirmed" not in page and "Other reseller booking" not in page


def test_status_direction_tenant_and_date_range_filters(client, reseller_admin, log, tenant):
    client.force_login(reseller_admin)
    assert listed(client, status__exact="undelivered") == {"We are running late"}
    assert listed(client, direction__exact="inbound") == {"Can I move my Booking to Friday?"}
    assert listed(client, tenant__id__exact=log["sister_tenant"].pk) == {"Sister booking confirmed"}
    week_ago = (timezone.localdate() - timedelta(days=6)).isoformat()
    assert listed(client, tenant__id__exact=tenant.pk, created_from=week_ago) == {
        "Can I move my Booking to Friday?",
        "Reminder: appointment tomorrow",
    }
    three_days_ago = (timezone.localdate() - timedelta(days=3)).isoformat()
    # Both ends included: a range of one day holds that day's messages.
    assert listed(client, created_from=three_days_ago, created_to=three_days_ago) == {"Reminder: appointment tomorrow"}


def test_a_malformed_date_is_refused_not_ignored(client, reseller_admin, log):
    client.force_login(reseller_admin)
    assert client.get(LOG, {"created_from": "last tuesday"})["Location"].endswith("?e=1")
    assert client.get(EXPORT, {"created_from": "last tuesday"})["Location"].endswith("?e=1")


def test_the_tenant_filter_lists_only_visible_tenants(client, reseller_admin, log, other_tenant):
    client.force_login(reseller_admin)
    page = client.get(LOG).content.decode()
    assert "Sister Clinic" in page and "Tenant B" not in page


def test_another_resellers_rows_never_appear_even_when_asked_for(client, reseller_admin, log, other_tenant):
    client.force_login(reseller_admin)
    assert listed(client, tenant__id__exact=other_tenant.pk) == set()
    assert exported(client, tenant__id__exact=other_tenant.pk) == []


# --------------------------------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------------------------------


def test_the_list_never_counts_without_a_limit(client, reseller_admin, log):
    client.force_login(reseller_admin)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(LOG, {"q": "booking"})
    assert isinstance(response.context["cl"].paginator, CappedCountPaginator)
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "messaging_message" in q["sql"]]
    assert counts and all("LIMIT" in sql.upper() for sql in counts)
    assert response.context["cl"].full_result_count is None  # no second, unfiltered count either


def test_the_paginator_stops_counting_at_its_cap(reseller, tenant):
    account = f.WavixAccountFactory(reseller=reseller)
    for _ in range(8):
        f.MessageFactory(tenant=tenant, account=account)

    class SmallCap(CappedCountPaginator):
        cap = 5

    capped = SmallCap(Message.objects.all(), 2)
    assert (capped.count, capped.capped) == (6, True)
    assert SmallCap(Message.objects.filter(pk__in=Message.objects.values("pk")[:3]), 2).capped is False


# --------------------------------------------------------------------------------------------------------------
# CSV export
# --------------------------------------------------------------------------------------------------------------


def test_export_streams_exactly_the_filtered_log(client, reseller_admin, log):
    client.force_login(reseller_admin)
    everything = exported(client)
    assert texts(everything) == {
        "Can I move my Booking to Friday?",
        "Reminder: appointment tomorrow",
        "We are running late",
        "Sister booking confirmed",
    }
    assert list(everything[0]) == [
        "created_at", "tenant", "direction", "from", "to", "status", "not_forwarded_reason", "text", "segments",
        "charge", "error_code", "error_message", "sent_at", "completed_at", "wavix_message_id", "origin",
    ]  # fmt: skip
    assert [row["text"] for row in everything][0] in {"Can I move my Booking to Friday?", "Sister booking confirmed"}
    assert texts(exported(client, status__exact="undelivered")) == {"We are running late"}
    assert texts(exported(client, q="booking")) == {"Can I move my Booking to Friday?", "Sister booking confirmed"}
    three_days_ago = (timezone.localdate() - timedelta(days=3)).isoformat()
    assert texts(exported(client, created_from=three_days_ago, created_to=three_days_ago)) == {
        "Reminder: appointment tomorrow"
    }
    inbound = exported(client, direction__exact="inbound")
    assert [(r["tenant"], r["from"], r["to"], r["status"]) for r in inbound] == [
        ("Tenant A", "+14155550142", "+14155550100", "forwarded")
    ]


def test_the_list_links_to_the_export_of_what_it_shows(client, reseller_admin, log):
    client.force_login(reseller_admin)
    page = client.get(LOG, {"status__exact": "undelivered", "q": "late"}).content.decode()
    assert f"{EXPORT}?q=late&amp;status__exact=undelivered" in page


def test_a_tenant_viewer_exports_only_their_tenants_rows(client, viewer, log):
    client.force_login(viewer)
    assert texts(exported(client)) == {
        "Can I move my Booking to Friday?",
        "Reminder: appointment tomorrow",
        "We are running late",
    }
    assert exported(client, tenant__id__exact=log["sister_tenant"].pk) == []


def test_export_refuses_people_without_view_permission(client, log):
    staff_without_permissions = f.UserFactory(is_staff=True)
    client.force_login(staff_without_permissions)
    assert client.get(EXPORT).status_code == 403
    client.logout()
    assert client.get(EXPORT).status_code == 302  # to the sign-in page


def test_export_keeps_spreadsheets_from_running_texts_as_formulas(client, reseller_admin, reseller, tenant):
    account = f.WavixAccountFactory(reseller=reseller)
    f.MessageFactory(tenant=tenant, account=account, text='=HYPERLINK("http://evil.example","win")')
    client.force_login(reseller_admin)
    (row,) = exported(client)
    assert row["text"] == '\'=HYPERLINK("http://evil.example","win")'
    assert row["from"] == "+14155550100"  # a number's + is not a formula


def test_the_dashboards_per_tenant_link_opens_that_tenants_log(client, reseller_admin, log, tenant):
    client.force_login(reseller_admin)
    dashboard = client.get(reverse("admin:dashboard"))
    row = next(r for r in dashboard.context["rows"] if r.tenant == tenant)
    response = client.get(row.log_url)
    assert {m.tenant_id for m in response.context["cl"].result_list} == {tenant.pk}
    assert len(response.context["cl"].result_list) == 3


def test_the_log_shows_and_filters_each_texts_origin(client, reseller_admin, tenant):
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    for origin, to in (("portal", "+14155550101"), ("3cx", "+14155550102"), ("mirror", "+14155550103")):
        f.MessageFactory(tenant=tenant, account=account, origin=origin, to_number=to)
    client.force_login(reseller_admin)
    page = client.get("/admin/messaging/message/?origin=3cx").content.decode()
    assert "3CX (through the portal)" in page and "+14155550102" in page
    assert "+14155550101" not in page and "+14155550103" not in page
    rows = exported(client, origin="mirror")
    assert [(row["to"], row["origin"]) for row in rows] == [("+14155550103", "mirror")]


# --------------------------------------------------------------------------------------------------------------
# A text's lifecycle on its page
# --------------------------------------------------------------------------------------------------------------


def test_an_outbound_text_shows_each_step_of_its_life_in_order_and_what_is_still_to_come(reseller, tenant):
    from messaging.admin.records import lifecycle

    now = timezone.now()
    queued = f.MessageFactory(tenant=tenant, origin="3cx", status=Message.Status.QUEUED, created_at=now)
    steps = lifecycle(queued, [])
    assert [(name, at is not None) for name, at, _ in steps] == [
        ("Arrived from 3CX", True),
        ("Taken by a worker to send", False),
        ("Sent to Wavix", False),
        ("Queued", False),
    ]
    delivered = f.MessageFactory(
        tenant=tenant,
        status=Message.Status.DELIVERED,
        created_at=now - timedelta(seconds=9),
        send_started_at=now - timedelta(seconds=8),
        sent_at=now - timedelta(seconds=7),
        completed_at=now,
        wavix_message_id="wx-1",
    )
    report = {"status": "delivered", "received_at": now, "error": None, "note": ""}
    steps = lifecycle(delivered, [report])
    assert [name for name, *_ in steps] == [
        "Created in the portal",
        "Taken by a worker to send",
        "Sent to Wavix",
        "Report: delivered",
        "Delivered",
    ]
    assert all(at is not None for _, at, _ in steps) and steps[2][2] == "Wavix id wx-1"
    times = [at for _, at, _ in steps]
    assert times == sorted(times)


def test_an_inbound_text_shows_each_forward_to_3cx_with_its_answer(client, reseller_admin, tenant):
    now = timezone.now()
    text = f.MessageFactory(
        tenant=tenant, direction="inbound", status=Message.Status.FORWARDED, created_at=now, completed_at=now
    )
    trunk = f.TrunkFactory(tenant=tenant, name="Front desk")
    f.DeliveryFactory(message=text, trunk=trunk, status="delivered", attempts=2, last_status_code=200, delivered_at=now)
    client.force_login(reseller_admin)
    page = client.get(reverse("admin:messaging_message_change", args=[text.pk])).content.decode()
    assert '<ol class="lifecycle">' in page
    assert "Forward to Front desk" in page and "2 attempt(s); 3CX answered HTTP 200" in page
    assert page.index("Received from Wavix") < page.index("Forward to Front desk") < page.index("Forwarded to 3CX")
