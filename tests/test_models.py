"""State machines, append-only audit, and constraints the database itself enforces."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from messaging.models import Delivery, IllegalTransition, Message, SenderIDCountry
from tenants.models import AuditEvent, Membership
from tests import factories as f

pytestmark = pytest.mark.django_db
S = Message.Status


@pytest.fixture
def outbound(tenant):
    return f.MessageFactory(tenant=tenant, status=S.QUEUED)


def test_an_outbound_message_walks_its_happy_path(outbound):
    for status in (S.SENDING, S.ACCEPTED, S.SENT, S.DELIVERED):
        outbound.transition(status)
    assert outbound.status == S.DELIVERED and outbound.completed_at is not None


@pytest.mark.parametrize("final", [S.DELIVERED, S.UNDELIVERED, S.EXPIRED, S.REJECTED, S.DLR_EXPIRED])
def test_a_final_status_never_changes(outbound, final):
    outbound.status = final
    for status in S.values:
        assert not outbound.can_transition(status)
    with pytest.raises(ValueError, match="is not allowed"):
        outbound.transition(S.SENT)


def test_a_late_sent_report_does_not_downgrade_delivered(outbound):
    outbound.status = S.ACCEPTED
    outbound.transition(S.DELIVERED)  # the final report overtook the interim one
    assert not outbound.can_transition(S.SENT)


def test_a_failed_outbound_message_is_never_resent_but_a_failed_inbound_one_is_replayable(tenant):
    outbound = f.MessageFactory(tenant=tenant, status=S.FAILED)
    inbound = f.MessageFactory(tenant=tenant, status=S.FAILED, direction="inbound")
    assert not outbound.can_transition(S.RECEIVED) and not outbound.can_transition(S.QUEUED)
    assert inbound.can_transition(S.RECEIVED)


def test_an_unknown_outcome_must_be_reconciled_before_a_resend(outbound):
    outbound.status = S.SENDING
    outbound.transition(S.UNKNOWN)
    assert not outbound.can_transition(S.SENDING)  # no direct resend
    assert outbound.can_transition(S.QUEUED) and outbound.can_transition(S.ACCEPTED)


def test_a_wavix_message_id_is_unique_per_account(tenant):
    first = f.MessageFactory(tenant=tenant, wavix_message_id="abc")
    f.MessageFactory(tenant=tenant, account=first.account, wavix_message_id="")
    f.MessageFactory(tenant=tenant, account=first.account, wavix_message_id="")  # blanks do not collide
    with pytest.raises(IntegrityError), transaction.atomic():
        f.MessageFactory(tenant=tenant, account=first.account, wavix_message_id="abc")


def test_registration_moves_follow_the_lifecycle(tenant):
    registration = f.SenderIDCountryFactory(sender__tenant=tenant, status=SenderIDCountry.Status.NEEDS_DOCUMENTS)
    with pytest.raises(IllegalTransition, match="cannot go from Needs documents to Approved"):
        registration.transition(SenderIDCountry.Status.APPROVED)
    registration.transition(SenderIDCountry.Status.IN_REVIEW)
    with pytest.raises(ValidationError, match="Say why"):
        registration.transition(SenderIDCountry.Status.REJECTED, note=" ")
    registration.transition(SenderIDCountry.Status.REJECTED, note="Certificate does not match the name.")
    assert registration.status == "rejected" and not registration.can_send


def test_the_audit_trail_is_append_only(tenant):
    event = f.audit_event(tenant)
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(action="x")
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get().action == AuditEvent.Action.TENANT_STATUS


def test_an_audit_row_names_its_reseller_and_tenant(tenant, reseller_admin):
    trunk = f.TrunkFactory(tenant=tenant)
    event = AuditEvent.record(AuditEvent.Action.WEBHOOK_URL_SET, trunk, actor=reseller_admin)
    assert (event.tenant, event.reseller, event.actor_label) == (tenant, tenant.reseller, reseller_admin.email)


def test_the_database_refuses_a_membership_whose_role_does_not_fit(reseller, tenant):
    user = f.UserFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.RESELLER_ADMIN)
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(user=user, reseller=reseller, tenant=tenant, role=Membership.Role.TENANT_VIEWER)


def test_a_delivery_moves_only_along_its_lifecycle(tenant):
    delivery = f.DeliveryFactory(message__tenant=tenant)
    delivery.transition(Delivery.Status.DEAD)
    with pytest.raises(IllegalTransition, match="dead → delivered is not allowed"):
        delivery.transition(Delivery.Status.DELIVERED)
    delivery.transition(Delivery.Status.PENDING)  # a replay
    delivery.transition(Delivery.Status.DELIVERED)
    assert delivery.delivered_at is not None
    with pytest.raises(IllegalTransition):
        delivery.transition(Delivery.Status.PENDING)  # a delivered one is never replayed
    assert Delivery.REPLAYABLE == {Delivery.Status.FAILED, Delivery.Status.DEAD}


def test_every_state_machine_refuses_with_one_exception_a_valueerror(tenant):
    message = f.MessageFactory(tenant=tenant, status=Message.Status.DELIVERED)
    with pytest.raises(IllegalTransition):
        message.transition(Message.Status.QUEUED)
    assert issubclass(IllegalTransition, ValueError)
