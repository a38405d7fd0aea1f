"""
What Meta's send endpoint takes (`POST /<phone_number_id>/messages`, one call per message): the JSON of a
message of each type, built here without calling Meta. A file we hold as bytes is uploaded first; the
caller passes the upload as a function that returns Meta's media id.

https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/send-messages
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from typing import Any

from whatsapp.providers.base import ProviderError, as_dict, as_list, as_text
from whatsapp.providers.events import (
    MEDIA_TYPES,
    MessageType,
    OutboundMedia,
    OutboundMessage,
    OutboundTemplate,
    TemplateParameter,
)
from whatsapp.providers.meta.wire import BUTTON_PARAMETER_TYPES, CAPTIONED_MEDIA

#: Uploads a file to Meta and returns its media id.
Upload = Callable[[OutboundMedia], str]


def phone_address(value: str) -> str:
    # Meta wants "+" and the country code; without "+" it would prepend the business number's country code.
    # https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/send-messages
    digits = value.strip().removeprefix("+")
    return "+" + digits if digits.isdigit() else ""


def message_body(message: OutboundMessage, to: str, upload: Upload) -> dict[str, Any]:
    """The JSON of one send call to the address `to`."""
    wire_type = message.message_type
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                            "type": wire_type, wire_type: _type_payload(message, upload)}
    if message.client_reference:
        body["biz_opaque_callback_data"] = message.client_reference
    # A reaction names its target inside the reaction; Meta refuses a context on it.
    if message.reply_to_provider_message_id and wire_type != MessageType.REACTION:
        body["context"] = {"message_id": message.reply_to_provider_message_id}
    return body


def upload_request(media: OutboundMedia) -> dict[str, Any]:
    """The form of a media upload (`POST /<phone_number_id>/media`), as keyword arguments of the call."""
    # https://developers.facebook.com/documentation/business-messaging/whatsapp/business-phone-numbers/media
    # Meta checks the declared type against the file (a mismatch gives 131053).
    mime_type = media.mime_type or mimetypes.guess_type(media.filename)[0] or "application/octet-stream"
    filename = media.filename or f"{media.kind}{mimetypes.guess_extension(mime_type) or ''}"
    return {"data": {"messaging_product": "whatsapp", "type": mime_type},
            "files": {"file": (filename, media.data or b"", mime_type)}}


def _type_payload(message: OutboundMessage, upload: Upload) -> dict[str, Any]:
    content = message.content
    kind = message.message_type
    if kind == MessageType.TEXT:
        return {"body": message.text or as_text(content.get("text")),
                "preview_url": bool(content.get("preview_url"))}
    if kind in MEDIA_TYPES:
        if message.media is None:
            raise ProviderError(f"a {kind} message needs a file", code="invalid_message")
        return _media_object(message.media, kind, upload, content)
    if kind == MessageType.INTERACTIVE:
        return _interactive(content, message.text)
    if kind == MessageType.LOCATION:
        location = {"latitude": content.get("latitude"), "longitude": content.get("longitude")}
        location.update({key: content[key] for key in ("name", "address") if content.get(key)})
        return location
    if kind == MessageType.REACTION:
        # An empty emoji removes an earlier reaction.
        return {"message_id": as_text(content.get("target")), "emoji": as_text(content.get("emoji"))}
    if kind == MessageType.TEMPLATE:
        if message.template is None:
            raise ProviderError("a template message needs its template", code="invalid_message")
        return _template(message.template, upload)
    raise ProviderError(f"Meta sending does not handle {kind!r} messages", code="unsupported_type")


def _media_object(media: OutboundMedia, kind: str, upload: Upload,
                  content: dict[str, Any] | None = None) -> dict[str, Any]:
    content = content or {}
    if media.data:
        # An uploaded file goes to Meta itself rather than by our link: Meta need not reach our server.
        result: dict[str, Any] = {"id": upload(media)}
    elif media.url:
        # Meta caches a link for about 10 minutes.
        result = {"link": media.url}
    else:
        raise ProviderError(f"the {kind} has neither a link nor a file", code="invalid_message")
    caption = media.caption or as_text(content.get("caption"))
    if caption and kind in CAPTIONED_MEDIA:
        result["caption"] = caption
    filename = media.filename or as_text(content.get("filename"))
    if filename and kind == MessageType.DOCUMENT:
        result["filename"] = filename
    return result


def _template(template: OutboundTemplate, upload: Upload) -> dict[str, Any]:
    # https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/template-messages
    def text_parameter(parameter: TemplateParameter) -> dict[str, str]:
        result = {"type": "text", "text": parameter.value}
        if template.named_parameters:
            result["parameter_name"] = parameter.name
        return result

    components: list[dict[str, Any]] = []
    if template.header_media is not None:
        kind = template.header_media.kind
        media = _media_object(template.header_media, kind, upload)
        media.pop("caption", None)
        components.append({"type": "header", "parameters": [{"type": kind, kind: media}]})
    elif template.header:
        components.append({"type": "header", "parameters": [text_parameter(p) for p in template.header]})
    if template.body:
        components.append({"type": "body", "parameters": [text_parameter(p) for p in template.body]})
    for button in sorted(template.buttons, key=lambda b: b.index):
        parameter_type = BUTTON_PARAMETER_TYPES.get(button.sub_type, "text")
        components.append({"type": "button", "sub_type": button.sub_type, "index": str(button.index),
                           "parameters": [{"type": parameter_type, parameter_type: button.value}]})
    result: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
    if components:
        result["components"] = components
    return result


def _interactive(content: dict[str, Any], fallback_text: str) -> dict[str, Any]:
    # Reply buttons: at most 3, titles up to 20 characters. A list: at most 10 rows in all.
    # https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/interactive-reply-buttons-messages
    # https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/interactive-list-messages
    result: dict[str, Any] = {"body": {"text": as_text(content.get("body")) or fallback_text}}
    if header := as_text(content.get("header")):
        result["header"] = {"type": "text", "text": header}
    if footer := as_text(content.get("footer")):
        result["footer"] = {"text": footer}
    if buttons := as_list(content.get("buttons")):
        result["type"] = "button"
        result["action"] = {"buttons": [
            {"type": "reply", "reply": {"id": as_text(as_dict(b).get("id")), "title": as_text(as_dict(b).get("title"))}}
            for b in buttons]}
        return result
    result["type"] = "list"
    result["action"] = {"button": as_text(content.get("button")),
                        "sections": [_list_section(as_dict(section)) for section in as_list(content.get("sections"))]}
    return result


def _list_section(section: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for row in as_list(section.get("rows")):
        row = as_dict(row)
        item = {"id": as_text(row.get("id")), "title": as_text(row.get("title"))}
        if description := as_text(row.get("description")):
            item["description"] = description
        rows.append(item)
    # A section title is required only when there are several sections.
    return {"title": as_text(section["title"]), "rows": rows} if section.get("title") else {"rows": rows}
