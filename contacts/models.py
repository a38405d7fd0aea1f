import re
import unicodedata

from django.conf import settings
from django.db import models

from core.access import ProviderPath
from whatsapp.providers.events import IdentityKind


class ConsentSource(models.TextChoices):
    KEYWORD = "keyword", "Keyword from the contact"
    PROVIDER_ERROR = "provider_error", "Provider error"
    ADMIN = "admin", "Admin"
    API = "api", "API"
    IMPORT = "import", "Imported list (with its opt-in proof)"


class Contact(models.Model):
    team_scope = ProviderPath("conversations__provider", many=True)

    class Consent(models.TextChoices):
        UNKNOWN = "unknown", "Unknown"
        OPTED_IN = "opted_in", "Opted in"
        OPTED_OUT = "opted_out", "Opted out"

    profile_name = models.CharField(max_length=255, blank=True)
    consent = models.CharField(max_length=10, choices=Consent.choices, default=Consent.UNKNOWN)
    consent_changed_at = models.DateTimeField(null=True, blank=True)
    consent_source = models.CharField(max_length=32, blank=True, choices=ConsentSource.choices)
    language = models.CharField(max_length=16, blank=True)
    time_zone = models.CharField(max_length=64, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True,
                                  help_text="The business's own fields for this person (plan, city, ...): "
                                            "segments filter on them and campaign messages can quote them.")
    is_ignored = models.BooleanField(default=False, help_text="Left out of the unmapped-contacts queue.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-last_seen_at"], name="contact_last_seen_idx"),
            models.Index(fields=["consent"], name="contact_consent_idx"),
            # The unmapped-contacts queue: newest first among those not ignored.
            models.Index(fields=["is_ignored", "-created_at"], name="contact_queue_idx"),
            # The contacts changelist: newest first, and its date hierarchy's min and max.
            models.Index(fields=["-created_at"], name="contact_created_idx"),
        ]

    def __str__(self) -> str:
        return self.profile_name or f"Contact {self.pk}"


class ContactIdentity(models.Model):
    """How a provider names a person. A phone number is only one kind among several."""
    team_scope = ProviderPath("contact__conversations__provider", many=True)


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
    team_scope = ProviderPath("contact__conversations__provider", many=True)

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


class UserProfile(models.Model):
    """What the platform knows about one of the business's own users: the phone the auto rule matches."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="whatsapp_profile")
    phone_number = models.CharField(max_length=20, blank=True, db_index=True,
                                    help_text="E.164; a contact with this phone number is mapped to the user.")

    def __str__(self) -> str:
        return f"Profile of {self.user}"


class ConsentEvent(models.Model):
    """One change of a contact's consent, with where it came from: the consent history."""
    team_scope = ProviderPath("contact__conversations__provider", many=True)


    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="consent_events")
    state = models.CharField(max_length=10, choices=Contact.Consent.choices)
    previous_state = models.CharField(max_length=10, choices=Contact.Consent.choices)
    source = models.CharField(max_length=32, choices=ConsentSource.choices)
    detail = models.CharField(max_length=255, blank=True, help_text="The keyword, or the provider's error.")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    message = models.ForeignKey("whatsapp.Message", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+", help_text="The message that carried the keyword or the error.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["contact", "-created_at"], name="consent_event_contact_idx")]

    def __str__(self) -> str:
        return f"{self.contact}: {self.previous_state} -> {self.state} ({self.source})"


class ConsentKeyword(models.Model):
    """A word that, sent alone by a contact, opts them out or back in; the confirmation is in its language."""

    class Action(models.TextChoices):
        OPT_OUT = "opt_out", "Opt out"
        OPT_IN = "opt_in", "Opt in"

    language = models.CharField(max_length=16, help_text="e.g. en, es, pt")
    keyword = models.CharField(max_length=64, help_text="Matched against the whole message, ignoring case, "
                                                        "accents and surrounding punctuation.")
    action = models.CharField(max_length=8, choices=Action.choices)
    confirmation = models.TextField(help_text="Sent once after the change.")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["language", "action", "keyword"]
        constraints = [models.UniqueConstraint(fields=["language", "keyword"], name="consent_keyword_unique")]

    def __str__(self) -> str:
        return f"{self.keyword} ({self.language}, {self.get_action_display().lower()})"

    def save(self, *args, **kwargs):
        self.keyword = self.normalize(self.keyword)
        super().save(*args, **kwargs)

    @staticmethod
    def normalize(text: str) -> str:
        """' Stop! ' -> 'STOP', 'Désabonner' -> 'DESABONNER': case, accents, outer punctuation and
        inner runs of spaces do not matter."""
        decomposed = unicodedata.normalize("NFKD", text)
        plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
        plain = re.sub(r"\s+", " ", plain).strip(" \t\n.,;:!?¡¿\"'()[]*_-~")
        return plain.upper()


class VerificationChallenge(models.Model):
    """A one-time code sent to a contact on WhatsApp; their reply with it proves the contact is the user."""
    team_scope = ProviderPath("provider")


    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="verification_challenges")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    provider = models.ForeignKey("whatsapp.Provider", on_delete=models.CASCADE, related_name="+")
    code_digest = models.CharField(max_length=64,
                                   help_text="Keyed digest of the code, which the reply is checked against.")
    message = models.ForeignKey("whatsapp.Message", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+", help_text="The message that carried the code.")
    expires_at = models.DateTimeField()
    failed_attempts = models.PositiveIntegerField(default=0)
    verified_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["contact", "-expires_at"], name="verification_contact_idx")]

    def __str__(self) -> str:
        return f"Verification of {self.contact} as {self.user}"


class UnmappedContact(Contact):
    """The admin's unmapped-contacts queue: contacts with no user mapping that nobody chose to ignore."""

    class Meta:
        proxy = True
        verbose_name = "unmapped contact"


class DataExport(models.Model):
    """A GDPR export of one user's WhatsApp data: a zip built by a worker, kept in the archive storage for
    DATA_EXPORT_RETENTION_DAYS and downloadable from the admin and the API."""

    class Status(models.TextChoices):
        PENDING = "pending", "Being built"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired (deleted)"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="whatsapp_exports")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    location = models.CharField(max_length=500, blank=True, help_text="<bucket>/<object> of the zip.")
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    counts = models.JSONField(default=dict, blank=True, help_text="What the zip holds.")
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("erase_user_data", "Can erase a user's WhatsApp data (GDPR)")]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="data_export_due_idx")]

    def __str__(self) -> str:
        return f"Export {self.pk} of {self.user}"
