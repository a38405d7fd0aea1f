import json
import math

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from contacts.models import ConsentEvent, Contact, ContactIdentity, ContactUserMapping
from contacts.services.identities import phone_parse_e164
from templates_app.models import MessageTemplate
from templates_app.preview import template_preview
from templates_app.selectors import sendable_template, usage_of
from templates_app.services.workflow import review_version
from whatsapp.models import Conversation, Media, Message, MessageStatusEvent, Provider, SendAttempt
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


class ContactIdentitySerializer(serializers.ModelSerializer):
    class Meta:
        model = ContactIdentity
        fields = ["kind", "value", "scope"]


class RefusalSerializer(serializers.Serializer):
    """What every refused request answers (4xx): a stable code and a readable reason."""

    code = serializers.CharField(help_text="Stable, for programs: e.g. invalid_request, opted_out, mapping_conflict.")
    detail = serializers.CharField(help_text="Readable, for people.")
    errors = serializers.DictField(required=False, help_text="Invalid fields and what is wrong with each.")


class ContactMappingSummarySerializer(serializers.ModelSerializer):
    """The user a contact is mapped to, and how."""

    username = serializers.CharField(source="user.get_username", read_only=True)

    class Meta:
        model = ContactUserMapping
        fields = ["id", "user", "username", "method", "rule", "verified_at", "notify_on_ready", "created_at"]


class ContactSerializer(serializers.ModelSerializer):
    identities = ContactIdentitySerializer(many=True, read_only=True)
    mapped_user = serializers.SerializerMethodField()
    mapping = serializers.SerializerMethodField()

    class Meta:
        model = Contact
        fields = ["id", "profile_name", "consent", "consent_changed_at", "consent_source", "language", "time_zone",
                  "last_seen_at", "is_ignored", "identities", "mapped_user", "mapping", "created_at"]

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_mapped_user(self, contact: Contact) -> int | None:
        mapping = getattr(contact, "user_mapping", None)
        return mapping.user_id if mapping else None

    @extend_schema_field(ContactMappingSummarySerializer(allow_null=True))
    def get_mapping(self, contact: Contact) -> dict | None:
        mapping = getattr(contact, "user_mapping", None)
        return ContactMappingSummarySerializer(mapping).data if mapping else None


class ConsentChangeSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=[Contact.Consent.OPTED_IN, Contact.Consent.OPTED_OUT])
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=255,
                                 help_text="Why, kept in the consent history (e.g. 'asked by phone').")


class ConsentEventSerializer(serializers.ModelSerializer):
    # Plain strings in the schema: the same values as Contact.consent and consent_source, which already
    # name those enums.
    previous_state = serializers.CharField(read_only=True, help_text="unknown, opted_in or opted_out")
    state = serializers.CharField(read_only=True, help_text="unknown, opted_in or opted_out")
    source = serializers.CharField(read_only=True, help_text="keyword, provider_error, admin or api")
    actor_username = serializers.CharField(source="actor.get_username", read_only=True, default=None,
                                           allow_null=True)

    class Meta:
        model = ConsentEvent
        fields = ["id", "previous_state", "state", "source", "detail", "actor", "actor_username", "message",
                  "created_at"]


def _active_users():
    return get_user_model().objects.filter(is_active=True)


class VerificationStartSerializer(serializers.Serializer):
    user = serializers.PrimaryKeyRelatedField(
        queryset=_active_users(), required=False, allow_null=True,
        help_text="The user the contact should prove to be; default: the user it is mapped to.")


class VerificationStartedSerializer(serializers.Serializer):
    challenge = serializers.IntegerField(help_text="The verification challenge's id.")
    user = serializers.IntegerField()
    expires_at = serializers.DateTimeField(help_text="The code stops working at this time.")
    message = serializers.IntegerField(allow_null=True, help_text="The queued message that carries the code "
                                                                  "(see /api/v1/messages/{id}/ for its delivery).")


class ProviderBriefSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(read_only=True, help_text="meta, twilio, chatwoot or sandbox")

    class Meta:
        model = Provider
        fields = ["id", "kind", "name"]


class SuggestedUserSerializer(serializers.Serializer):
    user = serializers.IntegerField(source="user.pk")
    username = serializers.CharField(source="user.get_username")
    name = serializers.CharField(source="user.get_full_name")
    reasons = serializers.ListField(child=serializers.CharField(), help_text="e.g. same phone, similar name.")


PREVIEW_LENGTH = 100


