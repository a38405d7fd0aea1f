from django.contrib import admin

from templates_app.models import MessageTemplate
from whatsapp.admin_base import AuditedModelAdmin, pretty_json


@admin.register(MessageTemplate)
class MessageTemplateAdmin(AuditedModelAdmin):
    list_display = ["name", "language", "version", "category", "status", "provider", "updated_at"]
    list_filter = ["status", "category", "language", "provider"]
    search_fields = ["name", "provider_template_id"]
    readonly_fields = ["provider_template_id", "rejection_reason", "quality", "submitted_by", "reviewed_by",
                       "submitted_at", "reviewed_at", "created_at", "updated_at", "pretty_components"]
    list_select_related = ["provider"]

    @admin.display(description="Components (read back)")
    def pretty_components(self, obj):
        return pretty_json(obj.components)
