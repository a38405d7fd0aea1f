"""
The default groups' permissions for the storage pages: the Admin group handles GDPR requests (export and
erase a user's WhatsApp data, from the user list, so it may also see users) and sees the archive's buckets
and pending storage deletions. Operators get none of it: exports and erasures are an administrator's job.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP_PERMISSIONS = {
    "Admin": {
        "contacts": ["erase_user_data", "view_dataexport", "add_dataexport", "change_dataexport",
                     "delete_dataexport"],
        "whatsapp": ["view_archivebucket", "view_storagedeletion"],
        "auth": ["view_user"],
    },
}


def _permissions(apps, app_label: str, codenames: list[str]):
    return apps.get_model("auth", "Permission").objects.filter(content_type__app_label=app_label,
                                                               codename__in=codenames)


def grant(apps, schema_editor):
    # Permissions are normally created after all migrations run; create them now so groups can use them.
    for label in ("contacts", "whatsapp", "auth"):
        app_config = apps.get_app_config(label)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    for name, by_app in GROUP_PERMISSIONS.items():
        group = Group.objects.filter(name=name).first()
        if group is not None:
            for app_label, codenames in by_app.items():
                group.permissions.add(*_permissions(apps, app_label, codenames))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name, by_app in GROUP_PERMISSIONS.items():
        group = Group.objects.filter(name=name).first()
        if group is not None:
            for app_label, codenames in by_app.items():
                group.permissions.remove(*_permissions(apps, app_label, codenames))


class Migration(migrations.Migration):
    dependencies = [
        ("contacts", "0007_dataexport"),
        ("whatsapp", "0009_archive"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
