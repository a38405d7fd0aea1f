from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from whatsapp.models import Conversation, Session


def session_window() -> timedelta:
    return timedelta(hours=settings.SESSION_WINDOW_HOURS)


def session_open_or_extend(*, conversation: Conversation, inbound_at: datetime) -> Session:
    """
    The customer-service window: an inbound message opens a 24-hour session or extends the open one.
    The caller holds a lock on the conversation row, so two messages at once cannot open two sessions
    (and the partial unique index would refuse it anyway).
    """
    session = conversation.sessions.filter(state=Session.State.OPEN).first()
    if session and session.expires_at > inbound_at:
        if inbound_at > session.last_inbound_at:
            session.last_inbound_at = inbound_at
            session.expires_at = inbound_at + session_window()
            session.save(update_fields=["last_inbound_at", "expires_at"])
        return session
    if session:
        session_close(session=session, at=session.expires_at)
    return Session.objects.create(
        conversation=conversation,
        opened_at=inbound_at,
        last_inbound_at=inbound_at,
        expires_at=inbound_at + session_window(),
    )


def session_close(*, session: Session, at: datetime) -> None:
    session.state = Session.State.CLOSED
    session.closed_at = at
    session.save(update_fields=["state", "closed_at"])


def session_current(conversation: Conversation, *, at: datetime | None = None) -> Session | None:
    at = at or timezone.now()
    return conversation.sessions.filter(state=Session.State.OPEN, expires_at__gt=at).first()


def sessions_close_expired(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    with transaction.atomic():
        expired = list(Session.objects.select_for_update(skip_locked=True)
                       .filter(state=Session.State.OPEN, expires_at__lte=now)[:1000])
        for session in expired:
            session_close(session=session, at=session.expires_at)
    return len(expired)
