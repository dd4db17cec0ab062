"""The reseller dashboard: scoped tenants, setup progress, health, delivery rates, the chart, alerts, and a
constant number of queries however many tenants there are; the daily rollup behind it."""

from datetime import datetime, time, timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from messaging.admin.dashboard import Rate, setup_steps_done
from messaging.models import DailyMessageCount, Delivery, Message, SenderIDCountry, Trunk
from messaging.services.setup import STEP_KEYS
from messaging.tasks import message_counts_rollup
from tests import factories as f

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("admin:dashboard")
S = Message.Status


def shared_account(reseller):
    return f.WavixAccountFactory(reseller=reseller, tenant=None)


def message(tenant, account, *, ago=timedelta(minutes=5), direction="outbound", status=S.DELIVERED, **fields):
    created = timezone.now() - ago
    return f.MessageFactory(
        tenant=tenant, account=account, direction=direction, status=status, created_at=created, **fields
    )


def since_early_today() -> timedelta:
    """How long ago it was one minute past midnight: a time that is today whenever the test runs."""
    early = timezone.make_aware(datetime.combine(timezone.localdate(), time(0, 1)))
    return timezone.now() - early


def row_of(response, tenant):
    return next(row for row in response.context["rows"] if row.tenant == tenant)


def alert_texts(response, tenant) -> list[str]:
    return [alert.text for alert in row_of(response, tenant).alerts]


# --------------------------------------------------------------------------------------------------------------
# Who sees which tenants
# --------------------------------------------------------------------------------------------------------------


def test_reseller_admin_lands_on_the_dashboard_of_their_own_tenants_only(client, reseller_admin, tenant, other_tenant):
    client.force_login(reseller_admin)
    response = client.get(reverse("admin:index"))
    page = response.content.decode()
    assert response.templates[0].name == "messaging/dashboard.html"
    assert [row.tenant for row in response.context["rows"]] == [tenant]
    assert "Tenant A" in page and "Tenant B" not in page and "Reseller B" not in page
    assert "Trunks" in page  # the list of admin pages is still there, under the dashboard


def test_searching_for_another_resellers_tenant_finds_nothing(client, reseller_admin, tenant, other_tenant):
    client.force_login(reseller_admin)
    response = client.get(DASHBOARD, {"q": "Tenant B"})
    assert response.context["rows"] == []
    assert reverse("admin:tenants_tenant_change", args=[other_tenant.pk]) not in response.content.decode()


def test_tenant_viewer_sees_only_their_tenant(client, viewer, tenant, reseller, other_tenant):
    f.TenantFactory(reseller=reseller, name="Sister tenant")
    client.force_login(viewer)
    response = client.get(reverse("admin:index"))
    assert [row.tenant for row in response.context["rows"]] == [tenant]


def test_platform_staff_keep_the_model_list_and_a_superuser_dashboard_shows_every_reseller(
    client, tenant, other_tenant
):
    root = f.UserFactory(is_staff=True, is_superuser=True)
    client.force_login(root)
    assert "rows" not in client.get(reverse("admin:index")).context
    response = client.get(DASHBOARD)
    assert {row.tenant for row in response.context["rows"]} == {tenant, other_tenant}


def test_search_by_name_and_pages_of_fifty(client, reseller_admin, reseller):
    for n in range(55):
        f.TenantFactory(reseller=reseller, name=f"Clinic {n:02d}")
    f.TenantFactory(reseller=reseller, name="Zebra Dental")
    client.force_login(reseller_admin)
    first = client.get(DASHBOARD)
    assert len(first.context["rows"]) == 50 and first.context["paginator"].count == 56
    second = client.get(DASHBOARD, {"page": 2})
    assert [row.tenant.name for row in second.context["rows"]][-1] == "Zebra Dental"
    assert [row.tenant.name for row in client.get(DASHBOARD, {"q": "zebra"}).context["rows"]] == ["Zebra Dental"]


