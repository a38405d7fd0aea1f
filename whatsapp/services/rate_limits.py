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
MARK_PREFIX = "wa:mark:"

# KEYS[1]: the limiter's key. ARGV: slot spacing and the longest wait a caller accepts, in microseconds; how
# many consecutive slots it asks for; and the least wait (microseconds: the time it needs before its first
# call). Returns {slots taken, wait for the first in microseconds}: as many of the slots asked for as start
# within the longest wait. A refused caller takes nothing.
_RESERVE_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
local lead = tonumber(ARGV[4] or '0')
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_free < now + lead then next_free = now + lead end
local wait = next_free - now
if wait > max_wait then
  return {0, wait}
end
if interval > 0 then
  count = math.min(count, math.floor((max_wait - wait) / interval) + 1)
end
local until_free = wait + count * interval
redis.call('SET', KEYS[1], next_free + count * interval, 'PX', math.floor(until_free / 1000) + 1000)
return {count, wait}
"""

# KEYS[1]: the limiter's key. Returns the wait until its next free slot, in microseconds (0 when free now).
_PEEK_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_free < now then return 0 end
return next_free - now
"""


@dataclass(frozen=True)
class Reservation:
    admitted: bool
    #: Seconds until the slot (admitted), or until a slot is free (refused).
    wait: float


@dataclass(frozen=True)
class SlotRun:
    """Consecutive slots taken at once: the first in `wait` seconds, then one every `interval`."""

    count: int
    wait: float
    interval: float

    def offset(self, index: int) -> float:
        """Seconds from the reservation to slot `index`."""
        return self.wait + index * self.interval


class Limiter:
    def reserve_run(self, key: str, interval: float, max_wait: float, count: int, lead: float = 0.0) -> SlotRun:
        """Up to `count` consecutive slots, as many as start within `max_wait` (none when the next free one
        is later), the first no sooner than `lead` seconds from now."""
        raise NotImplementedError

    def free_in(self, key: str) -> float:
        """Seconds until the next free slot (0 when one is free now); takes nothing."""
        raise NotImplementedError

    def reserve(self, key: str, interval: float, max_wait: float) -> Reservation:
        """One slot, if it starts within `max_wait`."""
        slots = self.reserve_run(key, interval, max_wait, 1)
        return Reservation(slots.count > 0, slots.wait)

    def reserve_each(self, keys: list[tuple[str, float]], max_wait: float) -> list[Reservation]:
        """One slot of each (key, interval), as `reserve` would take them one by one."""
        return [self.reserve(key, interval, max_wait) for key, interval in keys]

    def marks_set(self, keys: list[str], ttl_seconds: int) -> None:
        """Remember these keys for `ttl_seconds` (what the sender knows about its calls, beside the database)."""
        raise NotImplementedError

    def marks_get(self, keys: list[str]) -> list[bool]:
        raise NotImplementedError

    def mark_first(self, key: str, ttl_seconds: int) -> bool:
        """Set the key unless it is set (atomically): True for the caller that set it."""
        raise NotImplementedError


class RedisLimiter(Limiter):
    def __init__(self, client: redis.Redis):
        self.client = client
        self.script = client.register_script(_RESERVE_SCRIPT)
        self.peek_script = client.register_script(_PEEK_SCRIPT)

    def free_in(self, key: str) -> float:
        return int(self.peek_script(keys=[KEY_PREFIX + key])) / 1_000_000

    def reserve_each(self, keys: list[tuple[str, float]], max_wait: float) -> list[Reservation]:
        # One round trip for all of them.
        pipeline = self.client.pipeline(transaction=False)
        for key, interval in keys:
            self.script(keys=[KEY_PREFIX + key], args=[int(interval * 1_000_000), int(max_wait * 1_000_000), 1],
                        client=pipeline)
        return [Reservation(int(taken) > 0, int(wait) / 1_000_000) for taken, wait in pipeline.execute()]

    def reserve_run(self, key: str, interval: float, max_wait: float, count: int, lead: float = 0.0) -> SlotRun:
        taken, wait = self.script(keys=[KEY_PREFIX + key],
                                  args=[int(interval * 1_000_000), int(max_wait * 1_000_000), max(count, 1),
                                        int(lead * 1_000_000)])
        return SlotRun(int(taken), int(wait) / 1_000_000, interval)

    def marks_set(self, keys: list[str], ttl_seconds: int) -> None:
        pipeline = self.client.pipeline(transaction=False)
        for key in keys:
            pipeline.set(MARK_PREFIX + key, b"1", ex=ttl_seconds)
        pipeline.execute()

    def marks_get(self, keys: list[str]) -> list[bool]:
        return [value is not None for value in self.client.mget([MARK_PREFIX + key for key in keys])] if keys else []

    def mark_first(self, key: str, ttl_seconds: int) -> bool:
        return bool(self.client.set(MARK_PREFIX + key, b"1", ex=ttl_seconds, nx=True))


class LocalLimiter(Limiter):
    """The same algorithm in process memory, for a single-worker installation without Redis."""

    def __init__(self):
        self.lock = threading.Lock()
        self.next_free: dict[str, float] = {}
        # In process memory: a process that died takes its marks along (its sends are then outcomes unknown).
        # Expired marks are swept when the dict has doubled since the last sweep.
        self.marks: dict[str, float] = {}
        self.sweep_at = 10_000

    def free_in(self, key: str) -> float:
        with self.lock:
            return max(self.next_free.get(key, 0.0) - time.monotonic(), 0.0)

    def reserve_run(self, key: str, interval: float, max_wait: float, count: int, lead: float = 0.0) -> SlotRun:
        with self.lock:
            now = time.monotonic()
            next_free = max(self.next_free.get(key, 0.0), now + lead)
            wait = next_free - now
            if wait > max_wait:
                return SlotRun(0, wait, interval)
            count = max(count, 1)
            if interval > 0:
                count = min(count, int((max_wait - wait) / interval) + 1)
            self.next_free[key] = next_free + count * interval
            return SlotRun(count, wait, interval)

    def marks_set(self, keys: list[str], ttl_seconds: int) -> None:
        with self.lock:
            self._sweep()
            self.marks.update(dict.fromkeys(keys, time.monotonic() + ttl_seconds))

    def marks_get(self, keys: list[str]) -> list[bool]:
        with self.lock:
            return [self.marks.get(key, 0.0) > time.monotonic() for key in keys]

    def mark_first(self, key: str, ttl_seconds: int) -> bool:
        with self.lock:
            now = time.monotonic()
            if self.marks.get(key, 0.0) > now:
                return False
            self._sweep()
            self.marks[key] = now + ttl_seconds
            return True

    def _sweep(self) -> None:
        if len(self.marks) >= self.sweep_at:
            now = time.monotonic()
            self.marks = {key: until for key, until in self.marks.items() if until > now}
            self.sweep_at = max(10_000, 2 * len(self.marks))


@lru_cache(maxsize=1)
def _limiter_for(redis_url: str) -> Limiter:
    if redis_url:
        return RedisLimiter(redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2))
    return LocalLimiter()


def limiter() -> Limiter:
    return _limiter_for(settings.REDIS_URL)


def number_slot_interval(rate_per_second: float) -> float:
    """Slot spacing for a number: the rate less the headroom (SEND_RATE_HEADROOM) that absorbs jitter."""
    return 1.0 / (rate_per_second * (1.0 - settings.SEND_RATE_HEADROOM))


def number_key(provider_id: int) -> str:
    return f"number:{provider_id}"


def recipient_key(provider_id: int, address: str) -> str:
    return f"pair:{provider_id}:{address}"
