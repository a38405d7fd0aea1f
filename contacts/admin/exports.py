"""The GDPR exports of users' WhatsApp data, and their downloads."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse
from django.utils.html import format_html

from contacts.models import DataExport
from contacts.services.export import DOWNLOAD_BLOCK, ExportNotReady, data_export_downloadable, data_export_open
from core.access import sees_everything
from core.admin.base import ReadOnlyModelAdmin, pretty_json
from core.audit import audit_record
from core.storage import ObjectNotFound, StorageError


@admin.register(DataExport)
class DataExportAdmin(ReadOnlyModelAdmin):
    # An export holds a person's messages on every number: only for those who see every team.
    def has_module_permission(self, request):
        return sees_everything(request.user) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return sees_everything(request.user) and super().has_view_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return sees_everything(request.user) and super().has_delete_permission(request, obj)

    """GDPR exports: zips built by a worker and kept in the archive storage until they expire. Requested
    from the user list's "Export WhatsApp data" action."""

    list_display = ["id", "user", "status", "size", "created_at", "expires_at", "download"]
    list_filter = ["status"]
    search_fields = ["user__username", "user__email", "user__first_name", "user__last_name"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
    fields = ["user", "requested_by", "status", "download", "size", "sha256", "pretty_counts", "created_at",
              "finished_at", "expires_at", "attempts", "next_attempt_at", "error", "location"]
    readonly_fields = ["download", "size", "pretty_counts", "created_at"]

    # A deleted export's zip leaves the storage by the post_delete receiver in contacts.signals, whatever
    # deleted the row; here the deletion is only audited, in the same transaction.
    def delete_model(self, request, obj):
        with transaction.atomic():
            self._audit_deletions(request, [obj])
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            self._audit_deletions(request, list(queryset))
            super().delete_queryset(request, queryset)

    @staticmethod
    def _audit_deletions(request, exports: list[DataExport]) -> None:
        for export in exports:
            audit_record(action="data_export.delete", obj=export, actor=request.user,
                         before={"user": export.user_id, "status": export.status, "location": export.location})

    def get_urls(self):
        download = path("<int:export_id>/download/", self.admin_site.admin_view(self.download_view),
                        name="contacts_dataexport_download")
        return [download, *super().get_urls()]

    @admin.display(description="Size", ordering="size_bytes")
    def size(self, obj):
        return filesizeformat(obj.size_bytes) if obj.size_bytes is not None else "-"

    @admin.display(description="Download")
    def download(self, obj):
        if not obj.pk or not data_export_downloadable(obj):
            return "-"
        return format_html('<a href="{}">Download the zip</a>',
                           reverse("admin:contacts_dataexport_download", args=[obj.pk]))

    @admin.display(description="What it holds")
    def pretty_counts(self, obj):
        return pretty_json(obj.counts)

    def download_view(self, request, export_id):
        """The zip, for whoever may see exports; 404 once it is gone or before it is ready."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        export = get_object_or_404(DataExport.objects.select_related("user"), pk=export_id)
        try:
            zip_file = data_export_open(export)
        except ExportNotReady:
            raise Http404("This export is not ready, or has expired.") from None
        except ObjectNotFound:
            raise Http404("This export is no longer in the storage.") from None
        except StorageError as exc:
            return HttpResponse(f"The archive storage could not give the zip right now ({exc}); try again shortly.",
                                status=503, content_type="text/plain")
        audit_record(action="data_export.download", obj=export, actor=request.user)
        # Streamed as the storage gives it (the response closes the file once sent).
        filename = f"whatsapp-data-{export.user.get_username()}-{export.created_at:%Y%m%d}-{export.pk}.zip"
        response = FileResponse(zip_file, as_attachment=True, filename=filename, content_type="application/zip")
        response.block_size = DOWNLOAD_BLOCK
        if export.size_bytes is not None:
            response["Content-Length"] = str(export.size_bytes)
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "private, no-store"
        return response
