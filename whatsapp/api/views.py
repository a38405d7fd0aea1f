"""The REST API. Every list is paginated, filterable and searchable; sending is POST /api/v1/messages/."""

import hashlib

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db.models import Prefetch
from django.http import Http404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
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
from templates_app.preview import template_preview
from templates_app.selectors import versions_of, with_usage
from templates_app.services.sync import templates_sync, templates_sync_all
from templates_app.services.versions import template_diff
from templates_app.services.workflow import (
    AUTHORED_FIELDS,
    REVIEW_PERMISSION,
    TemplateWorkflowError,
    template_approve,
    template_create,
    template_delete,
    template_edit,
    template_reject,
    template_submit_next,
    template_withdraw,
)
from templates_app.validation import TemplateInvalid, template_errors
from whatsapp.api import serializers
from whatsapp.api.filters import ContactFilter, ContactUserMappingFilter, MessageFilter, MessageTemplateFilter
from whatsapp.api.parsers import DepthSafeJSONParser, printable
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


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "request_too_large"


def _request_refusal(exc: Exception) -> Exception:
    """Django's refusals of a request body it will not read (raised when DRF first reads request.data), as API
    answers: otherwise they escape DRF and Django answers its HTML 400 page, logged as an error."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return RequestTooLarge(f"The request body is larger than the {limit} bytes the API reads; a file to send is "
                               f"uploaded as multipart (up to {settings.OUTBOUND_MEDIA_MAX_BYTES} bytes).")
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return exceptions.ParseError(str(exc))
    return exc


def api_exception_handler(exc, context):
    """DRF's answers, each with a `code` beside its `detail`; invalid fields listed under `errors`, with
    a readable summary as the detail."""
    exc = _request_refusal(exc)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    # Error messages may quote the input: a lone surrogate in it would make the JSON answer unencodable.
    response.data = printable(response.data)
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
            return _refusal(400, "invalid_idempotency_key", f"Idempotency-Key is longer than {IDEMPOTENCY_KEY_MAX}")
        form = serializers.SendMessageSerializer(data=request.data)
        if not form.is_valid():
            errors = printable(form.errors)
            if "to" in errors:
                return _refusal(422, "invalid_recipient", " ".join(map(str, errors["to"])))
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


# --- templates ------------------------------------------------------------------------------------

TEMPLATE_VIEW = "templates_app.view_messagetemplate"
TEMPLATE_CHANGE = "templates_app.change_messagetemplate"
# Refusals about who is asking, not about the template's state.
TEMPLATE_FORBIDDEN_CODES = ("not_a_reviewer", "own_template")
TEMPLATE_STATUS_ACTIONS = "status changes only through the actions submit, withdraw, approve and reject"


class Conflict(exceptions.APIException):
    status_code = 409
    default_detail = "Not possible in the resource's current state."
    default_code = "conflict"


def _template_refusal(exc: Exception) -> Exception:
    """The template services' refusals as API answers: broken rules 400, not allowed now 409, not this user 403."""
    if isinstance(exc, TemplateInvalid):
        return exceptions.ValidationError(printable(exc.errors))
    if isinstance(exc, TemplateWorkflowError):
        if exc.code in TEMPLATE_FORBIDDEN_CODES:
            return exceptions.PermissionDenied(str(exc), code=exc.code)
        if exc.code == "reason_required":
            return exceptions.ValidationError({"reason": [str(exc)]})
        return Conflict(str(exc), code=exc.code)
    return exc


def _not_writable(data: dict, allowed: set[str]) -> dict[str, list[str]]:
    errors = {}
    for key in data:
        if key in allowed:
            continue
        if key == "status":
            errors[key] = [f"read-only: {TEMPLATE_STATUS_ACTIONS}"]
        elif key == "provider":
            errors[key] = ["a template stays with its provider; create a template for another provider"]
        elif key in serializers.MessageTemplateSerializer.Meta.fields:
            errors[key] = ["read-only"]
        else:
            errors[key] = ["unknown field"]
    return errors


