"""Consent: the keywords that opt a contact in or out, and the history of every change."""

from django.contrib import admin
from django.template.defaultfilters import truncatechars

from contacts.models import ConsentEvent, ConsentKeyword
from core.admin.base import AuditedModelAdmin, ReadOnlyModelAdmin


@admin.register(ConsentKeyword)
class ConsentKeywordAdmin(AuditedModelAdmin):
    list_display = ["keyword", "language", "action", "is_active", "short_confirmation"]
    list_editable = ["action", "is_active"]
    list_filter = ["language", "action", "is_active"]
    search_fields = ["keyword", "confirmation"]

    @admin.display(description="Confirmation")
    def short_confirmation(self, obj):
        return truncatechars(obj.confirmation, 80)


@admin.register(ConsentEvent)
class ConsentEventAdmin(ReadOnlyModelAdmin):
    list_display = ["created_at", "contact", "previous_state", "state", "source", "detail", "actor"]
    list_filter = ["state", "source"]
    search_fields = ["contact__profile_name", "contact__identities__value", "detail"]
    list_select_related = ["contact", "actor"]
    date_hierarchy = "created_at"

    def has_delete_permission(self, request, obj=None):
        return False  # the history stays
