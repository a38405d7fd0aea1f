"""Shared admin pieces: every change made through the admin also lands in the audit log."""

import json

from django.contrib import admin
from django.forms.models import model_to_dict
from django.utils.html import format_html

from core.audit import audit_record


def pretty_json(value) -> str:
    return format_html("<pre style='white-space:pre-wrap;max-width:100em'>{}</pre>",
                       json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _snapshot(obj) -> dict:
    data = model_to_dict(obj)
    data.pop("credentials", None)  # secrets never go into the audit log
    return json.loads(json.dumps(data, default=str))


class ReadOnlyTabularInline(admin.TabularInline):
    """A history shown on its parent's page (reports, notices, suggestions): every field shown, none edited."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """Rows the system writes (inbox, statuses, sessions, rollups): people look, they do not edit."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class AuditedModelAdmin(admin.ModelAdmin):
    def save_model(self, request, obj, form, change):
        # Snapshot the stored row before it changes, for the audit entry's "before".
        if change and obj.pk:
            stored = type(obj).objects.filter(pk=obj.pk).first()
            request._audit_before = _snapshot(stored) if stored else {}
        super().save_model(request, obj, form, change)

    def log_addition(self, request, obj, message):
        audit_record(action="admin.add", obj=obj, actor=request.user, after=_snapshot(obj))
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        audit_record(action="admin.change", obj=obj, actor=request.user, after=_snapshot(obj),
                     before=getattr(request, "_audit_before", {}))
        return super().log_change(request, obj, message)

    def log_deletion(self, request, obj, object_repr):
        audit_record(action="admin.delete", obj=obj, actor=request.user, before=_snapshot(obj))
        return super().log_deletion(request, obj, object_repr)
