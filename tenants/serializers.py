from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from tenants import access
from tenants.authentication import token_tenant
from tenants.models import Membership, Reseller, Tenant
from tenants.services import member_check_invite, member_invite, tenant_save


class ScopedRelatedField(serializers.PrimaryKeyRelatedField):
    """A foreign key that accepts only rows the requesting user may attach things to.

    Another reseller's id reads as "does not exist", exactly like an id that was never used.
    """

    def get_queryset(self):
        request = self.context["request"]
        model = self.queryset.model
        if model is Reseller:
            return access.resellers_for(request.user, "add")
        rows = access.changeable(request.user, model)
        tenant = token_tenant(request)
        return access.only_tenant(rows, tenant) if tenant else rows


class TenantSerializer(serializers.ModelSerializer):
    reseller = ScopedRelatedField(
        queryset=Reseller.objects.all(), required=False, help_text="Needed only if you work for several resellers."
    )

    class Meta:
        model = Tenant
        fields = ["id", "reseller", "name", "slug", "status", "default_country", "created_at"]
        read_only_fields = ["created_at"]
        validators: list[object] = []  # uniqueness per reseller is checked by the model, once the reseller is known

    def validate(self, attrs):
        if self.instance is not None:
            if "reseller" in attrs and attrs["reseller"] != self.instance.reseller:
                raise serializers.ValidationError({"reseller": "A tenant cannot move to another reseller."})
            return attrs
        if "reseller" not in attrs:
            resellers = list(access.resellers_for(self.context["request"].user, "add")[:2])
            if len(resellers) != 1:
                raise serializers.ValidationError({"reseller": "Choose the reseller this tenant belongs to."})
            attrs["reseller"] = resellers[0]
        return attrs

    def create(self, validated_data):
        return tenant_save(actor=self.context["request"].user, tenant=Tenant(**validated_data))

    def update(self, instance, validated_data):
        for field, value in validated_data.items():
            setattr(instance, field, value)
        return tenant_save(actor=self.context["request"].user, tenant=instance)


class PersonSerializer(serializers.ModelSerializer):
    """A person's role in a reseller or one of its tenants. POST invites: the role is theirs once they accept the
    e-mailed invitation (exactly as the admin's *Invite a person*)."""

    email = serializers.EmailField(source="user.email", help_text="Where the invitation goes.")
    first_name = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=150)
    last_name = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=150)
    reseller = serializers.PrimaryKeyRelatedField(
        queryset=Reseller.objects.all(), required=False, allow_null=True, help_text="For a reseller role."
    )
    tenant = serializers.PrimaryKeyRelatedField(
        queryset=Tenant.objects.all(), required=False, allow_null=True, help_text="For a tenant viewer."
    )
    invitation_sent = serializers.SerializerMethodField()

    class Meta:
        model = Membership
        fields = [
            "id",
            "email",
            "first_name",
            "last_name",
            "role",
            "reseller",
            "tenant",
            "invitation",
            "is_active",
            "invitation_sent",
            "created_at",
        ]
        read_only_fields = ["invitation", "is_active", "created_at"]

    def get_invitation_sent(self, obj) -> bool | None:
        """On the answer to an invite: whether the e-mail went out (it can be resent from the admin)."""
        return getattr(obj, "_invitation_sent", None)

    def get_fields(self):
        fields = super().get_fields()
        # Whose people the caller manages: another reseller's ids read as "does not exist", like ids never used.
        request = self.context.get("request")
        if request is not None:
            managed = access.people_resellers(request.user)
            fields["reseller"].queryset = managed
            fields["tenant"].queryset = Tenant.objects.filter(reseller__in=managed)
        return fields

    def validate(self, attrs):
        reseller, tenant = attrs.get("reseller"), attrs.get("tenant")
        if bool(reseller) == bool(tenant):
            raise serializers.ValidationError(
                {"reseller": "Give a reseller (for a reseller role) or a tenant, not both."}
            )
        organization = reseller or tenant
        try:
            member_check_invite(attrs["user"]["email"], organization)
            Membership(role=attrs["role"], reseller=reseller, tenant=tenant).clean()
        except DjangoValidationError as error:
            raise serializers.ValidationError(
                error.message_dict if hasattr(error, "error_dict") else {"role": error.messages}
            ) from None
        attrs["organization"] = organization
        return attrs

    def create(self, validated_data):
        membership, sent = member_invite(
            actor=self.context["request"].user,
            email=validated_data["user"]["email"],
            organization=validated_data["organization"],
            role=validated_data["role"],
            first_name=validated_data.get("first_name", ""),
            last_name=validated_data.get("last_name", ""),
        )
        membership._invitation_sent = sent
        return membership
