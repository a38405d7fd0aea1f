from django.conf import settings
from django.db import models

from whatsapp.providers.events import IdentityKind


class Contact(models.Model):
    class Consent(models.TextChoices):
        UNKNOWN = "unknown", "Unknown"
        OPTED_IN = "opted_in", "Opted in"
        OPTED_OUT = "opted_out", "Opted out"

    profile_name = models.CharField(max_length=255, blank=True)
    consent = models.CharField(max_length=10, choices=Consent.choices, default=Consent.UNKNOWN)
    consent_changed_at = models.DateTimeField(null=True, blank=True)
    consent_source = models.CharField(max_length=32, blank=True, help_text="keyword, provider error, admin, API")
    language = models.CharField(max_length=16, blank=True)
    time_zone = models.CharField(max_length=64, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    is_ignored = models.BooleanField(default=False, help_text="Left out of the unmapped-contacts queue.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-last_seen_at"], name="contact_last_seen_idx"),
            models.Index(fields=["consent"], name="contact_consent_idx"),
        ]

    def __str__(self) -> str:
        return self.profile_name or f"Contact {self.pk}"


class ContactIdentity(models.Model):
    """How a provider names a person. A phone number is only one kind among several."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="identities")
    kind = models.CharField(max_length=24, choices=IdentityKind.choices)
    value = models.CharField(max_length=255)
    scope = models.CharField(max_length=64, blank=True,
                             help_text="Business account for business-scoped ids; empty for global kinds.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "contact identities"
        constraints = [
            models.UniqueConstraint(fields=["kind", "value", "scope"], name="identity_unique_kind_value_scope"),
        ]
        indexes = [models.Index(fields=["value"], name="identity_value_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.value}"


class ContactUserMapping(models.Model):
    class Method(models.TextChoices):
        AUTO = "auto", "Auto rule"
        MANUAL = "manual", "Manual"
        VERIFIED = "verified", "Verified"

    contact = models.OneToOneField(Contact, on_delete=models.CASCADE, related_name="user_mapping")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="contact_mappings")
    method = models.CharField(max_length=10, choices=Method.choices, default=Method.MANUAL)
    rule = models.CharField(max_length=64, blank=True, help_text="Which auto rule made it.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    notify_on_ready = models.BooleanField(default=False)
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["user"], name="mapping_user_idx")]

    def __str__(self) -> str:
        return f"{self.contact} -> {self.user}"
