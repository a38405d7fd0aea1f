# Provider.kind takes its choices from the provider registry (a callable, serialized by reference), so a
# new provider kind needs no migration. Choices live only in Django's state: nothing changes in the table.

from django.db import migrations, models

import whatsapp.providers


class Migration(migrations.Migration):

    dependencies = [
        ('whatsapp', '0010_webhook_event_invalid_updates'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='provider',
                    name='kind',
                    field=models.CharField(choices=whatsapp.providers.kind_choices, max_length=20),
                ),
            ],
            database_operations=[],
        ),
    ]
