"""The guided SMS setup of a trunk (tenant → trunk → "Set up SMS") and its printable 3CX configuration pack.

Pages only: every decision is in messaging/services/setup.py. Wavix and 3CX are called outside any database
transaction (these views are not atomic), so a slow answer holds no locks.
"""

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from messaging.admin.base import AdminMixin
from messaging.models import SenderID, alphanumeric_problems, url_shown_to
from messaging.services import setup, setup_actions
from tenants import access
from tenants.scoped_admin import show_errors


class SenderForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[
            ("numeric", "Numeric: one of the tenant's numbers (two-way)"),
            ("alphanumeric", "Alphanumeric: a name (one-way)"),
            ("existing", "A sender ID the tenant already has"),
        ],
        widget=forms.RadioSelect,
        initial="numeric",
    )
    number = forms.CharField(required=False)
    value = forms.CharField(required=False, max_length=16, label="Name")
    existing = forms.ModelChoiceField(queryset=SenderID.objects.none(), required=False, label="Sender ID")

    def __init__(self, *args, trunk, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["existing"].queryset = SenderID.objects.filter(tenant_id=trunk.tenant_id).order_by("value")


class CountriesForm(forms.Form):
    countries = forms.MultipleChoiceField(choices=(), widget=forms.CheckboxSelectMultiple)
    usecase = forms.ChoiceField(choices=SenderID.UseCase.choices, label="Use case")
    samples = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="Example texts, one per line: reviewers of countries that need paperwork read them.",
    )

    def __init__(self, *args, choices, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["countries"].choices = [(c.code, c.name) for c in choices if not c.unsupported]


class EnableForm(forms.Form):
    api_key = forms.CharField(
        required=False,
        label="Wavix API key",
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )
    threecx_webhook_url = forms.CharField(label="3CX webhook URL", max_length=500, widget=forms.URLInput)


class TestForm(forms.Form):
    to = forms.CharField(label="Mobile number", max_length=40)


class DestinationForm(forms.Form):
    destination = forms.CharField(label="Check a destination number", max_length=40, required=False)


class TrunkSetupMixin(AdminMixin):
    """Adds the setup wizard, its live status and the 3CX pack to the trunk admin."""

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:object_id>/setup/", wrap(self.setup_view), name="messaging_trunk_setup"),
            path("<int:object_id>/setup/status/", wrap(self.setup_status_view), name="messaging_trunk_setup_status"),
            path("<int:object_id>/setup/check-name/", wrap(self.check_name_view), name="messaging_trunk_check_name"),
            path("<int:object_id>/setup/<str:step>/", wrap(self.setup_view), name="messaging_trunk_setup_step"),
            path("<int:object_id>/3cx-pack/", wrap(self.threecx_pack_view), name="messaging_trunk_threecx_pack"),
            path(
                "<int:object_id>/3cx-template/", wrap(self.threecx_template_view), name="messaging_trunk_3cx_template"
            ),
            *super().get_urls(),
        ]

    @admin.display(description="SMS setup")
    def sms_setup(self, obj):
        if not obj or not obj.pk:
            return "—"
        done = len((obj.setup_progress or {}).get("steps_done", []))
        url = reverse("admin:messaging_trunk_setup", args=[obj.pk])
        total = len(setup.STEPS)
        label = "Done: check or test again" if done >= total else ("Set up SMS" if not done else "Continue the setup")
        return format_html(
            '<a class="button" href="{}">{}</a> {} of {} steps done', url, label, min(done, total), total
        )

    def _trunk_to_change(self, request, object_id):
        trunk = self.get_object(request, str(object_id))  # 404 for another reseller's trunk
        if not self.has_change_permission(request, trunk):
            raise PermissionDenied
        return trunk

    def response_add(self, request, obj, post_url_continue=None):
        """A new trunk goes straight to its setup, unless the person asked for something else."""
        if "_addanother" in request.POST or "_continue" in request.POST or "_popup" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        self.message_user(request, f"Trunk {obj} added. Now set up SMS on it, step by step.")
        return redirect(reverse("admin:messaging_trunk_setup", args=[obj.pk]))

    def setup_view(self, request, object_id: int, step: str | None = None):
        trunk = self._trunk_to_change(request, object_id)
        if step is None:
            return redirect(
                reverse(
                    "admin:messaging_trunk_setup_step", args=[trunk.pk, setup.current_step(setup.setup_state(trunk))]
                )
            )
        if step not in setup.STEP_KEYS:
            raise Http404("No such step.")
        handler = getattr(self, f"_step_{step}")
        context = handler(request, trunk)
        if not isinstance(context, dict):
            return context  # a redirect after a successful POST
        trunk.refresh_from_db()
        steps = setup.setup_refresh(trunk)
        if step == "troubleshoot":
            # The header and the step list say what the listed checks say (a typed destination included).
            checked = setup.checked_steps(steps)
            context["checks"] = setup.troubleshoot(trunk, destination=context.pop("destination"), steps=checked)
            shoot = steps[-1]
            shoot.state, shoot.reason = setup.troubleshoot_verdict(context["checks"], checked)
        context.update(
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": f"Set up SMS: {trunk}",
                "trunk": trunk,
                "steps": steps,
                "step": next(s for s in steps if s.key == step),
                "steps_total": len(steps),
                "next_step": next((s for s in steps if s.number == setup.STEP_KEYS.index(step) + 2), None)
                if step in ("enable", "verify")
                else None,
                "status_url": reverse("admin:messaging_trunk_setup_status", args=[trunk.pk]),
            }
        )
        return TemplateResponse(request, "messaging/setup.html", context)

    # Step 1 -------------------------------------------------------------------------------------------------
    def _step_sender(self, request, trunk):
        candidates = setup_actions.sender_candidates(trunk)
        preselected = setup_actions.sender_preselected(trunk, candidates)
        initial = {"kind": "numeric", "number": str(preselected)} if preselected else {}
        form = SenderForm(request.POST or None, trunk=trunk, initial=initial)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                setup_actions.setup_choose_sender(
                    trunk=trunk,
                    kind=data["kind"],
                    number_id=data["number"],
                    value=data["value"],
                    existing_id=data["existing"].pk if data["existing"] else None,
                )
            except ValidationError as error:
                show_errors(form, error)
            else:
                return redirect(reverse("admin:messaging_trunk_setup_step", args=[trunk.pk, "countries"]))
        return {
            "form": form,
            "candidates": candidates,
            "draft": setup.progress(trunk).get("draft"),
            "check_name_url": reverse("admin:messaging_trunk_check_name", args=[trunk.pk]),
        }

    def check_name_view(self, request, object_id: int):
        """Step 1's as-you-type check of an alphanumeric name: the same rule the save applies."""
        self._trunk_to_change(request, object_id)
        value = request.GET.get("value", "").strip()
        problems = alphanumeric_problems(value) if value else []
        return JsonResponse({"value": value, "ok": bool(value) and not problems, "problems": problems})

    # Step 2 -------------------------------------------------------------------------------------------------
    def _step_countries(self, request, trunk):
        draft = setup.progress(trunk).get("draft")
        sender_type = draft["type"] if draft else (trunk.main_sender.type if trunk.main_sender else "numeric")
        choices = setup_actions.country_choices(sender_type, pinned=trunk.tenant.default_country)
        initial = {"countries": setup_actions.countries_preticked(trunk, choices)}
        form = CountriesForm(request.POST or None, choices=choices, initial=initial)
        review = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                if request.POST.get("action") == "submit":
                    setup_actions.setup_register(
                        actor=request.user,
                        trunk=trunk,
                        countries=data["countries"],
                        usecase=data["usecase"],
                        samples=[line.strip() for line in data["samples"].splitlines()],
                    )
                    self.message_user(request, "Sender ID registered at Wavix.")
                    return redirect(reverse("admin:messaging_trunk_setup_step", args=[trunk.pk, "threecx"]))
                review = setup_actions.countries_review(trunk, data["countries"])
            except ValidationError as error:
                show_errors(form, error)
        selected = set(form["countries"].value() or [])
        return {
            "form": form,
            "choices": choices,
            "selected": selected,
            "review": review,
            "draft": draft,
            "registrations": list(trunk.main_sender.countries.all()) if trunk.main_sender else [],
        }

    # Step 3 -------------------------------------------------------------------------------------------------
    def _step_threecx(self, request, trunk):
        error, new_key = None, None
        action = request.POST.get("action", "confirm") if request.method == "POST" else None
        step3 = reverse("admin:messaging_trunk_setup_step", args=[trunk.pk, "threecx"])
        try:
            if action == "sending":
                new_key = setup_actions.setup_choose_sending(
                    actor=request.user, trunk=trunk, via=request.POST.get("via", "")
                )
                if new_key is None:
                    return redirect(step3)
            elif action == "rotate":
                new_key = setup_actions.setup_provider_key_rotate(actor=request.user, trunk=trunk)
            elif action == "switch":
                setup_actions.setup_switch_confirm(actor=request.user, trunk=trunk)
                self.message_user(
                    request, "The trunk uses the Generic template now: inbound texts go to 3CX in the Generic format."
                )
                return redirect(step3)
            elif action == "confirm":
                setup_actions.setup_confirm_threecx(trunk)
                return redirect(reverse("admin:messaging_trunk_setup_step", args=[trunk.pk, "enable"]))
        except ValidationError as refusal:
            error = " ".join(refusal.messages)
        # A new key is on this response only (like an API token): not in the session, a message or the pack.
        trunk.refresh_from_db()
        portal = setup.sending_way(trunk) == setup.PORTAL
        return {
            "values": setup.threecx_values(trunk),
            "error": error,
            "pack_url": reverse("admin:messaging_trunk_threecx_pack", args=[trunk.pk]),
            "template_url": reverse("admin:messaging_trunk_3cx_template", args=[trunk.pk]),
            "sending": setup.sending_way(trunk),
            "chosen": portal or any(setup.progress(trunk).get(fact) for fact in ("sending", "threecx_confirmed_at")),
            "switch_pending": setup.switch_pending(trunk),
            "in_use": setup.forwarding_in_use(trunk),
            "provider_url": setup.portal_provider_url(trunk) if portal else "",
            "live_key": setup.provider_key_live(trunk) if portal else None,
            "new_key": new_key,
        }

    # Step 4 -------------------------------------------------------------------------------------------------
    def _step_enable(self, request, trunk):
        form = EnableForm(request.POST or None)
        probe = None
        if request.method == "POST" and form.is_valid():
            try:
                probe = setup_actions.setup_enable(
                    actor=request.user,
                    trunk=trunk,
                    webhook_url=form.cleaned_data["threecx_webhook_url"],
                    api_key=form.cleaned_data["api_key"],
                )
            except ValidationError as error:
                show_errors(form, error)
            else:
                self.message_user(request, "SMS is on. The portal is pointing the trunk's numbers at itself at Wavix.")
                return redirect(reverse("admin:messaging_trunk_setup_step", args=[trunk.pk, "enable"]))
        account = trunk.main_sender.account if trunk.main_sender else None
        return {
            "form": form,
            "account": account,
            "dlr_url": url_shown_to(request.user, account, account.dlr_webhook_url) if account else "",
            "probe": probe,
            "last_probe": setup.progress(trunk).get("probe"),
            "numbers": list(setup.trunk_numbers(trunk)),
        }

    # Step 5 -------------------------------------------------------------------------------------------------
    def _step_verify(self, request, trunk):
        form = TestForm(request.POST or None, initial={"to": setup.progress(trunk).get("test_to", "")})
        reply_error = None
        setup_actions.setup_app_watch(trunk)  # 3CX's own texts count from the first look at this step
        if request.method == "POST" and request.POST.get("action") == "watch":
            setup_actions.setup_app_watch(trunk, again=True)
            return redirect(reverse("admin:messaging_trunk_setup_step", args=[trunk.pk, "verify"]))
        if request.method == "POST" and request.POST.get("action") == "reply":
            form = TestForm(initial={"to": setup.progress(trunk).get("test_to", "")})
            try:
                setup_actions.setup_sandbox_reply(trunk)
            except ValidationError as refusal:
                reply_error = refusal.messages[0]
            else:
                return redirect(reverse("admin:messaging_trunk_setup_step", args=[trunk.pk, "verify"]))
        elif request.method == "POST" and form.is_valid():
            try:
                setup_actions.setup_test_send(trunk=trunk, to=form.cleaned_data["to"])
            except ValidationError as error:
                show_errors(form, error)
            else:
                return redirect(reverse("admin:messaging_trunk_setup_step", args=[trunk.pk, "verify"]))
        return {
            "form": form,
            "reply_error": reply_error,
            "sandbox_reply": setup_actions.sandbox_reply_possible(trunk),
            "reply_requested": bool(setup.progress(trunk).get("reply_requested_at")),
            "two_way": bool(trunk.main_sender and trunk.main_sender.type == SenderID.Type.NUMERIC),
            "status": setup.verify_status(trunk),
            "portal": setup.sending_way(trunk) == setup.PORTAL,
            "sandbox": settings.SANDBOX_ENABLED,
        }

    # Step 6 -------------------------------------------------------------------------------------------------
    def _step_troubleshoot(self, request, trunk):
        form = DestinationForm(request.GET or None)
        destination = form.data.get("destination", "") if form.is_bound else ""
        # The checks are listed in setup_view, from the same steps as the step list: one source for both.
        return {"form": form, "destination": destination.strip(), "sending": setup.sending_way(trunk)}

    # Live status and the pack --------------------------------------------------------------------------------
    def setup_status_view(self, request, object_id: int):
        trunk = self.get_object(request, str(object_id))
        if not access.can(request.user, "view", trunk):
            raise PermissionDenied
        return JsonResponse(setup.verify_status(trunk))

    def threecx_pack_view(self, request, object_id: int):
        trunk = self.get_object(request, str(object_id))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"3CX configuration: {trunk}",
            "trunk": trunk,
            "values": setup.threecx_values(trunk),
            "steps": setup.setup_state(trunk),
        }
        return TemplateResponse(request, "messaging/threecx_pack.html", context)

    def threecx_template_view(self, request, object_id: int):
        """The 3CX messaging provider template file of a portal-sending trunk, pre-filled with its Provider URL."""
        trunk = self.get_object(request, str(object_id))
        if trunk is None:
            raise Http404("No such trunk.")
        if setup.sending_way(trunk) != setup.PORTAL:
            raise Http404("This trunk's 3CX sends straight to Wavix: it needs no provider template.")
        name, body = setup.threecx_template(trunk)
        response = HttpResponse(body, content_type="application/xml; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
