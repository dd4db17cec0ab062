"""The SMS setup of one trunk, step by step (DESIGN §2): what is done, what is next, and why something is wrong.

Each step's state is worked out from the data itself — the trunk's sender ID, its registrations, the numbers'
relay URLs, the test message — so it cannot disagree with the rest of the portal. Only what has no other
home is kept in Trunk.setup_progress: the sender chosen but not yet registered, "I typed it into 3CX", the
reachability check's result, and the test message and reply. `steps_done` there is a copy for list pages.
"""

import json
import logging
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import NamedTuple

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from messaging import threecx
from messaging.models import (
    CountryRule,
    Delivery,
    Message,
    PhoneNumber,
    SenderID,
    SenderIDCountry,
    TenDLCRegistration,
    Trunk,
    WavixAccount,
    alphanumeric_problems,
    country_of,
    to_e164,
)
from messaging.services.sending import message_send
from messaging.services.wavix_sync import (
    _wavix_refusal,
    sender_id_register,
    trunk_save,
    wavix_account_save,
    wavix_key_check,
)
from messaging.wavix import WavixClient, WavixError, WavixTransientError, explain, to_wavix_number

logger = logging.getLogger(__name__)

STEPS = [
    ("sender", "Sender ID"),
    ("countries", "Destination countries"),
    ("threecx", "3CX trunk"),
    ("enable", "Enable SMS"),
    ("verify", "Verify"),
    ("troubleshoot", "Troubleshoot"),
]
STEP_KEYS = [key for key, _ in STEPS]
DONE, TODO, PROBLEM, WAITING = "done", "todo", "problem", "waiting"
TEST_TEXT = "Test from your phone system: SMS on {trunk} works. Reply to this text to test receiving."
SANDBOX_REPLY_TEXT = "Got it! (a reply from the sandbox phone)"


@dataclass
class Step:
    key: str
    number: int
    title: str
    state: str = TODO
    reason: str = ""


@dataclass
class Probe:
    checks: list[threecx.Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)


def progress(trunk: Trunk) -> dict:
    return dict(trunk.setup_progress or {})


def _merge(trunk: Trunk, changes: dict) -> None:
    """Merge keys into the stored progress under the row's lock: the live status page refreshes steps_done
    while a step's POST stores its facts, and neither may overwrite the other's keys with a stale copy."""
    with transaction.atomic():
        stored = Trunk.objects.select_for_update().values_list("setup_progress", flat=True).get(pk=trunk.pk)
        trunk.setup_progress = {**(stored or {}), **changes}
        Trunk.objects.filter(pk=trunk.pk).update(setup_progress=trunk.setup_progress)


def _remember(trunk: Trunk, **changes) -> None:
    """Store wizard facts on the trunk, and refresh the steps_done copy the list pages read."""
    _merge(trunk, changes)
    setup_refresh(trunk)


def setup_refresh(trunk: Trunk) -> list["Step"]:
    """Work out every step's state; store the steps_done copy if it changed (a delivery report may have moved
    the test text on since the last look)."""
    steps = setup_state(trunk)
    done = [s.key for s in steps if s.state == DONE]
    if progress(trunk).get("steps_done") != done:
        _merge(trunk, {"steps_done": done})
    return steps


def _sender_account(trunk: Trunk) -> WavixAccount | None:
    sender = trunk.main_sender
    return sender.account if sender else None


def trunk_numbers(trunk: Trunk):
    return PhoneNumber.objects.filter(trunk=trunk).select_related("account", "trunk")


# ---------------------------------------------------------------------------------------------------------------
# Where the setup stands
# ---------------------------------------------------------------------------------------------------------------


