"""Tasks: the list (priority chips, the owner's local due date and time, filters by due period) and "Mark done"."""

from django.contrib import admin
from django.utils.html import format_html

from assistant.admin.common import OwnedAdmin, OwnedForm, VisibleRelatedFilter, local_due, message_link, when
from assistant.models import Priority, Project, Task
from assistant.services.items import DUE_PERIODS, due_in_period, owner_zone, task_prepare, task_saved, tasks_complete

PRIORITY_COLOURS = {
    Priority.LOW: ("#eceef1", "#4a5260"),
    Priority.NORMAL: ("#e3ecfa", "#1d3f73"),
    Priority.HIGH: ("#fff1d6", "#8a5300"),
    Priority.URGENT: ("#fde2e1", "#9b1c1c"),
}


def priority_chip(priority: str, label: str) -> str:
    background, colour = PRIORITY_COLOURS.get(priority, PRIORITY_COLOURS[Priority.NORMAL])
    return format_html('<span class="assistant-priority assistant-priority-{}" style="display:inline-block;'
                       'padding:0 7px;border-radius:9px;font-size:11px;line-height:17px;background:{};color:{}">'
                       '{}</span>', priority, background, colour, label)


class DueFilter(admin.SimpleListFilter):
    """Due today or this week in the viewer's own time zone; overdue: open and past the due instant."""

    title = "due"
    parameter_name = "due"

    def lookups(self, request, model_admin):
        return DUE_PERIODS

    def queryset(self, request, queryset):
        if self.value() in dict(DUE_PERIODS):
            return due_in_period(queryset, self.value(), owner_zone(request.user))
        return queryset


class ProjectFilter(VisibleRelatedFilter):
    title = "project"
    parameter_name = "project"
    related_model = Project


class TaskForm(OwnedForm):
    class Meta:
        model = Task
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("due_time") is not None and cleaned.get("due_date") is None:
            self.add_error("due_time", "A due time needs a due date.")
        return cleaned


@admin.register(Task)
class TaskAdmin(OwnedAdmin):
    form = TaskForm
    owned_relations = ("project",)
    list_display = ["title", "owner", "priority_shown", "due", "status", "project"]
    list_filter = ["status", "priority", ProjectFilter, DueFilter]
    search_fields = ["title", "details"]
    list_select_related = ["owner", "project"]
    actions = ["mark_done"]
    fields = ["owner", "title", "details", "priority", "project", "due_date", "due_time", "due_instant", "status",
              "completed", "source", "created", "updated"]
    readonly_fields = ["due_instant", "completed", "source", "created", "updated"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("source_message")

    def save_model(self, request, obj, form, change):
        task_prepare(obj)
        super().save_model(request, obj, form, change)
        task_saved(obj)

    @admin.action(description="Mark done", permissions=["change"])
    def mark_done(self, request, queryset):
        done = tasks_complete(queryset, actor=request.user)
        self.message_user(request, f"{done} task(s) marked done." if done else "None of them was open.")

    @admin.display(description="Priority", ordering="priority")
    def priority_shown(self, obj):
        return priority_chip(obj.priority, obj.get_priority_display())

    @admin.display(description="Due (owner's local time)", ordering="due_at")
    def due(self, obj):
        return local_due(obj)

    @admin.display(description="Due instant")
    def due_instant(self, obj):
        return when(obj.due_at)

    @admin.display(description="Completed")
    def completed(self, obj):
        return when(obj.completed_at)

    @admin.display(description="From")
    def source(self, obj):
        return message_link(obj.source_message)

