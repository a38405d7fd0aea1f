"""
The normalized vocabulary. Provider modules translate their wire formats into these dataclasses and
nothing outside `whatsapp/providers/` ever sees a provider's field names. Every event keeps the raw
provider dict it came from.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import models


class MessageStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    READ = "read", "Read"
    PLAYED = "played", "Played"
    FAILED = "failed", "Failed"
    # Retries exhausted, or the send's outcome is unknown: waits in the dead-letter view for a person.
    DEAD_LETTER = "dead_letter", "Dead letter"
    UNKNOWN = "unknown", "Unknown"


# Outbound statuses only move forward along this order; `failed` is handled on its own.
STATUS_RANK: dict[str, int] = {
    MessageStatus.QUEUED: 0,
    MessageStatus.SENDING: 1,
    MessageStatus.SENT: 2,
    MessageStatus.DELIVERED: 3,
    MessageStatus.READ: 4,
    MessageStatus.PLAYED: 5,
}


class MessageType(models.TextChoices):
    TEXT = "text", "Text"
    IMAGE = "image", "Image"
    AUDIO = "audio", "Audio"
    VIDEO = "video", "Video"
    DOCUMENT = "document", "Document"
    STICKER = "sticker", "Sticker"
    LOCATION = "location", "Location"
    CONTACTS = "contacts", "Contacts"
    INTERACTIVE = "interactive", "Interactive (buttons or list)"
    INTERACTIVE_REPLY = "interactive_reply", "Interactive reply"
    BUTTON = "button", "Button"
    REACTION = "reaction", "Reaction"
    TEMPLATE = "template", "Template"
    ORDER = "order", "Order"
    SYSTEM = "system", "System"
    UNSUPPORTED = "unsupported", "Unsupported"


MEDIA_TYPES = frozenset(
    {MessageType.IMAGE, MessageType.AUDIO, MessageType.VIDEO, MessageType.DOCUMENT, MessageType.STICKER}
)


class IdentityKind(models.TextChoices):
    PHONE = "phone", "Phone number (E.164)"
    WHATSAPP_ID = "whatsapp_id", "WhatsApp id"
    BUSINESS_SCOPED_ID = "bsuid", "Business-scoped user id"
    PARENT_BUSINESS_SCOPED_ID = "bsuid_parent", "Parent business-scoped user id"
    USERNAME = "username", "WhatsApp username"
    TWILIO_EXTERNAL_ID = "twilio_external_id", "Twilio external user id"
    CHATWOOT_CONTACT_ID = "chatwoot_contact_id", "Chatwoot contact id"
    SANDBOX_ID = "sandbox_id", "Sandbox phone id"
    EMAIL = "email", "Email address"


class TemplateStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    IN_REVIEW = "in_review", "In internal review"
    INTERNALLY_APPROVED = "internally_approved", "Approved internally"
    INTERNALLY_REJECTED = "internally_rejected", "Rejected internally"
    SUBMITTED = "submitted", "Submitted to provider"
    PENDING = "pending", "Pending at provider"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    PAUSED = "paused", "Paused"
    DISABLED = "disabled", "Disabled"
    IN_APPEAL = "in_appeal", "In appeal"
    # An approved version whose successor has been approved since: kept for history, no longer sent.
    SUPERSEDED = "superseded", "Superseded by a newer version"
    UNKNOWN = "unknown", "Unknown"


@dataclass(frozen=True)
class Identity:
    kind: str
    value: str
    # Business-scoped ids are only unique within one business account; global kinds leave this empty.
    scope: str = ""


@dataclass(frozen=True)
class MediaRef:
    provider_media_id: str = ""
    url: str = ""
    mime_type: str = ""
    sha256: str = ""
    filename: str = ""
    caption: str = ""
    size_bytes: int | None = None


@dataclass(frozen=True)
class InboundMessage:
    provider_message_id: str
    timestamp: datetime
    identities: tuple[Identity, ...]
    message_type: str
    profile_name: str = ""
    text: str = ""
    content: dict[str, Any] = field(default_factory=dict)
    media: tuple[MediaRef, ...] = ()
    reply_to_provider_message_id: str = ""
    # The provider-side id of the business number or inbox the message was sent to (used to route one
    # shared webhook URL to the right provider row); empty when the URL already names the provider.
    routed_to: str = ""
    # The provider's own conversation id where it has one (Chatwoot's display id, used to reply).
    conversation_ref: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboundEcho:
    """
    A provider telling us about a message sent from the business side: our own send echoed back
    (Chatwoot does this) or one an agent typed in the provider's UI. It is matched to the message we
    sent, never stored twice and never treated as something the customer said.
    """

    provider_message_id: str
    timestamp: datetime
    identities: tuple[Identity, ...]
    message_type: str = MessageType.TEXT
    text: str = ""
    content: dict[str, Any] = field(default_factory=dict)
    # Our own reference, when the provider echoes the one we gave it on sending.
    client_reference: str = ""
    sender_label: str = ""
    # Written by a person (an agent), not by the provider's own automation (greetings, away messages, bots).
    sent_by_person: bool = True
    conversation_ref: str = ""
    routed_to: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ContactProfile:
    """What a provider knows about a person (Chatwoot contact events): linked into the identity ledger."""

    identities: tuple[Identity, ...]
    profile_name: str = ""
    routed_to: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConversationUpdate:
    """A provider-side conversation opened or changed state (Chatwoot: open, pending, resolved...)."""

    identities: tuple[Identity, ...]
    conversation_ref: str
    state: str = ""
    profile_name: str = ""
    routed_to: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    # When the provider last changed the conversation: a report older than our own last change is stale.
    changed_at: datetime | None = None


@dataclass(frozen=True)
class StatusUpdate:
    provider_message_id: str
    status: str
    timestamp: datetime
    error_code: str = ""
    error_title: str = ""
    error_detail: str = ""
    routed_to: str = ""
    # Our own reference when the provider echoes the one we gave it on sending (Meta's
    # biz_opaque_callback_data): it finds a message whose send outcome we never recorded.
    client_reference: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TemplateStatusUpdate:
    provider_template_id: str
    name: str
    language: str
    # A TemplateStatus; UNKNOWN when the report changes something else (quality, category).
    status: str
    reason: str = ""
    # What the provider advises doing about a rejection or a pause.
    recommendation: str = ""
    quality: str = ""
    category: str = ""
    timestamp: datetime | None = None
    routed_to: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


# --- templates at the provider --------------------------------------------------------------
# Templates travel in WhatsApp's own component shape, which is also how we store them:
#   [{"type": "HEADER", "format": "TEXT", "text": "Hi {{1}}"}, {"type": "BODY", "text": "..."},
#    {"type": "FOOTER", "text": "..."}, {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Yes"},
#    {"type": "URL", "text": "Track", "url": "https://x.example/t/{{1}}"}, {"type": "PHONE_NUMBER", "text": "Call",
#    "phone_number": "+15550001111"}, {"type": "COPY_CODE", "text": "Copy code"}]}]
# and examples as {"header": {"1": "Summer"}, "body": {"1": "Ana"}, "buttons": {"1": "order-123"}} (buttons by
# their index in the BUTTONS list). A provider module translates both to and from its wire format.


class TemplateManagement(models.TextChoices):
    """What the platform can do with a provider's templates."""

    SUBMIT = "submit", "Created here and submitted for approval"
    IMPORT = "import", "Imported for reference (managed in the provider's own tool)"
    NONE = "none", "No templates"


