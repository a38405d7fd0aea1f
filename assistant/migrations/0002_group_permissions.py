"""Who may use the assistant's admin pages: admins everything (and everyone's items); a new "Assistant user"
group lets the business's own users manage their items there (only their own are shown); operators see
the policies, never a user's notes, tasks or turns."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

OWNED = ("project", "goal", "task", "note", "contentrequest", "reminder")
ACTIONS = ("view", "add", "change", "delete")
GROUP_PERMISSIONS = {
    "Admin": [f"{action}_{model}" for model in (*OWNED, "assistantprofile", "assistantpolicy", "turn")
              for action in ACTIONS] + ["see_everyones_items"],
    "Operator": ["view_assistantpolicy"],
    "Assistant user": [f"{action}_{model}" for model in OWNED for action in ACTIONS]
                      + ["view_assistantprofile", "change_assistantprofile"],
}


def grant_group_permissions(apps, schema_editor):
    assistant = apps.get_app_config("assistant")
    assistant.models_module = True
    create_permissions(assistant, apps=apps, verbosity=0)
    assistant.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name) if name == "Assistant user" else (
            Group.objects.filter(name=name).first(), False)
        if group is not None:
            group.permissions.add(*Permission.objects.filter(content_type__app_label="assistant",
                                                             codename__in=codenames))


class Migration(migrations.Migration):
    dependencies = [("assistant", "0001_initial"), ("whatsapp", "0002_default_groups")]
    operations = [migrations.RunPython(grant_group_permissions, migrations.RunPython.noop)]
