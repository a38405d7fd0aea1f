"""
A local HTTP server that speaks OpenAI's API (chat completions, audio transcriptions, the model list), for tests
and benchmarks. Point the real `openai` client at it:

    with FakeOpenAI() as fake:
        client = openai.OpenAI(base_url=fake.url, api_key="test", max_retries=0)

It records every request and answers plausibly by default: structured outputs come back valid against the
requested JSON schema, the message classifier's schema gets a keyword guess from the customer's text, and a
request offering the assistant's tools gets the tool call a good model would make (tests/fake_assistant_model.py).
`fake.script(endpoint, *steps)` makes it answer something else (a given JSON, broken text, a tool call, a
refusal, an HTTP error, a slow answer) for the next requests, one step per request.
"""

import hashlib
import itertools
import json
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests import fake_assistant_model
from tests.fakes import Recorded, Reply

ENDPOINTS = ("chat", "transcriptions")
DEFAULT_MODELS = ["gpt-4o-mini", "gpt-4.1-mini", "gpt-5-mini", "whisper-1", "gpt-4o-mini-transcribe"]
# Upload formats the transcription endpoint accepts, judged by the file name's extension.
AUDIO_EXTENSIONS = {"flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm"}
TRANSCRIPTION_FORMATS = {"json", "verbose_json", "text", "srt", "vtt"}
LANGUAGE_NAMES = {"en": "english", "es": "spanish", "pt": "portuguese", "de": "german", "fr": "french"}

_ids = itertools.count(1)


# --- what a step can be ---------------------------------------------------------------------------

@dataclass
class ChatAnswer:
    """The assistant message of a chat completion (content, tool calls or a refusal)."""

    content: str | None = None
    tool_calls: list[dict] | None = None
    refusal: str | None = None
    finish_reason: str = "stop"


@dataclass
class Slow:
    """Wait `seconds` before answering with `then` (None: the default answer)."""

    seconds: float
    then: Any = None


def error(status: int, code: str | None, message: str, *, type: str | None = None, param: str | None = None,
          retry_after: float | str | None = None, retry_after_ms: float | str | None = None,
          should_retry: bool | None = None) -> Reply:
    """An error answer in OpenAI's shape, with the optional retry headers the client reads."""
    if type is None:
        type = ("insufficient_quota" if code == "insufficient_quota" else "requests" if status == 429
                else "server_error" if status >= 500 else "invalid_request_error")
    reply = Reply.json({"error": {"message": message, "type": type, "param": param, "code": code}}, status=status)
    if retry_after is not None:
        reply.headers["retry-after"] = str(retry_after)
    if retry_after_ms is not None:
        reply.headers["retry-after-ms"] = str(retry_after_ms)
    if should_retry is not None:
        reply.headers["x-should-retry"] = "true" if should_retry else "false"
    return reply


def slow(seconds: float, then: Any = None) -> Slow:
    """Answer after `seconds` (long enough, a client with a shorter timeout gives up first)."""
    return Slow(seconds, then)


def tool_calls(calls: list[tuple[str, dict | str]]) -> ChatAnswer:
    """The model calls these functions: (name, arguments) pairs; a str argument is sent as is (e.g. broken JSON)."""
    return ChatAnswer(None, [{"id": f"call_{next(_ids):024d}", "type": "function",
                              "function": {"name": name, "arguments": args if isinstance(args, str)
                                           else json.dumps(args, ensure_ascii=False)}}
                             for name, args in calls], finish_reason="tool_calls")


def refusal(text: str) -> ChatAnswer:
    """The model declines to answer in the requested format."""
    return ChatAnswer(None, refusal=text)


# --- what the fake received -----------------------------------------------------------------------

class ChatRequest(dict):
    """A chat completion request's JSON body; `.headers` holds its HTTP headers (lowercase names)."""

    def __init__(self, body: dict, headers: dict[str, str]):
        super().__init__(body)
        self.headers = headers


@dataclass
class UploadedFile:
    filename: str | None
    content_type: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


