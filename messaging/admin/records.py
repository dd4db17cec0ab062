"""Records: messages (the log, the send page), webhook events, deliveries, opt-outs and the audit trail. Read-only
here; the log's filters, search and CSV export are in messaging.admin.logs."""

import json
import uuid
from datetime import datetime

from django import forms
from django.contrib import admin
from django.contrib.admin import RelatedOnlyFieldListFilter
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import Http404, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator

from messaging.admin import logs
from messaging.models import Delivery, Message, OptOut, SenderID, WebhookEvent
from messaging.services import forwarding, outbound
from messaging.wavix import explain
from tenants import access
from tenants.models import AuditEvent
from tenants.scoped_admin import ScopedAdmin, show_errors

TEXT_SHOWN = 60  # characters of a text in the message log's column; the whole text is its title (on hover)


class RecordAdmin(ScopedAdmin):
    # Counting a million rows per page view is the slow part of a changelist; skip the total.
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]


class CsvExportMixin:
    """An "export.csv" page beside the list (URL name <app>_<model>_export): exactly the rows the list shows, with
    its filters, search and scope, streamed as CSV."""

    export_columns: tuple[tuple[str, str], ...]  # (header, field read with values_list)
    export_prefix: str  # the file is named <prefix>-<local time>.csv

    def get_urls(self):
        export = self.admin_site.admin_view(self.export_csv_view)
        name = f"{self.opts.app_label}_{self.opts.model_name}_export"
        return [path("export.csv", export, name=name), *super().get_urls()]

    def export_csv_view(self, request):
        """Export the list exactly as filtered and searched on screen, as a streamed CSV file."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)  # the same filters, search and scope as the list
        except IncorrectLookupParameters:
            return redirect(f"{reverse(f'admin:{self.opts.app_label}_{self.opts.model_name}_changelist')}?e=1")
        filename = f"{self.export_prefix}-{timezone.localtime():%Y%m%d-%H%M}.csv"
        return logs.csv_response(changelist.queryset, self.export_columns_for(request), filename)

    def export_columns_for(self, request) -> tuple[tuple[str, str], ...]:
        return self.export_columns


class SendForm(forms.Form):
    sender = forms.ModelChoiceField(queryset=SenderID.objects.none(), help_text="One of a tenant's sender IDs.")
    recipients = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One number per line (E.164, or national if the tenant has a default country). Several: a bulk send.",
    )
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False, strip=False)
    media = forms.CharField(  # type: ignore[assignment]  # a field named "media" shadows Form.media; it is a form field here
        widget=forms.Textarea(attrs={"rows": 2}), required=False, help_text="MMS (US/Canada): https URLs, one per line."
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        senders = access.changeable(user, SenderID).select_related("tenant").order_by("tenant__name", "value")
        self.fields["sender"].queryset = senders
        self.fields["sender"].label_from_instance = lambda s: f"{s.tenant} › {s.value}"

    def clean_text(self) -> str:
        # A browser sends a text box's line breaks as CR LF, but counts them (and its counter shows them) as one LF:
        # sent as typed, each would cost a character more than the page said.
        return self.cleaned_data["text"].replace("\r\n", "\n")


class BatchListFilter(admin.SimpleListFilter):
    """The messages of one bulk send (?batch=<id>, the send page links here): shown only while it is applied."""

    title = "bulk send"
    parameter_name = "batch"

    def lookups(self, request, model_admin):
        value = self.value()
        return [(value, "This bulk send")] if value else []

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        try:
            return queryset.filter(batch=uuid.UUID(str(self.value())))
        except ValueError:
            return queryset.none()


def _live(name: str, content: object, tag: str = "span", **data: object) -> SafeString:
    """A field of the message page that its script refreshes (messaging/message_live.js finds it by data-live)."""
    attributes = format_html_join("", ' data-{}="{}"', ((key.replace("_", "-"), value) for key, value in data.items()))
    return format_html('<{} data-live="{}"{}>{}</{}>', tag, name, attributes, content, tag)


def lifecycle(message: Message, reports: list[dict]) -> list[tuple[str, datetime | None, str]]:
    """A text's life as (what happened, when, detail); a step still to come has no time. Outbound: created (where),
    taken by a worker, sent to Wavix, each delivery report, the outcome. Inbound: received from Wavix, each forward to
    3CX with 3CX's answer, the outcome."""
    created = {
        Message.Origin.THREECX: "Arrived from 3CX",
        Message.Origin.MIRROR: "Found in Wavix's log (3CX sent it straight to Wavix)",
    }.get(Message.Origin(message.origin), "Created in the portal")
    steps: list[tuple[str, datetime | None, str]]
    if message.direction == Message.Direction.INBOUND:
        steps = [("Received from Wavix", message.created_at, f"from {message.from_number}")]
        for forward in message.deliveries.filter(event="").select_related("trunk").order_by("created_at", "id"):
            answer = f"3CX answered HTTP {forward.last_status_code}" if forward.last_status_code else ""
            parts = (f"{forward.attempts} attempt(s)", answer, forward.last_error)
            when = forward.delivered_at or forward.last_attempt_at
            steps.append((f"Forward to {forward.trunk.name}", when, "; ".join(part for part in parts if part)))
    else:
        steps = [(created, message.created_at, "")]
        if message.send_started_at or not message.completed_at:
            steps.append(("Taken by a worker to send", message.send_started_at, ""))
        wavix_id = f"Wavix id {message.wavix_message_id}" if message.wavix_message_id else ""
        steps.append(("Sent to Wavix", message.sent_at, wavix_id))
        for report in reports:
            steps.append(
                (f"Report: {report['status']}", report["received_at"], report["error"] or report["note"] or "")
            )
    outcome = message.get_status_display()
    steps.append((outcome, message.completed_at, "" if message.completed_at else "not yet"))
    return steps


