"""Retention: message texts, media links and raw webhook bodies are purged after each reseller's period, in
batches, daily; what counts and billing need stays, and each purge is on the audit trail."""

import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from messaging.admin.dashboard import Rate
from messaging.models import DailyMessageCount, Delivery, IdempotentRequest, Message, WebhookEvent
from messaging.services import retention
from messaging.tasks import message_counts_rollup, retention_purge
from tenants.models import AuditEvent, Reseller
from tests import factories as f

pytestmark = pytest.mark.django_db

S = Message.Status
SECRET = "Your biopsy results are ready"
METADATA = (
    "pk",
    "tenant_id",
    "direction",
    "from_number",
    "to_number",
    "status",
    "segments",
    "charge",
    "encoding",
    "wavix_message_id",
    "created_at",
    "sent_at",
    "completed_at",
    "error_code",
)


def ago(**kwargs):
    return timezone.now() - timedelta(**kwargs)


def inbound_body(message_id: str, text: str = SECRET) -> bytes:
    return json.dumps(
        {"message_id": message_id, "from": "+447400123456", "to": "+14155550100", "message_body": {"text": text}}
    ).encode()


def metadata() -> list[tuple]:
    return list(Message.objects.order_by("pk").values_list(*METADATA))


def rollup() -> set[tuple]:
    return set(
        DailyMessageCount.objects.values_list(
            "tenant_id", "day", "direction", "status", "origin", "mms", "count", "segments", "charge"
        )
    )


@pytest.fixture
def history(reseller, tenant):
    """Five days of a tenant's traffic, the retention period three days: what is done is old enough to purge."""
    reseller.message_retention_days = 3
    reseller.save()
    account = f.WavixAccountFactory(reseller=reseller, tenant=tenant)
    trunk = f.TrunkFactory(tenant=tenant)
    old = ago(days=5)

    def outbound(status, created=old, **fields):
        return f.MessageFactory(
            tenant=tenant, account=account, trunk=trunk, status=status, created_at=created, **fields
        )

    def inbound(status, state, key, created=old):
        event = f.WebhookEventFactory(
            account=account, tenant=tenant, dedup_key=key, body=inbound_body(key), state=state, received_at=created
        )
        message = f.MessageFactory(
            tenant=tenant,
            account=account,
            trunk=trunk,
            direction="inbound",
            status=status,
            text=SECRET,
            from_number="+447400123456",
            to_number="+14155550100",
            wavix_message_id=key,
            source_event=event,
            created_at=created,
        )
        return message, event

    rows = {
        "delivered": outbound(
            S.DELIVERED,
            text=SECRET,
            media=["https://cdn.example/scan.jpg"],
            segments=2,
            charge=Decimal("0.01230"),
            wavix_message_id="out-1",
            sent_at=old,
            completed_at=old + timedelta(seconds=4),
        ),
        "undelivered": outbound(S.UNDELIVERED, text=SECRET, wavix_message_id="out-2"),
        "outbound_failed": outbound(S.FAILED, text=SECRET, error_code="400"),
        "awaiting_report": outbound(S.SENT, text=SECRET, wavix_message_id="out-3"),  # not final: kept
        "recent": outbound(S.DELIVERED, created=ago(hours=2), text=SECRET, wavix_message_id="out-4"),
    }
    rows["forwarded"], rows["forwarded_event"] = inbound(S.FORWARDED, WebhookEvent.State.PROCESSED, "in-1")
    rows["replayable"], rows["replayable_event"] = inbound(S.FAILED, WebhookEvent.State.PROCESSED, "in-2")
    rows["held"], rows["held_event"] = inbound(S.HELD, WebhookEvent.State.HELD, "in-3")
    rows["report_event"] = f.WebhookEventFactory(
        account=account, kind="dlr", dedup_key="out-1:delivered", body=b'{"message_id": "out-1"}', state="processed"
    )
    rows["pending_event"] = f.WebhookEventFactory(account=account, body=inbound_body("in-4"), state="pending")
    WebhookEvent.objects.filter(pk__in=[rows["report_event"].pk, rows["pending_event"].pk]).update(received_at=old)
    rows["forward"] = f.DeliveryFactory(
        message=rows["forwarded"], trunk=trunk, status="delivered", last_response=f'{{"echo": "{SECRET}"}}'
    )
    rows["dead_forward"] = f.DeliveryFactory(
        message=rows["replayable"], trunk=trunk, status="dead", last_response="503 Service Unavailable"
    )
    Delivery.objects.update(created_at=old)
    IdempotentRequest.objects.create(
        tenant=tenant, key="order-1", request_hash="x", response_status=202, response={"text": SECRET}, created_at=old
    )
    return rows


