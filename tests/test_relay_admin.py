"""The relay in the admin: dead letters replayed one by one or since a time, trunk health, secret rotation."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from messaging.models import Delivery, Trunk
from tenants.models import AuditEvent
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def dead(tenant):
    trunk = f.TrunkFactory(tenant=tenant, name="Front desk", forward_failures=4, forward_error="HTTP 503 from 3CX")
    Trunk.objects.filter(pk=trunk.pk).update(forward_checked_at=timezone.now())
    deliveries = []
    for hours_ago in (5, 1):
        message = f.MessageFactory(
            tenant=tenant, trunk=trunk, direction="inbound", status="failed", text=f"{hours_ago}h ago"
        )
        delivery = f.DeliveryFactory(message=message, trunk=trunk, status="dead", last_error="HTTP 503 from 3CX")
        Delivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now() - timedelta(hours=hours_ago))
        deliveries.append(delivery)
    return trunk, deliveries


def test_operators_replay_selected_dead_letters_with_an_audit_row_each(client, operator, dead):
    trunk, deliveries = dead
    client.force_login(operator)
    response = client.post(
        reverse("admin:messaging_delivery_changelist"), {"action": "replay", "_selected_action": [deliveries[0].pk]}
    )
    assert response.status_code == 302
    assert Delivery.objects.get(pk=deliveries[0].pk).status == "pending"
    assert Delivery.objects.get(pk=deliveries[1].pk).status == "dead"
    assert AuditEvent.objects.filter(action="delivery.replayed", actor=operator).count() == 1


def test_replay_since_a_time_takes_only_what_failed_after_it(client, operator, dead):
    trunk, deliveries = dead
    client.force_login(operator)
    url = reverse("admin:messaging_trunk_replay_since", args=[trunk.pk])
    assert "2 text(s) to <strong>Front desk</strong> failed" in client.get(url).content.decode()
    since = (timezone.localtime() - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M")
    assert client.post(url, {"since": since}).status_code == 302
    assert [d.status for d in Delivery.objects.order_by("created_at")] == ["dead", "pending"]
    assert client.post(url, {"since": "yesterday-ish"}).status_code == 200  # refused with the expected format


def test_replay_is_not_for_viewers_nor_for_another_reseller(client, viewer, other_admin, dead):
    trunk, deliveries = dead
    url = reverse("admin:messaging_trunk_replay_since", args=[trunk.pk])
    client.force_login(other_admin)
    assert client.get(url).status_code == 404
    client.force_login(viewer)
    assert client.get(url).status_code == 403
    client.post(
        reverse("admin:messaging_delivery_changelist"), {"action": "replay", "_selected_action": [deliveries[0].pk]}
    )
    assert Delivery.objects.get(pk=deliveries[0].pk).status == "dead"


def test_trunk_and_tenant_pages_show_forwarding_health_in_words(client, operator, dead):
    trunk, _ = dead
    client.force_login(operator)
    for url in (
        reverse("admin:messaging_trunk_change", args=[trunk.pk]),
        reverse("admin:tenants_tenant_change", args=[trunk.tenant_id]),
    ):
        page = client.get(url).content.decode()
        assert "Unhealthy: 4 failures in a row — HTTP 503 from 3CX" in page and "0 waiting, 2 failed" in page
    tenant_page = client.get(reverse("admin:tenants_tenant_change", args=[trunk.tenant_id])).content.decode()
    assert "Last 24 h: 2 received · 0 forwarded · 2 failed · 0 held" in tenant_page


def test_rotating_the_webhook_secret_from_the_admin_is_audited(client, operator, tenant):
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    old = account.inbound_webhook_url
    client.force_login(operator)
    client.post(
        reverse("admin:messaging_wavixaccount_changelist"),
        {"action": "rotate_webhook_secret", "_selected_action": [account.pk]},
    )
    account.refresh_from_db()
    assert account.inbound_webhook_url != old
    assert AuditEvent.objects.filter(action="webhook_secret.rotated", actor=operator).count() == 1
