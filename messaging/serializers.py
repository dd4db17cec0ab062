import json

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from messaging.models import (
    CountryRule,
    Message,
    PhoneNumber,
    SenderID,
    SenderIDCountry,
    Trunk,
    WavixAccount,
    WebhookEvent,
    url_shown_to,
)
from messaging.services.accounts import phone_number_save, trunk_save, wavix_account_save
from messaging.services.senders import sender_id_register
from messaging.wavix import explain
from tenants import access
from tenants.authentication import token_tenant
from tenants.models import Reseller, Tenant
from tenants.serializers import ScopedRelatedField


class WebhookUrlField(serializers.CharField):
    """A URL that may hold the portal's webhook secret: whole for those who may see it, else masked (•••)."""

    def __init__(self, **kwargs):
        super().__init__(read_only=True, **kwargs)

    def get_attribute(self, instance) -> str:
        url = super().get_attribute(instance) or ""
        request = self.context.get("request")  # without one, nobody is asking: masked
        return url_shown_to(getattr(request, "user", None), instance, url, token_tenant=token_tenant(request))


class WavixAccountSerializer(serializers.ModelSerializer):
    reseller = ScopedRelatedField(queryset=Reseller.objects.all(), required=False)
    tenant = ScopedRelatedField(
        queryset=Tenant.objects.all(),
        required=False,
        allow_null=True,
        help_text="Empty: shared by the reseller's tenants.",
    )
    api_key = serializers.CharField(
        write_only=True, required=False, trim_whitespace=True, help_text="Stored encrypted; never returned."
    )
    api_key_last4 = serializers.CharField(read_only=True)
    inbound_webhook_url = WebhookUrlField(
        help_text="Where Wavix sends inbound messages. Its secret is masked (•••) but for the reseller's admins and "
        "operators."
    )
    dlr_webhook_url = WebhookUrlField(
        help_text="Where Wavix sends delivery reports. Its secret is masked (•••) but for the reseller's admins and "
        "operators."
    )

    class Meta:
        model = WavixAccount
        fields = [
            "id",
            "reseller",
            "tenant",
            "name",
            "api_key",
            "api_key_last4",
            "send_rate_per_second",
            "wavix_sub_account_id",
            "inbound_webhook_url",
            "dlr_webhook_url",
            "created_at",
        ]
        read_only_fields = ["created_at"]
        validators: list[object] = []  # uniqueness is checked by the model once the reseller is known

    def validate(self, attrs):
        if self.instance is None and "reseller" not in attrs:
            resellers = list(self.fields["reseller"].get_queryset()[:2])
            if len(resellers) != 1:
                raise serializers.ValidationError({"reseller": "Choose the reseller that owns this account."})
            attrs["reseller"] = resellers[0]
        if self.instance is not None and attrs.get("reseller", self.instance.reseller) != self.instance.reseller:
            raise serializers.ValidationError({"reseller": "An account cannot move to another reseller."})
        return attrs

    def save(self, **kwargs):
        api_key = self.validated_data.pop("api_key", None)
        account = self.instance or WavixAccount()
        for field, value in self.validated_data.items():
            setattr(account, field, value)
        self.instance = wavix_account_save(actor=self.context["request"].user, account=account, api_key=api_key)
        return self.instance


class PhoneNumberSerializer(serializers.ModelSerializer):
    # Once wired, the account's inbound webhook URL; after drift, another system's URL: both only to managers.
    sms_relay_url = WebhookUrlField(
        help_text="Where Wavix sends the number's inbound texts; masked but for the reseller's admins and operators."
    )

    class Meta:
        model = PhoneNumber
        fields = [
            "id",
            "account",
            "tenant",
            "trunk",
            "number",
            "country",
            "sms_enabled",
            "status",
            "sms_relay_url",
            "label",
            "tendlc_status",
            "synced_at",
        ]
        read_only_fields = fields


class PhoneNumberAssignSerializer(serializers.ModelSerializer):
    """PATCH a number: the tenant and the trunk it serves (null for none), by the same rules as the admin's form."""

    tenant = ScopedRelatedField(queryset=Tenant.objects.all(), allow_null=True, required=False)
    trunk = ScopedRelatedField(queryset=Trunk.objects.all(), allow_null=True, required=False)

    class Meta:
        model = PhoneNumber
        fields = ["tenant", "trunk"]

    def update(self, instance, validated_data):
        for name, value in validated_data.items():
            setattr(instance, name, value)
        return phone_number_save(number=instance)

    def to_representation(self, instance):
        return PhoneNumberSerializer(instance, context=self.context).data