# --------------------------------------------------------------------------------------------------------------
# Setup, health, rates, chart
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "progress, done",
    [
        ({"steps_done": ["sender", "countries", "threecx"]}, 3),
        ({"steps_done": ["sender", "sender", "verify", "unknown-step", 7]}, 2),
        ({"steps_done": "sender"}, 0),
        ({"current": "sender"}, 0),
        ({}, 0),
        (None, 0),
        (["sender"], 0),
    ],
)
def test_setup_progress_tolerates_whatever_the_trunk_holds(progress, done):
    assert setup_steps_done(progress) == done


def test_setup_shows_the_best_trunk_or_not_started(client, reseller_admin, reseller, tenant):
    f.TrunkFactory(tenant=tenant, name="Branch", setup_progress={"steps_done": ["sender"]})
    f.TrunkFactory(tenant=tenant, name="Head office", setup_progress={"steps_done": ["sender", "countries", "threecx"]})
    f.TrunkFactory(tenant=tenant, name="Odd", setup_progress={"steps_done": None})
    fresh = f.TenantFactory(reseller=reseller, name="Fresh")
    f.TrunkFactory(tenant=fresh, setup_progress={})
    client.force_login(reseller_admin)
    response = client.get(DASHBOARD)
    row = row_of(response, tenant)
    assert (row.setup_done, row.setup_trunk) == (3, "Head office")
    assert row_of(response, fresh).setup_done == 0
    page = response.content.decode()
    assert "3 of 6 steps" in page and "not started" in page


def test_health_last_inbound_last_forward_and_failing_deliveries(client, reseller_admin, reseller, tenant):
    account = shared_account(reseller)
    trunk = f.TrunkFactory(tenant=tenant)
    older = message(tenant, account, direction="inbound", status=S.FORWARDED, ago=timedelta(hours=5))
    newest = message(tenant, account, direction="inbound", status=S.FORWARDED, ago=timedelta(hours=1))
    message(tenant, account, status=S.DELIVERED, ago=timedelta(minutes=1))  # outbound: not "last inbound"
    forwarded_at = timezone.now() - timedelta(minutes=50)
    f.DeliveryFactory(message=older, trunk=trunk, status=Delivery.Status.DELIVERED, delivered_at=forwarded_at)
    for status, attempts in [("failed", 1), ("dead", 9), ("dead", 9), ("pending", 2), ("pending", 0)]:
        f.DeliveryFactory(message=newest, trunk=trunk, status=status, attempts=attempts)
    client.force_login(reseller_admin)
    row = row_of(client.get(DASHBOARD), tenant)
    assert row.last_inbound_at == newest.created_at
    assert row.last_forward_at == forwarded_at
    assert (row.gave_up, row.retrying) == (3, 1)


def test_delivery_rates_for_a_known_set_of_messages(client, reseller_admin, reseller, tenant):
    account = shared_account(reseller)
    recent = since_early_today()  # today, whatever the hour the test runs
    for status, n in [(S.DELIVERED, 6), (S.UNDELIVERED, 1), (S.REJECTED, 1), (S.EXPIRED, 1), (S.FAILED, 1)]:
        for _ in range(n):
            message(tenant, account, status=status, ago=recent)
    message(tenant, account, status=S.DLR_EXPIRED, ago=recent)
    # Not final yet, or not outbound: outside the rate.
    for status in (S.SENT, S.QUEUED, S.ACCEPTED):
        message(tenant, account, status=status, ago=recent)
    message(tenant, account, direction="inbound", status=S.FORWARDED, ago=recent)
    # Three days ago: in the 7-day rate only; ten days ago: in neither (but in the 14-day chart).
    for _ in range(4):
        message(tenant, account, status=S.DELIVERED, ago=timedelta(days=3))
    message(tenant, account, status=S.UNDELIVERED, ago=timedelta(days=3))
    message(tenant, account, status=S.UNDELIVERED, ago=timedelta(days=10))
    message_counts_rollup(15)

    client.force_login(reseller_admin)
    response = client.get(DASHBOARD)
    row = row_of(response, tenant)
    assert row.rate_today == Rate(delivered=6, final=11)
    assert row.rate_today.percent == 55
    assert row.rate_7d == Rate(delivered=10, final=16)
    assert row.rate_7d.percent == 62
    page = response.content.decode()
    assert "55 %" in page and "6/11" in page and "62 %" in page and "10/16" in page