def _template_form(data, *, template: MessageTemplate | None = None, partial: bool = False) -> dict:
    """The authored fields of a create (no template) or an edit, or a 400 that lists every problem at once:
    the request's own (types, sizes, read-only fields) and every WhatsApp rule the template breaks."""
    form_class = serializers.MessageTemplateCreateSerializer if template is None \
        else serializers.MessageTemplateUpdateSerializer
    form = form_class(data=data, partial=partial)
    valid = form.is_valid()
    if not isinstance(data, dict):
        raise exceptions.ValidationError(printable(form.errors))
    refused = _not_writable(data, set(form.fields))
    if valid and not refused:
        return dict(form.validated_data)
    values = {name: data.get(name, getattr(template, name) if template is not None
                             else MessageTemplate._meta.get_field(name).get_default()) for name in AUTHORED_FIELDS}
    errors = template_errors(**values)
    for field, messages in [*form.errors.items(), *refused.items()]:
        errors.setdefault(field, messages)  # the rules' message on a field says more than the form's
    raise exceptions.ValidationError(printable(errors))


def _templates():
    return (with_usage(MessageTemplate.objects.select_related("created_by", "submitted_by", "reviewed_by"))
            .order_by("name", "language", "-version", "pk"))


TEMPLATE_REFUSALS = {400: REFUSAL, 403: REFUSAL, 404: REFUSAL, 409: REFUSAL}


