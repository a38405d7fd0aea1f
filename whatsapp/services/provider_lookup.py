"""
The webhook endpoint's provider lookup, cached in each process with its decrypted credentials: reading
and decrypting the row on every request cost more than storing the request.

A saved or deleted provider bumps a generation number in the shared cache; each process compares it at
most once per PROVIDER_CACHE_CHECK_SECONDS and drops its entries when it changed, and drops them anyway
after PROVIDER_CACHE_SECONDS (the embedded setup's cache is per process, so no bump reaches the others).
The process that saved drops its own entries at once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from django.conf import settings
from django.core.cache import cache

from whatsapp.models import Provider

logger = logging.getLogger(__name__)

GENERATION_KEY = "whatsapp:providers:generation"


class _ProviderCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, uuid.UUID], Provider | None] = {}
        self._generation: str | None = None
        self._checked_at = float("-inf")
        self._filled_at = float("-inf")
        # Raised by every clear: a row read before a clear is not kept after it (it may be the old one).
        self._epoch = 0

    def lookup(self, kind: str, public_id: uuid.UUID) -> Provider | None:
        self._expire_if_changed()
        key = (kind, public_id)
        try:
            return self._entries[key]
        except KeyError:
            epoch = self._epoch
        provider = Provider.objects.filter(kind=kind, public_id=public_id, is_active=True).first()
        with self._lock:
            # Unknown ids are remembered too (a flood of them must not each cost a query), a bounded few.
            if epoch == self._epoch and (provider is not None
                                         or len(self._entries) < settings.PROVIDER_CACHE_MAX_ENTRIES):
                self._entries[key] = provider
        return provider

    def clear(self) -> None:
        with self._lock:
            self._entries = {}
            self._epoch += 1
            self._filled_at = time.monotonic()

    def _expire_if_changed(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < settings.PROVIDER_CACHE_CHECK_SECONDS:
            return
        try:
            generation = cache.get(GENERATION_KEY)
        except Exception:  # webhooks are answered with the cache down: entries expire by age
            logger.warning("the shared cache cannot be read; providers are kept until they expire", exc_info=True)
            generation = self._generation
        with self._lock:
            self._checked_at = now
            if generation != self._generation or now - self._filled_at > settings.PROVIDER_CACHE_SECONDS:
                self._generation = generation
                self._entries = {}
                self._epoch += 1
                self._filled_at = now


_cache = _ProviderCache()


def webhook_provider(kind: str, public_id: uuid.UUID) -> Provider | None:
    """The active provider a webhook URL names, None when there is none. Read-only: never save it."""
    return _cache.lookup(kind, public_id)


def provider_cache_invalidate() -> None:
    """Called on every provider save and delete: this process at once, the others within a second (or,
    with the shared cache down, within PROVIDER_CACHE_SECONDS)."""
    _cache.clear()
    try:
        cache.set(GENERATION_KEY, uuid.uuid4().hex, None)
    except Exception:  # saving a provider must not fail because the cache is down
        logger.warning("the shared cache cannot be written; other processes see the change within "
                       "PROVIDER_CACHE_SECONDS", exc_info=True)
