"""The SMS setup of one trunk, step by step (DESIGN §2): what is done, what is next, and why something is wrong.

This module reads the state; services/setup_actions.py holds what each step does. Both sit on top of the other
services, and none of them imports either.

Each step's state is worked out from the data itself — the trunk's sender ID, its registrations, the numbers'
relay URLs, the test message — so it cannot disagree with the rest of the portal. Only what has no other
home is kept in Trunk.setup_progress: the sender chosen but not yet registered, "I typed it into 3CX", the
reachability check's result, and the test message and reply. `steps_done` there is a copy for list pages.
"""

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

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
from messaging.services.provider import provider_key_live
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
CHECKED_KEYS = STEP_KEYS[:-1]  # the steps troubleshooting checks: every one before it


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


# ---------------------------------------------------------------------------------------------------------------
# Which way 3CX sends (step 3's choice)
# ---------------------------------------------------------------------------------------------------------------

# Through the portal: 3CX's Generic provider POSTs to the trunk's Provider URL with a portal-issued key. Straight to
# Wavix: 3CX's Wavix template, with the Wavix key typed into 3CX (the portal mirrors those texts from Wavix's log).
PORTAL, WAVIX = "portal", "wavix"


# What counts as "reached Wavix" for a text 3CX sent: Wavix took it (201), whatever the carrier did next, except a
# final refusal, which step 5 shows as a problem.
REACHED_WAVIX = frozenset(
    {
        Message.Status.ACCEPTED,
        Message.Status.PENDING,
        Message.Status.SENT,
        Message.Status.DELIVERED,
        Message.Status.DLR_EXPIRED,
    }
)
NOT_SENT = frozenset(
    {Message.Status.FAILED, Message.Status.UNDELIVERED, Message.Status.REJECTED, Message.Status.EXPIRED}
)


def sending_way(trunk: Trunk) -> str:
    """PORTAL or WAVIX: how 3CX sends. The Generic template can only send through the portal; a Wavix-template trunk
    sends straight to Wavix unless step 3 began switching it to the portal."""
    if trunk.sms_template == Trunk.SmsTemplate.GENERIC or progress(trunk).get("sending") == PORTAL:
        return PORTAL
    return WAVIX


def switch_pending(trunk: Trunk) -> bool:
    """A Wavix-template trunk on its way to the portal: its key is issued, but the portal still forwards inbound texts
    in Wavix's format until someone confirms that 3CX uses the Generic template (step 3)."""
    return sending_way(trunk) == PORTAL and trunk.sms_template == Trunk.SmsTemplate.WAVIX


def forwarding_in_use(trunk: Trunk) -> bool:
    """The portal forwards this trunk's inbound texts to 3CX (or is set up to): changing its template now would change
    their format under a 3CX still configured for the old one, so a move to the portal goes through a switch."""
    return trunk.sms_enabled or bool(trunk.threecx_webhook_url_encrypted)


def portal_provider_url(trunk: Trunk) -> str:
    """The Provider URL 3CX's Generic template posts to: the trunk's own, even before its template is switched
    (the endpoint accepts a key of the trunk whatever the template). Trunk.provider_url owns the format."""
    return Trunk(pk=trunk.pk, sms_template=Trunk.SmsTemplate.GENERIC).provider_url or ""


def _since(trunk: Trunk, fact: str) -> datetime | None:
    value = progress(trunk).get(fact)
    return parse_datetime(value) if value else None


def app_text(trunk: Trunk) -> Message | None:
    """The newest text this trunk's 3CX sent through the portal since step 5 began watching (ever, if it never did)."""
    texts = Message.objects.filter(tenant_id=trunk.tenant_id, trunk=trunk, origin=Message.Origin.THREECX)
    since = _since(trunk, "app_since")
    if since:
        texts = texts.filter(created_at__gte=since)
    return texts.order_by("-created_at", "-id").first()


def app_refusal(trunk: Trunk, after: Message | None) -> str:
    """The provider endpoint's refusal of 3CX's latest attempt, in words, if it came after step 5 began watching and
    after the newest text taken (3CX only shows "failed"); else ""."""
    refused_at = trunk.provider_refused_at
    since = _since(trunk, "app_since")
    if not refused_at or not trunk.provider_refusal or (since and refused_at < since):
        return ""
    if after is not None and refused_at < after.created_at:
        return ""
    return trunk.provider_refusal


