"""
The rule-based model behind the fake OpenAI server's answers to the assistant: which tool it calls for
typical phrasings, that every call is valid against the tool's strict schema, how it reads today's date
from the system prompt, what it says after the tools ran, and that it answers every scenario of the
assistant evaluation (bench/assistant_eval/scenarios/) as the scenario expects.
"""

import datetime as dt
import json

import jsonschema
import openai
import pytest

from assistant.tools import TOOLS, tool_schema
from bench import assistant_eval
from tests import fake_assistant_model as model
from tests.fake_openai import FakeOpenAI, tool_calls

WEDNESDAY = "2026-12-02"


def system_prompt(today: str = WEDNESDAY, weekday: str = "Wednesday", now: str = "10:30",
                  zone: str = "Europe/Madrid") -> str:
    return (f"You are Ana's personal assistant on WhatsApp.\nToday: {today} ({weekday}), now {now}, "
            f"time zone {zone}\nRules: call the tools.")


def request_for(text: str, *, system: str | None = None, history: list[dict] | None = None, tools=TOOLS,
                **extra) -> dict:
    messages = [{"role": "system", "content": system or system_prompt()}, *(history or []),
                {"role": "user", "content": text}]
    return {"model": "gpt-4.1-mini", "messages": messages, "tools": tools, "parallel_tool_calls": False, **extra}


def call_for(text: str, **kwargs) -> model.Call:
    answer = model.answer(request_for(text, **kwargs))
    assert isinstance(answer, model.Call), f"{text!r} got a text answer: {answer!r}"
    schema = tool_schema(answer.name)
    jsonschema.validate(answer.arguments, schema)
    assert list(answer.arguments) == list(schema["properties"])  # strict: every property, in order
    return answer


