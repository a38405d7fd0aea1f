"""
When a person on the business side writes in a conversation, the assistant steps back there for the
provider's handoff time; the conversation page shows it and can hand the conversation back.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from assistant.models import ConversationState
from assistant.selectors import policy_for
from core.audit import audit_record
from whatsapp.models import Conversation, Message


def state_for(conversation: Conversation, *, lock: bool = False) -> ConversationState:
    state, _ = ConversationState.objects.get_or_create(conversation=conversation)
    if lock:
        state = ConversationState.objects.select_for_update().get(pk=state.pk)
    return state


def on_human_reply(message: Message) -> None:
    """Receiver of the core's human_reply_recorded hook."""
    conversation = message.conversation
    policy = policy_for(conversation.provider)
    if not policy.enabled:
        return
    who = (message.created_by.get_username() if message.created_by_id
           else str(message.content.get("sender") or "") or "a person")
    silence(conversation, until=timezone.now() + timedelta(minutes=policy.handoff_minutes), by=who)


def silence(conversation: Conversation, *, until: datetime, by: str) -> None:
    state = state_for(conversation)
    ConversationState.objects.filter(pk=state.pk).update(silenced_until=until, silenced_by=by[:150],
                                                         pending={}, pending_expires_at=None,
                                                         updated_at=timezone.now())


def is_silenced(state: ConversationState, now: datetime | None = None) -> bool:
    return state.silenced_until is not None and state.silenced_until > (now or timezone.now())


def resume(conversation: Conversation, *, actor) -> bool:
    """Hand the conversation back to the assistant now. False when it was not silenced."""
    updated = ConversationState.objects.filter(conversation=conversation, silenced_until__gt=timezone.now()).update(
        silenced_until=None, silenced_by="", updated_at=timezone.now())
    if updated:
        audit_record(actor=actor, action="assistant_resumed", obj=conversation,
                     after={"assistant": "resumed"})
    return bool(updated)
