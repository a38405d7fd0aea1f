"""
How every date and time reads across the admin: ISO-like, in the site's time zone (``2026-12-03 14:05``;
``2026-12-03 14:05:09`` where the order of events within a minute matters). The project's formats module
(config/formats) takes its formats from here, so that Django's own rendering (lists, read-only fields,
``{{ value }}`` and ``|date`` in templates) and :func:`when` agree.
"""

from datetime import date, datetime

from django.utils import timezone
from django.utils.dateformat import format as php_format

# Django's date-format syntax (https://docs.djangoproject.com/en/5.2/ref/templates/builtins/#date).
DATE = "Y-m-d"
MINUTES = "Y-m-d H:i"
SECONDS = "Y-m-d H:i:s"
TIME = "H:i"
STRFTIME_MINUTES, STRFTIME_SECONDS = "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"  # MINUTES and SECONDS, for strftime


def when(value: datetime | date | None, seconds: bool = False, empty: str = "") -> str:
    """A date or time as the admin shows it; an aware time is shown in the current time zone."""
    if value is None:
        return empty
    if not isinstance(value, datetime):
        return php_format(value, DATE)
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    # strftime with the same pattern: a page draws hundreds of these, and Django's formatter costs ten times more.
    return value.strftime(STRFTIME_SECONDS if seconds else STRFTIME_MINUTES)
