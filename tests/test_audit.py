"""The audit trail: each security-relevant action, done as a person does it, leaves exactly one row (who, when,
what, the change); the trail is append-only, read-only in the admin for everyone, filtered and exported as CSV
only within what the reader may see."""

import csv
import importlib
import io
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Max
from django.urls import reverse
from django.utils import timezone

from messaging.models import Delivery, SenderIDCountry, WavixAccount
from messaging.services import forwarding, senders
from tenants import services as people
from tenants.models import ApiToken, AuditEvent, Membership
from tests import factories as f
from tests.conftest import live_db, token_client

pytestmark = pytest.mark.django_db

AUDIT = reverse("admin:tenants_auditevent_changelist")
EXPORT = reverse("admin:tenants_auditevent_export")


class Recorded:
    event: AuditEvent


@contextmanager
def exactly_one_row(action: str):
    """The block must leave exactly one new audit row, of this action, stamped with the time it ran."""
    last = AuditEvent.objects.aggregate(last=Max("pk"))["last"] or 0
    started, recorded = timezone.now(), Recorded()
    yield recorded
    new = list(AuditEvent.objects.filter(pk__gt=last).order_by("pk"))
    assert [e.action for e in new] == [action], [(e.action, e.changes) for e in new]
    recorded.event = new[0]
    assert started <= recorded.event.created_at <= timezone.now()


@contextmanager
def no_row():
    count = AuditEvent.objects.count()
    yield
    assert AuditEvent.objects.count() == count


def assert_about(event: AuditEvent, obj, actor) -> None:
    assert (event.actor, event.actor_label) == (actor, actor.email)
    assert (event.object_type, event.object_id) == (obj._meta.label, str(obj.pk))


# --------------------------------------------------------------------------------------------------------------
# Keys and secrets
# --------------------------------------------------------------------------------------------------------------


@live_db
def test_setting_and_replacing_a_wavix_key_each_leave_one_row_and_never_the_key(
    client, reseller_admin, reseller, wavix
):
    first = f.SandboxAccountFactory(api_key="sbx_first_key_000000_Ab12")
    second = f.SandboxAccountFactory(api_key="sbx_second_key_00000_Cd34")
    client.force_login(reseller_admin)
    with exactly_one_row("api_key.set") as row:
        response = client.post(
            reverse("admin:messaging_wavixaccount_add"),
            {"reseller": reseller.pk, "name": "Main", "api_key": first.api_key, "send_rate_per_second": 10},
        )
        assert response.status_code == 302
    account = WavixAccount.objects.get()
    assert_about(row.event, account, reseller_admin)
    assert (row.event.reseller, row.event.changes) == (reseller, {"api_key_last4": "Ab12"})

    api = token_client(reseller_admin)
    with no_row():  # a rename is not a key change
        assert api.patch(f"/api/v1/wavix-accounts/{account.pk}/", {"name": "Renamed"}, format="json").status_code == 200
    with exactly_one_row("api_key.rotated") as row:
        patched = api.patch(f"/api/v1/wavix-accounts/{account.pk}/", {"api_key": second.api_key}, format="json")
        assert patched.status_code == 200
    assert_about(row.event, account, reseller_admin)
    assert row.event.changes == {"api_key_last4": "Cd34"}
    assert first.api_key not in str(row.event.changes) and second.api_key not in str(row.event.changes)


def test_rotating_a_webhook_secret_leaves_one_row(client, operator, tenant):
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    client.force_login(operator)
    with exactly_one_row("webhook_secret.rotated") as row:
        client.post(
            reverse("admin:messaging_wavixaccount_changelist"),
            {"action": "rotate_webhook_secret", "_selected_action": [account.pk]},
        )
    assert_about(row.event, account, operator)
    assert (row.event.tenant, row.event.changes) == (tenant, {"old_secrets_retire_in": "1 day, 0:00:00"})


# --------------------------------------------------------------------------------------------------------------
# Registration decisions and replays
# --------------------------------------------------------------------------------------------------------------


def test_a_reviewers_registration_decision_leaves_one_row(tenant):
    reviewer = f.UserFactory(is_staff=True)
    reviewer.groups.add(Group.objects.get(name="Platform reviewers"))
    registration = f.SenderIDCountryFactory(sender__tenant=tenant, country="IN", status="needs_documents")
    registration.transition(SenderIDCountry.Status.IN_REVIEW)
    registration.save()
    with exactly_one_row("registration.status") as row:
        senders.registration_decide(
            reviewer=reviewer, registration=registration, decision="reject", note="The letter is unsigned."
        )
    assert_about(row.event, registration, reviewer)
    assert (row.event.tenant, row.event.reseller) == (tenant, tenant.reseller)
    assert row.event.changes == {
        "country": "IN",
        "status": ["in_review", "rejected"],
        "note": "The letter is unsigned.",
    }


