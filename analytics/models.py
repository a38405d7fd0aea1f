from django.db import models


class HourlyStats(models.Model):
    """One row per provider and hour; re-running the rollup for an hour rewrites the same row."""

    provider = models.ForeignKey("whatsapp.Provider", on_delete=models.CASCADE, related_name="hourly_stats")
    hour = models.DateTimeField(help_text="Start of the hour, UTC.")
    received = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    delivered = models.PositiveIntegerField(default=0)
    read = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    unique_contacts = models.PositiveIntegerField(default=0)
    avg_first_response_seconds = models.FloatField(null=True, blank=True)
    p95_first_response_seconds = models.FloatField(null=True, blank=True)
    error_rate = models.FloatField(default=0.0)
    webhook_events = models.PositiveIntegerField(default=0)
    webhook_failures = models.PositiveIntegerField(default=0)
    ai_calls = models.PositiveIntegerField(default=0)
    ai_cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "hourly stats"
        ordering = ["-hour"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "hour"], name="hourly_stats_unique_provider_hour"),
        ]
        indexes = [models.Index(fields=["-hour"], name="hourly_stats_hour_idx")]

    def __str__(self) -> str:
        return f"{self.provider_id} @ {self.hour:%Y-%m-%d %H:00}"
