from django.db import migrations


def load(apps, schema_editor):
    from messaging.country_rules import load_rules

    load_rules(apps.get_model("messaging", "CountryRule"))


class Migration(migrations.Migration):
    dependencies = [("messaging", "0001_initial")]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