CASES = [
    # notes
    ("note: the wifi password for the studio is on the fridge", "save_note",
     {"text": "the wifi password for the studio is on the fridge"}),
    ("remember that Ana's birthday is on March 3", "save_note", {"text": "Ana's birthday is on March 3"}),
    ("jot down: parking spot B12 at the airport", "save_note", {"text": "parking spot B12 at the airport"}),
    ("nota: el proveedor cambia los precios en enero", "save_note",
     {"text": "el proveedor cambia los precios en enero"}),
    ("anota: a reunião com a Acme foi remarcada para quinta", "save_note",
     {"text": "a reunião com a Acme foi remarcada para quinta"}),
    # tasks
    ("create a task to review the marketing budget", "create_task",
     {"title": "Review the marketing budget", "priority": None, "due_date": None, "due_time": None,
      "project": None, "details": None}),
    ("add a task: call the bank tomorrow at 9", "create_task",
     {"title": "Call the bank", "due_date": "2026-12-03", "due_time": "09:00"}),
    ("remind me to call the dentist tomorrow at 9", "create_task",
     {"title": "Call the dentist", "due_date": "2026-12-03", "due_time": "09:00"}),
    ("add a high priority task to send the invoice to Acme by Friday", "create_task",
     {"title": "Send the invoice to Acme", "priority": "high", "due_date": "2026-12-04"}),
    ("I need to file the VAT return by the end of the month, it's urgent", "create_task",
     {"title": "File the VAT return", "priority": "urgent", "due_date": "2026-12-31"}),
    ("add a task to the Website Redesign project: update the footer links", "create_task",
     {"title": "Update the footer links", "project": "Website Redesign"}),
    ("add a task to call the accountant on Friday at 5", "create_task",
     {"title": "Call the accountant", "due_date": "2026-12-04", "due_time": "17:00"}),
    ("todo: buy printer ink", "create_task", {"title": "Buy printer ink", "due_date": None}),
    ("create a task to send the release notes to the team", "create_task",
     {"title": "Send the release notes to the team"}),
    ("crea una tarea para revisar el presupuesto", "create_task", {"title": "Revisar el presupuesto"}),
    ("recuérdame llamar a Ana mañana a las 9", "create_task",
     {"title": "Llamar a Ana", "due_date": "2026-12-03", "due_time": "09:00"}),
    ("cria uma tarefa para revisar o orçamento", "create_task", {"title": "Revisar o orçamento"}),
    ("me lembra de ligar para a Ana amanhã às 9", "create_task",
     {"title": "Ligar para a Ana", "due_date": "2026-12-03", "due_time": "09:00"}),
    # changes to the last task
    ("make it high priority and due next Friday", "update_task",
     {"task": "last", "priority": "high", "due_date": "2026-12-04", "title": None, "due_time": None}),
    ("move it to Monday", "update_task", {"task": "last", "due_date": "2026-12-07", "priority": None}),
    ("rename it to Draft the Q2 plan", "update_task", {"task": "last", "title": "Draft the Q2 plan"}),
    ("make it urgent", "update_task", {"task": "last", "priority": "urgent"}),
    ("ponla con prioridad alta para el viernes", "update_task",
     {"task": "last", "priority": "high", "due_date": "2026-12-04"}),
    ("muda para amanhã", "update_task", {"task": "last", "due_date": "2026-12-03"}),
    # completing
    ("mark it done", "complete_task", {"task": "last"}),
    ("mark the marketing budget task as done", "complete_task", {"task": "marketing budget"}),
    ("I finished the slides", "complete_task", {"task": "slides"}),
    ("marca la tarea del alquiler como hecha", "complete_task", {"task": "alquiler"}),
    ("the tweet is published", "complete_content_request", {"request": "tweet"}),
    # questions
    ("what are my high priority tasks today?", "list_tasks",
     {"period": "today", "priority": "high", "project": None, "include_done": False}),
    ("list my overdue tasks", "list_tasks", {"period": "overdue"}),
    ("what tasks do I have in the Launch project?", "list_tasks", {"project": "Launch", "period": None}),
    ("show all my tasks including done ones", "list_tasks", {"include_done": True}),
    ("¿cuáles son mis tareas de hoy?", "list_tasks", {"period": "today"}),
    ("quais são minhas tarefas para amanhã?", "list_tasks", {"period": "tomorrow"}),
    ("what's due this week", "report_due", {"period": "this_week"}),
    ("what's due tomorrow?", "report_due", {"period": "tomorrow"}),
    ("find my notes about pricing", "search_notes", {"query": "pricing"}),
    # projects and goals
    ("create a project called Website Redesign to refresh our site", "create_project",
     {"name": "Website Redesign", "description": "Refresh our site"}),
    ("new goal: run a half marathon by June", "create_goal",
     {"title": "Run a half marathon", "target_date": "2027-06-30", "project": None}),
    ("set a goal to reach 1000 newsletter subscribers by the end of the year for the Newsletter project",
     "create_goal", {"title": "Reach 1000 newsletter subscribers", "target_date": "2026-12-31",
                     "project": "Newsletter"}),
    # content requests: only what was said
    ("write a LinkedIn post about our launch", "create_content_request",
     {"brief": "write a LinkedIn post about our launch", "platform": "linkedin", "length": None, "tone": None,
      "topic": "our launch"}),
    ("Write a short, professional LinkedIn post about our Q3 results", "create_content_request",
     {"platform": "linkedin", "length": "short", "tone": "professional", "topic": "our Q3 results"}),
    ("draft a long, inspiring post about remote work", "create_content_request",
     {"platform": None, "length": "long", "tone": "inspiring", "topic": "remote work"}),
    ("escreve um post para o Instagram sobre o nosso lançamento", "create_content_request",
     {"platform": "instagram", "length": None, "tone": None, "topic": "o nosso lançamento"}),
    # reminders
    ("set a reminder for tomorrow at 10 to call Ana", "set_reminder",
     {"text": "Call Ana", "date": "2026-12-03", "time": "10:00", "task": None}),
    ("remind me about it tomorrow at 10", "set_reminder", {"task": "last", "date": "2026-12-03", "time": "10:00"}),
    ("remind me in 2 hours to stretch", "set_reminder", {"text": "Stretch", "date": WEDNESDAY, "time": "12:30"}),
    # preferences
    ("stop the daily summary", "set_preferences",
     {"daily_summary": False, "daily_summary_time": None, "weekly_summary": None, "reminders": None,
      "notify_on_ready": None, "time_zone": None}),
    ("send me a daily summary at 7:30", "set_preferences", {"daily_summary": True, "daily_summary_time": "07:30"}),
    ("turn off reminders", "set_preferences", {"reminders": False, "daily_summary": None}),
    ("let me know when drafts are ready", "set_preferences", {"notify_on_ready": True}),
    ("my time zone is America/New_York", "set_preferences", {"time_zone": "America/New_York"}),
    ("deja de enviarme el resumen diario", "set_preferences", {"daily_summary": False}),
    ("pare o resumo diário", "set_preferences", {"daily_summary": False}),
]


