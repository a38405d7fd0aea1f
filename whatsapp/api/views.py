"""The messaging API: providers, conversations (assigning and labelling them too), messages, labels and saved
replies. Sending is POST /api/v1/messages/."""

import hashlib

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Count, Prefetch, Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.filters import SearchFilter
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from core.access import related_rows_of, sees_everything
from core.api.errors import REFUSAL, ReadableErrors, refuse, validated
from core.api.filters import ApiFilterBackend
from core.api.parsers import DepthSafeJSONParser, printable
from core.api.permissions import requires
from core.api.scoping import TeamScoped, related_fields_scope
from core.audit import audit_record, audit_snapshot
from core.models import ApiScope
from whatsapp.api import serializers
from whatsapp.api.filters import WAITING, ConversationFilter, InboxOrderingFilter, MessageFilter, SavedReplyFilter
from whatsapp.models import (
    Conversation,
    Label,
    Message,
    MessageStatusEvent,
    Provider,
    Resolution,
    SavedReply,
    Session,
    Team,
)
from whatsapp.selectors import with_inbox_columns
from whatsapp.services.conversations import (
    AssignmentRefused,
    conversation_assign,
    conversation_change_labels,
    conversation_set_labels,
    labels_named,
    saved_reply_writable,
)
from whatsapp.services.lifecycle import StatusRefused, conversation_set_status, conversations_set_status
from whatsapp.services.outbound import (
    IdempotencyConflict,
    MediaInput,
    SendRequest,
    message_send,
    request_fingerprint,
)
from whatsapp.services.send_rules import SendRefused


class ProviderViewSet(TeamScoped, ReadableErrors, viewsets.ReadOnlyModelViewSet):
    queryset = Provider.objects.all()
    serializer_class = serializers.ProviderSerializer
    filterset_fields = ["kind", "is_active", "is_paused"]
    search_fields = ["name", "phone_number", "external_id"]
    ordering_fields = ["name", "created_at"]


CHANGE_CONVERSATION = "whatsapp.change_conversation"
LABEL_METHODS_HELP = ("PUT sets exactly these labels, POST adds them, DELETE removes them; names in any case. A name "
                      "no label has is refused (400 `unknown_labels`, naming them) and nothing changes. Audited.")


