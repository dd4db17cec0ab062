"""REST endpoints for accounts, numbers, trunks, sender IDs, messages, country rules and usage."""

import csv
import io
from datetime import timedelta

from django.core.exceptions import ValidationError
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins
from rest_framework import serializers as drf_serializers
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import GenericAPIView
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response

from messaging import serializers
from messaging.models import (
    CountryRule,
    DailyMessageCount,
    Delivery,
    Message,
    PhoneNumber,
    SenderID,
    Trunk,
    WavixAccount,
)
from messaging.services import accounts, forwarding, outbound, provider, senders, usage
from portal.spreadsheets import spreadsheet_safe
from tenants import access
from tenants.api import ScopedViewSet, django_errors_as_400, refuse_tenant_tokens
from tenants.authentication import token_tenant
from tenants.models import Tenant


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


class SyncRequest(drf_serializers.Serializer):
    wire = drf_serializers.BooleanField(
        default=True, help_text="Point SMS trunks' numbers at the portal (false: only report drift)."
    )


class ReplayRequest(drf_serializers.Serializer):
    since = drf_serializers.DateTimeField(
        required=False, allow_null=True, help_text="Only those that came since; all if left out."
    )


class WavixAccountViewSet(WriteViewSet):
    """Wavix accounts, with the portal's webhook URLs to give Wavix. The API key is write-only."""

    queryset = WavixAccount.objects.select_related("reseller", "tenant")
    serializer_class = serializers.WavixAccountSerializer

    def _managed(self, request, what: str) -> WavixAccount:
        account = self.get_object()  # 404 for another reseller's account
        refuse_tenant_tokens(request, what)
        if not access.can(request.user, "change", account):
            raise PermissionDenied(f"Only the reseller's admins and operators {what}.")
        return account

    @extend_schema(
        request=SyncRequest,
        responses={
            202: inline_serializer(
                "SyncQueued", {"queued": drf_serializers.BooleanField(), "wire": drf_serializers.BooleanField()}
            )
        },
    )
    @action(detail=True, methods=["post"])
    def sync(self, request, pk=None):
        """Compare with Wavix now, as the admin's "Sync now": numbers (with `wire`, the default, SMS trunks' numbers are
        pointed at the portal; without, drift is only reported) and sender-ID allow-listings. Queued: 202."""
        account = self._managed(request, "sync accounts")
        form = SyncRequest(data=request.data)
        form.is_valid(raise_exception=True)
        wire = form.validated_data["wire"]
        accounts.wavix_check_soon(account, wire=wire)
        return Response({"queued": True, "wire": wire}, status=202)

    @extend_schema(request=None, responses={201: serializers.WavixAccountSerializer})
    @action(detail=True, methods=["post"], url_path="webhook-secret")
    def webhook_secret(self, request, pk=None):
        """Rotate the account's webhook secret: new webhook URLs (in the answer), Wavix re-pointed at them; the old
        URLs keep working for 24 hours. Audited."""
        account = self._managed(request, "rotate webhook secrets")
        accounts.webhook_secret_rotate(actor=request.user, account=account)
        account.refresh_from_db()
        return Response(self.get_serializer(account).data, status=201)


class PhoneNumberViewSet(SavingViaServices, mixins.UpdateModelMixin, ReadViewSet):
    """Numbers on the reseller's Wavix accounts, and the tenant and trunk each is assigned to. PATCH assigns or
    unassigns one (`tenant`, `trunk`; null for none): a number newly serving a trunk with SMS on is pointed at the
    portal at Wavix soon after."""

    queryset = PhoneNumber.objects.select_related("account")  # whose relay URL each row may show: its reseller
    serializer_class = serializers.PhoneNumberSerializer

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return serializers.PhoneNumberAssignSerializer
        return serializers.PhoneNumberSerializer

    def update(self, request, *args, **kwargs):
        self.get_object()  # another reseller's number: 404 first, as for every method
        refuse_tenant_tokens(request, "assign numbers")  # before the body is read: its errors would tell things
        return super().update(request, *args, **kwargs)


