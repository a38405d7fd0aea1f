"""Intent, sentiment, language, urgency and the things a message names, with a strict JSON schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ai.models import Feature
from ai.prompts import CLASSIFICATION_VERSION, classification_format, classification_messages
from ai.redaction import Redaction, redact, redact_all, restore
from ai.services.calls import CallScope, structured_call
from ai.taxonomy import active_intents


@dataclass
class Classification:
    intent: str
    sentiment: str
    sentiment_score: float
    language: str
    urgency: str
    fields: dict[str, list[str]] = field(default_factory=dict)
    model: str = ""
    prompt_version: str = CLASSIFICATION_VERSION
    cost: Decimal = Decimal("0")
    latency_ms: int = 0


def classification_request(text: str, *, context: list[str], intents: list[dict[str, Any]],
                           redact_pii: bool) -> tuple[list[dict[str, str]], dict[str, Any], Redaction]:
    redaction = Redaction(text="", replacements={})
    if redact_pii:
        context, redaction = redact_all(context)
        redaction = redact(text, into=redaction)
        text = redaction.text
    return (classification_messages(text, context, intents),
            classification_format([intent["name"] for intent in intents]), redaction)


def classify_text(text: str, *, context: list[str] | None = None, intents: list[dict[str, Any]] | None = None,
                  redact_pii: bool = True, scope: CallScope | None = None) -> Classification:
    """Classify one message (no database write but the call's ledger row). Raises AiError."""
    intents = intents or active_intents()
    messages, response_format, redaction = classification_request(
        text, context=list(context or []), intents=intents, redact_pii=redact_pii)
    answer = structured_call(scope or CallScope(Feature.CLASSIFICATION), messages, response_format,
                             prompt_version=CLASSIFICATION_VERSION, max_completion_tokens=400)
    data = answer.data
    fields = {name: [restore(str(value), redaction.replacements) for value in values]
              for name, values in (data.get("fields") or {}).items()}
    return Classification(
        intent=data["intent"], sentiment=data["sentiment"], sentiment_score=float(data["sentiment_score"]),
        language=str(data["language"])[:16].lower(), urgency=data["urgency"], fields=fields, model=answer.model,
        cost=answer.cost, latency_ms=answer.latency_ms)
