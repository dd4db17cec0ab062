"""AuditEvent moved to tenants (tenants' 0005): it leaves messaging's state; its table stays, now tenants'.

Its content type follows it, so the permissions granted on it (and admin log entries) still point at it.
"""

from django.db import migrations


def content_type_to(app_label: str, other: str):
    def move(apps, schema_editor):
        ContentType = apps.get_model("contenttypes", "ContentType")
        old = ContentType.objects.filter(app_label=other, model="auditevent")
        if ContentType.objects.filter(app_label=app_label, model="auditevent").exists():
            old.delete()  # created by an earlier migrate run; its permissions are recreated after migrate
        else:
            old.update(app_label=app_label)

    return move


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0023_audit_numbers_unpointed"),
        ("tenants", "0005_auditevent"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="AuditEvent")],
            database_operations=[],
        ),
        migrations.RunPython(content_type_to("tenants", "messaging"), content_type_to("messaging", "tenants")),
    ]
