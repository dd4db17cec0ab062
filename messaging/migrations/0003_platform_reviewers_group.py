from django.contrib.auth.management import create_permissions
from django.db import migrations

REVIEWER_PERMISSIONS = {
    "messaging": [
        "review_senderid",
        "view_senderid",
        "view_senderidcountry",
        "change_senderidcountry",
        "view_countryrule",
        "change_countryrule",
    ],
    "tenants": ["view_reseller", "view_tenant"],
}


def create_group(apps, schema_editor):
    # Permissions are normally created after all migrations; the group needs them now.
    for label in REVIEWER_PERMISSIONS:
        app_config = apps.get_app_config(label)
        app_config.models_module = True  # the migration state's app stub lacks it; create_permissions checks it
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Platform reviewers")
    for app_label, codenames in REVIEWER_PERMISSIONS.items():
        group.permissions.add(*Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames))


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="Platform reviewers").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0002_load_country_rules"),
        ("tenants", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
