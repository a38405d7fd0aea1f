"""
A circuit breaker per provider, kept on the provider row so that every worker, the admin and /health/
see the same state.

closed -> (SEND_CIRCUIT_THRESHOLD consecutive failed calls) -> open: messages are held queued, not
failed -> (after SEND_CIRCUIT_COOLDOWN_SECONDS) one message is let through as a probe (half-open) ->
success closes the circuit and releases the held messages; failure opens it again.

Only failures that say the provider is unwell count (network errors, timeouts, 5xx). A permanent
error about one message (bad number, template paused) or a throttling answer shows the provider is up.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from core.audit import audit_record
from whatsapp.models import CircuitState, Provider
from whatsapp.services.outbound import messages_release_held


def circuit_cooldown() -> timedelta:
    return timedelta(seconds=settings.SEND_CIRCUIT_COOLDOWN_SECONDS)


def circuit_admits(provider: Provider) -> bool:
    """Whether a message may be sent now. When an open circuit's cooldown is over, exactly one caller
    (the one whose update wins) becomes the probe."""
    if provider.circuit_state == CircuitState.CLOSED:
        return True
    now = timezone.now()
    # A probe that never reported back (its worker died) is replaced after another cooldown.
    probe_due = (Q(circuit_state=CircuitState.OPEN, circuit_retry_at__lte=now)
                 | Q(circuit_state=CircuitState.HALF_OPEN, circuit_retry_at__lte=now - circuit_cooldown()))
    won = Provider.objects.filter(probe_due, pk=provider.pk).update(circuit_state=CircuitState.HALF_OPEN,
                                                                    circuit_retry_at=now)
    return bool(won)


def circuit_retry_at(provider: Provider) -> timezone.datetime:
    provider.refresh_from_db(fields=["circuit_state", "circuit_retry_at"])
    base = provider.circuit_retry_at or timezone.now()
    if provider.circuit_state == CircuitState.HALF_OPEN:
        base += circuit_cooldown()
    return max(base, timezone.now())


def circuit_record_success(provider: Provider) -> bool:
    """Close the circuit if it was not closed, and forget earlier failures (they were not consecutive).
    Returns whether it was open (held messages to release). Decided by the row, not by this instance, which
    a batch may have read before another send's failure was counted."""
    rows = Provider.objects.filter(pk=provider.pk)
    was_open = rows.exclude(circuit_state=CircuitState.CLOSED).update(
        circuit_state=CircuitState.CLOSED, circuit_failures=0, circuit_opened_at=None, circuit_retry_at=None)
    if not was_open:
        rows.filter(circuit_failures__gt=0).update(circuit_failures=0)
    provider.circuit_state, provider.circuit_failures = CircuitState.CLOSED, 0
    return bool(was_open)


def circuit_record_failure(provider: Provider, error: str) -> bool:
    """Count a failed call; open the circuit at the threshold, or at once after a failed probe.
    Returns whether the circuit is now open."""
    now = timezone.now()
    Provider.objects.filter(pk=provider.pk).update(circuit_failures=F("circuit_failures") + 1,
                                                   circuit_last_error=error[:2000])
    should_open = (Q(circuit_failures__gte=settings.SEND_CIRCUIT_THRESHOLD) | Q(circuit_state=CircuitState.HALF_OPEN))
    opened = Provider.objects.filter(should_open, pk=provider.pk).update(
        circuit_state=CircuitState.OPEN, circuit_opened_at=now, circuit_retry_at=now + circuit_cooldown())
    provider.refresh_from_db(fields=["circuit_state", "circuit_failures", "circuit_retry_at"])
    return bool(opened)


def circuit_reset(provider: Provider, *, actor=None) -> None:
    """An admin closes the circuit by hand: audited, and the messages it held are sent."""
    before = {"circuit_state": provider.circuit_state, "circuit_failures": provider.circuit_failures}
    Provider.objects.filter(pk=provider.pk).update(circuit_state=CircuitState.CLOSED, circuit_failures=0,
                                                   circuit_opened_at=None, circuit_retry_at=None)
    provider.refresh_from_db()
    audit_record(action="provider.circuit_reset", obj=provider, actor=actor, before=before,
                 after={"circuit_state": CircuitState.CLOSED, "circuit_failures": 0})
    messages_release_held(provider=provider)