def test_after_the_retention_period_texts_and_raw_payloads_are_gone_and_the_counts_remain(
    client, reseller_admin, reseller, tenant, history
):
    # Counted while five days ago was within retention, as the periodic count did each day then.
    Reseller.objects.filter(pk=reseller.pk).update(message_retention_days=90)
    message_counts_rollup(15)
    Reseller.objects.filter(pk=reseller.pk).update(message_retention_days=3)
    assert (
        tenant.pk,
        timezone.localdate(history["delivered"].created_at),
        "outbound",
        "delivered",
        "portal",
        True,
    ) in {row[:6] for row in rollup()}  # an MMS
    counts_before, metadata_before = rollup(), metadata()
    client.force_login(reseller_admin)
    dashboard = next(r for r in client.get(reverse("admin:dashboard")).context["rows"] if r.tenant == tenant)
    rates_before = (dashboard.rate_today, dashboard.rate_7d, dashboard.chart.columns)

    assert retention_purge() == 8  # 4 messages, 2 webhook bodies, 1 answer from 3CX, 1 stored API answer

    # Gone from the database: the text, the media links, the raw bodies, 3CX's echo, the stored API answer.
    purged = [history[k].pk for k in ("delivered", "undelivered", "outbound_failed", "forwarded")]
    assert list(Message.objects.filter(pk__in=purged).values_list("text", "media")) == [("", [])] * 4
    assert bytes(WebhookEvent.objects.get(pk=history["forwarded_event"].pk).body) == b""
    assert bytes(WebhookEvent.objects.get(pk=history["report_event"].pk).body) == b""
    assert Delivery.objects.get(pk=history["forward"].pk).last_response == ""
    assert not IdempotentRequest.objects.exists()
    # Still there: work under way (a text awaiting its report, a replayable or held inbound text and their
    # bodies, an unprocessed webhook), recent texts, and the reason a forward failed.
    kept = [history[k].pk for k in ("awaiting_report", "recent", "replayable", "held")]
    assert list(Message.objects.filter(pk__in=kept).values_list("text", flat=True)) == [SECRET] * 4
    for key in ("replayable_event", "held_event", "pending_event"):
        assert SECRET.encode() in bytes(WebhookEvent.objects.get(pk=history[key].pk).body)
    assert Delivery.objects.get(pk=history["dead_forward"].pk).last_response == "503 Service Unavailable"
    assert Message.objects.filter(text__contains="biopsy").count() == 4

    # Counts and billing: every message row with its status, segments, charge, numbers and times; the same rollup
    # and the same dashboard rates and chart.
    assert metadata() == metadata_before
    assert Message.objects.get(pk=history["delivered"].pk).charge == Decimal("0.01230")
    message_counts_rollup(15)
    assert rollup() == counts_before
    dashboard = next(r for r in client.get(reverse("admin:dashboard")).context["rows"] if r.tenant == tenant)
    assert (dashboard.rate_today, dashboard.rate_7d, dashboard.chart.columns) == rates_before
    assert dashboard.rate_7d == Rate(delivered=2, final=4)  # the purged texts of five days ago still count


def test_each_purge_is_one_audit_row_per_reseller_by_the_system(reseller, tenant, other_tenant, history):
    other_account = f.WavixAccountFactory(reseller=other_tenant.reseller, tenant=other_tenant)
    # The other reseller keeps 90 days: its five-day-old text stays, and it gets no audit row.
    f.MessageFactory(tenant=other_tenant, account=other_account, status=S.DELIVERED, created_at=ago(days=5))
    started = timezone.now()
    retention_purge()

    event = AuditEvent.objects.get(action=AuditEvent.Action.RETENTION_PURGED)
    assert (event.actor, event.actor_label, event.reseller, event.tenant) == (None, "system", reseller, None)
    assert (event.object_type, event.object_id) == ("tenants.Reseller", str(reseller.pk))
    cutoff = event.changes.pop("cutoff")
    assert event.changes == {
        "messages": 4,
        "webhook_bodies": 2,
        "delivery_responses": 1,
        "idempotent_answers": 1,
        "retention_days": 3,
    }
    assert started - timedelta(days=3) <= datetime.fromisoformat(cutoff) <= timezone.now() - timedelta(days=3)
    assert Message.objects.get(tenant=other_tenant).text == "Hello"

    # Nothing left to purge: the next run changes nothing and records nothing.
    assert retention_purge() == 0
    assert AuditEvent.objects.filter(action=AuditEvent.Action.RETENTION_PURGED).count() == 1


