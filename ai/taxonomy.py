"""The intents the classifier chooses from: the business's own list, edited in the admin."""

from __future__ import annotations

import time
from typing import Any

from ai.models import IntentCategory

# The set a new installation starts with (migration 0002 writes it), and what is asked while the table is
# empty.
DEFAULT_INTENTS: list[dict[str, Any]] = [
    {"name": "note", "description": "A note to self: something the sender wants kept or remembered.",
     "examples": ["note: call the printer about the invoice", "nota: comprar tinta azul"]},
    {"name": "request", "description": "A request or an order: to buy, book, deliver, send or change something.",
     "examples": ["I'd like to order two boxes of tiles", "¿Me pueden enviar el catálogo?"]},
    {"name": "task", "description": "A to-do to track: something to be done by someone, often with a due date.",
     "examples": ["create a task to review the budget by Friday", "lembrar de pagar o fornecedor amanhã"]},
    {"name": "question", "description": "A question that asks for information.",
     "examples": ["What time do you open on Saturday?", "Wie lange dauert der Versand?"]},
    {"name": "complaint", "description": "Dissatisfaction with a product, a delivery or the service.",
     "examples": ["My order arrived broken", "Ya van tres semanas y nada"]},
    {"name": "greeting", "description": "Only a greeting, thanks or goodbye, with nothing else asked.",
     "examples": ["Hi!", "Obrigado, até logo"]},
    {"name": "other", "description": "Anything else.", "examples": []},
]

# Asked when every intent was switched off in the admin: the schema needs at least one name.
FALLBACK_INTENTS: list[dict[str, Any]] = [{"name": "other", "description": "Any message.", "examples": []}]


# Read once per worker for this long: an edit in the admin reaches every worker within it.
CACHE_SECONDS = 30.0
_cache: tuple[float, list[dict[str, Any]]] | None = None


def active_intents(*, fresh: bool = False) -> list[dict[str, Any]]:
    global _cache
    if not fresh and _cache is not None and time.monotonic() - _cache[0] < CACHE_SECONDS:
        return _cache[1]
    rows = list(IntentCategory.objects.all())
    if rows:
        intents = [{"name": row.name, "description": row.description, "examples": row.example_lines()}
                   for row in rows if row.is_active] or FALLBACK_INTENTS
    else:
        intents = DEFAULT_INTENTS
    _cache = (time.monotonic(), intents)
    return intents
