"""Messages the platform itself sends a contact: consent confirmations, codes, registration replies."""

from __future__ import annotations

import logging

from templates_app.models import MessageTemplate
from whatsapp.models import Message, Provider
from whatsapp.providers.events import MessageType
from whatsapp.services.outbound import SendRequest, message_send
from whatsapp.services.send_rules import SendRefused

logger = logging.getLogger(__name__)


def platform_send(*, provider: Provider, contact, purpose: str, text: str = "",
                  template: MessageTemplate | None = None, variables: dict | None = None,
                  actor=None) -> Message:
    """Queue one platform message (text, or a template when given). Raises SendRefused."""
    kind = MessageType.TEMPLATE if template is not None else MessageType.TEXT
    request = SendRequest(provider=provider, contact=contact, message_type=kind, text=text, template=template,
                          template_variables=variables, purpose=purpose, actor=actor)
    return message_send(request)[0]


def platform_reply(inbound: Message, *, purpose: str, text: str = "",
                   template: MessageTemplate | None = None) -> Message | None:
    """
    Answer an inbound message on its own conversation. A refusal (the provider cannot send, a template
    not approved...) is logged, never raised: the inbound message is stored either way.
    """
    try:
        return platform_send(provider=inbound.provider, contact=inbound.conversation.contact, purpose=purpose,
                             text=text, template=template)
    except SendRefused as refusal:
        logger.warning("platform reply not sent", extra={"purpose": purpose, "message_id": inbound.pk,
                                                         "code": refusal.code, "reason": refusal.reason})
        return None
