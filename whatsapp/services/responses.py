"""
How long customers wait for a person. A conversation remembers the first customer message nobody has
answered yet; the next reply a person writes records that wait on itself (and, the first time in a
24-hour window, that it was the window's first response), then the conversation waits for nobody.
Automated messages (confirmations, codes, the assistant) answer nothing here.

Webhooks may be processed out of order (parallel workers, a retried event): a reply written before the
waiting message does not answer it, and a customer message older than the last reply does not start a wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from whatsapp.models import Conversation, Session


@dataclass(frozen=True)
class ReplyWait:
    seconds: float
    first_in_window: bool


def awaiting_reply_note(conversation: Conversation, *, at: datetime) -> list[str]:
    """A customer wrote at `at`: the conversation waits from then on, unless it already waited or a person
    has written since. Returns the fields changed, for the caller to save with its own."""
    if conversation.last_reply_at is not None and at <= conversation.last_reply_at:
        return []  # a person has written since: this message was answered
    if conversation.awaiting_reply_since is not None and at >= conversation.awaiting_reply_since:
        return []  # an earlier message waits already
    conversation.awaiting_reply_since = at
    return ["awaiting_reply_since"]


def reply_wait(conversation: Conversation, session: Session | None, *, at: datetime) -> ReplyWait | None:
    """What a person's reply written at `at` answers: None when no customer message waited before it."""
    since = conversation.awaiting_reply_since
    if since is None or at < since:
        return None
    return ReplyWait(seconds=(at - since).total_seconds(),
                     first_in_window=session is not None and session.first_response_at is None)


def reply_record(conversation: Conversation, session: Session | None, wait: ReplyWait | None, *,
                 at: datetime) -> None:
    """A person's reply was stored: the conversation stops waiting. Call with the conversation locked."""
    fields = []
    if conversation.last_reply_at is None or at > conversation.last_reply_at:
        conversation.last_reply_at = at
        fields.append("last_reply_at")
    if wait is not None:
        conversation.awaiting_reply_since = None
        fields.append("awaiting_reply_since")
    if fields:
        conversation.save(update_fields=fields)
    if wait is not None and wait.first_in_window and session is not None:
        session.first_response_at = at
        session.save(update_fields=["first_response_at"])
