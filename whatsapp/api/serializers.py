import json

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from contacts.models import Contact
from contacts.phones import phone_parse_e164
from templates_app.models import MessageTemplate
from templates_app.selectors import sendable_template
from whatsapp.models import (
    Conversation,
    Label,
    LabelColour,
    Media,
    Message,
    MessageStatusEvent,
    Provider,
    Resolution,
    SavedReply,
    SendAttempt,
    Team,
)
from whatsapp.services.outbound import message_status_history
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


class ProviderBriefSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(read_only=True, help_text="meta, twilio, chatwoot or sandbox")

    class Meta:
        model = Provider
        fields = ["id", "kind", "name"]


class LastMessageSerializer(serializers.Serializer):
    text = serializers.CharField(help_text="Its first 160 characters (empty for a message without text).")
    type = serializers.CharField(help_text="text, image, audio, template...")
    direction = serializers.CharField(help_text="inbound or outbound")


class ConversationSerializer(serializers.ModelSerializer):
    contact_name = serializers.CharField(source="contact.profile_name", read_only=True)
    session_open_until = serializers.SerializerMethodField()
    assignee_username = serializers.SerializerMethodField()
    labels = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True,
                                          help_text="The names of its labels.")
    needs_reply = serializers.SerializerMethodField(
        help_text="The customer's latest messages wait for a reply from a person (since awaiting_reply_since).")
    last_message = serializers.SerializerMethodField(
        help_text="The latest message (reactions left out), or null before the first one.")

    class Meta:
        model = Conversation
        fields = ["id", "provider", "contact", "contact_name", "assignee", "assignee_username", "labels",
                  "status", "status_changed_at", "status_changed_by", "status_source", "snoozed_until", "opened_at",
                  "needs_reply", "awaiting_reply_since", "last_reply_at", "last_message", "external_conversation_id",
                  "external_state", "last_message_at", "session_open_until", "ai_summary", "created_at"]

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_session_open_until(self, conversation: Conversation):
        open_sessions = [s for s in conversation.sessions.all() if s.state == "open"]
        return open_sessions[0].expires_at if open_sessions else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_assignee_username(self, conversation: Conversation) -> str | None:
        return conversation.assignee.get_username() if conversation.assignee_id else None

    def get_needs_reply(self, conversation: Conversation) -> bool:
        return conversation.awaiting_reply_since is not None

    @extend_schema_field(LastMessageSerializer(allow_null=True))
    def get_last_message(self, conversation: Conversation) -> dict | None:
        preview = getattr(conversation, "last_preview", None)
        if not preview:
            return None
        return {"text": preview.get("text") or "", "type": preview.get("type") or "",
                "direction": preview.get("direction") or ""}


