"""Demo data for clicking through the portal: run as often as you like, it only adds what is missing.

With the sandbox on, both sides of the wire are set up: the simulated Wavix accounts, numbers and sender IDs,
the portal's matching rows, and fake 3CX inboxes behind the trunks. The web server is not running yet while
this command runs, so nothing here goes over HTTP; a number sync is queued and wires the relay URLs once the
worker and the web server are up.
"""

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from messaging.models import (
    DailyMessageCount,
    Delivery,
    Message,
    PhoneNumber,
    SenderID,
    SenderIDCountry,
    Trunk,
    WavixAccount,
    country_of,
)
from messaging.services.accounts import trunk_save, wavix_account_save
from messaging.services.senders import registration_set_status, sender_id_register
from messaging.wavix import WavixSenderID, from_wavix_number
from sandbox.api import MANUAL_ALLOWLIST
from sandbox.models import FakePbxInbox, SandboxAccount, SandboxNumber, SandboxSenderID
from tenants.models import Membership, Reseller, Tenant

DEMO_PASSWORD = "demo-portal-2026"
if TYPE_CHECKING:
    from django.contrib.auth.models import User  # what get_user_model() is here (no AUTH_USER_MODEL)
else:
    User = get_user_model()
Status = SenderIDCountry.Status


def _user(email: str, *, staff: bool = False) -> User:
    user, _ = User.objects.get_or_create(username=email, defaults={"email": email})
    user.is_staff = staff
    user.set_password(DEMO_PASSWORD)  # reset every run, so the printed login always works
    user.save()
    return user


