import django.db.models.deletion
from django.db import migrations, models

# The webhook inbox takes writes all the time: its index is built CONCURRENTLY on PostgreSQL (so this
# migration is not atomic); a rerun after an interrupted build first drops the index it left INVALID.
BUNDLE_INDEX = ("CREATE INDEX {concurrently}IF NOT EXISTS webhook_event_bundle_idx "
                "ON whatsapp_webhookevent (archive_bundle_id) WHERE archive_bundle_id IS NOT NULL")


def bundle_index_create(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    if postgresql:
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT NOT indisvalid FROM pg_catalog.pg_index "
                           "WHERE indexrelid = to_regclass('webhook_event_bundle_idx')")
            row = cursor.fetchone()
        if row and row[0]:
            schema_editor.execute("DROP INDEX CONCURRENTLY IF EXISTS webhook_event_bundle_idx")
    schema_editor.execute(BUNDLE_INDEX.format(concurrently="CONCURRENTLY " if postgresql else ""))


def bundle_index_drop(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS webhook_event_bundle_idx")


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('contacts', '0008_storage_group_permissions'),
        ('whatsapp', '0021_message_send_queue_indexes'),
    ]

    operations = [
        migrations.AddField(
            model_name='webhookevent',
            name='archive_length',
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='webhookevent',
            name='archive_offset',
            field=models.PositiveBigIntegerField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name='ArchiveBundle',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('backend', models.CharField(max_length=10)),
                ('location', models.CharField(help_text='<bucket>/<object>.', max_length=600, unique=True)),
                ('bucket', models.CharField(max_length=63)),
                ('window_start', models.DateTimeField(help_text='The start of the hour its bodies were received in.')),
                ('members', models.PositiveIntegerField(default=0)),
                ('size_bytes', models.PositiveBigIntegerField(default=0, help_text="The object's size, compressed.")),
                ('body_bytes', models.PositiveBigIntegerField(default=0, help_text="The bodies' size as received.")),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('rewritten_at', models.DateTimeField(blank=True, null=True)),
                ('rewrite_next_at', models.DateTimeField(blank=True, help_text='Bodies of it were deleted: when the rewrite without them is (next) tried.', null=True)),
                ('rewrite_attempts', models.PositiveIntegerField(default=0)),
                ('rewrite_error', models.TextField(blank=True)),
            ],
            options={
                'ordering': ['-window_start', '-id'],
                'indexes': [models.Index(condition=models.Q(('rewrite_next_at__isnull', False)), fields=['rewrite_next_at'], name='archive_bundle_rewrite_idx'), models.Index(fields=['bucket'], name='archive_bundle_bucket_idx')],
            },
        ),
        migrations.AddField(
            model_name='webhookevent',
            name='archive_bundle',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='webhook_events', to='whatsapp.archivebundle'),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name='webhookevent',
                    index=models.Index(condition=models.Q(('archive_bundle__isnull', False)), fields=['archive_bundle'], name='webhook_event_bundle_idx'),
                ),
            ],
            database_operations=[migrations.RunPython(bundle_index_create, bundle_index_drop)],
        ),
    ]
