"""The sessions (WhatsApp's 24-hour customer-service windows), for looking only."""

from django.contrib import admin

from core.admin.base import ReadOnlyModelAdmin
from whatsapp.models import Session


@admin.register(Session)
class SessionAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "conversation", "state", "opened_at", "last_inbound_at", "expires_at", "closed_at"]
    list_filter = ["state"]
    search_fields = ["conversation__contact__profile_name"]
    raw_id_fields = ["conversation"]
    list_select_related = ["conversation__contact", "conversation__provider"]