def setup_state(trunk: Trunk) -> list[Step]:
    """Every step with its state and, unless done, the reason in words."""
    steps = [Step(key, n, title) for n, (key, title) in enumerate(STEPS, start=1)]
    by_key = {step.key: step for step in steps}
    facts = progress(trunk)
    sender = trunk.main_sender

    # 1. Sender ID
    if sender:
        way = "numeric, two-way" if sender.type == SenderID.Type.NUMERIC else "alphanumeric, one-way"
        by_key["sender"].state, by_key["sender"].reason = DONE, f"{sender.value} ({way})"
    elif facts.get("draft"):
        by_key["sender"].state = DONE
        by_key["sender"].reason = f"{facts['draft']['value']} chosen; registered with step 2"
    else:
        by_key["sender"].reason = "Choose the number or name texts come from."

    # 2. Destination countries
    countries = by_key["countries"]
    if not sender:
        countries.reason = "Pick the countries to text, after the sender ID."
    else:
        registrations = list(sender.countries.all())
        usable = [r.country for r in registrations if r.can_send]
        waiting = [f"{r.country} ({r.get_status_display().lower()})" for r in registrations if not r.can_send]
        refused = [r for r in registrations if r.status == SenderIDCountry.Status.REJECTED]
        if usable:
            countries.state = DONE
            countries.reason = (
                "Allow-listed: " + ", ".join(usable) + (f"; waiting: {', '.join(waiting)}" if waiting else "")
            )
        elif refused and len(refused) == len(registrations):
            countries.state = PROBLEM
            countries.reason = "Every country was rejected: " + "; ".join(
                f"{r.country}: {r.note or 'no reason given'}" for r in refused
            )
        else:
            countries.state = WAITING
            countries.reason = "Waiting for allow-listing: " + ", ".join(waiting)

    # 3. 3CX trunk
    if facts.get("threecx_confirmed_at"):
        by_key["threecx"].state, by_key["threecx"].reason = DONE, "Entered in 3CX"
    else:
        by_key["threecx"].reason = "Enter the trunk's values in 3CX, then confirm here."

    # 4. Enable SMS
    enable = by_key["enable"]
    numbers = list(trunk_numbers(trunk))
    drifted = [n.number for n in numbers if n.relay_drift]
    unwired = [n.number for n in numbers if n.relay_set_at is None or n.sms_relay_url != n.expected_relay_url]
    if not trunk.sms_enabled or not trunk.threecx_webhook_url_encrypted:
        enable.reason = "Check the Wavix key and 3CX's webhook URL, then switch SMS on."
    elif drifted:
        enable.state = PROBLEM
        enable.reason = (
            f"Wavix sends texts for {', '.join(drifted)} somewhere else (changed outside the portal): repair the relay."
        )
    elif not trunk.is_healthy:
        enable.state = PROBLEM
        enable.reason = f"Forwarding to 3CX is failing: {trunk.forward_error or 'see Deliveries'}"
    elif unwired:
        enable.state = WAITING
        enable.reason = f"Pointing {', '.join(unwired)} at the portal at Wavix…"
    else:
        enable.state = DONE
        enable.reason = "SMS on; Wavix sends this trunk's texts and delivery reports to the portal"

    # 5. Verify
    verify = by_key["verify"]
    test = _test_message(trunk)
    reply = _reply_message(trunk)
    two_way = sender is not None and sender.type == SenderID.Type.NUMERIC
    if test is None:
        verify.reason = "Send a test text to a mobile phone."
    elif test.status in (
        Message.Status.UNDELIVERED,
        Message.Status.REJECTED,
        Message.Status.FAILED,
        Message.Status.EXPIRED,
    ):
        verify.state = PROBLEM
        verify.reason = f"The test text was {test.get_status_display().lower()}: " + (
            explain(test.error_message) if test.error_message else "no reason given"
        )
    elif test.status != Message.Status.DELIVERED:
        verify.state = WAITING
        verify.reason = f"Test text: {test.get_status_display().lower()}…"
    elif not two_way:
        verify.state, verify.reason = DONE, "Test text delivered (an alphanumeric sender cannot receive replies)"
    elif reply is None:
        verify.state = WAITING
        verify.reason = "Test text delivered; now reply to it from the phone."
    elif reply.status == Message.Status.FORWARDED:
        verify.state, verify.reason = DONE, "Test text delivered and the reply reached 3CX"
    elif reply.status == Message.Status.FAILED:
        verify.state, verify.reason = PROBLEM, "The reply arrived but 3CX refused it: see the answer below."
    else:
        verify.state, verify.reason = WAITING, "The reply arrived; forwarding it to 3CX…"

    # 6. Troubleshoot: done when every check passes
    failing = [check for check in troubleshoot(trunk, steps=steps[:5]) if not check.ok]
    shoot = by_key["troubleshoot"]
    if failing:
        shoot.state = PROBLEM if any(s.state == PROBLEM for s in steps[:5]) else TODO
        shoot.reason = failing[0].name
    else:
        shoot.state, shoot.reason = DONE, "Every check passes"
    return steps


