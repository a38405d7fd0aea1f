"""Every default group reads the figures (the dashboard and the analytics API need `view_hourlycount`)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUPS = ("Operator", "Template reviewer", "Admin")


def _permission(apps):
    return apps.get_model("auth", "Permission").objects.filter(content_type__app_label="analytics",
                                                               codename="view_hourlycount")


def grant(apps, schema_editor):
    # Permissions are normally created after all migrations run; create them now so groups can use them.
    app_config = apps.get_app_config("analytics")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    for group in apps.get_model("auth", "Group").objects.filter(name__in=GROUPS):
        group.permissions.add(*_permission(apps))


def revoke(apps, schema_editor):
    for group in apps.get_model("auth", "Group").objects.filter(name__in=GROUPS):
        group.permissions.remove(*_permission(apps))


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0004_count_triggers"),
        ("whatsapp", "0002_default_groups"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
