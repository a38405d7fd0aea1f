import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

from core.access import ProviderPath
from core.fields import EncryptedJSONField
from core.models import ApiToken, AuditLog  # noqa: F401  (registered under this app's label)
from whatsapp.providers import kind_choices
from whatsapp.providers.events import MessageStatus, MessageType


class CircuitState(models.TextChoices):
    CLOSED = "closed", "Closed (sending)"
    OPEN = "open", "Open (holding)"
    HALF_OPEN = "half_open", "Half-open (probing)"


class UnknownContactPolicy(models.TextChoices):
    STORE_ONLY = "store_only", "Store the message only"
    REGISTRATION_REPLY = "registration_reply", "Reply once a day with a registration message"


class Provider(models.Model):
    team_scope = ProviderPath("pk")

    class VerificationStatus(models.TextChoices):
        UNVERIFIED = "unverified", "Not verified"
        VERIFIED = "verified", "Verified"
        FAILED = "failed", "Verification failed"

    kind = models.CharField(max_length=20, choices=kind_choices)
    name = models.CharField(max_length=100, unique=True)
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False,
                                 help_text="Used in the webhook URL; not secret, but unguessable.")
    is_active = models.BooleanField(default=True, help_text="Inactive providers answer 404 to webhooks.")
    is_paused = models.BooleanField(default=False, help_text="Paused providers hold outbound messages queued.")
    phone_number = models.CharField(max_length=20, blank=True, help_text="The business number, E.164.")
    external_id = models.CharField(
        max_length=64, blank=True, db_index=True,
        help_text="The provider's id for this sender: Meta phone number id, Chatwoot inbox id.",
    )
    business_account_id = models.CharField(
        max_length=64, blank=True,
        help_text="Meta WABA id, Twilio account SID or Chatwoot account id; scopes business-scoped user ids.",
    )
    config = models.JSONField(default=dict, blank=True, help_text="Non-secret settings of this provider kind.")
    credentials = EncryptedJSONField(help_text="Secrets, encrypted at rest.")
    rate_limit_per_second = models.PositiveIntegerField(
        default=0, help_text="Messages per second from this number; 0 on creation takes the kind's default.")
    circuit_state = models.CharField(max_length=10, choices=CircuitState.choices, default=CircuitState.CLOSED,
                                     help_text="The send circuit breaker: open holds messages until a probe succeeds.")
    circuit_failures = models.PositiveIntegerField(default=0, help_text="Consecutive failed provider calls.")
    circuit_opened_at = models.DateTimeField(null=True, blank=True)
    circuit_retry_at = models.DateTimeField(null=True, blank=True,
                                            help_text="When an open circuit lets a probe through.")
    circuit_last_error = models.TextField(blank=True)
    verification_status = models.CharField(
        max_length=20, choices=VerificationStatus.choices, default=VerificationStatus.UNVERIFIED
    )
    unknown_contact_policy = models.CharField(
        max_length=20, choices=UnknownContactPolicy.choices, default=UnknownContactPolicy.STORE_ONLY,
        help_text="What a message from a contact not mapped to any user gets.")
    registration_template = models.ForeignKey(
        "templates_app.MessageTemplate", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The registration reply as an approved template (used before the text when set).")
    registration_text = models.TextField(blank=True, help_text="The registration reply as free text "
                                                               "(inside the 24-hour window, which the message opened).")
    contact_verification_enabled = models.BooleanField(
        default=False, help_text="Allow one-time codes that verify a contact is the user it is mapped to.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["kind", "external_id"], name="provider_kind_external_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class Team(models.Model):
    """People who answer some of the numbers: members see and act on those numbers' conversations,
    contacts, messages, templates and figures, and nobody else's (core.access)."""

    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=200, blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="teams")
    providers = models.ManyToManyField(Provider, blank=True, related_name="teams",
                                       help_text="The numbers this team answers.")
    csat_survey = models.BooleanField(
        default=False, help_text="Ask the customer how satisfied they were when a conversation is resolved.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        permissions = [("see_all_teams", "Can see every team's conversations and figures")]

    def __str__(self) -> str:
        return self.name


class LabelColour(models.TextChoices):
    """A fixed palette (value: the CSS colour): every label stays readable on its chip."""

    GREY = "#6b7280", "Grey"
    RED = "#b91c1c", "Red"
    ORANGE = "#c2410c", "Orange"
    AMBER = "#a16207", "Amber"
    GREEN = "#15803d", "Green"
    TEAL = "#0f766e", "Teal"
    BLUE = "#1d4ed8", "Blue"
    PURPLE = "#7e22ce", "Purple"
    PINK = "#be185d", "Pink"


class Label(models.Model):
    """A tag operators put on conversations ("billing", "vip") to find and filter them."""

    name = models.CharField(max_length=40, unique=True)
    colour = models.CharField(max_length=7, choices=LabelColour.choices, default=LabelColour.GREY)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(Lower("name"), name="label_name_unique_any_case",
                                               violation_error_message="A label with this name already exists.")]

    def __str__(self) -> str:
        return self.name


class SavedReply(models.Model):
    """A canned answer the team shares: picked on the conversation page and sent as a text."""

    team_scope = ProviderPath("provider", shared_when_empty=True)

    title = models.CharField(max_length=80, unique=True, help_text="What operators pick it by.")
    text = models.TextField(max_length=4096)
    provider = models.ForeignKey(Provider, null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="saved_replies",
                                 help_text="Offered on this number's conversations only; empty: on every number.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]
        verbose_name_plural = "saved replies"

    def __str__(self) -> str:
        return self.title


class Conversation(models.Model):
    team_scope = ProviderPath("provider")

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PENDING = "pending", "Pending (waiting on the customer)"
        SNOOZED = "snoozed", "Snoozed"
        RESOLVED = "resolved", "Resolved"

    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="conversations")
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="conversations")
    context = models.JSONField(default=dict, blank=True,
                               help_text="Multi-step state, e.g. a clarification in progress.")
    ai_summary = models.TextField(blank=True)
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="assigned_conversations")
    external_conversation_id = models.CharField(max_length=64, blank=True,
                                                help_text="The provider's conversation id, e.g. Chatwoot's.")
    external_state = models.CharField(max_length=20, blank=True,
                                      help_text="The provider's state of that conversation (open, resolved...).")
    last_message_at = models.DateTimeField(null=True, blank=True)
    awaiting_reply_since = models.DateTimeField(
        null=True, blank=True, help_text="The customer's first message that no person has answered yet.")
    last_reply_at = models.DateTimeField(null=True, blank=True, help_text="When a person last wrote in it.")
    labels = models.ManyToManyField(Label, blank=True, related_name="conversations")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    status_changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                          related_name="+", help_text="Empty when the customer, the provider or "
                                                                      "the platform changed it.")
    status_source = models.CharField(max_length=10, blank=True,
                                     help_text="Who changed the state last: operator, customer, provider or system.")
    opened_at = models.DateTimeField(null=True, blank=True,
                                     help_text="When the current round began (the conversation opened or reopened).")
    snoozed_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "contact"], name="conversation_unique_provider_contact"),
        ]
        indexes = [
            models.Index(fields=["-last_message_at"], name="conversation_last_msg_idx"),
            # The inbox's order (what waits longest first, then the most recent), read page by page. Plain
            # columns (PostgreSQL puts NULLs last ascending, first descending): SQLite has no NULLS LAST
            # in an index, and whatsapp.selectors.INBOX_ORDER asks for exactly this order.
            models.Index(fields=["awaiting_reply_since", "-last_message_at", "-id"],
                         name="conversation_inbox_order_idx"),
            models.Index(fields=["assignee", "awaiting_reply_since"], name="conversation_assignee_idx"),
            models.Index(fields=["status", "snoozed_until"], name="conversation_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.contact} via {self.provider.name}"


class Resolution(models.Model):
    """One time a conversation was resolved: how long the round took, who resolved it, and what the customer
    answered to the satisfaction survey, if one went out."""

    team_scope = ProviderPath("provider")

    class Survey(models.TextChoices):
        NOT_ASKED = "not_asked", "Not asked"
        ASKED = "asked", "Asked"
        ANSWERED = "answered", "Answered"
        SKIPPED = "skipped", "Skipped"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="resolutions")
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="+")
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+", help_text="Empty when resolved in the provider's inbox.")
    opened_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField()
    first_response_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="From the round's first customer message to the first person's answer.")
    resolution_seconds = models.PositiveIntegerField(null=True, blank=True,
                                                     help_text="From the round's opening to its resolution.")
    survey = models.CharField(max_length=10, choices=Survey.choices, default=Survey.NOT_ASKED)
    survey_note = models.CharField(max_length=200, blank=True, help_text="Why no survey went out.")
    survey_message = models.OneToOneField("Message", null=True, blank=True, on_delete=models.SET_NULL,
                                          related_name="survey_of")
    rating = models.PositiveSmallIntegerField(null=True, blank=True, help_text="1 (very poor) to 5 (excellent).")
    comment = models.TextField(blank=True, max_length=2000)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(rating__gte=1, rating__lte=5) | Q(rating__isnull=True),
                                              name="resolution_rating_1_to_5")]
        indexes = [models.Index(fields=["resolved_at"], name="resolution_time_idx"),
                   models.Index(fields=["conversation", "-resolved_at"], name="resolution_conversation_idx")]

    def __str__(self) -> str:
        return f"Resolution {self.pk} of conversation {self.conversation_id}"


