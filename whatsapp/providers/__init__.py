"""
The provider registry: the one place that lists the provider kinds and maps a kind to its backend.

A provider is a module or package of `whatsapp.providers` whose PROVIDER is its backend class (a
ProviderBackend naming its kind, label and display label, and declaring its own settings). Adding one is
its package, one line in PROVIDERS below (and its name in the import) and its test fixtures in
tests/whatsapp/providers/fixtures/<kind>/: Provider.kind takes its choices from here, so no migration is
needed.

Provider modules import `whatsapp.providers.base`, `events`, `bodies`, `safe_fetch` and
`whatsapp_templates`, never this package, so importing the registry imports each provider once and no
provider imports it back. Registering a kind twice is a programming error and fails at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from whatsapp.providers import chatwoot, meta, sandbox, twilio
from whatsapp.providers.base import ProviderBackend

if TYPE_CHECKING:
    from whatsapp.models import Provider as ProviderRow

# One line per provider, in the order forms list the kinds.
PROVIDERS = (
    meta,
    twilio,
    chatwoot,
    sandbox,
)

_REGISTRY: dict[str, type[ProviderBackend]] = {}


class DuplicateProviderKind(Exception):
    pass


def register(backend_class: type[ProviderBackend]) -> type[ProviderBackend]:
    kind = backend_class.kind
    if kind in _REGISTRY:
        raise DuplicateProviderKind(f"provider kind {kind!r} is already registered by {_REGISTRY[kind].__name__}")
    _REGISTRY[kind] = backend_class
    return backend_class


def backend_class_for(kind: str) -> type[ProviderBackend]:
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise KeyError(f"unknown provider kind {kind!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def backend_for(row: ProviderRow) -> ProviderBackend:
    """The behaviour of one Provider row: its kind's backend, bound to the row."""
    return backend_class_for(row.kind)(row)


def registered_kinds() -> list[str]:
    return sorted(_REGISTRY)


def kind_choices() -> list[tuple[str, str]]:
    """The choices of Provider.kind, in registry order (a callable, so a new kind needs no migration)."""
    return [(kind, backend_class.display_label) for kind, backend_class in _REGISTRY.items()]


for _provider in PROVIDERS:
    register(_provider.PROVIDER)


def provider_settings_check() -> None:
    """Every provider setting given in the environment reads as its type. Called when the app loads, so
    a bad value stops each process at start-up (as config/settings.py does for its own variables)
    instead of failing its first send."""
    for backend_class in _REGISTRY.values():
        for setting in backend_class.own_settings:
            setting()
