"""
The provider registry: the one place that maps a kind to its module. Registering a kind twice is a
programming error and fails at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from whatsapp.providers.base import BaseProvider

if TYPE_CHECKING:
    from whatsapp.models import Provider as ProviderRow

_REGISTRY: dict[str, type[BaseProvider]] = {}


class DuplicateProviderKind(Exception):
    pass


def register(provider_class: type[BaseProvider]) -> type[BaseProvider]:
    kind = provider_class.kind
    if kind in _REGISTRY:
        raise DuplicateProviderKind(f"provider kind {kind!r} is already registered by {_REGISTRY[kind].__name__}")
    _REGISTRY[kind] = provider_class
    return provider_class


def provider_class_for(kind: str) -> type[BaseProvider]:
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise KeyError(f"unknown provider kind {kind!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def provider_for(row: ProviderRow) -> BaseProvider:
    return provider_class_for(row.kind)(row)


def registered_kinds() -> list[str]:
    return sorted(_REGISTRY)


# Every kind the platform knows, in the order they appear in forms. Meta, Twilio and Chatwoot get
# their modules with the inbound and outbound issues; until then their kind exists (rows can be
# created and configured) but not their behaviour.
KIND_CHOICES = [
    ("meta", "Meta WhatsApp Cloud API"),
    ("twilio", "Twilio"),
    ("chatwoot", "Chatwoot"),
    ("sandbox", "Sandbox (local simulator)"),
]


def _register_builtin() -> None:
    from whatsapp.providers import chatwoot, meta, sandbox, twilio

    for module in (meta, twilio, chatwoot, sandbox):
        register(module.PROVIDER)


_register_builtin()
