import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def issue_secrets(apps, schema_editor):
    """Every existing account gets a webhook secret before the public id leaves the URLs."""
    from messaging import crypto
    from messaging.models.provisioning import WebhookSecret, secret_hash

    Account = apps.get_model("messaging", "WavixAccount")
    Secret = apps.get_model("messaging", "WebhookSecret")
    for account in Account.objects.filter(webhook_secrets__isnull=True):
        secret = WebhookSecret.generate()
        Secret.objects.create(account=account, secret_hash=secret_hash(secret), secret_encrypted=crypto.encrypt(secret))


class Migration(migrations.Migration):
    dependencies = [("messaging", "0005_message_sender_survives_deregistration")]

    operations = [
        migrations.CreateModel(
            name="WebhookSecret",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("secret_hash", models.CharField(max_length=64, unique=True)),
                ("secret_encrypted", models.TextField()),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("retire_at", models.DateTimeField(blank=True, help_text="Still accepted until then.", null=True)),
                (
                    "account",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="webhook_secrets",
                        to="messaging.wavixaccount",
                    ),
                ),
            ],
            options={"ordering": ["-created_at"]},
        ),
        migrations.AddField(
            model_name="wavixaccount",
            name="source_ips",
            field=models.CharField(
                blank=True,
                help_text="Comma-separated IP addresses (Wavix publishes 62.212.73.112). Empty: from anywhere, "
                "the secret in the URL being the guard.",
                max_length=200,
                verbose_name="accept webhooks only from",
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="action",
            field=models.CharField(
                choices=[
                    ("api_key.set", "Wavix API key set"),
                    ("api_key.rotated", "Wavix API key replaced"),
                    ("threecx_url.set", "3CX webhook URL set"),
                    ("secrets.reencrypted", "Secrets re-encrypted with a new key"),
                    ("sender_id.registered", "Sender ID registered"),
                    ("sender_id.deleted", "Sender ID deleted"),
                    ("registration.status", "Registration status changed"),
                    ("member.invited", "Member invited"),
                    ("member.role_changed", "Member role changed"),
                    ("member.deactivated", "Member deactivated"),
                    ("member.reactivated", "Member reactivated"),
                    ("token.created", "API token created"),
                    ("token.revoked", "API token revoked"),
                    ("tenant.status", "Tenant status changed"),
                    ("delivery.replayed", "Delivery replayed"),
                    ("webhook_secret.rotated", "Webhook secret rotated"),
                ],
                max_length=32,
            ),
        ),
        migrations.RunPython(issue_secrets, migrations.RunPython.noop),
        migrations.RemoveField(model_name="wavixaccount", name="public_id"),
    ]
