"""
What Chatwoot's message endpoint takes (`/api/v1/accounts/<account>/conversations/<display id>/messages`):
JSON for text, buttons and templates, multipart/form-data for files. Chatwoot then hands the message to
WhatsApp on its own, and reports the outcome as a `message_updated` event.

https://developers.chatwoot.com/api-reference/messages/create-new-message
"""

from __future__ import annotations

import json
import mimetypes
from typing import Any

from whatsapp.providers.base import ProviderError, as_dict, as_list, as_text
from whatsapp.providers.events import MessageType, OutboundMedia, OutboundMessage, OutboundTemplate
from whatsapp.providers.safe_fetch import DOWNLOAD_REFUSED, fetch_media


def json_body(message: OutboundMessage) -> dict[str, Any]:
    """The JSON of a text, interactive or template message."""
    body: dict[str, Any] = {"content": message.text or as_text(message.content.get("text")),
                            "message_type": "outgoing", "private": False}
    attributes: dict[str, Any] = {}
    if message.message_type == MessageType.INTERACTIVE:
        # Chatwoot turns input_select items into WhatsApp reply buttons (up to 3) or a list; it allows
        # only the keys title and value (app/models/concerns/content_attributes_validator.rb).
        body["content"] = as_text(message.content.get("body")) or message.text
        body["content_type"] = "input_select"
        attributes["items"] = _select_items(message.content)
    elif message.message_type == MessageType.TEMPLATE:
        if message.template is None:
            raise ProviderError("a template message needs its template", code="invalid_message")
        body["content"] = message.template.rendered_text or message.text
        body["template_params"] = _template_params(message.template)
    elif message.message_type != MessageType.TEXT:
        raise ProviderError(f"Chatwoot sending does not handle {message.message_type!r} messages",
                            code="unsupported_type")
    if in_reply_to := _reply_to(message):
        attributes["in_reply_to"] = in_reply_to
    if attributes:
        body["content_attributes"] = attributes
    if message.client_reference:
        body["echo_id"] = message.client_reference
    return body

def multipart(message: OutboundMessage, source: str) -> dict[str, Any]:
    """
    A file goes as multipart/form-data with attachments[] (Chatwoot takes no link to fetch): the keyword
    arguments of the call. A file we hold only as a link is downloaded first, `source` naming who asks.
    """
    media = message.media
    if media is None:
        raise ProviderError(f"a {message.message_type} message needs a file", code="invalid_message")
    content, mime_type = _media_bytes(media, source)
    mime_type = media.mime_type or mime_type or "application/octet-stream"
    filename = media.filename or f"{media.kind}{mimetypes.guess_extension(mime_type) or ''}"
    # No "private" field: Rails reads the form string "false" as true.
    data = {"content": media.caption or as_text(message.content.get("caption")), "message_type": "outgoing"}
    if message.client_reference:
        data["echo_id"] = message.client_reference
    if in_reply_to := _reply_to(message):
        # Chatwoot's MessageBuilder parses content_attributes given as a JSON string.
        data["content_attributes"] = json.dumps({"in_reply_to": in_reply_to})
    return {"data": data, "files": {"attachments[]": (filename, content, mime_type)}}

def _media_bytes(media: OutboundMedia, source: str) -> tuple[bytes, str]:
    if media.data:
        return media.data, media.mime_type
    if not media.url:
        raise ProviderError(f"the {media.kind} has neither a file nor a link", code="invalid_message")
    try:
        # A link someone gave us: any host, but only at a public address, even on base_url's host (no
        # trusted_hosts: whoever may send a message would otherwise reach the private network).
        fetched = fetch_media(media.url, allowed_hosts=None, source=source, mime_type=media.mime_type)
    except ProviderError as exc:
        # The file will not get smaller, nor a refused address become allowed; anything else about
        # fetching it may pass on a later try.
        raise ProviderError(f"could not download the file to attach: {exc}", code=exc.code or "media_fetch",
                            title="Media download failed",
                            retryable=exc.code not in ("too_large", DOWNLOAD_REFUSED)) from exc
    return fetched.content, fetched.mime_type


def _reply_to(message: OutboundMessage) -> int | None:
    # Chatwoot quotes a message by its own numeric id (it finds the WhatsApp id to quote itself).
    target = message.reply_to_provider_message_id
    return int(target) if target.isdigit() else None


def _select_items(content: dict[str, Any]) -> list[dict[str, str]]:
    choices = as_list(content.get("buttons")) or [
        row for section in as_list(content.get("sections")) for row in as_list(as_dict(section).get("rows"))]
    return [{"title": as_text(as_dict(choice).get("title")), "value": as_text(as_dict(choice).get("id"))}
            for choice in choices]


def _template_params(template: OutboundTemplate) -> dict[str, Any]:
    # Chatwoot finds the approved template by name and language among those it synced from Meta and
    # builds the components itself (app/services/whatsapp/template_processor_service.rb).
    processed: dict[str, Any] = {"body": {parameter.name: parameter.value for parameter in template.body}}
    if template.header_media is not None:
        if not template.header_media.url:
            raise ProviderError("Chatwoot needs a public URL for a template's header media; this one has none",
                                code="media_url_required", title="Media URL required")
        processed["header"] = {"media_url": template.header_media.url, "media_type": template.header_media.kind}
    elif template.header:
        processed["header"] = {parameter.name: parameter.value for parameter in template.header}
    if template.buttons:
        # Chatwoot takes a button's position in this list as its index; gaps stay empty (and are skipped).
        buttons: list[dict[str, str]] = [{} for _ in range(max(button.index for button in template.buttons) + 1)]
        for button in template.buttons:
            buttons[button.index] = {"type": button.sub_type, "parameter": button.value}
        processed["buttons"] = buttons
    return {"name": template.name, "category": template.category.upper(), "language": template.language,
            "processed_params": processed}

