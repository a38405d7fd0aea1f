"""
The default groups' permissions for teams and resolutions: the Admin group manages teams and sees every
team's conversations; operators see the teams and the resolutions (with the customers' ratings) of theirs.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ALL = ("view", "add", "change", "delete")
GROUP_PERMISSIONS = {
    "Operator": ["view_team", "view_resolution"],
    "Admin": [*(f"{action}_team" for action in ALL), "see_all_teams", "view_resolution"],
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
        ("whatsapp", "0025_teams_lifecycle"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
