from django.core.management.base import BaseCommand
from django.db import transaction

from messaging import crypto
from messaging.models import Trunk, WavixAccount
from tenants.models import AuditEvent


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the first FIELD_ENCRYPTION_KEYS key, so older keys can be dropped."

    def handle(self, *args, **options):
        counts = {}
        for model, field in ((WavixAccount, "api_key_encrypted"), (Trunk, "threecx_webhook_url_encrypted")):
            done = 0
            for pk in model.objects.exclude(**{field: ""}).values_list("pk", flat=True).iterator():
                with transaction.atomic():
                    row = model.objects.select_for_update().get(pk=pk)
                    setattr(row, field, crypto.rotate(getattr(row, field)))
                    row.save(update_fields=[field])
                done += 1
            counts[model._meta.label] = done
        for model_label, done in counts.items():
            self.stdout.write(f"{model_label}: {done} re-encrypted")
        AuditEvent.objects.create(
            actor_label="system",
            action=AuditEvent.Action.SECRETS_REENCRYPTED,
            object_type="settings.FIELD_ENCRYPTION_KEYS",
            object_id="-",
            object_repr="All stored secrets",
            changes=counts,
        )