class TranscriptionRequest(dict):
    """A transcription request's form fields (a field sent several times maps to a list of its values);
    `.file` is the uploaded audio, `.headers` the HTTP headers (lowercase names)."""

    def __init__(self, fields: dict, file: UploadedFile | None, headers: dict[str, str]):
        super().__init__(fields)
        self.file = file
        self.headers = headers


def multipart_parse(body: bytes, content_type: str) -> tuple[dict[str, Any], UploadedFile | None]:
    """Form fields and the `file` part of a multipart/form-data body, byte-exact for binary parts."""
    found = re.search(r'boundary="?([^";]+)"?', content_type)
    if not found:
        raise ValueError("multipart body without a boundary")
    fields: dict[str, Any] = {}
    upload = None
    for chunk in body.split(b"--" + found.group(1).encode())[1:]:
        if chunk.startswith(b"--"):  # the closing delimiter
            break
        chunk = chunk.removeprefix(b"\r\n").removesuffix(b"\r\n")
        head, _, data = chunk.partition(b"\r\n\r\n")
        headers = BytesParser(policy=policy.HTTP).parsebytes(head + b"\r\n\r\n", headersonly=True)
        name = headers.get_param("name", header="content-disposition")
        if headers.get_filename() is not None or name == "file":
            upload = UploadedFile(headers.get_filename(), headers.get_content_type(), data)
        elif name in fields:
            previous = fields[name]
            fields[name] = [*previous, data.decode()] if isinstance(previous, list) else [previous, data.decode()]
        else:
            fields[name] = data.decode()
    return fields, upload


# --- a JSON value valid against a structured-outputs schema ---------------------------------------

_STRING_FORMATS = {"date": "2025-01-15", "date-time": "2025-01-15T10:00:00Z", "time": "10:00:00", "duration": "P1D",
                   "email": "someone@example.com", "hostname": "example.com", "ipv4": "192.0.2.1",
                   "ipv6": "2001:db8::1", "uuid": "00000000-0000-4000-8000-000000000000"}


