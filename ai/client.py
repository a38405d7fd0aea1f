"""
The one place that talks to the AI API, through the `openai` SDK, against OpenAI or any compatible server
(OPENAI_BASE_URL). It returns what a caller records (content, tokens, latency) and turns the SDK's errors
into `AiError`s that say whether trying again later can help.

The SDK's own retries are off: a step is retried by its Celery task, which honours the server's
Retry-After and counts attempts where the admin can see them. Nothing here logs a prompt or a completion.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any

import openai
from django.conf import settings

# The SDK honours server delays up to this long; past it a retry waits for the next sweep instead.
MAX_SERVER_DELAY_SECONDS = 600.0


class AiError(Exception):
    def __init__(self, message: str, *, code: str, retryable: bool, retry_after: float | None = None,
                 counts_against_circuit: bool = False):
        super().__init__(message)
        self.code, self.retryable, self.retry_after = code, retryable, retry_after
        # Only failures that say the API is unwell (network, timeouts, 5xx) open the circuit.
        self.counts_against_circuit = counts_against_circuit


class AiNotConfigured(AiError):
    def __init__(self):
        super().__init__("AI is off: OPENAI_API_KEY is not set", code="not_configured", retryable=False)


@dataclass
class ChatResult:
    content: str
    model: str
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    latency_ms: int = 0
    finish_reason: str = ""
    refusal: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TranscriptionResult:
    text: str
    model: str
    language: str = ""
    duration_seconds: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: int = 0


def ai_configured() -> bool:
    return bool(settings.OPENAI_API_KEY)


@lru_cache(maxsize=4)
def _client(base_url: str, api_key: str, timeout: float) -> openai.OpenAI:
    # One client (one connection pool) per process and configuration.
    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)


def client() -> openai.OpenAI:
    if not ai_configured():
        raise AiNotConfigured()
    return _client(settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY, settings.AI_TIMEOUT_SECONDS)


REASONING_MODEL_PREFIXES = ("gpt-5", "o1", "o3", "o4")


def takes_temperature(model: str) -> bool:
    """Reasoning models answer 400 unsupported_value to any temperature but their default."""
    setting = str(settings.AI_SEND_TEMPERATURE).strip().lower()
    if setting in ("true", "1", "yes", "on"):
        return True
    if setting in ("false", "0", "no", "off"):
        return False
    return not model.lower().startswith(REASONING_MODEL_PREFIXES)


def chat(messages: list[dict[str, Any]], *, model: str, response_format: dict | None = None,
         tools: list[dict] | None = None, max_completion_tokens: int = 800) -> ChatResult:
    options: dict[str, Any] = {"model": model, "messages": messages, "max_completion_tokens": max_completion_tokens}
    if takes_temperature(model):
        options["temperature"] = 0
    if response_format:
        options["response_format"] = response_format
    if tools:
        # Strict tool schemas do not mix with parallel calls.
        options.update(tools=tools, parallel_tool_calls=False)
    started = time.monotonic()
    with _errors_translated():
        completion = client().chat.completions.create(**options)
    latency_ms = int((time.monotonic() - started) * 1000)
    choice = completion.choices[0]
    usage = completion.usage
    details = getattr(usage, "prompt_tokens_details", None) if usage else None
    return ChatResult(
        content=choice.message.content or "",
        model=completion.model or model,
        input_tokens=usage.prompt_tokens if usage else 0,
        cached_tokens=(getattr(details, "cached_tokens", 0) or 0) if details else 0,
        output_tokens=usage.completion_tokens if usage else 0,
        latency_ms=latency_ms,
        finish_reason=choice.finish_reason or "",
        refusal=getattr(choice.message, "refusal", None) or "",
        tool_calls=[{"id": call.id, "name": call.function.name, "arguments": call.function.arguments}
                    for call in (choice.message.tool_calls or [])],
    )


def transcribe(content: bytes, *, filename: str, mime_type: str, model: str,
               language_hint: str = "") -> TranscriptionResult:
    # Only whisper-1 answers verbose_json (with the language and duration); the newer models answer json.
    response_format = "verbose_json" if model.startswith("whisper") else "json"
    options: dict[str, Any] = {"model": model, "file": (filename, content, mime_type), "temperature": 0,
                               "response_format": response_format}
    if language_hint:
        options["language"] = language_hint
    started = time.monotonic()
    with _errors_translated():
        result = client().audio.transcriptions.create(**options)
    latency_ms = int((time.monotonic() - started) * 1000)
    data = result.model_dump() if hasattr(result, "model_dump") else {"text": str(result)}
    usage = data.get("usage") or {}
    duration = data.get("duration")
    if duration is None and usage.get("type") == "duration":
        duration = usage.get("seconds")
    return TranscriptionResult(
        text=(data.get("text") or "").strip(), model=model, language=str(data.get("language") or ""),
        duration_seconds=float(duration) if duration is not None else None,
        input_tokens=int(usage.get("input_tokens") or 0), output_tokens=int(usage.get("output_tokens") or 0),
        latency_ms=latency_ms,
    )


class _errors_translated:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or not isinstance(exc, openai.OpenAIError):
            return False
        raise _translate(exc) from exc


def _translate(exc: openai.OpenAIError) -> AiError:
    if isinstance(exc, openai.APITimeoutError):
        return AiError("the AI API did not answer in time", code="timeout", retryable=True,
                       counts_against_circuit=True)
    if isinstance(exc, openai.APIConnectionError):
        return AiError("the AI API could not be reached", code="connection_error", retryable=True,
                       counts_against_circuit=True)
    if isinstance(exc, openai.APIStatusError):
        status, body_code, message = exc.status_code, _error_code(exc), _error_message(exc)
        delay = _retry_after(exc.response.headers)
        if status == 429 and body_code == "insufficient_quota":
            # Out of credits or over the account's spend limit: no retry helps until someone pays.
            return AiError(f"429 insufficient_quota: {message}", code="insufficient_quota", retryable=False)
        if status == 429:
            return AiError(f"429 rate limited: {message}", code="rate_limited", retryable=True, retry_after=delay)
        if status >= 500:
            return AiError(f"{status} server error: {message}", code=f"http_{status}", retryable=True,
                           retry_after=delay, counts_against_circuit=True)
        if status in (408, 409):
            return AiError(f"{status}: {message}", code=f"http_{status}", retryable=True, retry_after=delay)
        return AiError(f"{status} {body_code or 'refused'}: {message}", code=body_code or f"http_{status}",
                       retryable=False)
    return AiError(f"{type(exc).__name__}: {exc}", code="sdk_error", retryable=False)


def _error_code(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    return str((error or {}).get("code") or getattr(exc, "code", "") or "")


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    message = (error or {}).get("message") if isinstance(error, dict) else None
    return str(message or exc.message)[:300]


def _retry_after(headers: Any) -> float | None:
    """The server's delay: retry-after-ms first, then retry-after in seconds or as an HTTP date. Anything
    not a finite number of seconds is ignored."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return _bounded(float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return _bounded(float(raw))
    except ValueError:
        pass
    try:
        return min(max(parsedate_to_datetime(raw).timestamp() - time.time(), 0.0), MAX_SERVER_DELAY_SECONDS)
    except (TypeError, ValueError):
        return None


def _bounded(seconds: float) -> float:
    if not math.isfinite(seconds):
        raise ValueError("not a finite delay")
    return min(max(seconds, 0.0), MAX_SERVER_DELAY_SECONDS)


def json_content(result: ChatResult) -> Any:
    """The model's JSON answer; ValueError says why it is not one."""
    if result.refusal:
        raise ValueError(f"the model refused: {result.refusal[:200]}")
    if result.finish_reason == "length":
        raise ValueError("the answer was cut off at the token limit")
    try:
        return json.loads(result.content)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at position {exc.pos}") from None