def current_step(steps: list[Step]) -> str:
    """The first step that is not done (a problem first of all), else the last."""
    for wanted in (PROBLEM, TODO, WAITING):
        for step in steps[:5]:
            if step.state == wanted:
                return step.key
    return "troubleshoot"


def _test_message(trunk: Trunk) -> Message | None:
    pk = progress(trunk).get("test_message")
    return Message.objects.filter(pk=pk, tenant_id=trunk.tenant_id).first() if pk else None


def _reply_message(trunk: Trunk) -> Message | None:
    """The first text from the test phone to this trunk since the test was sent."""
    facts = progress(trunk)
    if not facts.get("test_to") or not facts.get("test_sent_at"):
        return None
    return (
        Message.objects.filter(
            tenant_id=trunk.tenant_id,
            trunk=trunk,
            direction=Message.Direction.INBOUND,
            from_number=facts["test_to"],
            created_at__gte=facts["test_sent_at"],
        )
        .order_by("id")
        .first()
    )


# ---------------------------------------------------------------------------------------------------------------
# Step 1: the sender ID
# ---------------------------------------------------------------------------------------------------------------


def sender_candidates(trunk: Trunk):
    """The tenant's numbers a numeric sender can be, with their 10DLC state and what stops the others."""
    numbers = list(
        PhoneNumber.objects.filter(tenant_id=trunk.tenant_id).select_related("account", "trunk").order_by("number")
    )
    tendlc = {
        (r.account_id, r.kind, r.brand_id, r.campaign_id): r
        for r in TenDLCRegistration.objects.filter(account__in={n.account_id for n in numbers})
    }
    held = (PhoneNumber.TenDLCStatus.PENDING, PhoneNumber.TenDLCStatus.REJECTED)
    rows = []
    for number in numbers:
        brand = tendlc.get((number.account_id, "brand", number.tendlc_brand_id, ""))
        campaign = tendlc.get((number.account_id, "campaign", number.tendlc_brand_id, number.tendlc_campaign_id))
        parts = [f"number {number.get_tendlc_status_display().lower()}"] if number.tendlc_status else []
        parts += [f"campaign {campaign.get_status_display().lower()}"] if campaign else []
        parts += [f"brand {brand.get_status_display().lower()}"] if brand else []
        problem = ""
        if not number.sms_enabled:
            problem = "SMS is not enabled on this number at Wavix."
        elif number.country == "US" and (
            number.tendlc_status in held or (campaign and campaign.status in held) or (brand and brand.status in held)
        ):  # Wavix reports 10DLC by webhook; a number it never reported on is not held back
            problem = f"10DLC: {', '.join(parts)}. US numbers text once brand, campaign and number are approved."
        elif number.trunk_id and number.trunk_id != trunk.pk:
            problem = f"Already serves the trunk {number.trunk}."
        tendlc_text = ", ".join(parts) if parts else ("not reported" if number.country == "US" else "—")
        rows.append(SimpleNamespace(number=number, problem=problem, tendlc=tendlc_text))
    return rows


