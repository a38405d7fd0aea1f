"""
Request counting shared by every web process: a sliding-window counter in the cache (Redis in production).

Each window has one counter, incremented atomically; the estimate for "the last `period` seconds" weighs the
previous window by how much of it still overlaps, so a client cannot double its allowance by bursting at a
window's edge. Two cache round trips per check, no read-modify-write race between processes.
"""

import contextlib
import logging
import math
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

RATE_SETTINGS = ("API_KEY_FAILURE_RATE", "WEBHOOK_REJECTION_RATE", "WEBHOOK_REJECTIONS_RECORDED_RATE",
                 "CSP_REPORT_RATE")
_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
          "d": 86400, "day": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+?)s?\s*$")


@dataclass(frozen=True)
class Rate:
    limit: int
    period: int  # seconds

    def __str__(self) -> str:
        return f"{self.limit}/{self.period}s"


def parse_rate(text: str) -> Rate | None:
    """'120/min', '10/hour', '5/15min', '1000/day'; an empty value, 'off', 'none' or '0' means no limit."""
    if not text or text.strip().lower() in {"off", "none", "0"}:
        return None
    match = _RATE.match(text.lower())
    if not match or match.group(3) not in _UNITS or match.group(2) in {"0", "00"} or int(match.group(1)) == 0:
        raise ImproperlyConfigured(f"rate {text!r}: expected a count per period, e.g. '120/min' or '10/hour' "
                                   "(or 'off')")
    return Rate(int(match.group(1)), int(match.group(2) or 1) * _UNITS[match.group(3)])


def configured_rate_problems() -> list[str]:
    """What is wrong with the rate settings, found at start-up rather than by the first request they meet."""
    rates = {**{f"API_RATE_LIMITS[{bucket!r}]": rate for bucket, rate in settings.API_RATE_LIMITS.items()},
             **{name: getattr(settings, name) for name in RATE_SETTINGS}}
    problems = []
    for name, text in rates.items():
        try:
            parse_rate(text)
        except ImproperlyConfigured as problem:
            problems.append(f"{name}: {problem}")
    return problems


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until the current window ends
    retry_after: int  # seconds to wait when refused

    @property
    def refused(self) -> bool:
        return not self.allowed


def _window_key(name: str, period: int, window: int) -> str:
    return f"rl:{name}:{period}:{window}"


def _counts_in_redis(pairs: list[tuple[str, str]], timeout: int) -> list[tuple[int, int]]:
    """One round trip for all the counters: INCR each (creating it), its expiry, and its previous window's
    count. Django's RedisCache reads and writes integers as plain integers, so these keys stay readable
    through `cache`."""
    pairs = [(cache.make_key(current), cache.make_key(previous)) for current, previous in pairs]
    client = caches["default"]._cache.get_client(pairs[0][0], write=True)
    with client.pipeline(transaction=False) as pipe:
        for current, previous in pairs:
            pipe.incr(current)
            pipe.expire(current, timeout)
            pipe.get(previous)
        replies = pipe.execute()
    return [(int(replies[i]), int(replies[i + 2] or 0)) for i in range(0, len(replies), 3)]


def _counts_in_any_cache(pairs: list[tuple[str, str]], timeout: int) -> list[tuple[int, int]]:
    """The same through Django's portable cache calls (local memory in the embedded run)."""
    counts = []
    for current_key, previous_key in pairs:
        cache.add(current_key, 0, timeout)
        try:
            current = cache.incr(current_key)
        except ValueError:  # expired between add and incr
            cache.add(current_key, 1, timeout)
            current = 1
        counts.append((current, cache.get(previous_key) or 0))
    return counts


def _counts(pairs: list[tuple[str, str]], timeout: int) -> list[tuple[int, int]]:
    if isinstance(caches["default"], RedisCache):
        return _counts_in_redis(pairs, timeout)
    return _counts_in_any_cache(pairs, timeout)


def hit(name: str, rate: Rate, *, now: float | None = None, count_refused: bool = False) -> Verdict:
    """
    Count one request against `name` and say whether it is within `rate`. A refused request is taken back
    out of the count unless `count_refused` (for counting failures, where every attempt should count).
    If the cache is unreachable the request is allowed: losing the limit for a while is better than
    refusing every caller.
    """
    return hit_all([name], rate, now=now, count_refused=count_refused)


def hit_all(names: list[str], rate: Rate, *, now: float | None = None, count_refused: bool = False) -> Verdict:
    """
    Count one request against each of `names` (say, an API key and its user) in one round trip; the verdict
    of the tightest. If any refuses, the request is taken back out of every count (unless `count_refused`).
    """
    now = time.time() if now is None else now
    window, elapsed = divmod(now, rate.period)
    window = int(window)
    pairs = [(_window_key(name, rate.period, window), _window_key(name, rate.period, window - 1)) for name in names]
    try:
        counts = _counts(pairs, rate.period * 2 + 1)
    except Exception:  # noqa: BLE001 - any cache failure: fail open, loudly
        logger.warning("rate limit counter unavailable; request allowed", extra={"limit_name": names[0].split(":")[0]})
        return Verdict(True, rate.limit, rate.limit, rate.period, 0)
    overlap = 1 - elapsed / rate.period
    reset = max(1, math.ceil(rate.period - elapsed))
    estimates = [(previous * overlap + current, previous, current) for current, previous in counts]
    estimate, previous, current = max(estimates)
    if estimate <= rate.limit:
        return Verdict(True, rate.limit, max(0, int(rate.limit - estimate)), reset, 0)
    if not count_refused:
        for name in names:
            unhit(name, rate, now=now)
    return Verdict(False, rate.limit, 0, reset, _retry_after(rate, previous, current, elapsed))


def unhit(name: str, rate: Rate, *, now: float | None = None) -> None:
    """Take one request back out of the current window's count."""
    now = time.time() if now is None else now
    with contextlib.suppress(Exception):  # expired or unreachable: nothing to take back
        cache.decr(_window_key(name, rate.period, int(now // rate.period)))


def _retry_after(rate: Rate, previous: int, current: int, elapsed: float) -> int:
    """Seconds until the estimate falls back under the limit, assuming no more requests meanwhile."""
    if current >= rate.limit or previous == 0:
        return max(1, math.ceil(rate.period - elapsed))  # only the next window helps
    # previous * (1 - t / period) + current <= limit  =>  t >= period * (1 - (limit - current) / previous)
    needed = rate.period * (1 - (rate.limit - current) / previous)
    return max(1, math.ceil(needed - elapsed))


def peek(name: str, rate: Rate, *, now: float | None = None) -> bool:
    """Whether `name` is over `rate` now, without counting anything."""
    now = time.time() if now is None else now
    window, elapsed = divmod(now, rate.period)
    try:
        values = cache.get_many([_window_key(name, rate.period, int(window)),
                                 _window_key(name, rate.period, int(window) - 1)])
    except Exception:  # noqa: BLE001
        return False
    current = values.get(_window_key(name, rate.period, int(window))) or 0
    previous = values.get(_window_key(name, rate.period, int(window) - 1)) or 0
    return previous * (1 - elapsed / rate.period) + current >= rate.limit
