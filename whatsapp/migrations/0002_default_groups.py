"""The three roles: operator, template reviewer and admin, as Django groups."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ALL_ACTIONS = ("view", "add", "change", "delete")

GROUPS = {
    "Operator": {
        "whatsapp": {"conversation": ("view", "change"), "message": ("view",), "session": ("view",),
                     "provider": ("view",), "media": ("view",), "messagestatusevent": ("view",)},
        "contacts": {"contact": ("view", "change"), "contactidentity": ("view",),
                     "contactusermapping": ALL_ACTIONS},
        "templates_app": {"messagetemplate": ("view",)},
        "analytics": {"hourlystats": ("view",)},
    },
    "Template reviewer": {
        "templates_app": {"messagetemplate": ("view", "add", "change", "review")},
        "whatsapp": {"provider": ("view",)},
        "analytics": {"hourlystats": ("view",)},
    },
    "Admin": {
        "whatsapp": dict.fromkeys(
            ("provider", "conversation", "session", "message", "messagestatusevent", "media", "webhookevent",
             "auditlog"),
            ALL_ACTIONS,
        ),
        "contacts": dict.fromkeys(("contact", "contactidentity", "contactusermapping"), ALL_ACTIONS),
        "templates_app": {"messagetemplate": (*ALL_ACTIONS, "review")},
        "analytics": {"hourlystats": ALL_ACTIONS},
    },
}


def _codename(action: str, model: str) -> str:
    # "review" is the custom permission declared on MessageTemplate.Meta.permissions.
    return f"{action}_{model}"


def create_groups(apps, schema_editor):
    # Permissions are normally created after all migrations run; create them now so groups can use them.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group_name, by_app in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        for app_label, by_model in by_app.items():
            for model, actions in by_model.items():
                for action in actions:
                    permission = Permission.objects.get(content_type__app_label=app_label,
                                                        codename=_codename(action, model))
                    group.permissions.add(permission)


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("whatsapp", "0001_initial"),
        ("contacts", "0001_initial"),
        ("templates_app", "0002_initial"),
        ("analytics", "0002_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