def _storable(value: str) -> str:
    """PostgreSQL stores text without lone surrogates (which JSON's escapes allow)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise serializers.ValidationError("contains an unpaired surrogate (\\ud800-\\udfff), which is not text") \
            from None
    return value


class TextField(serializers.CharField):
    """Text that can be stored (no NUL character: DRF refuses it; no lone surrogate)."""

    def to_internal_value(self, data):
        return _storable(super().to_internal_value(data))


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string", "enum": ["me"]}], "nullable": True})
class AssigneeField(serializers.Field):
    """A user id, "me" (the caller), or null (nobody)."""

    default_error_messages = {"invalid": 'give a user id, "me" or null'}

    def to_internal_value(self, data):
        if isinstance(data, str) and data.strip().lower() == "me":
            return "me"
        if isinstance(data, str) and data.strip().isascii() and data.strip().isdigit():
            data = int(data.strip())
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


class AssignSerializer(serializers.Serializer):
    assignee = AssigneeField(allow_null=True, help_text='The user to assign it to (an id, or "me": the caller), '
                                                        "an active staff member; null: unassign.")


LABELS_PER_REQUEST = 100


class LabelNamesSerializer(serializers.Serializer):
    labels = serializers.ListField(child=TextField(max_length=200), allow_empty=True, max_length=LABELS_PER_REQUEST,
                                   help_text="Label names, in any case.")


class LabelSerializer(serializers.ModelSerializer):
    name = TextField(max_length=40, help_text="Unique, whatever the case.")
    colour = serializers.CharField(max_length=40, required=False,
                                   help_text="One of the palette's colours, as its value (" +
                                             ", ".join(LabelColour.values) + ") or its name (" +
                                             ", ".join(label.lower() for label in LabelColour.labels) +
                                             "); grey by default.")
    description = TextField(max_length=200, required=False, allow_blank=True)
    conversation_count = serializers.SerializerMethodField(help_text="How many conversations carry it.")

    class Meta:
        model = Label
        fields = ["id", "name", "colour", "description", "conversation_count", "created_at"]

    def get_conversation_count(self, label: Label) -> int:
        counted = getattr(label, "conversation_count", None)  # annotated on the lists
        return counted if counted is not None else label.conversations.count()

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("a label needs a name")
        others = Label.objects.filter(name__iexact=value)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise serializers.ValidationError(f"there is already a label named {others.first().name!r}")
        return value

    def validate_colour(self, value: str) -> str:
        wanted = value.strip().lower()
        for colour in LabelColour:
            if wanted in (colour.value, colour.label.lower()):
                return colour.value
        raise serializers.ValidationError(
            f"{value!r} is not one of the colours: " +
            ", ".join(f"{colour.value} ({colour.label.lower()})" for colour in LabelColour))


class SavedReplySerializer(serializers.ModelSerializer):
    title = TextField(max_length=80, help_text="What operators pick it by; unique.")
    text = TextField(max_length=4096, trim_whitespace=False)
    provider = serializers.PrimaryKeyRelatedField(
        queryset=Provider.objects.all(), allow_null=True, required=False,
        help_text="Offered on this number's conversations only (an id); null: on every number.")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True,
                                              help_text="Who made it (a username).")

    class Meta:
        model = SavedReply
        fields = ["id", "title", "text", "provider", "created_by", "updated_at"]

    def validate_title(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("a saved reply needs a title")
        others = SavedReply.objects.filter(title=value)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise serializers.ValidationError("there is already a saved reply with this title")
        return value

    def validate_text(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("a saved reply needs a text")
        return value


class MessageStatusEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = MessageStatusEvent
        fields = ["status", "occurred_at", "applied", "error_code", "error_title"]


class MediaSerializer(serializers.ModelSerializer):
    class Meta:
        model = Media
        fields = ["id", "mime_type", "filename", "caption", "size_bytes", "sha256", "state", "attempts",
                  "last_error", "fetched_at", "expires_at"]


class SendAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = SendAttempt
        fields = ["number", "started_at", "finished_at", "outcome", "error_code", "error_title", "error_detail",
                  "http_status", "retry_at"]


class MessageSerializer(serializers.ModelSerializer):
    status_history = MessageStatusEventSerializer(source="status_events", many=True, read_only=True)
    send_attempts = SendAttemptSerializer(many=True, read_only=True)
    history = serializers.SerializerMethodField(help_text="Queued, each send attempt and each provider report, "
                                                          "oldest first.")
    media = MediaSerializer(many=True, read_only=True)
    # As conversations and mappings show it: the contact's id and profile name.
    contact = serializers.IntegerField(source="conversation.contact_id", read_only=True,
                                       help_text="The contact the message was exchanged with (an id).")
    contact_name = serializers.CharField(source="conversation.contact.profile_name", read_only=True)

    class Meta:
        model = Message
        fields = ["id", "provider", "conversation", "contact", "contact_name", "direction", "message_type", "text",
                  "content", "provider_message_id", "reply_to", "status", "lane", "queued_at", "sent_at",
                  "delivered_at", "read_at", "played_at", "failed_at", "received_at", "error_code", "error_title",
                  "error_detail", "attempts", "next_attempt_at", "hold_reason", "dead_lettered_at", "template",
                  "template_variables", "transcript", "intent", "sentiment", "language", "media", "status_history",
                  "send_attempts", "history", "duplicate_count", "created_at"]

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_history(self, message: Message) -> list[dict]:
        return [{key: value.isoformat() if hasattr(value, "isoformat") else value for key, value in item.items()}
                for item in message_status_history(message)]


class JSONObjectField(serializers.JSONField):
    """A JSON object, given as JSON or (in a multipart upload) as a JSON string."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                raise serializers.ValidationError("must be a JSON object") from None
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be a JSON object")
        return super().to_internal_value(data)


SENDABLE_TYPES = ["text", "image", "audio", "video", "document", "sticker", "interactive", "location", "reaction",
                  "template"]


