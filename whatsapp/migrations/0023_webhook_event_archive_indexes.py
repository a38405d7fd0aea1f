# The webhook inbox takes writes all the time: its indexes for the bundles are built CONCURRENTLY on
# PostgreSQL (so this migration is not atomic, and has nothing else in it); a rerun after an interrupted
# build first drops an index it left INVALID. Both are partial, over rows a webhook's INSERT never makes.

from django.db import migrations, models

INDEXES = [
    ("webhook_event_bundle_idx", '"archive_bundle_id"', "archive_bundle_id IS NOT NULL"),
    ("webhook_event_retry_idx", '"archive_next_at"', "archive_status = 'pending' AND archive_attempts > 0"),
]


def _invalid(connection, name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT NOT indisvalid FROM pg_catalog.pg_index WHERE indexrelid = to_regclass(%s)", [name])
        row = cursor.fetchone()
    return bool(row and row[0])


def index_create(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    concurrently = "CONCURRENTLY " if postgresql else ""
    for name, columns, condition in INDEXES:
        if postgresql and _invalid(schema_editor.connection, name):
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        schema_editor.execute(
            f"CREATE INDEX {concurrently}IF NOT EXISTS {name} ON whatsapp_webhookevent ({columns}) WHERE {condition}")


def index_drop(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    for name, _columns, _condition in INDEXES:
        schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {name}")


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ("whatsapp", "0022_archive_bundles"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name="webhookevent",
                    index=models.Index(condition=models.Q(("archive_bundle__isnull", False)), fields=["archive_bundle"],
                                       name="webhook_event_bundle_idx"),
                ),
                migrations.AddIndex(
                    model_name="webhookevent",
                    index=models.Index(condition=models.Q(("archive_attempts__gt", 0), ("archive_status", "pending")),
                                       fields=["archive_next_at"], name="webhook_event_retry_idx"),
                ),
            ],
            database_operations=[migrations.RunPython(index_create, index_drop)],
        ),
    ]
