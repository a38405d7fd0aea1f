"""
What the assistant's admin pages share: each list and each change page shows a user only their own items
unless they may see everyone's (superusers, and holders of assistant.see_everyones_items); an item made
here belongs to the user who makes it unless such a user picks another owner; a project or task it points to
must be its owner's. Instants are shown as YYYY-MM-DD HH:MM:SS in the site's time zone; a task's due date
and time are the owner's local ones, shown as they were given.
"""

from __future__ import annotations

from functools import cache

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.utils.html import format_html

from ai.admin.common import message_in_conversation_url
from assistant.selectors import sees_everyone, visible_to
from core import dates
from core.admin.base import AuditedModelAdmin, ReadOnlyModelAdmin


def when(moment) -> str:
    """An instant, in the site's time zone, to the second; '-' for none."""
    return dates.when(moment, seconds=True, empty="-")


def day(value) -> str:
    return dates.when(value, empty="-")


def local_due(task) -> str:
    """A task's due date and time as its owner gave them (in their own time zone)."""
    if task.due_date is None:
        return "-"
    return f"{day(task.due_date)} {task.due_time:%H:%M}" if task.due_time else day(task.due_date)


def message_link(message, label=None) -> str:
    """A link to the message's bubble in its conversation's transcript."""
    if message is None:
        return "-"
    url = message_in_conversation_url(message.conversation_id, message.pk)
    return format_html('<a href="{}">{}</a>', url, label or f"message #{message.pk} in conversation "
                                                            f"#{message.conversation_id}")


def pre(text: str) -> str:
    """Text as written, line breaks kept, for long texts on a change page."""
    if not text:
        return "-"
    return format_html("<div style='white-space:pre-wrap;max-width:60em;line-height:1.45'>{}</div>", text)


class VisibleRelatedFilter(admin.SimpleListFilter):
    """By a related item (a task's project...), offering only the items the user may see."""

    related_model = None  # set by subclasses
    parameter_name = ""

    listed = 200

    def lookups(self, request, model_admin):
        rows = visible_to(request.user, self.related_model.objects.select_related("owner"))[:self.listed]
        if sees_everyone(request.user):
            # Two users may name their projects alike.
            return [(str(row.pk), f"{row} ({row.owner})") for row in rows]
        return [(str(row.pk), str(row)) for row in rows]

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(**{f"{self.parameter_name}_id": int(value)})
        return queryset


class OwnedScope:
    """The rows a user sees in a list, and which change pages open: their own, or everyone's with the
    permission (another user's row is then unknown: Django's admin answers it with a redirect to the index)."""

    owner_field = "owner"

    def scoped(self, request, queryset):
        if self.owner_field == "owner":
            return visible_to(request.user, queryset)
        return queryset if sees_everyone(request.user) else queryset.filter(**{self.owner_field: request.user})

    def get_queryset(self, request):
        return self.scoped(request, super().get_queryset(request))

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        if sees_everyone(request.user):
            filters.append(owner_filter(self.owner_field))
        return filters


@cache
def owner_filter(field: str) -> type[admin.SimpleListFilter]:
    """The owner filter of a list whose owner field is `field`."""

    class Filter(admin.SimpleListFilter):
        title = "owner" if field == "owner" else field
        parameter_name = field

        def lookups(self, request, model_admin):
            owners = (get_user_model().objects.filter(pk__in=model_admin.model.objects.values(field))
                      .order_by("username"))
            return [(str(user.pk), user.get_username()) for user in owners]

        def queryset(self, request, queryset):
            value = self.value()
            return queryset.filter(**{f"{field}_id": int(value)}) if value and value.isdigit() else queryset

    return Filter


class OwnedForm(forms.ModelForm):
    """Checks that the project or task an item points to belongs to the item's owner."""

    owned_relations: tuple[str, ...] = ()
    owner_field = "owner"

    def clean(self):
        cleaned = super().clean()
        owner = cleaned.get(self.owner_field) or getattr(self.instance, self.owner_field, None)
        if owner is None:
            return cleaned
        for name in self.owned_relations:
            related = cleaned.get(name)
            if related is not None and related.owner_id != owner.pk:
                self.add_error(name, f"This {related._meta.verbose_name} belongs to {related.owner}; choose one of "
                                     f"{owner}'s.")
        return cleaned


class OwnedAdmin(OwnedScope, AuditedModelAdmin):
    """An editable list of owned items (changes audited)."""

    form = OwnedForm
    owned_relations: tuple[str, ...] = ()

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.owned_relations = self.owned_relations
        form.owner_field = self.owner_field
        return form

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        if not sees_everyone(request.user) or self.owner_field not in initial:
            initial[self.owner_field] = request.user.pk
        return initial

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == self.owner_field:
            users = get_user_model().objects.order_by("username")
            if sees_everyone(request.user):
                kwargs["queryset"] = users.filter(is_active=True)
            else:
                # The field shows the user; a disabled field ignores whatever a request posts for it and
                # takes its initial value (the admin passes the form no initial data on a POST).
                kwargs["queryset"] = users.filter(pk=request.user.pk)
                kwargs["disabled"] = True
                kwargs["initial"] = request.user.pk
                kwargs["help_text"] = "Items you make are yours."
        elif db_field.name in self.owned_relations:
            related = db_field.remote_field.model.objects.select_related("owner")
            kwargs["queryset"] = visible_to(request.user, related)
            field = super().formfield_for_foreignkey(db_field, request, **kwargs)
            if sees_everyone(request.user):
                field.label_from_instance = lambda row: f"{row} ({row.owner})"
            return field
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if not change and not sees_everyone(request.user):
            setattr(obj, self.owner_field, request.user)
        super().save_model(request, obj, form, change)

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj):
        return when(obj.created_at)

    @admin.display(description="Updated", ordering="updated_at")
    def updated(self, obj):
        return when(obj.updated_at)


class OwnedReadOnlyAdmin(OwnedScope, ReadOnlyModelAdmin):
    """A read-only list of owned rows the system writes."""

    def has_delete_permission(self, request, obj=None):
        return False
