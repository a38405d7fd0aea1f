import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('contacts', '0008_storage_group_permissions'),
        ('whatsapp', '0021_message_send_queue_indexes'),
    ]

    operations = [
        migrations.AddField(
            model_name='webhookevent',
            name='archive_length',
            field=models.IntegerField(blank=True, help_text="Its compressed body's length (bytes).", null=True),
        ),
        migrations.AddField(
            model_name='webhookevent',
            name='archive_offset',
            field=models.BigIntegerField(blank=True, help_text='Where its compressed body starts in the bundle (bytes).', null=True),
        ),
        migrations.CreateModel(
            name='ArchiveBundle',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('backend', models.CharField(max_length=10)),
                ('location', models.CharField(help_text="The bucket, a slash, the object's path.", max_length=600, unique=True)),
                ('bucket', models.CharField(max_length=63)),
                ('window_start', models.DateTimeField(help_text='The start of the hour its bodies were received in.')),
                ('members', models.PositiveIntegerField(default=0)),
                ('size_bytes', models.PositiveBigIntegerField(default=0, help_text="The object's size, compressed.")),
                ('body_bytes', models.PositiveBigIntegerField(default=0, help_text="The bodies' size as received.")),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('rewritten_at', models.DateTimeField(blank=True, help_text='When it was written without the bodies deleted from the bundle it replaces.', null=True)),
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
    ]