@pytest.mark.parametrize(("text", "name", "expected"), CASES, ids=[case[0][:40] for case in CASES])
def test_typical_phrasings_get_the_right_tool_call(text, name, expected):
    call = call_for(text)

    assert call.name == name
    assert {key: call.arguments[key] for key in expected} == expected


@pytest.mark.parametrize("text", ["hi", "thanks!", "how are you?", "what can you do?", "hola, ¿qué tal?",
                                  "obrigado!", "great, thanks", "ok 👍"])
def test_chit_chat_gets_a_short_text_and_no_call(text):
    answer = model.answer(request_for(text))

    assert isinstance(answer, str) and 0 < len(answer) < 120


@pytest.mark.parametrize(("today", "weekday", "text", "field", "expected"), [
    ("2026-12-04", "Friday", "make it due next Friday", "due_date", "2026-12-11"),  # never today
    ("2026-12-31", "Thursday", "add a task to renew the lease tomorrow", "due_date", "2027-01-01"),
    ("2026-12-31", "Thursday", "add a task to pay rent on Monday", "due_date", "2027-01-04"),
    ("2027-02-27", "Saturday", "add a task to file taxes in 3 days", "due_date", "2027-03-02"),
    ("2026-07-15", "Wednesday", "new goal: launch the shop by March", "target_date", "2027-03-31"),
    ("2026-02-10", "Tuesday", "new goal: launch the shop by March", "target_date", "2026-03-31"),
])
def test_relative_dates_come_from_the_system_prompt(today, weekday, text, field, expected):
    call = call_for(text, system=system_prompt(today=today, weekday=weekday))

    assert call.arguments[field] == expected


def test_the_prompt_line_wins_over_the_machine_clock_and_a_bare_date_is_a_fallback():
    far_future = system_prompt(today="2031-05-09", weekday="Friday", zone="Pacific/Auckland")
    assert call_for("remind me to call Ana tomorrow at 8", system=far_future).arguments["due_date"] == "2031-05-10"

    bare = "You are an assistant. The date is 2030-01-15."
    assert call_for("add a task to call Ana tomorrow", system=bare).arguments["due_date"] == "2030-01-16"
    assert model.clock_from([{"role": "system", "content": system_prompt(now="23:45", zone="Asia/Tokyo")}]) == \
        model.Clock(dt.date(2026, 12, 2), dt.time(23, 45), "Asia/Tokyo")


def test_a_reminder_without_a_date_is_today_or_tomorrow_by_the_prompt_time():
    morning = call_for("set a reminder at 5pm to call Ana", system=system_prompt(now="09:00"))
    evening = call_for("set a reminder at 5pm to call Ana", system=system_prompt(now="18:00"))

    assert (morning.arguments["date"], morning.arguments["time"]) == (WEDNESDAY, "17:00")
    assert evening.arguments["date"] == "2026-12-03"


def test_the_last_user_message_is_the_one_answered():
    history = [{"role": "user", "content": "note: the printer's number is in the contract"},
               {"role": "assistant", "content": "Done."}]

    assert call_for("make it urgent", history=history).name == "update_task"


def tool_round(text: str, result: dict) -> dict:
    request = request_for(text)
    call = {"id": "call_1", "type": "function", "function": {"name": "create_task", "arguments": "{}"}}
    request["messages"] += [{"role": "assistant", "content": None, "tool_calls": [call]},
                            {"role": "tool", "tool_call_id": "call_1", "content": json.dumps(result)}]
    return request


