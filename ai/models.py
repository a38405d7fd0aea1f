"""
What the AI records: the switches and limits per provider, the intent taxonomy the business edits, one
row per AI call (the usage and cost ledger), each message's insight, reply suggestions and summaries.
"""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from core.access import ProviderPath


class Feature(models.TextChoices):
    TRANSCRIPTION = "transcription", "Transcription"
    CLASSIFICATION = "classification", "Classification"
    SUGGESTIONS = "suggestions", "Reply suggestions"
    SUMMARY = "summary", "Summary"
    ASSISTANT = "assistant", "Assistant"
    DRAFTING = "drafting", "Drafting"


class StepStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class ProviderAiSettings(models.Model):
    """Which AI features a provider's conversations get, for how many contacts, and at what daily cost."""
    team_scope = ProviderPath("provider")


    provider = models.OneToOneField("whatsapp.Provider", on_delete=models.CASCADE, related_name="ai_settings")
    transcription_enabled = models.BooleanField(default=True, help_text="Write out voice notes and audio files.")
    classification_enabled = models.BooleanField(
        default=True, help_text="Tag each inbound message with intent, sentiment, language and urgency.")
    suggestions_enabled = models.BooleanField(default=True, help_text="Offer operators up to three replies.")
    summaries_enabled = models.BooleanField(default=True, help_text="Summarise conversations (on request and "
                                                                   "when they go idle).")
    rollout_percent = models.PositiveSmallIntegerField(
        default=100, validators=[MaxValueValidator(100)],
        help_text="Share of contacts that get AI, 0-100. A contact's place is fixed, so raising the share "
                  "only adds contacts.")
    daily_budget = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal("0"))],
        help_text="US dollars per day (empty: no limit). Calls past it are skipped, with the reason.")
    redact_pii = models.BooleanField(
        default=True, help_text="Replace phone numbers, emails, card numbers and IBANs with placeholders "
                                "before anything is sent to the AI API.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "AI settings"
        verbose_name_plural = "AI settings"

    def __str__(self) -> str:
        return f"AI settings of {self.provider}"

    def feature_enabled(self, feature: str) -> bool:
        # A feature without a switch here (the assistant's) is switched in its own app's settings.
        field = _FEATURE_FIELD.get(feature)
        return field is None or bool(getattr(self, f"{field}_enabled"))


_FEATURE_FIELD = {Feature.TRANSCRIPTION: "transcription", Feature.CLASSIFICATION: "classification",
                  Feature.SUGGESTIONS: "suggestions", Feature.SUMMARY: "summaries"}


class IntentCategory(models.Model):
    """One intent of the taxonomy the classifier chooses from."""

    name = models.SlugField(max_length=40, unique=True, help_text="Short name the model answers with, "
                                                                  "e.g. complaint.")
    description = models.CharField(max_length=300, help_text="What a message of this intent is.")
    examples = models.TextField(blank=True, help_text="A few example messages, one per line, any language.")
    is_active = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "name"]
        verbose_name = "intent"

    def __str__(self) -> str:
        return self.name

    def example_lines(self) -> list[str]:
        return [line.strip() for line in self.examples.splitlines() if line.strip()]


