"""
The campaigns API: segments, imported lists (CSV upload), campaigns with their variants, the launch, pause,
resume, cancel and send-the-winner actions, results with significance, recipients (JSON or CSV) and
conversions reported by the business's own systems.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from campaigns.api import serializers
from campaigns.models import AudienceImport, Campaign, CampaignRecipient, CampaignVariant, MarketingSuppression, Segment
from campaigns.services.audiences import ImportRefused, audience_import
from campaigns.services.control import campaign_cancel, campaign_pause, campaign_resume, campaign_send_winner
from campaigns.services.editing import campaign_write, segment_write
from campaigns.services.launch import CampaignInvalid, campaign_launch
from campaigns.services.reactions import conversion_record
from campaigns.services.results import campaign_report, recipients_csv_rows
from campaigns.services.segments import segment_count
from core.api.errors import REFUSAL, Conflict, ReadableErrors, validated
from core.api.permissions import requires
from core.api.scoping import TeamScoped
from core.models import ApiScope
from core.spreadsheet import csv_lines

CONTROL = "campaigns.control_campaign"


def _conflict(exc: CampaignInvalid) -> Conflict:
    return Conflict(str(exc), code="campaign_refused")


class SegmentViewSet(TeamScoped, ReadableErrors, viewsets.ModelViewSet):
    """Saved audiences: filters over contacts, evaluated again when a campaign launches."""

    queryset = Segment.objects.order_by("name", "pk")
    serializer_class = serializers.SegmentSerializer
    search_fields = ["name", "description"]

    def perform_create(self, serializer):
        serializer.instance = segment_write(None, serializer.validated_data, actor=self.request.user)

    def perform_update(self, serializer):
        serializer.instance = segment_write(serializer.instance, serializer.validated_data, actor=self.request.user)

    def perform_destroy(self, instance):
        if instance.campaigns.exists():
            raise Conflict("campaigns use this segment; it stays while they do", code="segment_in_use")
        instance.delete()

    @extend_schema(summary="How many contacts match the segment now", responses={200: dict, 404: REFUSAL})
    @action(detail=True, methods=["get"])
    def count(self, request, pk=None):
        segment = self.get_object()
        return Response({"segment": segment.pk, "matches": segment_count(segment.filters, user=request.user)})


class AudienceImportViewSet(TeamScoped, ReadableErrors, mixins.CreateModelMixin, mixins.ListModelMixin,
                            mixins.RetrieveModelMixin,
                            viewsets.GenericViewSet):
    """Lists of people imported from CSV, whole or not at all."""

    queryset = AudienceImport.objects.order_by("-created_at", "-pk")
    serializer_class = serializers.AudienceImportSerializer

    def get_permissions(self):
        # An import opts people in with its proof: it needs the right to change contacts too.
        if self.action == "create":
            return [requires("campaigns.add_audienceimport", "contacts.change_contact")()]
        return super().get_permissions()

    @extend_schema(
        summary="Import a CSV list (multipart)",
        description="201 with the import when every row is good. 400 `import_refused` when any row is bad: "
                    "nothing is imported, `rows` lists each bad row's line and reason, and `import` names the "
                    "refused import (kept, so what was rejected stays visible). 400 `invalid_file` for a file "
                    "that is not a readable CSV with a phone column.",
        request={"multipart/form-data": serializers.AudienceUploadSerializer},
        responses={201: serializers.AudienceImportSerializer, 400: REFUSAL})
    def create(self, request, *args, **kwargs):
        form = validated(serializers.AudienceUploadSerializer, request.data, user=request.user)
        upload = form["file"]
        if upload.size > settings.CAMPAIGN_IMPORT_MAX_BYTES:
            return Response({"code": "invalid_file", "detail": f"the file is {upload.size} bytes; the limit is "
                                                               f"{settings.CAMPAIGN_IMPORT_MAX_BYTES}"},
                            status=status.HTTP_400_BAD_REQUEST)
        try:
            audience = audience_import(name=form["name"], provider=form["provider"], data=upload.read(),
                                       file_name=upload.name, require_opt_in=form["require_opt_in"],
                                       actor=request.user)
        except ImportRefused as exc:
            return Response({"code": "invalid_file", "detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        if audience.status == AudienceImport.Status.REFUSED:
            return Response({"code": "import_refused",
                             "detail": f"{len(audience.errors)} bad row(s); nothing was imported",
                             "import": audience.pk, "rows": audience.errors}, status=status.HTTP_400_BAD_REQUEST)
        return Response(self.get_serializer(audience).data, status=status.HTTP_201_CREATED)


class CampaignViewSet(TeamScoped, ReadableErrors, viewsets.ModelViewSet):
    """Campaigns: drafts are written here; launching and the rest are actions."""

    queryset = Campaign.objects.prefetch_related("variants").order_by("-created_at", "-pk")
    serializer_class = serializers.CampaignSerializer
    search_fields = ["name"]
    filterset_fields = ["status", "provider"]
    action_scopes = {"launch": ApiScope.SEND, "resume": ApiScope.SEND, "send_winner": ApiScope.SEND,
                     "results": ApiScope.READ, "recipients": ApiScope.READ, "recipients_csv": ApiScope.READ}

    def get_permissions(self):
        if self.action in ("launch", "pause", "resume", "cancel", "send_winner"):
            return [requires(CONTROL)()]
        if self.action == "conversions":
            return [requires("campaigns.change_campaign")()]
        return super().get_permissions()

    def filter_queryset(self, queryset):
        # The list's filters are about campaigns; a recipients page's `status` is about its recipients.
        return queryset if self.detail else super().filter_queryset(queryset)

    def _write(self, serializer, campaign):
        data = dict(serializer.validated_data)
        variants = data.pop("variants", None)
        try:
            serializer.instance = campaign_write(campaign, data, variants, actor=self.request.user)
        except CampaignInvalid as exc:
            raise _conflict(exc) from None

    def perform_create(self, serializer):
        self._write(serializer, None)

    def perform_update(self, serializer):
        self._write(serializer, serializer.instance)

    def perform_destroy(self, instance):
        if instance.status != Campaign.Status.DRAFT:
            raise Conflict("only a draft can be deleted; cancel a launched campaign instead", code="campaign_refused")
        instance.delete()

    def _act(self, service, **kwargs):
        campaign = self.get_object()
        try:
            with transaction.atomic():
                outcome = service(campaign, actor=self.request.user, **kwargs)
        except CampaignInvalid as exc:
            raise _conflict(exc) from None
        campaign.refresh_from_db()
        return Response({"campaign": self.get_serializer(campaign).data, "result": outcome})

    @extend_schema(summary="Launch: write every recipient's record and start sending as each comes due",
                   request=None, responses={200: dict, 409: REFUSAL})
    @action(detail=True, methods=["post"])
    def launch(self, request, pk=None):
        return self._act(campaign_launch)

    @extend_schema(summary="Pause: queued messages the sender has not taken are taken back",
                   request=None, responses={200: dict, 409: REFUSAL})
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._act(campaign_pause)

    @extend_schema(summary="Resume a paused campaign", request=None, responses={200: dict, 409: REFUSAL})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._act(campaign_resume)

    @extend_schema(summary="Cancel: nobody else gets it", request=None, responses={200: dict, 409: REFUSAL})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return self._act(campaign_cancel)

    @extend_schema(summary="Send the chosen variant to the rest of the audience",
                   request=serializers.WinnerSerializer, responses={200: dict, 400: REFUSAL, 409: REFUSAL})
    @action(detail=True, methods=["post"], url_path="send-winner")
    def send_winner(self, request, pk=None):
        campaign = self.get_object()
        chosen = validated(serializers.WinnerSerializer, request.data, user=request.user)["variant"]
        variant = CampaignVariant.objects.filter(pk=chosen, campaign=campaign).first()
        if variant is None:
            raise exceptions.ValidationError({"variant": [f"variant {chosen} is not one of this campaign's"]})
        return self._act(campaign_send_winner, variant=variant)

    @extend_schema(summary="Results: counts per variant and holdout, and each variant against the first "
                           "(difference, 95 % interval, p-value) on read, replied and converted",
                   responses={200: dict, 404: REFUSAL})
    @action(detail=True, methods=["get"])
    def results(self, request, pk=None):
        return Response(campaign_report(self.get_object()))

    @extend_schema(summary="Recipients, one per person and run", parameters=[OpenApiParameter("status", str)],
                   responses={200: serializers.RecipientSerializer(many=True), 400: REFUSAL})
    @action(detail=True, methods=["get"])
    def recipients(self, request, pk=None):
        rows = (CampaignRecipient.objects.filter(campaign=self.get_object()).select_related("contact", "variant")
                .order_by("pk"))
        if wanted := request.query_params.get("status"):
            if wanted not in CampaignRecipient.Status.values:
                raise exceptions.ValidationError({"status": [f"one of {', '.join(CampaignRecipient.Status.values)}"]})
            rows = rows.filter(status=wanted)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(serializers.RecipientSerializer(page, many=True).data)

    @extend_schema(summary="Every recipient as CSV (a download)", responses={(200, "text/csv"): str})
    @action(detail=True, methods=["get"], url_path="recipients-csv")
    def recipients_csv(self, request, pk=None):
        return _csv_response(self.get_object())

    @extend_schema(summary="Report a conversion (an order, a sign-up) by a person in the campaign",
                   request=serializers.ConversionSerializer, responses={200: dict, 400: REFUSAL, 404: REFUSAL})
    @action(detail=True, methods=["post"])
    def conversions(self, request, pk=None):
        campaign = self.get_object()
        contact = validated(serializers.ConversionSerializer, request.data, user=request.user)["contact"]
        recipient = conversion_record(campaign.pk, contact)
        if recipient is None:
            raise exceptions.NotFound(f"contact {contact} is not a recipient of this campaign")
        return Response({"recipient": recipient.pk, "converted_at": recipient.converted_at})


def _csv_response(campaign: Campaign) -> StreamingHttpResponse:
    response = StreamingHttpResponse(csv_lines(recipients_csv_rows(campaign)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-recipients.csv"'
    return response


class SuppressionViewSet(TeamScoped, ReadableErrors, viewsets.ReadOnlyModelViewSet):
    """People WhatsApp held marketing back from, left out of campaigns until `until`."""

    queryset = MarketingSuppression.objects.order_by("-updated_at", "-pk")
    serializer_class = serializers.SuppressionSerializer
    filterset_fields = ["provider", "contact"]

