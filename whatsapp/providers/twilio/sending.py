"""
What the twilio SDK's messages.create() takes for each message type (a form POST to
/2010-04-01/Accounts/<AC...>/Messages.json); templates go as a Content SID plus variables.

https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource
"""

from __future__ import annotations

import json
from typing import Any

from whatsapp.providers.base import ProviderError
from whatsapp.providers.events import MEDIA_TYPES, MessageType, OutboundMessage, OutboundTemplate
from whatsapp.providers.twilio.templates import button_variable_names
from whatsapp.providers.twilio.wire import VALUED_BUTTON_SUB_TYPES


def message_arguments(message: OutboundMessage) -> dict[str, Any]:
    """The message-type part of messages.create()."""
    content = message.content
    kind = message.message_type
    if kind == MessageType.TEXT:
        return {"body": message.text or str(content.get("text", ""))}
    if kind in MEDIA_TYPES:
        media = message.media
        if media is None or not media.url:
            # Twilio fetches media from a URL itself; it has no upload endpoint for WhatsApp messages.
            raise ProviderError("Twilio needs a public URL for media; this file has none", code="media_url_required",
                                title="Media URL required")
        caption = media.caption or str(content.get("caption", ""))
        return {"media_url": [media.url], **({"body": caption} if caption else {})}
    if kind == MessageType.LOCATION:
        # https://www.twilio.com/docs/whatsapp/api#location-messages-with-whatsapp
        label = ", ".join(str(content[key]) for key in ("name", "address") if content.get(key))
        geo = f"geo:{content.get('latitude')},{content.get('longitude')}"
        return {"persistent_action": [f"{geo}|{label}" if label else geo], "body": label or geo.removeprefix("geo:")}
    if kind == MessageType.TEMPLATE:
        if message.template is None:
            raise ProviderError("a template message needs its template", code="invalid_message")
        return _template_arguments(message.template)
    raise ProviderError(f"Twilio sending does not handle {kind!r} messages", code="unsupported_type")


def _template_arguments(template: OutboundTemplate) -> dict[str, Any]:
    # A template goes out as its Content SID plus variables, never as Body: a templated Body outside the
    # 24-hour window fails with 63016. https://www.twilio.com/docs/content/send-templates-created-with-the-content-template-builder
    if not template.provider_template_id:
        raise ProviderError(f"template {template.name!r} has no Twilio Content SID (HX...); sync or create it in "
                            "Twilio's Content API first", code="content_sid_missing", title="Content SID missing")
    variables = {parameter.name: parameter.value for parameter in (*template.header, *template.body)}
    buttons = {button.index: button.value for button in template.buttons if button.sub_type in VALUED_BUTTON_SUB_TYPES}
    for index, name in button_variable_names(list(variables), list(buttons)).items():
        variables[name] = buttons[index]
    return {"content_sid": template.provider_template_id, "content_variables": json.dumps(variables)}
