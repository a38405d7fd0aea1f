"""
The conversation around a message, as the AI sees it: the latest messages, newest first, until the
character budget (AI_CONTEXT_CHARS) is spent. Messages the platform sent on its own (consent confirmations,
verification codes, registration replies) and system notices stay out; Chatwoot's private notes are never
stored as messages at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from whatsapp.models import Conversation, Message
from whatsapp.providers.events import MessageType


@dataclass(frozen=True)
class ContextLine:
    message_id: int
    speaker: str  # customer or business
    text: str
    at: datetime

    def render(self) -> str:
        return f"[{self.at:%Y-%m-%d %H:%M}] {self.speaker}: {self.text}"


def message_text(message: Message) -> str:
    """What a message says: its text (or caption), else its transcript."""
    text = (message.text or "").strip()
    if not text and message.message_type != MessageType.TEMPLATE:
        text = (message.transcript or "").strip()
    return text


def conversation_context(conversation: Conversation, *, before: Message | None = None,
                         budget_chars: int | None = None, scan_limit: int = 200) -> list[ContextLine]:
    budget = settings.AI_CONTEXT_CHARS if budget_chars is None else budget_chars
    messages = (Message.objects.filter(conversation=conversation, purpose="")
                .exclude(message_type=MessageType.SYSTEM).order_by("-created_at", "-pk"))
    if before is not None:
        messages = messages.filter(created_at__lte=before.created_at).exclude(pk=before.pk)
    lines: list[ContextLine] = []
    for message in messages[:scan_limit]:
        text = message_text(message)
        if not text:
            continue
        speaker = "customer" if message.direction == Message.Direction.INBOUND else "business"
        line = ContextLine(message.pk, speaker, " ".join(text.split()), message.received_at or message.created_at)
        if len(line.render()) > budget:
            break
        budget -= len(line.render()) + 1
        lines.append(line)
    return lines
