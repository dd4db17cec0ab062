from django.db import migrations, models


def fill_remote_numbers(apps, schema_editor):
    Delivery = apps.get_model("messaging", "Delivery")
    for delivery in Delivery.objects.filter(remote_number="").select_related("message"):
        Delivery.objects.filter(pk=delivery.pk).update(remote_number=delivery.message.from_number)


class Migration(migrations.Migration):
    dependencies = [("messaging", "0007_trunk_forward_health")]

    operations = [
        migrations.AddField(
            model_name="delivery", name="remote_number", field=models.CharField(default="", max_length=20)
        ),
        migrations.AddField(
            model_name="delivery", name="lease_until", field=models.DateTimeField(blank=True, null=True)
        ),
        migrations.RunPython(fill_remote_numbers, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(fields=["trunk", "remote_number", "status", "id"], name="delivery_conversation"),
        ),
        migrations.AddField(
            model_name="webhookevent",
            name="recovered",
            field=models.BooleanField(
                default=False, help_text="Found by reconciliation with Wavix: the webhook itself never arrived."
            ),
        ),
        migrations.AlterField(
            model_name="webhookevent",
            name="state",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"),
                    ("processed", "Processed"),
                    ("unroutable", "Unroutable"),
                    ("held", "Held"),
                    ("unmatched", "Unmatched"),
                    ("invalid", "Invalid"),
                ],
                default="pending",
                max_length=12,
            ),
        ),
    ]