def test_a_tenant_without_outbound_final_messages_has_no_rate(client, reseller_admin, tenant):
    client.force_login(reseller_admin)
    row = row_of(client.get(DASHBOARD), tenant)
    assert row.rate_today.percent is None and row.rate_7d.percent is None


def test_chart_counts_inbound_and_outbound_per_day_for_fourteen_days(client, reseller_admin, reseller, tenant):
    account = shared_account(reseller)
    for _ in range(3):
        message(tenant, account, direction="inbound", status=S.FORWARDED, ago=since_early_today())
    message(tenant, account, status=S.DELIVERED, ago=since_early_today())
    message(tenant, account, status=S.DELIVERED, ago=timedelta(days=13))
    message(tenant, account, status=S.DELIVERED, ago=timedelta(days=20))  # older than the chart
    message_counts_rollup(30)

    client.force_login(reseller_admin)
    response = client.get(DASHBOARD)
    columns = row_of(response, tenant).chart.columns
    assert len(columns) == 14
    assert (columns[-1].day, columns[-1].inbound, columns[-1].outbound) == (timezone.localdate(), 3, 1)
    assert (columns[0].inbound, columns[0].outbound) == (0, 1)
    assert sum(c.inbound + c.outbound for c in columns) == 5
    overall = response.context["chart"]
    assert (overall.columns[-1].inbound, overall.columns[-1].outbound, overall.peak) == (3, 1, 3)
    assert response.content.decode().count('class="bar-inbound"') >= 2  # drawn as inline SVG


# --------------------------------------------------------------------------------------------------------------
# Alerts
# --------------------------------------------------------------------------------------------------------------


def test_each_alert_appears_and_disappears_when_fixed(client, reseller_admin, reseller, tenant):
    account = shared_account(reseller)
    trunk = f.TrunkFactory(tenant=tenant, name="Main office")
    client.force_login(reseller_admin)
    assert alert_texts(client.get(DASHBOARD), tenant) == []

    # 3CX refuses forwards.
    Trunk.objects.filter(pk=trunk.pk).update(forward_failures=Trunk.UNHEALTHY_AFTER, forward_error="HTTP 500")
    assert any("Main office" in text and "HTTP 500" in text for text in alert_texts(client.get(DASHBOARD), tenant))
    Trunk.objects.filter(pk=trunk.pk).update(forward_failures=0, forward_error="")
    assert alert_texts(client.get(DASHBOARD), tenant) == []

    # Sent hours ago, no final report; a text sent minutes ago is not late yet.
    three_hours = timezone.now() - timedelta(hours=3)
    late = message(tenant, account, status=S.SENT, ago=timedelta(hours=3), sent_at=three_hours)
    message(tenant, account, status=S.ACCEPTED, ago=timedelta(minutes=20), sent_at=timezone.now())
    texts = alert_texts(client.get(DASHBOARD), tenant)
    assert texts == ["1 text(s) sent but no delivery report yet, the oldest for 3 h"]
    Message.objects.filter(pk=late.pk).update(status=S.DELIVERED)
    assert alert_texts(client.get(DASHBOARD), tenant) == []

    # A sender ID refused for a country.
    sender = f.SenderIDFactory(tenant=tenant, account=account, value="AcmeDental")
    country = f.SenderIDCountryFactory(sender=sender, country="IN", status=SenderIDCountry.Status.REJECTED)
    assert alert_texts(client.get(DASHBOARD), tenant) == ["Sender ID AcmeDental rejected for IN"]
    SenderIDCountry.objects.filter(pk=country.pk).update(status=SenderIDCountry.Status.IN_REVIEW)
    assert alert_texts(client.get(DASHBOARD), tenant) == []

    # A number whose relay URL at Wavix was changed elsewhere.
    number = f.PhoneNumberFactory(account=account, tenant=tenant, trunk=trunk, relay_drift=True)
    response = client.get(DASHBOARD)
    assert alert_texts(response, tenant) == ["1 number(s) relay their texts elsewhere than the portal (drift)"]
    assert row_of(response, tenant).alerts[0].url == reverse("admin:tenants_tenant_change", args=[tenant.pk])
    number.relay_drift = False
    number.save()
    assert alert_texts(client.get(DASHBOARD), tenant) == []


