import json
import math

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api.errors import RefusalSerializer
from templates_app.models import MessageTemplate
from templates_app.preview import template_preview
from templates_app.selectors import usage_of
from templates_app.services.workflow import review_version
from whatsapp.models import Provider

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
