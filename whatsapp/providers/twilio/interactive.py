"""
Reply buttons and lists on Twilio. Its Messages API has no interactive message: buttons become a
twilio/quick-reply Content and a list a twilio/list-picker one, sent by their Content SID (HX...). Inside
the 24-hour window neither needs WhatsApp's approval. Each wording is created once per account: the SID
is kept in Django's cache under a digest of the Content's JSON, and a miss just creates it again.

https://www.twilio.com/docs/content/twilio-quick-reply
https://www.twilio.com/docs/content/twiliolist-picker
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import redis
from django.core.cache import cache

from whatsapp.providers.base import ProviderError, as_dict, as_list, as_text
from whatsapp.providers.events import OutboundMessage
from whatsapp.providers.twilio.wire import (
    CONTENT_CACHE_PREFIX,
    CONTENT_CACHE_SECONDS,
    INTERACTIVE_BODY_MAX,
    INTERACTIVE_ID_MAX,
    INTERACTIVE_LANGUAGE,
    LIST_BUTTON_MAX,
    LIST_DESCRIPTION_MAX,
    LIST_ITEM_MAX,
    LIST_ITEMS_MAX,
    LIST_PICKER_TYPE,
    QUICK_REPLY_TITLE_MAX,
    QUICK_REPLY_TYPE,
    SESSION_QUICK_REPLIES_MAX,
)

logger = logging.getLogger(__name__)


def _refused(reason: str) -> ProviderError:
    return ProviderError(f"Twilio cannot send this interactive message: {reason}", code="invalid_interactive",
                         title="Invalid interactive message")


def interactive_request(message: OutboundMessage) -> tuple[dict[str, Any], str]:
    """
    The JSON of POST /v1/Content for an interactive message's buttons or list, and the digest that names
    that Content in the cache. Titles longer than Twilio takes are cut; what cannot be sent as it was
    asked (too many choices, an id too long to come back unchanged, no body) raises "invalid_interactive".
    """
    content = message.content
    buttons, sections = as_list(content.get("buttons")), as_list(content.get("sections"))
    if bool(buttons) == bool(sections):
        raise _refused("it needs either buttons (reply buttons) or sections (a list)")
    # Neither Content type has a header or a footer: they become the first and last paragraphs of the body.
    parts = [as_text(content.get("header")).strip(), as_text(content.get("body")).strip() or message.text.strip(),
             as_text(content.get("footer")).strip()]
    if not parts[1]:
        raise _refused("it has no body text")
    body = "\n\n".join(part for part in parts if part)
    if len(body) > INTERACTIVE_BODY_MAX:
        raise _refused(f"its text (with header and footer) is {len(body)} characters; Twilio takes "
                       f"{INTERACTIVE_BODY_MAX}")
    types = {QUICK_REPLY_TYPE: _quick_reply(body, buttons)} if buttons else {
        LIST_PICKER_TYPE: _list_picker(body, as_text(content.get("button")), sections)}
    payload = {"language": INTERACTIVE_LANGUAGE, "types": types}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return {"friendly_name": f"interactive_{digest[:24]}", **payload}, digest


def _quick_reply(body: str, buttons: list[Any]) -> dict[str, Any]:
    if len(buttons) > SESSION_QUICK_REPLIES_MAX:
        raise _refused(f"it has {len(buttons)} buttons; a session message takes {SESSION_QUICK_REPLIES_MAX}")
    actions = [{"title": _title(button, "title", QUICK_REPLY_TITLE_MAX, "button"), "id": _id(button, "button")}
               for button in buttons]
    _unique(actions, "id", "button ids")
    # WhatsApp wants the titles of a message's buttons to differ, also once cut.
    _unique(actions, "title", f"button titles (cut to {QUICK_REPLY_TITLE_MAX} characters)")
    return {"body": body, "actions": actions}


def _list_picker(body: str, button: str, sections: list[Any]) -> dict[str, Any]:
    if not button.strip():
        raise _refused("a list needs the label of the button that opens it")
    # A list-picker has no sections: their rows make one list, in order.
    rows = [row for section in sections for row in as_list(as_dict(section).get("rows"))]
    if not 1 <= len(rows) <= LIST_ITEMS_MAX:
        raise _refused(f"a list holds between 1 and {LIST_ITEMS_MAX} rows; this one has {len(rows)}")
    items = []
    for row in rows:
        item = {"item": _title(row, "title", LIST_ITEM_MAX, "row"), "id": _id(row, "row")}
        if description := as_text(as_dict(row).get("description")).strip():
            item["description"] = _cut(description, LIST_DESCRIPTION_MAX)
        items.append(item)
    _unique(items, "id", "row ids")
    return {"body": body, "button": _cut(button.strip(), LIST_BUTTON_MAX), "items": items}


def _id(choice: Any, what: str) -> str:
    value = as_text(as_dict(choice).get("id"))
    if not value:
        raise _refused(f"each {what} needs an id")
    if len(value) > INTERACTIVE_ID_MAX:
        # A cut id would come back in the reply different from the one the caller chose.
        raise _refused(f"the {what} id {value[:20]!r}... is {len(value)} characters; Twilio takes "
                       f"{INTERACTIVE_ID_MAX}")
    return value


def _title(choice: Any, key: str, limit: int, what: str) -> str:
    value = as_text(as_dict(choice).get(key)).strip()
    if not value:
        raise _refused(f"each {what} needs a title")
    return _cut(value, limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _unique(choices: list[dict[str, str]], key: str, what: str) -> None:
    values = [choice[key] for choice in choices]
    if len(set(values)) != len(values):
        raise _refused(f"{what} must differ from each other")


# --- the Content SID of each wording, in Django's cache -------------------------------------------

def content_cache_key(account_sid: str, digest: str) -> str:
    # Per account: a Content SID works only in the account that created it.
    return f"{CONTENT_CACHE_PREFIX}{account_sid}:{digest}"


def cached_content_sid(key: str) -> str:
    try:
        return as_text(cache.get(key))
    except redis.RedisError as exc:
        # Without the cache the Content is created again: one more Content at Twilio, the message still goes.
        logger.warning("Twilio content cache unreachable; creating the content again", extra={"error": str(exc)})
        return ""


def remember_content_sid(key: str, sid: str) -> None:
    try:
        cache.set(key, sid, timeout=CONTENT_CACHE_SECONDS)
    except redis.RedisError as exc:
        logger.warning("Twilio content cache unreachable; the content SID is not kept", extra={"error": str(exc)})


def forget_content_sid(key: str) -> None:
    try:
        cache.delete(key)
    except redis.RedisError as exc:
        logger.warning("Twilio content cache unreachable; a stale content SID stays", extra={"error": str(exc)})
