from django.contrib import admin

from contacts.models import Contact, ContactIdentity, ContactUserMapping
from whatsapp.admin_base import AuditedModelAdmin


class ContactIdentityInline(admin.TabularInline):
    model = ContactIdentity
    fields = ["kind", "value", "scope", "created_at"]
    readonly_fields = ["created_at"]
    extra = 0


@admin.register(Contact)
class ContactAdmin(AuditedModelAdmin):
    list_display = ["__str__", "consent", "language", "last_seen_at", "mapped_user", "created_at"]
    list_filter = ["consent", "is_ignored", "language"]
    search_fields = ["profile_name", "identities__value"]
    inlines = [ContactIdentityInline]
    date_hierarchy = "created_at"

    @admin.display(description="Mapped user")
    def mapped_user(self, obj):
        mapping = getattr(obj, "user_mapping", None)
        return mapping.user if mapping else "-"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user_mapping__user")


@admin.register(ContactIdentity)
class ContactIdentityAdmin(AuditedModelAdmin):
    list_display = ["value", "kind", "scope", "contact", "created_at"]
    list_filter = ["kind"]
    search_fields = ["value", "contact__profile_name"]
    autocomplete_fields = ["contact"]
    list_select_related = ["contact"]


@admin.register(ContactUserMapping)
class ContactUserMappingAdmin(AuditedModelAdmin):
    list_display = ["contact", "user", "method", "rule", "created_by", "notify_on_ready", "created_at"]
    list_filter = ["method", "notify_on_ready"]
    search_fields = ["contact__profile_name", "user__username", "user__email"]
    autocomplete_fields = ["contact", "user", "created_by"]
    list_select_related = ["contact", "user", "created_by"]
