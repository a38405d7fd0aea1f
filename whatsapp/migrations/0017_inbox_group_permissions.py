"""
The default groups' permissions for the inbox: operators see the labels and manage the team's saved
replies (the canned answers they write themselves); the Admin group also manages the labels.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ALL = ("view", "add", "change", "delete")
GROUP_PERMISSIONS = {
    "Operator": ["view_label", *(f"{action}_savedreply" for action in ALL)],
    "Admin": [*(f"{action}_label" for action in ALL), *(f"{action}_savedreply" for action in ALL)],
}


def _permissions(apps, codenames: list[str]):
    return apps.get_model("auth", "Permission").objects.filter(content_type__app_label="whatsapp",
                                                               codename__in=codenames)


def grant(apps, schema_editor):
    # Permissions are normally created after all migrations run; create them now so groups can use them.
    app_config = apps.get_app_config("whatsapp")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    for name, codenames in GROUP_PERMISSIONS.items():
        group = Group.objects.filter(name=name).first()
        if group is not None:
            group.permissions.add(*_permissions(apps, codenames))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name, codenames in GROUP_PERMISSIONS.items():
        group = Group.objects.filter(name=name).first()
        if group is not None:
            group.permissions.remove(*_permissions(apps, codenames))


class Migration(migrations.Migration):
    dependencies = [
        ("whatsapp", "0016_inbox_labels_saved_replies"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