def _app_verify(trunk: Trunk) -> tuple[str, str]:
    """Step 5's state and reason for 3CX's own sending side (a portal-sending trunk)."""
    text = app_text(trunk)
    refusal = app_refusal(trunk, text)
    if refusal:
        return PROBLEM, f"The portal refused 3CX's last text: {refusal}"
    if text is None:
        return WAITING, "Now send a text from the 3CX app: it shows here as it goes through the portal."
    if text.status in NOT_SENT:
        return PROBLEM, f"3CX's text was {text.get_status_display().lower()}: " + (
            explain(text.error_message) if text.error_message else "no reason given"
        )
    if text.status in REACHED_WAVIX:
        return DONE, "3CX's own text went through the portal and reached Wavix"
    return WAITING, f"3CX's text arrived and passed the checks: {text.get_status_display().lower()}…"


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
    threecx_step = by_key["threecx"]
    portal = sending_way(trunk) == PORTAL
    key = provider_key_live(trunk) if portal else None
    if switch_pending(trunk):
        threecx_step.state = WAITING
        threecx_step.reason = (
            "Switching to the portal: enter the Provider URL and key in 3CX, then confirm that 3CX uses the Generic "
            "template. Texts keep flowing as before until then."
        )
    elif portal and key is None:
        threecx_step.reason = "Issue the key 3CX sends with (its Messaging API key)."
    elif facts.get("threecx_confirmed_at"):
        threecx_step.state = DONE
        threecx_step.reason = (
            f"Entered in 3CX: Generic template, sending through the portal (key …{key.last4})"
            if key
            else "Entered in 3CX: Wavix template, sending straight to Wavix"
        )
    else:
        threecx_step.reason = "Choose how 3CX sends, enter the values in 3CX, then confirm here."

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
    if portal:  # then 3CX's own sending side, through the portal
        app_state, app_reason = _app_verify(trunk)
        if verify.state == DONE and app_state == DONE:
            verify.reason += "; " + app_reason[0].lower() + app_reason[1:]
        elif verify.state == DONE or (verify.state != PROBLEM and app_state == PROBLEM):
            verify.state, verify.reason = app_state, app_reason  # a refused 3CX text is news before the test's end

    # 6. Troubleshoot: done when every check passes
    checked = checked_steps(steps)
    by_key["troubleshoot"].state, by_key["troubleshoot"].reason = troubleshoot_verdict(
        troubleshoot(trunk, steps=checked), checked
    )
    return steps


def checked_steps(steps: list[Step]) -> list[Step]:
    """The steps before troubleshooting: the ones its first check reads."""
    return [step for step in steps if step.key in CHECKED_KEYS]


def current_step(steps: list[Step]) -> str:
    """The first step that is not done (a problem first of all), else the last."""
    for wanted in (PROBLEM, TODO, WAITING):
        for step in checked_steps(steps):
            if step.state == wanted:
                return step.key
    return STEP_KEYS[-1]


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
    """What the 3CX admin types, field by field: for step 3 and the printable pack. Through the portal, no Wavix key
    appears (3CX never holds it) and the provider key only as its last four characters: the pack is printed."""
    sender = trunk.main_sender
    portal = sending_way(trunk) == PORTAL
    rows = [
        ThreeCXValue(
            "Provider template",
            "Generic" if portal else "Wavix",
            "3CX admin console → Voice & Chat → the trunk's SMS tab: "
            + ("3CX's Generic SMS provider (or import the template file)" if portal else "3CX's Wavix template"),
        ),
        ThreeCXValue("Main Trunk No.", sender.value, "General tab. It must be the sender ID, exactly as shown")
        if sender
        else ThreeCXValue("Main Trunk No.", "— choose the sender ID first (step 1) —", "General tab", copyable=False),
        ThreeCXValue("PBX FQDN", trunk.pbx_fqdn, "The host of the webhook URL 3CX will show"),
    ]
    if portal:
        key = provider_key_live(trunk)
        rows += [
            ThreeCXValue(
                "SMS → Provider URL",
                portal_provider_url(trunk),
                "SMS tab. 3CX posts its users' texts here; the portal checks, logs and sends them through Wavix",
            ),
            ThreeCXValue(
                "SMS → Messaging API key",
                f"the portal key ending …{key.last4}" if key else "— issue it in step 3 —",
                "SMS tab. Shown once when issued (step 3); the portal keeps only a hash, so a lost key is replaced "
                "by issuing a new one",
                copyable=False,
            ),
        ]
    else:
        account = sender_account(trunk)
        rows.append(
            ThreeCXValue(
                "SMS → Api Key",
                f"the Wavix API key ending …{account.api_key_last4}" if account else "the Wavix API key",
                "SMS tab. 3CX sends texts straight to Wavix with it; the portal never shows keys: copy it from Wavix",
                copyable=False,
            )
        )
    rows.append(
        ThreeCXValue(
            "SMS → Webhook URL",
            "shown by 3CX: paste it into step 4 here",
            "Wavix sends texts to the portal, which forwards them to this URL",
            copyable=False,
        )
    )
    if sender and sender.type == SenderID.Type.NUMERIC:
        rows.append(ThreeCXValue("DID numbers", sender.value, "DIDs tab: the number texts and calls arrive on"))
    return rows