class TrunkViewSet(WriteViewSet):
    """Tenants' 3CX trunks. The 3CX webhook URL is write-only; its hint shows host and last 4 characters."""

    queryset = Trunk.objects.prefetch_related("numbers")
    serializer_class = serializers.TrunkSerializer

    @extend_schema(
        request=None,
        responses={201: inline_serializer("ProviderKey", {"provider_key": drf_serializers.CharField()})},
    )
    @action(detail=True, methods=["post"], url_path="provider-key")
    def provider_key(self, request, pk=None):
        """Issue the trunk's 3CX provider key (its *Messaging API key*), shown only in this answer; older keys keep
        working for 24 h. Reseller managers only (never a tenant token: the key sends as the tenant)."""
        trunk = self.get_object()
        refuse_tenant_tokens(request, "issue provider keys")  # the key sends as the tenant
        if not access.can(request.user, "change", trunk):
            raise PermissionDenied("Only the reseller's admins and operators issue provider keys.")
        if trunk.sms_template != Trunk.SmsTemplate.GENERIC:
            raise drf_serializers.ValidationError(
                {"sms_template": ["Set the trunk's 3CX SMS template to generic first: only then does 3CX use a key."]}
            )
        return Response({"provider_key": provider.provider_key_issue(actor=request.user, trunk=trunk)}, status=201)

    @extend_schema(
        request=ReplayRequest,
        responses={200: inline_serializer("Replayed", {"replayed": drf_serializers.IntegerField()})},
    )
    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        """Replay the trunk's failed and dead-lettered deliveries to 3CX (since a time: "3CX was down from 14:00"), as
        the admin's "Replay since"; each replay audited."""
        trunk = self.get_object()
        if not access.can(request.user, "replay", Delivery):
            raise PermissionDenied("Only the reseller's admins and operators replay deliveries.")
        form = ReplayRequest(data=request.data)
        form.is_valid(raise_exception=True)
        failed = Delivery.objects.filter(trunk=trunk, status__in=Delivery.REPLAYABLE)
        if form.validated_data.get("since") is not None:
            failed = failed.filter(created_at__gte=form.validated_data["since"])
        return Response({"replayed": forwarding.delivery_replay(actor=request.user, deliveries=failed)})


class SenderIDViewSet(mixins.DestroyModelMixin, WriteViewSet):
    """Sender IDs and their per-country registration status. Registering needs type, value and countries. DELETE
    deletes one at Wavix, then here (refused while it is a trunk's Main Trunk No.); audited."""

    queryset = SenderID.objects.prefetch_related("countries")
    serializer_class = serializers.SenderIDSerializer

    def perform_destroy(self, instance) -> None:
        with django_errors_as_400():
            senders.sender_id_delete(actor=self.request.user, sender=instance)


class MessageViewSet(mixins.CreateModelMixin, ReadViewSet):
    """Messages in and out, newest first. POST sends: one text to `to`, or to each of `recipients` (bulk)."""

    queryset = Message.objects.all()
    serializer_class = serializers.MessageSerializer
    create_action = "send"

    @extend_schema(
        parameters=[OpenApiParameter("origin", str, enum=Message.Origin.values, description="Who asked for the text.")]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def get_queryset(self):
        rows = super().get_queryset()
        origin = self.request.query_params.get("origin")
        if self.action == "list" and origin:
            if origin not in Message.Origin.values:
                raise drf_serializers.ValidationError({"origin": [f"One of {', '.join(Message.Origin.values)}."]})
            rows = rows.filter(origin=origin)
        return rows

    def get_serializer_class(self):
        if self.action == "create":
            return serializers.MessageSendSerializer
        if self.action == "retrieve":
            return serializers.MessageDetailSerializer
        return serializers.MessageSerializer

    def _tenant(self, data) -> Tenant:
        tenant = token_tenant(self.request) or data.get("tenant") or getattr(data.get("trunk"), "tenant", None)
        if tenant is None:
            choices = list(access.tenants_for(self.request.user, "change")[:2])
            if len(choices) != 1:
                raise ValidationError({"tenant": "Name the tenant to send for."})
            tenant = choices[0]
        return tenant

    @extend_schema(
        request=serializers.MessageSendSerializer,
        responses={202: serializers.MessageSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key", str, OpenApiParameter.HEADER, description="The same key within 24 h: same answer."
            )
        ],
    )
    def create(self, request, *args, **kwargs):
        """Queue one message, or one per recipient; 202 with the message (or a result per recipient)."""
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        with django_errors_as_400():
            tenant = self._tenant(data)
            sender = outbound.sender_for(tenant, sender=data.get("sender"), trunk=data.get("trunk"))
            validity = timedelta(seconds=data["validity"]) if data.get("validity") else None
            common = {"tenant": tenant, "sender": sender, "text": data.get("text", ""), "media": data.get("media", [])}

            def produce() -> tuple[int, dict]:
                if "to" in data:
                    message = outbound.message_send(to=data["to"], validity=validity, **common)
                    return 202, serializers.MessageSerializer(message).data
                results = outbound.message_send_bulk(recipients=data["recipients"], validity=validity, **common)
                queued = sum("id" in r for r in results)
                return 202, {"queued": queued, "refused": len(results) - queued, "results": results}

            key = request.headers.get("Idempotency-Key", "").strip()[:200] or None
            status, body, replayed = outbound.idempotent(tenant, key, request.data, produce)
        response = Response(body, status=status)
        if replayed:
            response["Idempotent-Replayed"] = "true"
        return response


