from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("messaging", "0006_webhook_secrets")]

    operations = [
        migrations.AddField(
            model_name="trunk",
            name="forward_checked_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="trunk",
            name="forward_error",
            field=models.CharField(blank=True, editable=False, max_length=300),
        ),
        migrations.AddField(
            model_name="trunk",
            name="forward_failures",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
    ]
