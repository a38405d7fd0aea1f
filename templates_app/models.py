from django.conf import settings
from django.db import models

from core.access import ProviderPath
from whatsapp.providers.events import TemplateStatus


class MessageTemplate(models.Model):
    team_scope = ProviderPath("provider")

    class Category(models.TextChoices):
        MARKETING = "marketing", "Marketing"
        UTILITY = "utility", "Utility"
        AUTHENTICATION = "authentication", "Authentication"

    class ParameterFormat(models.TextChoices):
        POSITIONAL = "positional", "Positional ({{1}})"
        NAMED = "named", "Named ({{name}})"

    provider = models.ForeignKey("whatsapp.Provider", on_delete=models.CASCADE, related_name="templates")
    name = models.CharField(max_length=512)
    language = models.CharField(max_length=15, help_text="e.g. en_US")
    category = models.CharField(max_length=16, choices=Category.choices, default=Category.UTILITY)
    parameter_format = models.CharField(max_length=12, choices=ParameterFormat.choices,
                                        default=ParameterFormat.POSITIONAL)
    components = models.JSONField(default=list, blank=True, help_text="Header, body, footer and buttons.")
    examples = models.JSONField(default=dict, blank=True, help_text="An example value for every parameter.")
    version = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=24, choices=TemplateStatus.choices, default=TemplateStatus.DRAFT)
    provider_template_id = models.CharField(max_length=64, blank=True)
    provider_template_name = models.CharField(
        max_length=530, blank=True, help_text="The name at the provider: the name for version 1, <name>_v<N> for "
                                              "later versions (each version is a template of its own there).")
    rejection_reason = models.TextField(blank=True, help_text="The provider's reason for a rejection or a pause.")
    provider_recommendation = models.TextField(blank=True, help_text="What the provider advises doing about it.")
    quality = models.CharField(max_length=16, blank=True)
    managed_elsewhere = models.BooleanField(
        default=False, help_text="Imported from a provider that manages its templates itself (e.g. a Chatwoot "
                                 "inbox): read-only here, its status mirrors the provider's.")
    review_note = models.TextField(blank=True, help_text="The internal reviewer's reason for a rejection.")
    submission_error = models.TextField(blank=True, help_text="Why the last submission to the provider failed.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    submitted_at = models.DateTimeField(null=True, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    sent_to_provider_at = models.DateTimeField(null=True, blank=True)
    # Submission to the provider after the internal approval: retried with backoff by a beat job, so an
    # approval is never lost to a broker or provider outage.
    submission_attempts = models.PositiveSmallIntegerField(default=0)
    next_submission_at = models.DateTimeField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True, help_text="When the provider approved it.")
    synced_at = models.DateTimeField(null=True, blank=True, help_text="When the sync job last read it.")
    # When the provider's word last changed the status here: a sync whose listing was read before that
    # (a webhook arrived while it paged) does not overwrite the newer status.
    provider_status_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "name", "language", "version"],
                                    name="template_unique_provider_name_language_version"),
        ]
        indexes = [
            models.Index(fields=["status", "-updated_at"], name="template_status_idx"),
            models.Index(fields=["provider_template_id"], name="template_provider_id_idx"),
            models.Index(fields=["next_submission_at"], name="template_submission_due_idx",
                         condition=models.Q(next_submission_at__isnull=False)),
        ]
        permissions = [("review_messagetemplate", "Can approve or reject templates in internal review")]
        ordering = ["name", "language", "-version"]

    def __str__(self) -> str:
        return f"{self.name} [{self.language}] v{self.version}"

    @property
    def is_sendable(self) -> bool:
        return self.status == TemplateStatus.APPROVED


class TemplateAwaitingReview(MessageTemplate):
    """The admin's "Templates awaiting review" screen: the templates in internal review."""

    class Meta:
        proxy = True
        verbose_name = "template awaiting review"
        verbose_name_plural = "templates awaiting review"
