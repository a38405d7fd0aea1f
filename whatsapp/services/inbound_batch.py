"""
Inbound messages applied many at a time: what inbound_message_apply does for one message, with one
statement per table for a whole run of messages (the locks, the duplicates, the contacts, the
conversations, the sessions, the messages, the conversations' waiting state). The hooks still run once
per message, in order. Messages that need more than these tables (attachments to download, a provider's
own thread id, a button reply known only by its title) take the one-at-a-time way, and so do a contact's
second and later messages in one run, after the first ones' hooks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import F

from contacts.models import Contact
from contacts.services.identities import ContactWanted, contacts_resolve_many
from core.bulk import bulk_insert_rows, bulk_update_rows
from core.correlation import correlation
from core.locks import lock_keys
from whatsapp import hooks
from whatsapp.models import Conversation, Message, Provider, Session
from whatsapp.providers import backend_for
from whatsapp.providers.events import InboundMessage, MessageStatus, MessageType
from whatsapp.services.conversations import conversations_for_contacts
from whatsapp.services.inbound import (
    inbound_message_apply,
    message_lock_key,
    quoted_content,
)
from whatsapp.services.lifecycle import customer_wrote, needs_customer_check
from whatsapp.services.responses import awaiting_reply_note
from whatsapp.services.sessions import session_window


def applies_in_bulk(provider: Provider, event: object) -> bool:
    """Whether this update can be applied with others by inbound_messages_apply."""
    if not isinstance(event, InboundMessage) or event.media or event.conversation_ref:
        return False
    # A text that may be a tap on one of our buttons, known only by its title, is matched one by one.
    return not (backend_for(provider).button_replies_by_title and event.message_type == MessageType.TEXT)


@dataclass
class _Pending:
    event: InboundMessage
    correlation_id: str = ""
    contact: Contact | None = None
    conversation: Conversation | None = None
    session: Session | None = None
    message: Message | None = None


# savepoint=False: the caller gives the whole run a savepoint, and applies it one by one if it fails.
@transaction.atomic(savepoint=False)
def inbound_messages_apply(*, provider: Provider, events: list[InboundMessage],
                           correlation_ids: list[str] | None = None) -> list[int]:
    """
    Store these inbound messages (each accepted by applies_in_bulk) as inbound_message_apply would, in
    their order. Returns, for each, the id of the contact whose data it carried. `correlation_ids`: the
    request each came with, for what their hooks log and enqueue.
    """
    lock_keys([message_lock_key(provider, event.provider_message_id) for event in events])
    stored = dict(Message.objects.filter(provider=provider, provider_message_id__in={e.provider_message_id
                                                                                      for e in events})
                  .values_list("provider_message_id", "conversation__contact_id"))
    seen: set[str] = set()
    new: list[_Pending] = []
    duplicates: Counter[str] = Counter()
    for event, correlation_id in zip(events, correlation_ids or [""] * len(events), strict=True):
        if event.provider_message_id in stored or event.provider_message_id in seen:
            duplicates[event.provider_message_id] += 1
        else:
            seen.add(event.provider_message_id)
            new.append(_Pending(event, correlation_id))
    if new:
        _apply_new(provider, new)
    for provider_message_id, count in duplicates.items():
        Message.objects.filter(provider=provider, provider_message_id=provider_message_id).update(
            duplicate_count=F("duplicate_count") + count)
    contact_of = {**stored, **{item.event.provider_message_id: item.contact.pk for item in new}}
    return [contact_of[event.provider_message_id] for event in events]


def _apply_new(provider: Provider, items: list[_Pending]) -> None:
    contacts = contacts_resolve_many(provider=provider, wanted=[
        ContactWanted(item.event.identities, item.event.profile_name, item.event.timestamp) for item in items])
    for item, contact in zip(items, contacts, strict=True):
        item.contact = contact
    # A contact's first message here is stored with the others; its later ones one at a time after the first
    # ones' hooks ran, so that each hook sees what came before its message and nothing after (a verification
    # code mapping the contact, say, before the question that follows it).
    firsts: dict[int, _Pending] = {}
    later = [item for item in items if firsts.setdefault(item.contact.pk, item) is not item]
    together = list(firsts.values())
    conversations = conversations_for_contacts(provider, list(firsts))
    for item in together:
        item.conversation = conversations[item.contact.pk]
        item.conversation.contact = item.contact
    _sessions(together)
    _messages_create(provider, together)
    _conversations_waiting(together)
    for item in together:
        if needs_customer_check(item.conversation, item.message.message_type):
            customer_wrote(item.conversation, item.message, at=item.event.timestamp)
    for item in together:
        with correlation(item.correlation_id):
            hooks.inbound_message_saved.fire(message=item.message)
    for item in later:
        with correlation(item.correlation_id):
            item.message = inbound_message_apply(provider=provider, event=item.event)[0]


def _messages_create(provider: Provider, items: list[_Pending]) -> None:
    quoted = _quoted(provider, items)
    messages = [Message(
        provider=provider, conversation=item.conversation, session=item.session,
        direction=Message.Direction.INBOUND, message_type=item.event.message_type, text=item.event.text,
        content=quoted_content(item.event), provider_message_id=item.event.provider_message_id,
        reply_to_id=quoted.get(item.event.reply_to_provider_message_id), status=MessageStatus.RECEIVED,
        received_at=item.event.timestamp,
    ) for item in items]
    bulk_insert_rows(messages)
    # A quote of a message stored just before it, in this same run.
    created: dict[str, int] = {}
    quoting_earlier = []
    for item, message in zip(items, messages, strict=True):
        item.message = message
        target = item.event.reply_to_provider_message_id
        if target and message.reply_to_id is None and target in created:
            message.reply_to_id = created[target]
            quoting_earlier.append(message)
        created[item.event.provider_message_id] = message.pk
    bulk_update_rows(quoting_earlier, ["reply_to"])


def _sessions(items: list[_Pending]) -> None:
    """session_open_or_extend for each message in order, written with one statement per kind of change."""
    conversation_ids = {item.conversation.pk for item in items}
    current = {session.conversation_id: session for session in
               Session.objects.filter(conversation_id__in=conversation_ids, state=Session.State.OPEN)}
    extended: dict[int, Session] = {}
    closed: dict[int, Session] = {}
    created: list[Session] = []
    window = session_window()
    for item in items:
        at: datetime = item.event.timestamp
        session = current.get(item.conversation.pk)
        if session and session.expires_at > at:
            if at > session.last_inbound_at:
                session.last_inbound_at, session.expires_at = at, at + window
                if session.pk:
                    extended[session.pk] = session
        else:
            if session:
                session.state, session.closed_at = Session.State.CLOSED, session.expires_at
                if session.pk:
                    closed[session.pk] = session
                    extended.pop(session.pk, None)
            session = Session(conversation=item.conversation, opened_at=at, last_inbound_at=at, expires_at=at + window)
            created.append(session)
            current[item.conversation.pk] = session
        item.session = session
    # Each write names only what it changes (a session closed meanwhile by the expiry job stays closed), and the
    # closing comes before any new one opens: one open session per conversation.
    bulk_update_rows(list(closed.values()), ["state", "closed_at", "last_inbound_at", "expires_at"])
    bulk_update_rows(list(extended.values()), ["last_inbound_at", "expires_at"])
    Session.objects.bulk_create(created)


def _quoted(provider: Provider, items: list[_Pending]) -> dict[str, int]:
    """The stored messages these messages quote, by provider message id."""
    ids = {item.event.reply_to_provider_message_id for item in items} - {""}
    if not ids:
        return {}
    return dict(Message.objects.filter(provider=provider, provider_message_id__in=ids)
                .values_list("provider_message_id", "pk"))


def _conversations_waiting(items: list[_Pending]) -> None:
    """Each conversation's waiting state and latest message time, as inbound_message_apply keeps them."""
    changed: dict[int, tuple[Conversation, set[str]]] = {}
    for item in items:
        conversation, at = item.conversation, item.event.timestamp
        fields = set(awaiting_reply_note(conversation, at=at))
        if conversation.last_message_at is None or at > conversation.last_message_at:
            conversation.last_message_at = at
            fields.add("last_message_at")
        if conversation.opened_at is None and conversation.status == Conversation.Status.OPEN:
            conversation.opened_at = at  # the round begins with this customer message
            fields.add("opened_at")
        if fields:
            changed.setdefault(conversation.pk, (conversation, set()))[1].update(fields)
    if changed:
        fields = sorted(set().union(*(names for _, names in changed.values())))
        bulk_update_rows([conversation for conversation, _ in changed.values()], fields)
