"""
Whether an AI call may be made: the feature is on for the provider, the contact is in the rollout, the
day's budget has room, and the AI API's circuit is not open.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import F, Q, Sum
from django.utils import timezone

from ai.client import AiError, ai_configured
from ai.models import AiCall, AiCircuit, ProviderAiSettings
from whatsapp.models import Provider


def ai_settings_for(provider: Provider) -> ProviderAiSettings:
    """The provider's settings; the defaults (every feature on, everyone, no budget) when none were saved."""
    try:
        return provider.ai_settings
    except ProviderAiSettings.DoesNotExist:
        return ProviderAiSettings(provider=provider)


def rollout_bucket(contact_id: int) -> int:
    """0-99, fixed per contact: a contact is in a rollout of P percent when its bucket is below P, so a
    larger share keeps everyone a smaller one had."""
    digest = hashlib.sha256(f"ai-rollout:{contact_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100


def in_rollout(ai_settings: ProviderAiSettings, contact_id: int | None) -> bool:
    if ai_settings.rollout_percent >= 100:
        return True
    return contact_id is not None and rollout_bucket(contact_id) < ai_settings.rollout_percent


def budget_day_start(now: datetime | None = None) -> datetime:
    local = timezone.localtime(now or timezone.now(), ZoneInfo(settings.AI_BUDGET_TIME_ZONE))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def spent_today(provider: Provider) -> Decimal:
    total = AiCall.objects.filter(provider=provider, created_at__gte=budget_day_start()).aggregate(
        total=Sum("cost"))["total"]
    return total or Decimal("0")


@dataclass(frozen=True)
class Skip:
    reason: str
    # Whether the ledger keeps a row for it: a call the budget stopped is usage someone wanted; a feature
    # switched off, or a contact outside the rollout, is not.
    recorded: bool = False


def skip_for(feature: str, provider: Provider, *, contact_id: int | None, estimate: Decimal = Decimal("0"),
             ai_settings: ProviderAiSettings | None = None) -> Skip | None:
    """Why this call must not be made (None when it may). The circuit is checked apart (`circuit_check`),
    because an open circuit delays a call instead of skipping it."""
    if not ai_configured():
        return Skip("AI is off: OPENAI_API_KEY is not set")
    ai_settings = ai_settings or ai_settings_for(provider)
    if not ai_settings.feature_enabled(feature):
        return Skip(f"{feature} is off for this provider")
    if not in_rollout(ai_settings, contact_id):
        return Skip(f"contact outside the {ai_settings.rollout_percent}% rollout")
    if ai_settings.daily_budget is not None:
        spent = spent_today(provider)
        if spent + estimate > ai_settings.daily_budget:
            return Skip(f"daily budget reached ({spent:.4f} of {ai_settings.daily_budget} USD spent today)",
                        recorded=True)
    return None


# --- the circuit breaker ----------------------------------------------------------------------------------

# A closed circuit is trusted for this long without reading it again: every call would otherwise read it.
CLOSED_TRUSTED_SECONDS = 2.0
_closed_seen_at = 0.0


def _circuit() -> AiCircuit:
    return AiCircuit.objects.get_or_create(pk="openai")[0]


def _cooldown() -> timedelta:
    return timedelta(seconds=settings.AI_CIRCUIT_COOLDOWN_SECONDS)


def circuit_check() -> AiCircuit | None:
    """Raises a retryable AiError while the circuit is open; once its cooldown is over, one caller (the
    one whose update wins) goes through as the probe. Returns the circuit as it was read (None: closed, as
    read moments ago)."""
    global _closed_seen_at
    if time.monotonic() - _closed_seen_at < CLOSED_TRUSTED_SECONDS:
        return None
    circuit = _circuit()
    if circuit.state == AiCircuit.State.CLOSED and not circuit.failures:
        _closed_seen_at = time.monotonic()
        return circuit
    if circuit.state == AiCircuit.State.CLOSED:
        return circuit
    now = timezone.now()
    probe_due = (Q(state=AiCircuit.State.OPEN, retry_at__lte=now)
                 | Q(state=AiCircuit.State.HALF_OPEN, retry_at__lte=now - _cooldown()))
    if AiCircuit.objects.filter(probe_due, pk=circuit.pk).update(state=AiCircuit.State.HALF_OPEN, retry_at=now):
        return circuit
    # Open: until its cooldown ends. Half open: a probe is out; until the probe's own cooldown ends.
    resume = (circuit.retry_at or now) + (_cooldown() if circuit.state == AiCircuit.State.HALF_OPEN else timedelta())
    wait = max((resume - now).total_seconds(), 1.0)
    raise AiError("the AI API's circuit is open after repeated failures", code="circuit_open", retryable=True,
                  retry_after=wait)


def circuit_record_success(seen: AiCircuit | None) -> None:
    if seen is None or (seen.state == AiCircuit.State.CLOSED and not seen.failures):
        return  # nothing to reset (the common case: no write)
    AiCircuit.objects.filter(pk="openai").exclude(state=AiCircuit.State.CLOSED, failures=0).update(
        state=AiCircuit.State.CLOSED, failures=0, opened_at=None, retry_at=None)


def circuit_record_failure(error: AiError) -> None:
    global _closed_seen_at
    if not error.counts_against_circuit:
        return
    _closed_seen_at = 0.0
    _circuit()
    now = timezone.now()
    AiCircuit.objects.filter(pk="openai").update(failures=F("failures") + 1, last_error=str(error)[:500])
    # A failed probe, or the threshold reached: open (again) for a cooldown.
    AiCircuit.objects.filter(Q(state=AiCircuit.State.HALF_OPEN)
                             | Q(state=AiCircuit.State.CLOSED, failures__gte=settings.AI_CIRCUIT_THRESHOLD),
                             pk="openai").update(state=AiCircuit.State.OPEN, opened_at=now,
                                                 retry_at=now + _cooldown())


def circuit_state() -> dict[str, object]:
    circuit = AiCircuit.objects.filter(pk="openai").first()
    if circuit is None:
        return {"state": AiCircuit.State.CLOSED, "failures": 0}
    report: dict[str, object] = {"state": circuit.state, "failures": circuit.failures}
    if circuit.state != AiCircuit.State.CLOSED:
        report["retry_at"] = circuit.retry_at.isoformat() if circuit.retry_at else None
        report["last_error"] = circuit.last_error
    return report