class UnmappedContactSerializer(serializers.ModelSerializer):
    """A contact in the unmapped queue, as contacts.services.queue fills it in (with_queue_columns, then
    queue_page_details)."""

    identities = ContactIdentitySerializer(many=True, read_only=True)
    message_count = serializers.IntegerField(read_only=True)
    last_message_at = serializers.SerializerMethodField()
    last_message_preview = serializers.SerializerMethodField()
    providers = serializers.SerializerMethodField()
    suggested_users = serializers.SerializerMethodField()

    class Meta:
        model = Contact
        fields = ["id", "profile_name", "consent", "language", "last_seen_at", "identities", "message_count",
                  "last_message_at", "last_message_preview", "providers", "suggested_users", "created_at"]

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_last_message_at(self, contact: Contact):
        return serializers.DateTimeField().to_representation(contact.last_message.created_at) \
            if contact.last_message else None

    def get_last_message_preview(self, contact: Contact) -> str:
        message = contact.last_message
        if message is None:
            return ""
        text = message.text.strip()
        if not text:
            return f"[{message.message_type}]"
        return text if len(text) <= PREVIEW_LENGTH else text[:PREVIEW_LENGTH - 1] + "…"

    @extend_schema_field(ProviderBriefSerializer(many=True))
    def get_providers(self, contact: Contact) -> list[dict]:
        providers = {c.provider_id: c.provider for c in contact.conversations.all()}
        return ProviderBriefSerializer(sorted(providers.values(), key=lambda p: p.pk), many=True).data

    @extend_schema_field(SuggestedUserSerializer(many=True))
    def get_suggested_users(self, contact: Contact) -> list[dict]:
        return SuggestedUserSerializer(contact.suggestions, many=True).data


class ContactUserMappingSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.get_username", read_only=True)
    contact_name = serializers.CharField(source="contact.profile_name", read_only=True)

    class Meta:
        model = ContactUserMapping
        fields = ["id", "contact", "contact_name", "user", "username", "method", "rule", "created_by",
                  "notify_on_ready", "verified_at", "created_at"]
        read_only_fields = fields


class ContactUserMappingCreateSerializer(serializers.Serializer):
    contact = serializers.PrimaryKeyRelatedField(queryset=Contact.objects.all())
    user = serializers.PrimaryKeyRelatedField(queryset=_active_users())
    notify_on_ready = serializers.BooleanField(required=False, default=False,
                                               help_text="Tell the user when what they asked for is ready.")


class ContactUserMappingUpdateSerializer(serializers.Serializer):
    """Only the preference changes in place; mapping the contact to someone else is a delete and a create."""

    notify_on_ready = serializers.BooleanField()

    def validate(self, attrs):
        others = sorted(set(self.initial_data) - {"notify_on_ready"}) if isinstance(self.initial_data, dict) else []
        if others:
            raise serializers.ValidationError(
                dict.fromkeys(others, "cannot be changed; delete the mapping and create another"))
        return attrs


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


# --- templates ------------------------------------------------------------------------------------

TEMPLATE_JSON_MAX_BYTES = 64 * 1024
TEMPLATE_JSON_MAX_DEPTH = 16


def json_storage_problem(data) -> str | None:
    """Why PostgreSQL could not store `data` as JSON (or why it is too big to be a template), else None.
    PostgreSQL refuses NUL characters and lone surrogates, and JSON has no Infinity (1e400 parses as one)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > TEMPLATE_JSON_MAX_DEPTH:
            return f"is nested more than {TEMPLATE_JSON_MAX_DEPTH} levels deep"
        if isinstance(value, dict):
            stack.extend((key, depth) for key in value)
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            if "\x00" in value:
                return "contains a NUL character (\\u0000), which is not text"
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "contains an unpaired surrogate (\\ud800-\\udfff), which is not text"
        elif isinstance(value, float) and not math.isfinite(value):
            return "contains a number too large to store"
    if len(json.dumps(data, ensure_ascii=False).encode("utf-8", "replace")) > TEMPLATE_JSON_MAX_BYTES:
        return f"is larger than {TEMPLATE_JSON_MAX_BYTES // 1024} KiB"
    return None


class StorableJSONField(serializers.JSONField):
    """Any JSON value that can be stored; its shape is checked by the template rules (templates_app.validation),
    which report every problem on its field."""

    def to_internal_value(self, data):
        data = super().to_internal_value(data)
        problem = json_storage_problem(data)
        if problem:
            raise serializers.ValidationError(f"this value {problem}")
        return data


@extend_schema_field({"type": "array", "items": {"type": "object", "additionalProperties": True},
                      "example": [{"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
                                  {"type": "BODY", "text": "Hi {{1}}, your order {{2}} has shipped."},
                                  {"type": "FOOTER", "text": "Reply STOP to opt out"},
                                  {"type": "BUTTONS", "buttons": [
                                      {"type": "URL", "text": "Track", "url": "https://shop.example/t/{{1}}"}]}]})
class TemplateComponentsField(StorableJSONField):
    """HEADER, BODY, FOOTER and BUTTONS objects in WhatsApp's own shape."""


