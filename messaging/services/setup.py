"""The SMS setup of one trunk, step by step (DESIGN §2): what is done, what is next, and why something is wrong.

This module reads the state; services/setup_actions.py holds what each step does. Both sit on top of the other
services, and none of them imports either.

Each step's state is worked out from the data itself — the trunk's sender ID, its registrations, the numbers'
relay URLs, the test message — so it cannot disagree with the rest of the portal. Only what has no other
home is kept in Trunk.setup_progress: the sender chosen but not yet registered, "I typed it into 3CX", the
reachability check's result, and the test message and reply. `steps_done` there is a copy for list pages.
"""

import logging
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet

from messaging import threecx
from messaging.models import (
    CountryRule,
    Delivery,
    Message,
    PhoneNumber,
    SenderID,
    SenderIDCountry,
    Trunk,
    WavixAccount,
    country_of,
    to_e164,
)
from messaging.wavix import explain

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


def progress(trunk: Trunk) -> dict[str, Any]:
    return dict(trunk.setup_progress or {})


def _merge(trunk: Trunk, changes: dict[str, Any]) -> None:
    """Merge keys into the stored progress under the row's lock: the live status page refreshes steps_done
    while a step's POST stores its facts, and neither may overwrite the other's keys with a stale copy."""
    with transaction.atomic():
        stored = Trunk.objects.select_for_update().values_list("setup_progress", flat=True).get(pk=trunk.pk)
        trunk.setup_progress = {**(stored or {}), **changes}
        Trunk.objects.filter(pk=trunk.pk).update(setup_progress=trunk.setup_progress)


def remember(trunk: Trunk, **changes: Any) -> None:
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


def on_trunk_saved(sender: type[Trunk], *, trunk: Trunk, **kwargs: Any) -> None:
    """messaging.signals.trunk_saved's receiver (connected in messaging.apps)."""
    setup_refresh(trunk)


def sender_account(trunk: Trunk) -> WavixAccount | None:
    sender = trunk.main_sender
    return sender.account if sender else None


def trunk_numbers(trunk: Trunk) -> QuerySet[PhoneNumber]:
    return PhoneNumber.objects.filter(trunk=trunk).select_related("account", "trunk")


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
# Step 3: the values to type into 3CX
# ---------------------------------------------------------------------------------------------------------------


class ThreeCXValue(NamedTuple):
    field: str
    value: str
    note: str  # where it goes, and why
    copyable: bool = True  # False: a hint, not something to paste


def threecx_values(trunk: Trunk) -> list[ThreeCXValue]:
    """What the 3CX admin types, field by field: for step 3 and the printable pack."""
    sender = trunk.main_sender
    account = sender_account(trunk)
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


# ---------------------------------------------------------------------------------------------------------------
# Step 5: verify
# ---------------------------------------------------------------------------------------------------------------


def verify_status(trunk: Trunk) -> dict[str, Any]:
    """What step 5 shows live: the test text's progress and reports, the reply and 3CX's answer to it."""
    test, reply = _test_message(trunk), _reply_message(trunk)
    data: dict[str, Any] = {
        "steps": [{"key": s.key, "state": s.state, "reason": s.reason} for s in setup_refresh(trunk)]
    }
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