@admin.register(Message)
class MessageAdmin(CsvExportMixin, RecordAdmin):
    """The message log (see messaging.admin.logs): searched, filtered and exported without scanning every row."""

    export_columns = logs.MESSAGE_COLUMNS
    export_prefix = "messages"
    list_display = ["created_at", "direction", "origin", "from_number", "to_number", "text_column", "status_column"]
    list_display += ["tenant", "segments", "charge_column"]
    list_filter = [
        BatchListFilter,
        "direction",
        "origin",
        "status",
        "priority",
        logs.CreatedDateRangeFilter,
        ("tenant", logs.TenantListFilter),
    ]
    list_select_related = ["tenant", "trunk"]
    search_fields = ["from_number", "to_number", "text", "wavix_message_id"]  # shows the box; see get_search_results
    search_help_text = (
        "Every word is looked for anywhere: a number in any format (or part of one), words of the text, "
        "a Wavix message ID or part of one."
    )
    change_list_template = "messaging/message_change_list.html"
    paginator = logs.CappedCountPaginator
    show_facets = admin.ShowFacets.NEVER  # a count per filter choice would scan the whole table each time

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        return queryset.filter(logs.message_search(search_term)), False

    @admin.display(description="Text")
    def text_column(self, obj) -> str:
        if not obj.text:
            return "—"  # an MMS without text, or emptied by retention
        return format_html(
            '<span class="message-text" title="{}">{}</span>', obj.text, Truncator(obj.text).chars(TEXT_SHOWN)
        )

    @admin.display(description="Status", ordering="status")
    def status_column(self, obj) -> str:
        return obj.status_explained

    @admin.display(description="Charge", ordering="charge")
    def charge_column(self, obj) -> str:
        return obj.charge_shown

    # What Wavix charged is the reseller's cost, not its customers' business (tenants.access.may_see_costs): the
    # charge column, field and CSV column are left out for a tenant viewer.
    COST_FIELDS = frozenset({"charge_column", "charge_live", "charge"})

    def _without_costs(self, request, names):
        return [n for n in names if n not in self.COST_FIELDS] if not access.may_see_costs(request.user) else names

    def get_list_display(self, request):
        return self._without_costs(request, super().get_list_display(request))

    def export_columns_for(self, request):
        return tuple(
            c for c in self.export_columns if c[1] not in self.COST_FIELDS or access.may_see_costs(request.user)
        )

    def changelist_view(self, request, extra_context=None):
        # Texts that belong to no tenant are in no message: reseller staff are told here, where they look for texts.
        extra_context = {
            **(extra_context or {}),
            "unassigned_texts": logs.unassigned_texts(request.user),
            "has_send_permission": access.can(request.user, "send", Message),
        }
        return super().changelist_view(request, extra_context)

    def get_fields(self, request, obj=None):
        return (
            [
                "progress",
                *(["not_forwarded_reason"] if obj is not None and obj.not_forwarded_reason else []),
                "error_explanation",
                "reports",
                "tenant",
                "direction",
                "origin",
                "from_number",
                "to_number",
                "text",
            ]
            + ["media", "encoding", "segments_live", "charge_live", "wavix_id_live", "trunk", "sender", "priority"]
            + [
                "attempts_live",
                *(["batch_link"] if obj is not None and obj.batch else []),
            ]
        )

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    def get_fieldsets(self, request, obj=None):
        return [(None, {"fields": self._without_costs(request, self.get_fields(request, obj))})]

    # The fields of the message page that change while a text goes out; its script polls status_view for them.
    LIVE_FIELDS: tuple[str, ...] = ("progress", "error_explanation", "reports", "segments_live", "charge_live")
    LIVE_FIELDS += ("wavix_id_live", "attempts_live")

    @admin.display(description="Lifecycle")
    def progress(self, obj):
        from messaging.serializers import MessageDetailSerializer

        steps = lifecycle(obj, MessageDetailSerializer().get_reports(obj))
        shown = format_html(
            '<ol class="lifecycle">{}</ol>',
            format_html_join(
                "",
                '<li class="{}"><strong>{}</strong> <time>{}</time>{}</li>',
                (
                    (
                        "done" if at else "todo",
                        name,
                        timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S") if at else "…",
                        format_html("<br><small>{}</small>", detail) if detail else "",
                    )
                    for name, at, detail in steps
                ),
            ),
        )
        final = obj.status in Message.FINAL
        url = reverse("admin:messaging_message_status", args=[obj.pk])
        return _live("progress", shown, tag="div", status=obj.status, final="1" if final else "0", status_url=url)

    @admin.display(description="What went wrong")
    def error_explanation(self, obj):
        if not obj.error_message:
            return _live("error_explanation", "—")
        shown = format_html("{}<br><small>Wavix said: {}</small>", explain(obj.error_message), obj.error_message)
        return _live("error_explanation", shown)

    @admin.display(description="Delivery reports")
    def reports(self, obj):
        from messaging.serializers import MessageDetailSerializer

        rows = MessageDetailSerializer().get_reports(obj)
        if not rows:
            return _live("reports", "—")
        shown = format_html_join(
            mark_safe("<br>"),
            "{} at {}{}{}",
            (
                (
                    r["status"],
                    timezone.localtime(r["received_at"]).strftime("%H:%M:%S"),
                    f" ({r['error']})" if r["error"] else "",
                    f" — {r['note']}" if r["note"] else "",
                )
                for r in rows
            ),
        )
        return _live("reports", shown)

    @admin.display(description="Segments")
    def segments_live(self, obj):
        return _live("segments_live", obj.segments)

    @admin.display(description="Charge")
    def charge_live(self, obj):
        return _live("charge_live", obj.charge_shown)

    @admin.display(description="Wavix message ID")
    def wavix_id_live(self, obj):
        return _live("wavix_id_live", obj.wavix_message_id or "—")

    @admin.display(description="Attempts")
    def attempts_live(self, obj):
        return _live("attempts_live", obj.attempts)

    @admin.display(description="Bulk send")
    def batch_link(self, obj):
        url = f"{reverse('admin:messaging_message_changelist')}?batch={obj.batch}"
        return format_html('<a href="{}">All messages of this bulk send</a>', url)

    def status_view(self, request, object_id: str) -> JsonResponse:
        """Answer a message's live fields as JSON, for its page to refresh without a reload. Scoped like the page
        (get_object reads through tenants.access): another tenant's message answers 404."""
        message = self.get_object(request, object_id)
        if not self.has_view_permission(request, message):
            raise PermissionDenied
        fields = {name: str(getattr(self, name)(message)) for name in self._without_costs(request, self.LIVE_FIELDS)}
        return JsonResponse({"status": message.status, "final": message.status in Message.FINAL, "fields": fields})

    class Media:
        js = ["messaging/message_live.js"]

    def get_urls(self):
        send = self.admin_site.admin_view(self.send_view)
        status = self.admin_site.admin_view(self.status_view)
        return [
            path("send/", send, name="messaging_message_send"),
            path("<path:object_id>/status.json", status, name="messaging_message_status"),
            *super().get_urls(),
        ]

    # The refusals of the last few bulk sends, by batch, in the sender's session: nothing of a refused text is
    # stored (services/outbound.py), so the page after the redirect has them from here.
    SENT_BATCHES = "messaging.sent_batches"
    SENT_BATCHES_KEPT = 5

    def send_view(self, request):
        """Send one message, or the same text to many recipients (a bulk send), through the API's own services
        (message_send, message_send_bulk): every rule, the tenant's suspension included, is checked there, and its
        refusal is shown on the form. After a send the browser is redirected (to the message, or back here with the
        bulk send's summary and an empty form), so that reloading the page cannot send the text again."""
        if not access.can(request.user, "send", Message):
            raise PermissionDenied
        form = SendForm(request.POST or None, user=request.user)
        results = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            sender = data["sender"]
            recipients = [line.strip() for line in data["recipients"].splitlines() if line.strip()]
            media = [line.strip() for line in data["media"].splitlines() if line.strip()]
            try:
                if len(recipients) == 1:
                    message = outbound.message_send(
                        tenant=sender.tenant, sender=sender, to=recipients[0], text=data["text"], media=media
                    )
                    self.message_user(request, f"Queued for {message.to_number}: it goes out in a moment.")
                    return redirect(reverse("admin:messaging_message_change", args=[message.pk]))
                batch = uuid.uuid4()
                results = outbound.message_send_bulk(
                    tenant=sender.tenant,
                    sender=sender,
                    recipients=recipients,
                    text=data["text"],
                    media=media,
                    batch=batch,
                )
            except ValidationError as error:
                show_errors(form, error, renamed={"to": "recipients"})
            else:
                if any("id" in result for result in results):
                    self._remember_refusals(request, batch, [result for result in results if "id" not in result])
                    return redirect(f"{reverse('admin:messaging_message_send')}?batch={batch}")
                # Nothing was queued: the filled form stays, to be corrected and sent.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Send a message",
            "form": form,
            "results": results,
            "sent": self._sent_batch(request) if request.method == "GET" and "batch" in request.GET else None,
        }
        return TemplateResponse(request, "messaging/send.html", context)

    def _remember_refusals(self, request, batch: uuid.UUID, refused: list[dict]) -> None:
        kept = dict(list(request.session.get(self.SENT_BATCHES, {}).items())[-(self.SENT_BATCHES_KEPT - 1) :])
        request.session[self.SENT_BATCHES] = {**kept, str(batch): refused}

    def _sent_batch(self, request) -> dict:
        """A bulk send's summary: its messages the user may see, by status, and the refusals its sender was shown.
        Another tenant's batch, or an unknown one, answers 404."""
        try:
            batch = uuid.UUID(request.GET["batch"])
        except ValueError:
            raise Http404("No such bulk send.") from None
        messages = access.visible(request.user, Message).filter(batch=batch)
        counts = {row["status"]: row["n"] for row in messages.values("status").annotate(n=Count("pk")).order_by()}
        refused = request.session.get(self.SENT_BATCHES, {}).get(str(batch))
        if not counts and refused is None:
            raise Http404("No such bulk send.")
        queued = sum(counts.values())
        return {
            "batch": batch,
            "queued": queued,
            "refused": refused or [],
            "total": queued + len(refused or []),
            "statuses": [(status.label, counts[status]) for status in Message.Status if status in counts],
            "log_url": f"{reverse('admin:messaging_message_changelist')}?batch={batch}",
        }


