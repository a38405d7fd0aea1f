"""The assistant lists' filters. Every list is already limited to the caller's own items (assistant.selectors.
visible_to), so `owner` narrows only the lists of those who may see everyone's."""

import django_filters
from django.db.models import Q

from assistant.models import ContentRequest, Goal, Note, Priority, Project, Reminder, Task, Turn
from assistant.services.items import DUE_PERIODS, due_in_period, owner_zone
from core.api.filters import YES_NO, ApiDateTimeFilter, ApiFilterSet

OWNER_HELP = "Items of this user (an id); only those who may see everyone's items see other users' items."


def _owner_filter():
    return django_filters.NumberFilter(field_name="owner", help_text=OWNER_HELP)


class ProjectFilter(ApiFilterSet):
    owner = _owner_filter()
    archived = django_filters.ChoiceFilter(choices=YES_NO, method="filter_archived",
                                           help_text="true: archived projects only; false: the others.")

    class Meta:
        model = Project
        fields = ["owner", "archived"]

    def filter_archived(self, queryset, name, value):
        return queryset.filter(archived=value == "true")


class GoalFilter(ApiFilterSet):
    owner = _owner_filter()
    project = django_filters.NumberFilter(field_name="project", help_text="Goals of this project (an id).")
    achieved = django_filters.ChoiceFilter(choices=YES_NO, method="filter_achieved",
                                           help_text="true: achieved goals only; false: the others.")

    class Meta:
        model = Goal
        fields = ["owner", "project", "achieved"]

    def filter_achieved(self, queryset, name, value):
        return queryset.filter(achieved_at__isnull=value != "true")


class TaskFilter(ApiFilterSet):
    owner = _owner_filter()
    status = django_filters.ChoiceFilter(choices=Task.Status.choices)
    priority = django_filters.ChoiceFilter(choices=Priority.choices)
    project = django_filters.NumberFilter(field_name="project", help_text="Tasks of this project (an id).")
    due = django_filters.ChoiceFilter(
        choices=DUE_PERIODS, method="filter_due",
        help_text="today or this_week (Monday to Sunday), by the due date in the caller's time zone; overdue: open "
                  "and past the due time.")

    class Meta:
        model = Task
        fields = ["owner", "status", "priority", "project", "due"]

    def filter_due(self, queryset, name, value):
        return due_in_period(queryset, value, owner_zone(self.request.user))


class NoteFilter(ApiFilterSet):
    owner = _owner_filter()
    q = django_filters.CharFilter(method="filter_text", max_length=200,
                                  help_text="Words to look for in the text, the transcript and the tags, any case.")
    tag = django_filters.CharFilter(method="filter_tag", max_length=40, help_text="Notes with this tag.")
    created_at__gte = ApiDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_at__lte = ApiDateTimeFilter(field_name="created_at", lookup_expr="lte")

    class Meta:
        model = Note
        fields = ["owner", "q", "tag"]

    def filter_text(self, queryset, name, value):
        matches = Q()
        for word in value.split():
            matches &= Q(text__icontains=word) | Q(transcript__icontains=word) | Q(tags__icontains=word)
        return queryset.filter(matches)

    def filter_tag(self, queryset, name, value):
        return queryset.filter(tags__contains=[value.strip().lower()])


class ContentRequestFilter(ApiFilterSet):
    owner = _owner_filter()

    class Meta:
        model = ContentRequest
        fields = ["owner", "status", "platform"]


class ReminderFilter(ApiFilterSet):
    owner = _owner_filter()
    task = django_filters.NumberFilter(field_name="task", help_text="Reminders of this task (an id).")
    due_at__gte = ApiDateTimeFilter(field_name="due_at", lookup_expr="gte")
    due_at__lte = ApiDateTimeFilter(field_name="due_at", lookup_expr="lte")

    class Meta:
        model = Reminder
        fields = ["owner", "status", "task"]


class TurnFilter(ApiFilterSet):
    owner = _owner_filter()
    conversation = django_filters.NumberFilter(field_name="message__conversation",
                                               help_text="Turns of this conversation (an id).")
    created_at__gte = ApiDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_at__lte = ApiDateTimeFilter(field_name="created_at", lookup_expr="lte")

    class Meta:
        model = Turn
        fields = ["owner", "status", "outcome", "conversation"]