def schema_instance(schema: dict, root: dict | None = None, depth: int = 0) -> Any:
    """A value valid against `schema` (the JSON Schema subset structured outputs accept). Past a few levels
    it takes the null branch where one exists, so recursive schemas end."""
    root = schema if root is None else root
    deep = depth > 6
    if "$ref" in schema:
        return schema_instance(_resolve(schema["$ref"], root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return None if deep and None in schema["enum"] else schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            branches = schema[key]
            if deep:
                branches = sorted(branches, key=lambda branch: branch.get("type") != "null")
            return schema_instance(branches[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        concrete = [name for name in kind if name != "null"]
        kind = "null" if not concrete or (deep and "null" in kind) else concrete[0]
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        return {name: schema_instance(sub, root, depth + 1) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [schema_instance(schema.get("items", {}), root, depth + 1) for _ in range(schema.get("minItems", 0))]
    if kind in ("number", "integer"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    text = _STRING_FORMATS.get(schema.get("format"), "text")
    text += "x" * (schema.get("minLength", 0) - len(text))
    return text[:schema["maxLength"]] if "maxLength" in schema else text


def _resolve(ref: str, root: dict) -> dict:
    if not ref.startswith("#"):
        raise ValueError(f"only local references are supported: {ref}")
    target = root
    for part in filter(None, ref[1:].split("/")):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target


def _number(schema: dict, integer: bool) -> int | float:
    def bound(key):
        value = schema.get(key)
        return None if isinstance(value, bool) else value

    low, high, above, below = bound("minimum"), bound("maximum"), bound("exclusiveMinimum"), bound("exclusiveMaximum")
    lower = max((x for x in (low, above) if x is not None), default=None)
    upper = min((x for x in (high, below) if x is not None), default=None)
    # Just inside an exclusive bound: a whole step for integers, else at most halfway to the other bound.
    inside = 1 if integer or lower is None or upper is None else min(1, (upper - lower) / 2)

    def fits(value):
        return ((low is None or value >= low) and (high is None or value <= high)
                and (above is None or value > above) and (below is None or value < below))

    candidates = [0, low, None if above is None else above + inside, high, None if below is None else below - inside]
    multiple = schema.get("multipleOf")
    for candidate in (c for c in candidates if c is not None):
        if integer:
            candidate = math.ceil(candidate)
        if multiple:
            candidate = math.ceil(candidate / multiple) * multiple
        if fits(candidate):
            return int(candidate) if integer else candidate
    return 0


# --- the message classifier's schema: a keyword guess -------------------------------------------

def _words(pattern: str) -> re.Pattern:
    return re.compile(rf"\b(?:{pattern})", re.IGNORECASE)


_COMPLAINT = (r"terrible|horrible|awful|broken|late\b|worst|refund|pésim|péssim|reclama|queja|roto|rota\b|atrasad"
              r"|beschwerde|kaputt|verspät|plainte|cassé")
# Checked in this order; the first intent the schema offers whose words occur wins.
_INTENT_RULES = [
    ("complaint", _words(_COMPLAINT)),
    ("note", _words(r"note|nota\b|notiz|anota")),
    ("task", _words(r"task|tarea|tarefa|aufgabe|tâche|remind|recuérda|lembr|erinner")),
    ("request", _words(r"order|pedido|pedir|quiero|quero|bestell|encomend|commande|want\b|book|reserv")),
    ("question", re.compile(r"[?¿]")),
    ("greeting", _words(r"hello|hi\b|hey\b|hola|olá|ola\b|oi\b|hallo|guten tag|bonjour|salut|good morning"
                        r"|buenos días|bom dia")),
]
_POSITIVE = _words(r"thank|great|love|excellent|perfect|awesome|gracias|genial|excelente|obrigad|ótimo|maravilh"
                   r"|danke|super\b|toll\b|merci|génial|parfait|good\b|buen|bom\b|boa\b|gut\b|bien\b")
_NEGATIVE = _words(_COMPLAINT + r"|bad\b|angry|hate|disappoint|malo\b|mala\b|ruim|enojad|schlecht|mauvais|déçu"
                                r"|not working|no funciona|não funciona")
_URGENT = _words(r"urgent|asap|immediately|inmediat|imediat|sofort|dringend|now\b|ahora|agora|jetzt|emergenc|notfall")
_LANGUAGE_WORDS = {language: set(words.split()) for language, words in {
    "en": "the and is are my i you your to please thanks thank hello hi what when want need can",
    "es": "el la los las y es mi yo quiero por favor gracias hola qué cuándo pedido necesito puedo con",
    "pt": "o os as e é meu minha eu quero obrigado obrigada olá oi você quando encomenda preciso posso não com",
    "de": "der die das und ist mein meine ich möchte bitte danke hallo was wann bestellung brauche kann nicht mit ihr",
    "fr": "le la les et est mon ma je veux vous plaît merci bonjour quoi quand commande besoin peux avec pas",
}.items()}
_LANGUAGE_LETTERS = {"es": "ñ¿¡", "pt": "ãõ", "de": "äöüß", "fr": "èêœ"}
_DATES = re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}(?:/\d{2,4})?\b|\b(?:today|tomorrow|hoy|mañana|hoje"
                    r"|amanhã|heute|morgen|demain)\b", re.IGNORECASE)
_CURRENCY_WORDS = r"eur|euros?|usd|dollars?|reais|pesos"
_AMOUNTS = re.compile(rf"(?:R\$|[$€£])\s?\d+(?:[.,]\d+)?|\b\d+(?:[.,]\d+)?\s?(?:€|(?:{_CURRENCY_WORDS})\b)",
                      re.IGNORECASE)
_ITEMS = re.compile(r"(?<![\d.,])\b(\d+)\s+([^\W\d_]{3,})")  # "2 pizzas", not the cents of "12,50 euros"


def classify(text: str, schema: dict, value: dict) -> dict:
    """Fill the classifier's answer (`value`, already valid against `schema`) from keywords in `text`."""
    properties = schema.get("properties", {})

    def offered(name):
        sub = properties.get(name) or {}
        sub = _resolve(sub["$ref"], schema) if "$ref" in sub else sub
        return sub.get("enum"), sub

    def put(name, choice):
        enum, _ = offered(name)
        if name in value and (enum is None or choice in enum):
            value[name] = choice

    intents, _ = offered("intent")
    if intents:
        put("intent", next((intent for intent, rule in _INTENT_RULES if intent in intents and rule.search(text)),
                           "other" if "other" in intents else intents[0]))
    mood = len(_POSITIVE.findall(text)) - len(_NEGATIVE.findall(text))
    put("sentiment", "positive" if mood > 0 else "negative" if mood < 0 else "neutral")
    if isinstance(value.get("sentiment_score"), int | float):
        _, sub = offered("sentiment_score")
        score = max(-0.9, min(0.9, 0.5 * mood))
        value["sentiment_score"] = max(sub.get("minimum", -1), min(sub.get("maximum", 1), score))
    tokens = re.findall(r"[^\W\d_]+", text.lower())
    scores = {language: sum(token in words for token in tokens)
              + 2 * sum(letter in text.lower() for letter in _LANGUAGE_LETTERS.get(language, ""))
              for language, words in _LANGUAGE_WORDS.items()}
    put("language", max(scores, key=lambda language: scores[language]) if any(scores.values()) else "en")
    put("urgency", "high" if _URGENT.search(text) else "normal")
    if isinstance(value.get("fields"), dict):
        found = {"dates": _DATES.findall(text), "amounts": _AMOUNTS.findall(text),
                 "items": [f"{count} {word}" for count, word in _ITEMS.findall(text)
                           if not re.fullmatch(_CURRENCY_WORDS, word, re.IGNORECASE)]}
        value["fields"].update({key: found[key] for key in value["fields"] if key in found})
    return value


def message_text(message: dict) -> str:
    """The text of a chat message, whether its content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


# --- the server -----------------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # benchmarks open many connections at once


class FakeOpenAI:
    """OpenAI's API on a loopback port. `url` is the base URL to give the client (it ends in /v1).

    Recorded: `requests` (every HTTP request, raw), `chat_requests` (JSON bodies, each with `.headers`),
    `transcription_requests` (form fields, each with `.file` and `.headers`), `exceptions` (raised while
    answering: a broken script step or a bug here; the client then got a 500).
    Defaults: `transcripts` / `durations` map an audio file's sha256 to its text / length in seconds;
    `latency` delays every answer; `models` is what GET /v1/models lists."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.models = list(DEFAULT_MODELS)
        self.reset()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                try:
                    parts = urlsplit(self.path)
                    recorded = Recorded(self.command, parts.path, parts.query,
                                        {k.lower(): v for k, v in self.headers.items()}, self._body(), time.time())
                    reply = fake._answer(recorded)
                except Exception as exc:
                    with fake._lock:
                        fake.exceptions.append(exc)
                    reply = error(500, "fake_failure", f"the fake OpenAI server failed: {exc!r}")
                fake._wait(fake.latency + reply.delay)
                headers = {"Content-Type": "application/json", "x-request-id": f"req_{next(_ids):024d}",
                           **reply.headers, "Content-Length": str(len(reply.body))}
                try:
                    self.send_response(reply.status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped waiting (a timeout)

            def _body(self) -> bytes:
                if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
                    length = int(self.headers.get("Content-Length") or 0)
                    return self.rfile.read(length) if length else b""
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args):
                pass

        self.httpd = _Server((host, port), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}/v1"
        # A short poll interval: closing the server waits for one poll.
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # lifecycle

    def start(self) -> "FakeOpenAI":
        self.thread.start()
        return self

    def close(self) -> None:
        self._closing.set()  # wakes answers still waiting out a delay
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # scripting

    def script(self, endpoint: str, *steps: Any) -> None:
        """Queue answers for the next requests to `endpoint` ("chat" or "transcriptions"), one step per request.
        A step is a dict (chat: the model's JSON output; transcriptions: the JSON body), a str (chat: the message
        content as is; transcriptions: the transcript), a `Reply` (raw HTTP), a `ChatAnswer` (from `tool_calls`,
        `refusal`), a `Slow`, None (the default answer) or a function of the request returning one of these."""
        self._check(endpoint)
        with self._lock:
            self._scripts[endpoint].extend(steps)

    def always(self, endpoint: str, step: Any) -> None:
        """Answer with `step` whenever nothing is queued for `endpoint` (None: the built-in default again)."""
        self._check(endpoint)
        self._fallbacks[endpoint] = step

    def pending(self, endpoint: str) -> int:
        """How many queued steps `endpoint` has not used yet."""
        self._check(endpoint)
        return len(self._scripts[endpoint])

    def add_transcript(self, audio: bytes, text: str, seconds: float | None = None) -> None:
        """What the default transcription says for this audio (and how long it lasts)."""
        digest = hashlib.sha256(audio).hexdigest()
        self.transcripts[digest] = text
        if seconds is not None:
            self.durations[digest] = seconds

    def reset(self) -> None:
        """Forget scripts, recorded requests, transcripts, durations and latency."""
        with self._lock:
            self._scripts: dict[str, deque] = {endpoint: deque() for endpoint in ENDPOINTS}
            self._fallbacks: dict[str, Any] = dict.fromkeys(ENDPOINTS)
            self.requests: list[Recorded] = []
            self.chat_requests: list[ChatRequest] = []
            self.transcription_requests: list[TranscriptionRequest] = []
            self.exceptions: list[BaseException] = []
            self.transcripts: dict[str, str] = {}
            self.durations: dict[str, float] = {}
            self.latency = 0.0

    # what was received

    def last_chat_messages(self) -> list[dict]:
        with self._lock:
            return list(self.chat_requests[-1].get("messages") or []) if self.chat_requests else []

    def all_prompt_text(self) -> str:
        """Every message of every chat request, as one text (tool call arguments the client sent back included)."""
        with self._lock:
            requests = list(self.chat_requests)
        texts = []
        for request in requests:
            for message in request.get("messages") or []:
                texts.append(message_text(message))
                texts.extend(call.get("function", {}).get("arguments", "") for call in message.get("tool_calls") or [])
        return "\n".join(text for text in texts if text)

    # answering

    @staticmethod
    def _check(endpoint: str) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint is one of {ENDPOINTS}, not {endpoint!r}")

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._closing.wait(seconds)

    def _step(self, endpoint: str, request: dict) -> Any:
        """The next step for `endpoint`, with functions called and delays waited out."""
        with self._lock:
            queue = self._scripts[endpoint]
            step = queue.popleft() if queue else self._fallbacks[endpoint]
        while callable(step) or isinstance(step, Slow):
            if isinstance(step, Slow):
                self._wait(step.seconds)
                step = step.then
            else:
                step = step(request)
        return step

    def _answer(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
        path = recorded.path.rstrip("/")
        if recorded.method == "POST" and path == "/v1/chat/completions":
            return self._chat(recorded)
        if recorded.method == "POST" and path == "/v1/audio/transcriptions":
            return self._transcription(recorded)
        if recorded.method == "GET" and path == "/v1/models":
            return Reply.json({"object": "list", "data": [self._model(name) for name in self.models]})
        if recorded.method == "GET" and path.startswith("/v1/models/"):
            return Reply.json(self._model(path.removeprefix("/v1/models/")))
        return error(404, "unknown_url", f"Invalid URL ({recorded.method} {recorded.path})")

    @staticmethod
    def _model(name: str) -> dict:
        return {"id": name, "object": "model", "created": 1700000000, "owned_by": "openai"}

    def _chat(self, recorded: Recorded) -> Reply:
        try:
            body = json.loads(recorded.body)
        except ValueError:
            return error(400, None, "We could not parse the JSON body of your request. (HINT: This likely means "
                                    "you aren't using your HTTP library correctly.)")
        if not isinstance(body, dict):
            return error(400, None, "The request body must be a JSON object.")
        request = ChatRequest(body, recorded.headers)
        with self._lock:
            self.chat_requests.append(request)
        for name in ("model", "messages"):
            if not body.get(name):
                return error(400, "missing_required_parameter", f"Missing required parameter: '{name}'.",
                             param=name)
        step = self._step("chat", request)
        if isinstance(step, Reply):
            return step
        if step is None:
            answer = self._default_chat(request)
        elif isinstance(step, ChatAnswer):
            answer = step
        elif isinstance(step, str):
            answer = ChatAnswer(step)
        elif isinstance(step, dict | list):
            answer = ChatAnswer(json.dumps(step, ensure_ascii=False))
        else:
            raise TypeError(f"not a chat step: {step!r}")
        return Reply.json(self._completion(request, answer))

    @staticmethod
    def _default_chat(request: ChatRequest) -> ChatAnswer:
        response_format = request.get("response_format") or {}
        if response_format.get("type") == "json_schema":
            spec = response_format.get("json_schema") or {}
            schema = spec.get("schema") or {}
            value = schema_instance(schema)
            if spec.get("name") == "message_classification" and isinstance(value, dict):
                users = [message for message in request["messages"] if message.get("role") == "user"]
                value = classify(message_text(users[-1]) if users else "", schema, value)
            return ChatAnswer(json.dumps(value, ensure_ascii=False))
        if response_format.get("type") == "json_object":
            return ChatAnswer('{"reply": "ok"}')
        if request.get("tools"):
            # The assistant's tools get the answer a good model would give (tests/fake_assistant_model.py).
            decision = fake_assistant_model.answer(request)
            if isinstance(decision, fake_assistant_model.Call):
                return tool_calls([(decision.name, decision.arguments)])
            return ChatAnswer(decision or "ok")
        return ChatAnswer("This is a reply from the local test model.")

    @staticmethod
    def _completion(request: ChatRequest, answer: ChatAnswer) -> dict:
        prompt = sum(len(message_text(message)) for message in request["messages"])
        written = len(answer.content or "") + len(answer.refusal or "") + sum(
            len(call["function"]["name"]) + len(call["function"]["arguments"]) for call in answer.tool_calls or [])
        prompt_tokens, completion_tokens = max(1, round(prompt / 4)), max(1, round(written / 4))
        return {
            "id": f"chatcmpl-{next(_ids):024d}", "object": "chat.completion", "created": int(time.time()),
            "model": request["model"], "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "finish_reason": answer.finish_reason, "logprobs": None,
                         "message": {"role": "assistant", "content": answer.content, "refusal": answer.refusal,
                                     "tool_calls": answer.tool_calls}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0}},
        }

    def _transcription(self, recorded: Recorded) -> Reply:
        content_type = recorded.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return error(400, None, "The request must be sent as multipart/form-data.")
        fields, upload = multipart_parse(recorded.body, content_type)
        request = TranscriptionRequest(fields, upload, recorded.headers)
        with self._lock:
            self.transcription_requests.append(request)
        for name, present in (("file", upload is not None), ("model", bool(fields.get("model")))):
            if not present:
                return error(400, "missing_required_parameter", f"Missing required parameter: '{name}'.",
                             param=name)
        name = upload.filename or ""
        extension = name.rpartition(".")[2].lower() if "." in name else ""
        if extension not in AUDIO_EXTENSIONS:
            return error(400, "unsupported_value", f"Unsupported file format {extension}".rstrip(), param="file")
        response_format = fields.get("response_format") or "json"
        if response_format not in TRANSCRIPTION_FORMATS:
            return error(400, "unsupported_value", f"Unsupported response_format {response_format}",
                         param="response_format")
        step = self._step("transcriptions", request)
        if isinstance(step, Reply):
            return step
        if isinstance(step, dict):
            return Reply.json(step)
        if step is not None and not isinstance(step, str):
            raise TypeError(f"not a transcription step: {step!r}")
        if step is None:
            step = self.transcripts.get(upload.sha256, f"transcript of {len(upload.data)} bytes")
        text = step
        seconds = float(self.durations.get(upload.sha256, 1.0))
        usage = {"type": "duration", "seconds": seconds}
        if response_format == "json":
            return Reply.json({"text": text, "usage": usage})
        if response_format == "verbose_json":
            language = LANGUAGE_NAMES.get(fields.get("language") or "en", "english")
            return Reply.json({"task": "transcribe", "language": language, "duration": seconds, "text": text,
                               "segments": [], "usage": usage})
        end = time.strftime("%H:%M:%S", time.gmtime(seconds))
        body = {"text": text,
                "srt": f"1\n00:00:00,000 --> {end},000\n{text}\n",
                "vtt": f"WEBVTT\n\n00:00:00.000 --> {end}.000\n{text}\n"}[response_format]
        return Reply(200, body.encode(), {"Content-Type": "text/plain; charset=utf-8"})
