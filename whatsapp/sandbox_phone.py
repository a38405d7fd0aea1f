"""
The sandbox's simulated phone. It plays the part of the provider's servers: after a send it reports
sent, delivered and read to the provider's own webhook URL over HTTP, signed by the sandbox module, so
the demo exercises the same inbox and status pipeline as Meta, Twilio or Chatwoot.

It is also the customer's handset in the admin's "Sandbox phone" page: what that page shows of one
number's conversation (the queries below); what the customer sends from it goes through
whatsapp.services.providers.provider_simulate_inbound.
"""

from django.db.models import Prefetch

from contacts.models import ContactIdentity
from whatsapp.models import Conversation, Message, Provider
from whatsapp.providers import backend_for
from whatsapp.providers.events import IdentityKind
from whatsapp.providers.sandbox import status_body
from whatsapp.selectors import chat_messages
from whatsapp.services.providers import provider_webhook_post

# The phone shows the newest messages; the conversation page has them all.
PHONE_MESSAGE_LIMIT = 200


def signed_headers(provider: Provider, body: bytes) -> dict[str, str]:
    return backend_for(provider).signed_headers(body)


def report_status(provider_id: int, provider_message_id: str, status: str) -> None:
    provider = Provider.objects.get(pk=provider_id)
    body = status_body(provider_message_id, status)
    provider_webhook_post(provider, body, signed_headers(provider, body))


def phone_conversation(provider: Provider, number: str) -> Conversation | None:
    """The conversation of the customer with this number (E.164) on this provider; None before the first
    message stored."""
    return (Conversation.objects.select_related("contact")
            .filter(provider=provider, contact__identities__kind=IdentityKind.PHONE,
                    contact__identities__value=number).first())


def phone_transcript(conversation: Conversation | None) -> tuple[list[Message], bool]:
    """The messages the phone shows, oldest first (reactions aside), and whether older ones are hidden."""
    if conversation is None:
        return [], False
    return chat_messages(conversation, PHONE_MESSAGE_LIMIT)


def phone_number_of(conversation: Conversation) -> str:
    """The number the sandbox phone plays for this conversation's contact ("" when it has none)."""
    return (ContactIdentity.objects.filter(contact_id=conversation.contact_id, kind=IdentityKind.PHONE)
            .order_by("created_at", "id").values_list("value", flat=True).first() or "")


def phone_recent_customers(provider: Provider, limit: int = 8) -> list[dict]:
    """The numbers that wrote to this provider most recently, to play again: number, name, last message."""
    phones = ContactIdentity.objects.filter(kind=IdentityKind.PHONE).order_by("created_at", "id")
    conversations = (Conversation.objects.filter(provider=provider, last_message_at__isnull=False)
                     .select_related("contact").prefetch_related(Prefetch("contact__identities", queryset=phones))
                     .order_by("-last_message_at")[:limit])
    customers = []
    for conversation in conversations:
        numbers = [identity.value for identity in conversation.contact.identities.all()]
        if numbers:
            customers.append({"number": numbers[0], "name": conversation.contact.profile_name,
                              "last_message_at": conversation.last_message_at})
    return customers
