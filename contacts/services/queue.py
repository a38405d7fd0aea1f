"""
The unmapped-contacts queue as people see it (the admin screen and the API): each contact with its
message count, last message, providers and suggested users, in a fixed number of queries per page
whatever its size.
"""

from __future__ import annotations

from django.db.models import OuterRef, Prefetch, QuerySet, Subquery, prefetch_related_objects

from contacts.models import Contact
from contacts.services.mapping import suggestions_for
from core.access import scoped
from core.queries import count_subquery
from whatsapp.models import Conversation, Message


def _contact_messages(user) -> QuerySet[Message]:
    return scoped(Message.objects.filter(conversation__contact=OuterRef("pk")), user).order_by()


def with_queue_columns(contacts: QuerySet[Contact], *, user=None) -> QuerySet[Contact]:
    """`message_count` and `last_message_id` as subqueries of the page's own query: of the messages `user`
    may see (their teams' numbers)."""
    return contacts.annotate(
        message_count=count_subquery(_contact_messages(user)),
        last_message_id=Subquery(_contact_messages(user).order_by("-created_at", "-id").values("id")[:1]),
    )


def queue_page_details(contacts: list[Contact], *, user=None) -> None:
    """
    Fill in a page of `with_queue_columns` rows: identities and conversations (with their providers, those
    `user` may see) prefetched, `last_message` (a Message or None) and `suggestions` (see suggestions_for) set
    on each.
    """
    conversations = scoped(Conversation.objects.select_related("provider"), user).only(
        "contact", "provider__name", "provider__kind")
    prefetch_related_objects(contacts, "identities", Prefetch("conversations", queryset=conversations))
    last_ids = [contact.last_message_id for contact in contacts if contact.last_message_id]
    last_messages = Message.objects.only("text", "message_type", "direction", "created_at").in_bulk(last_ids)
    suggestions = suggestions_for(contacts)
    for contact in contacts:
        contact.last_message = last_messages.get(contact.last_message_id)
        contact.suggestions = suggestions.get(contact.pk, [])
