# The sender claims a provider's due messages lane by lane, oldest first, each the earliest pending message
# of its conversation: two small partial indexes over the queued (and sending) rows serve both. Built
# CONCURRENTLY on PostgreSQL (this migration is not atomic) so that sending goes on meanwhile; a rerun after an
# interrupted build first drops the index it left INVALID.

from django.db import migrations, models

INDEXES = [
    ("message_send_queue_idx", '"provider_id", "lane", "next_attempt_at", "id"', "status = 'queued'"),
    ("message_pending_order_idx", '"conversation_id", "id"', "status IN ('queued', 'sending')"),
]


def _invalid(connection, name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT NOT indisvalid FROM pg_catalog.pg_index WHERE indexrelid = to_regclass(%s)", [name])
        row = cursor.fetchone()
    return bool(row and row[0])


def forwards(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    concurrently = "CONCURRENTLY " if postgresql else ""
    for name, columns, condition in INDEXES:
        if postgresql and _invalid(schema_editor.connection, name):
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        schema_editor.execute(
            f"CREATE INDEX {concurrently}IF NOT EXISTS {name} ON whatsapp_message ({columns}) WHERE {condition}")


def backwards(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    for name, _columns, _condition in INDEXES:
        schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {name}")


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('whatsapp', '0020_webhook_inbox_index'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forwards, backwards, elidable=False)],
            state_operations=[
                migrations.AddIndex(
                    model_name='message',
                    index=models.Index(condition=models.Q(('status', 'queued')),
                                       fields=['provider', 'lane', 'next_attempt_at', 'id'],
                                       name='message_send_queue_idx'),
                ),
                migrations.AddIndex(
                    model_name='message',
                    index=models.Index(condition=models.Q(('status__in', ['queued', 'sending'])),
                                       fields=['conversation', 'id'], name='message_pending_order_idx'),
                ),
            ],
        ),
    ]
