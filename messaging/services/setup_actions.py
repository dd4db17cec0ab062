"""What each step of a trunk's SMS setup does (the wizard's writes); services/setup.py reads the state they leave."""

import json
import logging
import uuid
from collections.abc import Iterable
from types import SimpleNamespace

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from messaging import dispatch, threecx
from messaging.models import (
    CountryRule,
    Message,
    PhoneNumber,
    SenderID,
    TenDLCRegistration,
    Trunk,
    WavixAccount,
    alphanumeric_problems,
)
from messaging.services.accounts import trunk_save, wavix_account_save, wavix_key_check
from messaging.services.outbound import message_send
from messaging.services.provider import provider_key_issue, provider_key_live
from messaging.services.senders import sender_id_register
from messaging.services.setup import (
    PORTAL,
    WAVIX,
    Probe,
    forwarding_in_use,
    progress,
    remember,
    sender_account,
    sending_way,
    switch_pending,
)
from messaging.wavix import WavixClient, WavixError, WavixTransientError, refusal, to_wavix_number

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# Step 1: the sender ID
# ---------------------------------------------------------------------------------------------------------------


def sender_candidates(trunk: Trunk) -> list[SimpleNamespace]:
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


def sender_preselected(trunk: Trunk, candidates: list[SimpleNamespace]) -> int | None:
    """The number step 1 offers ready-chosen: the tenant's only one that can send, while the trunk has no sender yet
    (the reseller then only presses Next)."""
    if trunk.main_sender_id or progress(trunk).get("draft"):
        return None
    usable = [c.number.pk for c in candidates if not c.problem]
    return usable[0] if len(usable) == 1 else None


def setup_choose_sender(
    *,
    trunk: Trunk,
    kind: str,
    number_id: int | str | None = None,
    value: str = "",
    existing_id: int | str | None = None,
) -> None:
    """Step 1: remember the chosen sender (registered at Wavix with its countries in step 2)."""
    tenant = trunk.tenant
    if kind == "existing":
        sender = None if existing_id is None else SenderID.objects.filter(pk=existing_id, tenant=tenant).first()
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
    remember(trunk, draft=draft)


def _use_sender(trunk: Trunk, sender: SenderID) -> None:
    with transaction.atomic():
        trunk.main_sender = sender
        trunk.save(update_fields=["main_sender", "updated_at"])
        if sender.phone_number_id:
            PhoneNumber.objects.filter(pk=sender.phone_number_id, trunk=None).update(trunk=trunk)
        remember(trunk, draft=None)  # registered: no longer a draft


# ---------------------------------------------------------------------------------------------------------------
# Step 2: countries and registration
# ---------------------------------------------------------------------------------------------------------------


def country_choices(sender_type: str, pinned: str = "") -> list[SimpleNamespace]:
    """Every country with whether this sender type may text it, and whether paperwork comes first; the `pinned` one
    (the tenant's own) first, the others by name."""
    kind = "Alphanumeric" if sender_type == SenderID.Type.ALPHANUMERIC else "Numeric"
    rows = []
    rules = sorted(CountryRule.objects.order_by("name"), key=lambda rule: rule.country != pinned)  # stable: by name
    for rule in rules:
        policy = rule.policy_for(sender_type)
        unsupported = policy == CountryRule.Policy.UNSUPPORTED
        paperwork = policy == CountryRule.Policy.REGISTRATION
        note = rule.note or (f"{kind} sender IDs are not supported here." if unsupported else "")
        if paperwork and not rule.note:
            note = "Needs paperwork: the platform's reviewers approve it before texts go out."
        rows.append(
            SimpleNamespace(
                code=rule.country,
                name=rule.name,
                unsupported=unsupported,
                paperwork=paperwork,
                note=note,
                pinned=rule.country == pinned,
            )
        )
    return rows


def countries_preticked(trunk: Trunk, choices: list[SimpleNamespace]) -> list[str]:
    """What step 2 ticks before anyone clicks: the tenant's own country, while the trunk's sender is registered for
    none yet and the sender's type may text it."""
    sender = trunk.main_sender
    if sender is not None and sender.countries.exists():
        return []
    home = trunk.tenant.default_country
    return [c.code for c in choices if c.code == home and not c.unsupported]


def countries_review(trunk: Trunk, countries: Iterable[str]) -> dict[str, list[CountryRule]]:
    """What submitting these countries would do: allow-listed at once, or waiting for paperwork."""
    draft = progress(trunk).get("draft")
    if not draft:
        raise ValidationError({"countries": "Choose the sender ID first (step 1)."})
    try:
        rules = CountryRule.check_destinations(draft["type"], countries)
    except ValidationError as error:
        raise ValidationError({"countries": error.messages}) from None
    review: dict[str, list[CountryRule]] = {"at_once": [], "paperwork": []}
    for rule in sorted(rules.values(), key=lambda r: r.name):
        review["paperwork" if rule.policy_for(draft["type"]) == CountryRule.Policy.REGISTRATION else "at_once"].append(
            rule
        )
    return review


def setup_register(
    *, actor: User | None, trunk: Trunk, countries: Iterable[str], usecase: str, samples: Iterable[str] = ()
) -> SenderID:
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


