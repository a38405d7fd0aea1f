"""
The fake OpenAI server, driven through the real `openai` client: what the AI features' tests rely on.
"""

import datetime
import hashlib
import json
import time

import httpx
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

from tests import fake_openai
from tests.fake_openai import FakeOpenAI, schema_instance
from tests.fakes import Reply

USER = [{"role": "user", "content": "hi"}]

ORDER_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["customer", "lines", "total", "delivery", "paid", "note", "channel", "priority", "discount"],
    "properties": {
        "customer": {"$ref": "#/$defs/person"},
        "lines": {"type": "array", "minItems": 2, "items": {"$ref": "#/$defs/line"}},
        "total": {"type": "number", "minimum": 0.5, "maximum": 1000},
        "delivery": {"type": "string", "format": "date"},
        "paid": {"type": "boolean"},
        "note": {"type": ["string", "null"]},
        "channel": {"anyOf": [{"type": "string", "enum": ["whatsapp", "web"]}, {"type": "null"}]},
        "priority": {"type": "integer", "exclusiveMinimum": 2, "maximum": 9},
        "discount": {"type": "number", "exclusiveMaximum": -1},
    },
    "$defs": {
        "person": {
            "type": "object", "additionalProperties": False, "required": ["name", "phone"],
            "properties": {"name": {"type": "string", "minLength": 8}, "phone": {"type": ["null", "string"]}},
        },
        "line": {
            "type": "object", "additionalProperties": False, "required": ["sku", "quantity", "tags"],
            "properties": {"sku": {"type": "string", "maxLength": 3}, "quantity": {"type": "integer", "minimum": 1},
                           "tags": {"type": "array", "items": {"type": "string"}}},
        },
    },
}

INTENTS = ["greeting", "question", "request", "complaint", "note", "task", "other"]


def classification_schema(intents=INTENTS):
    strings = {"type": "array", "items": {"type": "string"}}
    return {
        "type": "object", "additionalProperties": False,
        "required": ["intent", "sentiment", "sentiment_score", "language", "urgency", "fields"],
        "properties": {
            "intent": {"type": "string", "enum": intents},
            "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
            "sentiment_score": {"type": "number", "minimum": -1, "maximum": 1},
            "language": {"type": "string", "description": "ISO 639-1"},
            "urgency": {"type": "string", "enum": ["low", "normal", "high"]},
            "fields": {"type": "object", "additionalProperties": False, "required": ["dates", "amounts", "items"],
                       "properties": {"dates": strings, "amounts": strings, "items": strings}},
        },
    }


def schema_format(name, schema):
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


