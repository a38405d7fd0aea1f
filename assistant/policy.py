"""
The notification policy: what the assistant sends back after each outcome, as explicit rules.

Rules (the minimal preset; the conversational preset differs only where marked):
- a stored note: nothing, or a reaction when the provider's policy names an emoji;
- a task, project, goal or reminder made or changed: nothing (conversational: one line, "✅ Created task: …");
- a preference changed: one line, since a user who says "stop the daily summary" must know it took;
- a question (list tasks, report what is due, search notes) and a plain answer: the answer;
- a content request with a field missing: one question at a time (the clarification flow asks it);
- a content request complete: nothing until the draft is ready, then a ready notice only when the user
  opted in (notify_on_ready);
- a failure: one short notice that the message is kept and what to try;
- the AI unavailable (down or over budget): one notice per outage, never one per message.

A provider's policy can override the rule of any stored outcome with "silent", "react" or "confirm".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from assistant.models import AssistantPolicy, Preset


class Outcome(StrEnum):
    NOTE_SAVED = "note_saved"
    TASK_CREATED = "task_created"
    TASK_UPDATED = "task_updated"
    TASK_COMPLETED = "task_completed"
    PROJECT_CREATED = "project_created"
    GOAL_CREATED = "goal_created"
    REMINDER_SET = "reminder_set"
    PREFERENCES_CHANGED = "preferences_changed"
    CONTENT_REQUESTED = "content_requested"
    CONTENT_READY = "content_ready"
    CONTENT_COMPLETED = "content_completed"
    TASKS_LISTED = "tasks_listed"
    DUE_REPORTED = "due_reported"
    NOTES_FOUND = "notes_found"
    CONTENT_CLARIFY = "content_clarify"
    ANSWERED = "answered"
    NOTHING = "nothing"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"


class Action(StrEnum):
    SILENT = "silent"
    REACT = "react"
    CONFIRM = "confirm"
    ANSWER = "answer"  # send what was asked for
    ASK = "ask"  # send the pending question
    NOTICE = "notice"  # a failure or unavailability notice


#: Outcomes whose rule a provider's policy may override, and the values an override may take.
OVERRIDABLE = (Outcome.NOTE_SAVED, Outcome.TASK_CREATED, Outcome.TASK_UPDATED, Outcome.TASK_COMPLETED,
               Outcome.PROJECT_CREATED, Outcome.GOAL_CREATED, Outcome.REMINDER_SET, Outcome.PREFERENCES_CHANGED,
               Outcome.CONTENT_REQUESTED, Outcome.CONTENT_READY, Outcome.CONTENT_COMPLETED)
OVERRIDE_ACTIONS = (Action.SILENT, Action.REACT, Action.CONFIRM)

STORED = {Outcome.NOTE_SAVED: Action.SILENT, Outcome.TASK_CREATED: Action.SILENT,
          Outcome.TASK_UPDATED: Action.SILENT, Outcome.TASK_COMPLETED: Action.SILENT,
          Outcome.PROJECT_CREATED: Action.SILENT, Outcome.GOAL_CREATED: Action.SILENT,
          Outcome.REMINDER_SET: Action.SILENT, Outcome.PREFERENCES_CHANGED: Action.CONFIRM,
          Outcome.CONTENT_REQUESTED: Action.SILENT, Outcome.CONTENT_READY: Action.CONFIRM,
          Outcome.CONTENT_COMPLETED: Action.SILENT}
CONVERSATIONAL = {**STORED, Outcome.TASK_CREATED: Action.CONFIRM, Outcome.TASK_UPDATED: Action.CONFIRM,
                  Outcome.TASK_COMPLETED: Action.CONFIRM, Outcome.PROJECT_CREATED: Action.CONFIRM,
                  Outcome.GOAL_CREATED: Action.CONFIRM, Outcome.REMINDER_SET: Action.CONFIRM,
                  Outcome.CONTENT_COMPLETED: Action.CONFIRM}
FIXED = {Outcome.TASKS_LISTED: Action.ANSWER, Outcome.DUE_REPORTED: Action.ANSWER,
         Outcome.NOTES_FOUND: Action.ANSWER, Outcome.ANSWERED: Action.ANSWER,
         Outcome.CONTENT_CLARIFY: Action.ASK, Outcome.NOTHING: Action.SILENT,
         Outcome.FAILED: Action.NOTICE, Outcome.UNAVAILABLE: Action.NOTICE}
PRESETS = {Preset.MINIMAL: STORED, Preset.CONVERSATIONAL: CONVERSATIONAL}


@dataclass(frozen=True)
class Decision:
    action: Action
    emoji: str = ""


def decide(outcome: Outcome, policy: AssistantPolicy, *, notify_on_ready: bool = False) -> Decision:
    """What to send after `outcome` on a conversation governed by `policy`."""
    if outcome in FIXED:
        return Decision(FIXED[outcome])
    if outcome == Outcome.CONTENT_READY and not notify_on_ready:
        return Decision(Action.SILENT)  # the ready notice is opt-in, whatever the preset says
    action = PRESETS.get(policy.preset, STORED)[outcome]
    override = (policy.overrides or {}).get(outcome.value)
    if override in OVERRIDE_ACTIONS:
        action = Action(override)  # an explicit rule wins, "silent" included
    elif outcome == Outcome.NOTE_SAVED and action == Action.SILENT and policy.note_reaction:
        action = Action.REACT
    if action == Action.REACT:
        return Decision(Action.REACT, emoji=policy.note_reaction or "✅")
    return Decision(action)
