"""
Which inbound messages the assistant acts on: those of a contact mapped to an active user, on a provider
whose policy has it on, once their text is known (a voice note waits for its transcript). A consent
keyword and the verification code that made the mapping are the contacts app's business, not commands.
Each accepted message gets a queued turn, handed to the AI worker when the message's transaction commits
(a voice note's, once its transcript exists).
"""

from __future__ import annotations

from ai.client import ai_configured
from ai.services.pipeline import needs_transcript
from assistant.models import Turn
from assistant.selectors import policy_for
from contacts.models import ContactUserMapping
from contacts.services.consent import keyword_match
from core.queueing import publish_on_commit, task_named
from whatsapp.models import Message
from whatsapp.providers.events import MessageType

ACTED_ON = {MessageType.TEXT, MessageType.INTERACTIVE_REPLY, MessageType.BUTTON, MessageType.AUDIO,
            MessageType.VIDEO, MessageType.IMAGE, MessageType.DOCUMENT}


def on_inbound_message(message: Message) -> None:
    """Receiver of the core's inbound hook. A voice note's turn is opened now, so that it keeps its place in
    the conversation's order, and runs once `on_message_understood` says its transcript exists."""
    turn_open(message)


def on_message_understood(message: Message) -> None:
    """Receiver of the AI's hook: a voice note's transcript exists (or could not be made)."""
    if needs_transcript(message) and Turn.objects.filter(message=message).exists():
        turn_enqueue(message.pk)


def turn_open(message: Message) -> Turn | None:
    if (message.direction != Message.Direction.INBOUND or message.message_type not in ACTED_ON
            or not ai_configured() or not policy_for(message.provider).enabled):
        return None
    mapping = (ContactUserMapping.objects.select_related("user", "contact")
               .filter(contact_id=message.conversation.contact_id).first())
    if mapping is None or not mapping.user.is_active or mapping.created_at >= message.created_at:
        return None  # unknown numbers keep the registration flow; a mapping this message made was its code
    if message.message_type == MessageType.TEXT and keyword_match(message.text, mapping.contact.language):
        return None
    turn, created = Turn.objects.get_or_create(message=message, defaults={"owner": mapping.user})
    if created and not needs_transcript(message):
        turn_enqueue(message.pk)
    return turn


def turn_enqueue(message_id: int) -> None:
    turn_task = task_named("assistant.tasks.assistant_turn_task")
    publish_on_commit(lambda: turn_task.delay(message_id), what=f"assistant turn {message_id}")