class AiCall(models.Model):
    """One call to the AI API (or one call not made: skipped with the reason): the ledger of usage and cost."""
    team_scope = ProviderPath("provider")


    class Status(models.TextChoices):
        OK = "ok", "OK"
        FAILED = "failed", "Failed"
        RETRY = "retry", "Failed, will retry"
        SKIPPED = "skipped", "Skipped"

    feature = models.CharField(max_length=16, choices=Feature.choices)
    provider = models.ForeignKey("whatsapp.Provider", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    message = models.ForeignKey("whatsapp.Message", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="ai_calls")
    conversation = models.ForeignKey("whatsapp.Conversation", null=True, blank=True, on_delete=models.CASCADE,
                                     related_name="ai_calls")
    status = models.CharField(max_length=8, choices=Status.choices)
    reason = models.CharField(max_length=500, blank=True, help_text="Why it failed or was skipped.")
    model = models.CharField(max_length=100, blank=True)
    prompt_version = models.CharField(max_length=32, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    audio_seconds = models.FloatField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"),
                               help_text="US dollars, from the prices in settings.")
    latency_ms = models.PositiveIntegerField(default=0)
    attempt = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "AI call"
        indexes = [models.Index(fields=["provider", "created_at"], name="ai_call_provider_time_idx")]

    def __str__(self) -> str:
        return f"{self.get_feature_display()} {self.status} ({self.created_at:%Y-%m-%d %H:%M:%S})"


class MessageInsight(models.Model):
    """What the AI made of one inbound message. The headline values are copied onto the message (transcript,
    intent, sentiment, language) for the conversation views and filters."""
    team_scope = ProviderPath("message__provider")


    message = models.OneToOneField("whatsapp.Message", on_delete=models.CASCADE, related_name="insight")
    transcription_status = models.CharField(max_length=8, choices=StepStatus.choices, blank=True)
    transcription_error = models.CharField(max_length=500, blank=True)
    transcript_language = models.CharField(max_length=16, blank=True)
    audio_seconds = models.FloatField(null=True, blank=True)
    transcription_model = models.CharField(max_length=100, blank=True)
    transcription_cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    classification_status = models.CharField(max_length=8, choices=StepStatus.choices, blank=True)
    classification_error = models.CharField(max_length=500, blank=True)
    intent = models.CharField(max_length=40, blank=True)
    sentiment = models.CharField(max_length=8, blank=True)
    sentiment_score = models.FloatField(null=True, blank=True)
    language = models.CharField(max_length=16, blank=True)
    urgency = models.CharField(max_length=8, blank=True)
    extracted = models.JSONField(default=dict, blank=True, help_text="Dates, amounts and names of things.")
    classification_model = models.CharField(max_length=100, blank=True)
    prompt_version = models.CharField(max_length=32, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Failed attempts of the current step.")
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When the current step is retried.")
    claimed_until = models.DateTimeField(null=True, blank=True, help_text="A worker is on it until then.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "message insight"

    def __str__(self) -> str:
        return f"Insight of message {self.message_id}"


class AiRequest(models.Model):
    """Suggestions or a summary someone asked for: made by a worker, so the page or API client that asked
    polls this row instead of holding a web process while the model thinks."""
    team_scope = ProviderPath("conversation__provider")


    class Kind(models.TextChoices):
        SUGGESTIONS = "suggestions", "Reply suggestions"
        SUMMARY = "summary", "Summary"

    conversation = models.ForeignKey("whatsapp.Conversation", on_delete=models.CASCADE, related_name="ai_requests")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    status = models.CharField(max_length=8, choices=StepStatus.choices, default=StepStatus.PENDING)
    error = models.CharField(max_length=500, blank=True)
    trigger = models.CharField(max_length=8, blank=True, help_text="manual, api or idle")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True, help_text="When a worker took it (once).")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "AI request"
        indexes = [models.Index(fields=["conversation", "kind", "-created_at"], name="ai_request_conv_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for conversation {self.conversation_id} ({self.status})"


class ReplySuggestion(models.Model):
    """A reply an operator may use: free text inside the 24-hour window, an approved template outside it."""
    team_scope = ProviderPath("conversation__provider")


    conversation = models.ForeignKey("whatsapp.Conversation", on_delete=models.CASCADE,
                                     related_name="reply_suggestions")
    request = models.ForeignKey(AiRequest, on_delete=models.CASCADE, related_name="suggestions")
    for_message = models.ForeignKey("whatsapp.Message", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+", help_text="The latest message when it was made.")
    position = models.PositiveSmallIntegerField(default=1)
    text = models.TextField(blank=True)
    language = models.CharField(max_length=16, blank=True)
    template = models.ForeignKey("templates_app.MessageTemplate", null=True, blank=True,
                                 on_delete=models.CASCADE, related_name="+")
    template_variables = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "position"]

    def __str__(self) -> str:
        return (self.text or (self.template and self.template.name) or "suggestion")[:60]


class ConversationSummary(models.Model):
    team_scope = ProviderPath("conversation__provider")

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Asked for in the admin"
        API = "api", "Asked for by API"
        IDLE = "idle", "Conversation went idle"

    conversation = models.ForeignKey("whatsapp.Conversation", on_delete=models.CASCADE, related_name="summaries")
    request = models.OneToOneField(AiRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="summary")
    text = models.TextField()
    language = models.CharField(max_length=16, blank=True)
    first_message = models.ForeignKey("whatsapp.Message", null=True, on_delete=models.SET_NULL, related_name="+")
    last_message = models.ForeignKey("whatsapp.Message", null=True, on_delete=models.SET_NULL, related_name="+")
    message_count = models.PositiveIntegerField(default=0)
    trigger = models.CharField(max_length=8, choices=Trigger.choices)
    model = models.CharField(max_length=100, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "conversation summaries"

    def __str__(self) -> str:
        return f"Summary of conversation {self.conversation_id} ({self.message_count} messages)"


class AiCircuit(models.Model):
    """The AI API's circuit breaker, one row, shared by every worker, the admin and /health/."""

    class State(models.TextChoices):
        CLOSED = "closed", "Closed"
        OPEN = "open", "Open"
        HALF_OPEN = "half_open", "Half open (probing)"

    name = models.CharField(max_length=20, primary_key=True, default="openai")
    state = models.CharField(max_length=10, choices=State.choices, default=State.CLOSED)
    failures = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    retry_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        verbose_name = "AI circuit"

    def __str__(self) -> str:
        return f"AI circuit {self.state}"
