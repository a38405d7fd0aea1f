"""
GDPR in the API: a user's data exported as a zip (requested, listed, downloaded) and erased.

POST /api/v1/users/{id}/exports/    request an export (202; a worker builds it)   contacts.add_dataexport
GET  /api/v1/exports/[{id}/]         exports, filtered by user and status          contacts.view_dataexport
GET  /api/v1/exports/{id}/download/  the zip (409 while it is built, 410 expired)  contacts.view_dataexport
POST /api/v1/users/{id}/erase/       erase the user's data ({"confirm": username}) contacts.erase_user_data
"""

import django_filters
from django.contrib.auth import get_user_model
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from contacts.models import DataExport
from contacts.services.erasure import ErasureBusy, user_data_erase
from contacts.services.export import (
    DOWNLOAD_BLOCK,
    ExportNotReady,
    data_export_downloadable,
    data_export_expired,
    data_export_open,
    data_export_request,
)
from core.api.errors import REFUSAL, ReadableErrors, refuse, validated
from core.api.filters import ApiFilterSet
from core.api.permissions import ModelPermissionsWithView, requires
from core.api.scoping import SeesAllTeams, TeamScoped
from core.storage import ObjectNotFound, StorageError

EXPORT_CREATE = "contacts.add_dataexport"
ERASE = "contacts.erase_user_data"


class DataExportSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.get_username", read_only=True)
    requested_by_username = serializers.CharField(source="requested_by.get_username", read_only=True, default=None,
                                                  allow_null=True)
    status = serializers.CharField(read_only=True, help_text="pending (being built), ready, failed or expired")
    download_url = serializers.SerializerMethodField(help_text="Where the zip is, once it is ready.")

    class Meta:
        model = DataExport
        fields = ["id", "user", "username", "requested_by", "requested_by_username", "status", "size_bytes",
                  "sha256", "counts", "attempts", "next_attempt_at", "error", "created_at", "finished_at",
                  "expires_at", "download_url"]

    def get_download_url(self, export: DataExport) -> str | None:
        if not data_export_downloadable(export):
            return None
        return reverse("dataexport-download", args=[export.pk])


class EraseRequestSerializer(serializers.Serializer):
    confirm = serializers.CharField(help_text="The username of the user being erased, to confirm the erasure.",
                                    trim_whitespace=False, max_length=300)


class ErasureReportSerializer(serializers.Serializer):
    contacts = serializers.IntegerField()
    conversations = serializers.IntegerField()
    messages = serializers.IntegerField()
    media = serializers.IntegerField()
    webhook_events = serializers.IntegerField()
    exports = serializers.IntegerField()
    buckets = serializers.IntegerField(help_text="The user's archive buckets, deleted with all their objects.")
    objects_elsewhere = serializers.IntegerField(help_text="Objects of theirs in other buckets (written while a "
                                                           "contact was not yet mapped), deleted one by one.")
    bundles_rewritten = serializers.IntegerField(help_text="Bundles of raw webhook bodies in other buckets that "
                                                           "held theirs among other people's: rewritten without "
                                                           "theirs.")


class DataExportFilter(ApiFilterSet):
    user = django_filters.NumberFilter(field_name="user", help_text="Exports of this user (an id).")

    class Meta:
        model = DataExport
        fields = ["user", "status"]


def _exports():
    return DataExport.objects.select_related("user", "requested_by").order_by("-created_at", "-id")