def test_alert_totals_and_the_only_alerts_filter(client, reseller_admin, reseller, tenant, other_tenant):
    calm = f.TenantFactory(reseller=reseller, name="Calm")
    f.TrunkFactory(tenant=tenant, forward_failures=5)
    f.TrunkFactory(tenant=other_tenant, forward_failures=5)  # another reseller's trouble is not counted
    other_account = f.WavixAccountFactory(reseller=other_tenant.reseller)
    f.PhoneNumberFactory(account=other_account, tenant=other_tenant, relay_drift=True)
    client.force_login(reseller_admin)
    response = client.get(DASHBOARD)
    assert response.context["alert_totals"] == {
        "not_forwarded": 0,
        "held": 0,
        "unhealthy": 1,
        "no_reports": 0,
        "rejected": 0,
        "needs_documents": 0,
        "drift": 0,
        "any": 1,
    }
    assert {row.tenant for row in response.context["rows"]} == {tenant, calm}
    only = client.get(DASHBOARD, {"alerts": "1"})
    assert [row.tenant for row in only.context["rows"]] == [tenant]


# --------------------------------------------------------------------------------------------------------------
# Speed: a constant number of queries
# --------------------------------------------------------------------------------------------------------------


def populate(reseller, count: int, start: int = 0) -> None:
    """Tenants with everything the dashboard reads: trunks, messages, deliveries and every kind of alert."""
    account = shared_account(reseller)
    for n in range(start, start + count):
        tenant = f.TenantFactory(reseller=reseller, name=f"Load {n:03d}")
        trunk = f.TrunkFactory(tenant=tenant, setup_progress={"steps_done": ["sender"]}, forward_failures=n % 4)
        inbound = message(tenant, account, direction="inbound", status=S.FORWARDED)
        message(tenant, account, direction="inbound", status=S.HELD, not_forwarded_reason=f"{tenant} is suspended")
        message(tenant, account, direction="inbound", status=S.NOT_FORWARDED, not_forwarded_reason="no trunk")
        message(tenant, account, status=S.SENT, ago=timedelta(hours=4), sent_at=timezone.now() - timedelta(hours=4))
        f.DeliveryFactory(message=inbound, trunk=trunk, status="dead", attempts=3)
        sender = f.SenderIDFactory(tenant=tenant, account=account)
        f.SenderIDCountryFactory(sender=sender, status=SenderIDCountry.Status.REJECTED)
        f.PhoneNumberFactory(account=account, tenant=tenant, relay_drift=True, number=f"+1415556{n:04d}")
    message_counts_rollup(15)


def dashboard_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(DASHBOARD)
    assert response.status_code == 200
    return len(queries)


def test_queries_do_not_grow_with_the_number_of_tenants(
    client, reseller_admin, reseller, django_assert_max_num_queries
):
    client.force_login(reseller_admin)
    populate(reseller, 3)
    with_three = dashboard_queries(client)
    populate(reseller, 27, start=3)
    with_thirty = dashboard_queries(client)
    assert with_three == with_thirty
    # 20: the sidebar's count of failed deliveries (messaging.admin.navigation) and today's live total are two
    # 21 since issue 19: the reseller's brand (tenants.branding), read once per page.
    with django_assert_max_num_queries(21):
        response = client.get(DASHBOARD)
    assert len(response.context["rows"]) == 30
    assert all(len(row.alerts) >= 3 for row in response.context["rows"])


# --------------------------------------------------------------------------------------------------------------
# The daily rollup
# --------------------------------------------------------------------------------------------------------------


def rollup_rows() -> set[tuple]:
    return set(DailyMessageCount.objects.values_list("tenant_id", "day", "direction", "status", "count"))


