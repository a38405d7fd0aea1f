"""The messaging API: providers, conversations, messages. Sending is POST /api/v1/messages/."""

import hashlib

from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from core.api.errors import ReadableErrors, refuse
from core.api.parsers import DepthSafeJSONParser, printable
from whatsapp.api import serializers
from whatsapp.api.filters import MessageFilter
from whatsapp.models import Conversation, Message, MessageStatusEvent, Provider, Session
from whatsapp.services.outbound import (
    IdempotencyConflict,
    MediaInput,
    SendRequest,
    message_send,
    request_fingerprint,
)
from whatsapp.services.send_rules import SendRefused


class ProviderViewSet(ReadableErrors, viewsets.ReadOnlyModelViewSet):
    queryset = Provider.objects.all()
    serializer_class = serializers.ProviderSerializer
    filterset_fields = ["kind", "is_active", "is_paused"]
    search_fields = ["name", "phone_number", "external_id"]
    ordering_fields = ["name", "created_at"]


class ConversationViewSet(ReadableErrors, viewsets.ReadOnlyModelViewSet):
    queryset = (Conversation.objects.select_related("contact")
                .prefetch_related(Prefetch("sessions", queryset=Session.objects.filter(state="open")))
                .order_by("-last_message_at", "-id"))
    serializer_class = serializers.ConversationSerializer
    filterset_fields = {"provider": ["exact"], "contact": ["exact"], "assignee": ["exact", "isnull"],
                        "contact__user_mapping__user": ["exact"], "last_message_at": ["gte", "lte"]}
    search_fields = ["contact__profile_name", "contact__identities__value"]
    ordering_fields = ["last_message_at", "created_at"]


IDEMPOTENCY_KEY_MAX = 100


class MessageViewSet(ReadableErrors, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
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