@pytest.fixture
def dead_delivery(tenant):
    trunk = f.TrunkFactory(tenant=tenant, name="Front desk")
    message = f.MessageFactory(tenant=tenant, trunk=trunk, direction="inbound", status="failed")
    return f.DeliveryFactory(message=message, trunk=trunk, status="dead", last_error="HTTP 503 from 3CX")


def test_a_replay_leaves_one_row_and_a_repeated_replay_none(client, operator, dead_delivery):
    client.force_login(operator)
    replay = {"action": "replay", "_selected_action": [dead_delivery.pk]}
    with exactly_one_row("delivery.replayed") as row:
        client.post(reverse("admin:messaging_delivery_changelist"), replay)
    assert_about(row.event, dead_delivery, operator)
    assert row.event.changes == {"from": "dead", "trunk": "Front desk", "last_error": "HTTP 503 from 3CX"}
    with no_row():  # the second click of a double click: already pending, nothing replayed
        client.post(reverse("admin:messaging_delivery_changelist"), replay)
        assert forwarding.delivery_replay(actor=operator, deliveries=Delivery.objects.all()) == 0


# --------------------------------------------------------------------------------------------------------------
# People and tokens
# --------------------------------------------------------------------------------------------------------------


def test_invite_acceptance_role_change_deactivation_and_reactivation_each_leave_one_row(
    client, reseller_admin, reseller
):
    client.force_login(reseller_admin)
    with exactly_one_row("member.invited") as row:
        client.post(
            reverse("admin:tenants_membership_add"),
            {
                "email": "ops@reseller.example",
                "first_name": "",
                "last_name": "",
                "organization": f"reseller:{reseller.pk}",
                "role": "reseller_operator",
            },
        )
    membership = Membership.objects.get(user__email="ops@reseller.example")
    assert_about(row.event, membership, reseller_admin)
    # The same for a new login and one that existed: nothing in the row tells them apart.
    assert row.event.changes == {
        "email": "ops@reseller.example",
        "role": "reseller_operator",
        "organization": "Reseller A",
    }
    with exactly_one_row("member.accepted") as row:
        people.invitation_accept(user=membership.user, membership=membership, new_password="a-long-new-passphrase")
        people.invitation_accept(user=membership.user, membership=membership)  # a double submit: one row
    assert_about(row.event, membership, membership.user)
    assert row.event.changes == {
        "email": "ops@reseller.example",
        "role": "reseller_operator",
        "organization": "Reseller A",
    }

    url = reverse("admin:tenants_membership_change", args=[membership.pk])
    with exactly_one_row("member.role_changed") as row:
        assert client.post(url, {"role": "reseller_admin", "is_active": "on"}).status_code == 302
    assert row.event.changes == {"role": ["reseller_operator", "reseller_admin"]}
    with exactly_one_row("member.deactivated") as row:
        assert client.post(url, {"role": "reseller_admin"}).status_code == 302
    assert_about(row.event, membership, reseller_admin)
    assert row.event.changes == {"is_active": [True, False]}
    with no_row():  # the same form sent again changes nothing
        assert client.post(url, {"role": "reseller_admin"}).status_code == 302
    with exactly_one_row("member.reactivated") as row:
        assert client.post(url, {"role": "reseller_admin", "is_active": "on"}).status_code == 302
    assert row.event.changes == {"is_active": [False, True]}
    with exactly_one_row("member.deactivated"):
        client.post(
            reverse("admin:tenants_membership_changelist"),
            {"action": "deactivate", "_selected_action": [membership.pk]},
        )


def test_two_requests_racing_to_change_a_member_leave_one_row_each_change(reseller_admin, operator):
    # Both requests read the membership before either wrote: the second must see the first one's change.
    first, second = (Membership.objects.get(user=operator) for _ in range(2))
    with exactly_one_row("member.deactivated"):
        people.member_set_active(actor=reseller_admin, membership=first, active=False)
        people.member_set_active(actor=reseller_admin, membership=second, active=False)
    first, second = (Membership.objects.get(user=operator) for _ in range(2))
    with exactly_one_row("member.role_changed"):
        people.member_change_role(actor=reseller_admin, membership=first, role="reseller_admin")
        people.member_change_role(actor=reseller_admin, membership=second, role="reseller_admin")