@extend_schema_view(
    list=extend_schema(
        summary="Conversations",
        description="Newest activity first; `ordering=waiting` is the inbox's order: what has waited longest for "
                    "a reply first, then the most recent. Each shows its labels, whether it needs a reply, its "
                    "assignee and its latest message.",
        parameters=[
            OpenApiParameter("assignee", str, description='Assigned to this user (an id), or "me": to the caller. '
                                                          "`assignee__isnull=true`: to nobody."),
            OpenApiParameter("label", str, description="Carries the label with this name (any case); a name no "
                                                       "label has is refused (400)."),
            OpenApiParameter("ordering", str, description="last_message_at, created_at, awaiting_reply_since (each "
                                                          "reversed with a leading -), or waiting: the inbox's order, "
                                                          "what has waited longest first."),
        ]),
    retrieve=extend_schema(summary="One conversation"),
)
class ConversationViewSet(TeamScoped, ReadableErrors, viewsets.ReadOnlyModelViewSet):
    queryset = (Conversation.objects.select_related("contact", "assignee")
                .prefetch_related(Prefetch("sessions", queryset=Session.objects.filter(state="open")), "labels")
                .order_by("-last_message_at", "-id"))
    serializer_class = serializers.ConversationSerializer
    filter_backends = [ApiFilterBackend, SearchFilter, InboxOrderingFilter]
    filterset_class = ConversationFilter
    search_fields = ["contact__profile_name", "contact__identities__value"]
    ordering_fields = ["last_message_at", "created_at", "awaiting_reply_since", WAITING]
    # Changes to a conversation are "manage" for an API key (the default of a request that is not a read).
    action_scopes = {"assign": ApiScope.MANAGE, "labels": ApiScope.MANAGE, "status": ApiScope.MANAGE,
                     "bulk_status": ApiScope.MANAGE}

    def get_queryset(self):
        return with_inbox_columns(super().get_queryset())

    def _answer(self, conversation: Conversation) -> Response:
        return Response(self.get_serializer(self.get_queryset().get(pk=conversation.pk)).data)

    @extend_schema(
        summary="Assign a conversation, or unassign it",
        description='`{"assignee": <user id>}` or `{"assignee": "me"}` assigns it to that user (an active staff '
                    'member), `{"assignee": null}` to nobody. Needs whatsapp.change_conversation. Audited.',
        request=serializers.AssignSerializer,
        responses={200: serializers.ConversationSerializer, 400: REFUSAL, 403: REFUSAL, 404: REFUSAL})
    @action(detail=True, methods=["post"], permission_classes=[requires(CHANGE_CONVERSATION)], filter_backends=[])
    def assign(self, request, pk=None):
        conversation = self.get_object()
        wanted = validated(serializers.AssignSerializer, request.data, user=request.user)["assignee"]
        if wanted == "me":
            assignee = request.user
        elif wanted is None:
            assignee = None
        else:
            assignee = get_user_model().objects.filter(pk=wanted).first() if 0 < wanted < 2**63 else None
            if assignee is None:
                return refuse(400, "unknown_user", f"There is no user with the id {wanted}.")
        try:
            conversation_assign(conversation, assignee, actor=request.user)
        except AssignmentRefused as refusal:
            return refuse(400, "not_assignable", str(refusal))
        return self._answer(conversation)

    @extend_schema(
        summary="Resolve, reopen, mark pending or snooze a conversation",
        description='`{"status": "resolved"}`, `"open"`, `"pending"` (waiting on the customer), or `"snoozed"` with '
                    '`snoozed_until` (a time in the future). Audited; a Chatwoot conversation is set there too; '
                    "resolving may send the customer a satisfaction survey. Needs whatsapp.change_conversation.",
        request=serializers.StatusChangeSerializer,
        responses={200: serializers.ConversationSerializer, 400: REFUSAL, 403: REFUSAL, 404: REFUSAL})
    @action(detail=True, methods=["post"], permission_classes=[requires(CHANGE_CONVERSATION)], filter_backends=[])
    def status(self, request, pk=None):
        conversation = self.get_object()
        form = validated(serializers.StatusChangeSerializer, request.data, user=request.user)
        try:
            conversation_set_status(conversation, form["status"], actor=request.user,
                                    snoozed_until=form.get("snoozed_until"))
        except StatusRefused as refusal:
            return refuse(400, "invalid_status", str(refusal))
        return self._answer(conversation)

    @extend_schema(
        summary="Change the state of many conversations at once (bulk resolve)",
        description='`{"ids": [...], "status": "resolved"}`: each conversation the caller may see is changed and '
                    "audited on its own; ids the caller cannot see are refused (404) and nothing changes.",
        request=serializers.BulkStatusSerializer,
        responses={200: OpenApiTypes.OBJECT, 400: REFUSAL, 403: REFUSAL, 404: REFUSAL})
    @action(detail=False, methods=["post"], url_path="bulk-status", permission_classes=[requires(CHANGE_CONVERSATION)],
            filter_backends=[])
    def bulk_status(self, request):
        form = validated(serializers.BulkStatusSerializer, request.data, user=request.user)
        wanted = set(form["ids"])
        conversations = list(self.get_queryset().filter(pk__in=wanted).order_by("pk"))
        if missing := sorted(wanted - {conversation.pk for conversation in conversations}):
            return refuse(404, "not_found", f"No conversation you can see has the id(s) {missing[:20]}; "
                                            "nothing was changed.")
        try:
            changed = conversations_set_status(conversations, form["status"], actor=request.user,
                                               snoozed_until=form.get("snoozed_until"))
        except StatusRefused as refusal:
            return refuse(400, "invalid_status", str(refusal))
        return Response({"status": form["status"], "changed": changed, "unchanged": len(conversations) - changed})

    @extend_schema(methods=["PUT"], summary="Set a conversation's labels")
    @extend_schema(methods=["POST"], summary="Add labels to a conversation")
    @extend_schema(methods=["DELETE"], summary="Remove labels from a conversation",
                   description=LABEL_METHODS_HELP + ' The body is {"labels": [...]}, as for the others.')
    @extend_schema(description=LABEL_METHODS_HELP, request=serializers.LabelNamesSerializer,
                   responses={200: serializers.ConversationSerializer, 400: REFUSAL, 403: REFUSAL, 404: REFUSAL})
    @action(detail=True, methods=["put", "post", "delete"], permission_classes=[requires(CHANGE_CONVERSATION)],
            filter_backends=[])
    def labels(self, request, pk=None):
        conversation = self.get_object()
        names = validated(serializers.LabelNamesSerializer, request.data, user=request.user)["labels"]
        given, unknown = labels_named(names)
        if unknown:
            return Response({"code": "unknown_labels", "detail": f"No label is named {', '.join(map(repr, unknown))}; "
                                                                 "nothing was changed.",
                             "unknown": unknown}, status=400)
        # The services lock the conversation, then read its labels: two requests adding labels at once both count.
        if request.method == "PUT":
            conversation_set_labels(conversation, given, actor=request.user)
        elif request.method == "POST":
            conversation_change_labels(conversation, add=given, actor=request.user)
        else:
            conversation_change_labels(conversation, remove=given, actor=request.user)
        return self._answer(conversation)