@admin.register(WebhookEvent)
class WebhookEventAdmin(RecordAdmin):
    list_display = ["received_at", "kind", "dedup_key", "state", "recovered", "account", "tenant", "last_error"]
    list_filter = ["kind", "state", "recovered"]
    list_select_related = ["account", "tenant"]
    search_fields = ["=dedup_key"]
    exclude = ["body"]

    def get_readonly_fields(self, request, obj=None):
        return [f for f in super().get_readonly_fields(request, obj) if f != "body"] + ["body_text"]

    @admin.display(description="Body as received")
    def body_text(self, obj):
        raw = bytes(obj.body)
        if not raw:
            return "— (purged after the reseller's retention period)"
        try:
            shown = json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
            shown.encode()  # a lone surrogate (stored before the intake refused them): shown as received instead
        except ValueError:
            shown = raw.decode("utf-8", "replace")
        return format_html("<pre>{}</pre>", shown)


@admin.register(Delivery)
class DeliveryAdmin(RecordAdmin):
    """Forwards to 3CX — inbound texts, and status events of texts 3CX sent through the portal; the failed and
    dead-lettered ones can be replayed."""

    list_display = ["created_at", "remote_number", "kind", "trunk", "tenant", "status", "attempts", "next_attempt_at"]
    list_display += ["last_status_code", "last_error"]
    list_filter = ["status", ("tenant", RelatedOnlyFieldListFilter), ("trunk", RelatedOnlyFieldListFilter)]
    list_select_related = ["trunk", "tenant"]
    search_fields = ["=remote_number", "=message__wavix_message_id"]
    actions = ["replay"]

    @admin.display(description="Forwarded", ordering="event")
    def kind(self, obj):
        return obj.event or "inbound text"

    @admin.action(description="Replay the selected failed or dead-lettered deliveries")
    def replay(self, request, queryset) -> None:
        count = forwarding.delivery_replay(actor=request.user, deliveries=queryset)
        self.message_user(request, f"Replaying {count} delivery(ies); the others had not failed.")

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not access.can(request.user, "replay", Delivery):
            actions.pop("replay", None)
        return actions


@admin.register(OptOut)
class OptOutAdmin(RecordAdmin):
    list_display = ["created_at", "number", "tenant", "keyword"]
    list_filter = [("tenant", RelatedOnlyFieldListFilter)]
    list_select_related = ["tenant"]
    search_fields = ["=number"]


@admin.register(AuditEvent)
class AuditEventAdmin(CsvExportMixin, RecordAdmin):
    """The audit trail (see messaging.admin.logs): read-only for everyone, superusers included."""

    export_columns = logs.AUDIT_COLUMNS
    export_prefix = "audit"
    list_display = ["created_at", "actor_label", "action", "object_repr", "tenant", "reseller"]
    list_filter = [
        "action",
        logs.ActorListFilter,
        ("tenant", logs.TenantListFilter),
        ("reseller", logs.ResellerListFilter),
        logs.CreatedDateRangeFilter,
    ]
    list_select_related = ["tenant", "reseller"]
    search_fields = ["actor_label", "object_repr"]
    change_list_template = "messaging/audit_change_list.html"
    show_facets = admin.ShowFacets.NEVER

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
