from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from contacts.models import Contact, ContactIdentity
from templates_app.models import MessageTemplate
from whatsapp.models import Conversation, Media, Message, MessageStatusEvent, Provider
from whatsapp.services.providers import provider_webhook_url


class ProviderSerializer(serializers.ModelSerializer):
    webhook_url = serializers.SerializerMethodField()

    class Meta:
        model = Provider
        # Credentials are never serialized.
        fields = ["id", "public_id", "kind", "name", "is_active", "is_paused", "phone_number", "external_id",
                  "business_account_id", "rate_limit_per_second", "verification_status", "webhook_url",
                  "created_at"]

    def get_webhook_url(self, provider: Provider) -> str:
        return provider_webhook_url(provider)


class ContactIdentitySerializer(serializers.ModelSerializer):
    class Meta:
        model = ContactIdentity
        fields = ["kind", "value", "scope"]


class ContactSerializer(serializers.ModelSerializer):
    identities = ContactIdentitySerializer(many=True, read_only=True)
    mapped_user = serializers.SerializerMethodField()

    class Meta:
        model = Contact
        fields = ["id", "profile_name", "consent", "consent_changed_at", "consent_source", "language", "time_zone",
                  "last_seen_at", "identities", "mapped_user", "created_at"]

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_mapped_user(self, contact: Contact) -> int | None:
        mapping = getattr(contact, "user_mapping", None)
        return mapping.user_id if mapping else None


class ConversationSerializer(serializers.ModelSerializer):
    contact_name = serializers.CharField(source="contact.profile_name", read_only=True)
    session_open_until = serializers.SerializerMethodField()

    class Meta:
        model = Conversation
        fields = ["id", "provider", "contact", "contact_name", "assignee", "external_conversation_id",
                  "external_state", "last_message_at", "session_open_until", "ai_summary", "created_at"]

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_session_open_until(self, conversation: Conversation):
        open_sessions = [s for s in conversation.sessions.all() if s.state == "open"]
        return open_sessions[0].expires_at if open_sessions else None


class MessageStatusEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = MessageStatusEvent
        fields = ["status", "occurred_at", "applied", "error_code", "error_title"]


class MediaSerializer(serializers.ModelSerializer):
    class Meta:
        model = Media
        fields = ["id", "mime_type", "filename", "caption", "size_bytes", "sha256", "state", "attempts",
                  "last_error", "fetched_at", "expires_at"]


class MessageSerializer(serializers.ModelSerializer):
    status_history = MessageStatusEventSerializer(source="status_events", many=True, read_only=True)
    media = MediaSerializer(many=True, read_only=True)

    class Meta:
        model = Message
        fields = ["id", "provider", "conversation", "direction", "message_type", "text", "content",
                  "provider_message_id", "reply_to", "status", "queued_at", "sent_at", "delivered_at", "read_at",
                  "played_at", "failed_at", "received_at", "error_code", "error_detail", "attempts", "template",
                  "template_variables", "transcript", "intent", "sentiment", "language", "media", "status_history",
                  "duplicate_count", "created_at"]


class MessageTemplateSerializer(serializers.ModelSerializer):
    class Meta:
        model = MessageTemplate
        fields = ["id", "provider", "name", "language", "category", "parameter_format", "components", "examples",
                  "version", "status", "provider_template_id", "rejection_reason", "quality", "submitted_at",
                  "reviewed_at", "created_at", "updated_at"]