def test_rollup_recomputation_is_idempotent_and_replaces_only_recent_days(reseller, tenant, other_tenant):
    account = shared_account(reseller)
    other_account = f.WavixAccountFactory(reseller=other_tenant.reseller)
    today = timezone.localdate()
    first = message(tenant, account, status=S.SENT, ago=since_early_today())
    message(tenant, account, status=S.SENT, ago=since_early_today())
    message(tenant, account, direction="inbound", status=S.FORWARDED, ago=since_early_today())
    message(other_tenant, other_account, status=S.DELIVERED, ago=since_early_today())
    old = message(tenant, account, status=S.DELIVERED, ago=timedelta(days=5))

    assert message_counts_rollup(10) == 4
    once = rollup_rows()
    assert message_counts_rollup(10) == 4
    assert rollup_rows() == once
    assert (tenant.pk, today, "outbound", "sent", 2) in once
    assert (tenant.pk, today, "inbound", "forwarded", 1) in once
    assert (other_tenant.pk, today, "outbound", "delivered", 1) in once

    # A delivery report changes a status: the day is counted again, not added to.
    Message.objects.filter(pk=first.pk).update(status=S.DELIVERED)
    Message.objects.filter(pk=old.pk).update(status=S.UNDELIVERED)
    message_counts_rollup(2)
    after = rollup_rows()
    assert (tenant.pk, today, "outbound", "sent", 1) in after
    assert (tenant.pk, today, "outbound", "delivered", 1) in after
    # Five days ago lies outside a two-day recomputation: its row stays as it was.
    five_days_ago = today - timedelta(days=5)
    assert (tenant.pk, five_days_ago, "outbound", "delivered", 1) in after
    message_counts_rollup(10)
    assert (tenant.pk, five_days_ago, "outbound", "undelivered", 1) in rollup_rows()


def test_rollup_runs_on_beat_in_the_sync_queue():
    entries = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"].endswith("message_counts_rollup")]
    assert {e["args"] for e in entries} == {(2,), (15,)}
    assert all(e["options"]["queue"] == "sync" for e in entries)


# --------------------------------------------------------------------------------------------------------------
# What to do next
# --------------------------------------------------------------------------------------------------------------


def next_actions(response) -> list[tuple[str, str, str, str]]:
    return [(tenant.name, level, action.text, action.url) for tenant, action, level in response.context["next_actions"]]


def test_the_next_actions_link_to_where_each_is_done(client, reseller_admin, reseller, tenant, other_tenant):
    account = shared_account(reseller)
    trunk = f.TrunkFactory(tenant=tenant, name="Front desk", setup_progress={"steps_done": ["sender", "countries"]})
    f.TrunkFactory(tenant=tenant, name="Done", setup_progress={"steps_done": list(STEP_KEYS)})
    bare = f.TenantFactory(reseller=reseller, name="Bare")
    sender = f.SenderIDFactory(tenant=tenant, account=account, value="AcmeDental")
    papers = f.SenderIDCountryFactory(
        sender=sender, country="IN", status=SenderIDCountry.Status.NEEDS_DOCUMENTS, note="A DLT registration letter."
    )
    f.TrunkFactory(tenant=other_tenant, setup_progress={})  # another reseller's unfinished setup is not listed
    client.force_login(reseller_admin)
    response = client.get(DASHBOARD)
    actions = next_actions(response)
    assert actions == [
        (
            tenant.name,
            "problem",
            "Sender ID AcmeDental for IN: the reviewer asked for documents: A DLT registration letter.",
            reverse("admin:messaging_senderidcountry_documents", args=[papers.pk]),
        ),
        (
            "Bare",
            "todo",
            "No 3CX trunk yet: add one to start the SMS setup",
            reverse("admin:messaging_trunk_add") + f"?tenant={bare.pk}",
        ),
        (
            tenant.name,
            "todo",
            "Trunk Front desk: finish the SMS setup — step 3 of 6, 3CX trunk",
            reverse("admin:messaging_trunk_setup_step", args=[trunk.pk, "threecx"]),
        ),
    ]  # problems first, then work left
    page = response.content.decode()
    assert "Upload documents" in page and "Continue setup" in page and "Add a trunk" in page
    # Done, it leaves the list.
    SenderIDCountry.objects.filter(pk=papers.pk).update(status=SenderIDCountry.Status.IN_REVIEW)
    Trunk.objects.filter(pk=trunk.pk).update(setup_progress={"steps_done": list(STEP_KEYS)})
    assert [a[0] for a in next_actions(client.get(DASHBOARD))] == ["Bare"]