def setup_choose_sending(*, actor: User | None, trunk: Trunk, via: str) -> str | None:
    """Step 3: choose how 3CX sends texts. Returns a new provider key when one was issued — the only time it is seen.

    Through the portal: a trunk whose inbound texts are not forwarded yet goes to the Generic template at once; one
    already forwarding on the Wavix template starts a switch instead — its key is issued, its template stays until
    setup_switch_confirm (the provider endpoint takes the key whatever the template, so 3CX may move at its own
    pace). A trunk that already has a live key keeps it: issuing another is setup_provider_key_rotate.
    Straight to Wavix: today's values (the Wavix template); a pending switch is called off.
    """
    if via not in (PORTAL, WAVIX):
        raise ValidationError({"via": "Choose through the portal or straight to Wavix."})
    if via == sending_way(trunk) and not (via == PORTAL and provider_key_live(trunk) is None):
        if progress(trunk).get("sending") != via:
            remember(trunk, sending=via)  # chosen now, though it is the way the trunk already sent
        return None  # a key is never issued twice by pressing the same choice again
    changes: dict[str, str | None] = {"sending": via}
    if via == WAVIX:
        if trunk.sms_template == Trunk.SmsTemplate.GENERIC:
            if forwarding_in_use(trunk):
                raise ValidationError(
                    {
                        "via": "This trunk's 3CX uses the Generic template and the portal forwards its texts in that "
                        "format. Move 3CX to the Wavix template first, then change the trunk's SMS template on the "
                        "trunk page."
                    }
                )
            trunk.sms_template = Trunk.SmsTemplate.WAVIX
            trunk_save(actor=actor, trunk=trunk)
            changes["threecx_confirmed_at"] = None  # the values to type in 3CX changed
        remember(trunk, **changes)
        return None
    key = provider_key_issue(actor=actor, trunk=trunk) if provider_key_live(trunk) is None else None
    if trunk.sms_template == Trunk.SmsTemplate.WAVIX and not forwarding_in_use(trunk):
        trunk.sms_template = Trunk.SmsTemplate.GENERIC  # nothing is forwarded yet: no format to keep
        trunk_save(actor=actor, trunk=trunk)
        changes["threecx_confirmed_at"] = None
    elif trunk.sms_template == Trunk.SmsTemplate.WAVIX:
        changes["switch_started_at"] = timezone.now().isoformat()
    remember(trunk, **changes)
    return key


def setup_provider_key_rotate(*, actor: User | None, trunk: Trunk) -> str:
    """Step 3: issue a new provider key (shown once); the older ones keep working 24 hours, so 3CX goes on sending
    while someone types the new one in."""
    if sending_way(trunk) != PORTAL:
        raise ValidationError("This trunk's 3CX sends straight to Wavix: choose the portal first.")
    key = provider_key_issue(actor=actor, trunk=trunk)
    remember(trunk)  # refresh the steps (a trunk without a live key gets one)
    return key


def setup_switch_confirm(*, actor: User | None, trunk: Trunk) -> None:
    """Step 3: 3CX now uses the Generic template — put the trunk on it, so inbound texts are forwarded in the Generic
    (Telnyx-style) format from now on, and count step 3 as done."""
    if not switch_pending(trunk):
        raise ValidationError("This trunk is not switching to the portal.")
    if provider_key_live(trunk) is None:
        raise ValidationError("Issue the provider key first: 3CX needs it as its Messaging API key.")
    trunk.sms_template = Trunk.SmsTemplate.GENERIC
    trunk_save(actor=actor, trunk=trunk)
    remember(trunk, switched_at=timezone.now().isoformat(), threecx_confirmed_at=timezone.now().isoformat())


def setup_confirm_threecx(trunk: Trunk) -> None:
    if not trunk.main_sender:
        raise ValidationError("Choose and register the sender ID first: it is 3CX's Main Trunk No.")
    if switch_pending(trunk):
        raise ValidationError("Confirm the switch instead, once 3CX uses the Generic template.")
    if sending_way(trunk) == PORTAL and provider_key_live(trunk) is None:
        raise ValidationError("Issue the provider key first: 3CX needs it as its Messaging API key.")
    remember(trunk, threecx_confirmed_at=timezone.now().isoformat())


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


def setup_enable(*, actor: User | None, trunk: Trunk, webhook_url: str, api_key: str = "") -> Probe:
    """Step 4: check the Wavix key and the 3CX webhook URL (reachability included); if all is well, switch SMS
    on and let the portal point the numbers at itself. Nothing is saved unless every check passes."""
    account = sender_account(trunk)
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
        errors["api_key"] = [refusal(error, "", doing="check the key", nothing="changed")]
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
    remember(
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
    remember(trunk, enabled_at=timezone.now().isoformat())
    return probe


# ---------------------------------------------------------------------------------------------------------------
# Step 5: verify
# ---------------------------------------------------------------------------------------------------------------


TEST_TEXT = "Test from your phone system: SMS on {trunk} works. Reply to this text to test receiving."


def setup_test_send(*, trunk: Trunk, to: str) -> Message:
    if not trunk.main_sender:
        raise ValidationError({"to": "Choose and register the sender ID first (steps 1 and 2)."})
    try:
        message = message_send(tenant=trunk.tenant, sender=trunk.main_sender, to=to, text=TEST_TEXT.format(trunk=trunk))
    except ValidationError as error:
        raise ValidationError({"to": [m for ms in error.message_dict.values() for m in ms]}) from None
    remember(trunk, test_message=message.pk, test_to=message.to_number, test_sent_at=message.created_at.isoformat())
    return message


def setup_app_watch(trunk: Trunk, *, again: bool = False) -> None:
    """Step 5: watch for the next text 3CX's app sends through the portal, from now (from the first look at the step,
    unless `again`: an older text or refusal then no longer counts)."""
    if sending_way(trunk) != PORTAL or (progress(trunk).get("app_since") and not again):
        return
    remember(trunk, app_since=timezone.now().isoformat())


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
    dispatch.SANDBOX_REPLY.soon(trunk.pk)
    remember(trunk, reply_requested_at=timezone.now().isoformat())
