"""
What the assistant sends: short texts, reactions, questions with choices (reply buttons, a list, or a
numbered text where the provider cannot carry buttons), and proactive messages (free-form inside the
24-hour window, an approved template outside it). Every message carries a purpose, so a person's reply is
never confused with the assistant's own. A refusal is logged and returned as None: what the user sent is
stored whatever happens here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from assistant.phrases import phrase
from templates_app.models import MessageTemplate
from templates_app.selectors import sendable_template
from whatsapp.models import Conversation, Message
from whatsapp.providers import backend_for
from whatsapp.providers.events import MessageType, TemplateStatus
from whatsapp.services.outbound import SendRequest, message_send
from whatsapp.services.send_rules import SendRefused
from whatsapp.services.sessions import session_current

logger = logging.getLogger(__name__)

# WhatsApp's limits: 3 reply buttons of 20 characters; a list of 10 rows of 24 characters, its button 20.
# https://developers.facebook.com/docs/whatsapp/cloud-api/messages/interactive-reply-buttons-messages
MAX_BUTTONS = 3
MAX_ROWS = 10
BUTTON_TITLE_CHARS = 20
ROW_TITLE_CHARS = 24
MAX_TEXT_CHARS = 4096


@dataclass(frozen=True)
class Choice:
    id: str
    title: str


def _send(request: SendRequest) -> Message | None:
    try:
        return message_send(request)[0]
    except SendRefused as refusal:
        logger.warning("assistant message not sent", extra={"conversation_id": request.contact and request.contact.pk,
                                                            "code": refusal.code, "reason": refusal.reason})
        return None


def send_text(conversation: Conversation, text: str, *, purpose: str = Message.Purpose.ASSISTANT,
              reply_to: Message | None = None) -> Message | None:
    backend = backend_for(conversation.provider)
    quote = reply_to if reply_to is not None and backend.supports_reply_context and reply_to.provider_message_id \
        else None
    return _send(SendRequest(provider=conversation.provider, contact=conversation.contact,
                             message_type=MessageType.TEXT, text=text[:MAX_TEXT_CHARS], reply_to=quote,
                             purpose=purpose))


def send_reaction(message: Message, emoji: str) -> Message | None:
    """React to an inbound message; nothing where the provider has no reactions."""
    if MessageType.REACTION not in backend_for(message.provider).sendable_types or not message.provider_message_id:
        return None
    return _send(SendRequest(provider=message.provider, contact=message.conversation.contact,
                             message_type=MessageType.REACTION, emoji=emoji, react_to=message,
                             purpose=Message.Purpose.ASSISTANT))


def carries_buttons(conversation: Conversation) -> bool:
    return MessageType.INTERACTIVE in backend_for(conversation.provider).sendable_types


def numbered_question(question: str, choices: list[Choice], language: str = "") -> str:
    numbered = [f"{number}. {choice.title}" for number, choice in enumerate(choices, 1)]
    return "\n".join([question, "", *numbered, "", phrase("number_hint", language)])


def send_question(conversation: Conversation, question: str, choices: list[Choice], *,
                  list_button: str = "Choose", language: str = "") -> Message | None:
    """One question: reply buttons for up to three choices, a list for more, no choices for a free answer,
    and a numbered text where the provider cannot carry buttons."""
    if not choices:
        return send_text(conversation, question)
    if not carries_buttons(conversation):
        return send_text(conversation, numbered_question(question, choices, language))
    if len(choices) <= MAX_BUTTONS:
        interactive = {"body": question,
                       "buttons": [{"id": c.id, "title": c.title[:BUTTON_TITLE_CHARS]} for c in choices]}
    else:
        rows = [{"id": c.id, "title": c.title[:ROW_TITLE_CHARS]} for c in choices[:MAX_ROWS]]
        interactive = {"body": question, "button": list_button[:BUTTON_TITLE_CHARS],
                       "sections": [{"rows": rows}]}  # one section needs no title
    return _send(SendRequest(provider=conversation.provider, contact=conversation.contact,
                             message_type=MessageType.INTERACTIVE, interactive=interactive,
                             purpose=Message.Purpose.ASSISTANT))


def window_open(conversation: Conversation) -> bool:
    return session_current(conversation) is not None


def send_proactive(conversation: Conversation, text: str, template: MessageTemplate | None) -> Message | None:
    """A reminder or summary: the text inside the 24-hour window; outside it, the approved template with the
    text as its first body variable. None when neither can go out (logged)."""
    if window_open(conversation):
        return send_text(conversation, text, purpose=Message.Purpose.NOTIFICATION)
    approved = _approved(conversation, template)
    if approved is None:
        logger.warning("proactive message not sent: the window is closed and no approved template is set",
                       extra={"conversation_id": conversation.pk})
        return None
    return _send(SendRequest(provider=conversation.provider, contact=conversation.contact,
                             message_type=MessageType.TEMPLATE, template=approved,
                             template_variables={"body": [text[:1000]]}, purpose=Message.Purpose.NOTIFICATION))


def _approved(conversation: Conversation, template: MessageTemplate | None) -> MessageTemplate | None:
    if template is None:
        return None
    # A newer approved version supersedes the one chosen.
    current = sendable_template(conversation.provider, template.name, template.language) or template
    return current if current.status == TemplateStatus.APPROVED else None
