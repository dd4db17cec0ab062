"""The audit trail in the admin: read-only, filtered by action, actor, tenant, reseller and date range, and
exported as CSV exactly as filtered (see messaging.message_log for the date filter and the streamed export).

Every choice a filter offers comes from rows the user may see (tenants.access), never from the whole table.
"""

from django.contrib import admin
from django.http import StreamingHttpResponse
from django.utils import timezone

from messaging import message_log
from tenants import access

EXPORT_COLUMNS = (
    ("time", "created_at"),
    ("actor", "actor_label"),
    ("action", "action"),
    ("object_type", "object_type"),
    ("object_id", "object_id"),
    ("object", "object_repr"),
    ("reseller", "reseller__name"),
    ("tenant", "tenant__name"),
    ("changes", "changes"),
)
ACTOR_CHOICES = 200  # a filter longer than this is no use; the search box finds any actor by e-mail


class ActorListFilter(admin.SimpleListFilter):
    """Who did it, by the e-mail recorded at the time ('system' for the portal itself): a person deleted since
    still has their rows."""

    title = "actor"
    parameter_name = "actor"

    def lookups(self, request, model_admin):
        labels = (
            model_admin.get_queryset(request)
            .order_by("actor_label")
            .values_list("actor_label", flat=True)
            .distinct()[:ACTOR_CHOICES]
        )
        choices = [(label, label) for label in labels]
        if self.value() and (self.value(), self.value()) not in choices:
            choices.append((self.value(), self.value()))  # chosen from a link or a long list: still shown
        return choices

    def queryset(self, request, queryset):
        return queryset.filter(actor_label=self.value()) if self.value() else queryset


class ResellerListFilter(admin.RelatedFieldListFilter):
    """Resellers the user may see, read from the reseller table."""

    def field_choices(self, field, request, model_admin):
        return list(access.resellers_for(request.user).order_by("name").values_list("pk", "name"))

    def has_output(self) -> bool:
        # A reseller asked for in the URL must narrow the list even when there is only one to choose from.
        return super().has_output() or bool(self.used_parameters)


def audit_csv_response(events) -> StreamingHttpResponse:
    """Stream these audit events as CSV."""
    return message_log.csv_response(events, EXPORT_COLUMNS, f"audit-{timezone.localtime():%Y%m%d-%H%M}.csv")
