"""
How long customers wait for a person. A conversation remembers the first customer message nobody has
answered yet; the next reply a person writes records that wait on itself (and, the first time in a
24-hour window, that it was the window's first response), then the conversation waits for nobody.
Automated messages (confirmations, codes, the assistant) answer nothing here.
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
    """A customer wrote: the conversation waits from then on, unless it already waited. Returns the
    fields changed, for the caller to save with its own."""
    if conversation.awaiting_reply_since is not None:
        return []
    conversation.awaiting_reply_since = at
    return ["awaiting_reply_since"]


def reply_wait(conversation: Conversation, session: Session | None, *, at: datetime) -> ReplyWait | None:
    """What a person's reply written at `at` answers: None when no customer message waits."""
    since = conversation.awaiting_reply_since
    if since is None:
        return None
    # Provider clocks may run ahead of ours: a reply never answers in negative time.
    return ReplyWait(seconds=max(0.0, (at - since).total_seconds()),
                     first_in_window=session is not None and session.first_response_at is None)


def reply_record(conversation: Conversation, session: Session | None, wait: ReplyWait | None, *,
                 at: datetime) -> None:
    """A person's reply was stored: the conversation stops waiting. Call with the conversation locked."""
    if wait is None:
        return
    conversation.awaiting_reply_since = None
    conversation.save(update_fields=["awaiting_reply_since"])
    if wait.first_in_window and session is not None:
        session.first_response_at = at
        session.save(update_fields=["first_response_at"])
