"""AuditEvent moves from messaging to tenants: state only, its table (messaging_auditevent) stays as it is.

messaging's 0024 removes it from messaging's state and moves its content type (and so its permissions).
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0004_membership_invitation"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditEvent",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("created_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        (
                            "actor_label",
                            models.CharField(help_text="The actor's e-mail at the time, or 'system'.", max_length=254),
                        ),
                        (
                            "action",
                            models.CharField(
                                choices=[
                                    ("api_key.set", "Wavix API key set"),
                                    ("api_key.rotated", "Wavix API key replaced"),
                                    ("threecx_url.set", "3CX webhook URL set"),
                                    ("secrets.reencrypted", "Secrets re-encrypted with a new key"),
                                    ("sender_id.registered", "Sender ID registered"),
                                    ("sender_id.deleted", "Sender ID deleted"),
                                    ("registration.status", "Registration status changed"),
                                    ("member.invited", "Member invited"),
                                    ("member.accepted", "Invitation accepted"),
                                    ("member.declined", "Invitation declined"),
                                    ("member.role_changed", "Member role changed"),
                                    ("member.deactivated", "Member deactivated"),
                                    ("member.reactivated", "Member reactivated"),
                                    ("token.created", "API token created"),
                                    ("token.revoked", "API token revoked"),
                                    ("tenant.status", "Tenant status changed"),
                                    ("delivery.replayed", "Delivery replayed"),
                                    ("webhook_secret.rotated", "Webhook secret rotated"),
                                    ("numbers.unpointed", "Numbers un-pointed at Wavix (trunk's SMS off)"),
                                    ("registration.document", "Registration document uploaded"),
                                    ("retention.purged", "Old message content purged"),
                                ],
                                max_length=32,
                            ),
                        ),
                        ("object_type", models.CharField(max_length=64)),
                        ("object_id", models.CharField(max_length=64)),
                        ("object_repr", models.CharField(max_length=200)),
                        ("changes", models.JSONField(blank=True, default=dict)),
                        (
                            "actor",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "reseller",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to="tenants.reseller",
                            ),
                        ),
                        (
                            "tenant",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to="tenants.tenant",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "messaging_auditevent",
                        "ordering": ["-created_at", "-id"],
                        "indexes": [models.Index(fields=["reseller", "-created_at"], name="audit_reseller_recent")],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
