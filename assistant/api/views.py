"""
The assistant's API: each user's projects, goals, tasks, notes, content requests and reminders (made, read,
changed and deleted like any resource; the caller owns what they make), their assistant preferences, and the
assistant's turns (read-only). Every list and every detail is the caller's own items only, unless they are a
superuser or hold assistant.see_everyones_items, exactly as in the admin. Changes are audited.
"""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from assistant.api import filters, serializers
from assistant.models import AssistantProfile, ContentRequest, Goal, Note, Project, Reminder, Task, Turn
from assistant.selectors import profile_for, sees_everyone, visible_to
from assistant.services.items import content_request_saved, item_audit, snapshot
from core.api.errors import REFUSAL, ReadableErrors
from core.api.scoping import TeamScoped

SCOPE = ("Only the caller's own items, unless they are a superuser or hold assistant.see_everyones_items "
         "(then everyone's; `owner` narrows to one user).")


def _owned_schema(noun: str, plural: str, serializer, *, list_help: str = ""):
    """The documentation of an owned resource's operations."""
    return extend_schema_view(
        list=extend_schema(summary=f"{plural.capitalize()}", description=" ".join(filter(None, [SCOPE, list_help])),
                           responses={200: serializer(many=True), 400: REFUSAL}),
        retrieve=extend_schema(summary=f"One {noun}", description="404 for another user's (unless the caller may "
                                                                  "see everyone's items).",
                               responses={200: serializer, 404: REFUSAL}),
        create=extend_schema(summary=f"Make a {noun}, owned by the caller",
                             description="The owner is always the caller. Audited.",
                             responses={201: serializer, 400: REFUSAL, 403: REFUSAL}),
        update=extend_schema(summary=f"Change a {noun}", description="The owner never changes. Audited.",
                             responses={200: serializer, 400: REFUSAL, 403: REFUSAL, 404: REFUSAL}),
        partial_update=extend_schema(summary=f"Change some of a {noun}'s fields",
                                     description="The owner never changes. Audited.",
                                     responses={200: serializer, 400: REFUSAL, 403: REFUSAL, 404: REFUSAL}),
        destroy=extend_schema(summary=f"Delete a {noun}", description="Audited.",
                              responses={204: None, 403: REFUSAL, 404: REFUSAL}),
    )


class OwnedViewSet(TeamScoped, ReadableErrors, viewsets.ModelViewSet):
    """CRUD of one kind of owned item, limited to what the caller may see (assistant.selectors.visible_to)."""

    ordering_fields = ["created_at", "updated_at"]

    def get_queryset(self):
        return visible_to(self.request.user, super().get_queryset())

    # A change and its audit entry are stored together or not at all.
    @transaction.atomic
    def perform_create(self, serializer):
        item = serializer.save(owner=self.request.user)
        item_audit("create", item, actor=self.request.user)

    @transaction.atomic
    def perform_update(self, serializer):
        before = snapshot(serializer.instance)
        item = serializer.save()
        item_audit("change", item, actor=self.request.user, before=before)

    @transaction.atomic
    def perform_destroy(self, instance):
        before = snapshot(instance)
        item_audit("delete", instance, actor=self.request.user, before=before)
        instance.delete()


@_owned_schema("project", "projects", serializers.ProjectSerializer,
               list_help="`search` looks in names and descriptions.")
class ProjectViewSet(OwnedViewSet):
    queryset = Project.objects.select_related("owner").order_by("name", "pk")
    serializer_class = serializers.ProjectSerializer
    filterset_class = filters.ProjectFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at", "updated_at"]


@_owned_schema("goal", "goals", serializers.GoalSerializer, list_help="`search` looks in titles.")
class GoalViewSet(OwnedViewSet):
    queryset = Goal.objects.select_related("owner").order_by("target_date", "title", "pk")
    serializer_class = serializers.GoalSerializer
    filterset_class = filters.GoalFilter
    search_fields = ["title"]
    ordering_fields = ["target_date", "title", "created_at", "updated_at"]


@_owned_schema("task", "tasks", serializers.TaskSerializer,
               list_help="Open tasks first, soonest due first. `due` is today, overdue or this_week; `search` "
                         "looks in titles and details. due_date and due_time are in the owner's time zone; due_at "
                         "is the same moment as an instant (the end of the day when there is no time).")
class TaskViewSet(OwnedViewSet):
    queryset = Task.objects.select_related("owner", "project").order_by("status", "due_at", "-created_at", "pk")
    serializer_class = serializers.TaskSerializer
    filterset_class = filters.TaskFilter
    search_fields = ["title", "details"]
    ordering_fields = ["due_at", "created_at", "updated_at", "title"]