class Session(models.Model):
    """One 24-hour customer-service window: opened by an inbound message, extended by each later one."""
    team_scope = ProviderPath("conversation__provider")


    class State(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="sessions")
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    opened_at = models.DateTimeField()
    last_inbound_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    first_response_at = models.DateTimeField(null=True, blank=True,
                                             help_text="When a person first answered in this window.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["conversation"], condition=Q(state="open"),
                                    name="session_one_open_per_conversation"),
        ]
        indexes = [models.Index(fields=["state", "expires_at"], name="session_state_expires_idx")]

    def __str__(self) -> str:
        return f"Session {self.pk} ({self.state}) until {self.expires_at:%Y-%m-%d %H:%M}"


class Message(models.Model):
    team_scope = ProviderPath("provider")

    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"

    class ProcessingStatus(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    class Lane(models.TextChoices):
        REPLY = "reply", "Reply (open conversation)"
        BULK = "bulk", "Bulk"

    class Purpose(models.TextChoices):
        CONVERSATION = "", "Conversation"
        CONSENT_CONFIRMATION = "consent_confirmation", "Consent confirmation"
        VERIFICATION = "verification", "Verification code"
        REGISTRATION = "registration", "Registration reply"
        ASSISTANT = "assistant", "Assistant reply"
        NOTIFICATION = "notification", "Reminder or summary"
        CAMPAIGN = "campaign", "Campaign"
        SURVEY = "survey", "Satisfaction survey"

    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="messages")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    session = models.ForeignKey(Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages")
    direction = models.CharField(max_length=10, choices=Direction.choices)
    message_type = models.CharField(max_length=20, choices=MessageType.choices, default=MessageType.TEXT)
    text = models.TextField(blank=True)
    content = models.JSONField(default=dict, blank=True, help_text="Normalized content of any type.")
    provider_message_id = models.CharField(max_length=128, null=True, blank=True)
    reply_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies")
    status = models.CharField(max_length=12, choices=MessageStatus.choices)
    queued_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    played_at = models.DateTimeField(null=True, blank=True, help_text="First play of a voice message.")
    failed_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(null=True, blank=True, help_text="When the provider says it was sent to us.")
    error_code = models.CharField(max_length=32, blank=True)
    error_title = models.CharField(max_length=255, blank=True)
    error_detail = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    lane = models.CharField(max_length=8, choices=Lane.choices, default=Lane.REPLY,
                            help_text="Replies to an open conversation go ahead of bulk sends.")
    next_attempt_at = models.DateTimeField(null=True, blank=True,
                                           help_text="When a queued message is due (retry backoff, rate limit, hold).")
    enqueued_at = models.DateTimeField(null=True, blank=True,
                                       help_text="When it was last handed to the broker; empty while it waits here.")
    hold_reason = models.CharField(max_length=255, blank=True, help_text="Why a queued message is waiting.")
    purpose = models.CharField(max_length=24, choices=Purpose.choices, default=Purpose.CONVERSATION, blank=True,
                               help_text="Why the platform itself sent it; empty for conversation messages.")
    dead_lettered_at = models.DateTimeField(null=True, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True,
                                           help_text="Digest of the API request that made it (idempotency).")
    duplicate_count = models.PositiveIntegerField(default=0, help_text="Redeliveries of this message ignored.")
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)
    template = models.ForeignKey("templates_app.MessageTemplate", null=True, blank=True,
                                 on_delete=models.PROTECT, related_name="messages")
    template_variables = models.JSONField(default=dict, blank=True)
    transcript = models.TextField(blank=True)
    intent = models.CharField(max_length=64, blank=True)
    sentiment = models.CharField(max_length=16, blank=True)
    language = models.CharField(max_length=16, blank=True)
    ai_processed_at = models.DateTimeField(null=True, blank=True)
    processing_status = models.CharField(max_length=10, choices=ProcessingStatus.choices,
                                         default=ProcessingStatus.PENDING)
    response_seconds = models.FloatField(
        null=True, blank=True, help_text="For a person's reply: how long the customer had waited for it.")
    first_response = models.BooleanField(default=False, help_text="The first reply of its 24-hour window.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # The dedup key: a redelivered webhook can never create a second row.
            models.UniqueConstraint(fields=["provider", "provider_message_id"],
                                    condition=Q(provider_message_id__isnull=False),
                                    name="message_unique_provider_message_id"),
            models.UniqueConstraint(fields=["idempotency_key"], condition=Q(idempotency_key__isnull=False),
                                    name="message_unique_idempotency_key"),
        ]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="message_conversation_time_idx"),
            models.Index(fields=["provider", "-created_at"], name="message_provider_time_idx"),
            models.Index(fields=["status", "-created_at"], name="message_status_time_idx"),
            models.Index(fields=["direction", "-created_at"], name="message_direction_time_idx"),
            models.Index(fields=["status", "next_attempt_at"], name="message_due_idx",
                         condition=Q(status__in=["queued", "sending"])),
            # The sender's claim: a provider's due messages of one lane, oldest first.
            models.Index(fields=["provider", "lane", "next_attempt_at", "id"], name="message_send_queue_idx",
                         condition=Q(status="queued")),
            # Whether an earlier message of the conversation is still pending (order).
            models.Index(fields=["conversation", "id"], name="message_pending_order_idx",
                         condition=Q(status__in=["queued", "sending"])),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        preview = (self.text or self.message_type)[:40]
        return f"{self.get_direction_display()} {self.message_type}: {preview}"


