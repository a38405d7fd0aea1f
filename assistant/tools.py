"""
The tools the assistant's model may call, as OpenAI function definitions (strict: every property listed as
required, optional ones nullable). `assistant.services.actions` carries them out.

https://platform.openai.com/docs/guides/function-calling
"""

from __future__ import annotations

from typing import Any

PRIORITIES = ["low", "normal", "high", "urgent"]
PLATFORMS = ["linkedin", "instagram", "x", "facebook", "blog", "email"]
LENGTHS = ["short", "medium", "long"]
TONES = ["professional", "friendly", "playful", "inspiring"]
TASK_PERIODS = ["today", "tomorrow", "overdue", "this_week", "all"]


def _nullable(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": [kind, "null"], "description": description, **extra}
    if "enum" in extra:
        schema["enum"] = [*extra["enum"], None]
    return schema


def _text(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


TASK_REF = _text('Which task: "last" for the one just made or talked about, its number, or words of its title.')
DATE = "A date as YYYY-MM-DD in the user's time zone (resolve 'next Friday' yourself from today's date)."
TIME = "A time as HH:MM, 24-hour, in the user's time zone."


def _function(name: str, description: str, properties: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": description, "strict": True,
        "parameters": {"type": "object", "properties": properties, "required": list(properties),
                       "additionalProperties": False},
    }}


TOOLS: list[dict[str, Any]] = [
    _function("create_task", "Create a task.", {
        "title": _text("A short title, in the user's language."),
        "details": _nullable("string", "Anything more the user said about it."),
        "priority": _nullable("string", "The priority, when the user gave one.", enum=PRIORITIES),
        "due_date": _nullable("string", DATE),
        "due_time": _nullable("string", TIME),
        "project": _nullable("string", "The project's name, when the user named one."),
    }),
    _function("update_task", "Change a task: only the fields given change.", {
        "task": TASK_REF,
        "title": _nullable("string", "A new title."),
        "details": _nullable("string", "New details."),
        "priority": _nullable("string", "A new priority.", enum=PRIORITIES),
        "due_date": _nullable("string", DATE),
        "due_time": _nullable("string", TIME),
        "project": _nullable("string", "Move it to this project."),
    }),
    _function("complete_task", "Mark a task done.", {"task": TASK_REF}),
    _function("list_tasks", "List the user's tasks; the answer is sent to the user as a list.", {
        "period": _nullable("string", "Due when.", enum=TASK_PERIODS),
        "priority": _nullable("string", "Only this priority or higher.", enum=PRIORITIES),
        "project": _nullable("string", "Only this project's tasks."),
        "include_done": {"type": "boolean", "description": "Whether finished tasks are listed too."},
    }),
    _function("create_project", "Create a project.", {
        "name": _text("Its name."),
        "description": _nullable("string", "What it is about."),
    }),
    _function("create_goal", "Create a goal.", {
        "title": _text("The goal."),
        "target_date": _nullable("string", DATE),
        "project": _nullable("string", "The project it belongs to."),
    }),
    _function("save_note", "Store a note exactly as the user said it (nothing is sent back).", {
        "text": _text("The note's text, without a leading 'note:'."),
        "tags": {"type": "array", "items": {"type": "string"}, "description": "A few lower-case keywords."},
    }),
    _function("search_notes", "Find the user's notes containing some words.", {
        "query": _text("Words to look for."),
    }),
    _function("create_content_request", "Ask for a piece of writing (a post, an article, an email). Leave "
              "out what the user did not say: they are asked for it.", {
        "brief": _text("What to write, in the user's words."),
        "platform": _nullable("string", "Where it will be published.", enum=PLATFORMS),
        "length": _nullable("string", "How long.", enum=LENGTHS),
        "tone": _nullable("string", "The tone.", enum=TONES),
        "topic": _nullable("string", "What it is about, in a few words."),
    }),
    _function("complete_content_request", "Mark a content request done (published or no longer needed).", {
        "request": _text('Which request: "last", its number, or words of its brief.'),
    }),
    _function("set_reminder", "Remind the user of something at a time.", {
        "text": _text("What to remind of."),
        "date": _text(DATE),
        "time": _text(TIME),
        "task": _nullable("string", "The task it is about, if any (as for update_task)."),
    }),
    _function("report_due", "Tell the user what is due; the answer is sent to the user.", {
        "period": {"type": "string", "enum": ["today", "tomorrow", "this_week"], "description": "Which period."},
    }),
    _function("set_preferences", "Change how the assistant keeps in touch; only the fields given change.", {
        "daily_summary": _nullable("boolean", "Whether to send a morning summary of the day's tasks."),
        "daily_summary_time": _nullable("string", TIME),
        "weekly_summary": _nullable("boolean", "Whether to send a weekly summary."),
        "reminders": _nullable("boolean", "Whether to remind of tasks at their due time."),
        "notify_on_ready": _nullable("boolean", "Whether to send a notice when a draft is ready."),
        "time_zone": _nullable("string", "An IANA time zone name, e.g. Europe/Madrid."),
    }),
]

TOOL_NAMES = frozenset(tool["function"]["name"] for tool in TOOLS)


def tool_schema(name: str) -> dict[str, Any]:
    return next(tool["function"]["parameters"] for tool in TOOLS if tool["function"]["name"] == name)
