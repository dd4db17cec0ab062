"""REST endpoints for accounts, numbers, trunks, sender IDs, messages and country rules."""

from rest_framework import mixins

from messaging import serializers
from messaging.models import CountryRule, Message, PhoneNumber, SenderID, Trunk, WavixAccount
from tenants.api import ScopedViewSet, django_errors_as_400


class SavingViaServices:
    """Create and update go through the serializer's service call; its ValidationErrors become 400s."""

    def perform_create(self, serializer) -> None:
        with django_errors_as_400():
            serializer.save()

    def perform_update(self, serializer) -> None:
        with django_errors_as_400():
            serializer.save()


class ReadViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    pass


class WriteViewSet(SavingViaServices, mixins.CreateModelMixin, mixins.UpdateModelMixin, ReadViewSet):
    pass


class WavixAccountViewSet(WriteViewSet):
    """Wavix accounts, with the portal's webhook URLs to give Wavix. The API key is write-only."""

    queryset = WavixAccount.objects.select_related("reseller", "tenant")
    serializer_class = serializers.WavixAccountSerializer


class PhoneNumberViewSet(ReadViewSet):
    """Numbers on the reseller's Wavix accounts, and the tenant and trunk each is assigned to."""

    queryset = PhoneNumber.objects.all()
    serializer_class = serializers.PhoneNumberSerializer


class TrunkViewSet(WriteViewSet):
    """Tenants' 3CX trunks. The 3CX webhook URL is write-only; its hint shows host and last 4 characters."""

    queryset = Trunk.objects.prefetch_related("numbers")
    serializer_class = serializers.TrunkSerializer


class SenderIDViewSet(WriteViewSet):
    """Sender IDs and their per-country registration status. Registering needs type, value and countries."""

    queryset = SenderID.objects.prefetch_related("countries")
    serializer_class = serializers.SenderIDSerializer


class MessageViewSet(ReadViewSet):
    """Messages in and out, newest first."""

    queryset = Message.objects.all()
    serializer_class = serializers.MessageSerializer


class CountryRuleViewSet(ReadViewSet):
    """Which sender types each destination country accepts, and which need registration."""

    queryset = CountryRule.objects.all()
    serializer_class = serializers.CountryRuleSerializer
    pagination_class = None  # about 240 rows, read whole by the setup pages
