"""Reminders at their due time and summaries at each user's chosen local time."""

from __future__ import annotations

from assistant.models import Task


def reminder_sync_for_task(task: Task) -> None:
    """Keep the task's automatic reminder at its due time (or cancel it)."""


def proactive_run() -> int:
    return 0
