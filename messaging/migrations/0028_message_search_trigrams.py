# The message log's search (messaging.admin.logs.message_search) matches every word of a query anywhere in a
# message: UPPER(column) LIKE UPPER('%word%') — Django's icontains — on the text, both numbers and the Wavix
# message id, ORed per word. PostgreSQL answers that from indexes only if every one of those columns has a trigram
# index on exactly that expression; one column without would make every search read the whole table (searching the
# text alone took 0.8–1.3 s at 1M messages, docs/benchmarks.md). So: trigram indexes on UPPER() of the four columns,
# and 0017's indexes on the bare numbers (for a case-sensitive LIKE the search no longer writes) are dropped.
#
# As 0017: PostgreSQL only and outside the model state (SQLite, the development default, has no GIN indexes and
# keeps its scan), built CONCURRENTLY so that intake and sending keep writing meanwhile.

from django.db import migrations

NEW = {
    "message_text_trgm": "text",
    "message_from_number_upper_trgm": "from_number",
    "message_to_number_upper_trgm": "to_number",
    "message_wavix_id_trgm": "wavix_message_id",
}
OLD = {"message_from_number_trgm": "from_number", "message_to_number_trgm": "to_number"}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, column in NEW.items():
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON messaging_message USING gin (UPPER({column}) gin_trgm_ops)"
        )
    # Dropped only once the new ones exist: the search by number is never left without an index.
    for name in OLD:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, column in OLD.items():
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON messaging_message USING gin ({column} gin_trgm_ops)"
        )
    for name in NEW:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("messaging", "0027_status_event_once"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
