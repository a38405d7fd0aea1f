"""What campaigns leave behind, to look at: one record per recipient, and the people held out of marketing."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from campaigns.models import CampaignRecipient, MarketingSuppression
from core.admin.base import ADMIN_CSS, ReadOnlyModelAdmin
from whatsapp.admin.filters import ProviderNameFilter


@admin.register(CampaignRecipient)
class CampaignRecipientAdmin(ReadOnlyModelAdmin):
    list_display = ["contact", "campaign", "variant", "status", "skip_reason", "due_at", "sent_at", "read_at",
                    "replied_at", "message_link"]
    list_filter = ["status", ("campaign", admin.RelatedOnlyFieldListFilter), "fallback_status"]
    search_fields = ["contact__profile_name", "contact__identities__value", "skip_reason"]
    list_select_related = ["contact", "campaign", "variant"]
    show_full_result_count = False

    class Media:
        css = {"all": [ADMIN_CSS]}

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Message")
    def message_link(self, obj):
        if not obj.message_id:
            return "—"
        return format_html('<a href="{}">#{}</a>', reverse("admin:whatsapp_message_change", args=[obj.message_id]),
                           obj.message_id)


@admin.register(MarketingSuppression)
class MarketingSuppressionAdmin(ReadOnlyModelAdmin):
    list_display = ["contact", "provider", "until", "error_code", "strikes", "updated_at"]
    list_filter = [ProviderNameFilter, "error_code"]
    search_fields = ["contact__profile_name", "contact__identities__value"]
    list_select_related = ["contact", "provider"]
