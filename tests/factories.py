"""Factories for every model; rows are built the way the portal builds them (keys encrypted, clean data)."""

import factory
from django.contrib.auth import get_user_model

from messaging.models import (
    Delivery,
    Message,
    PhoneNumber,
    SenderID,
    SenderIDCountry,
    Trunk,
    WavixAccount,
    WebhookEvent,
)
from tenants.models import AuditEvent, Membership, Reseller, Tenant

PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    username = factory.SelfAttribute("email")
    password = factory.django.Password(PASSWORD)


class ResellerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Reseller

    name = factory.Sequence(lambda n: f"Reseller {n}")
    slug = factory.Sequence(lambda n: f"reseller-{n}")


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    reseller = factory.SubFactory(ResellerFactory)
    name = factory.Sequence(lambda n: f"Tenant {n}")
    slug = factory.Sequence(lambda n: f"tenant-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    role = Membership.Role.RESELLER_OPERATOR


class WavixAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WavixAccount

    reseller = factory.SubFactory(ResellerFactory)
    name = factory.Sequence(lambda n: f"Wavix account {n}")
    api_key = factory.Sequence(lambda n: f"wavix-test-key-{n:06d}-abcd")

    @classmethod
    def _create(cls, model_class, *args, api_key, **kwargs):
        account = model_class(*args, **kwargs)
        account.set_api_key(api_key)
        account.save()
        return account


class PhoneNumberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PhoneNumber

    account = factory.SubFactory(WavixAccountFactory)
    number = factory.Sequence(lambda n: f"+1415555{n % 10000:04d}")
    country = "US"
    sms_enabled = True
    status = "active"


class SenderIDFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SenderID

    tenant = factory.SubFactory(TenantFactory)
    account = factory.SubFactory(WavixAccountFactory, reseller=factory.SelfAttribute("..tenant.reseller"))
    type = SenderID.Type.ALPHANUMERIC
    value = factory.Sequence(lambda n: f"Sender{n:04d}")


class SenderIDCountryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SenderIDCountry

    sender = factory.SubFactory(SenderIDFactory)
    tenant = factory.SelfAttribute("sender.tenant")
    country = "GB"


class TrunkFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Trunk

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Trunk {n}")
    pbx_fqdn = factory.Sequence(lambda n: f"pbx{n}.3cx.example")


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    tenant = factory.SubFactory(TenantFactory)
    account = factory.SubFactory(WavixAccountFactory, reseller=factory.SelfAttribute("..tenant.reseller"))
    direction = Message.Direction.OUTBOUND
    from_number = "+14155550100"
    to_number = "+447400123456"
    text = "Hello"
    status = Message.Status.QUEUED


class WebhookEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WebhookEvent

    account = factory.SubFactory(WavixAccountFactory)
    kind = WebhookEvent.Kind.INBOUND
    dedup_key = factory.Sequence(lambda n: f"msg-{n}")
    body = b'{"message_id": "x"}'


class DeliveryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Delivery

    message = factory.SubFactory(MessageFactory, direction=Message.Direction.INBOUND, status=Message.Status.RECEIVED)
    tenant = factory.SelfAttribute("message.tenant")
    trunk = factory.SubFactory(TrunkFactory, tenant=factory.SelfAttribute("..message.tenant"))


def audit_event(obj, actor=None) -> AuditEvent:
    return AuditEvent.record(AuditEvent.Action.TENANT_STATUS, obj, actor=actor, changes={"test": True})


class SandboxAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "sandbox.SandboxAccount"

    name = factory.Sequence(lambda n: f"Sandbox account {n}")


class SandboxNumberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "sandbox.SandboxNumber"

    account = factory.SubFactory(SandboxAccountFactory)
    number = factory.Sequence(lambda n: f"1415555{n % 10000:04d}")
    country = "US"
    sms_enabled = True