class Command(BaseCommand):
    help = "Create a demo reseller with two tenants, trunks, numbers, sender IDs and messages (DEBUG/demo only)."

    def handle(self, *args, **options):
        if not settings.DEMO_ENABLED:
            raise CommandError("Demo data is only created when DEBUG or DEMO_ENABLED is on.")
        if not settings.SANDBOX_ENABLED:
            raise CommandError("Demo data needs the Wavix sandbox (SANDBOX_ENABLED) to stand in for Wavix.")
        with transaction.atomic():
            admin = self._people()
            self._messaging(admin)
        DailyMessageCount.recompute(15)  # the dashboard's chart, now rather than at the next periodic count
        url = settings.PUBLIC_BASE_URL
        self.stdout.write(
            self.style.SUCCESS(
                "Demo data ready.\n"
                f"  Portal:          {url}/admin/\n"
                f"  Wavix sandbox:   {url}/sandbox/\n"
                f"  Reseller admin:  demo@northwind.example / {DEMO_PASSWORD}\n"
                f"  Tenant viewer:   viewer@acme.example / {DEMO_PASSWORD}\n"
                f"  Platform staff:  reviewer@platform.example / {DEMO_PASSWORD}"
                + (
                    "\n  The reseller admin and staff set up two-factor sign-in (any authenticator app) when they first"
                    "\n  sign in; TWO_FACTOR_ENFORCED=false makes it optional."
                    if settings.TWO_FACTOR_ENFORCED
                    else ""
                )
            )
        )

    def _people(self) -> User:
        reseller, _ = Reseller.objects.get_or_create(slug="northwind", defaults={"name": "Northwind Telecom"})
        self.acme, _ = Tenant.objects.get_or_create(
            reseller=reseller, slug="acme-dental", defaults={"name": "Acme Dental", "default_country": "US"}
        )
        self.bistro, _ = Tenant.objects.get_or_create(
            reseller=reseller, slug="bistro-uno", defaults={"name": "Bistro Uno", "default_country": "GB"}
        )
        self.reseller = reseller
        admin = _user("demo@northwind.example")
        Membership.objects.get_or_create(user=admin, reseller=reseller, defaults={"role": "reseller_admin"})
        operator = _user("ops@northwind.example")
        Membership.objects.get_or_create(user=operator, reseller=reseller, defaults={"role": "reseller_operator"})
        viewer = _user("viewer@acme.example")
        Membership.objects.get_or_create(user=viewer, tenant=self.acme, defaults={"role": "tenant_viewer"})
        reviewer = _user("reviewer@platform.example", staff=True)
        reviewer.groups.add(Group.objects.get(name="Platform reviewers"))
        self.reviewer = reviewer
        return admin

    # -- Wavix accounts and numbers, on both sides ----------------------------------------------------------------

    def _account(self, actor, name: str, *, tenant=None, parent: SandboxAccount | None = None) -> WavixAccount:
        at_wavix, _ = SandboxAccount.objects.get_or_create(name=name, defaults={"parent": parent})
        account = WavixAccount.objects.filter(reseller=self.reseller, name=name).first()
        if account is None:
            account = WavixAccount(
                reseller=self.reseller,
                tenant=tenant,
                name=name,
                wavix_sub_account_id=str(at_wavix.pk) if parent else "",
            )
            # The sandbox account was made a moment ago in this transaction: its key is known to be good.
            account = wavix_account_save(actor=actor, account=account, api_key=at_wavix.api_key, key_checked=True)
        return account

    def _number(self, account: WavixAccount, tenant, e164: str, *, sms: bool, label: str, tendlc: str = "") -> None:
        at_wavix, _ = SandboxNumber.objects.get_or_create(
            number=e164.lstrip("+"),
            defaults={
                "account": SandboxAccount.objects.get(api_key=account.get_api_key()),
                "country": country_of(e164),
                "sms_enabled": sms,
                "label": label,
            },
        )
        PhoneNumber.objects.get_or_create(
            account=account,
            number=e164,
            defaults={
                "tenant": tenant,
                "wavix_id": str(at_wavix.pk),
                "country": country_of(e164),
                "sms_enabled": sms,
                "status": "active",
                "tendlc_status": tendlc,
                "label": label,
            },
        )

    def _messaging(self, actor) -> None:
        shared = self._account(actor, "Northwind master")
        master_at_wavix = SandboxAccount.objects.get(name="Northwind master")
        bistro_own = self._account(actor, "Bistro Uno (sub-account)", tenant=self.bistro, parent=master_at_wavix)
        self._number(shared, self.acme, "+14155550100", sms=True, label="Front desk", tendlc="APPROVED")
        self._number(shared, self.acme, "+14155550101", sms=False, label="Fax line", tendlc="PENDING")
        self._number(shared, None, "+12025550143", sms=True, label="Spare (pool)")
        self._number(bistro_own, self.bistro, "+447400123456", sms=True, label="Reservations")

        acme_numeric = self._sender(actor, self.acme, "numeric", "+14155550100", ["US", "CA"], {})
        self._sender(actor, self.acme, "alphanumeric", "AcmeDental", ["DE", "FR", "IN"], {"IN": [Status.IN_REVIEW]})
        bistro_alpha = self._sender(
            actor,
            self.bistro,
            "alphanumeric",
            "BistroUno",
            ["GB", "AE", "IE", "SA"],
            {"AE": [Status.IN_REVIEW, Status.APPROVED], "SA": [Status.IN_REVIEW, Status.REJECTED]},
        )
        acme_trunk = self._trunk(
            actor, self.acme, "Main office", "acme-dental.3cx.us", acme_numeric, Trunk.SmsTemplate.WAVIX
        )
        bistro_trunk = self._trunk(
            actor, self.bistro, "Restaurant", "bistro-uno.3cx.uk", bistro_alpha, Trunk.SmsTemplate.GENERIC
        )
        PhoneNumber.objects.filter(number="+14155550100").update(trunk=acme_trunk)
        PhoneNumber.objects.filter(number="+447400123456").update(trunk=bistro_trunk)
        self._messages(shared, acme_trunk, acme_numeric, "+14155550100", "+14155550199")
        self._messages(bistro_own, bistro_trunk, bistro_alpha, "+447400123456", "+447700123456")

    def _sender(self, actor, tenant, kind, value, countries, moves) -> SenderID:
        existing = SenderID.objects.filter(tenant=tenant, value=value).first()
        if existing:
            return existing
        sender = SenderID(tenant=tenant, type=kind, value=value, samples=[f"Hello from {tenant}!"])
        sender.full_clean()  # resolves the account (a numeric sender's number decides it)
        assert sender.account is not None
        at_wavix = SandboxSenderID.objects.create(
            account=SandboxAccount.objects.get(api_key=sender.account.get_api_key()),
            sender_id=value.lstrip("+") if kind == "numeric" else value,
            type=kind,
            countries=sorted(countries),
            allowlisted_in=sorted(c for c in countries if c not in MANUAL_ALLOWLIST),
            samples=sender.samples,
        )
        registered = WavixSenderID(
            wavix_id=str(at_wavix.uid),
            value=from_wavix_number(at_wavix.sender_id) if kind == "numeric" else value,
            type=kind,
            allowlisted_in=frozenset(at_wavix.allowlisted_in),
        )
        sender = sender_id_register(actor=actor, sender=sender, countries=countries, registered=registered)
        for country, statuses in moves.items():
            for status in statuses:
                registration = sender.countries.get(country=country)
                note = (
                    "Company registration certificate does not match the sender name." if status == "rejected" else ""
                )
                registration_set_status(actor=self.reviewer, registration=registration, status=status, note=note)
        return sender

    def _trunk(self, actor, tenant, name, fqdn, sender, template) -> Trunk:
        trunk = Trunk.objects.filter(tenant=tenant, name=name).first()
        if trunk:
            return trunk
        inbox, _ = FakePbxInbox.objects.get_or_create(label=f"{tenant} — {name}")
        url = settings.PUBLIC_BASE_URL + reverse("sandbox:fake-3cx", args=[inbox.token])
        trunk = Trunk(
            tenant=tenant,
            name=name,
            pbx_fqdn=fqdn,
            pbx_version="20.0.4",
            main_sender=sender,
            sms_template=template,
            sms_enabled=True,
        )
        return trunk_save(actor=actor, trunk=trunk, threecx_webhook_url=url)

    def _messages(self, account, trunk, sender, own_number, customer) -> None:
        if Message.objects.filter(trunk=trunk).exists():
            return
        now = timezone.now()
        S = Message.Status
        script = [
            ("inbound", customer, own_number, "Hi, can I move my booking to Friday?", S.FORWARDED),
            ("outbound", sender.value, customer, "Of course, Friday 7pm is confirmed.", S.DELIVERED),
            ("inbound", customer, own_number, "Thanks! See you then.", S.FORWARDED),
            ("outbound", sender.value, customer, "Reminder: your appointment is tomorrow.", S.SENT),
            (
                "outbound",
                sender.value,
                "+14155550198" if own_number.startswith("+1") else "+447700123457",
                "Your order is ready for pickup.",
                S.UNDELIVERED,
            ),
            ("outbound", sender.value, customer, "We are running 10 minutes late.", S.QUEUED),
        ]
        for minutes_ago, (direction, frm, to, text, status) in zip(
            range(len(script) * 37, 0, -37), script, strict=True
        ):
            text_row = Message.objects.create(
                tenant=trunk.tenant,
                account=account,
                trunk=trunk,
                sender=sender if direction == "outbound" else None,
                direction=direction,
                from_number=frm,
                to_number=to,
                text=text,
                status=status,
                created_at=now - timedelta(minutes=minutes_ago),
                # The times the real paths stamp: sent to Wavix a second later, an outcome a few seconds after.
                sent_at=now - timedelta(minutes=minutes_ago, seconds=-1)
                if direction == "outbound" and status != S.QUEUED
                else None,
                completed_at=now - timedelta(minutes=minutes_ago, seconds=-3) if status in Message.FINAL else None,
                error_message="Handset unreachable." if status == S.UNDELIVERED else "",
                # Wavix's id and charge on every text Wavix took, as the real paths leave them: usage bills those.
                wavix_message_id=f"demo-{uuid.uuid4()}" if status != S.QUEUED else "",
                segments=1,
                charge=Decimal("0.0079") if status != S.QUEUED else None,
            )
            if status == S.FORWARDED:  # forwarded means 3CX took it: the delivery that says so, as the relay leaves it
                delivered_at = text_row.created_at + timedelta(seconds=2)
                Delivery.objects.create(
                    tenant=trunk.tenant,
                    message=text_row,
                    trunk=trunk,
                    remote_number=frm,
                    status=Delivery.Status.DELIVERED,
                    attempts=1,
                    last_attempt_at=delivered_at,
                    last_status_code=200,
                    last_response='{"ok": true}',
                    delivered_at=delivered_at,
                )
                Trunk.objects.filter(pk=trunk.pk).update(forward_checked_at=delivered_at, forward_failures=0)
