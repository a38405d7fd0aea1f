"""The contacts API: contacts (consent, verification, the unmapped queue) and contact-to-user mappings."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from contacts.api import serializers
from contacts.api.filters import ContactFilter, ContactUserMappingFilter
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
from core.access import scoped
from core.api.errors import REFUSAL, ReadableErrors, refuse, validated
from core.api.permissions import requires
from core.api.scoping import TeamScoped
from whatsapp.services.send_rules import SendRefused


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
class ContactViewSet(TeamScoped, ReadableErrors, viewsets.ReadOnlyModelViewSet):
    action_scopes = {"verify": "send"}  # sends the contact a code
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
        form = validated(serializers.ConsentChangeSerializer, request.data, user=request.user)
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
        form = validated(serializers.VerificationStartSerializer, request.data, user=request.user)
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
        queue = scoped(unmapped_contacts(), request.user)
        page = self.paginate_queryset(self.filter_queryset(with_queue_columns(queue, user=request.user)))
        queue_page_details(page, user=request.user)
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
class ContactUserMappingViewSet(TeamScoped, ReadableErrors, mixins.CreateModelMixin, mixins.DestroyModelMixin,
                                viewsets.ReadOnlyModelViewSet):
    queryset = ContactUserMapping.objects.select_related("contact", "user").order_by("-created_at", "-id")
    serializer_class = serializers.ContactUserMappingSerializer
    filterset_class = ContactUserMappingFilter
    search_fields = ["contact__profile_name", "user__username", "user__email"]
    ordering_fields = ["created_at", "verified_at"]

    def create(self, request, *args, **kwargs):
        form = validated(serializers.ContactUserMappingCreateSerializer, request.data, user=request.user)
        existing = ContactUserMapping.objects.filter(contact=form["contact"], user=form["user"]).first()
        if existing is not None:
            # Already so: nothing to change or audit (PATCH changes the notify preference).
            return Response(self._shown(existing), status=200)
        try:
            mapping = contact_map_to_user(contact=form["contact"], user=form["user"], actor=request.user,
                                          method=ContactUserMapping.Method.MANUAL,
                                          notify_on_ready=form["notify_on_ready"])
        except MappingConflict as conflict:
            return refuse(409, "mapping_conflict", str(conflict))
        return Response(self._shown(mapping), status=201)

    def partial_update(self, request, *args, **kwargs):
        mapping = self.get_object()
        form = validated(serializers.ContactUserMappingUpdateSerializer, request.data, user=request.user)
        mapping_notify_set(mapping=mapping, notify_on_ready=form["notify_on_ready"], actor=request.user)
        return Response(self._shown(mapping))

    def destroy(self, request, *args, **kwargs):
        mapping_delete(mapping=self.get_object(), actor=request.user)
        return Response(status=204)

    def _shown(self, mapping: ContactUserMapping) -> dict:
        return serializers.ContactUserMappingSerializer(self.get_queryset().get(pk=mapping.pk)).data