def threecx_template(trunk: Trunk) -> tuple[str, bytes]:
    """A 3CX messaging provider template for this trunk, pre-filled with its Provider URL: (file name, XML).

    The shape follows what is public about 3CX v20's messaging templates (DESIGN.md §8: the variables PROVIDER_URL
    "Provider URL" and MESSAGING_API_KEY "Messaging API key", a generic provider type, outbound routing and a
    webhook), in the XML style of 3CX's documented provider templates (*.pv.xml). No public messaging template file
    was found to compare with, and it is not verified against a live 3CX: the values table says the same by hand.
    The key is left empty: 3CX asks for it on import, and a file that travels by e-mail should not carry it.
    """
    url = portal_provider_url(trunk)
    root = ET.Element("MessagingProviderTemplate", {"version": "1"})
    root.append(
        ET.Comment(
            " Made by the PBX Messaging Portal for trunk "
            f"{trunk.name!r}. Follows the variables and sections public 3CX v20 messaging templates use; "
            "not verified against a live 3CX. The Messaging API key is not in this file: type it in on import. "
        )
    )
    ET.SubElement(root, "Name").text = f"PBX Messaging Portal ({trunk.name})"
    ET.SubElement(root, "Website").text = settings.PUBLIC_BASE_URL
    ET.SubElement(root, "ProviderType").text = "Generic"
    variables = ET.SubElement(root, "Variables")
    ET.SubElement(variables, "Variable", {"Name": "PROVIDER_URL", "Title": "Provider URL", "Value": url})
    ET.SubElement(
        variables,
        "Variable",
        {"Name": "MESSAGING_API_KEY", "Title": "Messaging API key", "Value": "", "Secret": "true"},
    )
    outbound = ET.SubElement(root, "Outbound", {"Method": "POST", "ContentType": "application/json"})
    ET.SubElement(outbound, "Url").text = "%PROVIDER_URL%"
    ET.SubElement(outbound, "Header", {"Name": "Authorization"}).text = "Bearer %MESSAGING_API_KEY%"
    ET.SubElement(outbound, "Body").text = '{"from": "%FROM%", "to": "%TO%", "text": "%TEXT%"}'
    ET.SubElement(
        root, "Webhook", {"Format": "Generic", "Events": "message.received"}
    ).text = "3CX shows this trunk's Webhook URL after import: paste it into the portal's step 4."
    ET.indent(root)
    body = ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
    return f"pbx-messaging-portal-trunk-{trunk.pk}.xml", body


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
    if sending_way(trunk) == PORTAL:
        data["app"] = app_status(trunk)
    data["wiring"] = [
        {
            "number": n.number,
            "wired": n.relay_set_at is not None and n.sms_relay_url == n.expected_relay_url,
            "drift": n.relay_drift,
        }
        for n in trunk_numbers(trunk)
    ]
    return data


# The stages step 5 shows for a text 3CX sent through the portal, each with the statuses that have passed it.
APP_STAGES = [
    ("arrived", "Arrived from 3CX", None),
    ("validated", "Passed the portal's checks (queued)", None),
    ("reached", "Reached Wavix", REACHED_WAVIX | {Message.Status.UNDELIVERED, Message.Status.REJECTED}),
    ("delivered", "Delivered", frozenset({Message.Status.DELIVERED})),
]


