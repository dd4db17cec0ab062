"""The API does what the admin does (issue 19): assign numbers, queue a sync, rotate webhook secrets, delete a sender
ID (at Wavix too), replay failed deliveries, invite people — with the admin's rules, errors and audit rows, and the
scoping every endpoint has: another reseller's rows answer 404, a tenant viewer 403, a tenant token 403 where the
operation is the reseller's own business."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from messaging.models import Delivery, PhoneNumber, SenderID
from sandbox.models import SandboxAccount, SandboxSenderID
from tenants.models import ApiToken, AuditEvent, Membership
from tests import factories as f
from tests.conftest import live_db, token_client


def tenant_token(admin, tenant):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {ApiToken.issue(admin, 'integration', tenant=tenant)[1]}")
    return client


@pytest.fixture
def shared(reseller):
    return f.WavixAccountFactory(reseller=reseller, tenant=None, name="Shared")


# --------------------------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_number_is_assigned_and_unassigned_with_the_admins_rules(operator, viewer, reseller_admin, tenant, shared):
    number = f.PhoneNumberFactory(account=shared, number="+14155550170", tenant=None, trunk=None)
    trunk = f.TrunkFactory(tenant=tenant, name="Front desk")
    elsewhere = f.TrunkFactory(tenant=f.TenantFactory(reseller=tenant.reseller, name="Other"), name="Theirs")
    api, url = token_client(operator), f"/api/v1/numbers/{number.pk}/"

    response = api.patch(url, {"tenant": tenant.pk, "trunk": trunk.pk}, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["tenant"], response.json()["trunk"], response.json()["number"]) == (
        tenant.pk,
        trunk.pk,
        "+14155550170",
    )
    number.refresh_from_db()
    assert (number.tenant, number.trunk) == (tenant, trunk)

    refused = api.patch(url, {"trunk": elsewhere.pk}, format="json")
    assert refused.status_code == 400
    assert refused.json()["trunk"] == ["This trunk belongs to another tenant: choose one of Tenant A's trunks."]
    # The tenant's viewer and its integration's token see the number, and cannot move it.
    for client in (token_client(viewer), tenant_token(reseller_admin, tenant)):
        assert client.get(url).status_code == 200
        assert client.patch(url, {"tenant": None, "trunk": None}, format="json").status_code == 403
    number.refresh_from_db()
    assert (number.tenant, number.trunk) == (tenant, trunk)

    assert api.patch(url, {"tenant": None}, format="json").status_code == 400  # its trunk first, as in the admin
    assert api.patch(url, {"tenant": None, "trunk": None}, format="json").json()["tenant"] is None


@pytest.mark.django_db
def test_a_number_cannot_go_to_another_resellers_tenant(operator, shared, other_tenant):
    number = f.PhoneNumberFactory(account=shared, tenant=None, trunk=None)
    response = token_client(operator).patch(f"/api/v1/numbers/{number.pk}/", {"tenant": other_tenant.pk}, format="json")
    assert response.status_code == 400 and "does not exist" in response.json()["tenant"][0]


# --------------------------------------------------------------------------------------------------------------
# Wavix accounts: sync and webhook secrets
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_sync_is_queued_as_from_the_admin(
    operator, viewer, reseller_admin, tenant, shared, django_capture_on_commit_callbacks
):
    api = token_client(operator)
    with django_capture_on_commit_callbacks() as queued:
        response = api.post(f"/api/v1/wavix-accounts/{shared.pk}/sync/", {}, format="json")
    assert (response.status_code, response.json()) == (202, {"queued": True, "wire": True})
    assert api.post(f"/api/v1/wavix-accounts/{shared.pk}/sync/", [], format="json").status_code == 400  # not an object
    assert len(queued) == 2  # numbers, and sender-ID allow-listings: what the admin's "Sync now" queues
    assert api.post(f"/api/v1/wavix-accounts/{shared.pk}/sync/", {"wire": "maybe"}, format="json").status_code == 400
    own = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    assert token_client(viewer).post(f"/api/v1/wavix-accounts/{own.pk}/sync/").status_code == 403
    assert tenant_token(reseller_admin, tenant).post(f"/api/v1/wavix-accounts/{own.pk}/sync/").status_code == 403


@pytest.mark.django_db
def test_a_webhook_secret_is_rotated_with_new_urls_and_an_audit_row(operator, viewer, tenant, shared, other_admin):
    api = token_client(operator)
    before = api.get(f"/api/v1/wavix-accounts/{shared.pk}/").json()["inbound_webhook_url"]
    response = api.post(f"/api/v1/wavix-accounts/{shared.pk}/webhook-secret/")
    assert response.status_code == 201
    assert response.json()["inbound_webhook_url"] != before and "•" not in response.json()["inbound_webhook_url"]
    assert AuditEvent.objects.filter(action=AuditEvent.Action.WEBHOOK_SECRET_ROTATED, actor=operator).count() == 1
    assert token_client(other_admin).post(f"/api/v1/wavix-accounts/{shared.pk}/webhook-secret/").status_code == 404
    own = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    assert token_client(viewer).post(f"/api/v1/wavix-accounts/{own.pk}/webhook-secret/").status_code == 403
    assert AuditEvent.objects.filter(action=AuditEvent.Action.WEBHOOK_SECRET_ROTATED).count() == 1


# --------------------------------------------------------------------------------------------------------------
# Replays
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_trunks_failed_deliveries_are_replayed_since_a_time(operator, viewer, tenant, other_admin):
    trunk = f.TrunkFactory(tenant=tenant)
    old = f.MessageFactory(tenant=tenant, direction="inbound", status="failed", trunk=trunk)
    new = f.MessageFactory(tenant=tenant, direction="inbound", status="failed", trunk=trunk)
    early = f.DeliveryFactory(message=old, trunk=trunk, status=Delivery.Status.DEAD)
    late = f.DeliveryFactory(message=new, trunk=trunk, status=Delivery.Status.FAILED)
    Delivery.objects.filter(pk=early.pk).update(created_at=timezone.now() - timedelta(hours=5))
    url = f"/api/v1/trunks/{trunk.pk}/replay/"
    assert token_client(viewer).post(url).status_code == 403
    assert token_client(other_admin).post(url).status_code == 404
    api = token_client(operator)
    bad = api.post(url, {"since": "yesterday"}, format="json")
    assert bad.status_code == 400 and "since" in bad.json()
    assert api.post(url, [1, 2], format="json").status_code == 400
    since = (timezone.now() - timedelta(hours=2)).isoformat()
    assert api.post(url, {"since": since}, format="json").json() == {"replayed": 1}
    assert Delivery.objects.get(pk=late.pk).status == Delivery.Status.PENDING
    assert Delivery.objects.get(pk=early.pk).status == Delivery.Status.DEAD
    assert api.post(url, {}, format="json").json() == {"replayed": 1}  # the rest: the early one
    assert AuditEvent.objects.filter(action=AuditEvent.Action.REPLAY, actor=operator).count() == 2


# --------------------------------------------------------------------------------------------------------------
# People
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_admin_invites_a_person_as_from_the_admin(reseller_admin, operator, viewer, tenant, other_tenant):
    api = token_client(reseller_admin)
    body = {"email": "Front.Desk@acme.example", "role": "tenant_viewer", "tenant": tenant.pk, "first_name": "Fran"}
    response = api.post("/api/v1/people/", body, format="json")
    assert response.status_code == 201, response.json()
    person = response.json()
    assert (person["email"], person["invitation"], person["is_active"], person["invitation_sent"]) == (
        "front.desk@acme.example",
        "pending",
        False,
        True,
    )
    assert mail.outbox[-1].to == ["front.desk@acme.example"]
    assert AuditEvent.objects.filter(action=AuditEvent.Action.MEMBER_INVITED, actor=reseller_admin).count() == 1

    again = api.post("/api/v1/people/", body, format="json")
    assert again.status_code == 400 and "already has a role" in again.json()["email"][0]
    wrong_role = api.post(
        "/api/v1/people/", {**body, "email": "x@acme.example", "role": "reseller_admin"}, format="json"
    )
    assert wrong_role.status_code == 400 and "tenant viewers" in str(wrong_role.json())
    both = {**body, "email": "y@acme.example", "reseller": tenant.reseller_id}
    assert api.post("/api/v1/people/", both, format="json").status_code == 400
    theirs = api.post("/api/v1/people/", {**body, "email": "z@acme.example", "tenant": other_tenant.pk}, format="json")
    assert theirs.status_code == 400 and "does not exist" in theirs.json()["tenant"][0]

    listed = {row["email"] for row in api.get("/api/v1/people/").json()["results"]}
    assert "front.desk@acme.example" in listed and reseller_admin.email in listed
    for refused in (token_client(operator), token_client(viewer), tenant_token(reseller_admin, tenant)):
        assert refused.post("/api/v1/people/", {**body, "email": "w@acme.example"}, format="json").status_code == 403
    assert token_client(viewer).get("/api/v1/people/").status_code == 403
    assert Membership.objects.filter(user__email="w@acme.example").count() == 0


# --------------------------------------------------------------------------------------------------------------
# Sender IDs: deleted at Wavix first (the sandbox, over HTTP)
# --------------------------------------------------------------------------------------------------------------


@live_db
def test_a_sender_id_is_deleted_at_wavix_then_here_or_not_at_all(operator, viewer, sandbox_account, tenant):
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant, api_key=sandbox_account.api_key)
    api = token_client(operator)
    created = api.post(
        "/api/v1/sender-ids/",
        {
            "tenant": tenant.pk,
            "account": account.pk,
            "type": "alphanumeric",
            "value": "AcmeDental",
            "countries": ["GB"],
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    url = f"/api/v1/sender-ids/{created.json()['id']}/"
    sender = SenderID.objects.get()
    trunk = f.TrunkFactory(tenant=tenant, name="Front desk", main_sender=sender)
    in_use = api.delete(url)
    assert in_use.status_code == 400 and "Main Trunk No. of Front desk" in in_use.json()["non_field_errors"][0]
    trunk.main_sender = None
    trunk.save()
    assert token_client(viewer).delete(url).status_code == 403

    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(failing_until=timezone.now() + timedelta(minutes=5))
    down = api.delete(url)
    assert down.status_code == 400 and "nothing was deleted" in down.json()["non_field_errors"][0]
    assert SenderID.objects.exists() and SandboxSenderID.objects.exists()

    SandboxAccount.objects.filter(pk=sandbox_account.pk).update(failing_until=None)
    assert api.delete(url).status_code == 204
    assert not SenderID.objects.exists() and not SandboxSenderID.objects.exists()
    assert AuditEvent.objects.filter(action=AuditEvent.Action.SENDER_ID_DELETED, actor=operator).count() == 1
    assert PhoneNumber.objects.count() == 0  # nothing else touched


# --------------------------------------------------------------------------------------------------------------
# Every new operation, scoped as the old ones are
# --------------------------------------------------------------------------------------------------------------

OPERATIONS = [
    ("patch", "numbers/{id}/", "messaging.phonenumber"),
    ("post", "wavix-accounts/{id}/sync/", "messaging.wavixaccount"),
    ("post", "wavix-accounts/{id}/webhook-secret/", "messaging.wavixaccount"),
    ("post", "trunks/{id}/replay/", "messaging.trunk"),
    ("delete", "sender-ids/{id}/", "messaging.senderid"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("method,route,label", OPERATIONS)
def test_each_new_operation_answers_404_for_another_reseller_and_403_to_a_viewer(
    tenant, reseller_admin, other_tenant, other_admin, viewer, method, route, label
):
    from tests.conftest import build_world

    mine, theirs = build_world(tenant, reseller_admin), build_world(other_tenant, other_admin)
    audit_before = AuditEvent.objects.count()
    body = {"tenant": None, "trunk": None} if method == "patch" else {}
    url = "/api/v1/" + route.format(id=theirs[label].pk)
    assert getattr(token_client(reseller_admin), method)(url, body, format="json").status_code == 404
    url = "/api/v1/" + route.format(id=mine[label].pk)
    assert getattr(token_client(viewer), method)(url, body, format="json").status_code == 403
    assert AuditEvent.objects.count() == audit_before
    assert type(mine[label]).objects.filter(pk=mine[label].pk).exists()