def test_a_message_that_becomes_final_later_is_purged_by_a_later_run(reseller, tenant, history):
    retention_purge()
    Message.objects.filter(pk=history["awaiting_report"].pk).update(status=S.DELIVERED)  # its report came late
    assert retention_purge() == 1
    assert Message.objects.get(pk=history["awaiting_report"].pk).text == ""
    assert AuditEvent.objects.filter(action=AuditEvent.Action.RETENTION_PURGED).count() == 2


def test_purging_runs_in_batches_of_a_thousand_rows(reseller, tenant):
    account = f.WavixAccountFactory(reseller=reseller, tenant=tenant)
    Message.objects.bulk_create(
        Message(
            tenant=tenant,
            account=account,
            direction="outbound",
            from_number="+14155550100",
            to_number="+447400123456",
            text=f"text {n}",
            status=S.DELIVERED,
            created_at=ago(days=100),
        )
        for n in range(2345)
    )
    with CaptureQueriesContext(connection) as queries:
        retention.reseller_content_purge(reseller)
    updates = [q["sql"] for q in queries if q["sql"].startswith('UPDATE "messaging_message"')]
    assert len(updates) == 3  # 1,000 + 1,000 + 345 rows, each statement its own primary-key range
    assert not Message.objects.exclude(text="").exists()


def test_the_platform_maximum_caps_a_period_chosen_before_it_was_lowered(settings, reseller, tenant):
    account = f.WavixAccountFactory(reseller=reseller, tenant=tenant)
    message = f.MessageFactory(tenant=tenant, account=account, status=S.DELIVERED, created_at=ago(days=45))
    assert reseller.message_retention_days == 90  # the default
    retention_purge()
    assert Message.objects.get(pk=message.pk).text == "Hello"

    settings.MESSAGE_RETENTION_MAX_DAYS = 30
    retention_purge()
    assert Message.objects.get(pk=message.pk).text == ""
    assert AuditEvent.objects.get(action=AuditEvent.Action.RETENTION_PURGED).changes["retention_days"] == 30


def test_audit_rows_are_never_purged(reseller, tenant, history):
    old = AuditEvent.objects.create(
        created_at=ago(days=800), actor_label="someone@example.com", reseller=reseller, action="token.created"
    )
    retention_purge()
    assert AuditEvent.objects.filter(pk=old.pk, actor_label="someone@example.com").exists()


# --------------------------------------------------------------------------------------------------------------
# Each reseller chooses its period in the admin, up to the platform's maximum
# --------------------------------------------------------------------------------------------------------------


def reseller_form(reseller, days) -> dict:
    prices = {"pricing": "markup", "markup_percent": "0", "currency": "USD"}
    return {"name": reseller.name, "slug": reseller.slug, "message_retention_days": days, **prices}


def test_a_reseller_admin_sets_the_retention_up_to_the_maximum(client, reseller_admin, reseller):
    url = reverse("admin:tenants_reseller_change", args=[reseller.pk])
    client.force_login(reseller_admin)
    page = client.get(url).content.decode()
    assert "At most 365 days." in page  # said before it is refused

    refused = client.post(url, reseller_form(reseller, 400))
    assert refused.status_code == 200
    assert "At most 365 days: the platform keeps message content no longer than that." in refused.content.decode()
    reseller.refresh_from_db()
    assert reseller.message_retention_days == 90

    assert client.post(url, reseller_form(reseller, 0)).status_code == 200  # at least one day
    assert client.post(url, reseller_form(reseller, 30)).status_code == 302
    reseller.refresh_from_db()
    assert reseller.message_retention_days == 30


def test_operators_and_other_resellers_cannot_change_the_retention(client, operator, other_admin, reseller):
    url = reverse("admin:tenants_reseller_change", args=[reseller.pk])
    client.force_login(operator)
    assert client.post(url, reseller_form(reseller, 7)).status_code == 403
    client.force_login(other_admin)
    assert client.post(url, reseller_form(reseller, 7)).status_code == 404
    reseller.refresh_from_db()
    assert reseller.message_retention_days == 90


def test_the_purge_runs_daily_on_beat_in_the_sync_queue():
    from portal.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["retention-purge"]
    assert entry["task"] == "messaging.tasks.retention_purge" and entry["task"] in app.tasks
    assert entry["options"]["queue"] == "sync"
    assert len(entry["schedule"].hour) == 1 and len(entry["schedule"].minute) == 1  # once a day


def test_a_picture_message_without_text_loses_its_media_links(reseller, tenant):
    account = f.WavixAccountFactory(reseller=reseller, tenant=tenant)
    mms = f.MessageFactory(
        tenant=tenant,
        account=account,
        status=S.DELIVERED,
        text="",
        media=["https://cdn.example/x.jpg"],
        created_at=ago(days=91),
    )
    assert retention_purge() == 1
    assert Message.objects.get(pk=mms.pk).media == []
    assert retention_purge() == 0
