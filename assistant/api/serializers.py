"""
The assistant's items as the API shows and takes them. The owner is always the caller on create and never
changes; a related project or task must be one of the same owner's.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from rest_framework import serializers

from assistant.models import AssistantProfile, ContentRequest, Goal, Note, Project, Reminder, Task, Turn
from assistant.selectors import visible_to
from assistant.services.items import (
    content_request_prepare,
    owner_zone,
    preferences_update,
    reminder_prepare,
    task_prepare,
    task_saved,
)
from assistant.services.timezones import zone_named
from assistant.tools import LENGTHS, PLATFORMS

MAX_TAGS = 20
TAG_CHARS = 40


class VisibleRelatedField(serializers.PrimaryKeyRelatedField):
    """An id of a row the caller may see: another user's project or task is as unknown as a missing one."""

    def get_queryset(self):
        return visible_to(self.context["request"].user, super().get_queryset())


class OwnedSerializer(serializers.ModelSerializer):
    owner = serializers.PrimaryKeyRelatedField(read_only=True, help_text="The user it belongs to (an id): the "
                                                                         "caller, for an item made here.")
    owner_username = serializers.CharField(source="owner.get_username", read_only=True)

    # Fields naming another owned row, which must belong to the same owner.
    owned_relations: tuple[str, ...] = ()

    def owner_of(self):
        return self.instance.owner if self.instance is not None else self.context["request"].user

    def validate(self, attrs):
        owner = self.owner_of()
        errors = {}
        for name in self.owned_relations:
            related = attrs.get(name)
            if related is not None and related.owner_id != owner.pk:
                errors[name] = [f"{related._meta.verbose_name} {related.pk} belongs to another user: choose one of "
                                f"{owner.get_username()}'s."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class ProjectSerializer(OwnedSerializer):
    class Meta:
        model = Project
        fields = ["id", "owner", "owner_username", "name", "description", "archived", "created_at", "updated_at"]

    def validate(self, attrs):
        attrs = super().validate(attrs)
        name = attrs.get("name")
        if name is not None:
            taken = Project.objects.filter(owner=self.owner_of(), name=name)
            if self.instance is not None:
                taken = taken.exclude(pk=self.instance.pk)
            if taken.exists():
                raise serializers.ValidationError({"name": [f"there is already a project named {name!r}."]})
        return attrs


class GoalSerializer(OwnedSerializer):
    project = VisibleRelatedField(queryset=Project.objects.all(), required=False, allow_null=True,
                                  help_text="The project it belongs to (an id of one of the owner's projects).")
    owned_relations = ("project",)

    class Meta:
        model = Goal
        fields = ["id", "owner", "owner_username", "title", "project", "target_date", "achieved_at", "created_at",
                  "updated_at"]


class TaskSerializer(OwnedSerializer):
    project = VisibleRelatedField(queryset=Project.objects.all(), required=False, allow_null=True,
                                  help_text="The project it belongs to (an id of one of the owner's projects).")
    project_name = serializers.CharField(source="project.name", read_only=True, default=None, allow_null=True)
    owned_relations = ("project",)

    class Meta:
        model = Task
        fields = ["id", "owner", "owner_username", "title", "details", "priority", "due_date", "due_time", "due_at",
                  "status", "completed_at", "project", "project_name", "source_message", "created_at", "updated_at"]
        read_only_fields = ["due_at", "completed_at", "source_message"]
        extra_kwargs = {"status": {"help_text": "open, done or cancelled; done sets completed_at."}}

    def validate(self, attrs):
        attrs = super().validate(attrs)
        due_date = attrs["due_date"] if "due_date" in attrs else getattr(self.instance, "due_date", None)
        if attrs.get("due_time") is not None and due_date is None:
            raise serializers.ValidationError({"due_time": ["a due time needs a due date: give due_date too."]})
        return attrs

    @transaction.atomic
    def create(self, validated_data):
        task = Task(**validated_data)
        task_prepare(task)
        task.save()
        task_saved(task)
        return task

    @transaction.atomic
    def update(self, instance, validated_data):
        for name, value in validated_data.items():
            setattr(instance, name, value)
        task_prepare(instance)
        instance.save()
        task_saved(instance)
        return instance


class NoteSerializer(OwnedSerializer):
    tags = serializers.ListField(child=serializers.CharField(max_length=TAG_CHARS), required=False,
                                 max_length=MAX_TAGS, help_text="A few keywords; kept in lower case, each once.")
    conversation = serializers.IntegerField(source="source_message.conversation_id", read_only=True, default=None,
                                            allow_null=True, help_text="The conversation of the message it came "
                                                                       "from (an id).")

    class Meta:
        model = Note
        fields = ["id", "owner", "owner_username", "text", "tags", "transcript", "source_message", "conversation",
                  "created_at", "updated_at"]
        read_only_fields = ["transcript", "source_message"]

    def validate_tags(self, tags: list[str]) -> list[str]:
        cleaned = [tag.strip().lower() for tag in tags]
        return list(dict.fromkeys(tag for tag in cleaned if tag))


# The states the assistant moves a request through while it drafts; a person can only close one.
CONTENT_CLOSING = (ContentRequest.Status.DONE, ContentRequest.Status.CANCELLED)


class ContentRequestSerializer(OwnedSerializer):
    platform = serializers.ChoiceField(choices=PLATFORMS, required=False, allow_blank=True,
                                       help_text="Where it will be published.")
    length = serializers.ChoiceField(choices=LENGTHS, required=False, allow_blank=True)

    class Meta:
        model = ContentRequest
        fields = ["id", "owner", "owner_username", "brief", "platform", "length", "tone", "topic", "status", "draft",
                  "error", "drafted_at", "source_message", "conversation", "created_at", "updated_at"]
        read_only_fields = ["draft", "error", "drafted_at", "source_message", "conversation"]
        extra_kwargs = {"status": {"help_text": "Only done or cancelled can be set; the assistant sets the others "
                                                "as it drafts."}}

    def create(self, validated_data):
        request = ContentRequest(**validated_data)
        content_request_prepare(request)
        request.save()
        return request

    def validate_status(self, status: str) -> str:
        unchanged = self.instance is not None and self.instance.status == status
        if status not in CONTENT_CLOSING and not unchanged:
            raise serializers.ValidationError("only done or cancelled can be set here: the assistant sets the other "
                                              "states as it drafts.")
        return status


REMINDER_SETTABLE = (Reminder.Status.PENDING, Reminder.Status.CANCELLED)


class ReminderSerializer(OwnedSerializer):
    task = VisibleRelatedField(queryset=Task.objects.all(), required=False, allow_null=True,
                               help_text="The task it is about (an id of one of the owner's tasks).")
    owned_relations = ("task",)

    class Meta:
        model = Reminder
        fields = ["id", "owner", "owner_username", "task", "text", "due_at", "status", "sent_at", "message",
                  "error", "created_at", "updated_at"]
        read_only_fields = ["sent_at", "message", "error"]
        extra_kwargs = {"status": {"help_text": "pending or cancelled can be set (pending sends it again at "
                                                "due_at); sent and failed are set when it goes out."}}

    def create(self, validated_data):
        reminder = Reminder(**validated_data)
        reminder_prepare(reminder)
        reminder.save()
        return reminder

    def validate_status(self, status: str) -> str:
        unchanged = self.instance is not None and self.instance.status == status
        if status not in REMINDER_SETTABLE and not unchanged:
            raise serializers.ValidationError("only pending or cancelled can be set here.")
        return status

    def validate(self, attrs):
        attrs = super().validate(attrs)

        def value(name):
            return attrs[name] if name in attrs else getattr(self.instance, name, None)

        errors = {}
        if not value("text") and value("task") is None:
            errors["text"] = ["give the text to remind of, or a task."]
        status = value("status") or Reminder.Status.PENDING
        due_at = value("due_at")
        changes_time = "due_at" in attrs or "status" in attrs
        if status == Reminder.Status.PENDING and changes_time and due_at is not None and due_at <= timezone.now():
            errors["due_at"] = ["a pending reminder must be due in the future."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class AssistantProfileSerializer(serializers.ModelSerializer):
    user = serializers.PrimaryKeyRelatedField(read_only=True)
    effective_time_zone = serializers.SerializerMethodField(
        help_text="The zone dates and times are read in: time_zone, else the one of the user's phone number.")

    class Meta:
        model = AssistantProfile
        fields = ["id", "user", "time_zone", "effective_time_zone", "daily_summary",
                  "daily_summary_time", "weekly_summary", "weekly_summary_day", "reminders", "quiet_hours_start",
                  "quiet_hours_end", "updated_at"]

    def get_effective_time_zone(self, profile: AssistantProfile) -> str:
        return owner_zone(profile.user).key

    def validate_time_zone(self, name: str) -> str:
        if name and zone_named(name) is None:
            raise serializers.ValidationError(f"{name!r} is not a time zone: give an IANA name such as "
                                              "Europe/Madrid, or leave it empty.")
        return name

    def validate(self, attrs):
        def value(name):
            return attrs[name] if name in attrs else getattr(self.instance, name, None)

        if (value("quiet_hours_start") is None) != (value("quiet_hours_end") is None):
            raise serializers.ValidationError(
                {"quiet_hours_end": ["give both quiet_hours_start and quiet_hours_end, or neither."]})
        return attrs

    @transaction.atomic
    def update(self, instance, validated_data):
        preferences_update(instance, validated_data)
        return instance


class TurnSerializer(serializers.ModelSerializer):
    owner_username = serializers.CharField(source="owner.get_username", read_only=True)
    conversation = serializers.IntegerField(source="message.conversation_id", read_only=True,
                                            help_text="The conversation of the message (an id).")
    class Meta:
        model = Turn
        fields = ["id", "message", "conversation", "owner", "owner_username", "status", "outcome", "tool_calls",
                  "reply", "error", "attempts", "next_attempt_at", "created_at", "finished_at"]
