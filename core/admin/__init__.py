"""Admin pages of the audit log and API keys."""

from django import forms
from django.contrib import admin, messages

from core.admin.base import ReadOnlyModelAdmin, pretty_json
from core.api_tokens import api_token_create, api_token_revoke
from core.models import ApiToken, AuditLog


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyModelAdmin):
    list_display = ["created_at", "actor_label", "action", "object_type", "object_repr"]
    list_filter = ["action", "object_type"]
    search_fields = ["object_repr", "object_id", "actor_label", "correlation_id"]
    readonly_fields = ["actor", "actor_label", "action", "object_type", "object_id", "object_repr", "pretty_before",
                       "pretty_after", "correlation_id", "created_at"]
    exclude = ["before", "after"]

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Before")
    def pretty_before(self, obj):
        return pretty_json(obj.before)

    @admin.display(description="After")
    def pretty_after(self, obj):
        return pretty_json(obj.after)



class ApiTokenAddForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["user", "name"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Keys are shown once, when made; afterwards only their prefix (the database holds a digest)."""

    list_display = ["name", "prefix", "user", "is_active", "created_at", "last_used_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "prefix", "user__username"]
    autocomplete_fields = ["user"]
    readonly_fields = ["prefix", "is_active", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["user", "name"] if obj is None else ["user", "name", *self.readonly_fields]

    def has_change_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        token, key = api_token_create(user=form.cleaned_data["user"], name=form.cleaned_data["name"],
                                      actor=request.user)
        obj.pk = token.pk
        self.message_user(request, f"API key for {token.user}: {key} (copy it now; it is not shown again).",
                          messages.WARNING)

    def log_addition(self, request, obj, message):
        pass  # api_token_create wrote the audit entry

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        for token in queryset:
            api_token_revoke(token=token, actor=request.user)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")
