"""
Send rate limits shared by every worker: one limiter per sending number (the provider's messages per
second) and one per recipient (WhatsApp's pair rate).

Both are GCRA, the "virtual scheduling" form of a token bucket one token deep: each key stores the
theoretical time of its next free slot, and a caller either takes the next slot (and waits until it)
or is told how long until one is free. Slots are spaced evenly, so no one-second window ever holds
more than the rate. Slot times come from the Redis server's clock, so workers on different hosts
agree. Without Redis (the embedded run command), a process-local limiter stands in: there is only one
worker there.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings

KEY_PREFIX = "wa:limit:"

# KEYS[1]: the limiter's key. ARGV: slot spacing and the longest wait a caller accepts, in microseconds.
# Returns {admitted (1/0), wait in microseconds}. A refused caller takes nothing.
_RESERVE_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_free < now then next_free = now end
local wait = next_free - now
if wait > max_wait then
  return {0, wait}
end
redis.call('SET', KEYS[1], next_free + interval, 'PX', math.floor((wait + interval) / 1000) + 1000)
return {1, wait}
"""


@dataclass(frozen=True)
class Reservation:
    admitted: bool
    #: Seconds until the slot (admitted), or until a slot is free (refused).
    wait: float


class RedisLimiter:
    def __init__(self, client: redis.Redis):
        self.client = client
        self.script = client.register_script(_RESERVE_SCRIPT)

    def reserve(self, key: str, interval: float, max_wait: float) -> Reservation:
        admitted, wait = self.script(keys=[KEY_PREFIX + key],
                                     args=[int(interval * 1_000_000), int(max_wait * 1_000_000)])
        return Reservation(bool(admitted), int(wait) / 1_000_000)


class LocalLimiter:
    """The same algorithm in process memory, for a single-worker installation without Redis."""

    def __init__(self):
        self.lock = threading.Lock()
        self.next_free: dict[str, float] = {}

    def reserve(self, key: str, interval: float, max_wait: float) -> Reservation:
        with self.lock:
            now = time.monotonic()
            next_free = max(self.next_free.get(key, 0.0), now)
            wait = next_free - now
            if wait > max_wait:
                return Reservation(False, wait)
            self.next_free[key] = next_free + interval
            return Reservation(True, wait)


@lru_cache(maxsize=1)
def _limiter_for(redis_url: str) -> RedisLimiter | LocalLimiter:
    if redis_url:
        return RedisLimiter(redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2))
    return LocalLimiter()


def limiter() -> RedisLimiter | LocalLimiter:
    return _limiter_for(settings.REDIS_URL)


def number_slot_interval(rate_per_second: float) -> float:
    """Slot spacing for a number: the rate less the headroom (SEND_RATE_HEADROOM) that absorbs jitter."""
    return 1.0 / (rate_per_second * (1.0 - settings.SEND_RATE_HEADROOM))


def number_key(provider_id: int) -> str:
    return f"number:{provider_id}"


def recipient_key(provider_id: int, address: str) -> str:
    return f"pair:{provider_id}:{address}"