class AuditedModelViewSet(TeamScoped, ReadableErrors, viewsets.ModelViewSet):
    """Create, change and delete, each with its audit entry `<model>.create|change|delete` (stored together or not
    at all). A name or title taken by a request at the same moment is refused like one taken before (400)."""

    unique_field = ""

    def _saved(self, serializer, **extra):
        try:
            with transaction.atomic():
                return serializer.save(**extra)
        except IntegrityError:
            raise ValidationError({self.unique_field: ["this is already taken"]}) from None

    @transaction.atomic
    def perform_create(self, serializer):
        obj = self._saved(serializer, **self.created_extra())
        audit_record(action=f"{obj._meta.model_name}.create", obj=obj, actor=self.request.user,
                     after=audit_snapshot(obj))

    def created_extra(self) -> dict:
        return {}

    @transaction.atomic
    def perform_update(self, serializer):
        before = audit_snapshot(serializer.instance)
        obj = self._saved(serializer)
        audit_record(action=f"{obj._meta.model_name}.change", obj=obj, actor=self.request.user, before=before,
                     after=audit_snapshot(obj))

    @transaction.atomic
    def perform_destroy(self, instance):
        audit_record(action=f"{instance._meta.model_name}.delete", obj=instance, actor=self.request.user,
                     before=audit_snapshot(instance))
        instance.delete()


@extend_schema_view(
    list=extend_schema(summary="Labels", description="By name, each with how many conversations carry it."),
    retrieve=extend_schema(summary="One label"),
    create=extend_schema(summary="Make a label", description="Audited.",
                         responses={201: serializers.LabelSerializer, 400: REFUSAL, 403: REFUSAL}),
    update=extend_schema(summary="Change a label", description="Audited.",
                         responses={200: serializers.LabelSerializer, 400: REFUSAL, 403: REFUSAL, 404: REFUSAL}),
    partial_update=extend_schema(summary="Change some of a label's fields", description="Audited.",
                                 responses={200: serializers.LabelSerializer, 400: REFUSAL, 403: REFUSAL,
                                            404: REFUSAL}),
    destroy=extend_schema(summary="Delete a label", description="It comes off every conversation. Audited.",
                          responses={204: None, 403: REFUSAL, 404: REFUSAL}),
)
class LabelViewSet(AuditedModelViewSet):
    queryset = Label.objects.order_by("name", "pk")
    serializer_class = serializers.LabelSerializer
    filterset_fields = ["colour"]
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at", "conversation_count"]
    unique_field = "name"

    def get_queryset(self):
        # Only the conversations of the caller's numbers are counted.
        mine = Q() if self._describing() else related_rows_of(self.request.user, "conversations__provider")
        return super().get_queryset().annotate(conversation_count=Count("conversations", filter=mine))


