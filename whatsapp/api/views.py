"""Read endpoints. Every list is paginated, filterable and searchable; writes come with their issues."""

from django.db.models import Prefetch
from rest_framework import viewsets

from contacts.models import Contact
from templates_app.models import MessageTemplate
from whatsapp.api import serializers
from whatsapp.models import Conversation, Message, MessageStatusEvent, Provider, Session


class ProviderViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Provider.objects.all()
    serializer_class = serializers.ProviderSerializer
    filterset_fields = ["kind", "is_active", "is_paused"]
    search_fields = ["name", "phone_number", "external_id"]
    ordering_fields = ["name", "created_at"]


class ContactViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Contact.objects.select_related("user_mapping").prefetch_related("identities")
    serializer_class = serializers.ContactSerializer
    filterset_fields = {"consent": ["exact"], "user_mapping__user": ["exact", "isnull"],
                        "last_seen_at": ["gte", "lte"]}
    search_fields = ["profile_name", "identities__value"]
    ordering_fields = ["created_at", "last_seen_at", "profile_name"]


class ConversationViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = (Conversation.objects.select_related("contact")
                .prefetch_related(Prefetch("sessions", queryset=Session.objects.filter(state="open")))
                .order_by("-last_message_at", "-id"))
    serializer_class = serializers.ConversationSerializer
    filterset_fields = {"provider": ["exact"], "contact": ["exact"], "assignee": ["exact", "isnull"],
                        "contact__user_mapping__user": ["exact"], "last_message_at": ["gte", "lte"]}
    search_fields = ["contact__profile_name", "contact__identities__value"]
    ordering_fields = ["last_message_at", "created_at"]


class MessageViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Message.objects.prefetch_related(
        Prefetch("status_events", queryset=MessageStatusEvent.objects.order_by("occurred_at", "id")), "media"
    )
    serializer_class = serializers.MessageSerializer
    filterset_fields = {"provider": ["exact"], "conversation": ["exact"], "direction": ["exact"],
                        "status": ["exact", "in"], "message_type": ["exact"], "created_at": ["gte", "lte"]}
    search_fields = ["text", "provider_message_id"]
    ordering_fields = ["created_at"]


class MessageTemplateViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = MessageTemplate.objects.all()
    serializer_class = serializers.MessageTemplateSerializer
    filterset_fields = ["provider", "status", "language", "category", "name"]
    search_fields = ["name"]
    ordering_fields = ["name", "updated_at", "version"]