def test_creating_and_revoking_a_token_each_leave_one_row(client, reseller_admin, tenant):
    client.force_login(reseller_admin)
    with exactly_one_row("token.created") as row:
        response = client.post(reverse("admin:tenants_apitoken_add"), {"name": "billing export", "tenant": tenant.pk})
        assert response.status_code == 200
    token = ApiToken.objects.get()
    assert_about(row.event, token, reseller_admin)
    assert (row.event.tenant, row.event.changes) == (tenant, {"name": "billing export", "tenant": "Tenant A"})
    assert response.context["plaintext"] not in str(row.event.changes)

    stale = ApiToken.objects.get()  # a second request that read the token before the first revoked it
    revoke = {"action": "revoke", "_selected_action": [token.pk]}
    with exactly_one_row("token.revoked") as row:
        client.post(reverse("admin:tenants_apitoken_changelist"), revoke)
        client.post(reverse("admin:tenants_apitoken_changelist"), revoke)
        people.api_token_revoke(actor=reseller_admin, token=stale)
    token.refresh_from_db()
    assert_about(row.event, token, reseller_admin)
    assert row.event.changes == {"name": "billing export", "revoked_at": [None, token.revoked_at.isoformat()]}


def test_suspending_a_tenant_leaves_one_row(operator, tenant):
    api = token_client(operator)
    with exactly_one_row("tenant.status") as row:
        assert api.patch(f"/api/v1/tenants/{tenant.pk}/", {"status": "suspended"}, format="json").status_code == 200
    with no_row():
        assert api.patch(f"/api/v1/tenants/{tenant.pk}/", {"name": "Renamed"}, format="json").status_code == 200
    assert_about(row.event, tenant, operator)
    assert row.event.changes == {"status": ["active", "suspended"]}


# --------------------------------------------------------------------------------------------------------------
# Append-only
# --------------------------------------------------------------------------------------------------------------


def test_the_trail_refuses_every_change_and_deletion(tenant, operator):
    event = f.audit_event(tenant, actor=operator)
    for attempt in (
        event.save,
        event.delete,
        lambda: AuditEvent.objects.filter(pk=event.pk).update(action="x"),
        lambda: AuditEvent.objects.bulk_update([event], ["action"]),
        lambda: AuditEvent.objects.all().delete(),
    ):
        with pytest.raises(PermissionError, match="append-only"), transaction.atomic():
            attempt()
    assert AuditEvent.objects.get().action == "tenant.status"


def test_deleting_a_person_keeps_their_rows_under_their_email(tenant, operator):
    event = f.audit_event(tenant, actor=operator)
    email = operator.email
    operator.delete()
    event = AuditEvent.objects.get(pk=event.pk)
    assert (event.actor, event.actor_label) == (None, email)


# --------------------------------------------------------------------------------------------------------------
# The admin: read-only, filtered, exported, scoped
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def trail(tenant, other_tenant, reseller_admin, operator, other_admin):
    """Rows of both resellers: a token of each, a replay and a tenant change in A, a purge by the system."""
    people.api_token_create(actor=operator, name="a")
    people.api_token_create(actor=other_admin, name="b")
    tokens = AuditEvent.objects.filter(action="token.created")
    rows = {
        "a_token": tokens.get(actor=operator),
        "a_tenant": AuditEvent.record("tenant.status", tenant, actor=reseller_admin, changes={"status": ["a", "b"]}),
        "a_system": AuditEvent.record("retention.purged", tenant.reseller, changes={"messages": 3}),
        "b_token": tokens.get(actor=other_admin),
        "b_tenant": AuditEvent.record("tenant.status", other_tenant, actor=other_admin),
    }
    old = AuditEvent.objects.create(
        created_at=timezone.now() - timedelta(days=40),
        actor_label=reseller_admin.email,
        actor=reseller_admin,
        reseller=tenant.reseller,
        tenant=tenant,
        action="member.invited",
        object_type="tenants.Membership",
        object_id="1",
        object_repr='=HYPERLINK("http://evil.example")',
    )
    return {**rows, "a_old": old}


def listed(client, **params) -> set[int]:
    response = client.get(AUDIT, params)
    assert response.status_code == 200
    return {event.pk for event in response.context["cl"].result_list}


