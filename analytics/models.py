"""
Counts kept exact and cheap (the squashed-count pattern). Every change that a figure counts writes a
small `CountDelta` row in the same transaction (database triggers on the tables counted, so every write
path counts, batch updates included); a beat job folds the deltas into `HourlyCount` and
`TemplateDailyCount` under a lock. Writers only ever insert, so no two of them wait on one hot row, and a
figure is always the squashed row plus whatever deltas have not been folded in yet.

Metric names: `received:<type>`, `sent:<type>`, `delivered`, `read`, `failed:<error code>`,
`dead_letter`, `contacts` (customers who wrote), `new_contacts`, `conversations_opened`,
`first_response` and `reply_time` (count and total seconds), `opt_outs`, `ai_calls:<feature>` (count and
total cost), `intent:<name>`, `sentiment:<label>`; per template and day: `sent`, `delivered`, `read`,
`replied`, `failed`, `opted_out`.
"""

from django.db import models

from core.access import ProviderPath

# Ids are kept as plain columns (no foreign-key constraint): the counts outlive what they count, and the
# triggers that write them should not pay for constraint checks.
_LOOSE = {"null": True, "blank": True, "on_delete": models.DO_NOTHING, "db_constraint": False, "db_index": False,
          "related_name": "+"}


class CountDelta(models.Model):
    provider = models.ForeignKey("whatsapp.Provider", **_LOOSE)
    template = models.ForeignKey("templates_app.MessageTemplate", **_LOOSE,
                                 help_text="Set for a per-template figure (period is then a UTC day).")
    period = models.DateTimeField(help_text="Start of the hour (or of the day for a template), UTC.")
    metric = models.CharField(max_length=80)
    count = models.IntegerField()
    total = models.DecimalField(max_digits=20, decimal_places=6, default=0)

    class Meta:
        verbose_name = "count not folded in yet"

    def __str__(self) -> str:
        return f"{self.metric} @ {self.period:%Y-%m-%d %H:00}: {self.count:+d}"


class HourlyCount(models.Model):
    team_scope = ProviderPath("provider")

    provider = models.ForeignKey("whatsapp.Provider", **_LOOSE)
    hour = models.DateTimeField(help_text="Start of the hour, UTC.")
    metric = models.CharField(max_length=80)
    count = models.BigIntegerField(default=0)
    total = models.DecimalField(max_digits=20, decimal_places=6, default=0,
                                help_text="Seconds for response times, US dollars for AI cost.")

    class Meta:
        verbose_name = "hourly count"
        constraints = [
            models.UniqueConstraint(fields=["provider", "hour", "metric"], nulls_distinct=False,
                                    name="hourly_count_unique"),
        ]
        indexes = [models.Index(fields=["hour"], name="hourly_count_hour_idx")]

    def __str__(self) -> str:
        return f"{self.metric} @ {self.hour:%Y-%m-%d %H:00}: {self.count}"


class TemplateDailyCount(models.Model):
    """What became of the messages sent with a template, by the UTC day they were queued (a cohort: the
    read rate of Monday's sends stays Monday's, however late the reads come)."""
    team_scope = ProviderPath("provider")


    template = models.ForeignKey("templates_app.MessageTemplate", **_LOOSE)
    provider = models.ForeignKey("whatsapp.Provider", **_LOOSE)
    day = models.DateTimeField(help_text="Start of the UTC day the messages were queued.")
    metric = models.CharField(max_length=80)
    count = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "template daily count"
        constraints = [
            models.UniqueConstraint(fields=["template", "provider", "day", "metric"], nulls_distinct=False,
                                    name="template_daily_count_unique"),
        ]
        indexes = [models.Index(fields=["day"], name="template_daily_count_day_idx")]

    def __str__(self) -> str:
        return f"template {self.template_id} {self.metric} @ {self.day:%Y-%m-%d}: {self.count}"


class ContactHour(models.Model):
    """One row per customer who wrote in an hour (a conversation is one customer on one provider): how
    distinct customers are counted exactly, per hour and over any range."""
    team_scope = ProviderPath("provider")


    provider = models.ForeignKey("whatsapp.Provider", **_LOOSE)
    hour = models.DateTimeField()
    conversation = models.ForeignKey("whatsapp.Conversation", **_LOOSE)

    class Meta:
        constraints = [
            # Hour first: the dashboard and the rebuild read ranges of hours.
            models.UniqueConstraint(fields=["hour", "provider", "conversation"], name="contact_hour_unique"),
        ]

    def __str__(self) -> str:
        return f"conversation {self.conversation_id} wrote @ {self.hour:%Y-%m-%d %H:00}"


class TemplateReply(models.Model):
    """A template message the customer answered (within a day of it): credited once, to the latest one."""

    message = models.OneToOneField("whatsapp.Message", primary_key=True, on_delete=models.DO_NOTHING,
                                   db_constraint=False, related_name="+")
    replied_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"message {self.message_id} answered {self.replied_at:%Y-%m-%d %H:%M}"
