"""
What the assistant keeps for the business's own users (contacts mapped to a Django user): projects, goals,
tasks, notes, content requests and reminders, each owned by one user; the user's assistant preferences;
the per-provider notification policy; the state of an unfinished exchange on a conversation; and one
turn per inbound message it acted on (the audit of what it understood and did).
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from core.access import ProviderPath


class Owned(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Project(Owned):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    archived = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="project_unique_owner_name")]

    def __str__(self) -> str:
        return self.name


class Goal(Owned):
    title = models.CharField(max_length=300)
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="goals")
    target_date = models.DateField(null=True, blank=True)
    achieved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["target_date", "title"]

    def __str__(self) -> str:
        return self.title


class Priority(models.TextChoices):
    LOW = "low", "Low"
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"
    URGENT = "urgent", "Urgent"


class Task(Owned):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"

    title = models.CharField(max_length=300)
    details = models.TextField(blank=True)
    priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.NORMAL)
    due_date = models.DateField(null=True, blank=True, help_text="In the owner's time zone.")
    due_time = models.TimeField(null=True, blank=True, help_text="In the owner's time zone; empty: any time.")
    due_at = models.DateTimeField(null=True, blank=True, editable=False,
                                  help_text="The due date and time as an instant (end of day when no time).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    completed_at = models.DateTimeField(null=True, blank=True)
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks")
    source_message = models.ForeignKey("whatsapp.Message", null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="+", help_text="The WhatsApp message it came from.")

    class Meta:
        ordering = ["status", "due_at", "-created_at"]
        indexes = [models.Index(fields=["owner", "status", "due_at"], name="task_owner_status_due_idx")]
        permissions = [("see_everyones_items",
                        "Can see every user's projects, goals, tasks, notes, content requests and reminders")]

    def __str__(self) -> str:
        return self.title


class Note(Owned):
    text = models.TextField()
    tags = models.JSONField(default=list, blank=True)
    source_message = models.ForeignKey("whatsapp.Message", null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="+", help_text="The WhatsApp message it came from.")
    transcript = models.TextField(blank=True, help_text="The voice note's transcript, when it came from one.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="note_owner_time_idx")]

    def __str__(self) -> str:
        return self.text[:60]


class ContentRequest(Owned):
    """A piece of writing the user asked for: filled in over the conversation, then drafted."""

    class Status(models.TextChoices):
        NEEDS_INPUT = "needs_input", "Waiting for details"
        DRAFTING = "drafting", "Being drafted"
        READY = "ready", "Draft ready"
        DONE = "done", "Done"
        FAILED = "failed", "Drafting failed"
        CANCELLED = "cancelled", "Cancelled"

    brief = models.TextField(help_text="What to write, in the user's words.")
    platform = models.CharField(max_length=40, blank=True, help_text="linkedin, instagram, x, facebook, blog, email")
    length = models.CharField(max_length=20, blank=True, help_text="short, medium or long")
    tone = models.CharField(max_length=40, blank=True, help_text="professional, friendly, playful...")
    topic = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.NEEDS_INPUT)
    draft = models.TextField(blank=True)
    error = models.CharField(max_length=300, blank=True)
    drafted_at = models.DateTimeField(null=True, blank=True)
    source_message = models.ForeignKey("whatsapp.Message", null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="+")
    conversation = models.ForeignKey("whatsapp.Conversation", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+", help_text="Where questions and the ready notice go.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.brief[:60]


class Reminder(Owned):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    task = models.ForeignKey(Task, null=True, blank=True, on_delete=models.CASCADE, related_name="reminders")
    text = models.CharField(max_length=500, blank=True)
    due_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    sent_at = models.DateTimeField(null=True, blank=True)
    message = models.ForeignKey("whatsapp.Message", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+", help_text="The message that carried it.")
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["due_at"]
        indexes = [models.Index(fields=["due_at"], name="reminder_pending_due_idx",
                                condition=Q(status="pending"))]

    def __str__(self) -> str:
        return self.text or (self.task.title if self.task_id else "reminder")


class AssistantProfile(models.Model):
    """One user's assistant preferences."""

    class Weekday(models.IntegerChoices):
        MONDAY = 0, "Monday"
        TUESDAY = 1, "Tuesday"
        WEDNESDAY = 2, "Wednesday"
        THURSDAY = 3, "Thursday"
        FRIDAY = 4, "Friday"
        SATURDAY = 5, "Saturday"
        SUNDAY = 6, "Sunday"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assistant_profile")
    time_zone = models.CharField(max_length=64, blank=True,
                                 help_text="IANA name, e.g. Europe/Madrid; empty: from the phone number's region.")
    daily_summary = models.BooleanField(default=False, help_text="A summary of the day's tasks every morning.")
    daily_summary_time = models.TimeField(default="08:00", help_text="Local time of the daily summary.")
    weekly_summary = models.BooleanField(default=False)
    weekly_summary_day = models.PositiveSmallIntegerField(choices=Weekday.choices, default=Weekday.MONDAY)
    reminders = models.BooleanField(default=True, help_text="Remind of tasks at their due time.")
    quiet_hours_start = models.TimeField(null=True, blank=True,
                                         help_text="Local time from which nothing proactive is sent.")
    quiet_hours_end = models.TimeField(null=True, blank=True, help_text="Local time when quiet hours end.")
    last_daily_summary_on = models.DateField(null=True, blank=True, editable=False)
    last_weekly_summary_on = models.DateField(null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Assistant preferences of {self.user}"


class Preset(models.TextChoices):
    MINIMAL = "minimal", "Minimal: act silently, answer questions, ask only what is missing"
    CONVERSATIONAL = "conversational", "Conversational: also confirm each task command in one line"


class AssistantPolicy(models.Model):
    """How much the assistant says on one provider's conversations (see assistant.policy for the rules)."""
    team_scope = ProviderPath("provider")


    provider = models.OneToOneField("whatsapp.Provider", on_delete=models.CASCADE, related_name="assistant_policy")
    enabled = models.BooleanField(default=True, help_text="Act on mapped users' messages on this number.")
    preset = models.CharField(max_length=16, choices=Preset.choices, default=Preset.MINIMAL)
    note_reaction = models.CharField(max_length=8, blank=True,
                                     help_text="An emoji reacting to a stored note (empty: no reaction at all).")
    overrides = models.JSONField(default=dict, blank=True,
                                 help_text='Per outcome, what to send instead of the preset\'s rule, e.g. '
                                           '{"task_created": "confirm", "note_saved": "react"}.')
    handoff_minutes = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(7 * 24 * 60)],
        help_text="How long the assistant stays silent on a conversation after a person replied there.")
    reminder_template = models.ForeignKey(
        "templates_app.MessageTemplate", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="An approved utility template for reminders outside the 24-hour window; its first body "
                  "variable gets the reminder's text.")
    summary_template = models.ForeignKey(
        "templates_app.MessageTemplate", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="An approved utility template for summaries outside the window; its first body variable "
                  "gets the summary.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "assistant policy"
        verbose_name_plural = "assistant policies"

    def __str__(self) -> str:
        return f"Assistant policy of {self.provider}"


class ConversationState(models.Model):
    """The assistant's memory of one conversation: what it made last, the question it is waiting on (which
    expires), and whether a person took over."""

    conversation = models.OneToOneField("whatsapp.Conversation", on_delete=models.CASCADE, primary_key=True,
                                        related_name="assistant_state")
    last_task = models.ForeignKey(Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    last_note = models.ForeignKey(Note, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    pending = models.JSONField(default=dict, blank=True,
                               help_text="The clarification waiting for an answer: request, field, choices.")
    pending_expires_at = models.DateTimeField(null=True, blank=True)
    silenced_until = models.DateTimeField(null=True, blank=True, help_text="A person replied: no assistant "
                                                                           "until then.")
    silenced_by = models.CharField(max_length=150, blank=True)
    unavailable_notice_at = models.DateTimeField(
        null=True, blank=True, help_text="When the user was told the assistant is unavailable (once per outage).")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Assistant state of conversation {self.conversation_id}"


class Turn(models.Model):
    """One inbound message the assistant handled: what it understood, did and said."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        WAITING = "waiting", "Waiting for the AI"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        SILENCED = "silenced", "Skipped: a person is handling the conversation"
        SKIPPED = "skipped", "Skipped"

    message = models.OneToOneField("whatsapp.Message", on_delete=models.CASCADE, related_name="assistant_turn")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    outcome = models.CharField(max_length=32, blank=True, help_text="What it came to: task_created, note_saved...")
    tool_calls = models.JSONField(default=list, blank=True, help_text="The tools called, with their arguments "
                                                                      "and results.")
    reply = models.ForeignKey("whatsapp.Message", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", help_text="What it sent back, if anything.")
    error = models.CharField(max_length=500, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["next_attempt_at"], name="turn_waiting_idx", condition=Q(status="waiting"))]

    def __str__(self) -> str:
        return f"Turn on message {self.message_id}: {self.status}"
