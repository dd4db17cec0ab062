"""Sender-ID pages: sender IDs (registered at Wavix as their form is validated), their per-country registrations
with timeline and paperwork (upload, submit), and the reviewers' queue (platform staff). Decisions and rules live in
messaging/services/senders.py."""

from collections import defaultdict
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import RelatedOnlyFieldListFilter
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import FileResponse, Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from unfold.widgets import UnfoldAdminCheckboxSelectMultipleWidget, UnfoldAdminTextareaWidget

from messaging.admin.base import AdminMixin, CallsWavixAdmin, OwnedAdmin, OwnedSelect
from messaging.models import CountryRule, RegistrationDocument, SenderID, SenderIDCountry
from messaging.services import senders
from tenants import access
from tenants.models import Reseller
from tenants.scoped_admin import ScopedAdmin, ScopedReadOnlyInline, show_errors


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[(key, key) for key in senders.DECISIONS])
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), required=False)
    confirmed = forms.BooleanField(required=False, widget=forms.HiddenInput)  # the second step of a noted decision


class DocumentForm(forms.Form):
    file = forms.FileField(required=False, help_text="PDF, PNG or JPEG.")


# The decision buttons, in the order shown, with what the note must say when the decision needs one.
DECISION_LABELS = {
    "approve": ("Approve", ""),
    "request_documents": ("Request documents", "Which documents are needed"),
    "reject": ("Reject", "Why it is rejected"),
    "allowlist": ("Mark allow-listed", ""),
}


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}{'s' if count != 1 else ''}"