def violations(value, schema, root=None, at="$"):
    """Where `value` breaks `schema` (the keywords the schemas above use); empty when it is valid."""
    root = schema if root is None else root
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return violations(value, target, root, at)
    if "anyOf" in schema:
        tries = [violations(value, branch, root, at) for branch in schema["anyOf"]]
        return [] if [] in tries else [f"{at}: matches no anyOf branch"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{at}: {value!r} not in enum"]
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    checks = {"object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
              "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
              "null": lambda v: v is None, "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool), None: lambda v: True}
    if not any(checks[kind](value) for kind in kinds):
        return [f"{at}: {value!r} is not {kinds}"]
    problems = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        problems += [f"{at}: missing {name}" for name in schema.get("required", []) if name not in value]
        if schema.get("additionalProperties") is False:
            problems += [f"{at}: extra {name}" for name in value if name not in properties]
        for name, sub in properties.items():
            if name in value:
                problems += violations(value[name], sub, root, f"{at}.{name}")
    elif isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            problems.append(f"{at}: fewer than minItems")
        for index, item in enumerate(value):
            problems += violations(item, schema.get("items", {}), root, f"{at}[{index}]")
    elif isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            problems.append(f"{at}: length out of range")
        if schema.get("format") == "date":
            datetime.date.fromisoformat(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        limits = [("minimum", value >= schema.get("minimum", value)),
                  ("maximum", value <= schema.get("maximum", value)),
                  ("exclusiveMinimum", "exclusiveMinimum" not in schema or value > schema["exclusiveMinimum"]),
                  ("exclusiveMaximum", "exclusiveMaximum" not in schema or value < schema["exclusiveMaximum"])]
        problems += [f"{at}: breaks {name}" for name, ok in limits if not ok]
    return problems


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def client(fake):
    return OpenAI(base_url=fake.url, api_key="test", max_retries=0, timeout=5)


# --- chat completions -----------------------------------------------------------------------------

def test_structured_output_is_valid_against_the_schema(fake, client):
    response = client.chat.completions.create(model="gpt-4o-mini", messages=USER,
                                              response_format=schema_format("order", ORDER_SCHEMA))

    value = json.loads(response.choices[0].message.content)
    assert violations(value, ORDER_SCHEMA) == []
    assert len(value["lines"]) == 2 and value["lines"][0]["quantity"] == 1
    assert value["priority"] == 3 and value["discount"] < -1 and value["total"] == 0.5
    assert response.model == "gpt-4o-mini" and response.object == "chat.completion"
    assert response.choices[0].finish_reason == "stop" and response.choices[0].message.refusal is None
    usage = response.usage
    assert usage.prompt_tokens >= 1 and usage.completion_tokens > 5
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert fake.chat_requests[0]["response_format"]["json_schema"]["name"] == "order"
    assert fake.chat_requests[0].headers["authorization"] == "Bearer test"


def test_structured_output_agrees_with_jsonschema():
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator(ORDER_SCHEMA).validate(schema_instance(ORDER_SCHEMA))
    recursive = {"type": "object", "additionalProperties": False, "required": ["name", "parent"],
                 "properties": {"name": {"type": "string"}, "parent": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}}}
    jsonschema.Draft202012Validator(recursive).validate(schema_instance(recursive))


def test_parse_with_a_pydantic_model(client):
    class Line(BaseModel):
        sku: str
        quantity: int

    class Order(BaseModel):
        lines: list[Line]
        note: str | None
        when: datetime.date

    parsed = client.chat.completions.parse(model="gpt-4o-mini", messages=USER, response_format=Order)

    assert isinstance(parsed.choices[0].message.parsed, Order)


@pytest.mark.parametrize(("text", "intent", "sentiment", "language"), [
    ("Hola, quiero hacer un pedido de 2 pizzas por €12,50 para mañana", "request", "neutral", "es"),
    ("My order arrived late and the box was broken. Terrible!", "complaint", "negative", "en"),
    ("Nota: comprar leite para a loja amanhã, obrigado", "note", "positive", "pt"),
    ("Wann öffnet ihr morgen?", "question", "neutral", "de"),
    ("Bonjour !", "greeting", "neutral", "fr"),
    ("ok", "other", "neutral", "en"),
])
def test_classification_guesses_from_the_last_user_message(client, text, intent, sentiment, language):
    messages = [{"role": "system", "content": "Classify the customer's message. Answer in JSON."},
                {"role": "user", "content": "Thank you, this is a note"},
                {"role": "user", "content": [{"type": "text", "text": text}]}]

    response = client.chat.completions.create(model="gpt-4o-mini", messages=messages,
                                              response_format=schema_format("message_classification",
                                                                            classification_schema()))

    value = json.loads(response.choices[0].message.content)
    assert violations(value, classification_schema()) == []
    assert (value["intent"], value["sentiment"], value["language"]) == (intent, sentiment, language)
    assert (value["sentiment_score"] > 0) == (sentiment == "positive")
    assert (value["sentiment_score"] < 0) == (sentiment == "negative")


def test_classification_extracts_fields_and_urgency(client):
    response = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Urgent: I want 3 boxes and 2 bags for $40 on 2025-03-01"}],
        response_format=schema_format("message_classification", classification_schema()))

    value = json.loads(response.choices[0].message.content)
    assert value["urgency"] == "high"
    assert value["fields"] == {"dates": ["2025-03-01"], "amounts": ["$40"], "items": ["3 boxes", "2 bags"]}


def test_classification_only_picks_intents_the_schema_offers(client):
    schema = classification_schema(["support", "sales"])
    response = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "This is terrible, where is my order?"}],
        response_format=schema_format("message_classification", schema))

    assert json.loads(response.choices[0].message.content)["intent"] == "support"


