# The index of a bulk send's messages. Built CONCURRENTLY on PostgreSQL, as 0017 builds its indexes: a plain CREATE
# INDEX would hold off intake and sending while it reads every message. Partial: only bulk sends carry a batch.

from django.db import migrations, models

INDEX = models.Index(fields=["batch"], condition=models.Q(batch__isnull=False), name="message_batch")


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS message_batch ON messaging_message (batch) WHERE batch IS NOT NULL"
        )
    else:
        schema_editor.add_index(apps.get_model("messaging", "Message"), INDEX)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX CONCURRENTLY IF EXISTS message_batch")
    else:
        schema_editor.remove_index(apps.get_model("messaging", "Message"), INDEX)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("messaging", "0029_message_batch"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="message", index=INDEX)],
            database_operations=[migrations.RunPython(create, drop, elidable=False)],
        ),
    ]
