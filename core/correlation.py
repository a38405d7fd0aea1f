"""
A correlation id follows one request (typically a webhook) into every Celery task it causes, and is
written on every JSON log line, so that one grep shows the whole story of a message.
"""

import contextlib
import contextvars
import json
import logging
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from django.http import HttpRequest, HttpResponse

_correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="")
HEADER = "X-Request-ID"
# Not "correlation_id": Celery already uses that name on a task request for the task id.
TASK_HEADER = "wa_correlation_id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def get_correlation_id() -> str:
    return _correlation_id.get()


def set_correlation_id(value: str | None) -> contextvars.Token:
    return _correlation_id.set(value or new_correlation_id())


def reset_correlation_id(token: contextvars.Token) -> None:
    _correlation_id.reset(token)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


@contextlib.contextmanager
def correlation(value: str) -> Iterator[None]:
    """Work done in the block carries `value` (the ambient id stays when it is empty)."""
    if not value:
        yield
        return
    token = _correlation_id.set(value)
    try:
        yield
    finally:
        _correlation_id.reset(token)


class CorrelationIdMiddleware:
    """Takes the caller's X-Request-ID when it is well formed, else makes one; echoes it back."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(HEADER, "")
        token = set_correlation_id(incoming if _VALID_ID.match(incoming) else None)
        try:
            request.correlation_id = get_correlation_id()
            response = self.get_response(request)
            response[HEADER] = request.correlation_id
            return response
        finally:
            reset_correlation_id(token)


class CorrelationIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = get_correlation_id()
        return True


# Attributes every LogRecord has; anything else was passed through `extra=` and is worth printing.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "correlation_id"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation id and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", "") or get_correlation_id(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
