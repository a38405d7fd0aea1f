"""
English with ISO-like dates (2026-12-03 14:05) instead of Django's "Dec. 3, 2026, 2:05 p.m.": the admin
lists, read-only fields and templates then read the same as core.dates.when. Input formats stay Django's,
which accept these.
"""

from core.dates import DATE, MINUTES, TIME

DATE_FORMAT = DATE
SHORT_DATE_FORMAT = DATE
DATETIME_FORMAT = MINUTES
SHORT_DATETIME_FORMAT = MINUTES
TIME_FORMAT = TIME
