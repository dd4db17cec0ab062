"""API plumbing shared by every endpoint (scoped viewsets, error mapping) and the /tenants endpoint."""

from contextlib import contextmanager

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import mixins, serializers, viewsets
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.pagination import CursorPagination

from tenants import access
from tenants.authentication import token_tenant
from tenants.serializers import PersonSerializer, TenantSerializer


class NewestFirstPagination(CursorPagination):
    """Keyset pagination on the primary key: no COUNT(*), stable while rows are being added."""

    ordering = "-id"
    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(self, queryset, request, view=None):
        self.position_field = queryset.model._meta.get_field(self.ordering.lstrip("-"))
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        """DRF's cursor, refused as "Invalid cursor" (404) when its position is no value of the ordering field.

        DRF checks the cursor's encoding, offset and direction but passes the position to the query as it is: a
        cursor that decodes to p=abc or p=1e9999 raised a ValueError in the filter, a 500.
        """
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            try:
                self.position_field.to_python(cursor.position)
            except DjangoValidationError:
                raise NotFound(self.invalid_cursor_message) from None
        return cursor


class ScopedViewSet(viewsets.GenericViewSet):
    """Rows come from tenants.access; serializer and service errors come back as 400 with field names."""

    pagination_class: type[NewestFirstPagination] | None = NewestFirstPagination

    def get_queryset(self):
        rows = access.visible(self.request.user, super().get_queryset())
        tenant = token_tenant(self.request)
        return access.only_tenant(rows, tenant) if tenant else rows


def refuse_tenant_tokens(request, what: str) -> None:
    """Managing the reseller's side (its numbers, accounts, keys, people) is for the reseller's people: a tenant token
    is the tenant's integration, whoever created it. Asked before a request's body is read, whose errors could tell."""
    if token_tenant(request) is not None:
        raise PermissionDenied(f"Only the reseller's people {what}; a tenant's token cannot.")


@contextmanager
def django_errors_as_400():
    """Model and service validation raises Django's ValidationError; the API answers it as a 400."""
    try:
        yield
    except DjangoValidationError as error:
        detail = error.message_dict if hasattr(error, "error_dict") else {"non_field_errors": error.messages}
        raise serializers.ValidationError(detail) from None


class TenantViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin, ScopedViewSet
):
    """Tenants: a reseller's customers."""

    queryset = TenantSerializer.Meta.model.objects.select_related("reseller")
    serializer_class = TenantSerializer

    def perform_create(self, serializer) -> None:
        with django_errors_as_400():
            serializer.save()

    perform_update = perform_create


class PersonViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, ScopedViewSet):
    """People: roles in the reseller and its tenants (its admins only, as in the admin). POST invites one."""

    queryset = PersonSerializer.Meta.model.objects.select_related("user")
    serializer_class = PersonSerializer

    def create(self, request, *args, **kwargs):
        refuse_tenant_tokens(request, "invite people")  # its errors ("already has a role") would tell who works where
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer) -> None:
        with django_errors_as_400():
            serializer.save()