def setup_choose_sender(*, trunk: Trunk, kind: str, number_id=None, value: str = "", existing_id=None) -> None:
    """Step 1: remember the chosen sender (registered at Wavix with its countries in step 2)."""
    tenant = trunk.tenant
    if kind == "existing":
        sender = SenderID.objects.filter(pk=existing_id, tenant=tenant).first()
        if sender is None:
            raise ValidationError({"existing": "Choose one of the tenant's sender IDs."})
        _use_sender(trunk, sender)
        return
    if kind == "numeric":
        candidate = next((c for c in sender_candidates(trunk) if str(c.number.pk) == str(number_id)), None)
        if candidate is None:
            raise ValidationError({"number": "Choose one of the tenant's numbers."})
        if candidate.problem:
            raise ValidationError({"number": f"{candidate.number.number}: {candidate.problem}"})
        existing = SenderID.objects.filter(tenant=tenant, value=candidate.number.number).first()
        if existing:
            _use_sender(trunk, existing)
            return
        draft = {"type": SenderID.Type.NUMERIC, "value": candidate.number.number, "number": candidate.number.pk}
    elif kind == "alphanumeric":
        value = (value or "").strip()
        if problems := alphanumeric_problems(value):
            raise ValidationError({"value": problems})
        if SenderID.objects.filter(tenant=tenant, value=value).exists():
            raise ValidationError({"value": f"{tenant} already has the sender ID {value}: choose it under 'existing'."})
        if WavixAccount.default_for(tenant) is None:
            raise ValidationError(
                {"value": f"{tenant} has no single Wavix account to register it on: add one under Wavix accounts."}
            )
        draft = {"type": SenderID.Type.ALPHANUMERIC, "value": value}
    else:
        raise ValidationError({"kind": "Choose a numeric or an alphanumeric sender ID."})
    _remember(trunk, draft=draft)


def _use_sender(trunk: Trunk, sender: SenderID) -> None:
    with transaction.atomic():
        trunk.main_sender = sender
        trunk.save(update_fields=["main_sender", "updated_at"])
        if sender.phone_number_id:
            PhoneNumber.objects.filter(pk=sender.phone_number_id, trunk=None).update(trunk=trunk)
        _remember(trunk, draft=None)  # registered: no longer a draft


# ---------------------------------------------------------------------------------------------------------------
# Step 2: destination countries
# ---------------------------------------------------------------------------------------------------------------


def country_choices(sender_type: str):
    """Every country with whether this sender type may text it, and whether paperwork comes first."""
    kind = "Alphanumeric" if sender_type == SenderID.Type.ALPHANUMERIC else "Numeric"
    rows = []
    for rule in CountryRule.objects.order_by("name"):
        policy = rule.policy_for(sender_type)
        unsupported = policy == CountryRule.Policy.UNSUPPORTED
        paperwork = policy == CountryRule.Policy.REGISTRATION
        note = rule.note or (f"{kind} sender IDs are not supported here." if unsupported else "")
        if paperwork and not rule.note:
            note = "Needs paperwork: the platform's reviewers approve it before texts go out."
        rows.append(
            SimpleNamespace(code=rule.country, name=rule.name, unsupported=unsupported, paperwork=paperwork, note=note)
        )
    return rows


def countries_review(trunk: Trunk, countries) -> dict[str, list[CountryRule]]:
    """What submitting these countries would do: allow-listed at once, or waiting for paperwork."""
    draft = progress(trunk).get("draft")
    if not draft:
        raise ValidationError({"countries": "Choose the sender ID first (step 1)."})
    try:
        rules = CountryRule.check_destinations(draft["type"], countries)
    except ValidationError as error:
        raise ValidationError({"countries": error.messages}) from None
    review = {"at_once": [], "paperwork": []}
    for rule in sorted(rules.values(), key=lambda r: r.name):
        review["paperwork" if rule.policy_for(draft["type"]) == CountryRule.Policy.REGISTRATION else "at_once"].append(
            rule
        )
    return review