@extend_schema_view(
    list=extend_schema(summary="Saved replies",
                       description="By title. `provider` gives the ones offered on that number: its own and the "
                                   "ones for every number."),
    retrieve=extend_schema(summary="One saved reply"),
    create=extend_schema(summary="Make a saved reply", description="Made by the caller. Audited.",
                         responses={201: serializers.SavedReplySerializer, 400: REFUSAL, 403: REFUSAL}),
    update=extend_schema(summary="Change a saved reply", description="Audited.",
                         responses={200: serializers.SavedReplySerializer, 400: REFUSAL, 403: REFUSAL,
                                    404: REFUSAL}),
    partial_update=extend_schema(summary="Change some of a saved reply's fields", description="Audited.",
                                 responses={200: serializers.SavedReplySerializer, 400: REFUSAL, 403: REFUSAL,
                                            404: REFUSAL}),
    destroy=extend_schema(summary="Delete a saved reply", description="Audited.",
                          responses={204: None, 403: REFUSAL, 404: REFUSAL}),
)
class SavedReplyViewSet(AuditedModelViewSet):
    queryset = SavedReply.objects.select_related("created_by").order_by("title", "pk")
    serializer_class = serializers.SavedReplySerializer
    filterset_class = SavedReplyFilter
    search_fields = ["title", "text"]
    ordering_fields = ["title", "updated_at"]
    unique_field = "title"

    def created_extra(self) -> dict:
        return {"created_by": self.request.user}

    # A reply offered on every number is every team's: only those who see every team write one.
    def perform_create(self, serializer):
        self._check_shared(serializer.validated_data.get("provider"))
        super().perform_create(serializer)

    def perform_update(self, serializer):
        self._check_shared(serializer.instance.provider)
        self._check_shared(serializer.validated_data.get("provider", serializer.instance.provider))
        super().perform_update(serializer)

    def perform_destroy(self, instance):
        self._check_shared(instance.provider)
        super().perform_destroy(instance)

    def _check_shared(self, provider) -> None:
        if not saved_reply_writable(self.request.user, provider.pk if provider else None):
            raise PermissionDenied("A saved reply for every number is shared by every team: only users who see "
                                   "every team may write one. Choose one of your numbers.")


IDEMPOTENCY_KEY_MAX = 100


