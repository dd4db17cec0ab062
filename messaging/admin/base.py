"""Base classes shared by messaging's model admins."""

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib.admin.options import csrf_protect_m
from django.db.models import Model
from unfold.widgets import UnfoldAdminSelectWidget

from tenants import access
from tenants.models import Reseller, Tenant
from tenants.scoped_admin import ScopedAdmin

if TYPE_CHECKING:
    # A mixin that is only ever mixed into a ScopedAdmin is one to mypy, so its self.opts, self.get_object() (never
    # None: ScopedAdmin answers 404) and self.message_user() are checked; at run time it stays a plain class.
    AdminMixin = ScopedAdmin
else:
    AdminMixin = object


class OwnedSelect(UnfoldAdminSelectWidget):
    """A foreign-key select whose options name their owners (`data-tenant="3"`, or "3 4" for a row several tenants
    may use), so that messaging/tenant_choices.js shows only those of the owner picked in the same form's `by` field.

    The script only spares the eye: the model's clean() refuses a row of another tenant whatever is posted, and the
    choices themselves still come from tenants.access (another reseller's rows are never among them)."""

    class Media:
        js = ["messaging/tenant_choices.js"]

    def __init__(self, owners: Callable[[Any], Iterable[int]], by: str = "tenant", attrs: dict | None = None):
        super().__init__({**(attrs or {}), "data-narrow-by": by})
        self.owners, self.by = owners, by

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        instance = getattr(value, "instance", None)  # a ModelChoiceIteratorValue; the empty choice has none
        if isinstance(instance, Model):
            option["attrs"][f"data-{self.by}"] = " ".join(str(pk) for pk in self.owners(instance))
        return option


def narrow_to_tenant(field: forms.Field, tenant: Tenant, what: str) -> None:
    """Narrow a foreign-key field of a page whose tenant is known to that tenant's rows; any other is refused in
    words that name the tenant (not Django's "Select a valid choice")."""
    assert isinstance(field, forms.ModelChoiceField) and field.queryset is not None
    field.queryset = field.queryset.filter(tenant=tenant)
    field.error_messages["invalid_choice"] = f"Choose one of {tenant}'s {what}."


class CallsWavixAdmin:
    """For admins whose forms ask Wavix while validating (a key check, a registration, a deletion).

    Django runs add/change/delete views inside one transaction; a network wait inside it would hold its locks
    for the whole call (on SQLite, it blocks every other writer, the sandbox included). These views run outside
    a transaction instead; the services they call make their own writes atomic.
    """

    @csrf_protect_m
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return self._changeform_view(request, object_id, form_url, extra_context)

    @csrf_protect_m
    def delete_view(self, request, object_id, extra_context=None):
        return self._delete_view(request, object_id, extra_context)


class OwnedAdmin(ScopedAdmin):
    """Foreign-key choices for resellers follow who may create rows under them (operators included)."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.remote_field.model is Reseller:
            kwargs["queryset"] = access.resellers_for(request.user, "add")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        for field, queryset in (
            ("reseller", access.resellers_for(request.user, "add")),
            ("tenant", access.tenants_for(request.user, "add")),
        ):
            choices = list(queryset.values_list("pk", flat=True)[:2])
            if len(choices) == 1:
                initial.setdefault(field, choices[0])
        return initial