def setup_register(*, actor, trunk: Trunk, countries, usecase: str, samples=()) -> SenderID:
    """Step 2: register the chosen sender at Wavix for these countries and make it the trunk's Main Trunk No."""
    draft = progress(trunk).get("draft")
    if not draft:
        raise ValidationError({"countries": "Choose the sender ID first (step 1)."})
    sender = SenderID(
        tenant=trunk.tenant,
        type=draft["type"],
        value=draft["value"],
        usecase=usecase,
        samples=[s for s in samples if s],
    )
    sender = sender_id_register(actor=actor, sender=sender, countries=countries)
    _use_sender(trunk, sender)
    return sender


# ---------------------------------------------------------------------------------------------------------------
# Steps 3 and 4: 3CX, then SMS on
# ---------------------------------------------------------------------------------------------------------------


class ThreeCXValue(NamedTuple):
    field: str
    value: str
    note: str  # where it goes, and why
    copyable: bool = True  # False: a hint, not something to paste


def threecx_values(trunk: Trunk) -> list[ThreeCXValue]:
    """What the 3CX admin types, field by field: for step 3 and the printable pack."""
    sender = trunk.main_sender
    account = _sender_account(trunk)
    template = "Wavix" if trunk.sms_template == Trunk.SmsTemplate.WAVIX else "Generic SMS provider"
    rows = [
        ThreeCXValue(
            "Provider template",
            template,
            "3CX admin console → Voice & Chat → Add Trunk: the format the portal forwards",
        ),
        ThreeCXValue("Main Trunk No.", sender.value, "General tab. It must be the sender ID, exactly as shown")
        if sender
        else ThreeCXValue("Main Trunk No.", "— choose the sender ID first (step 1) —", "General tab", copyable=False),
        ThreeCXValue("PBX FQDN", trunk.pbx_fqdn, "The host of the webhook URL 3CX will show"),
        ThreeCXValue(
            "SMS → Api Key",
            f"the Wavix API key ending …{account.api_key_last4}" if account else "the Wavix API key",
            "SMS tab. 3CX sends texts straight to Wavix with it; the portal never shows keys: copy it from Wavix",
            copyable=False,
        ),
        ThreeCXValue(
            "SMS → Webhook URL",
            "shown by 3CX: paste it into step 4 here",
            "Wavix sends texts to the portal, which forwards them to this URL",
            copyable=False,
        ),
    ]
    if sender and sender.type == SenderID.Type.NUMERIC:
        rows.append(ThreeCXValue("DID numbers", sender.value, "DIDs tab: the number texts and calls arrive on"))
    return rows


def setup_confirm_threecx(trunk: Trunk) -> None:
    if not trunk.main_sender:
        raise ValidationError("Choose and register the sender ID first: it is 3CX's Main Trunk No.")
    _remember(trunk, threecx_confirmed_at=timezone.now().isoformat())


def _test_body(trunk: Trunk, test_id: str) -> bytes:
    """A test inbound text in the trunk's template, from the portal to the trunk's own number."""
    own = trunk.main_sender.value if trunk.main_sender else "+10000000000"
    now = timezone.now().isoformat().replace("+00:00", "Z")
    text = "PBX Messaging Portal: connection test. You can delete this conversation."
    if trunk.sms_template == Trunk.SmsTemplate.GENERIC:
        fake = SimpleNamespace(media=[], text=text, from_number=own, to_number=own, wavix_message_id=test_id)
        return threecx.generic_envelope(fake, now)
    digits = to_wavix_number(own) if own.startswith("+") else own
    body = {
        "message_id": test_id,
        "from": digits,
        "to": digits,
        "message_body": {"text": text, "media": None},
        "received_at": now,
    }
    return json.dumps(body).encode()