def test_plain_and_tool_requests_get_text(client):
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    with_tools = client.chat.completions.create(
        model="gpt-4o-mini", messages=USER,
        tools=[{"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}])

    assert plain.choices[0].message.content
    assert with_tools.choices[0].message.content == "ok" and with_tools.choices[0].message.tool_calls is None


def test_scripted_tool_call(fake, client):
    fake.script("chat", fake_openai.tool_calls([("lookup_order", {"order_id": "A1", "items": 2})]))
    tools = [{"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}]

    first = client.chat.completions.create(model="gpt-4o-mini", messages=USER, tools=tools)

    choice = first.choices[0]
    call = choice.message.tool_calls[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert call.id.startswith("call_") and call.function.name == "lookup_order"
    assert json.loads(call.function.arguments) == {"order_id": "A1", "items": 2}

    followup = [*USER, choice.message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": '{"status": "shipped"}'}]
    second = client.chat.completions.create(model="gpt-4o-mini", messages=followup, tools=tools)
    assert second.choices[0].message.content == "ok"
    assert fake.last_chat_messages()[-1]["tool_call_id"] == call.id
    assert '"order_id": "A1"' in fake.all_prompt_text()


def test_scripted_steps_are_used_in_order_then_the_default(fake, client):
    seen = []
    fake.script("chat", {"intent": "note"}, "not json {", lambda request: seen.append(request["model"]) or "called",
                fake_openai.refusal("I can't help with that."), Reply(502, b"<html>Bad gateway</html>",
                                                                      {"Content-Type": "text/html"}))

    def ask():
        return client.chat.completions.create(model="gpt-4o-mini", messages=USER)

    assert json.loads(ask().choices[0].message.content) == {"intent": "note"}
    assert ask().choices[0].message.content == "not json {"
    assert ask().choices[0].message.content == "called" and seen == ["gpt-4o-mini"]
    refused = ask().choices[0].message
    assert refused.refusal == "I can't help with that." and refused.content is None
    with pytest.raises(openai.InternalServerError):
        ask()
    assert fake.pending("chat") == 0
    assert ask().choices[0].message.content == "This is a reply from the local test model."


def test_always_answers_when_nothing_is_queued(fake, client):
    fake.always("chat", {"fixed": 1})
    fake.script("chat", "first")

    answers = [client.chat.completions.create(model="m", messages=USER).choices[0].message.content for _ in range(3)]

    assert answers == ["first", '{"fixed": 1}', '{"fixed": 1}']


def test_recorded_prompt_text(fake, client):
    client.chat.completions.create(model="m", messages=[{"role": "system", "content": "Be brief."},
                                                        {"role": "user", "content": "Call me at [phone]"}])
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": [{"type": "text",
                                                                                       "text": "second"}]}])

    assert fake.all_prompt_text() == "Be brief.\nCall me at [phone]\nsecond"
    assert fake.last_chat_messages() == [{"role": "user", "content": [{"type": "text", "text": "second"}]}]
    assert "+34" not in fake.all_prompt_text()


# --- audio transcriptions ----------------------------------------------------------------------------

def test_transcription_verbose_json(fake, client):
    audio = bytes(range(256)) * 8 + b"\r\n--not-a-boundary\r\n\r\n"
    fake.add_transcript(audio, "hola, quiero dos pizzas", seconds=4.5)

    result = client.audio.transcriptions.create(file=("voice.ogg", audio, "audio/ogg"), model="whisper-1",
                                                response_format="verbose_json", language="es", temperature=0,
                                                prompt="Pizzería Roma")

    assert (result.text, result.language, result.duration) == ("hola, quiero dos pizzas", "spanish", 4.5)
    request = fake.transcription_requests[0]
    assert dict(request) == {"model": "whisper-1", "language": "es", "temperature": "0",
                             "prompt": "Pizzería Roma", "response_format": "verbose_json"}
    assert (request.file.filename, request.file.content_type) == ("voice.ogg", "audio/ogg")
    assert request.file.data == audio and request.file.sha256 == hashlib.sha256(audio).hexdigest()


def test_transcription_json_and_text(fake, client):
    as_json = client.audio.transcriptions.create(file=("a.ogg", b"12345", "audio/ogg"), model="gpt-4o-mini-transcribe")
    as_text = client.audio.transcriptions.create(file=("a.mp3", b"123", "audio/mpeg"), model="whisper-1",
                                                 response_format="text")

    assert as_json.text == "transcript of 5 bytes" and as_json.usage.seconds == 1.0
    assert as_text == "transcript of 3 bytes"


def test_transcription_scripted_and_refused_format(fake, client):
    fake.script("transcriptions", "scripted words", fake_openai.error(503, None, "overloaded"))
    upload = ("voice.ogg", b"x", "audio/ogg")

    assert client.audio.transcriptions.create(file=upload, model="whisper-1").text == "scripted words"
    with pytest.raises(openai.InternalServerError):
        client.audio.transcriptions.create(file=upload, model="whisper-1")
    with pytest.raises(openai.BadRequestError) as refused:
        client.audio.transcriptions.create(file=("voice.oga", b"x", "audio/ogg"), model="whisper-1")
    assert refused.value.code == "unsupported_value"


# --- errors, delays ---------------------------------------------------------------------------------

def test_rate_limit_with_retry_after(fake, client):
    fake.script("chat", fake_openai.error(429, "rate_limit_exceeded", "Rate limit reached", retry_after=2,
                                          retry_after_ms=1500),
                fake_openai.error(429, "insufficient_quota", "You exceeded your current quota"))

    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="m", messages=USER)
    with pytest.raises(openai.RateLimitError) as out_of_credit:
        client.chat.completions.create(model="m", messages=USER)

    assert limited.value.status_code == 429 and limited.value.code == "rate_limit_exceeded"
    assert limited.value.response.headers["retry-after"] == "2"
    assert limited.value.response.headers["retry-after-ms"] == "1500"
    assert (out_of_credit.value.code, out_of_credit.value.type) == ("insufficient_quota", "insufficient_quota")


def test_server_error(fake, client):
    fake.script("chat", fake_openai.error(500, "server_error", "The server had an error"))

    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="m", messages=USER)

    assert failed.value.status_code == 500
    assert (failed.value.code, failed.value.type) == ("server_error", "server_error")
    assert "The server had an error" in str(failed.value)


