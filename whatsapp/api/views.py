"""The REST API. Every list is paginated, filterable and searchable; sending is POST /api/v1/messages/."""

import hashlib

from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import exception_handler

from contacts.models import ConsentEvent, ConsentSource, Contact, ContactUserMapping
from contacts.services.consent import consent_set
from contacts.services.mapping import (
    MappingConflict,
    contact_map_to_user,
    contacts_ignore,
    mapping_delete,
    mapping_notify_set,
    unmapped_contacts,
)
from contacts.services.queue import queue_page_details, with_queue_columns
from contacts.services.verification import VerificationRefused, verification_start
from templates_app.models import MessageTemplate
from whatsapp.api import serializers
from whatsapp.api.filters import ContactFilter, ContactUserMappingFilter
from whatsapp.models import Conversation, Message, MessageStatusEvent, Provider, Session
from whatsapp.services.outbound import (
    IdempotencyConflict,
    MediaInput,
    SendRequest,
    message_send,
    request_fingerprint,
)
from whatsapp.services.send_rules import SendRefused

REFUSAL = serializers.RefusalSerializer


def api_exception_handler(exc, context):
    """DRF's answers, each with a `code` beside its `detail`; invalid fields listed under `errors`, with
    a readable summary as the detail."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.ValidationError):
        errors = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        response.data = {"code": "invalid_request", "detail": _errors_summary(errors), "errors": errors}
    elif isinstance(response.data, dict) and "code" not in response.data:
        codes = exc.get_codes()
        response.data = {"code": codes if isinstance(codes, str) else exc.default_code, **response.data}
    return response


def _errors_summary(errors) -> str:
    if isinstance(errors, dict):
        parts = [f"{field}: {_errors_summary(reasons)}" for field, reasons in errors.items()]
        return "; ".join(parts)
    if isinstance(errors, list):
        return " ".join(_errors_summary(reason) for reason in errors)
    return str(errors)


# Every refusal answers {"code", "detail", ...} (see api_exception_handler). A comment, not a docstring:
# drf-spectacular would show a docstring as the description of every operation.
class ReadableErrors:
    def get_exception_handler(self):
        return api_exception_handler


def requires(*perms: str) -> type[BasePermission]:
    """A permission class for an action that changes something other than what its HTTP verb implies
    (e.g. a POST that changes a contact, where DjangoModelPermissions would ask for `add`)."""

    class RequiresPerms(BasePermission):
        def has_permission(self, request, view):
            return bool(request.user and request.user.is_authenticated and request.user.has_perms(perms))

    RequiresPerms.__name__ = f"Requires({', '.join(perms)})"
    return RequiresPerms


def _valid(serializer_class, data) -> dict:
    """The validated fields, or a 400 listing what is wrong (raised, answered by api_exception_handler)."""
    form = serializer_class(data=data)
    form.is_valid(raise_exception=True)
    return form.validated_data


class ProviderViewSet(ReadableErrors, viewsets.ReadOnlyModelViewSet):
    queryset = Provider.objects.all()
    serializer_class = serializers.ProviderSerializer
    filterset_fields = ["kind", "is_active", "is_paused"]
    search_fields = ["name", "phone_number", "external_id"]
    ordering_fields = ["name", "created_at"]


def _contacts():
    return Contact.objects.select_related("user_mapping__user").prefetch_related("identities")


@extend_schema_view(
    list=extend_schema(summary="Contacts, filtered and searched",
                       description="Search (`search`) looks in profile names and identity values; `phone` matches a "
                                   "phone number in any spelling.",
                       responses={200: serializers.ContactSerializer(many=True), 400: REFUSAL}),
    retrieve=extend_schema(summary="One contact: identities, mapping, consent",
                           responses={200: serializers.ContactSerializer, 404: REFUSAL}),
)
class ContactViewSet(ReadableErrors, viewsets.ReadOnlyModelViewSet):
    queryset = _contacts()
    serializer_class = serializers.ContactSerializer
    filterset_class = ContactFilter
    search_fields = ["profile_name", "identities__value"]
    ordering_fields = ["created_at", "last_seen_at", "profile_name"]

    @extend_schema(
        summary="Change a contact's consent",
        description="Recorded in the consent history with source `api` (the note as its detail) and audited; a "
                    "contact already in that state is left as it is (nothing recorded). Needs "
                    "contacts.change_contact.",
        request=serializers.ConsentChangeSerializer,
        responses={200: serializers.ContactSerializer, 400: REFUSAL, 403: REFUSAL, 404: REFUSAL},
    )
    @action(detail=True, methods=["post"], permission_classes=[requires("contacts.change_contact")])
    def consent(self, request, pk=None):
        contact = self.get_object()
        form = _valid(serializers.ConsentChangeSerializer, request.data)
        consent_set(contact=contact, state=form["state"], source=ConsentSource.API, detail=form["note"],
                    actor=request.user)
        return Response(_contact_shown(contact))

    @extend_schema(summary="A contact's consent history, newest first", filters=False,
                   responses={200: serializers.ConsentEventSerializer(many=True), 404: REFUSAL})
    @action(detail=True, methods=["get"], url_path="consent-history", filter_backends=[])
    def consent_history(self, request, pk=None):
        contact = self.get_object()
        events = ConsentEvent.objects.filter(contact=contact).select_related("actor").order_by("-created_at", "-id")
        page = self.paginate_queryset(events)
        return self.get_paginated_response(serializers.ConsentEventSerializer(page, many=True).data)

    @extend_schema(
        summary="Send the contact a one-time code to verify it is a user",
        description="The code goes to the contact on WhatsApp (on its latest conversation with a provider that has "
                    "contact verification enabled, inside the 24-hour window); the contact's reply with the code "
                    "marks the mapping verified. The code itself is never returned. 409: verification cannot start "
                    "(no user to verify as, mapped to another user, verification disabled on the provider); 422: "
                    "the code cannot be sent (opted out, outside the 24-hour window...). Needs "
                    "contacts.change_contactusermapping and whatsapp.add_message.",
        request=serializers.VerificationStartSerializer,
        responses={202: serializers.VerificationStartedSerializer, 400: REFUSAL, 403: REFUSAL, 404: REFUSAL,
                   409: REFUSAL, 422: REFUSAL},
    )
    @action(detail=True, methods=["post"],
            permission_classes=[requires("contacts.change_contactusermapping", "whatsapp.add_message")])
    def verify(self, request, pk=None):
        contact = self.get_object()
        form = _valid(serializers.VerificationStartSerializer, request.data)
        try:
            challenge = verification_start(contact=contact, user=form.get("user"), actor=request.user)
        except VerificationRefused as refusal:
            return Response(refusal.as_dict(), status=409)
        except SendRefused as refusal:
            return Response(refusal.as_dict(), status=422)
        return Response({"challenge": challenge.pk, "user": challenge.user_id, "expires_at": challenge.expires_at,
                         "message": challenge.message_id}, status=202)

    @extend_schema(summary="Leave the contact out of the unmapped queue",
                   description="Audited. Needs contacts.change_contact.", request=None,
                   responses={200: serializers.ContactSerializer, 403: REFUSAL, 404: REFUSAL})
    @action(detail=True, methods=["post"], permission_classes=[requires("contacts.change_contact")])
    def ignore(self, request, pk=None):
        contact = self.get_object()
        contacts_ignore(contacts=[contact], actor=request.user, ignored=True)
        return Response(_contact_shown(contact))

    @extend_schema(summary="Put an ignored contact back in the unmapped queue",
                   description="Audited. Needs contacts.change_contact.", request=None,
                   responses={200: serializers.ContactSerializer, 403: REFUSAL, 404: REFUSAL})
    @action(detail=True, methods=["post"], permission_classes=[requires("contacts.change_contact")])
    def unignore(self, request, pk=None):
        contact = self.get_object()
        contacts_ignore(contacts=[contact], actor=request.user, ignored=False)
        return Response(_contact_shown(contact))

    @extend_schema(
        summary="The unmapped queue: contacts mapped to no user and not ignored, newest first",
        description="Each with its message count, last message, providers and suggested users (same phone, same "
                    "email, similar name). The contact filters and search apply within the queue.",
        responses={200: serializers.UnmappedContactSerializer(many=True), 400: REFUSAL},
    )
    @action(detail=False, methods=["get"])
    def unmapped(self, request):
        page = self.paginate_queryset(self.filter_queryset(with_queue_columns(unmapped_contacts())))
        queue_page_details(page)
        return self.get_paginated_response(serializers.UnmappedContactSerializer(page, many=True).data)


def _contact_shown(contact: Contact) -> dict:
    """The contact as it is now, after a change."""
    return serializers.ContactSerializer(_contacts().get(pk=contact.pk)).data


@extend_schema_view(
    list=extend_schema(summary="Contact-to-user mappings",
                       responses={200: serializers.ContactUserMappingSerializer(many=True), 400: REFUSAL}),
    retrieve=extend_schema(summary="One mapping", responses={200: serializers.ContactUserMappingSerializer,
                                                             404: REFUSAL}),
    create=extend_schema(
        summary="Map a contact to a user (manual)",
        description="Audited. 409 when the contact is already mapped to another user (delete that mapping first); "
                    "mapping it again to the user it is mapped to changes nothing and answers 200.",
        request=serializers.ContactUserMappingCreateSerializer,
        responses={201: serializers.ContactUserMappingSerializer, 200: serializers.ContactUserMappingSerializer,
                   400: REFUSAL, 403: REFUSAL, 409: REFUSAL}),
    partial_update=extend_schema(
        summary="Change the notify-on-ready preference", description="Audited. Only notify_on_ready can change.",
        request=serializers.ContactUserMappingUpdateSerializer,
        responses={200: serializers.ContactUserMappingSerializer, 400: REFUSAL, 403: REFUSAL, 404: REFUSAL}),
    destroy=extend_schema(summary="Remove a mapping: the contact goes back to the unmapped queue",
                          description="Audited.", responses={204: None, 403: REFUSAL, 404: REFUSAL}),
)
class ContactUserMappingViewSet(ReadableErrors, mixins.CreateModelMixin, mixins.DestroyModelMixin,
                                viewsets.ReadOnlyModelViewSet):
    queryset = ContactUserMapping.objects.select_related("contact", "user").order_by("-created_at", "-id")
    serializer_class = serializers.ContactUserMappingSerializer
    filterset_class = ContactUserMappingFilter
    search_fields = ["contact__profile_name", "user__username", "user__email"]
    ordering_fields = ["created_at", "verified_at"]

    def create(self, request, *args, **kwargs):
        form = _valid(serializers.ContactUserMappingCreateSerializer, request.data)
        existing = ContactUserMapping.objects.filter(contact=form["contact"], user=form["user"]).first()
        if existing is not None:
            # Already so: nothing to change or audit (PATCH changes the notify preference).
            return Response(self._shown(existing), status=200)
        try:
            mapping = contact_map_to_user(contact=form["contact"], user=form["user"], actor=request.user,
                                          method=ContactUserMapping.Method.MANUAL,
                                          notify_on_ready=form["notify_on_ready"])
        except MappingConflict as conflict:
            return _refusal(409, "mapping_conflict", str(conflict))
        return Response(self._shown(mapping), status=201)

    def partial_update(self, request, *args, **kwargs):
        mapping = self.get_object()
        form = _valid(serializers.ContactUserMappingUpdateSerializer, request.data)
        mapping_notify_set(mapping=mapping, notify_on_ready=form["notify_on_ready"], actor=request.user)
        return Response(self._shown(mapping))

    def destroy(self, request, *args, **kwargs):
        mapping_delete(mapping=self.get_object(), actor=request.user)
        return Response(status=204)

    def _shown(self, mapping: ContactUserMapping) -> dict:
        return serializers.ContactUserMappingSerializer(self.get_queryset().get(pk=mapping.pk)).data


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
    queryset = Message.objects.prefetch_related(
        Prefetch("status_events", queryset=MessageStatusEvent.objects.order_by("occurred_at", "id")), "media",
        "send_attempts",
    )
    serializer_class = serializers.MessageSerializer
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    filterset_fields = {"provider": ["exact"], "conversation": ["exact"], "direction": ["exact"],
                        "status": ["exact", "in"], "message_type": ["exact"], "lane": ["exact"],
                        "created_at": ["gte", "lte"]}
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
            return _refusal(400, "invalid_idempotency_key", f"Idempotency-Key is longer than {IDEMPOTENCY_KEY_MAX}")
        form = serializers.SendMessageSerializer(data=request.data)
        if not form.is_valid():
            if "to" in form.errors:
                return _refusal(422, "invalid_recipient", " ".join(map(str, form.errors["to"])))
            return Response({"code": "invalid_request", "detail": "the request has invalid fields",
                             "errors": form.errors}, status=400)
        try:
            send_request = _send_request(form.validated_data, request.user, key)
            message, created = message_send(send_request)
        except IdempotencyConflict as refusal:
            return Response(refusal.as_dict(), status=409)
        except SendRefused as refusal:
            return Response(refusal.as_dict(), status=422)
        message = self.get_queryset().get(pk=message.pk)
        return Response(serializers.MessageSerializer(message).data, status=201 if created else 200)


def _refusal(status: int, code: str, detail: str) -> Response:
    return Response({"code": code, "detail": detail}, status=status)


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


class MessageTemplateViewSet(ReadableErrors, viewsets.ReadOnlyModelViewSet):
    queryset = MessageTemplate.objects.all()
    serializer_class = serializers.MessageTemplateSerializer
    filterset_fields = ["provider", "status", "language", "category", "name"]
    search_fields = ["name"]
    ordering_fields = ["name", "updated_at", "version"]
