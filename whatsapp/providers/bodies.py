"""
The one decoder of webhook bodies, JSON and form: the body check before the 200 and the parsers after it
both use it, so whatever the check accepts the parser can read, and everything decoded is fit for
PostgreSQL (no NUL character, no lone surrogate).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any
from urllib.parse import parse_qsl

# Bounds on a JSON webhook body, checked by the body check before the 200 so that the parser of an
# acknowledged body never meets what it cannot hold. Provider payloads nest about ten levels deep and
# their longest numbers are ids of twenty-odd digits.
JSON_MAX_DEPTH = 64
JSON_MAX_INTEGER_DIGITS = 100


class BodyUndecodable(ValueError):
    """A webhook body that cannot be read in the provider's format; the message is a readable reason."""


def _bounded_int(text: str) -> int:
    # Checked before int(): converting thousands of digits is slow, and Python refuses over 4300.
    if len(text.lstrip("-")) > JSON_MAX_INTEGER_DIGITS:
        raise BodyUndecodable(f"an integer has more than {JSON_MAX_INTEGER_DIGITS} digits")
    return int(text)


_MAY_NEED_CLEANING = re.compile(r"\\u(?:0000|[dD][89a-fA-F])|[\ud800-\udfff]")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400: JSON columns cannot store Infinity
        raise BodyUndecodable(f"the number {text[:40]} is out of range")
    return number


def _no_constant(name: str) -> Any:
    raise BodyUndecodable(f"{name} is not a JSON value")


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def json_body_decode(body: bytes) -> Any:
    """
    The one decoder of JSON webhook bodies: the body check before the 200 and the parsers after it both
    use it, so whatever the check accepts the parser can read. The encoding is found by JSON's rules
    (UTF-8 with or without a BOM, UTF-16, UTF-32); NaN and Infinity, integers of more than 100 digits,
    numbers out of range and nesting deeper than 64 levels are refused. Strings come back fit for
    PostgreSQL: jsonb refuses the NUL character, so NULs are removed and lone surrogates replaced.
    Raises BodyUndecodable with a readable reason.
    """
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise BodyUndecodable(f"body is not UTF-8, UTF-16 or UTF-32 text ({exc.reason} at byte {exc.start})") from None
    try:
        payload = json.loads(text, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant)
    except BodyUndecodable:
        raise
    except RecursionError:
        raise BodyUndecodable(f"JSON is nested deeper than {JSON_MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError among them
        raise BodyUndecodable(f"body is not valid JSON: {exc}") from None
    # Nesting needs an opening bracket per level: a body with fewer cannot be too deep.
    if text.count("{") + text.count("[") > JSON_MAX_DEPTH and _deeper_than(payload, JSON_MAX_DEPTH):
        raise BodyUndecodable(f"JSON is nested deeper than {JSON_MAX_DEPTH} levels")
    # A NUL or a lone surrogate in a parsed string can only come from a \u0000 or \uD800-\uDFFF escape or
    # a surrogate in the text (JSON refuses raw control characters): without any, nothing needs cleaning.
    return _clean_strings(payload) if _MAY_NEED_CLEANING.search(text) else payload


def form_body_decode(body: bytes) -> dict[str, str]:
    """
    The one decoder of form webhook bodies (Twilio's), for the body check and the parser: UTF-8 with
    a BOM dropped and bad bytes replaced; every name and value fit for PostgreSQL (no NUL, which a
    percent-encoded %00 brings, no lone surrogate). A repeated field keeps its last value.
    """
    text = body.decode("utf-8", "replace").removeprefix("\ufeff")
    return {_clean_strings(name): _clean_strings(value) for name, value in parse_qsl(text, keep_blank_values=True)}


def storable_text(value: str) -> str:
    """Text PostgreSQL accepts: no NUL character, no lone surrogate."""
    return _clean_strings(value)


def _clean_strings(value: Any) -> Any:
    if isinstance(value, str):
        # Also replace lone surrogates (valid in JSON escapes, invalid in UTF-8 and in the database).
        return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_clean_strings(item) for item in value]
    if isinstance(value, dict):
        return {_clean_strings(key): _clean_strings(item) for key, item in value.items()}
    return value
