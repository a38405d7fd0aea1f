"""The default intent taxonomy, which the business then edits in the admin."""

from django.db import migrations

from ai.taxonomy import DEFAULT_INTENTS


def add_defaults(apps, schema_editor):
    IntentCategory = apps.get_model("ai", "IntentCategory")
    for position, intent in enumerate(DEFAULT_INTENTS):
        IntentCategory.objects.get_or_create(name=intent["name"], defaults={
            "description": intent["description"], "examples": "\n".join(intent["examples"]),
            "position": position * 10})


class Migration(migrations.Migration):
    dependencies = [("ai", "0001_initial")]
    operations = [migrations.RunPython(add_defaults, migrations.RunPython.noop)]