@_owned_schema("note", "notes", serializers.NoteSerializer,
               list_help="Newest first; `q` looks for words in the text, the transcript and the tags.")
class NoteViewSet(OwnedViewSet):
    queryset = Note.objects.select_related("owner", "source_message").order_by("-created_at", "-pk")
    serializer_class = serializers.NoteSerializer
    filterset_class = filters.NoteFilter


@_owned_schema("content request", "content requests", serializers.ContentRequestSerializer,
               list_help="Newest first. A request waits for details until it has a platform, a length, a tone and "
                         "a topic; then the assistant drafts it (status drafting, then ready with the draft, or "
                         "failed) and sends the ready notice on the conversation the owner last wrote from, to "
                         "users who opted in (a request of a user who never wrote on WhatsApp waits). `search` "
                         "looks in briefs and topics.")
class ContentRequestViewSet(OwnedViewSet):
    queryset = ContentRequest.objects.select_related("owner").order_by("-created_at", "-pk")
    serializer_class = serializers.ContentRequestSerializer
    filterset_class = filters.ContentRequestFilter
    search_fields = ["brief", "topic"]

    @transaction.atomic
    def perform_create(self, serializer):
        super().perform_create(serializer)
        content_request_saved(serializer.instance)

    @transaction.atomic
    def perform_update(self, serializer):
        super().perform_update(serializer)
        content_request_saved(serializer.instance)


@_owned_schema("reminder", "reminders", serializers.ReminderSerializer,
               list_help="Soonest first; each is sent on WhatsApp at due_at while pending.")
class ReminderViewSet(OwnedViewSet):
    queryset = Reminder.objects.select_related("owner").order_by("due_at", "pk")
    serializer_class = serializers.ReminderSerializer
    filterset_class = filters.ReminderFilter
    search_fields = ["text"]
    ordering_fields = ["due_at", "created_at", "updated_at"]


@extend_schema_view(
    list=extend_schema(summary="Assistant preferences",
                       description="The caller's own, unless they are a superuser or hold "
                                   "assistant.see_everyones_items. /me/ reads and changes the caller's.",
                       responses={200: serializers.AssistantProfileSerializer(many=True), 400: REFUSAL}),
    retrieve=extend_schema(summary="One user's assistant preferences",
                           responses={200: serializers.AssistantProfileSerializer, 404: REFUSAL}),
)
class AssistantProfileViewSet(TeamScoped, ReadableErrors, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                              viewsets.GenericViewSet):
    queryset = AssistantProfile.objects.select_related("user").order_by("pk")
    serializer_class = serializers.AssistantProfileSerializer
    filter_backends = []

    def get_queryset(self):
        queryset = super().get_queryset()
        return queryset if sees_everyone(self.request.user) else queryset.filter(user=self.request.user)

    @extend_schema(methods=["GET"], summary="The caller's assistant preferences",
                   description="Made with the defaults the first time they are read.",
                   responses={200: serializers.AssistantProfileSerializer})
    @extend_schema(methods=["PATCH"], summary="Change the caller's assistant preferences",
                   description="Only the fields given change. Audited.",
                   request=serializers.AssistantProfileSerializer,
                   responses={200: serializers.AssistantProfileSerializer, 400: REFUSAL, 403: REFUSAL})
    @action(detail=False, methods=["get", "patch"])
    def me(self, request):
        profile = profile_for(request.user)
        if request.method == "GET":
            return Response(self.get_serializer(profile).data)
        before = snapshot(profile)
        form = self.get_serializer(profile, data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        with transaction.atomic():
            profile = form.save()
            item_audit("change", profile, actor=request.user, before=before)
        return Response(self.get_serializer(profile).data)


@extend_schema_view(
    list=extend_schema(summary="The assistant's turns: one per inbound message it handled, newest first",
                       description=f"What it understood (outcome), the tools it called and what it replied. {SCOPE}",
                       responses={200: serializers.TurnSerializer(many=True), 400: REFUSAL}),
    retrieve=extend_schema(summary="One turn", responses={200: serializers.TurnSerializer, 404: REFUSAL}),
)
class TurnViewSet(TeamScoped, ReadableErrors, viewsets.ReadOnlyModelViewSet):
    queryset = Turn.objects.select_related("owner", "message").order_by("-created_at", "-pk")
    serializer_class = serializers.TurnSerializer
    filterset_class = filters.TurnFilter
    ordering_fields = ["created_at", "finished_at"]

    def get_queryset(self):
        return visible_to(self.request.user, super().get_queryset())
