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


# Where a number gives several zones (a mobile number names no place), the zone most of the country lives
# in; the library lists them alphabetically, which would put Spain on the Canaries and Portugal on the Azores.
MAIN_ZONES = {
    "AR": "America/Argentina/Buenos_Aires", "AU": "Australia/Sydney", "BR": "America/Sao_Paulo",
    "CA": "America/Toronto", "CD": "Africa/Kinshasa", "CL": "America/Santiago", "CN": "Asia/Shanghai",
    "EC": "America/Guayaquil", "ES": "Europe/Madrid", "FM": "Pacific/Pohnpei", "GL": "America/Nuuk",
    "ID": "Asia/Jakarta", "KI": "Pacific/Tarawa", "KZ": "Asia/Almaty", "MN": "Asia/Ulaanbaatar",
    "MX": "America/Mexico_City", "MY": "Asia/Kuala_Lumpur", "NZ": "Pacific/Auckland", "PF": "Pacific/Tahiti",
    "PG": "Pacific/Port_Moresby", "PT": "Europe/Lisbon", "RU": "Europe/Moscow", "UA": "Europe/Kyiv",
    "US": "America/New_York", "UZ": "Asia/Tashkent",
}


def phone_zone(phone: str) -> ZoneInfo | None:
    """The zone of a number: the one its prefix names (a US area code, a Brazilian landline...), else the
    country's main zone."""
    try:
        number = phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return None
    names = [name for name in number_zones.time_zones_for_number(number) if name != "Etc/Unknown"]
    if len(names) == 1:
        return zone_named(names[0])
    main = MAIN_ZONES.get(phonenumbers.region_code_for_number(number) or "")
    return zone_named(main) if main else (zone_named(names[0]) if names else None)


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
