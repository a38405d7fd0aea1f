"""
Read-side queries that serve the messaging pages (the admin's conversation page and lists): plain
functions that take what they need and return querysets or values. They only read.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, F, Max, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Greatest, JSONObject, Left
from django.utils import timezone

from contacts.models import Contact, ContactIdentity, ContactUserMapping
from core.queries import count_subquery
from whatsapp.models import Conversation, Label, Media, Message, Session, Team
from whatsapp.providers.events import MessageType

# How much earlier than its target a reaction may have been stored (webhooks processed out of order).
REACTION_ORDER_MARGIN = timedelta(hours=1)

# Only what a bubble shows: a message row is wide (content, template values, AI results...).
CHAT_MESSAGE_FIELDS = ["id", "direction", "message_type", "text", "content", "provider_message_id", "status",
                       "queued_at", "sent_at", "delivered_at", "read_at", "played_at", "failed_at", "received_at",
                       "error_code", "error_title", "purpose", "transcript", "intent", "sentiment", "created_at",
                       "reply_to"]
QUOTED_MESSAGE_FIELDS = ["reply_to__id", "reply_to__direction", "reply_to__message_type", "reply_to__text"]
CHAT_MEDIA_FIELDS = ["id", "message_id", "filename", "mime_type", "state", "archive_path", "size_bytes", "last_error"]
CHAT_REACTION_FIELDS = ["id", "direction", "text", "content", "reply_to_id", "created_at", "received_at"]
# What serving a stored file needs (not the rest of the media row).
MEDIA_FILE_FIELDS = ["archive_path", "mime_type", "filename", "state", "pending_content"]
# The intents the conversation list offers as filters are those of the inbound messages of this period.
INTENT_CHOICES_PERIOD = timedelta(days=90)


# --- teams ----------------------------------------------------------------------------------------

SEE_ALL_TEAMS = "whatsapp.see_all_teams"
SEE_ALL_TEAMS_CODENAME = SEE_ALL_TEAMS.split(".")[1]


def team_provider_ids(user) -> frozenset[int] | None:
    """The providers whose rows `user` may see (core.access asks, once per request), or None for all:
    superusers, holders of "see all", and everyone while no team exists (a business that never set teams
    up works as one team). A user in no team then sees no provider."""
    if user.is_superuser or user.has_perm(SEE_ALL_TEAMS):
        return None
    ids = frozenset(Team.providers.through.objects.filter(team__members=user)
                    .values_list("provider_id", flat=True))
    if not ids and not Team.objects.exists():
        return None
    return ids


# --- conversations --------------------------------------------------------------------------------

def with_message_total(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Adds message_total (the conversation's messages), a subquery inside the page's own query."""
    return conversations.annotate(message_total=count_subquery(Message.objects.filter(conversation=OuterRef("pk"))))


def _latest_inbound(field: str) -> Subquery:
    # A reaction is no message of its own to understand: the latest inbound message is the latest other one.
    latest = (Message.objects.filter(conversation=OuterRef("pk"), direction=Message.Direction.INBOUND)
              .exclude(message_type=MessageType.REACTION).order_by("-created_at", "-id"))
    return Subquery(latest.values(field)[:1])


