"""
One AI call as the ledger sees it: guarded by the circuit, recorded with its tokens, cost and latency
(or its failure), and, for structured answers, checked against the schema and asked once more with the
validation error when the answer does not fit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

import jsonschema
from django.conf import settings

from ai import client, guards, pricing
from ai.client import AiError, ChatResult, TranscriptionResult
from ai.models import AiCall
from ai.prompts import correction_messages, schema_of
from whatsapp.models import Conversation, Message, Provider


class SchemaViolation(AiError):
    def __init__(self, problem: str):
        super().__init__(f"the answer did not match the schema twice: {problem}", code="schema_violation",
                         retryable=False)


@dataclass
class CallScope:
    """What a call is for: the ledger row's feature and links."""

    feature: str
    provider: Provider | None = None
    message: Message | None = None
    conversation: Conversation | None = None
    attempt: int = 1
    final_attempt: bool = True


@dataclass
class StructuredAnswer:
    data: dict[str, Any]
    model: str
    cost: Decimal
    latency_ms: int


def record(scope: CallScope, status: str, *, reason: str = "", model: str = "", prompt_version: str = "",
           input_tokens: int = 0, output_tokens: int = 0, audio_seconds: float = 0.0,
           cost: Decimal = Decimal("0"), latency_ms: int = 0) -> AiCall:
    return AiCall.objects.create(
        feature=scope.feature, provider=scope.provider, message=scope.message, conversation=scope.conversation,
        status=status, reason=reason[:500], model=model[:100], prompt_version=prompt_version,
        input_tokens=input_tokens, output_tokens=output_tokens, audio_seconds=audio_seconds or 0.0, cost=cost,
        latency_ms=latency_ms, attempt=scope.attempt)


def record_skip(scope: CallScope, skip: guards.Skip) -> AiCall | None:
    return record(scope, AiCall.Status.SKIPPED, reason=skip.reason) if skip.recorded else None


def _failed(scope: CallScope, error: AiError, *, model: str, prompt_version: str = "") -> AiError:
    guards.circuit_record_failure(error)
    status = AiCall.Status.RETRY if error.retryable and not scope.final_attempt else AiCall.Status.FAILED
    record(scope, status, reason=str(error), model=model, prompt_version=prompt_version)
    return error


def _chat_cost(result: ChatResult) -> Decimal:
    return pricing.chat_cost(result.model, input_tokens=result.input_tokens, output_tokens=result.output_tokens,
                             cached_tokens=result.cached_tokens)


@lru_cache(maxsize=64)
def _validator(schema_json: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(schema_json))


def _problem(result: ChatResult, schema: dict[str, Any]) -> tuple[Any, str]:
    try:
        data = client.json_content(result)
        _validator(json.dumps(schema, sort_keys=True)).validate(data)
    except ValueError as exc:
        return None, str(exc)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(part) for part in exc.absolute_path) or "the answer"
        return None, f"{where}: {exc.message}"[:300]
    return data, ""


def structured_call(scope: CallScope, messages: list[dict[str, str]], response_format: dict[str, Any], *,
                    prompt_version: str, model: str | None = None,
                    max_completion_tokens: int = 800) -> StructuredAnswer:
    model = model or settings.OPENAI_MODEL
    schema = schema_of(response_format)
    circuit = guards.circuit_check()
    answer, latency_ms = "", 0
    for round_number in (1, 2):
        try:
            result = client.chat(messages, model=model, response_format=response_format,
                                 max_completion_tokens=max_completion_tokens)
        except AiError as error:
            raise _failed(scope, error, model=model, prompt_version=prompt_version) from None
        guards.circuit_record_success(circuit)
        latency_ms += result.latency_ms
        data, problem = _problem(result, schema)
        usage = {"model": result.model, "prompt_version": prompt_version, "input_tokens": result.input_tokens,
                 "output_tokens": result.output_tokens, "cost": _chat_cost(result), "latency_ms": result.latency_ms}
        if not problem:
            record(scope, AiCall.Status.OK, **usage)
            return StructuredAnswer(data, result.model, usage["cost"], latency_ms)
        if round_number == 1:
            record(scope, AiCall.Status.RETRY, reason=f"answer outside the schema: {problem}", **usage)
            answer = result.content
            messages = correction_messages(messages, answer, problem)
        else:
            record(scope, AiCall.Status.FAILED, reason=f"answer outside the schema again: {problem}", **usage)
    raise SchemaViolation(problem)


def chat_call(scope: CallScope, messages: list[dict[str, Any]], *, prompt_version: str,
              tools: list[dict[str, Any]] | None = None, model: str | None = None,
              max_completion_tokens: int = 800) -> tuple[ChatResult, Decimal]:
    """One chat completion (with tools, or a plain text answer), guarded by the circuit and recorded."""
    model = model or settings.OPENAI_MODEL
    circuit = guards.circuit_check()
    try:
        result = client.chat(messages, model=model, tools=tools, max_completion_tokens=max_completion_tokens)
    except AiError as error:
        raise _failed(scope, error, model=model, prompt_version=prompt_version) from None
    guards.circuit_record_success(circuit)
    cost = _chat_cost(result)
    record(scope, AiCall.Status.OK, model=result.model, prompt_version=prompt_version,
           input_tokens=result.input_tokens, output_tokens=result.output_tokens, cost=cost,
           latency_ms=result.latency_ms)
    return result, cost


def transcription_call(scope: CallScope, content: bytes, *, filename: str, mime_type: str,
                       model: str | None = None,
                       duration_hint: float | None = None) -> tuple[TranscriptionResult, Decimal]:
    model = model or settings.OPENAI_TRANSCRIPTION_MODEL
    circuit = guards.circuit_check()
    try:
        result = client.transcribe(content, filename=filename, mime_type=mime_type, model=model)
    except AiError as error:
        raise _failed(scope, error, model=model) from None
    guards.circuit_record_success(circuit)
    if result.duration_seconds is None:
        result.duration_seconds = duration_hint
    cost = pricing.audio_cost(model, seconds=result.duration_seconds, input_tokens=result.input_tokens,
                              output_tokens=result.output_tokens)
    record(scope, AiCall.Status.OK, model=model, input_tokens=result.input_tokens,
           output_tokens=result.output_tokens, audio_seconds=result.duration_seconds or 0.0, cost=cost,
           latency_ms=result.latency_ms)
    return result, cost
