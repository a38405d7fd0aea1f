"""
The base of the lists of rows whose bytes go to the archive storage (media, webhook bodies): their
archive state in the list, a filter on it, the "Archive now" action and a note on what waits.
"""

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.utils.html import format_html
from django.utils.timezone import localtime

from core.admin.base import ReadOnlyModelAdmin
from whatsapp.models import ArchiveStatus
from whatsapp.services.archive_jobs import archive_backlog, archive_retry_now


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def archive_backlog_note() -> str:
    """One line for the lists of archived rows: what waits for the archive storage, if anything."""
    backlog = archive_backlog()
    parts = []
    if backlog["pending_archive"]:
        parts.append(f"{backlog['pending_archive']} waiting for the archive (webhook bodies and media; the oldest "
                     f"for {_duration(backlog['oldest_pending_seconds'])})")
    if backlog["pending_deletions"]:
        parts.append(f"{backlog['pending_deletions']} storage deletion(s) not yet confirmed")
    return "; ".join(parts)


class LeanChangeList(ChangeList):
    """A list page that leaves the model's `list_deferred` columns (raw bytes) in the database."""

    def get_queryset(self, request, exclude_parameters=None):
        return super().get_queryset(request, exclude_parameters).defer(*self.model_admin.list_deferred)


class ArchivedRowAdmin(ReadOnlyModelAdmin):
    """Rows whose bytes go to the archive storage (media, webhook bodies): their archive state in the list,
    a filter on it, the "Archive now" action and a note on what waits."""

    list_deferred: tuple[str, ...] = ()

    def get_changelist(self, request, **kwargs):
        return LeanChangeList

    def changelist_view(self, request, extra_context=None):
        extra_context = dict(extra_context or {})
        if request.method == "GET":
            extra_context.setdefault("subtitle", archive_backlog_note() or None)
        return super().changelist_view(request, extra_context)

    @admin.display(description="Archive", ordering="archive_status")
    def archive(self, obj):
        label = obj.get_archive_status_display()
        if obj.archive_status != ArchiveStatus.PENDING:
            return label
        if not obj.archive_attempts and obj.archive_next_at:  # on time: a body waits for its hour's bundle
            return format_html("Waiting for the archive (due {})", localtime(obj.archive_next_at).strftime("%H:%M"))
        return format_html('<span title="{}">{} ({} attempt(s))</span>', obj.archive_error, label,
                           obj.archive_attempts)

    def has_archive_permission(self, request):
        # The change permission of the model (ReadOnlyModelAdmin refuses changes through forms).
        opts = self.model._meta
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(description="Archive now (rows waiting for the archive)", permissions=["archive"])
    def archive_now(self, request, queryset):
        selected = queryset.count()
        queued = archive_retry_now(queryset, actor=request.user)
        note = "" if queued == selected else (f" The other {selected - queued} were not waiting (archived already, "
                                              "or not due for the archive).")
        level = messages.SUCCESS if queued else messages.WARNING
        self.message_user(request, f"{queued} of {selected} selected row(s) handed to a worker to archive now.{note}",
                          level)