class TrunkSerializer(serializers.ModelSerializer):
    tenant = ScopedRelatedField(queryset=Tenant.objects.all())
    main_sender = ScopedRelatedField(queryset=SenderID.objects.all(), required=False, allow_null=True)
    threecx_webhook_url = serializers.CharField(
        write_only=True, required=False, allow_blank=True, help_text="3CX's webhook URL; stored encrypted."
    )
    threecx_webhook_url_hint = serializers.CharField(read_only=True)
    numbers = serializers.SlugRelatedField(slug_field="number", many=True, read_only=True)
    provider_url = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="3CX's Provider URL on the Generic template (null on the Wavix template): 3CX POSTs its users' "
        "texts here with the provider key (POST …/provider-key/ issues one).",
    )

    class Meta:
        model = Trunk
        fields = [
            "id",
            "tenant",
            "name",
            "pbx_fqdn",
            "pbx_version",
            "main_sender",
            "sms_template",
            "sms_enabled",
            "provider_url",
            "status_events",
            "threecx_webhook_url",
            "threecx_webhook_url_hint",
            "numbers",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        validators: list[object] = []  # uniqueness is checked by the model, with the same message as in the admin

    def validate(self, attrs):
        if self.instance is not None and attrs.get("tenant", self.instance.tenant) != self.instance.tenant:
            raise serializers.ValidationError({"tenant": "A trunk cannot move to another tenant."})
        return attrs

    def save(self, **kwargs):
        url = self.validated_data.pop("threecx_webhook_url", None)
        trunk = self.instance or Trunk()
        for field, value in self.validated_data.items():
            setattr(trunk, field, value)
        self.instance = trunk_save(actor=self.context["request"].user, trunk=trunk, threecx_webhook_url=url)
        return self.instance


class RegistrationSerializer(serializers.ModelSerializer):
    class Meta:
        model = SenderIDCountry
        fields = ["country", "status", "note", "status_changed_at"]
        read_only_fields = fields


class SenderIDSerializer(serializers.ModelSerializer):
    tenant = ScopedRelatedField(queryset=Tenant.objects.all())
    account = ScopedRelatedField(
        queryset=WavixAccount.objects.all(), required=False, help_text="Defaults to the one account serving the tenant."
    )
    countries = serializers.ListField(
        child=serializers.CharField(max_length=2),
        write_only=True,
        required=False,
        help_text="Destination countries (ISO codes), when registering.",
    )
    registrations = RegistrationSerializer(source="countries", many=True, read_only=True)

    IMMUTABLE = ("tenant", "account", "type", "value", "countries")

    class Meta:
        model = SenderID
        fields = [
            "id",
            "tenant",
            "account",
            "type",
            "value",
            "phone_number",
            "usecase",
            "samples",
            "countries",
            "registrations",
            "wavix_id",
            "created_at",
        ]
        read_only_fields = ["phone_number", "wavix_id", "created_at"]
        # Uniqueness is checked by the model after the value is normalised (+1 415… = +1415…).
        validators: list[object] = []

    def validate(self, attrs):
        if self.instance is not None:
            changed = [f for f in self.IMMUTABLE if f in attrs and attrs[f] != getattr(self.instance, f, None)]
            if changed:
                raise serializers.ValidationError(
                    {f: "Fixed once registered; register a new sender ID instead." for f in changed}
                )
        elif not attrs.get("countries"):
            raise serializers.ValidationError({"countries": "Choose at least one destination country."})
        return attrs

    def create(self, validated_data):
        countries = validated_data.pop("countries")
        return sender_id_register(
            actor=self.context["request"].user, sender=SenderID(**validated_data), countries=countries
        )

    def update(self, instance, validated_data):
        for field in ("usecase", "samples"):
            if field in validated_data:
                setattr(instance, field, validated_data[field])
        instance.full_clean()
        instance.save(update_fields=["usecase", "samples"])
        return instance


class MessageSerializer(serializers.ModelSerializer):
    error_explanation = serializers.SerializerMethodField(help_text="What the error means and what to do.")

    def to_representation(self, instance):
        row = super().to_representation(instance)
        if not self._sees_costs():
            row["charge"] = None  # Wavix's charge is the reseller's cost: null for tenant viewers and tenant tokens
        return row

    def _sees_costs(self) -> bool:
        context = self.context
        if "_sees_costs" not in context:  # once per request: a list's rows share the context
            request = context.get("request")
            context["_sees_costs"] = request is None or access.may_see_costs(
                request.user, token_tenant=token_tenant(request)
            )
        return bool(context["_sees_costs"])

    class Meta:
        model = Message
        fields = [
            "id",
            "tenant",
            "trunk",
            "sender",
            "direction",
            "origin",
            "from_number",
            "to_number",
            "text",
            "media",
            "encoding",
            "segments",
            "wavix_message_id",
            "status",
            "not_forwarded_reason",
            "error_code",
            "error_message",
            "charge",
            "error_explanation",
            "priority",
            "attempts",
            "created_at",
            "sent_at",
            "completed_at",
            "expires_at",
        ]
        read_only_fields = fields

    def get_error_explanation(self, message) -> str:
        return explain(message.error_message)


class DeliveryReportSerializer(serializers.Serializer):
    status = serializers.CharField()
    received_at = serializers.DateTimeField()
    error = serializers.CharField(allow_null=True)
    note = serializers.CharField(help_text="What the portal could not read from the report and left out, if anything.")


class MessageDetailSerializer(MessageSerializer):
    reports = serializers.SerializerMethodField(help_text="Delivery reports from Wavix, oldest first.")

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "reports"]
        read_only_fields = fields

    @extend_schema_field(DeliveryReportSerializer(many=True))
    def get_reports(self, message) -> list[dict]:
        if not message.wavix_message_id:
            return []
        events = WebhookEvent.objects.filter(
            account_id=message.account_id,
            kind=WebhookEvent.Kind.DLR,
            dedup_key__startswith=f"{message.wavix_message_id}:",
        ).order_by("received_at", "id")
        reports = []
        for event in events:
            try:
                body = json.loads(bytes(event.body))
            except ValueError:
                continue
            # Wavix's error as the report applied it: a text, else nothing (its note says why). A lone surrogate in
            # a report stored before the intake refused them is shown escaped: no UTF-8 answer can hold it.
            error = body.get("error") if isinstance(body.get("error"), str) else None
            reports.append(
                {
                    "status": body.get("status"),
                    "received_at": event.received_at,
                    "error": error and error.encode("utf-8", "backslashreplace").decode(),
                    "note": event.last_error,
                }
            )
        return reports