def app_status(trunk: Trunk) -> dict[str, Any]:
    """Step 5's live view of 3CX's own sending side: the newest text 3CX sent through the portal since the step began
    watching, stage by stage, and the endpoint's refusal of a later attempt, in words."""
    text = app_text(trunk)
    since = _since(trunk, "app_since")
    stages, stopped = [], False
    for key, title, passed in APP_STAGES:
        if text is None:
            state = TODO
        elif passed is None or text.status in passed:
            state = DONE  # a text stored at all arrived and passed the checks: the endpoint stores nothing it refuses
        elif text.status in NOT_SENT and not stopped:
            state, stopped = PROBLEM, True  # where it stopped; the stages after it will not come
        else:
            state = TODO if stopped else WAITING
        stages.append({"key": key, "title": title, "state": state})
    data: dict[str, Any] = {
        "since": since.isoformat() if since else "",
        "refusal": app_refusal(trunk, text),
        "stages": stages,
        "text": None,
    }
    if text is not None:
        data["text"] = {
            "id": text.pk,
            "from": text.from_number,
            "to": text.to_number,
            "text": text.text[:160],
            "status": text.status,
            "status_display": text.get_status_display(),
            "explanation": explain(text.error_message) if text.error_message else "",
        }
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
    steps = steps if steps is not None else checked_steps(setup_state(trunk))
    checks = []
    open_steps = [s for s in steps if s.state != DONE]
    checks.append(
        Check(
            "Every setup step is done",
            not open_steps,
            "; ".join(f"step {s.number} ({s.title}): {s.reason}" for s in open_steps),
        )
    )
    if sending_way(trunk) == PORTAL:
        checks += _portal_checks(trunk)
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


def troubleshoot_verdict(checks: list[Check], steps: list[Step]) -> tuple[str, str]:
    """Step 6's state and reason, read off the very checks its page lists (so its header cannot say all is well
    above a failing one): done only when every check passes; a problem when an earlier step has one."""
    failing = [check for check in checks if not check.ok]
    if not failing:
        return DONE, f"All {len(checks)} checks pass" if len(checks) > 1 else "The check passes"
    state = PROBLEM if any(step.state == PROBLEM for step in steps) else TODO
    return state, f"Failing ({len(failing)} of {len(checks)}): " + "; ".join(check.name for check in failing)


REFUSAL_RECENT = timedelta(hours=24)  # a refusal older than this is history, not a failing check


def _portal_checks(trunk: Trunk) -> list[Check]:
    """The checks of 3CX's sending side through the portal: its key, its template, its last text and refusal."""
    checks = []
    key = provider_key_live(trunk)
    checks.append(
        Check(f"3CX's provider key is live (…{key.last4})", True)
        if key
        else Check(
            "3CX's provider key is live",
            False,
            "The trunk has no live provider key: issue one in step 3 and type it into 3CX's Messaging API key.",
        )
    )
    if switch_pending(trunk):
        checks.append(
            Check(
                "3CX uses the Generic template",
                False,
                "The switch to the portal is not confirmed: once 3CX uses the Generic template, confirm it in step 3 "
                "(until then the portal forwards inbound texts in Wavix's format).",
            )
        )
    text = Message.objects.filter(trunk=trunk, origin=Message.Origin.THREECX).order_by("-created_at", "-id").first()
    if text is None:
        checks.append(Check("3CX has sent a text through the portal", False, "Send one from the 3CX app (step 5)."))
    elif text.status in NOT_SENT:
        reason = explain(text.error_message) if text.error_message else "no reason given"
        checks.append(
            Check(f"3CX's last text ({text.to_number}) was sent", False, f"{text.get_status_display()}: {reason}")
        )
    else:
        checks.append(Check(f"3CX's last text ({text.to_number}): {text.get_status_display().lower()}", True))
    refused_at = trunk.provider_refused_at
    if refused_at and refused_at > timezone.now() - REFUSAL_RECENT and (text is None or refused_at > text.created_at):
        checks.append(
            Check(
                "The portal took 3CX's latest text",
                False,
                f"It refused it at {timezone.localtime(refused_at):%H:%M}: {trunk.provider_refusal}",
            )
        )
    return checks
