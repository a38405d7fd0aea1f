"""What the assistant keeps for a user, as sections of the user's data export (contacts' GDPR export)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from assistant.models import AssistantProfile, ContentRequest, Goal, Note, Project, Reminder, Task, Turn


def _rows(model, fields: list[str], user) -> Iterator[dict[str, Any]]:
    yield from model.objects.filter(owner=user).order_by("pk").values("id", *fields, "created_at", "updated_at")


def user_sections(user) -> list[tuple[str, Iterator[dict[str, Any]]]]:
    """Receiver of contacts.hooks.user_export_sections."""
    preferences = AssistantProfile.objects.filter(user=user).values(
        "time_zone", "daily_summary", "daily_summary_time", "weekly_summary", "weekly_summary_day", "reminders",
        "quiet_hours_start", "quiet_hours_end")
    return [
        ("projects", _rows(Project, ["name", "description", "archived"], user)),
        ("goals", _rows(Goal, ["title", "project", "target_date", "achieved_at"], user)),
        ("tasks", _rows(Task, ["title", "details", "priority", "due_date", "due_time", "due_at", "status",
                               "completed_at", "project", "source_message"], user)),
        ("notes", _rows(Note, ["text", "tags", "transcript", "source_message"], user)),
        ("content_requests", _rows(ContentRequest, ["brief", "platform", "length", "tone", "topic", "status",
                                                    "draft", "drafted_at", "source_message"], user)),
        ("reminders", _rows(Reminder, ["task", "text", "due_at", "status", "sent_at", "message"], user)),
        ("assistant_preferences", iter(list(preferences))),
        # What the assistant understood and did with each message: the tool calls carry what the user said.
        ("assistant_turns", Turn.objects.filter(owner=user).order_by("pk").values(
            "id", "message", "status", "outcome", "tool_calls", "reply", "error", "created_at", "finished_at")
         .iterator()),
    ]
