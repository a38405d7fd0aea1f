from django.db import migrations

# Django names a model's permissions once, when they are first made: installs that made them while the model
# was called "api token" still offer "Can add api token" in the group and user permission lists.
OLD_NAMES = {f"Can {action} api token": f"Can {action} API key" for action in ("add", "change", "delete", "view")}


def permissions_named_api_key(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    content_type = ContentType.objects.filter(app_label="whatsapp", model="apitoken").first()
    if content_type is None:
        return  # a new install: the permissions are made after migrating, with the current names
    for old, new in OLD_NAMES.items():
        Permission.objects.filter(content_type=content_type, name=old).update(name=new)


class Migration(migrations.Migration):

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("whatsapp", "0017_inbox_group_permissions"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="apitoken",
            options={"ordering": ["-created_at"], "verbose_name": "API key", "verbose_name_plural": "API keys"},
        ),
        migrations.RunPython(permissions_named_api_key, migrations.RunPython.noop),
    ]