class MessageViewSet(TeamScoped, ReadableErrors, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    action_scopes = {"create": "send"}  # an API key needs the send scope to message a contact
    queryset = Message.objects.select_related("conversation__contact").prefetch_related(
        Prefetch("status_events", queryset=MessageStatusEvent.objects.order_by("occurred_at", "id")), "media",
        "send_attempts",
    )
    serializer_class = serializers.MessageSerializer
    parser_classes = [DepthSafeJSONParser, MultiPartParser, FormParser]
    filterset_class = MessageFilter
    search_fields = ["text", "provider_message_id"]
    ordering_fields = ["created_at"]

    @extend_schema(
        request=serializers.SendMessageSerializer,
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
                                     description="The same key with the same body returns the same message "
                                                 "and never sends twice; with a different body it is refused (409).")],
        responses={201: serializers.MessageSerializer, 200: serializers.MessageSerializer,
                   400: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT, 422: OpenApiTypes.OBJECT},
    )
    def create(self, request, *args, **kwargs):
        """Send a message: checked (consent, 24-hour window, template, recipient), queued, sent by a worker."""
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > IDEMPOTENCY_KEY_MAX:
            return refuse(400, "invalid_idempotency_key", f"Idempotency-Key is longer than {IDEMPOTENCY_KEY_MAX}")
        form = serializers.SendMessageSerializer(data=request.data)
        related_fields_scope(form, request.user)
        if not form.is_valid():
            errors = printable(form.errors)
            if "to" in errors:
                return refuse(422, "invalid_recipient", " ".join(map(str, errors["to"])))
            return Response({"code": "invalid_request", "detail": "the request has invalid fields",
                             "errors": errors}, status=400)
        try:
            send_request = _send_request(form.validated_data, request.user, key)
            message, created = message_send(send_request)
        except IdempotencyConflict as refusal:
            return Response(refusal.as_dict(), status=409)
        except SendRefused as refusal:
            return Response(refusal.as_dict(), status=422)
        message = self.get_queryset().get(pk=message.pk)
        return Response(serializers.MessageSerializer(message).data, status=201 if created else 200)


def _send_request(data: dict, user, key: str) -> SendRequest:
    upload = data.get("file")
    media = None
    if data.get("media_url") or upload is not None:
        media = MediaInput(url=data.get("media_url", ""), data=upload.read() if upload is not None else None,
                           filename=data.get("filename") or (upload.name if upload is not None else ""),
                           mime_type=getattr(upload, "content_type", "") or "", caption=data.get("caption", ""))
    return SendRequest(
        provider=data["provider"], contact=data.get("contact"), to_phone=data.get("to", ""),
        message_type=data["type"], text=data.get("text", ""),
        preview_url=data.get("preview_url", False), media=media, interactive=data.get("interactive") or {},
        location=data.get("location") or {}, emoji=data.get("emoji", ""), react_to=data.get("react_to"),
        template=data.get("template"), template_variables=data.get("variables"), reply_to=data.get("reply_to"),
        lane=data.get("lane", ""), idempotency_key=f"{user.pk}:{key}" if key else "",
        fingerprint=_fingerprint(data, media), actor=user,
    )


def _fingerprint(data: dict, media: MediaInput | None) -> str:
    """Every field as sent, an uploaded file by its digest."""
    fields = {key: value for key, value in data.items() if key != "file"}
    if media is not None and media.data is not None:
        fields["file"] = hashlib.sha256(media.data).hexdigest()
    return request_fingerprint(fields)


@extend_schema_view(list=extend_schema(summary="Resolutions (with satisfaction answers)"),
                    retrieve=extend_schema(summary="One resolution"))
class ResolutionViewSet(TeamScoped, ReadableErrors, viewsets.ReadOnlyModelViewSet):
    """Each time a conversation was resolved: first response and resolution times, the survey and its answer."""

    queryset = Resolution.objects.select_related("resolved_by").order_by("-resolved_at", "-id")
    serializer_class = serializers.ResolutionSerializer
    filterset_fields = {"provider": ["exact"], "conversation": ["exact"], "resolved_by": ["exact"],
                        "survey": ["exact"], "rating": ["exact", "gte", "lte"], "resolved_at": ["gte", "lt"]}
    ordering_fields = ["resolved_at", "rating", "resolution_seconds", "first_response_seconds"]


class TeamViewSet(TeamScoped, ReadableErrors, viewsets.ReadOnlyModelViewSet):
    """The teams (their members and numbers): all of them for those who see every team, else the caller's."""

    queryset = Team.objects.prefetch_related("members", Prefetch("providers", Provider.objects.only("pk"))).order_by(
        "name", "pk")
    serializer_class = serializers.TeamSerializer
    search_fields = ["name", "description"]

    def get_queryset(self):
        queryset = super().get_queryset()
        if self._describing() or sees_everything(self.request.user):
            return queryset
        return queryset.filter(members=self.request.user)
