"""
Hooks: how a lower layer calls the apps above it without importing them.

The layer that owns an event declares a `Hook`; apps above register receivers in their
`AppConfig.ready()`, and the owner fires the hook where the event happens. Receivers run in the
order they were registered, inside the caller's transaction, and an exception in one propagates to
the caller exactly as a direct call would (the inbox then retries the webhook event).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Hook:
    def __init__(self, name: str, *, doc: str = ""):
        self.name = name
        self.__doc__ = doc
        self._receivers: list[Callable[..., Any]] = []

    def register(self, receiver: Callable[..., Any]) -> Callable[..., Any]:
        """Add a receiver (usable as a decorator). Registering the same one again changes nothing, so an
        app whose ready() runs twice does not run its receivers twice."""
        if receiver not in self._receivers:
            self._receivers.append(receiver)
        return receiver

    def unregister(self, receiver: Callable[..., Any]) -> None:
        if receiver in self._receivers:
            self._receivers.remove(receiver)

    @property
    def receivers(self) -> tuple[Callable[..., Any], ...]:
        return tuple(self._receivers)

    def fire(self, **kwargs: Any) -> list[Any]:
        return [receiver(**kwargs) for receiver in self._receivers]

    def __repr__(self) -> str:
        return f"<Hook {self.name}: {len(self._receivers)} receiver(s)>"