def test_a_tenant_viewer_reads_the_next_actions_without_buttons_they_cannot_use(client, viewer, tenant, reseller):
    account = shared_account(reseller)
    f.TrunkFactory(tenant=tenant, setup_progress={"steps_done": ["sender"]})
    sender = f.SenderIDFactory(tenant=tenant, account=account)
    f.SenderIDCountryFactory(sender=sender, country="IN", status=SenderIDCountry.Status.NEEDS_DOCUMENTS)
    client.force_login(viewer)
    response = client.get(DASHBOARD)
    actions = next_actions(response)
    assert len(actions) == 2 and all(url == "" for *_, url in actions)
    page = response.content.decode()
    assert "Continue setup" not in page and "Upload documents" not in page and "your reseller sees this too" in page


def test_a_text_3cx_sent_that_the_portal_refused_is_a_problem_for_a_day(client, reseller_admin, tenant):
    trunk = f.TrunkFactory(tenant=tenant, name="Front desk", setup_progress={"steps_done": list(STEP_KEYS)})
    Trunk.objects.filter(pk=trunk.pk).update(
        provider_refusal="+447700900123 opted out (STOP)", provider_refused_at=timezone.now() - timedelta(minutes=5)
    )
    client.force_login(reseller_admin)
    [(_, level, text, url)] = next_actions(client.get(DASHBOARD))
    assert level == "problem" and "refused a text 3CX sent 5 min ago — +447700900123 opted out (STOP)" in text
    assert url == reverse("admin:messaging_trunk_setup_step", args=[trunk.pk, "verify"])
    Trunk.objects.filter(pk=trunk.pk).update(provider_refused_at=timezone.now() - timedelta(hours=25))
    assert next_actions(client.get(DASHBOARD)) == []


def test_today_and_seven_days_agree_with_each_other_and_with_the_log(client, reseller_admin, reseller, tenant):
    """Today is live; the 6 days before come from the rollup. A rollup that has not run since today's texts must
    not make 7 days show fewer than today (seen: "today 9/10" beside "7 d 6/7")."""
    account = shared_account(reseller)
    message(tenant, account, status=S.DELIVERED, ago=timedelta(days=2))
    message_counts_rollup(15)
    for status in [S.DELIVERED] * 9 + [S.UNDELIVERED]:  # after the last rollup
        message(tenant, account, status=status, ago=since_early_today())
    client.force_login(reseller_admin)
    row = row_of(client.get(DASHBOARD), tenant)
    assert row.rate_today == Rate(delivered=9, final=10)
    assert row.rate_7d == Rate(delivered=10, final=11)
    in_the_log = Message.objects.filter(
        tenant=tenant, direction="outbound", created_at__gte=timezone.now() - timedelta(days=6, hours=23)
    )
    assert row.rate_7d.final == in_the_log.count()
    assert row.chart.columns[-1].outbound == 10  # today's bar is the live count too


def test_a_request_for_documents_is_e_mailed_with_the_link_to_upload_them(
    reseller_admin, tenant, reseller, settings, django_capture_on_commit_callbacks
):
    from django.core import mail

    from messaging.services.senders import registration_set_status

    settings.PUBLIC_BASE_URL = "https://portal.example"
    sender = f.SenderIDFactory(tenant=tenant, account=shared_account(reseller))
    registration = f.SenderIDCountryFactory(sender=sender, country="IN", status=SenderIDCountry.Status.IN_REVIEW)
    with django_capture_on_commit_callbacks(execute=True):
        registration_set_status(
            actor=None, registration=registration, status=SenderIDCountry.Status.NEEDS_DOCUMENTS, note="A licence."
        )
    [sent] = mail.outbox
    link = "https://portal.example" + reverse("admin:messaging_senderidcountry_documents", args=[registration.pk])
    assert sent.to == [reseller_admin.email] and link in sent.body
