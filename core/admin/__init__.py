"""Admin pages of the audit log and API keys."""

from django import forms
from django.apps import apps
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.text import capfirst

from core.admin.base import ADMIN_CSS, ReadOnlyModelAdmin, clipped
from core.admin.changes import audit_changes_html
from core.api_tokens import api_token_create, api_token_revoke, api_token_rotate, api_token_state, default_expiry
from core.models import ApiScope, ApiToken, AuditLog


def _model_of(label: str):
    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        return None  # a model removed since the entry was written


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyModelAdmin):
    list_display = ["created_at", "actor_label", "action", "object_column"]
    list_filter = ["action", "object_type"]
    search_fields = ["object_repr", "object_id", "actor_label", "correlation_id"]
    fieldsets = [
        (None, {"fields": ["created_at", "actor_label", "actor", "action", "object_link"]}),
        ("Changes", {"fields": ["changes"]}),
        ("Technical", {"fields": ["object_type", "object_id", "correlation_id"], "classes": ["collapse"]}),
    ]
    readonly_fields = ["created_at", "actor_label", "actor", "action", "object_link", "changes", "object_type",
                       "object_id", "correlation_id"]

    class Media:
        css = {"all": [ADMIN_CSS]}

    def has_delete_permission(self, request, obj=None):
        return False

    @staticmethod
    def _object_type_name(obj) -> str:
        model = _model_of(obj.object_type)
        return capfirst(model._meta.verbose_name) if model else obj.object_type

    @admin.display(description="Object", ordering="object_type")
    def object_column(self, obj):
        return clipped(f"{self._object_type_name(obj)}: {obj.object_repr or '#' + obj.object_id}", width="30em")

    @admin.display(description="Object")
    def object_link(self, obj):
        model, label = _model_of(obj.object_type), f"{self._object_type_name(obj)}: {obj.object_repr}"
        if model is None or not model._default_manager.filter(pk=obj.object_id).exists():
            return f"{label} (#{obj.object_id}, no longer stored)" if model else label
        try:
            url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[obj.object_id])
        except NoReverseMatch:
            return label
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(description="Changes")
    def changes(self, obj):
        return audit_changes_html(obj.before, obj.after)


class ApiTokenAddForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=ApiScope.choices, widget=forms.CheckboxSelectMultiple,
                                       initial=[ApiScope.READ], help_text="Give a key only what its client needs.")

    class Meta:
        model = ApiToken
        fields = ["user", "name", "scopes", "expires_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["expires_at"].initial = default_expiry()
        self.fields["expires_at"].help_text = "Empty: the key never expires."


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Keys are shown once, when made; afterwards only their prefix (the database holds a digest)."""

    list_display = ["name", "prefix", "user", "scope_list", "state", "last_used_at", "last_used_from"]
    list_filter = ["is_active"]
    search_fields = ["name", "prefix", "user__username"]
    autocomplete_fields = ["user"]
    readonly_fields = ["prefix", "scope_list", "is_active", "created_at", "expires_at", "last_used_at",
                       "last_used_from", "replaced_by", "revoked_at"]
    actions = ["rotate", "revoke"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return list(ApiTokenAddForm.Meta.fields) if obj is None else ["user", "name", *self.readonly_fields]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes) or "none"

    @admin.display(description="State", ordering="expires_at")
    def state(self, obj):
        return api_token_state(obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "user" and not request.user.is_superuser:
            # A key acts as its user: only a superuser makes keys that act as a superuser.
            field.queryset = field.queryset.filter(is_superuser=False)
        return field

    def has_revoke_permission(self, request):
        return self.has_delete_permission(request)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        token, key = api_token_create(user=data["user"], name=data["name"], scopes=data["scopes"],
                                      expires_at=data["expires_at"], actor=request.user)
        obj.pk = token.pk
        self.message_user(request, f"API key for {token.user}: {key} (copy it now; it is not shown again).",
                          messages.WARNING)

    def log_addition(self, request, obj, message):
        pass  # api_token_create wrote the audit entry

    # Rotating hands out a new key: it takes what making one takes. Revoking takes what deleting takes.
    @admin.action(description="Rotate the selected keys (the old ones keep working for a grace period)",
                  permissions=["add"])
    def rotate(self, request, queryset):
        grace = settings.API_KEY_ROTATION_GRACE_HOURS
        for token in queryset:
            try:
                new_token, key = api_token_rotate(token=token, actor=request.user)
            except (ValueError, PermissionDenied) as refusal:
                self.message_user(request, f"{token}: {refusal}.", messages.ERROR)
                continue
            self.message_user(request, f"New API key for {new_token} ({new_token.user}): {key} (copy it now; it is "
                                       f"not shown again). The old key works for {grace} more hours.",
                              messages.WARNING)

    @admin.action(description="Revoke the selected keys", permissions=["revoke"])
    def revoke(self, request, queryset):
        for token in queryset:
            api_token_revoke(token=token, actor=request.user)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")
