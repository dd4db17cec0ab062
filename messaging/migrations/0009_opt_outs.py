import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("messaging", "0008_delivery_conversations"), ("tenants", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="OptOut",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("number", models.CharField(max_length=20)),
                ("keyword", models.CharField(max_length=20)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "tenant",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="opt_outs", to="tenants.tenant"
                    ),
                ),
            ],
            options={"verbose_name": "opt-out", "ordering": ["-created_at"]},
        ),
        migrations.AddConstraint(
            model_name="optout",
            constraint=models.UniqueConstraint(fields=("tenant", "number"), name="opt_out_once_per_tenant"),
        ),
    ]
