"""Request parsing that answers malformed input with a 400, whatever its shape."""

from typing import Any

from rest_framework import exceptions
from rest_framework.parsers import JSONParser


class DepthSafeJSONParser(JSONParser):
    """JSON nested too deeply for Python's parser is malformed input (400), not a RecursionError (500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply") from None


def printable(value: Any) -> Any:
    """The value with every lone surrogate escaped, so that it can be encoded in a JSON answer."""
    if isinstance(value, dict):
        return {printable(key): printable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [printable(item) for item in value]
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value
