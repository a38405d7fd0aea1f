"""
Sending. This is the Foundation's minimal path (text to a contact, through the provider module, with
statuses fed back by the provider's webhooks); window and consent rules, rate limits, retries and the
dead-letter queue are the outbound issue's.
"""

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from contacts.models import Contact
from whatsapp.models import Message, Provider
from whatsapp.providers import provider_for
from whatsapp.providers.base import ProviderError
from whatsapp.providers.events import Identity, MessageStatus, MessageType, OutboundMessage
from whatsapp.services.inbound import conversation_get_or_create, orphan_statuses_apply
from whatsapp.services.locks import lock_key
from whatsapp.services.sessions import session_current

logger = logging.getLogger(__name__)


@transaction.atomic
def message_send_text(*, provider: Provider, contact: Contact, text: str, actor: Any = None) -> Message:
    conversation = conversation_get_or_create(provider=provider, contact=contact)
    now = timezone.now()
    message = Message.objects.create(
        provider=provider, conversation=conversation, session=session_current(conversation, at=now),
        direction=Message.Direction.OUTBOUND, message_type=MessageType.TEXT, text=text, content={"text": text},
        status=MessageStatus.QUEUED, queued_at=now,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    message_enqueue(message.pk)
    return message


def message_enqueue(message_id: int) -> None:
    from whatsapp.tasks import send_message_task

    transaction.on_commit(lambda: send_message_task.delay(message_id), robust=True)


def _outbound_request(message: Message) -> OutboundMessage:
    identities = tuple(
        Identity(identity.kind, identity.value, identity.scope)
        for identity in message.conversation.contact.identities.all()
    )
    return OutboundMessage(
        to=identities, message_type=message.message_type, text=message.text, content=message.content,
        reply_to_provider_message_id=message.reply_to.provider_message_id if message.reply_to else "",
        client_reference=str(message.pk),
    )


def message_deliver(message_id: int) -> Message:
    """Hand one queued message to its provider. Runs in the send task; a message already past
    `queued` is left alone, so a redelivered task does not send twice."""
    with transaction.atomic():
        message = (Message.objects.select_for_update(of=("self",))
                   .select_related("provider", "conversation__contact", "reply_to").get(pk=message_id))
        if message.status != MessageStatus.QUEUED:
            return message
        if message.provider.is_paused or not message.provider.is_active:
            # Held, in order, until the provider is resumed (provider_set_paused re-enqueues them).
            return message
        message.status = MessageStatus.SENDING
        message.attempts += 1
        message.save(update_fields=["status", "attempts", "updated_at"])
    try:
        result = provider_for(message.provider).send(_outbound_request(message))
    except ProviderError as exc:
        message.status = MessageStatus.FAILED
        message.failed_at = timezone.now()
        message.error_code = exc.code
        message.error_detail = str(exc)
        message.save(update_fields=["status", "failed_at", "error_code", "error_detail", "updated_at"])
        return message
    with transaction.atomic():
        lock_key("provider-message", message.provider_id, result.provider_message_id)
        message = Message.objects.select_for_update().get(pk=message_id)
        message.provider_message_id = result.provider_message_id
        if message.status == MessageStatus.SENDING:
            message.status = MessageStatus.SENT
            message.sent_at = message.sent_at or timezone.now()
        message.save(update_fields=["provider_message_id", "status", "sent_at", "updated_at"])
        orphan_statuses_apply(message)
    return message


def messages_release_held(*, provider: Provider) -> int:
    """Re-enqueue, oldest first, the messages a paused provider held."""
    held = list(Message.objects.filter(provider=provider, direction=Message.Direction.OUTBOUND,
                                       status=MessageStatus.QUEUED).order_by("created_at", "id")
                .values_list("pk", flat=True))
    with transaction.atomic():
        for message_id in held:
            message_enqueue(message_id)
    return len(held)
