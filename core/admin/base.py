"""Shared admin pieces: every change made through the admin also lands in the audit log; how long texts and
times read in lists and on pages."""

import json

from django.contrib import admin
from django.utils.html import format_html

from core.access import can_see, scoped
from core.audit import audit_record, audit_snapshot
from core.dates import when

# The admin's shared stylesheet (list cells that clip, the audit table): put in a ModelAdmin's Media.
ADMIN_CSS = "core/admin.css"


def clipped(text: str | None, *, width: str = "24em"):
    """A long text in a list cell: one line, cut with an ellipsis at `width`, the whole text on hover."""
    text = (text or "").strip()
    if not text:
        return "-"
    return format_html('<span class="clip" style="max-width:{}" title="{}">{}</span>', width, text, text)


def time_with_seconds(field_name: str, description: str, help_text: str = ""):
    """A read-only display of a date-time field to the second, for pages where events follow each other
    within a minute (a message's delivery steps, its status reports)."""

    @admin.display(description=description, ordering=field_name)
    def show(self, obj):
        value = getattr(obj, field_name)
        return format_html('<span class="nowrap">{}</span>', when(value, seconds=True)) if value else "-"

    show.help_text = help_text
    return show


def pretty_json(value) -> str:
    return format_html("<pre style='white-space:pre-wrap;max-width:100em'>{}</pre>",
                       json.dumps(value, indent=2, ensure_ascii=False, default=str))


class TeamScoped:
    """Every admin's rows go through core.access: the list, search, autocomplete, actions, the change and
    delete pages (Django finds the object through get_queryset), and the choices of related fields."""

    def get_queryset(self, request):
        return scoped(super().get_queryset(request), request.user)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        return _scoped_choices(field, request)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        return _scoped_choices(field, request)

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) and (obj is None or can_see(request.user, obj))

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and (obj is None or can_see(request.user, obj))

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or can_see(request.user, obj))


def _scoped_choices(field, request):
    if field is not None and getattr(field, "queryset", None) is not None:
        field.queryset = scoped(field.queryset, request.user)
    return field


class ScopedModelAdmin(TeamScoped, admin.ModelAdmin):
    """The base of every admin of this platform (a ModelAdmin narrowed to the user's teams)."""


class ReadOnlyTabularInline(TeamScoped, admin.TabularInline):
    """A history shown on its parent's page (reports, notices, suggestions): every field shown, none edited."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ReadOnlyModelAdmin(ScopedModelAdmin):
    """Rows the system writes (inbox, statuses, sessions, rollups): people look, they do not edit."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class AuditedModelAdmin(ScopedModelAdmin):
    def save_model(self, request, obj, form, change):
        # Snapshot the stored row before it changes, for the audit entry's "before".
        if change and obj.pk:
            stored = type(obj).objects.filter(pk=obj.pk).first()
            request._audit_before = audit_snapshot(stored) if stored else {}
        super().save_model(request, obj, form, change)

    def log_addition(self, request, obj, message):
        audit_record(action="admin.add", obj=obj, actor=request.user, after=audit_snapshot(obj))
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        audit_record(action="admin.change", obj=obj, actor=request.user, after=audit_snapshot(obj),
                     before=getattr(request, "_audit_before", {}))
        return super().log_change(request, obj, message)

    def log_deletion(self, request, obj, object_repr):
        audit_record(action="admin.delete", obj=obj, actor=request.user, before=audit_snapshot(obj))
        return super().log_deletion(request, obj, object_repr)


def as_row_id(value) -> int | None:
    """A row id given in a URL or a form, or None. ASCII digits only: str.isdigit() also accepts "²",
    which int() refuses."""
    text = str(value).strip() if value is not None else ""
    return int(text) if text and text.isascii() and text.isdigit() and len(text) <= 18 else None