def test_after_the_tools_it_answers_with_short_text():
    assert model.answer(tool_round("create a task to call Ana", {"ok": True, "result": {"task": 1}})) == "Done."
    assert model.answer(tool_round("crea una tarea para llamar a Ana", {"ok": True, "result": {}})) == "Hecho."
    failed = model.answer(tool_round("mark the report task as done",
                                     {"ok": False, "result": "two tasks match 'report'"}))
    assert failed == "Sorry, I could not do that: two tasks match 'report'"


def test_it_only_calls_tools_it_is_offered():
    no_notes = [tool for tool in TOOLS if tool["function"]["name"] != "save_note"]

    assert isinstance(model.answer(request_for("note: buy milk", tools=no_notes)), str)
    assert model.answer(request_for("note: buy milk", tools=[{"type": "function", "function": {
        "name": "lookup_order", "parameters": {"type": "object"}}}])) is None
    assert isinstance(model.answer(request_for("note: buy milk", tool_choice="none")), str)


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def client(server):
    server.reset()
    return openai.OpenAI(base_url=server.url, api_key="test", max_retries=0)


def test_the_fake_server_answers_the_assistants_requests_with_tool_calls(server, client):
    response = client.chat.completions.create(model="gpt-4.1-mini", tools=TOOLS, parallel_tool_calls=False,
                                              messages=request_for("remind me to call the dentist tomorrow at 9")
                                              ["messages"])

    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    arguments = json.loads(call.function.arguments)
    assert call.function.name == "create_task" and arguments["due_date"] == "2026-12-03"
    jsonschema.validate(arguments, tool_schema("create_task"))

    chat = client.chat.completions.create(model="gpt-4.1-mini", tools=TOOLS, messages=request_for("hi")["messages"])
    assert chat.choices[0].message.tool_calls is None and chat.choices[0].message.content


def test_scripted_steps_still_come_first(server, client):
    server.script("chat", tool_calls([("save_note", {"text": "scripted", "tags": []})]))
    messages = request_for("create a task to call Ana")["messages"]

    first = client.chat.completions.create(model="gpt-4.1-mini", tools=TOOLS, messages=messages)
    second = client.chat.completions.create(model="gpt-4.1-mini", tools=TOOLS, messages=messages)

    assert first.choices[0].message.tool_calls[0].function.name == "save_note"
    assert second.choices[0].message.tool_calls[0].function.name == "create_task"
    server.always("chat", "fixed")
    assert client.chat.completions.create(model="gpt-4.1-mini", tools=TOOLS,
                                          messages=messages).choices[0].message.content == "fixed"


SCENARIOS = assistant_eval.load_scenarios()
SPOKEN = [(scenario, number, turn) for scenario in SCENARIOS for number, turn in enumerate(scenario["turns"], 1)
          if ("say" in turn or "voice" in turn) and turn.get("model") is not False]


def test_the_evaluation_has_enough_scenarios_of_every_kind():
    tags = {tag for scenario in SCENARIOS for tag in scenario["tags"]}

    assert len(SCENARIOS) >= 40
    assert {"notes", "tasks", "listing", "reporting", "completing", "projects", "goals", "content",
            "clarification", "reminders", "preferences", "spanish", "portuguese", "ambiguous",
            "chit-chat"} <= tags


@pytest.mark.parametrize(("scenario", "number", "turn"), SPOKEN,
                         ids=[f"{scenario['id']}-{number}" for scenario, number, _ in SPOKEN])
def test_every_scenario_turn_gets_the_expected_valid_call(scenario, number, turn):
    """The fake model alone (it sees only the message and the date), as the evaluation's --fake run uses it."""
    zone = scenario["user"].get("time_zone", "UTC")
    now = dt.datetime.now(dt.UTC).astimezone(assistant_eval.ZoneInfo(zone))
    system = system_prompt(today=now.date().isoformat(), weekday=now.strftime("%A"), now=now.strftime("%H:%M"),
                           zone=zone)
    answer = model.answer(request_for(turn.get("say") or turn.get("voice"), system=system))
    made = []
    if isinstance(answer, model.Call):
        jsonschema.validate(answer.arguments, tool_schema(answer.name))
        made = [{"name": answer.name, "arguments": answer.arguments}]

    assert assistant_eval.calls_mismatch(turn, made, now.date()) in (None, [])
