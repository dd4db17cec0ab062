"""The message log and the audit trail as lists: the admin's Messages and Audit events, made to search, filter and
export a million rows.

- search by every word of the query, each anywhere: number (any way it is written: digits are matched inside
  from/to), text, Wavix message id or any part of it;
- a date range filter and a tenant filter that do not scan the message table to build their choices;
- a paginator that counts at most COUNT_CAP rows, so a page never waits on COUNT(*) over every message;
- a CSV export of exactly what the list shows, streamed row by row;
- texts not forwarded to 3CX (held, or with nowhere to go) with their reason in the list and the export, and, for
  reseller staff, a notice of recent ones that belong to no tenant (they are in no message, only webhook events);
- the audit trail's actor and reseller filters.

Every choice a filter offers comes from rows the user may see (tenants.access), never from the whole table.
"""

import csv
import json
import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import reduce
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property

from messaging.models import WebhookEvent
from portal.spreadsheets import spreadsheet_safe
from tenants import access

if TYPE_CHECKING:
    from django.contrib.admin.filters import _ListFilterChoices

COUNT_CAP = 10_000
EXPORT_CHUNK = 2_000
PHONE_LIKE = re.compile(r"^\+?[\d\s().\-]{3,}$")
# Columns of the CSV exports: header, then the field read with values_list (no model instances are built).
MESSAGE_COLUMNS = (
    ("created_at", "created_at"),
    ("tenant", "tenant__name"),
    ("direction", "direction"),
    ("from", "from_number"),
    ("to", "to_number"),
    ("status", "status"),
    ("not_forwarded_reason", "not_forwarded_reason"),
    ("text", "text"),
    ("segments", "segments"),
    ("charge", "charge"),
    ("error_code", "error_code"),
    ("error_message", "error_message"),
    ("sent_at", "sent_at"),
    ("completed_at", "completed_at"),
    ("wavix_message_id", "wavix_message_id"),
    ("origin", "origin"),  # added last (issue 16): spreadsheets that read columns by position keep working
)
AUDIT_COLUMNS = (
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


class CappedCountPaginator(Paginator):
    """Counts at most COUNT_CAP + 1 rows: "more than 10,000" is all a person needs, and costs a bounded scan."""

    cap = COUNT_CAP

    @cached_property
    def count(self) -> int:
        # Ordering is dropped: which rows are counted does not matter, and sorting them would cost more.
        rows = self.object_list
        assert isinstance(rows, QuerySet)  # the admin's lists page querysets
        return rows.order_by().values("pk")[: self.cap + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.cap


class TenantListFilter(admin.RelatedFieldListFilter):
    """Tenants the user may see, read from the tenant table: RelatedOnlyFieldListFilter would scan every message."""

    def field_choices(self, field, request, model_admin):
        return list(access.tenants_for(request.user).order_by("name").values_list("pk", "name"))

    def has_output(self) -> bool:
        # With one tenant there is nothing to choose, but a tenant asked for in the URL must still narrow the list
        # (a filter without output would be dropped, and its parameter silently ignored).
        return super().has_output() or bool(self.used_parameters)


class ResellerListFilter(admin.RelatedFieldListFilter):
    """Resellers the user may see, read from the reseller table."""

    def field_choices(self, field, request, model_admin):
        return list(access.resellers_for(request.user).order_by("name").values_list("pk", "name"))

    def has_output(self) -> bool:
        # A reseller asked for in the URL must narrow the list even when there is only one to choose from.
        return super().has_output() or bool(self.used_parameters)


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


def _day(value: str, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise IncorrectLookupParameters(f"{name}: enter a date as YYYY-MM-DD.") from None


class CreatedDateRangeFilter(admin.ListFilter):
    """Messages created from one day to another (both included, in the portal's time zone)."""

    title = "date"
    template = "admin/messaging/date_range_filter.html"
    parameters = ("created_from", "created_to")

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        for name in self.parameters:
            if name in params:
                self.used_parameters[name] = params.pop(name)[-1]
        # The form keeps the list's other filters and search when it sends the dates.
        self.other_params = [
            (key, value)
            for key, values in request.GET.lists()
            if key not in (*self.parameters, "p")
            for value in values
        ]

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return list(self.parameters)

    @property
    def start(self) -> str:
        return str(self.used_parameters.get("created_from", ""))  # always a str: a query parameter

    @property
    def end(self) -> str:
        return str(self.used_parameters.get("created_to", ""))

    def choices(self, changelist) -> Iterator["_ListFilterChoices"]:
        today = timezone.localdate()
        shortcuts = [("Any date", None), ("Today", today), ("Last 7 days", today - timedelta(days=6))]
        shortcuts.append(("Last 30 days", today - timedelta(days=29)))
        for label, since in shortcuts:
            chosen = {"created_from": since.isoformat()} if since else {}
            yield {
                "display": label,
                "selected": self.start == chosen.get("created_from", "") and not self.end,
                "query_string": changelist.get_query_string(chosen, remove=list(self.parameters)),
            }

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        start, end = _day(self.start, "From"), _day(self.end, "To")
        if start:
            queryset = queryset.filter(created_at__gte=timezone.make_aware(datetime.combine(start, time.min)))
        if end:
            queryset = queryset.filter(
                created_at__lt=timezone.make_aware(datetime.combine(end + timedelta(days=1), time.min))
            )
        return queryset


def message_log_url(**params) -> str:
    """The message log filtered by these parameters (as its own filters and links write them)."""
    return f"{reverse('admin:messaging_message_changelist')}?{urlencode(params)}"


def not_forwarded_since() -> tuple[date, datetime]:
    """Since when a text not forwarded counts as recent (the dashboard's alerts, the log's notice): the start of
    yesterday — a day the log's date filter shows exactly (created_from), so the figures and the log agree."""
    day = timezone.localdate() - timedelta(days=1)
    return day, timezone.make_aware(datetime.combine(day, time.min))


@dataclass(frozen=True)
class UnassignedTexts:
    """Recent texts not forwarded that belong to no tenant, and where to see them."""

    count: int
    url: str


def unassigned_texts(user) -> UnassignedTexts:
    """Recent inbound texts not forwarded whose tenant cannot be told — to a number in the reseller's pool or one the
    portal does not know, on a shared account, or unreadable there. No message holds them (a message belongs to a
    tenant): only their webhook events, which reseller staff see and tenant viewers do not."""
    _, since = not_forwarded_since()
    states = [WebhookEvent.State.UNROUTABLE, WebhookEvent.State.INVALID]
    count = (
        access.visible(user, WebhookEvent)
        .filter(state__in=states, received_at__gte=since, kind=WebhookEvent.Kind.INBOUND, tenant__isnull=True)
        .count()
    )
    query = {
        "kind__exact": WebhookEvent.Kind.INBOUND,
        "state__in": ",".join(states),
        "tenant__isnull": "True",
        "received_at__gte": since.isoformat(),
    }
    return UnassignedTexts(count, f"{reverse('admin:messaging_webhookevent_changelist')}?{urlencode(query)}")


def message_search(term: str) -> Q:
    """What a search box query matches: every word of it, each somewhere in the message — the text, a number, the
    Wavix message id, any part of them ("dentist tomorrow" finds "See the dentist at 9 tomorrow"). A query that is
    all a number ("(415) 555-0142") is one word, not three.

    Every match is an icontains, UPPER(column) LIKE '%…%', which the trigram indexes of migration
    messaging/0028_message_search_trigrams serve on PostgreSQL: one column the index cannot answer would turn every
    search into a scan of the whole table.
    """
    term = term.strip()
    words = [term] if PHONE_LIKE.match(term) else term.split()
    return reduce(operator.and_, (_word_matches(word) for word in words), Q())


def _word_matches(word: str) -> Q:
    # Stored numbers are E.164 (+ and digits): "(415) 555-0142" and "4155550142" both find +14155550142. An
    # alphanumeric sender ("AcmeDental") is in from_number too, found by any part of it.
    number = re.sub(r"\D", "", word) if PHONE_LIKE.match(word) else word
    return (
        Q(text__icontains=word)
        | Q(from_number__icontains=number)
        | Q(to_number__icontains=number)
        | Q(wavix_message_id__icontains=word)
    )


class _Echo:
    """A file-like object whose write() hands back what was written: csv.writer then yields lines."""

    def write(self, value: str) -> str:
        return value


def _cell(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):  # a JSON field, written as JSON
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return spreadsheet_safe(value)


def csv_response(rows: QuerySet, columns, filename: str) -> StreamingHttpResponse:
    """Stream these rows as CSV, one column per (header, field): fetched EXPORT_CHUNK rows at a time, never the
    whole file in memory, and no model instances built."""
    fields = [field for _, field in columns]
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow([header for header, _ in columns])
        for row in rows.values_list(*fields).iterator(chunk_size=EXPORT_CHUNK):
            yield writer.writerow([_cell(value) for value in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"  # message texts and audit rows are personal data: no shared cache
    return response