def with_latest_insight(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Adds latest_intent and latest_sentiment: what the AI made of the conversation's latest inbound
    message (None without one, "" while it is not classified), two subqueries inside the page's own query
    that read the message table by (conversation, created_at)."""
    return conversations.annotate(latest_intent=_latest_inbound("intent"),
                                  latest_sentiment=_latest_inbound("sentiment"))


def conversations_with_latest(conversations: QuerySet[Conversation], *, intent: str | None = None,
                              sentiment: str | None = None) -> QuerySet[Conversation]:
    """The conversations whose latest inbound message has this intent and/or sentiment (annotated by
    with_latest_insight)."""
    if intent is not None:
        conversations = conversations.filter(latest_intent=intent)
    if sentiment is not None:
        conversations = conversations.filter(latest_sentiment=sentiment)
    return conversations


def recent_intents(limit: int = 50) -> list[str]:
    """The intents of the inbound messages of the last INTENT_CHOICES_PERIOD, by name: the filter's choices.
    A recent period rather than the whole table, which has no index on intent: the (direction, created_at)
    index bounds the rows read."""
    since = timezone.now() - INTENT_CHOICES_PERIOD
    return list(Message.objects.filter(direction=Message.Direction.INBOUND, created_at__gte=since)
                .exclude(intent="").order_by("intent").values_list("intent", flat=True).distinct()[:limit])


def _contact_mapped():
    return Exists(ContactUserMapping.objects.filter(contact_id=OuterRef("contact_id")))


def conversations_mapped(conversations: QuerySet[Conversation], mapped: bool) -> QuerySet[Conversation]:
    """The conversations whose contact is (or is not) mapped to a user.

    (NOT) EXISTS: a LEFT JOIN ... IS NULL cannot become an anti-join here, because the list also joins
    the mapping to show its user, and PostgreSQL then misjudges the rows (300 ms on 100,000 contacts)."""
    return conversations.filter(_contact_mapped() if mapped else ~_contact_mapped())


def conversations_of_user(conversations: QuerySet[Conversation], user_id: int) -> QuerySet[Conversation]:
    """The conversations whose contact is mapped to this user."""
    return conversations.filter(contact__user_mapping__user_id=user_id)


def users_with_mappings(limit: int) -> list:
    """The first `limit` users, by name, that have at least one contact mapped to them.

    EXISTS rather than a join and DISTINCT: the first users by name, without reading every mapping."""
    user_model = get_user_model()
    return list(user_model.objects.filter(Exists(ContactUserMapping.objects.filter(user=OuterRef("pk"))))
                .order_by(user_model.USERNAME_FIELD)[:limit])


def user_by_pk(pk: int):
    """The user with this id, or None."""
    return get_user_model().objects.filter(pk=pk).first()


def contact_identities(contact) -> list:
    """The contact's identities, by kind and value."""
    return list(contact.identities.order_by("kind", "value"))


def media_of_conversation(conversation_id: int) -> QuerySet[Media]:
    """The media of the conversation's messages, with what serving their file needs."""
    return Media.objects.only(*MEDIA_FILE_FIELDS).filter(message__conversation_id=conversation_id)


# --- the inbox -------------------------------------------------------------------------------------

# The inbox's order: what waits longest for a reply first, then the most recent (conversation_inbox_order_idx,
# whose NULLs sort as these do on PostgreSQL; NULLS LAST is spelled out for SQLite, which sorts NULLs first).
INBOX_ORDER = [F("awaiting_reply_since").asc(nulls_last=True), F("last_message_at").desc(), "-id"]
PREVIEW_CHARS = 160


def _latest_message():
    # A reaction is no message to preview: the latest other one is.
    return (Message.objects.filter(conversation=OuterRef("pk")).exclude(message_type=MessageType.REACTION)
            .order_by("-created_at", "-id"))


def _open_window():
    return Session.objects.filter(conversation=OuterRef("pk"), state=Session.State.OPEN,
                                  expires_at__gt=timezone.now())


def with_inbox_columns(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Adds what an inbox row shows beyond the conversation's own columns, two subqueries inside the page's
    query (each an index probe per row shown: the message table by (conversation, created_at), the one
    open session by its unique partial index):
    last_preview, {"text", "type", "direction"} of the latest message; window_expires_at, when the open
    24-hour window ends (None: closed)."""
    preview = JSONObject(text=Left("text", PREVIEW_CHARS), type="message_type", direction="direction")
    return conversations.annotate(
        last_preview=Subquery(_latest_message().values(preview=preview)[:1]),
        window_expires_at=Subquery(_open_window().values("expires_at")[:1]),
    )


def conversations_window(conversations: QuerySet[Conversation], state: str,
                         closing_within: timedelta) -> QuerySet[Conversation]:
    """By their 24-hour window: "open", "closed", or "closing" (open and ending within `closing_within`)."""
    if state == "closed":
        return conversations.filter(~Exists(_open_window()))
    if state == "closing":
        return conversations.filter(Exists(_open_window().filter(expires_at__lte=timezone.now() + closing_within)))
    return conversations.filter(Exists(_open_window()))


def conversations_labelled(conversations: QuerySet[Conversation], label_id: int) -> QuerySet[Conversation]:
    """The conversations that carry this label (EXISTS: no join, so no duplicate rows and no DISTINCT)."""
    through = Conversation.labels.through
    return conversations.filter(Exists(through.objects.filter(conversation_id=OuterRef("pk"), label_id=label_id)))


# Up to this many matching contacts are looked up by id; beyond, the word is common enough that reading the
# inbox in its order finds a page of matches quickly.
SEARCH_ID_LIST_MAX = 5000


def _contacts_matching(word: str):
    return (Contact.objects.filter(profile_name__icontains=word).values_list("pk", flat=True)
            .union(ContactIdentity.objects.filter(value__icontains=word).values_list("contact_id", flat=True),
                   ContactUserMapping.objects.filter(user__username__icontains=word)
                   .values_list("contact_id", flat=True)))


def conversations_matching(conversations: QuerySet[Conversation], words: list[str]) -> QuerySet[Conversation]:
    """The conversations whose contact has every word in its name, one of its identities (a phone number, an
    id) or its mapped user's username, or whose provider's conversation id is the word. The matching contacts
    are read first: a rare word (a phone number, a name) becomes a short list of ids that the page reads
    by index; without it PostgreSQL guessed most conversations would match and sorted them all (1.5 s on
    100,000). No join, so no row comes twice and the page needs no DISTINCT."""
    for word in words:
        found = list(_contacts_matching(word)[:SEARCH_ID_LIST_MAX + 1])
        contacts = found if len(found) <= SEARCH_ID_LIST_MAX else _contacts_matching(word)
        conversations = conversations.filter(Q(contact_id__in=contacts) | Q(external_conversation_id=word))
    return conversations


def labels_in_use() -> list[Label]:
    return list(Label.objects.order_by("name"))


def chat_version(conversation: Conversation) -> tuple:
    """What the chat's rows are made of, in two aggregate queries: the messages (how many, the newest,
    their latest change and the latest status time, whichever a writer set) and the files' states. Equal
    versions draw the same rows."""
    messages = Message.objects.filter(conversation_id=conversation.pk).aggregate(
        count=Count("id"), newest=Max("id"), changed=Max("updated_at"), attempts=Sum("attempts"),
        status_at=Max(Greatest("sent_at", "delivered_at", "read_at", "played_at", "failed_at")))
    files = Media.objects.filter(message__conversation_id=conversation.pk).aggregate(
        count=Count("id"), fetched=Count("id", filter=Q(state=Media.State.FETCHED)),
        failed=Count("id", filter=Q(state=Media.State.FAILED)), newest=Max("id"))
    return tuple(messages.values()) + tuple(files.values())


# --- the chat transcript --------------------------------------------------------------------------

def chat_messages(conversation: Conversation, limit: int) -> tuple[list[Message], bool]:
    """The newest `limit` messages (reactions aside: they show on their target), oldest first, and
    whether older ones exist. One query for the rows and their quoted messages, one for their media."""
    newest_first = list(
        Message.objects.filter(conversation_id=conversation.pk).exclude(message_type=MessageType.REACTION)
        .select_related("reply_to").only(*CHAT_MESSAGE_FIELDS, *QUOTED_MESSAGE_FIELDS)
        .prefetch_related(Prefetch("media", queryset=Media.objects.only(*CHAT_MEDIA_FIELDS).order_by("id")))
        .order_by("-created_at", "-id")[:limit + 1]
    )
    return newest_first[:limit][::-1], len(newest_first) > limit


def chat_reactions(conversation: Conversation, oldest_shown_at: datetime | None) -> QuerySet[Message]:
    """
    The reactions a chat showing messages since `oldest_shown_at` needs (None: the whole conversation is
    shown), oldest first, in one query: those made since shortly before the oldest shown message.
    A reaction comes after its target (ours need the target to exist; the customer's are linked to a
    target already stored), so this finds every reaction to a shown message; the margin covers webhooks
    processed out of order. The rows are read by (conversation, created_at), the message table's index.
    """
    reactions = Message.objects.filter(conversation_id=conversation.pk, message_type=MessageType.REACTION)
    if oldest_shown_at is not None:
        reactions = reactions.filter(created_at__gte=oldest_shown_at - REACTION_ORDER_MARGIN)
    # Not conversation.messages: the related manager would read each row's deferred conversation_id.
    return reactions.only(*CHAT_REACTION_FIELDS).order_by("created_at", "id")
