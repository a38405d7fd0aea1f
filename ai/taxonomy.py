"""The intents the classifier chooses from: the business's own list, edited in the admin (migration 0002
of this app writes the default one)."""

from __future__ import annotations

from typing import Any

from ai.models import IntentCategory

# Asked when every intent was switched off in the admin: the schema needs at least one name.
FALLBACK_INTENTS: list[dict[str, Any]] = [{"name": "other", "description": "Any message.", "examples": []}]


def active_intents() -> list[dict[str, Any]]:
    rows = list(IntentCategory.objects.filter(is_active=True))
    if not rows:
        return FALLBACK_INTENTS
    return [{"name": row.name, "description": row.description, "examples": row.example_lines()} for row in rows]
