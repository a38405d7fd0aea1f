from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from contacts.models import ConsentEvent, Contact, ContactIdentity, ContactUserMapping
from whatsapp.api.serializers import ProviderBriefSerializer


class ContactIdentitySerializer(serializers.ModelSerializer):
    class Meta:
        model = ContactIdentity
        fields = ["kind", "value", "scope"]


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