def setup_enable(*, actor, trunk: Trunk, webhook_url: str, api_key: str = "") -> Probe:
    """Step 4: check the Wavix key and the 3CX webhook URL (reachability included); if all is well, switch SMS
    on and let the portal point the numbers at itself. Nothing is saved unless every check passes."""
    account = _sender_account(trunk)
    if account is None:
        raise ValidationError({"threecx_webhook_url": "Choose and register the sender ID first (steps 1 and 2)."})
    errors = {}
    api_key = (api_key or "").strip()
    try:
        if api_key:
            wavix_key_check(api_key)
        else:
            WavixClient.for_account(account).profile()
    except ValidationError as error:
        errors["api_key"] = error.message_dict["api_key"]
    except WavixTransientError as error:
        errors["api_key"] = [_wavix_refusal(error, "", doing="check the key", nothing="changed")]
    except WavixError as error:
        errors["api_key"] = [
            f"Wavix refused the stored key (…{account.api_key_last4}): {error.message}. "
            "Paste the account's current key."
        ]
    webhook_url = (webhook_url or "").strip()
    try:
        Trunk(pk=trunk.pk).set_threecx_webhook_url(webhook_url)  # the format and address checks, on a copy
        if not webhook_url:
            raise ValidationError({"threecx_webhook_url": "Paste the Webhook URL from the trunk's SMS tab in 3CX."})
    except ValidationError as error:
        errors.update(error.message_dict)
    if errors:
        raise ValidationError(errors)
    probe = Probe(threecx.probe(webhook_url, _test_body(trunk, f"portal-test-{uuid.uuid4()}"), "portal-test"))
    _remember(
        trunk,
        probe=[{"name": c.name, "ok": c.ok, "detail": c.detail} for c in probe.checks],
        probed_at=timezone.now().isoformat(),
    )
    if not probe.ok:
        failed = next(c for c in probe.checks if not c.ok)
        raise ValidationError({"threecx_webhook_url": f"{failed.name}: {failed.detail}"})
    if api_key:
        wavix_account_save(actor=actor, account=account, api_key=api_key, key_checked=True)
    trunk.sms_enabled = True
    trunk_save(actor=actor, trunk=trunk, threecx_webhook_url=webhook_url)  # enabling SMS wires the numbers
    _remember(trunk, enabled_at=timezone.now().isoformat())
    return probe


# ---------------------------------------------------------------------------------------------------------------
# Step 5: verify
# ---------------------------------------------------------------------------------------------------------------


def setup_test_send(*, trunk: Trunk, to: str) -> Message:
    if not trunk.main_sender:
        raise ValidationError({"to": "Choose and register the sender ID first (steps 1 and 2)."})
    try:
        message = message_send(tenant=trunk.tenant, sender=trunk.main_sender, to=to, text=TEST_TEXT.format(trunk=trunk))
    except ValidationError as error:
        raise ValidationError({"to": [m for ms in error.message_dict.values() for m in ms]}) from None
    _remember(trunk, test_message=message.pk, test_to=message.to_number, test_sent_at=message.created_at.isoformat())
    return message


def sandbox_reply_possible(trunk: Trunk) -> bool:
    return bool(
        settings.SANDBOX_ENABLED and "/sandbox/wavix" in settings.WAVIX_API_URL and progress(trunk).get("test_to")
    )


def setup_sandbox_reply(trunk: Trunk) -> None:
    """In the sandbox, the test phone replies: queued, because the sandbox then calls the portal's webhook."""
    if not sandbox_reply_possible(trunk):
        raise ValidationError("Send the test text first; replies from the sandbox phone exist only in the sandbox.")
    if not trunk.main_sender or trunk.main_sender.type != SenderID.Type.NUMERIC:
        raise ValidationError("An alphanumeric sender cannot receive replies.")
    from celery import current_app

    current_app.send_task("messaging.tasks.setup_sandbox_reply", args=(trunk.pk,), queue="sync")
    _remember(trunk, reply_requested_at=timezone.now().isoformat())


