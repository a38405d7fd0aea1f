"""The archive storage's bookkeeping: the buckets made in it, the bundles of webhook bodies written to them,
and the deletions it still has to confirm."""

from django.contrib import admin
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from core.admin.base import ReadOnlyModelAdmin
from whatsapp.models import ArchiveBucket, ArchiveBundle, StorageDeletion


@admin.register(ArchiveBucket)
class ArchiveBucketAdmin(ReadOnlyModelAdmin):
    """The buckets made in the archive storage: one per user, one per provider for unmapped contacts. The
    rows are the existence cache; an erasure removes a user's bucket and its row."""

    list_display = ["name", "owner", "backend", "created_at"]
    list_filter = ["backend"]
    search_fields = ["name", "user__username", "user__email", "provider__name"]
    list_select_related = ["user", "provider"]
    fields = ["name", "backend", "owner_key", "user", "provider", "created_at"]
    readonly_fields = ["created_at"]
    date_hierarchy = "created_at"

    def has_delete_permission(self, request, obj=None):
        return False  # the bucket stays in the storage; forgetting it here would only hide it

    @admin.display(description="Owner", ordering="owner_key")
    def owner(self, obj):
        if obj.user_id:
            return format_html("user {}", obj.user)
        if obj.provider_id:
            return format_html("provider {} (contacts mapped to no user)", obj.provider.name)
        return f"{obj.owner_key} (gone)"


@admin.register(ArchiveBundle)
class ArchiveBundleAdmin(ReadOnlyModelAdmin):
    """The raw webhook bodies a bucket received in one hour, written as one compressed object. A bundle
    some of whose bodies were deleted (an erasure) is rewritten without them."""

    list_display = ["window_start", "bucket", "members", "bodies_size", "size", "rewrite"]
    list_display_links = ["window_start"]
    list_filter = ["backend"]
    search_fields = ["location", "bucket"]
    fields = ["location", "bucket", "backend", "window_start", "members", "size_bytes", "body_bytes", "bodies",
              "created_at", "rewritten_at", "rewrite_next_at", "rewrite_attempts", "rewrite_error"]
    readonly_fields = ["created_at", "bodies"]
    date_hierarchy = "window_start"
    BODIES_SHOWN = 50

    def has_delete_permission(self, request, obj=None):
        return False  # its bodies' rows point into it; deleting them is what removes it

    @admin.display(description="Bodies as received", ordering="body_bytes")
    def bodies_size(self, obj):
        return filesizeformat(obj.body_bytes)

    @admin.display(description="Object", ordering="size_bytes")
    def size(self, obj):
        return filesizeformat(obj.size_bytes)

    @admin.display(description="Webhook events in it")
    def bodies(self, obj):
        events = list(obj.webhook_events.order_by("archive_offset").values_list("pk", flat=True)[:self.BODIES_SHOWN])
        links = format_html_join(", ", '<a href="{}">{}</a>', (
            (reverse("admin:whatsapp_webhookevent_change", args=[pk]), pk) for pk in events))
        more = obj.members - len(events)
        return format_html("{}{}", links, f" and {more} more" if more > 0 else "") if events else "-"

    @admin.display(description="Rewrite", ordering="rewrite_next_at")
    def rewrite(self, obj):
        if obj.rewrite_next_at is None:
            return "-"
        return format_html('<span title="{}">due (bodies deleted), {} attempt(s)</span>', obj.rewrite_error,
                           obj.rewrite_attempts)


@admin.register(StorageDeletion)
class StorageDeletionAdmin(ReadOnlyModelAdmin):
    """Objects and buckets that must leave the archive storage (erasures, expired exports); a row goes
    once the storage confirms the deletion."""

    list_display = ["target", "name", "reason", "attempts", "next_attempt_at", "short_error", "created_at"]
    list_filter = ["target", "backend"]
    search_fields = ["name", "reason"]
    fields = ["target", "name", "backend", "reason", "attempts", "next_attempt_at", "last_error", "created_at"]
    readonly_fields = ["created_at"]

    def has_delete_permission(self, request, obj=None):
        return False  # a deletion leaves once the storage confirms it, never by being forgotten

    @admin.display(description="Last error")
    def short_error(self, obj):
        return Truncator(obj.last_error).chars(100) or "-"