@extend_schema_field({"type": "object", "additionalProperties": True,
                      "example": {"header": {"1": "#1042"}, "body": {"1": "Ana", "2": "#1042"},
                                  "buttons": {"0": "1042"}}})
class TemplateValuesField(StorableJSONField):
    """{"header", "body", "buttons"}: values by parameter name (or a list for positional parameters); button
    values keyed by the button's index in BUTTONS (from 0); a media header's example is {"url": "https://..."}."""


# Plain text in, so that a wrong value is reported by the template rules beside every other broken rule
# (a ChoiceField would stop at it); the schema still lists the choices.
@extend_schema_field(serializers.ChoiceField(choices=MessageTemplate.Category.choices))
class TemplateCategoryField(serializers.CharField):
    pass


@extend_schema_field(serializers.ChoiceField(choices=MessageTemplate.ParameterFormat.choices))
class TemplateParameterFormatField(serializers.CharField):
    pass


class TemplateUsageSerializer(serializers.Serializer):
    sends = serializers.IntegerField(help_text="Outbound messages sent with this version.")
    delivered = serializers.IntegerField(help_text="Delivered or read.")
    read = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Failed or dead-lettered.")
    delivered_rate = serializers.FloatField(allow_null=True, help_text="delivered / sends (0-1); null before "
                                                                       "the first send.")
    read_rate = serializers.FloatField(allow_null=True)
    failed_rate = serializers.FloatField(allow_null=True)


class TemplatePreviewButtonSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="QUICK_REPLY, URL, PHONE_NUMBER or COPY_CODE")
    label = serializers.CharField()
    detail = serializers.CharField(help_text="The filled-in URL, the phone number or the code to copy.")


class TemplatePreviewSerializer(serializers.Serializer):
    """The template as the customer's phone shows it; a parameter without a value stays visible as {{name}}."""

    header_text = serializers.CharField()
    header_media = serializers.CharField(help_text="image, video, document or location: shown as a placeholder")
    body = serializers.CharField()
    footer = serializers.CharField()
    buttons = TemplatePreviewButtonSerializer(many=True)


def _username(source: str) -> serializers.CharField:
    return serializers.CharField(source=f"{source}.get_username", read_only=True, default=None, allow_null=True)


class MessageTemplateSerializer(serializers.ModelSerializer):
    """One version of a template, as clients read it (every field read-only: changes go through the actions)."""

    components = TemplateComponentsField(read_only=True)
    examples = TemplateValuesField(read_only=True)
    status_label = serializers.CharField(source="get_status_display", read_only=True)
    created_by = _username("created_by")
    submitted_by = _username("submitted_by")
    reviewed_by = _username("reviewed_by")
    usage = serializers.SerializerMethodField()
    preview = serializers.SerializerMethodField(help_text="The examples filled into the components.")
    review_version = serializers.SerializerMethodField(
        help_text="What a reviewer is looking at: send it back with approve or reject, and a template changed "
                  "and submitted again since is refused (409 changed_since_seen).")

    class Meta:
        model = MessageTemplate
        fields = ["id", "provider", "name", "language", "category", "parameter_format", "components", "examples",
                  "version", "status", "status_label", "provider_template_id", "provider_template_name",
                  "rejection_reason",
                  "provider_recommendation", "quality", "managed_elsewhere", "review_note", "submission_error",
                  "created_by", "submitted_by", "reviewed_by", "submitted_at", "reviewed_at", "sent_to_provider_at",
                  "approved_at", "synced_at", "created_at", "updated_at", "usage", "preview", "review_version"]
        read_only_fields = fields

    def get_review_version(self, template: MessageTemplate) -> str:
        return review_version(template)

    @extend_schema_field(TemplateUsageSerializer)
    def get_usage(self, template: MessageTemplate) -> dict:
        return usage_of(template).as_dict()

    @extend_schema_field(TemplatePreviewSerializer)
    def get_preview(self, template: MessageTemplate) -> dict:
        return template_preview(template.components, template.examples).as_dict()


