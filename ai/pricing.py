"""
What a call costs, in US dollars, from list prices per million tokens and per audio minute. Prices change
and self-hosted models cost nothing per call: AI_PRICES in settings replaces or adds any model's.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings

# List prices (USD) as published for these models in 2026; a model not listed here costs 0 until
# AI_PRICES names it, and the usage page says so.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.60},
    "gpt-4.1-mini": {"input": 0.40, "cached_input": 0.10, "output": 1.60},
    "gpt-4.1-nano": {"input": 0.10, "cached_input": 0.025, "output": 0.40},
    "gpt-5-mini": {"input": 0.25, "cached_input": 0.025, "output": 2.00},
    "gpt-5-nano": {"input": 0.05, "cached_input": 0.005, "output": 0.40},
    "gpt-5.4-mini": {"input": 0.75, "cached_input": 0.075, "output": 4.50},
    "whisper-1": {"audio_minute": 0.006},
    "gpt-4o-transcribe": {"audio_minute": 0.006},
    "gpt-4o-mini-transcribe": {"audio_minute": 0.003},
    "gpt-transcribe": {"audio_minute": 0.0045},
}

MILLION = Decimal(1_000_000)


def prices_for(model: str) -> dict[str, float]:
    table = {**DEFAULT_PRICES, **(settings.AI_PRICES or {})}
    if model in table:
        return table[model]
    # A dated snapshot (gpt-4o-mini-2024-07-18) costs what its model does.
    for name in sorted(table, key=len, reverse=True):
        if model.startswith(name + "-"):
            return table[name]
    return {}


def is_priced(model: str) -> bool:
    return bool(prices_for(model))


def chat_cost(model: str, *, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> Decimal:
    prices = prices_for(model)
    uncached = max(input_tokens - cached_tokens, 0)
    cost = (Decimal(str(prices.get("input", 0))) * uncached
            + Decimal(str(prices.get("cached_input", prices.get("input", 0)))) * cached_tokens
            + Decimal(str(prices.get("output", 0))) * output_tokens) / MILLION
    return cost.quantize(Decimal("0.000001"))


def audio_cost(model: str, *, seconds: float | None, input_tokens: int = 0, output_tokens: int = 0) -> Decimal:
    prices = prices_for(model)
    if "audio_minute" in prices and seconds:
        return (Decimal(str(prices["audio_minute"])) * Decimal(str(seconds)) / 60).quantize(Decimal("0.000001"))
    return chat_cost(model, input_tokens=input_tokens, output_tokens=output_tokens)


def estimated_chat_cost(model: str, *, prompt_chars: int, max_output_tokens: int) -> Decimal:
    """A call's cost before it is made, for the budget check: about four characters per token."""
    return chat_cost(model, input_tokens=prompt_chars // 4 + 50, output_tokens=max_output_tokens // 2)
