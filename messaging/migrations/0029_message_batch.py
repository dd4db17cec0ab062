# A nullable column without a default: PostgreSQL adds it without rewriting the table.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0028_message_search_trigrams"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="batch",
            field=models.UUIDField(
                blank=True, editable=False, help_text="The bulk send this message was part of.", null=True
            ),
        ),
    ]