@extend_schema_view(
    list=extend_schema(summary="GDPR data exports, newest first",
                       description="Filter by `user` (an id) and `status`. Needs contacts.view_dataexport.",
                       responses={200: DataExportSerializer(many=True), 400: REFUSAL, 403: REFUSAL}),
    retrieve=extend_schema(summary="One data export",
                           responses={200: DataExportSerializer, 403: REFUSAL, 404: REFUSAL}),
)
class DataExportViewSet(TeamScoped, ReadableErrors, viewsets.ReadOnlyModelViewSet):
    queryset = _exports()
    # An export holds a person's messages on every number: only for those who see every team.
    permission_classes = [ModelPermissionsWithView, SeesAllTeams]
    serializer_class = DataExportSerializer
    filterset_class = DataExportFilter
    search_fields = ["user__username"]
    ordering_fields = ["created_at", "finished_at"]

    def perform_content_negotiation(self, request, force=False):
        # A client asking for application/zip gets the zip, and a refusal as JSON, rather than a 406.
        return super().perform_content_negotiation(request, force=force or self.action == "download")

    @extend_schema(
        summary="Download the export's zip",
        description="contacts.json, conversations.json, messages.json, the media files, manifest.json (counts and "
                    "a sha256 of every file) and README.txt. 409 `export_not_ready` while it is being built, "
                    "409 `export_failed` when the build failed, 410 `export_expired` once it was deleted, 503 "
                    "`storage_unavailable` when the archive storage does not answer. Needs "
                    "contacts.view_dataexport.",
        filters=False,
        responses={(200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="The zip."),
                   403: REFUSAL, 404: REFUSAL, 409: REFUSAL, 410: REFUSAL, 503: REFUSAL})
    @action(detail=True, methods=["get"], filter_backends=[])
    def download(self, request, pk=None):
        export = self.get_object()
        try:
            zip_file = data_export_open(export)
        except ExportNotReady:
            return _not_ready(export)
        except ObjectNotFound:
            return refuse(410, "export_expired", f"the zip of export {export.pk} is no longer in the storage")
        except StorageError:
            return refuse(503, "storage_unavailable", "the archive storage does not answer; try again later")
        # Streamed as the storage gives it (the response closes the file once sent).
        response = FileResponse(zip_file, as_attachment=True, filename=f"whatsapp-export-{export.pk}.zip",
                                content_type="application/zip")
        response.block_size = DOWNLOAD_BLOCK
        if export.size_bytes is not None:
            response["Content-Length"] = str(export.size_bytes)
        response["X-Checksum-SHA256"] = export.sha256
        return response


def _not_ready(export: DataExport) -> Response:
    if data_export_expired(export):
        return refuse(410, "export_expired", f"export {export.pk} expired and its zip was deleted; request "
                                               "another")
    if export.status == DataExport.Status.FAILED:
        return refuse(409, "export_failed", f"export {export.pk} failed: {export.error}")
    return refuse(409, "export_not_ready", f"export {export.pk} is still being built; try again shortly")


class UserDataViewSet(TeamScoped, ReadableErrors, viewsets.GenericViewSet):
    """Only the GDPR actions on a user (the users themselves are managed in the admin)."""
    bulk_actions = ("exports", "erase")

    queryset = get_user_model().objects.all()
    serializer_class = DataExportSerializer  # the schema's default; each action names its own
    filter_backends = []
    pagination_class = None

    @extend_schema(
        summary="Export a user's WhatsApp data (GDPR)",
        description="A zip of the contacts mapped to the user, their conversations and messages as JSON and the "
                    "media files, built by a worker (status `pending`, then `ready`); `Location` names the "
                    "export, whose `download_url` serves the zip once ready, for DATA_EXPORT_RETENTION_DAYS. "
                    "Audited. Needs contacts.add_dataexport.",
        request=None, responses={202: DataExportSerializer, 403: REFUSAL, 404: REFUSAL})
    @action(detail=True, methods=["post"], permission_classes=[requires(EXPORT_CREATE), SeesAllTeams])
    def exports(self, request, pk=None):
        user = self.get_object()
        export = data_export_request(user=user, actor=request.user)
        body = DataExportSerializer(_exports().get(pk=export.pk)).data
        return Response(body, status=202, headers={"Location": reverse("dataexport-detail", args=[export.pk])})

    @extend_schema(
        summary="Erase a user's WhatsApp data (GDPR)",
        description="Deletes the contacts mapped to the user with their identities, mappings, consent history, "
                    "conversations, messages (AI outputs included), media, the raw webhooks that carried them and "
                    "the user's exports; the user's archive bucket and their objects in other buckets are deleted "
                    "from the storage right after (retried until the storage confirms). Analytics keep their "
                    "anonymous hourly counts; the user account stays. Cannot be undone: the body must confirm "
                    "with the user's username (400 otherwise). Audited as `user.erase`. Needs "
                    "contacts.erase_user_data.",
        request=EraseRequestSerializer,
        responses={200: ErasureReportSerializer, 400: REFUSAL, 403: REFUSAL, 404: REFUSAL})
    @action(detail=True, methods=["post"], permission_classes=[requires(ERASE), SeesAllTeams])
    def erase(self, request, pk=None):
        user = self.get_object()
        form = validated(EraseRequestSerializer, request.data, user=request.user)
        if form["confirm"] != user.get_username():
            return refuse(400, "confirmation_mismatch",
                            f'"confirm" must be exactly the username of user {user.pk}; nothing was erased')
        try:
            report = user_data_erase(user=user, actor=request.user)
        except ErasureBusy as exc:
            return refuse(409, "export_in_progress", f"{exc}; nothing was erased")
        return Response(report.as_dict())