def _age(moment) -> str:
    """How long since `moment`, to the hour ("3 days 4 hours"), to the minute under a day."""
    minutes = max(0, int((timezone.now() - moment).total_seconds()) // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return _plural(days, "day") + (f" {_plural(hours, 'hour')}" if hours else "")
    if hours:
        return _plural(hours, "hour") + (f" {_plural(minutes, 'minute')}" if minutes else "")
    return _plural(minutes, "minute") if minutes else "less than a minute"


# ---------------------------------------------------------------------------------------------------------------
# The review queue (site-level pages: /admin/review/)
# ---------------------------------------------------------------------------------------------------------------


def review_urls(site):
    wrap = site.admin_view
    return [
        path("review/", wrap(lambda request: review_queue_view(request, site)), name="review_queue"),
        path("review/<int:pk>/", wrap(lambda request, pk: review_detail_view(request, site, pk)), name="review_detail"),
        path("documents/<int:pk>/", wrap(document_view), name="registration_document"),
    ]


def _reviewer_or_404(request) -> None:
    # Not a reviewer: the queue does not exist for you (404, as for another reseller's rows).
    if not access.is_reviewer(request.user):
        raise Http404("No such page.")


# The queue's views (tabs): what waits on a reviewer is the default; the rest is reachable by a tab.
WAITING_VIEWS = {
    "reviewer": "Waiting on a reviewer",
    "reseller": "Waiting on the reseller",
    "wavix": "Approved, waiting on Wavix",
    "all": "All",
}


def review_queue_view(request, site):
    """List registrations oldest first: by default those waiting on a reviewer, with how long each has waited."""
    _reviewer_or_404(request)
    filters = {key: request.GET.get(key, "") for key in ("country", "reseller", "status")}
    # A status asked for is shown wherever it waits; otherwise the tab asked for, the reviewer's own work first.
    waiting = "all" if filters["status"] else request.GET.get("waiting", "reviewer")
    if waiting not in WAITING_VIEWS:
        waiting = "reviewer"
    queue = senders.review_queue()
    if filters["country"]:
        queue = queue.filter(country=filters["country"].upper())
    if filters["reseller"]:
        queue = queue.filter(tenant__reseller_id=filters["reseller"])
    per_status = dict(queue.order_by().values_list("status").annotate(n=Count("id")))
    tabs = [
        {
            "key": key,
            "label": label,
            "count": sum(per_status.get(s, 0) for s in senders.WAITING_ON.get(key, senders.QUEUE_STATUSES)),
            "query": urlencode({"waiting": key, **{k: v for k, v in filters.items() if v and k != "status"}}),
        }
        for key, label in WAITING_VIEWS.items()
    ]
    if waiting != "all":
        queue = queue.filter(status__in=senders.WAITING_ON[waiting])
    if filters["status"]:
        queue = queue.filter(status=filters["status"])
    page = Paginator(queue.prefetch_related("documents"), 50).get_page(request.GET.get("page"))
    names = dict(CountryRule.objects.values_list("country", "name"))
    rows = [
        {
            "registration": r,
            "country_name": names.get(r.country, r.country),
            # status_changed_at: when it entered its status — for "in review", when the reseller submitted the
            # documents, i.e. since when it has waited on a reviewer (a resubmission after a rejection restarts it).
            "age": _age(r.status_changed_at),
            "documents": list(r.documents.all()),
        }
        for r in page
    ]
    context = {
        **site.each_context(request),
        "title": "Sender-ID registrations to review",
        "rows": rows,
        "page": page,
        "filters": filters,
        "waiting": waiting,
        "tabs": tabs,
        "query": urlencode({"waiting": waiting, **{k: v for k, v in filters.items() if v}}),
        "statuses": [(s, SenderIDCountry.Status(s).label) for s in senders.QUEUE_STATUSES],
        "resellers": Reseller.objects.order_by("name"),
        "countries": sorted({(r.country, names.get(r.country, r.country)) for r in senders.review_queue()}),
    }
    return TemplateResponse(request, "messaging/review_queue.html", context)


def review_detail_view(request, site, pk: int):
    """Show one registration and record a reviewer's decision; a rejection or a request for documents is shown
    once more with its note, to be confirmed, before it is recorded (the reseller reads that note)."""
    _reviewer_or_404(request)
    registration = SenderIDCountry.objects.select_related("sender", "tenant__reseller").filter(pk=pk).first()
    if registration is None:
        raise Http404("No such registration.")
    form = DecisionForm(request.POST or None)
    problem = senders.review_problem(request.user, registration)
    allowed = [
        decision
        for decision, (status, _) in senders.DECISIONS.items()
        if status in registration.TRANSITIONS[registration.status]
    ]
    if request.method == "POST" and form.is_valid() and "edit" not in request.POST:
        decision, note = form.cleaned_data["decision"], form.cleaned_data["note"]
        try:
            if senders.DECISIONS[decision][1] and not form.cleaned_data["confirmed"]:
                if problem:
                    raise PermissionDenied(problem)
                if decision not in allowed:
                    raise ValidationError(
                        f"Nothing to decide: the registration is {registration.get_status_display()}."
                    )
                note = senders.decision_validate(decision, note)
                return _confirm_decision(request, site, registration, decision, note)
            senders.registration_decide(reviewer=request.user, registration=registration, decision=decision, note=note)
        except PermissionDenied as refusal:
            form.add_error(None, str(refusal))
        except ValidationError as error:
            show_errors(form, error)
        else:
            registration.refresh_from_db()
            messages.success(request, f"{registration}: recorded; the reseller's admins are told by e-mail.")
            return redirect(reverse("admin:review_queue"))
    posted = form.data.get("decision")
    choices: list[dict[str, object]] = [
        {
            "decision": decision,
            "label": DECISION_LABELS[decision][0],
            "prompt": DECISION_LABELS[decision][1],
            "needs_note": senders.DECISIONS[decision][1],
            "note": form.data.get("note", "") if decision == posted else "",
            "errors": form.errors.get("note", []) if decision == posted else [],
        }
        for decision in DECISION_LABELS
        if decision in allowed
    ]
    context = {
        **site.each_context(request),
        "title": f"Review: {registration.sender.value} → {registration.country}",
        "registration": registration,
        "allowed": allowed,
        "choices": choices,
        "problem": problem,
        "form": form,
        "events": registration.events.all(),
        "documents": registration.documents.all(),
        "age": _age(registration.status_changed_at),
    }
    return TemplateResponse(request, "messaging/review_detail.html", context)


def _confirm_decision(request, site, registration: SenderIDCountry, decision: str, note: str) -> TemplateResponse:
    """The second step of a rejection or a request for documents: the note as the reseller will read it."""
    context = {
        **site.each_context(request),
        "title": f"{DECISION_LABELS[decision][0]}: {registration.sender.value} → {registration.country}?",
        "registration": registration,
        "decision": decision,
        "label": DECISION_LABELS[decision][0],
        "note": note,
    }
    return TemplateResponse(request, "messaging/review_confirm.html", context)


# Shown in the browser (a reviewer reads the paperwork without saving it): types browsers render as documents or
# images and never run as a page. Anything else — HTML or SVG above all, which would run script on the portal's
# origin — is a download of bytes. Uploads are judged by their content (PDF, PNG, JPEG), so this is a second lock.
INLINE_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp"})


def document_view(request, pk: int):
    """A document, to its reseller's staff and reviewers only (404 to anyone else): PDFs and images open in the
    browser, anything else downloads."""
    document = senders.document_for(request.user, pk)
    if document is None:
        raise Http404("No such document.")
    inline = document.content_type in INLINE_TYPES
    response = FileResponse(
        document.file.open("rb"),
        content_type=document.content_type if inline else "application/octet-stream",
        as_attachment=not inline,
        filename=document.name,  # quoted, or RFC 5987-encoded, by Django
    )
    response["X-Content-Type-Options"] = "nosniff"  # the browser takes the type above, never guesses from bytes
    response["Cache-Control"] = "private, no-store"  # paperwork: no shared cache keeps it
    return response


# ---------------------------------------------------------------------------------------------------------------
# On each registration (resellers and tenants): timeline, documents
# ---------------------------------------------------------------------------------------------------------------


class RegistrationPagesMixin(AdminMixin):
    """The registration's change page shows its timeline and paperwork; resellers upload and submit there."""

    @admin.display(description="Timeline")
    def timeline(self, obj):
        events = obj.events.all() if obj and obj.pk else []
        if not events:
            return "—"
        return format_html(
            "<ol class='timeline'>{}</ol>",
            format_html_join(
                "",
                "<li><strong>{}</strong> {} by {}{}</li>",
                (
                    (
                        e.get_to_status_display(),
                        timezone.localtime(e.created_at).strftime("%Y-%m-%d %H:%M"),
                        e.actor_label,
                        format_html(" — {}", e.note) if e.note else "",
                    )
                    for e in events
                ),
            ),
        )

    @admin.display(description="Documents")
    def paperwork(self, obj):
        if not obj or not obj.pk:
            return "—"
        rows = format_html_join(
            "",
            '<li><a href="{}">{}</a> ({} KB, {})</li>',
            (
                (reverse("admin:registration_document", args=[d.pk]), d.name, max(1, d.size // 1024), d.content_type)
                for d in obj.documents.all()
            ),
        )
        link = reverse("admin:messaging_senderidcountry_documents", args=[obj.pk])
        return format_html('<ul>{}</ul><a class="button" href="{}">Upload or submit documents</a>', rows, link)

    def get_readonly_fields(self, request, obj=None):
        fields = [*super().get_readonly_fields(request, obj), "timeline"]
        # Paperwork is the reseller's and the reviewers' business: tenant users see the timeline only.
        return fields + ["paperwork"] if access.can(request.user, "view", RegistrationDocument) else fields

    def get_urls(self):
        documents = self.admin_site.admin_view(self.documents_view)
        return [
            path("<int:object_id>/documents/", documents, name="messaging_senderidcountry_documents"),
            *super().get_urls(),
        ]

    def documents_view(self, request, object_id: int):
        registration = self.get_object(request, str(object_id))  # 404 for another reseller's
        if not access.can(request.user, "add", registration.documents.model):
            raise PermissionDenied
        form = DocumentForm(request.POST or None, request.FILES or None)
        if request.method == "POST":
            try:
                if request.POST.get("action") == "submit":
                    senders.documents_submit(actor=request.user, registration=registration)
                    self.message_user(request, "Submitted for review: the platform's reviewers have been told.")
                    return redirect(reverse("admin:messaging_senderidcountry_change", args=[registration.pk]))
                if form.is_valid() and not form.cleaned_data["file"]:
                    form.add_error("file", "Choose the file to upload.")
                elif form.is_valid():
                    document = senders.document_upload(
                        actor=request.user, registration=registration, upload=form.cleaned_data["file"]
                    )
                    self.message_user(request, f"{document.name} uploaded. Submit when every document is here.")
                    return redirect(reverse("admin:messaging_senderidcountry_documents", args=[registration.pk]))
            except ValidationError as error:
                show_errors(form, error)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Documents: {registration.sender.value} → {registration.country}",
            "registration": registration,
            "documents": registration.documents.all(),
            "form": form,
        }
        return TemplateResponse(request, "messaging/registration_documents.html", context)


# ---------------------------------------------------------------------------------------------------------------
# Sender IDs and their registrations
# ---------------------------------------------------------------------------------------------------------------


class SamplesField(forms.CharField):
    """Sample messages, one per line."""

    widget = UnfoldAdminTextareaWidget(attrs={"rows": 3})

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        return [line.strip() for line in (value or "").splitlines() if line.strip()]


class CountryPicker(UnfoldAdminCheckboxSelectMultipleWidget):
    """A box of ticks, one per country, that scrolls: every tick is a labelled checkbox. (Django's two-box picker
    gives its icons an aria-label they may not carry, and select2's search box has no label: axe-core counts both.)"""

    def render(self, *args, **kwargs):
        return format_html('<div class="country-picker">{}</div>', super().render(*args, **kwargs))


def _country_choices() -> list[tuple[str, str]]:
    return [(rule.country, f"{rule.name} ({rule.country})") for rule in CountryRule.objects.order_by("name")]


class SenderIDForm(forms.ModelForm):
    samples = SamplesField(required=False, help_text="Example messages, one per line; reviewers read these.")
    countries = forms.MultipleChoiceField(
        choices=_country_choices,
        widget=CountryPicker,
        help_text="Destination countries. Countries that need paperwork start as “needs documents”.",
    )

    class Meta:
        model = SenderID
        fields = ["tenant", "account", "type", "value", "usecase", "samples"]

    actor = None  # the signed-in user, set by the admin

    def clean(self):
        cleaned = super().clean()
        if "countries" in cleaned and cleaned.get("type"):
            try:
                CountryRule.check_destinations(cleaned["type"], cleaned.get("countries") or [])
            except ValidationError as error:
                self.add_error("countries", error)
        return cleaned

    def _post_clean(self):
        # After every local check passed, register at Wavix as part of validation: Wavix's refusal (or its
        # absence) then shows on this form, and nothing is saved. The service saves only after Wavix said yes.
        super()._post_clean()
        if self.instance.pk is None and not self.errors:
            try:
                senders.sender_id_register(
                    actor=self.actor, sender=self.instance, countries=self.cleaned_data["countries"]
                )
            except ValidationError as error:
                self.add_error(None, error)


class SenderIDCountryInline(ScopedReadOnlyInline):
    model = SenderIDCountry
    readonly_fields = ["country", "status", "note", "status_changed_at"]
    fields = list(readonly_fields)


@admin.register(SenderID)
class SenderIDAdmin(CallsWavixAdmin, OwnedAdmin):
    form = SenderIDForm
    list_display = ["value", "type", "tenant", "account", "countries_summary", "created_at"]
    list_filter = ["type", ("tenant", RelatedOnlyFieldListFilter)]
    list_select_related = ["tenant", "account"]
    search_fields = ["value"]
    inlines = [SenderIDCountryInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("countries")

    @admin.display(description="Countries")
    def countries_summary(self, obj):
        return format_html_join(
            ", ", '<span title="{}">{}</span>', ((c.get_status_display(), c.country) for c in obj.countries.all())
        )

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["tenant", "account", "type", "value", "countries", "usecase", "samples"]
        return ["tenant", "account", "type", "value", "phone_number", "usecase", "samples", "wavix_id", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        # What is registered at Wavix cannot change; register a new sender ID instead.
        return ["tenant", "account", "type", "value", "phone_number", "wavix_id", "created_at"] if obj else []

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "account":
            # An account serves its own tenant, or (a reseller's shared account) every tenant of its reseller: the
            # script lists those usable by the tenant picked above; SenderID.clean() refuses any other.
            tenants = defaultdict(list)
            for pk, reseller_id in access.tenants_for(request.user, "add").values_list("pk", "reseller_id"):
                tenants[reseller_id].append(pk)
            kwargs["widget"] = OwnedSelect(
                lambda account: [account.tenant_id] if account.tenant_id else tenants[account.reseller_id]
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_form(self, request, obj=None, **kwargs):
        if obj is not None:
            kwargs["fields"] = ["usecase", "samples"]
        form = super().get_form(request, obj, **kwargs)
        form.actor = request.user
        return form

    def save_model(self, request, obj, form, change) -> None:
        if change:
            obj.full_clean()
            obj.save(update_fields=["usecase", "samples"])
        # A new sender ID was registered and saved while its form was validated.

    def save_related(self, request, form, formsets, change) -> None:
        pass  # registrations are created by the service and never edited here

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ValidationError as error:  # Wavix could not be asked, or the sender is in use: nothing deleted
            self.message_user(request, " ".join(error.messages), messages.ERROR)
            return redirect(reverse("admin:messaging_senderid_change", args=[object_id]))

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        # Registrations go with their sender ID; nobody deletes one on its own, so no permission is asked for.
        perms_needed.discard(SenderIDCountry._meta.verbose_name)
        return deleted, counts, perms_needed, protected

    def delete_model(self, request, obj) -> None:
        senders.sender_id_delete(actor=request.user, sender=obj)

    def delete_queryset(self, request, queryset) -> None:
        for sender in queryset:
            try:
                senders.sender_id_delete(actor=request.user, sender=sender)
            except ValidationError as error:
                self.message_user(request, f"{sender}: {' '.join(error.messages)}", messages.ERROR)


@admin.register(SenderIDCountry)
class SenderIDCountryAdmin(RegistrationPagesMixin, ScopedAdmin):
    list_display = ["sender", "tenant", "country", "status", "status_changed_at"]
    list_filter = ["status", "country", ("tenant", RelatedOnlyFieldListFilter)]
    list_select_related = ["sender", "tenant"]
    search_fields = ["sender__value", "country"]
    readonly_fields = ["sender", "tenant", "country", "status", "note", "status_changed_at", "changed_by"]
    exclude = ["status_changed_by"]  # shown as changed_by: the admin would link the login to a page no reseller opens

    @admin.display(description="Status changed by")
    def changed_by(self, obj):
        # A name, not the admin's link to the login's own page: the reviewer is platform staff, whose page a reseller
        # cannot open. None: the portal moved it itself (Wavix's allow-listing picked up by the sync).
        user = obj.status_changed_by if obj else None
        if user is None:
            return "—"
        return user.get_full_name() or user.email
