"""
The twilio SDK, kept honest: its HTTP client keeps the last answer (the SDK's exceptions drop the
Retry-After header and its resources drop the JSON as Twilio sent it).
"""

from __future__ import annotations

import json
from typing import Any

from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response


class AnswerKeepingHttpClient(TwilioHttpClient):
    """
    The SDK's own HTTP client, keeping the last answer: the SDK's exceptions drop the Retry-After header
    and its resources drop the JSON as Twilio sent it.
    """

    last_response: Response | None = None

    def request(self, *args: Any, **kwargs: Any) -> Response:
        self.last_response = super().request(*args, **kwargs)
        return self.last_response

    def last_json(self) -> dict[str, Any]:
        return parsed(self.last_response.text) if self.last_response is not None else {}


def rest_exception(response: Response) -> TwilioRestException:
    payload = parsed(response.text)
    code = payload.get("code")
    return TwilioRestException(response.status_code, "", msg=str(payload.get("message") or ""),
                               code=code if isinstance(code, int) else None)


def parsed(text: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except ValueError:
        return {"text": text[:2000]}
    return payload if isinstance(payload, dict) else {"value": payload}
