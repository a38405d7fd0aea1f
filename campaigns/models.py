"""
Campaigns: one message to many people, at the right time for each, with a record per recipient.

    Segment (filters, evaluated at launch) or AudienceImport (a CSV with opt-in proof and per-row values)
    -> Campaign (provider, schedule, business hours, guards, A/B variants, holdout, SMS fallback)
    -> CampaignRecipient, one per person and run, made before anything is sent: due at the person's own
       local time, then queued (its Message made in the same transaction), sent, delivered, read, replied...
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.access import ProviderPath


class Segment(models.Model):
    """A saved audience: filters over contacts, evaluated again each time a campaign launches."""

    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=255, blank=True)
    filters = models.JSONField(default=dict, blank=True, help_text="See campaigns.services.segments.FILTERS.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AudienceImport(models.Model):
    """A CSV list of people: imported whole or not at all, bad rows reported by line."""
    team_scope = ProviderPath("provider")


    class Status(models.TextChoices):
        IMPORTED = "imported", "Imported"
        REFUSED = "refused", "Refused (bad rows; nothing imported)"

    name = models.CharField(max_length=100)
    provider = models.ForeignKey("whatsapp.Provider", on_delete=models.CASCADE, related_name="+",
                                 help_text="The number the list will be messaged from (its contacts are resolved "
                                           "as that provider's).")
    status = models.CharField(max_length=10, choices=Status.choices)
    file_name = models.CharField(max_length=255, blank=True)
    columns = models.JSONField(default=list, blank=True, help_text="The CSV's columns, as variables offer them.")
    rows_total = models.PositiveIntegerField(default=0)
    rows_imported = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="[{line, reason}] of the rows refused.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.rows_imported} people)"


class AudienceMember(models.Model):
    audience = models.ForeignKey(AudienceImport, on_delete=models.CASCADE, related_name="members")
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="+")
    line = models.PositiveIntegerField(help_text="The CSV line it came from.")
    values = models.JSONField(default=dict, blank=True, help_text="The row's other columns: {row.<column>}.")
    opt_in_proof = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["audience", "contact"], name="audience_member_unique")]

    def __str__(self) -> str:
        return f"line {self.line} of {self.audience}"


class Campaign(models.Model):
    team_scope = ProviderPath("provider")

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"

    class Recurrence(models.TextChoices):
        ONCE = "once", "Once"
        DAILY = "daily", "Every day"
        WEEKLY = "weekly", "Every week"

    name = models.CharField(max_length=120)
    provider = models.ForeignKey("whatsapp.Provider", on_delete=models.PROTECT, related_name="campaigns")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    segment = models.ForeignKey(Segment, null=True, blank=True, on_delete=models.PROTECT, related_name="campaigns")
    audience = models.ForeignKey(AudienceImport, null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="campaigns", help_text="A CSV list instead of a segment.")
    # Schedule: the first run starts at start_at (empty: at launch); each person gets it at their own local time.
    start_at = models.DateTimeField(null=True, blank=True)
    recurrence = models.CharField(max_length=8, choices=Recurrence.choices, default=Recurrence.ONCE)
    recurrence_until = models.DateTimeField(null=True, blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True, help_text="When the next run's recipients are made.")
    runs = models.PositiveIntegerField(default=0)
    send_window_start = models.TimeField(null=True, blank=True,
                                         help_text="Business hours in each person's time zone (empty: any time).")
    send_window_end = models.TimeField(null=True, blank=True)
    send_days = models.CharField(max_length=7, default="0123456",
                                 help_text="Days sent on, in each person's time zone: 0 is Monday, 6 Sunday.")
    default_time_zone = models.CharField(max_length=64, blank=True,
                                         help_text="For people whose zone is unknown (empty: the platform's).")
    at_best_hour = models.BooleanField(default=False, help_text="Send at the hour each person has most often "
                                                                "read our messages before (within the window).")
    holdout_percent = models.PositiveSmallIntegerField(default=0, help_text="Kept out as a control group.")
    test_percent = models.PositiveSmallIntegerField(
        default=100, help_text="Share of the audience the variants are tried on; the rest waits for the winner.")
    conversion_keyword = models.CharField(max_length=64, blank=True,
                                          help_text="A reply with this word counts as a conversion.")
    # SMS fallback (through a Twilio provider) for people WhatsApp cannot reach.
    sms_fallback_provider = models.ForeignKey("whatsapp.Provider", null=True, blank=True, on_delete=models.PROTECT,
                                              related_name="+")
    sms_fallback_text = models.TextField(blank=True)
    sms_fallback_after_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Also fall back when WhatsApp has not delivered within this long.")
    winner = models.ForeignKey("CampaignVariant", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+", help_text="The variant sent to the rest.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    launched_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("control_campaign", "Can launch, pause, resume and cancel campaigns")]
        constraints = [
            models.CheckConstraint(condition=Q(holdout_percent__lte=50), name="campaign_holdout_at_most_half"),
            models.CheckConstraint(condition=Q(test_percent__gte=1, test_percent__lte=100),
                                   name="campaign_test_percent_range"),
        ]

    def __str__(self) -> str:
        return self.name


class CampaignVariant(models.Model):
    """What is sent: an approved template with values per recipient, or free text (open windows only)."""
    team_scope = ProviderPath("campaign__provider")


    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="variants")
    name = models.CharField(max_length=40, default="A")
    split_percent = models.PositiveSmallIntegerField(default=100, help_text="Share of those not held out.")
    template = models.ForeignKey("templates_app.MessageTemplate", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="+")
    variables = models.JSONField(default=dict, blank=True,
                                 help_text='Values per parameter, e.g. {"body": {"1": "{contact.first_name|there}"}}: '
                                           "{contact.<field>}, {contact.attributes.<key>} and {row.<column>} "
                                           "are filled per recipient.")
    text = models.TextField(blank=True, help_text="Free text instead of a template (placeholders as above).")

    class Meta:
        ordering = ["campaign", "name"]
        constraints = [models.UniqueConstraint(fields=["campaign", "name"], name="campaign_variant_unique_name")]

    def __str__(self) -> str:
        return f"{self.campaign} / {self.name}"


class MarketingSuppression(models.Model):
    """A person WhatsApp held marketing back from (its per-person cap): left out of campaigns until `until`."""
    team_scope = ProviderPath("provider")


    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="+")
    provider = models.ForeignKey("whatsapp.Provider", on_delete=models.CASCADE, related_name="+")
    until = models.DateTimeField()
    error_code = models.CharField(max_length=32)
    strikes = models.PositiveSmallIntegerField(default=1, help_text="Caps in a row: each doubles the wait.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["contact", "provider"], name="suppression_unique")]

    def __str__(self) -> str:
        return f"{self.contact} until {self.until:%Y-%m-%d %H:%M}"


class CampaignRecipient(models.Model):
    team_scope = ProviderPath("campaign__provider")

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for its time"
        SKIPPED = "skipped", "Skipped"
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        READ = "read", "Read"
        REPLIED = "replied", "Replied"
        FAILED = "failed", "Failed"
        OPTED_OUT = "opted_out", "Opted out"
        HELD_OUT = "held_out", "Held out (control group)"
        CANCELLED = "cancelled", "Cancelled"

    class Group(models.TextChoices):
        TEST = "test", "Test (the variants)"
        REST = "rest", "Rest (the winner)"
        HOLDOUT = "holdout", "Holdout"

    class FallbackStatus(models.TextChoices):
        NONE = "", "—"
        SKIPPED = "skipped", "No SMS (see why)"
        SENDING = "sending", "SMS being sent (or outcome unknown)"
        SENT = "sent", "SMS sent"
        FAILED = "failed", "SMS failed"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="recipients")
    run = models.PositiveIntegerField(default=1)
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="+")
    variant = models.ForeignKey(CampaignVariant, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    group = models.CharField(max_length=8, choices=Group.choices, default=Group.TEST,
                             help_text="A/B group: the test (compared), the rest (the winner, later), the holdout.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    skip_reason = models.CharField(max_length=255, blank=True)
    time_zone = models.CharField(max_length=64, blank=True)
    due_at = models.DateTimeField(null=True, blank=True, help_text="When it may be sent (its local time).")
    values = models.JSONField(default=dict, blank=True, help_text="Its CSV row's values.")
    message = models.OneToOneField("whatsapp.Message", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="campaign_recipient")
    queued_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    replied_at = models.DateTimeField(null=True, blank=True)
    converted_at = models.DateTimeField(null=True, blank=True)
    opted_out_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    fallback_status = models.CharField(max_length=10, choices=FallbackStatus.choices, default="", blank=True)
    fallback_reason = models.CharField(max_length=64, blank=True)
    fallback_sid = models.CharField(max_length=64, blank=True)
    fallback_sent_at = models.DateTimeField(null=True, blank=True)
    fallback_error = models.CharField(max_length=255, blank=True)
    fallback_cost = models.DecimalField(max_digits=8, decimal_places=5, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # One record per person and run: a relaunch or a second dispatcher can never add a second.
            models.UniqueConstraint(fields=["campaign", "run", "contact"], name="recipient_unique_per_run"),
        ]
        indexes = [
            # The dispatcher's claim: a campaign's pending recipients, earliest due first.
            models.Index(fields=["campaign", "due_at", "id"], name="recipient_due_idx",
                         condition=Q(status="pending")),
            models.Index(fields=["campaign", "status"], name="recipient_status_idx"),
            # A reply's campaign: the person's latest campaign message.
            models.Index(fields=["contact", "-queued_at"], name="recipient_contact_idx",
                         condition=Q(queued_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} -> {self.contact}"