class CountryRuleViewSet(ReadViewSet):
    """Which sender types each destination country accepts, and which need registration."""

    queryset = CountryRule.objects.all()
    serializer_class = serializers.CountryRuleSerializer
    pagination_class = None  # about 240 rows, read whole by the setup pages


class UsageCSVRenderer(BaseRenderer):
    """The usage rows as CSV (?format=csv): a header of the JSON's field names, then a row per tenant. An error is
    written as field,error lines, so that a script reading the file sees why."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out)
        if isinstance(data, dict):  # an error: {"month": ["…"]} or {"detail": "…"}
            writer.writerow(["field", "error"])
            for name, errors in data.items():
                for error in errors if isinstance(errors, list) else [errors]:
                    writer.writerow([name, spreadsheet_safe(str(error))])
        else:
            writer.writerow(serializers.UsageSerializer().fields.keys())
            for row in data:
                writer.writerow([spreadsheet_safe("" if value is None else value) for value in row.values()])
        return out.getvalue().encode()


class UsageView(GenericAPIView):
    """Usage per tenant for a month, with the price to each customer: GET /api/v1/usage/?month=YYYY-MM."""

    queryset = DailyMessageCount.objects.all()  # who may read usage: whoever reads the rollup (tenants.access)
    serializer_class = serializers.UsageSerializer
    pagination_class = None  # a row per tenant, every one in the file
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, UsageCSVRenderer]

    @extend_schema(
        parameters=[
            OpenApiParameter("month", str, description="YYYY-MM; this month when left out.", pattern=r"^\d{4}-\d{2}$"),
            OpenApiParameter("format", str, enum=["json", "csv"], description="csv: the same rows as a CSV file."),
        ],
        responses={200: serializers.UsageSerializer(many=True)},
    )
    def get(self, request):
        """A row per tenant the caller sees (a tenant viewer or token: their own), from the daily rollup: texts out
        (those Wavix took) and in, Wavix's charge, and the price from the reseller's (or the tenant's own) terms."""
        with django_errors_as_400():
            month = usage.parse_month(request.query_params.get("month"))
        tenants = access.visible(request.user, Tenant)
        own = token_tenant(request)
        if own is not None:
            tenants = access.only_tenant(tenants, own)
        rows = usage.month_usage(tenants, month)

        def sees_costs(tenant: Tenant) -> bool:
            return access.may_see_costs(request.user, tenant, token_tenant=own)

        body = serializers.UsageSerializer(rows, many=True, context={"sees_costs": sees_costs}).data
        response = Response(body)
        if request.accepted_renderer.format == "csv":
            response["Content-Disposition"] = f'attachment; filename="usage-{month:%Y-%m}.csv"'
        response["Cache-Control"] = "no-store"
        return response