def sandbox_reply_inject(trunk_id: int) -> str:
    """The sandbox phone texts the trunk's number back (over HTTP, through the sandbox's inject endpoint)."""
    trunk = Trunk.objects.select_related("main_sender__account").get(pk=trunk_id)
    facts, account = progress(trunk), trunk.main_sender.account
    answer = requests.post(
        f"{settings.WAVIX_API_URL}/_inject",
        json={"to": trunk.main_sender.value, "from": facts["test_to"], "text": SANDBOX_REPLY_TEXT},
        headers={"Authorization": f"Bearer {account.get_api_key()}"},
        timeout=30,
    )
    return f"HTTP {answer.status_code}"


def verify_status(trunk: Trunk) -> dict:
    """What step 5 shows live: the test text's progress and reports, the reply and 3CX's answer to it."""
    test, reply = _test_message(trunk), _reply_message(trunk)
    data = {"steps": [{"key": s.key, "state": s.state, "reason": s.reason} for s in setup_refresh(trunk)]}
    if test:
        data["test"] = {
            "id": test.pk,
            "to": test.to_number,
            "status": test.status,
            "status_display": test.get_status_display(),
            "explanation": explain(test.error_message) if test.error_message else "",
            "error": test.error_message,
        }
    if reply:
        delivery = Delivery.objects.filter(message=reply).order_by("-id").first()
        data["reply"] = {
            "id": reply.pk,
            "text": reply.text,
            "status": reply.status,
            "status_display": reply.get_status_display(),
            "threecx_answer": (
                f"HTTP {delivery.last_status_code} {delivery.last_response[:200]}".strip()
                if delivery and delivery.last_status_code
                else (delivery.last_error if delivery else "")
            ),
        }
    data["wiring"] = [
        {
            "number": n.number,
            "wired": n.relay_set_at is not None and n.sms_relay_url == n.expected_relay_url,
            "drift": n.relay_drift,
        }
        for n in trunk_numbers(trunk)
    ]
    return data


# ---------------------------------------------------------------------------------------------------------------
# Step 6: troubleshoot
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    fix: str = ""


def troubleshoot(trunk: Trunk, *, destination: str = "", steps: list[Step] | None = None) -> list[Check]:
    """The seed's checks (all steps done; destination in E.164; sender allow-listed for its country), each
    failing one with the fix. `destination` defaults to the test text's."""
    steps = steps if steps is not None else setup_state(trunk)[:5]
    checks = []
    open_steps = [s for s in steps if s.state != DONE]
    checks.append(
        Check(
            "Every setup step is done",
            not open_steps,
            "; ".join(f"step {s.number} ({s.title}): {s.reason}" for s in open_steps),
        )
    )
    destination = destination or progress(trunk).get("test_to", "")
    if not destination:
        return checks
    try:
        e164 = to_e164(destination, trunk.tenant.default_country or None)
    except ValidationError as error:
        checks.append(Check("Destination in E.164", False, f"{error.messages[0]} Write it as +<country code><number>."))
        return checks
    checks.append(Check(f"Destination in E.164: {e164}", True))
    sender = trunk.main_sender
    if sender is None:
        return checks
    country = country_of(e164)
    registration = sender.countries.filter(country=country).first()
    if registration is None:
        rule = CountryRule.objects.filter(pk=country).first()
        checks.append(
            Check(
                f"{sender.value} allow-listed for {rule.name if rule else country}",
                False,
                f"{sender.value} is not registered for {country}: register it for that country "
                f"(Sender IDs → {sender.value}).",
            )
        )
    else:
        checks.append(
            Check(
                f"{sender.value} allow-listed for {country}",
                registration.can_send,
                f"Its registration is {registration.get_status_display().lower()}"
                + (f": {registration.note}" if registration.note else "."),
            )
        )
    return checks


__all__ = [
    "STEPS",
    "country_choices",
    "countries_review",
    "current_step",
    "sandbox_reply_inject",
    "sandbox_reply_possible",
    "sender_candidates",
    "setup_choose_sender",
    "setup_confirm_threecx",
    "setup_enable",
    "setup_refresh",
    "setup_register",
    "setup_sandbox_reply",
    "setup_state",
    "setup_test_send",
    "threecx_values",
    "troubleshoot",
    "verify_status",
]
