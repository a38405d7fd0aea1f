"""The media files of messages: their download, and their way to the archive storage."""

from django.contrib import admin
from django.db import models
from django.template.defaultfilters import filesizeformat

from whatsapp.admin.archive import ArchivedRowAdmin
from whatsapp.models import Media
from whatsapp.services.archive import ARCHIVE_FIELDS
from whatsapp.services.media import media_retry


@admin.register(Media)
class MediaAdmin(ArchivedRowAdmin):
    list_display = ["id", "message", "mime_type", "state", "attempts", "size_bytes", "archive", "last_error",
                    "created_at"]
    list_filter = ["state", "archive_status", "mime_type"]
    search_fields = ["provider_media_id", "sha256", "filename", "archive_path"]
    raw_id_fields = ["message"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    actions = ["retry_download", "archive_now"]
    list_select_related = ["message"]
    list_deferred = ("pending_content",)
    fieldsets = [
        (None, {"fields": ["message", "provider_media_id", "source_url", "mime_type", "filename", "caption",
                           "sha256", "size_bytes", "public_token", "created_at"]}),
        ("Download", {"fields": ["state", "attempts", "last_error", "expires_at", "next_attempt_at",
                                 "fetched_at"]}),
        ("Archive", {"fields": [*ARCHIVE_FIELDS, "waiting_bytes"]}),
    ]
    readonly_fields = ["created_at", "waiting_bytes"]

    @admin.display(description="Held in the database")
    def waiting_bytes(self, obj):
        if obj.pending_content is None:
            return "-"
        return f"{filesizeformat(len(obj.pending_content))}, until the archive storage takes the file"

    @admin.action(description="Retry the download now")
    def retry_download(self, request, queryset):
        count = media_retry(queryset.exclude(state=Media.State.FETCHED), actor=request.user)
        self.message_user(request, f"{count} download(s) queued.")
