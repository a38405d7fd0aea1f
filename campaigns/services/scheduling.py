"""
When each recipient gets a campaign: at the campaign's start, moved into the business hours and days of the
person's own time zone (their profile's, else their phone number's region, else the campaign's default).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from django.conf import settings
from phonenumbers import timezone as phone_time_zones

# A phone number's zone depends on its country code and leading digits (an area code at most six digits
# long): numbers sharing their first eight characters of E.164 share their zone, so each prefix is looked up
# once (a 100,000-person campaign is mostly a few thousand prefixes).
ZONE_PREFIX_CHARS = 8
# How far ahead a send slot is looked for: a window that never opens (no day ticked) gives none.
SEARCH_DAYS = 8


@lru_cache(maxsize=4096)
def zone_named(name: str) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


# Zones by number prefix, for this process (a number's prefix names its zone, whatever digits follow).
_prefix_zones: dict[str, str] = {}
PREFIX_CACHE_MAX = 65_536


def _zone_of_number(number: str) -> str:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return ""
    zones = [zone for zone in phone_time_zones.time_zones_for_number(parsed) if zone_named(zone) is not None]
    if not zones:
        return ""
    if len(zones) == 1:
        return zones[0]
    # A mobile number names only its country, which may span zones: take the one they all agree on now, if
    # they do (e.g. +44 7: London, Jersey, Guernsey, Isle of Man), else leave it to the campaign's default.
    now = datetime.now(tz=ZoneInfo("UTC"))
    offsets = {now.astimezone(zone_named(zone)).utcoffset() for zone in zones}
    return zones[0] if len(offsets) == 1 else ""


def phone_time_zone(e164: str) -> str:
    """The IANA zone of a phone number's region, or "" when it names none (or several that disagree)."""
    if not e164.startswith("+"):
        return ""
    prefix = e164[:ZONE_PREFIX_CHARS]
    zone = _prefix_zones.get(prefix)
    if zone is None:
        if len(_prefix_zones) >= PREFIX_CACHE_MAX:
            _prefix_zones.clear()
        zone = _prefix_zones[prefix] = _zone_of_number(e164)
    return zone


def recipient_time_zone(profile_zone: str, phone: str, default_zone: str) -> str:
    for zone in (profile_zone, phone_time_zone(phone) if phone else "", default_zone, settings.TIME_ZONE):
        if zone and zone_named(zone) is not None:
            return zone
    return "UTC"


@dataclass(frozen=True)
class SendWindow:
    """Business hours (local wall-clock times; end before start crosses midnight) and days (0 = Monday)."""

    start: time | None = None
    end: time | None = None
    days: frozenset[int] = frozenset(range(7))

    @property
    def limits_hours(self) -> bool:
        return self.start is not None and self.end is not None and self.start != self.end

    def allows(self, local: datetime) -> bool:
        if not self.limits_hours:
            return local.weekday() in self.days
        clock = local.time().replace(tzinfo=None)
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= clock < self.end
        # Crossing midnight: the hours after midnight belong to the evening before (Friday 22:00-02:00 runs into
        # Saturday morning; Sunday's opening is not Monday's small hours).
        if clock >= self.start:
            return local.weekday() in self.days
        return clock < self.end and (local.weekday() - 1) % 7 in self.days


def window_of(campaign) -> SendWindow:
    days = frozenset(int(day) for day in campaign.send_days if day.isdigit() and int(day) < 7)
    return SendWindow(campaign.send_window_start, campaign.send_window_end, days)


def next_send_time(after: datetime, zone_name: str, window: SendWindow, *, hour: int | None = None) -> datetime | None:
    """The first moment at or after `after` inside the window in that zone; with `hour`, the first start of
    that local hour inside the window (falling back to any time in the window when that hour never is).
    None when the window never opens."""
    zone = zone_named(zone_name) or ZoneInfo("UTC")
    local = after.astimezone(zone)
    if hour is not None:
        found = _next_at_hour(local, zone, window, hour)
        if found is not None:
            return found
    if window.allows(local):
        return after
    for day in range(SEARCH_DAYS):
        date = (local + timedelta(days=day)).date()
        opening = window.start if window.limits_hours else time(0)
        candidate = datetime.combine(date, opening, tzinfo=zone)
        # A wall-clock time that does not exist that day (a spring-forward gap) resolves forward.
        candidate = candidate.astimezone(ZoneInfo("UTC")).astimezone(zone)
        if candidate >= local and window.allows(candidate):
            return candidate.astimezone(ZoneInfo("UTC"))
    return None


def _next_at_hour(local: datetime, zone: ZoneInfo, window: SendWindow, hour: int) -> datetime | None:
    for day in range(SEARCH_DAYS):
        candidate = datetime.combine((local + timedelta(days=day)).date(), time(hour), tzinfo=zone)
        if candidate >= local.replace(minute=0, second=0, microsecond=0) and window.allows(candidate):
            return max(candidate, local).astimezone(ZoneInfo("UTC"))
    return None