class DeadLetter(Message):
    """The dead-letter view: outbound messages that need a person to retry or discard them."""

    class Meta:
        proxy = True
        verbose_name = "dead letter"


class SendAttempt(models.Model):
    """One provider call for an outbound message, written with its outcome: the send log."""
    team_scope = ProviderPath("message__provider")


    class Outcome(models.TextChoices):
        SENT = "sent", "Accepted by the provider"
        RETRY = "retry", "Failed, will retry"
        FAILED = "failed", "Failed for good"
        DEAD_LETTER = "dead_letter", "Retries exhausted"
        UNKNOWN = "unknown", "Outcome unknown (worker lost)"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="send_attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    error_code = models.CharField(max_length=32, blank=True)
    error_title = models.CharField(max_length=255, blank=True)
    error_detail = models.TextField(blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    retry_at = models.DateTimeField(null=True, blank=True)
    correlation_id = models.CharField(max_length=64, blank=True)

    class Meta:
        # `number` counts within one round of retries: a retry from the dead-letter view starts again at 1.
        ordering = ["message", "started_at", "id"]
        indexes = [models.Index(fields=["message", "started_at"], name="send_attempt_message_idx")]

    def __str__(self) -> str:
        return f"attempt {self.number} of message {self.message_id}: {self.outcome}"


class MessageStatusEvent(models.Model):
    """Every status report as received, so late or out-of-order reports are kept."""
    team_scope = ProviderPath("provider")


    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="status_events")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE,
                                related_name="status_events")
    provider_message_id = models.CharField(max_length=128)
    status = models.CharField(max_length=12, choices=MessageStatus.choices)
    occurred_at = models.DateTimeField()
    error_code = models.CharField(max_length=32, blank=True)
    error_title = models.CharField(max_length=255, blank=True)
    error_detail = models.TextField(blank=True)
    applied = models.BooleanField(default=False, help_text="Whether it moved the message's status forward.")
    webhook_event = models.ForeignKey("WebhookEvent", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="status_events")
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        constraints = [
            # A redelivered report (providers do send duplicates) is the same row, not a second one.
            models.UniqueConstraint(fields=["provider", "provider_message_id", "status", "occurred_at"],
                                    name="status_event_unique_report"),
        ]
        indexes = [models.Index(fields=["provider", "provider_message_id"], name="status_event_lookup_idx")]

    def __str__(self) -> str:
        return f"{self.provider_message_id} {self.status}"


