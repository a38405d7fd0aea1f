from datetime import UTC, datetime

from django.core.management.base import CommandError


def day_argument(value: str | None) -> datetime | None:
    """A YYYY-MM-DD (or full ISO 8601) argument as an aware datetime, UTC unless it says otherwise."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as error:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def add_range_arguments(parser) -> None:
    parser.add_argument("--since", help="First UTC day (YYYY-MM-DD); default: the beginning.")
    parser.add_argument("--until", help="Day after the last one (YYYY-MM-DD); default: tomorrow.")
