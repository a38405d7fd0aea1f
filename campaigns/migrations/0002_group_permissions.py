"""
The default groups' permissions for campaigns: the Admin group writes, launches and controls campaigns,
segments and imported lists; operators see them and their results (a reply to a campaign lands in their inbox).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ALL = ("view", "add", "change", "delete")
MODELS = ("campaign", "campaignvariant", "segment", "audienceimport", "audiencemember", "campaignrecipient",
          "marketingsuppression")
GROUP_PERMISSIONS = {
    "Admin": [*(f"{action}_{model}" for model in MODELS for action in ALL), "control_campaign"],
    "Operator": [f"view_{model}" for model in MODELS],
}


def _permissions(apps, codenames):
    return apps.get_model("auth", "Permission").objects.filter(content_type__app_label="campaigns",
                                                               codename__in=codenames)


def grant(apps, schema_editor):
    # Permissions are normally created after all migrations run; create them now so groups can use them.
    app_config = apps.get_app_config("campaigns")
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
        ("campaigns", "0001_initial"),
        ("whatsapp", "0002_default_groups"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