@dataclass(frozen=True)
class TemplateDefinition:
    """A template version as authored here, for the provider to create."""

    name: str
    language: str
    category: str  # MessageTemplate.Category: marketing, utility, authentication
    parameter_format: str  # "positional" or "named"
    components: list[dict[str, Any]]
    examples: dict[str, Any]
    version: int = 1

    @property
    def remote_name(self) -> str:
        """
        The template's name at the provider. Every version after the first is a template of its own there
        (`<name>_v<N>`), never an edit of the approved one: the approved version stays sendable while its
        successor is reviewed (an edit would put it back into review), and Twilio's Content cannot be
        edited at all.
        """
        return self.name if self.version <= 1 else f"{self.name}_v{self.version}"


@dataclass(frozen=True)
class TemplateSubmission:
    """The provider's answer to a submission."""

    provider_template_id: str
    status: str  # a TemplateStatus (usually PENDING; some providers approve at once)
    reason: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RemoteTemplate:
    """A template as the provider lists it (for the sync job)."""

    provider_template_id: str
    name: str
    language: str
    status: str  # a TemplateStatus
    category: str = ""  # MessageTemplate.Category, or "" when the provider's is unknown to us
    parameter_format: str = "positional"
    components: list[dict[str, Any]] = field(default_factory=list)
    examples: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    recommendation: str = ""
    quality: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UnhandledEvent:
    """Something valid we do not act on (yet); kept so that nothing is silently dropped."""

    description: str
    routed_to: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InvalidUpdate:
    """
    An update that cannot be stored as it came (unreadable, a field too long, of the wrong type or out
    of range): recorded on its webhook event with the reason, never applied and never retried.
    """

    reason: str
    routed_to: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


