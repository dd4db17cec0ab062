from rest_framework import serializers

from tenants import access
from tenants.authentication import token_tenant
from tenants.models import Reseller, Tenant
from tenants.services import tenant_save


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