def exported(client, **params) -> list[dict]:
    response = client.get(EXPORT, params)
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8" and response["Cache-Control"].startswith("no-store")
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_admin_is_read_only_even_for_superusers(client, admin_user, trail):
    event = trail["a_token"]
    client.force_login(admin_user)
    page = client.get(reverse("admin:tenants_auditevent_change", args=[event.pk]))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert client.post(reverse("admin:tenants_auditevent_change", args=[event.pk]), {"action": "x"}).status_code == 403
    assert client.post(reverse("admin:tenants_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    assert client.get(reverse("admin:tenants_auditevent_add")).status_code == 403
    changelist = client.get(AUDIT)
    assert "delete_selected" not in changelist.content.decode()
    assert AuditEvent.objects.filter(pk=event.pk, action="token.created").exists()


def test_filters_by_action_actor_tenant_reseller_and_date(client, admin_user, trail, tenant, other_tenant, operator):
    client.force_login(admin_user)
    pk = {name: event.pk for name, event in trail.items()}
    assert listed(client, action__exact="token.created") == {pk["a_token"], pk["b_token"]}
    assert listed(client, actor=operator.email) == {pk["a_token"]}
    assert listed(client, actor="system") == {pk["a_system"]}
    assert listed(client, tenant__id__exact=other_tenant.pk) == {pk["b_tenant"]}
    assert listed(client, reseller__id__exact=tenant.reseller_id) == {
        pk["a_token"],
        pk["a_tenant"],
        pk["a_system"],
        pk["a_old"],
    }
    thirty_days_ago = (timezone.localdate() - timedelta(days=30)).isoformat()
    assert pk["a_old"] not in listed(client, created_from=thirty_days_ago)
    assert listed(client, created_to=thirty_days_ago) == {pk["a_old"]}


def test_a_reseller_sees_filters_and_exports_only_its_own_rows(client, reseller_admin, trail, other_tenant):
    client.force_login(reseller_admin)
    pk = {name: event.pk for name, event in trail.items()}
    mine = {pk["a_token"], pk["a_tenant"], pk["a_system"], pk["a_old"]}
    assert listed(client) == mine
    # Asking for the other reseller's rows by URL finds nothing, and the filters never offer them.
    assert listed(client, reseller__id__exact=other_tenant.reseller_id) == set()
    assert listed(client, tenant__id__exact=other_tenant.pk) == set()
    page = client.get(AUDIT).content.decode()
    assert "Reseller B" not in page and "Tenant B" not in page and trail["b_token"].actor_label not in page

    rows = exported(client)
    assert {int(row["object_id"]) for row in rows if row["action"] == "token.created"} == {
        int(trail["a_token"].object_id)
    }
    assert len(rows) == 4 and {row["reseller"] for row in rows} == {"Reseller A"}
    # The export follows the filters on screen.
    only_tenant = exported(client, action__exact="tenant.status")
    assert [(r["actor"], r["action"], r["tenant"], r["changes"]) for r in only_tenant] == [
        (trail["a_tenant"].actor_label, "tenant.status", "Tenant A", '{"status": ["a", "b"]}')
    ]
    assert list(exported(client, actor="system")[0]) == [
        "time",
        "actor",
        "action",
        "object_type",
        "object_id",
        "object",
        "reseller",
        "tenant",
        "changes",
    ]
    # A cell a spreadsheet would run as a formula is defused.
    assert exported(client, action__exact="member.invited")[0]["object"] == '\'=HYPERLINK("http://evil.example")'


def test_a_tenant_viewer_sees_only_its_tenants_rows_and_nobody_else_exports(client, viewer, trail, other_admin):
    client.force_login(viewer)
    assert listed(client) == {trail["a_tenant"].pk, trail["a_old"].pk}
    assert {row["action"] for row in exported(client)} == {"tenant.status", "member.invited"}
    client.logout()
    assert client.get(EXPORT).status_code == 302  # to the sign-in page


def test_the_audit_trails_old_admin_address_redirects_to_its_new_one(client, operator):
    client.force_login(operator)
    response = client.get("/admin/messaging/auditevent/?action=token.created")
    assert response.status_code == 301
    assert response["Location"] == f"{AUDIT}?action=token.created"
    assert client.get(response["Location"]).status_code == 200


def test_moving_the_audit_trail_to_tenants_carries_its_content_type_and_permissions():
    from django.apps import apps
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    migration = importlib.import_module("messaging.migrations.0024_delete_auditevent")
    moved = ContentType.objects.get(app_label="tenants", model="auditevent")
    ContentType.objects.filter(pk=moved.pk).update(app_label="messaging")  # as before the migration ran
    permissions = set(Permission.objects.filter(content_type=moved).values_list("pk", flat=True))
    assert permissions

    migration.content_type_to("tenants", "messaging")(apps, None)

    moved.refresh_from_db()
    assert moved.app_label == "tenants"
    assert set(Permission.objects.filter(content_type=moved).values_list("pk", flat=True)) == permissions

    stale = ContentType.objects.create(app_label="messaging", model="auditevent")  # a second migrate's leftover
    migration.content_type_to("tenants", "messaging")(apps, None)
    assert not ContentType.objects.filter(pk=stale.pk).exists()
    assert ContentType.objects.get(app_label="tenants", model="auditevent") == moved
    ContentType.objects.clear_cache()