NormalizedEvent = (InboundMessage | StatusUpdate | TemplateStatusUpdate | OutboundEcho | ContactProfile
                   | ConversationUpdate | UnhandledEvent | InvalidUpdate)


@dataclass(frozen=True)
class StoredWebhook:
    """A stored webhook request as a provider module parses it (the raw body and what came with it)."""

    body: bytes
    headers: dict[str, str]
    content_type: str
    received_at: datetime


@dataclass(frozen=True)
class DownloadedMedia:
    content: bytes
    mime_type: str = ""
    # The provider's checksum of the file when it gives one (hex or base64), checked after download.
    sha256: str = ""


@dataclass(frozen=True)
class OutboundMedia:
    """
    A file to send. `url` is a public https URL the provider can fetch (the caller's, or ours for an
    upload); `data` holds the bytes of an upload, for providers that take files rather than links.
    """

    kind: str  # a MessageType among MEDIA_TYPES
    url: str = ""
    data: bytes | None = None
    filename: str = ""
    mime_type: str = ""
    caption: str = ""


@dataclass(frozen=True)
class TemplateParameter:
    # "1", "2"... for positional templates, the parameter's name for named ones.
    name: str
    value: str


@dataclass(frozen=True)
class TemplateButtonParameter:
    index: int
    sub_type: str  # "quick_reply", "url" or "copy_code"
    value: str


@dataclass(frozen=True)
class OutboundTemplate:
    name: str
    language: str
    category: str = ""
    # The provider's id of the approved template (Twilio's content SID "HX...", Meta's template id).
    provider_template_id: str = ""
    named_parameters: bool = False
    header: tuple[TemplateParameter, ...] = ()
    header_media: OutboundMedia | None = None
    body: tuple[TemplateParameter, ...] = ()
    buttons: tuple[TemplateButtonParameter, ...] = ()
    # The body with its variables filled in, for providers that also want the text (Chatwoot).
    rendered_text: str = ""


@dataclass(frozen=True)
class OutboundMessage:
    """
    What we ask a provider to send, in our own vocabulary. `content` by message type:

    - text: {"text": str, "preview_url": bool}
    - image/video/audio/document/sticker: `media` is set; content repeats caption and filename
    - interactive: {"body": str, "header": str, "footer": str, "buttons": [{"id", "title"}]} (reply buttons),
      or {"body", "header", "footer", "button": str, "sections": [{"title", "rows": [{"id", "title",
      "description"}]}]} (a list)
    - location: {"latitude": float, "longitude": float, "name": str, "address": str}
    - reaction: {"emoji": str, "target": the provider's id of the message reacted to}
    - template: `template` is set
    """

    to: tuple[Identity, ...]
    message_type: str
    text: str = ""
    content: dict[str, Any] = field(default_factory=dict)
    reply_to_provider_message_id: str = ""
    # Our own id, for providers that can echo it back (Meta biz_opaque_callback_data, Chatwoot echo_id).
    client_reference: str = ""
    media: OutboundMedia | None = None
    template: OutboundTemplate | None = None
    # The provider's conversation id where sending needs one (Chatwoot's display id).
    conversation_ref: str = ""
    # Our webhook URL for this provider, for providers told per message where to report statuses (Twilio).
    status_callback_url: str = ""


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    status: str = MessageStatus.SENT
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConnectionCheck:
    ok: bool
    detail: str
