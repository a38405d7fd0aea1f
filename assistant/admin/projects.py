"""Projects and goals."""

from django.contrib import admin
from django.db.models import Count, Q

from assistant.admin.common import OwnedAdmin, VisibleRelatedFilter, day, when
from assistant.models import Goal, Project, Task


@admin.register(Project)
class ProjectAdmin(OwnedAdmin):
    list_display = ["name", "owner", "archived", "open_tasks", "created"]
    list_filter = ["archived"]
    search_fields = ["name", "description"]
    list_select_related = ["owner"]
    fields = ["owner", "name", "description", "archived", "created", "updated"]
    readonly_fields = ["created", "updated"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            open_task_count=Count("tasks", filter=Q(tasks__status=Task.Status.OPEN)))

    @admin.display(description="Open tasks", ordering="open_task_count")
    def open_tasks(self, obj):
        return obj.open_task_count


class GoalProjectFilter(VisibleRelatedFilter):
    title = "project"
    parameter_name = "project"
    related_model = Project


@admin.register(Goal)
class GoalAdmin(OwnedAdmin):
    owned_relations = ("project",)
    list_display = ["title", "owner", "project", "target", "achieved", "created"]
    list_filter = [GoalProjectFilter]
    search_fields = ["title"]
    list_select_related = ["owner", "project"]
    fields = ["owner", "title", "project", "target_date", "achieved_at", "created", "updated"]
    readonly_fields = ["created", "updated"]

    @admin.display(description="Target date", ordering="target_date")
    def target(self, obj):
        return day(obj.target_date)

    @admin.display(description="Achieved", ordering="achieved_at")
    def achieved(self, obj):
        return when(obj.achieved_at)