class ArchiveStatus(models.TextChoices):
    NONE = "none", "Not archived"
    PENDING = "pending", "Waiting for the archive"
    ARCHIVED = "archived", "Archived"


class Archivable(models.Model):
    """A row whose bytes go to the archive storage: where they went, or why they are still waiting."""

    archive_status = models.CharField(max_length=10, choices=ArchiveStatus.choices, default=ArchiveStatus.NONE)
    archive_path = models.CharField(max_length=500, blank=True,
                                    help_text="<bucket>/<object>: where the archive holds it. Objects stay where "
                                              "they were written, also when the contact is mapped later.")
    archive_attempts = models.PositiveIntegerField(default=0)
    archive_next_at = models.DateTimeField(null=True, blank=True,
                                           help_text="When the archive job tries again if it is still waiting.")
    archive_error = models.TextField(blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class Media(Archivable):
    team_scope = ProviderPath("message__provider")

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        FETCHED = "fetched", "Fetched"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="media")
    provider_media_id = models.CharField(max_length=255, blank=True)
    source_url = models.URLField(max_length=2000, blank=True)
    mime_type = models.CharField(max_length=100, blank=True)
    filename = models.CharField(max_length=255, blank=True)
    caption = models.TextField(blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="When the provider forgets the media id.")
    next_attempt_at = models.DateTimeField(null=True, blank=True,
                                           help_text="When the retry job tries the download again.")
    fetched_at = models.DateTimeField(null=True, blank=True)
    pending_content = models.BinaryField(null=True, blank=True, editable=False,
                                         help_text="The file while the archive storage cannot take it.")
    public_token = models.CharField(max_length=64, null=True, blank=True, unique=True,
                                    help_text="Serves an uploaded outbound file to the provider at an unguessable URL.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "media"
        indexes = [
            models.Index(fields=["state", "created_at"], name="media_state_idx"),
            models.Index(fields=["state", "next_attempt_at"], name="media_due_idx"),
            models.Index(fields=["archive_next_at"], condition=Q(archive_status="pending"),
                         name="media_archive_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.mime_type or 'media'} for message {self.message_id}"


class WebhookEvent(Archivable):
    """The inbox: every webhook request, stored raw before it is acknowledged."""
    team_scope = ProviderPath("provider")


    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected"

    provider = models.ForeignKey(Provider, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="webhook_events")
    kind = models.CharField(max_length=20, help_text="The provider kind named in the URL.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    signature_valid = models.BooleanField(null=True)
    http_status = models.PositiveSmallIntegerField(default=200, help_text="What we answered.")
    rejection_reason = models.CharField(max_length=255, blank=True)
    body = models.BinaryField(help_text="The body bytes exactly as received (only a prefix when rejected).")
    # Big: a refused request records the Content-Length it declared, whatever that was.
    body_size = models.PositiveBigIntegerField(default=0)
    content_type = models.CharField(max_length=100, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    delivery_id = models.CharField(max_length=128, blank=True, help_text="The provider's delivery id, if any.")
    duplicate_count = models.PositiveIntegerField(default=0)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    # Not indexed: searched by substring in the admin, and every index costs each webhook's INSERT.
    correlation_id = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    event_count = models.PositiveIntegerField(default=0, help_text="Normalized events parsed from it.")
    unrouted_to = models.CharField(
        max_length=255, blank=True,
        help_text="Numbers (e.g. Meta phone number ids) it named that no active provider has: kept, flagged, "
                  "and replayed when such a provider is added.",
    )
    notes = models.TextField(blank=True, help_text="Updates it carried that we keep but do not act on.")
    invalid_updates = models.JSONField(
        default=list, blank=True,
        help_text="Updates it carried that cannot be stored (unreadable, a field too long, of the wrong type or out "
                  "of range), each with its position and the reason; the other updates were applied.",
    )
    message_ids = models.CharField(max_length=1000, blank=True,
                                   help_text="The provider message ids it carried (the first ones, space-separated).")
    contacts = models.ManyToManyField("contacts.Contact", blank=True, related_name="webhook_events",
                                      help_text="Whose data it carried: decides its archive bucket and what an "
                                                "erasure removes.")
    body_pruned_at = models.DateTimeField(null=True, blank=True,
                                          help_text="When the body left the database (it is in the archive).")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When a drain may claim it (again) while it is pending or failed; empty on a failed event means it "
                  "was given up (a permanent error, or WEBHOOK_MAX_ATTEMPTS reached).",
    )
    claimed_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When a drain last claimed it; cleared when that attempt concludes (still set at the next claim: "
                  "the drain that held it stopped midway).",
    )
    # Archived into a bundle: the body is the compressed member at this byte range of the bundle's object.
    # (Not Positive*Field: their CHECK constraint makes adding the column scan the whole inbox under a lock.)
    archive_bundle = models.ForeignKey("ArchiveBundle", null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="webhook_events", db_index=False)
    archive_offset = models.BigIntegerField(null=True, blank=True,
                                            help_text="Where its compressed body starts in the bundle (bytes).")
    archive_length = models.IntegerField(null=True, blank=True, help_text="Its compressed body's length (bytes).")

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "delivery_id"], condition=~Q(delivery_id=""),
                                    name="webhook_event_unique_delivery"),
        ]
        indexes = [
            # The drain's claim and every count of what waits: only rows still to apply, oldest first, however
            # many were processed (few indexes: each one costs every webhook's INSERT).
            models.Index(fields=["received_at", "id"], condition=Q(status__in=["pending", "failed"]),
                         name="webhook_event_inbox_idx"),
            models.Index(fields=["archive_next_at"], condition=Q(archive_status="pending"),
                         name="webhook_event_archive_due_idx"),
            # Partial: a new row has no bundle yet, so the index costs nothing at the webhook's INSERT.
            models.Index(fields=["archive_bundle"], condition=Q(archive_bundle__isnull=False),
                         name="webhook_event_bundle_idx"),
            # The bodies whose archive failed and waits for its retry (/health/ counts them without reading the
            # hour of bodies that wait for their bundle, on time).
            models.Index(fields=["archive_next_at"], condition=Q(archive_status="pending", archive_attempts__gt=0),
                         name="webhook_event_retry_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} webhook {self.pk} ({self.status})"


class ArchiveBucket(models.Model):
    """A bucket we made: one per user, one per provider for contacts not mapped to a user. The record is the
    existence cache (no API call per message) and keeps names stable if the naming key changes."""

    backend = models.CharField(max_length=10, help_text="The storage backend that holds it.")
    owner_key = models.CharField(max_length=64, help_text="user:<id> or provider:<id>.")
    name = models.CharField(max_length=63)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="archive_buckets")
    provider = models.ForeignKey(Provider, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="archive_buckets")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["backend", "owner_key"], name="archive_bucket_unique_owner"),
            models.UniqueConstraint(fields=["backend", "name"], name="archive_bucket_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class ArchiveBundle(models.Model):
    """
    Webhook bodies of one bucket and hour archived as one object: each body is a gzip member of its own
    (a JSON line describing it, then the bytes as received), so the object as a whole is one gzip stream
    (`zcat` reads it) and a single body is one ranged read. Rewritten without a body whose row was deleted.
    """

    backend = models.CharField(max_length=10)
    location = models.CharField(max_length=600, unique=True, help_text="The bucket, a slash, the object's path.")
    bucket = models.CharField(max_length=63)
    window_start = models.DateTimeField(help_text="The start of the hour its bodies were received in.")
    members = models.PositiveIntegerField(default=0)
    size_bytes = models.PositiveBigIntegerField(default=0, help_text="The object's size, compressed.")
    body_bytes = models.PositiveBigIntegerField(default=0, help_text="The bodies' size as received.")
    created_at = models.DateTimeField(auto_now_add=True)
    rewritten_at = models.DateTimeField(null=True, blank=True,
                                        help_text="When it was written without the bodies deleted from the bundle "
                                                  "it replaces.")
    rewrite_next_at = models.DateTimeField(
        null=True, blank=True,
        help_text="Bodies of it were deleted: when the rewrite without them is (next) tried.")
    rewrite_attempts = models.PositiveIntegerField(default=0)
    rewrite_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-window_start", "-id"]
        indexes = [
            models.Index(fields=["rewrite_next_at"], condition=Q(rewrite_next_at__isnull=False),
                         name="archive_bundle_rewrite_idx"),
            models.Index(fields=["bucket"], name="archive_bundle_bucket_idx"),
        ]

    def __str__(self) -> str:
        return self.location


class StorageDeletion(models.Model):
    """An object or bucket that must leave the archive (an erasure, an expired export), kept until the
    storage confirms it: an outage delays a deletion, it never forgets one."""

    class Target(models.TextChoices):
        OBJECT = "object", "Object"
        BUCKET = "bucket", "Bucket with all its objects"

    backend = models.CharField(max_length=10)
    target = models.CharField(max_length=10, choices=Target.choices)
    name = models.CharField(max_length=600, help_text="The object's location or the bucket's name.")
    reason = models.CharField(max_length=100)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["next_attempt_at"], name="storage_deletion_due_idx")]

    def __str__(self) -> str:
        return f"delete {self.target} {self.name}"