@extend_schema_view(
    list=extend_schema(
        summary="Templates, every version",
        description="Filter by provider, status (or status__in=a,b), language, category, name (exact or "
                    "name__icontains) and managed_elsewhere; `search` looks in names; `ordering` by name, "
                    "language, version, status, created_at, updated_at or sends_count. Each with its usage "
                    "figures and a preview filled with its examples.",
        responses={200: serializers.MessageTemplateSerializer(many=True), 400: REFUSAL}),
    retrieve=extend_schema(summary="One template version",
                           responses={200: serializers.MessageTemplateSerializer, 404: REFUSAL}),
    create=extend_schema(
        summary="Write a new template (version 1, a draft)",
        description="Checked against WhatsApp's rules: a 400 lists every broken rule under `errors`, keyed by "
                    "field (name, language, category, parameter_format, header, body, footer, buttons, examples, "
                    "components). 409 `templates_managed_elsewhere` for a provider whose templates are written in "
                    "its own tool (Chatwoot) or that has none. Audited. Needs templates_app.add_messagetemplate.",
        request=serializers.MessageTemplateCreateSerializer,
        responses={201: serializers.MessageTemplateSerializer, 400: REFUSAL, 403: REFUSAL, 409: REFUSAL}),
    update=extend_schema(
        summary="Edit a template",
        description="A draft or an internally rejected template is changed in place (200; it goes back to "
                    "draft). A template the provider has decided on (approved, rejected, paused, disabled) gets "
                    "its next version, as a draft (201 with the new version; `Location` names it); the approved "
                    "version stays sendable until its successor is approved. 409 while it is in review or at the "
                    "provider (`wrong_status`), when a newer version exists (`newer_version_exists`) or when it is "
                    "managed elsewhere. Fields left out keep their value. Needs "
                    "templates_app.change_messagetemplate.",
        request=serializers.MessageTemplateUpdateSerializer,
        responses={200: serializers.MessageTemplateSerializer, 201: serializers.MessageTemplateSerializer,
                   **TEMPLATE_REFUSALS}),
    partial_update=extend_schema(
        summary="Edit some of a template's fields", description="As PUT, for the fields given.",
        request=serializers.MessageTemplateUpdateSerializer,
        responses={200: serializers.MessageTemplateSerializer, 201: serializers.MessageTemplateSerializer,
                   **TEMPLATE_REFUSALS}),
    destroy=extend_schema(
        summary="Delete a template the provider never saw",
        description="Only a draft or an internally rejected template that was never at the provider nor in a "
                    "message (409 `wrong_status` / `in_use` otherwise: it is history). Audited. Needs "
                    "templates_app.delete_messagetemplate.",
        responses={204: None, 403: REFUSAL, 404: REFUSAL, 409: REFUSAL}),
)
class MessageTemplateViewSet(ReadableErrors, viewsets.ModelViewSet):
    queryset = _templates()
    serializer_class = serializers.MessageTemplateSerializer
    filterset_class = MessageTemplateFilter
    search_fields = ["name"]
    ordering_fields = ["name", "language", "version", "status", "created_at", "updated_at", "sends_count"]

    def handle_exception(self, exc):
        return super().handle_exception(_template_refusal(exc))

    def create(self, request, *args, **kwargs):
        form = _template_form(request.data)
        template = template_create(provider=form.pop("provider"), actor=request.user, **form)
        return self._shown(template, status=201)

    def update(self, request, *args, partial: bool = False, **kwargs):
        template = self.get_object()
        form = _template_form(request.data, template=template, partial=partial)
        edited = template_edit(template, actor=request.user, changes=form)
        return self._shown(edited, status=200 if edited.pk == template.pk else 201)

    def destroy(self, request, *args, **kwargs):
        template_delete(self.get_object(), actor=request.user)
        return Response(status=204)

    @extend_schema(
        summary="Submit: a draft goes to internal review; an internally approved one to the provider again",
        description="draft or internally rejected -> in review (it must pass the rules: 400 otherwise). "
                    "Approved internally (its submission to the provider failed, see `submission_error`) -> "
                    "submitted to the provider again now. 409 `wrong_status` in any other status. Audited. Needs "
                    "templates_app.change_messagetemplate.",
        request=None, responses={200: serializers.MessageTemplateSerializer, **TEMPLATE_REFUSALS})
    @action(detail=True, methods=["post"], permission_classes=[requires(TEMPLATE_CHANGE)])
    def submit(self, request, pk=None):
        return self._shown(template_submit_next(self.get_object(), actor=request.user))

    @extend_schema(summary="Withdraw a template from review (back to draft)",
                   description="409 `wrong_status` unless it is in review. Audited. Needs "
                               "templates_app.change_messagetemplate.",
                   request=None, responses={200: serializers.MessageTemplateSerializer, 403: REFUSAL, 404: REFUSAL,
                                            409: REFUSAL})
    @action(detail=True, methods=["post"], permission_classes=[requires(TEMPLATE_CHANGE)])
    def withdraw(self, request, pk=None):
        return self._shown(template_withdraw(self.get_object(), actor=request.user))

    @extend_schema(
        summary="Approve a template in review; it is then submitted to its provider",
        description="in review -> approved internally; the submission to the provider runs right after (watch "
                    "`status`: submitted, pending, approved...). 403 `own_template` for its author or submitter, "
                    "403 without templates_app.review_messagetemplate, 409 `wrong_status` unless in review. "
                    "Audited.",
        request=None, responses={200: serializers.MessageTemplateSerializer, 403: REFUSAL, 404: REFUSAL, 409: REFUSAL})
    @action(detail=True, methods=["post"], permission_classes=[requires(REVIEW_PERMISSION)])
    def approve(self, request, pk=None):
        seen = _valid(serializers.TemplateReviewSerializer, request.data).get("review_version")
        return self._shown(template_approve(self.get_object(), reviewer=request.user, seen=seen))

    @extend_schema(
        summary="Reject a template in review, with the reason its author will read",
        description="in review -> rejected internally; the reason is kept as `review_note`. 400 without a reason, "
                    "403 `own_template` / without templates_app.review_messagetemplate, 409 `wrong_status`. "
                    "Audited.",
        request=serializers.TemplateRejectSerializer,
        responses={200: serializers.MessageTemplateSerializer, **TEMPLATE_REFUSALS})
    @action(detail=True, methods=["post"], permission_classes=[requires(REVIEW_PERMISSION)])
    def reject(self, request, pk=None):
        template = self.get_object()
        form = _valid(serializers.TemplateRejectSerializer, request.data)
        return self._shown(template_reject(template, reviewer=request.user, reason=form["reason"],
                                           seen=form.get("review_version")))

    @extend_schema(
        summary="Sync templates with the provider now",
        description="Reads every template of the provider's business account (or, without `provider`, of every "
                    "active provider's): statuses updated, templates created on the provider's side imported, "
                    "missing ones and name conflicts reported. 409 `sync_running` when another sync of that "
                    "account is running (`templates_unsupported` for a provider without templates); 502 "
                    "`provider_error` with the provider's answer when listing failed. Without `provider` the "
                    "answer is always 200, each report saying what happened. Audited. Needs "
                    "templates_app.change_messagetemplate.",
        request=serializers.TemplateSyncRequestSerializer,
        responses={200: serializers.TemplateSyncSerializer, 400: REFUSAL, 403: REFUSAL,
                   409: serializers.TemplateSyncRefusalSerializer, 502: serializers.TemplateSyncRefusalSerializer})
    @action(detail=False, methods=["post"], permission_classes=[requires(TEMPLATE_CHANGE)], filter_backends=[])
    def sync(self, request):
        form = _valid(serializers.TemplateSyncRequestSerializer, request.data)
        provider = form.get("provider")
        if provider is None:
            return Response({"reports": [report.as_dict() for report in templates_sync_all(actor=request.user)]})
        report = templates_sync(provider, actor=request.user)
        body = {"reports": [report.as_dict()]}
        if report.skipped:
            code = "templates_unsupported" if report.skip_code == "unsupported" else "sync_running"
            return Response({"code": code, "detail": report.skipped, **body}, status=409)
        if report.error:
            return Response({"code": "provider_error", "detail": report.error, **body}, status=502)
        return Response(body)

    @extend_schema(summary="Every version of this template, newest first", filters=False,
                   responses={200: serializers.MessageTemplateSerializer(many=True), 404: REFUSAL})
    @action(detail=True, methods=["get"], filter_backends=[])
    def versions(self, request, pk=None):
        template = self.get_object()
        versions = versions_of(template).values_list("pk", flat=True)
        page = self.paginate_queryset(_templates().filter(pk__in=versions).order_by("-version", "pk"))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        summary="What changed between this version and another, section by section",
        description="`against`: the other version's number (default: the previous version). Sections: category, "
                    "parameter format, header, body, footer, buttons, examples. 404 when that version does not "
                    "exist.",
        filters=False, parameters=[serializers.TemplateDiffQuerySerializer],
        responses={200: serializers.TemplateDiffSerializer, 400: REFUSAL, 404: REFUSAL})
    @action(detail=True, methods=["get"], filter_backends=[])
    def diff(self, request, pk=None):
        template = self.get_object()
        against = _valid(serializers.TemplateDiffQuerySerializer, request.query_params).get("against")
        others = versions_of(template)
        other = (others.filter(version=against) if against is not None
                 else others.filter(version__lt=template.version)).first()
        if other is None:
            raise exceptions.NotFound(f"{template} has no version {against}" if against is not None
                                      else f"{template} has no earlier version")
        older, newer = sorted([template, other], key=lambda version: version.version)
        sections = [{"section": section.section, "changed": section.changed,
                     "lines": [{"marker": marker, "text": text} for marker, text in section.lines]}
                    for section in template_diff(older, newer)]
        brief = serializers.TemplateVersionBriefSerializer
        return Response({"older": brief(older).data, "newer": brief(newer).data, "sections": sections})

    @extend_schema(
        summary="Preview and check a template without saving it",
        description="The components filled with `values` (default: the examples) as the phone shows them, and "
                    "every WhatsApp rule the template breaks (as a create would answer them). Needs "
                    "templates_app.view_messagetemplate.",
        request=serializers.TemplatePreviewRequestSerializer,
        responses={200: serializers.TemplatePreviewResponseSerializer, 400: REFUSAL, 403: REFUSAL})
    @action(detail=False, methods=["post"], permission_classes=[requires(TEMPLATE_VIEW)], filter_backends=[])
    def preview(self, request):
        form = _valid(serializers.TemplatePreviewRequestSerializer, request.data)
        examples = form.get("examples", {})
        optional = ("name", "language", "category", "parameter_format")
        errors = template_errors(**{name: form.get(name, "") for name in optional}, components=form["components"],
                                 examples=examples)
        # The rules about a field are checked only when it was given (a preview may come before the name).
        errors = {field: messages for field, messages in errors.items() if field not in optional or field in form}
        preview = template_preview(form["components"], form.get("values", examples))
        return Response({"preview": preview.as_dict(), "valid": not errors, "errors": errors})

    def _shown(self, template: MessageTemplate, *, status: int = 200) -> Response:
        """The template as it is now, after a change (a new version is named by `Location`)."""
        body = self.get_serializer(_templates().get(pk=template.pk)).data
        headers = {"Location": reverse("messagetemplate-detail", args=[template.pk])} if status == 201 else None
        return Response(body, status=status, headers=headers)