class MessageSendSerializer(serializers.Serializer):
    """One text to `to`, or the same text to each of `recipients` (bulk, up to 1,000)."""

    tenant = ScopedRelatedField(queryset=Tenant.objects.all(), required=False, help_text="Needed if you see several.")
    sender = serializers.CharField(required=False, help_text="A sender ID of the tenant: its id or its value.")
    trunk = ScopedRelatedField(queryset=Trunk.objects.all(), required=False, help_text="Send from its Main Trunk No.")
    to = serializers.CharField(required=False, max_length=40)
    recipients = serializers.ListField(
        child=serializers.CharField(max_length=40), required=False, max_length=1000, allow_empty=False
    )
    text = serializers.CharField(required=False, allow_blank=True, max_length=5000, trim_whitespace=False)
    media = serializers.ListField(child=serializers.CharField(max_length=500), required=False, max_length=10)
    validity = serializers.IntegerField(required=False, min_value=60, max_value=7 * 86400, help_text="Seconds.")

    def validate(self, attrs):
        if ("to" in attrs) == ("recipients" in attrs):
            raise serializers.ValidationError({"to": "Give either `to` (one message) or `recipients` (bulk)."})
        return attrs


class CountryRuleSerializer(serializers.ModelSerializer):
    class Meta:
        model = CountryRule
        fields = ["country", "name", "alphanumeric", "numeric", "note"]
        read_only_fields = fields


class UsageSerializer(serializers.Serializer):
    """One tenant's month (messaging.services.usage.TenantUsage): what a reseller bills, and what Wavix charged."""

    tenant = serializers.IntegerField(source="tenant.pk", help_text="The tenant's id.")
    tenant_name = serializers.CharField(source="tenant.name")
    month = serializers.DateField(format="%Y-%m", help_text="YYYY-MM.")
    outbound_messages = serializers.IntegerField(help_text="Texts Wavix took, from every origin (SMS and MMS).")
    outbound_segments = serializers.IntegerField(help_text="Their segments.")
    inbound_messages = serializers.IntegerField()
    wavix_charge = serializers.DecimalField(
        max_digits=16,
        decimal_places=5,
        allow_null=True,
        help_text="What Wavix charged, in USD (Wavix's currency). Null for a tenant viewer or tenant token: the "
        "reseller's cost is not its customer's business.",
    )
    price = serializers.DecimalField(max_digits=16, decimal_places=2, help_text="The price to the customer.")
    currency = serializers.CharField(help_text="The price's currency (ISO 4217).")

    def to_representation(self, instance):
        row = super().to_representation(instance)
        if not self.context["sees_costs"](instance.tenant):
            row["wavix_charge"] = None
        return row
