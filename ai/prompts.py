"""
What we ask the model, and the strict JSON schemas its answers must match (structured outputs: every
property required, no others, optional values nullable). A change to a prompt or a schema bumps its
version, which is recorded with every result, so figures from two versions are never mixed up.
"""

from __future__ import annotations

from typing import Any

CLASSIFICATION_VERSION = "classify-1"
SUGGESTIONS_VERSION = "suggest-1"
SUMMARY_VERSION = "summary-1"

SENTIMENTS = ["positive", "neutral", "negative"]
URGENCIES = ["low", "normal", "high"]
MAX_SUGGESTIONS = 3

_STRINGS = {"type": "array", "items": {"type": "string"}}

REDACTION_NOTE = ("Placeholders such as [PHONE_1], [EMAIL_1], [CARD_1] or [IBAN_1] stand for details removed "
                  "for privacy; keep them exactly as written when you repeat them.")


def _schema(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {
        "name": name, "strict": True,
        "schema": {"type": "object", "properties": properties, "required": list(properties),
                   "additionalProperties": False}}}


def classification_format(intent_names: list[str]) -> dict[str, Any]:
    return _schema("message_classification", {
        "intent": {"type": "string", "enum": intent_names},
        "sentiment": {"type": "string", "enum": SENTIMENTS},
        "sentiment_score": {"type": "number", "minimum": -1, "maximum": 1,
                            "description": "-1 very negative, 0 neutral, 1 very positive"},
        "language": {"type": "string", "description": "ISO 639-1 code of the message's language"},
        "urgency": {"type": "string", "enum": URGENCIES},
        "fields": {"type": "object", "additionalProperties": False, "required": ["dates", "amounts", "items"],
                   "properties": {"dates": _STRINGS, "amounts": _STRINGS, "items": _STRINGS}},
    })


def classification_messages(text: str, context: list[str], intents: list[dict[str, Any]]) -> list[dict[str, str]]:
    taxonomy = "\n".join(
        f"- {intent['name']}: {intent['description']}"
        + (f" Examples: {'; '.join(intent['examples'][:4])}" if intent.get("examples") else "")
        for intent in intents)
    system = (
        "You label one WhatsApp message that a customer sent to a business. Choose exactly one intent:\n"
        f"{taxonomy}\n"
        "Sentiment is how the customer feels (positive, neutral or negative) with a score from -1 to 1. "
        "Language is the ISO 639-1 code of the message itself. Urgency is high only when the customer needs "
        "an answer or action today. Under fields, copy the dates, amounts of money and names of products, "
        "services or things the message mentions, as written. Earlier messages are context only: label the "
        f"last message. {REDACTION_NOTE}")
    user = ""
    if context:
        user += "Earlier in the conversation (newest first):\n" + "\n".join(context) + "\n\n"
    user += f"Message to label:\n{text}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def suggestions_format(template_names: list[str] | None) -> dict[str, Any]:
    if template_names is None:
        item = {"type": "object", "additionalProperties": False, "required": ["text"],
                "properties": {"text": {"type": "string"}}}
    else:
        item = {"type": "object", "additionalProperties": False, "required": ["template", "variables"],
                "properties": {"template": {"type": "string", "enum": template_names or [""]},
                               "variables": _STRINGS}}
    return _schema("reply_suggestions", {
        "language": {"type": "string", "description": "ISO 639-1 code of the customer's language"},
        "suggestions": {"type": "array", "items": item, "maxItems": MAX_SUGGESTIONS},
    })


def suggestions_messages(context: list[str], *, language_hint: str,
                         templates: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    system = (
        "You help a business's operator answer a customer on WhatsApp. Propose up to three different, short "
        "replies the operator could send next, in the customer's own language"
        + (f" (most likely '{language_hint}')" if language_hint else "") + ". Be polite, concrete and brief; "
        "never promise what the conversation does not support; never invent prices, dates or order numbers. "
        + REDACTION_NOTE)
    if templates is not None:
        system += (
            "\nThe 24-hour window for free-form replies is closed: every suggestion must be one of the approved "
            "templates below, named exactly, with one value per variable in order ({{1}}, {{2}}, ...). Prefer "
            "templates in the customer's language.\n"
            + "\n".join(f"- {t['name']} ({t['language']}): {t['body']}" for t in templates))
    user = "The conversation, newest message first:\n" + "\n".join(context)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def summary_format() -> dict[str, Any]:
    return _schema("conversation_summary", {
        "summary": {"type": "string", "description": "at most five sentences"},
        "language": {"type": "string", "description": "ISO 639-1 code of the summary's language"},
    })


def summary_messages(lines: list[str], *, language: str) -> list[dict[str, str]]:
    system = (
        "Summarise this WhatsApp conversation between a customer and a business for a colleague who takes it "
        "over: what the customer wants, what was agreed or done, and what is still open. At most five "
        f"sentences, in {language or 'the language the customer writes in'}. {REDACTION_NOTE}")
    user = "The conversation, oldest message first:\n" + "\n".join(lines)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def correction_messages(previous: list[dict[str, str]], answer: str, problem: str) -> list[dict[str, str]]:
    """The same request once more, with the answer that did not fit and why."""
    return [
        *previous,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": f"That answer does not match the required JSON schema: {problem}. "
                                    "Answer again with JSON that matches it exactly."},
    ]


def schema_of(response_format: dict[str, Any]) -> dict[str, Any]:
    return response_format["json_schema"]["schema"]
