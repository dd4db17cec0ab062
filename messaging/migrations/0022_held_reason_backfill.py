from django.db import migrations
from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Concat


def held_reason_backfill(apps, schema_editor):
    """Until now a text was held only while its tenant was suspended: say so on the texts held already (the log
    shows "Held: <reason>"; releasing them brings the reason up to date anyway)."""
    Message = apps.get_model("messaging", "Message")
    Tenant = apps.get_model("tenants", "Tenant")
    name = Subquery(Tenant.objects.filter(pk=OuterRef("tenant_id")).values("name")[:1])
    Message.objects.filter(status="held", not_forwarded_reason="").update(
        not_forwarded_reason=Concat(name, Value(" is suspended"))
    )


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0021_message_not_forwarded"),
    ]

    operations = [migrations.RunPython(held_reason_backfill, migrations.RunPython.noop)]