def test_slow_answer_times_the_client_out(fake, client):
    fake.script("chat", fake_openai.slow(5))
    started = time.monotonic()

    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).chat.completions.create(model="m", messages=USER)

    assert time.monotonic() - started < 2
    assert client.chat.completions.create(model="m", messages=USER).choices[0].message.content


def test_slow_then_an_answer(fake, client):
    fake.script("chat", fake_openai.slow(0.1, then={"late": True}))

    response = client.chat.completions.create(model="m", messages=USER)

    assert json.loads(response.choices[0].message.content) == {"late": True}


def test_latency_delays_every_answer(fake, client):
    fake.latency = 0.2
    started = time.monotonic()

    client.chat.completions.create(model="m", messages=USER)
    client.audio.transcriptions.create(file=("voice.ogg", b"x", "audio/ogg"), model="whisper-1")

    assert time.monotonic() - started >= 0.4


def test_models_unknown_paths_and_malformed_json(fake, client):
    assert "gpt-4o-mini" in [model.id for model in client.models.list()]

    def post(path, body):
        response = httpx.post(fake.url + path, content=body, headers={"Content-Type": "application/json"},
                              timeout=5, trust_env=False)
        return response.status_code, response.json()["error"]

    status, body = post("/nowhere", b"{}")
    assert status == 404 and body["code"] == "unknown_url" and body["type"] == "invalid_request_error"
    status, body = post("/chat/completions", b"{not json")
    assert status == 400 and set(body) == {"message", "type", "param", "code"}
    with pytest.raises(openai.BadRequestError) as missing:
        client.chat.completions.create(model="m", messages=[])
    assert missing.value.param == "messages"


def test_reset_forgets_everything(fake, client):
    fake.script("chat", "queued")
    fake.add_transcript(b"x", "words")
    client.audio.transcriptions.create(file=("voice.ogg", b"y", "audio/ogg"), model="whisper-1")
    fake.latency = 0.5

    fake.reset()

    assert (fake.requests, fake.chat_requests, fake.transcription_requests) == ([], [], [])
    assert (fake.pending("chat"), fake.transcripts, fake.latency) == (0, {}, 0)
    assert client.chat.completions.create(model="m", messages=USER).choices[0].message.content != "queued"