class SendMessageSerializer(serializers.Serializer):
    """
    One message to send. Give the recipient as `contact` (an id) or `to` (a phone number, E.164), and
    the fields of its type: text (+ preview_url); image/audio/video/document/sticker: media_url or an
    uploaded `file` (multipart), caption, filename; interactive: {"body", "header", "footer", "buttons":
    [{"id", "title"}]} or {"body", "button", "sections": [{"title", "rows": [{"id", "title",
    "description"}]}]}; location: {"latitude", "longitude", "name", "address"}; reaction: emoji +
    react_to; template: template (an id) or template_name + template_language, and variables
    {"header", "body", "buttons"}. `reply_to` quotes one of the conversation's messages.
    """

    provider = serializers.PrimaryKeyRelatedField(queryset=Provider.objects.all(), required=False,
                                                  help_text="Needed when more than one provider is active.")
    contact = serializers.PrimaryKeyRelatedField(queryset=Contact.objects.all(), required=False)
    to = serializers.CharField(required=False, max_length=32, help_text="A phone number in E.164 form.")
    type = serializers.ChoiceField(choices=SENDABLE_TYPES, default="text")
    text = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, max_length=10000)
    preview_url = serializers.BooleanField(required=False, default=False)
    media_url = serializers.URLField(required=False, max_length=2000)
    file = serializers.FileField(required=False)
    caption = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    filename = serializers.CharField(required=False, allow_blank=True, max_length=255)
    interactive = JSONObjectField(required=False)
    location = JSONObjectField(required=False)
    emoji = serializers.CharField(required=False, max_length=64)
    react_to = serializers.PrimaryKeyRelatedField(queryset=Message.objects.all(), required=False)
    template = serializers.PrimaryKeyRelatedField(queryset=MessageTemplate.objects.all(), required=False)
    template_name = serializers.CharField(required=False, max_length=512)
    template_language = serializers.CharField(required=False, max_length=15)
    variables = JSONObjectField(required=False)
    reply_to = serializers.PrimaryKeyRelatedField(queryset=Message.objects.all(), required=False)
    lane = serializers.ChoiceField(choices=Message.Lane.choices, required=False,
                                   help_text="Default: reply when the 24-hour window is open, else bulk.")

    def validate_to(self, value: str) -> str:
        try:
            return phone_parse_e164(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs):
        if bool(attrs.get("contact")) == bool(attrs.get("to")):
            raise serializers.ValidationError("give the recipient as either contact or to")
        attrs["provider"] = attrs.get("provider") or self._only_provider()
        if attrs.get("template") is None and attrs.get("template_name"):
            attrs["template"] = self._template_by_name(attrs)
        return attrs

    def _only_provider(self) -> Provider:
        active = list(Provider.objects.filter(is_active=True)[:2])
        if len(active) != 1:
            raise serializers.ValidationError({"provider": "required when there is not exactly one active provider"})
        return active[0]

    def _template_by_name(self, attrs) -> MessageTemplate:
        # The approved version: a newer version may be a draft in review while the approved one is in use.
        template = sendable_template(attrs["provider"], attrs["template_name"], attrs.get("template_language", "en_US"))
        if template is None:
            raise serializers.ValidationError({"template_name": "no approved template by this name and language for "
                                                                "this provider"})
        return template


class StatusChangeSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Conversation.Status.choices)
    snoozed_until = serializers.DateTimeField(required=False, allow_null=True,
                                              help_text="With status snoozed: when it opens again (in the future).")


class BulkStatusSerializer(StatusChangeSerializer):
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), min_length=1,
                                max_length=500, help_text="The conversations to change (up to 500).")


class ResolutionSerializer(serializers.ModelSerializer):
    resolved_by_username = serializers.SerializerMethodField()

    class Meta:
        model = Resolution
        fields = ["id", "conversation", "provider", "resolved_by", "resolved_by_username", "opened_at", "resolved_at",
                  "first_response_seconds", "resolution_seconds", "survey", "survey_note", "survey_message",
                  "rating", "comment", "answered_at"]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_resolved_by_username(self, resolution: Resolution) -> str | None:
        return resolution.resolved_by.get_username() if resolution.resolved_by_id else None


class TeamSerializer(serializers.ModelSerializer):
    members = serializers.SlugRelatedField(slug_field="username", many=True, read_only=True)

    class Meta:
        model = Team
        fields = ["id", "name", "description", "members", "providers", "csat_survey", "created_at"]
