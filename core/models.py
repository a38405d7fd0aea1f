"""
The audit log and API keys: infrastructure every app uses.

Both models keep the `whatsapp` app label they were created under, so their tables, permissions and
admin addresses stay where existing installs have them; the classes live here so that code at the
bottom of the stack can use them without importing the messaging app.
"""

from django.conf import settings
from django.db import models


class AuditLog(models.Model):
    """Who changed what, when, with before and after values (secrets masked)."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="audit_entries")
    actor_label = models.CharField(max_length=150, blank=True, help_text="e.g. 'system', 'beat', an API client.")
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=255, blank=True)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    correlation_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        app_label = "whatsapp"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object_idx")]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}#{self.object_id}"


class ApiScope(models.TextChoices):
    READ = "read", "Read: every GET, and previews"
    SEND = "send", "Send: messages and verification codes to contacts"
    MANAGE = "manage", "Manage: every other change"


class ApiToken(models.Model):
    """
    An API key. Only a SHA-256 digest is stored (the key is shown once, when it is made), so neither a
    database dump nor the admin reveals a usable key. The prefix identifies a key in lists and logs.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What uses this key, e.g. 'CRM integration'.")
    prefix = models.CharField(max_length=12, unique=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(
        default=list, blank=True,
        help_text="What the key may do: read (every GET, and previews), send (messages and verification codes "
                  "to contacts), manage (every other change).")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True,
                                      help_text="After this time the key is refused. Empty: it never expires.")
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_from = models.GenericIPAddressField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    replaced_by = models.OneToOneField("self", null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="replaces",
                                       help_text="The key made when this one was rotated; this one stays valid "
                                                 "until its expiry, the grace period for clients to switch.")

    class Meta:
        app_label = "whatsapp"
        ordering = ["-created_at"]
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def allows(self, scope: str) -> bool:
        return scope in self.scopes
