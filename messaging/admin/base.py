"""Base classes shared by messaging's model admins."""

from typing import TYPE_CHECKING

from django.contrib.admin.options import csrf_protect_m

from tenants import access
from tenants.models import Reseller
from tenants.scoped_admin import ScopedAdmin

if TYPE_CHECKING:
    # A mixin that is only ever mixed into a ScopedAdmin is one to mypy, so its self.opts, self.get_object() (never
    # None: ScopedAdmin answers 404) and self.message_user() are checked; at run time it stays a plain class.
    AdminMixin = ScopedAdmin
else:
    AdminMixin = object


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
