"""One date format across the admin: ISO-like, in the current time zone, with seconds where asked."""

from datetime import UTC, date, datetime

from django.template import Context, Template
from django.utils import formats, timezone

from core.dates import when

AT = datetime(2026, 12, 3, 14, 5, 9, tzinfo=UTC)


def test_when_formats_in_the_current_time_zone():
    assert when(AT) == "2026-12-03 14:05"
    assert when(AT, seconds=True) == "2026-12-03 14:05:09"
    assert when(date(2026, 12, 3)) == "2026-12-03"
    assert when(None) == "" and when(None, empty="-") == "-"
    with timezone.override("Europe/Berlin"):
        assert when(AT) == "2026-12-03 15:05"


def test_djangos_own_rendering_uses_the_same_format():
    assert formats.date_format(AT, "DATETIME_FORMAT") == "2026-12-03 14:05"
    assert formats.date_format(AT, "SHORT_DATETIME_FORMAT") == "2026-12-03 14:05"
    assert formats.date_format(AT.date()) == "2026-12-03"
    assert formats.localize(AT) == "2026-12-03 14:05"
    template = Template('{% load dates %}{{ at }} | {{ at|when }} | {{ at|when:"seconds" }}')
    rendered = template.render(Context({"at": AT}))
    assert rendered == "2026-12-03 14:05 | 2026-12-03 14:05 | 2026-12-03 14:05:09"
