"""Demo data for clicking through the portal: run as often as you like, it only adds what is missing."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from messaging.models import Message, PhoneNumber, SenderID, SenderIDCountry, Trunk, WavixAccount, country_of
from messaging.services import registration_set_status, sender_id_register, trunk_save, wavix_account_save
from tenants.models import Membership, Reseller, Tenant

DEMO_PASSWORD = "demo-portal-2026"
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
        with transaction.atomic():
            admin = self._people()
            self._messaging(admin)
        url = settings.PUBLIC_BASE_URL
        self.stdout.write(
            self.style.SUCCESS(
                "Demo data ready.\n"
                f"  Portal:          {url}/admin/\n"
                f"  Reseller admin:  demo@northwind.example / {DEMO_PASSWORD}\n"
                f"  Tenant viewer:   viewer@acme.example / {DEMO_PASSWORD}\n"
                f"  Platform staff:  reviewer@platform.example / {DEMO_PASSWORD}"
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
        return admin

    def _messaging(self, actor) -> None:
        shared = WavixAccount.objects.filter(reseller=self.reseller, name="Northwind master").first()
        if shared is None:
            shared = wavix_account_save(
                actor=actor,
                account=WavixAccount(reseller=self.reseller, name="Northwind master"),
                api_key="demo-shared-key-7f3a",
            )
        bistro_own = WavixAccount.objects.filter(reseller=self.reseller, name="Bistro Uno account").first()
        if bistro_own is None:
            bistro_own = wavix_account_save(
                actor=actor,
                account=WavixAccount(reseller=self.reseller, tenant=self.bistro, name="Bistro Uno account"),
                api_key="demo-bistro-key-91c2",
            )
        numbers = [
            (shared, self.acme, "+14155550100", True, "APPROVED", "Front desk"),
            (shared, self.acme, "+14155550101", False, "PENDING", "Fax line"),
            (shared, None, "+12025550143", True, "", "Spare (pool)"),
            (bistro_own, self.bistro, "+447400123456", True, "", "Reservations"),
        ]
        for account, tenant, e164, sms, tendlc, label in numbers:
            PhoneNumber.objects.get_or_create(
                account=account,
                number=e164,
                defaults={
                    "tenant": tenant,
                    "country": country_of(e164),
                    "sms_enabled": sms,
                    "status": "active",
                    "tendlc_status": tendlc,
                    "label": label,
                },
            )
        acme_numeric = self._sender(
            actor, self.acme, "numeric", "+14155550100", ["US", "CA"], {"US": [Status.ALLOWLISTED]}
        )
        self._sender(
            actor,
            self.acme,
            "alphanumeric",
            "AcmeDental",
            ["DE", "FR", "IN"],
            {"DE": [Status.ALLOWLISTED], "IN": [Status.IN_REVIEW]},
        )
        bistro_alpha = self._sender(
            actor,
            self.bistro,
            "alphanumeric",
            "BistroUno",
            ["GB", "AE", "IE", "SA"],
            {
                "GB": [Status.ALLOWLISTED],
                "IE": [Status.ALLOWLISTED],
                "AE": [Status.IN_REVIEW, Status.APPROVED],
                "SA": [Status.IN_REVIEW, Status.REJECTED],
            },
        )
        acme_trunk = self._trunk(
            actor,
            self.acme,
            "Main office",
            "acme-dental.3cx.us",
            acme_numeric,
            Trunk.SmsTemplate.WAVIX,
            "https://acme-dental.3cx.us/sms/wavix/9d1e4c7a2b",
        )
        bistro_trunk = self._trunk(
            actor,
            self.bistro,
            "Restaurant",
            "bistro-uno.3cx.uk",
            bistro_alpha,
            Trunk.SmsTemplate.GENERIC,
            "https://bistro-uno.3cx.uk/sms/generic/5f0b8e31aa",
        )
        PhoneNumber.objects.filter(number="+14155550100").update(trunk=acme_trunk)
        PhoneNumber.objects.filter(number="+447400123456").update(trunk=bistro_trunk)
        self._messages(shared, acme_trunk, acme_numeric, "+14155550100", "+14155550199")
        self._messages(bistro_own, bistro_trunk, bistro_alpha, "+447400123456", "+447700123456")

    def _sender(self, actor, tenant, kind, value, countries, moves) -> SenderID:
        existing = SenderID.objects.filter(tenant=tenant, value=value).first()
        if existing:
            return existing
        sender = sender_id_register(
            actor=actor,
            sender=SenderID(tenant=tenant, type=kind, value=value, samples=[f"Hello from {tenant}!"]),
            countries=countries,
        )
        reviewer = User.objects.get(username="reviewer@platform.example")
        for country, statuses in moves.items():
            for status in statuses:
                registration = sender.countries.get(country=country)
                note = (
                    "Company registration certificate does not match the sender name." if status == "rejected" else ""
                )
                registration_set_status(actor=reviewer, registration=registration, status=status, note=note)
        return sender

    def _trunk(self, actor, tenant, name, fqdn, sender, template, url) -> Trunk:
        trunk = Trunk.objects.filter(tenant=tenant, name=name).first()
        if trunk:
            return trunk
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
            Message.objects.create(
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
                error_message="Handset unreachable." if status == S.UNDELIVERED else "",
            )