class MessageTemplateUpdateSerializer(serializers.Serializer):
    """What an author writes. Other fields are refused: status, reviewers and provider ids change only through
    the workflow's actions."""

    name = serializers.CharField(max_length=512, help_text="Lowercase letters, digits and underscores.")
    language = serializers.CharField(max_length=15, help_text="e.g. en_US, pt_BR, de")
    category = TemplateCategoryField(max_length=32)
    parameter_format = TemplateParameterFormatField(max_length=16, required=False, help_text="Default: positional.")
    components = TemplateComponentsField()
    examples = TemplateValuesField(required=False, help_text="An example value for every parameter.")


class MessageTemplateCreateSerializer(MessageTemplateUpdateSerializer):
    provider = serializers.PrimaryKeyRelatedField(
        queryset=Provider.objects.all(),
        help_text="The template belongs to this provider's business account (every number of the account can "
                  "send it once approved).")


class TemplateReviewSerializer(serializers.Serializer):
    review_version = serializers.CharField(required=False, max_length=64,
                                           help_text="The template's review_version as the reviewer saw it.")


class TemplateRejectSerializer(TemplateReviewSerializer):
    reason = serializers.CharField(max_length=5000, help_text="Why, shown to the template's author.")


class TemplateSyncRequestSerializer(serializers.Serializer):
    provider = serializers.PrimaryKeyRelatedField(queryset=Provider.objects.all(), required=False, allow_null=True,
                                                  help_text="Sync this provider's business account; default: every "
                                                            "active provider's.")


class TemplateSyncReportSerializer(serializers.Serializer):
    provider = serializers.CharField()
    imported = serializers.ListField(child=serializers.CharField(),
                                     help_text="Templates created on the provider's side, now imported.")
    updated = serializers.ListField(child=serializers.CharField(), help_text="Templates whose status or content "
                                                                             "changed.")
    unchanged = serializers.IntegerField()
    missing = serializers.ListField(child=serializers.CharField(), help_text="No longer listed by the provider.")
    conflicts = serializers.ListField(child=serializers.CharField(),
                                      help_text="A template at the provider with the name of one of ours that it "
                                                "has not seen.")
    requeued = serializers.ListField(child=serializers.CharField(),
                                     help_text="Submissions whose answer was lost, sent again.")
    skipped = serializers.CharField(help_text="Why nothing was done, e.g. another sync is running.")
    error = serializers.CharField(help_text="The provider's answer when listing its templates failed.")
    summary = serializers.CharField()


class TemplateSyncSerializer(serializers.Serializer):
    reports = TemplateSyncReportSerializer(many=True, help_text="One per business account.")


class TemplateSyncRefusalSerializer(RefusalSerializer):
    reports = TemplateSyncReportSerializer(many=True)


class TemplateDiffLineSerializer(serializers.Serializer):
    marker = serializers.ChoiceField(choices=[" ", "-", "+"], help_text="' ' in both, '-' only in the older "
                                                                        "version, '+' only in the newer one")
    text = serializers.CharField()


class TemplateDiffSectionSerializer(serializers.Serializer):
    section = serializers.CharField(help_text="category, parameter format, header, body, footer, buttons or "
                                              "examples")
    changed = serializers.BooleanField()
    lines = TemplateDiffLineSerializer(many=True)


class TemplateVersionBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = MessageTemplate
        fields = ["id", "version", "status"]


class TemplateDiffSerializer(serializers.Serializer):
    older = TemplateVersionBriefSerializer()
    newer = TemplateVersionBriefSerializer()
    sections = TemplateDiffSectionSerializer(many=True)


class TemplateDiffQuerySerializer(serializers.Serializer):
    against = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1,
                                       help_text="The version to compare with; default: the previous one.")


class TemplatePreviewRequestSerializer(serializers.Serializer):
    """A template being written, checked without saving it. name, language, category and parameter_format are
    optional: the rules about them are checked only when they are given."""

    components = TemplateComponentsField()
    examples = TemplateValuesField(required=False)
    values = TemplateValuesField(required=False, help_text="Real values to fill in; default: the examples.")
    name = serializers.CharField(required=False, max_length=512)
    language = serializers.CharField(required=False, max_length=15)
    category = TemplateCategoryField(required=False, max_length=32)
    parameter_format = TemplateParameterFormatField(required=False, max_length=16)


class TemplatePreviewResponseSerializer(serializers.Serializer):
    preview = TemplatePreviewSerializer()
    valid = serializers.BooleanField(help_text="Whether the template breaks none of WhatsApp's rules.")
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()),
                                   help_text="Every broken rule, keyed by field (name, language, category, "
                                             "parameter_format, header, body, footer, buttons, examples, "
                                             "components).")
