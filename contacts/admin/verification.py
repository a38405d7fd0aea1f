"""The verification codes sent to contacts to confirm their mapping to a user."""

from django.contrib import admin

from contacts.models import VerificationChallenge
from core.admin.base import ReadOnlyModelAdmin
from whatsapp.admin.filters import ProviderNameFilter


@admin.register(VerificationChallenge)
class VerificationChallengeAdmin(ReadOnlyModelAdmin):
    # The code's digest is never shown: it is all an attacker would need to try codes offline.
    list_display = ["created_at", "contact", "user", "provider", "expires_at", "failed_attempts", "verified_at"]
    list_filter = [ProviderNameFilter]
    search_fields = ["contact__profile_name", "user__username"]
    list_select_related = ["contact", "user", "provider"]
    fields = ["contact", "user", "provider", "message", "created_at", "expires_at", "failed_attempts",
              "verified_at", "created_by"]
