"""A user's time zone: their assistant preference, else their contact's, else their phone number's region."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from django.conf import settings
from django.utils import timezone
from phonenumbers import timezone as number_zones

from contacts.models import Contact
from whatsapp.providers.events import IdentityKind


def zone_named(name: str) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def phone_zone(phone: str) -> ZoneInfo | None:
    """The zone of a number's region; for a country with several (the US, Brazil) the library's first,
    which for a mobile number is the country's most populous one."""
    try:
        number = phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return None
    names = [name for name in number_zones.time_zones_for_number(number) if name != "Etc/Unknown"]
    return zone_named(names[0]) if names else None


def contact_phone(contact: Contact) -> str:
    identity = contact.identities.filter(kind=IdentityKind.PHONE).order_by("pk").first()
    return identity.value if identity else ""


def user_zone(*, profile_zone: str = "", contact: Contact | None = None) -> ZoneInfo:
    zone = zone_named(profile_zone)
    if zone is None and contact is not None:
        zone = zone_named(contact.time_zone) or phone_zone(contact_phone(contact))
    return zone or ZoneInfo(settings.TIME_ZONE)


def local_now(zone: ZoneInfo, now: datetime | None = None) -> datetime:
    return timezone.localtime(now or timezone.now(), zone)


def instant(day: date, at: time | None, zone: ZoneInfo) -> datetime:
    """A local date (and time; the end of the day without one) as an aware instant."""
    if at is None:
        return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone) - timedelta(seconds=1)
    return datetime.combine(day, at, tzinfo=zone)
