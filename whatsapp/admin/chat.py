"""
The conversation page's transcript as a chat: one bubble per message (its quoted message, files,
reactions, status marks and errors), built in a fixed number of queries whatever the conversation's
length (the queries are in whatsapp.selectors).
"""

from django.template.defaultfilters import filesizeformat, linebreaksbr
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from core.dates import when
from whatsapp.models import Conversation, Media, Message
from whatsapp.providers.events import MEDIA_TYPES, MessageStatus, MessageType
from whatsapp.selectors import chat_messages, chat_reactions

CHAT_MESSAGE_LIMIT = 500

# An outbound message's status as the sender sees it: (mark, words). The page colours read marks blue.
STATUS_MARKS = {
    MessageStatus.QUEUED: ("🕓", "queued"),
    MessageStatus.SENDING: ("🕓", "sending"),
    MessageStatus.SENT: ("✓", "sent"),
    MessageStatus.DELIVERED: ("✓✓", "delivered"),
    MessageStatus.READ: ("✓✓", "read"),
    MessageStatus.PLAYED: ("✓✓", "played"),
    MessageStatus.FAILED: ("⚠", "failed"),
    MessageStatus.DEAD_LETTER: ("⚠", "dead letter"),
}


# The sentiments that have a colour (red, green, grey); any other value gets the plain chip.
SENTIMENT_TONES = {"negative", "positive", "neutral"}


def insight_chip(intent: str | None, sentiment: str | None) -> str:
    """What the AI made of an inbound message as one small chip, "complaint · negative", coloured by the
    sentiment; "" when it said nothing (not classified yet, or AI off)."""
    words = [word for word in (intent, sentiment) if word]
    if not words:
        return ""
    tone = sentiment if sentiment in SENTIMENT_TONES else "none"
    title = ", ".join(f"{label} {word}" for label, word in (("intent", intent), ("sentiment", sentiment)) if word)
    return format_html('<span class="wa-chip wa-chip-{}" title="{}">{}</span>', tone, title, " · ".join(words))


def _reaction_target(reaction: Message, by_id: dict, by_provider_id: dict) -> Message | None:
    content = reaction.content if isinstance(reaction.content, dict) else {}
    for message_id in (reaction.reply_to_id, content.get("target_message")):
        if isinstance(message_id, int) and message_id in by_id:
            return by_id[message_id]
    for key in ("target", "quoted_message_id"):
        if isinstance(content.get(key), str) and content[key] in by_provider_id:
            return by_provider_id[content[key]]
    return None


def _reaction_emoji(reaction: Message) -> str:
    content = reaction.content if isinstance(reaction.content, dict) else {}
    return str(content.get("emoji") or reaction.text or "")


def _attach_reactions(shown: list[Message], reactions, notes_since=None) -> list[Message]:
    """Put each side's latest reaction on the message it reacts to (a later one replaces it, an empty
    emoji removes it); return the reactions, made since `notes_since`, whose target is not on the page."""
    by_id = {message.pk: message for message in shown}
    by_provider_id = {message.provider_message_id: message for message in shown if message.provider_message_id}
    latest: dict[int, dict[str, Message]] = {}
    unplaced = []
    for reaction in reactions:
        target = _reaction_target(reaction, by_id, by_provider_id)
        if target is not None:
            latest.setdefault(target.pk, {})[reaction.direction] = reaction
        elif _reaction_emoji(reaction) and (notes_since is None or reaction.created_at >= notes_since):
            unplaced.append(reaction)
    for message in shown:
        message.chat_reactions = [
            {"emoji": _reaction_emoji(reaction), "by": "customer" if side == Message.Direction.INBOUND else "us",
             "at": reaction.created_at}
            for side, reaction in sorted(latest.get(message.pk, {}).items()) if _reaction_emoji(reaction)
        ]
    return unplaced


def _safe_link(url) -> str:
    # Only web links become hrefs: a stored "javascript:" URL must never be clickable.
    return url if isinstance(url, str) and url.startswith(("https://", "http://")) else ""


def _joined(parts) -> str:
    return mark_safe("".join(parts))  # noqa: S308 - every part was built by format_html, which escaped it


def _chat_error(message: Message) -> str:
    if not (message.error_code or message.error_title):
        return ""
    error = " ".join(filter(None, [message.error_code and f"({message.error_code})", message.error_title]))
    if message.status == MessageStatus.FAILED:
        return f"Failed {error}"
    if message.status == MessageStatus.DEAD_LETTER:
        return f"Dead letter {error}: retry or discard it in the dead letters"
    if message.status in (MessageStatus.QUEUED, MessageStatus.SENDING):
        return f"Last attempt failed {error}; it will be retried"
    return ""  # an earlier failure, since overtaken by a successful send


class ChatRenderer:
    """
    The rows of the chat, one line of HTML per message, built with format_html (every text escaped).
    Python rather than a template loop: for 500 messages a template costs about ten times as much.
    """

    def __init__(self, conversation: Conversation):
        self.conversation = conversation
        self.message_url = reverse("admin:whatsapp_message_changelist")

    def when(self, moment) -> str:
        return when(moment)

    def row(self, message: Message) -> str:
        if message.message_type == MessageType.REACTION:
            return self.reaction_note(message)
        return self.bubble(message)

    def bubble(self, message: Message) -> str:
        outbound = message.direction == Message.Direction.OUTBOUND
        parts = [format_html('<div class="wa-purpose">{}</div>', message.get_purpose_display())
                 if message.purpose else "", self.quote(message)]
        media = self.media(message)
        if message.text:
            parts.append(format_html('<div class="wa-text">{}</div>', linebreaksbr(message.text, autoescape=True)))
        elif not media:
            parts.append(format_html('<div class="wa-text">[{}]</div>', message.get_message_type_display()))
        parts += media
        if message.transcript:
            parts.append(format_html('<div class="wa-ai-transcript">Transcript: {}</div>', message.transcript))
        chip = "" if outbound else insight_chip(message.intent, message.sentiment)
        if chip:
            parts.append(format_html('<div class="wa-ai-tags">{}</div>', chip))
        parts.append(self.reactions(message))
        parts.append(self.meta(message, outbound))
        error = _chat_error(message) if outbound else ""
        if error:
            parts.append(format_html('<div class="wa-error">{}</div>', error))
        return format_html('<div class="wa-row wa-{}" id="message-{}"><div class="wa-bubble wa-{}">{}</div></div>\n',
                           message.direction, message.pk, message.direction, _joined(parts))

    def quote(self, message: Message) -> str:
        quoted = message.reply_to
        if quoted is not None:
            who = "You" if quoted.direction == Message.Direction.OUTBOUND else "Customer"
            text = Truncator(quoted.text or quoted.get_message_type_display()).chars(120)
            return format_html('<a class="wa-quote" href="#message-{}">{}: {}</a>', quoted.pk, who, text)
        if isinstance(message.content, dict) and message.content.get("quoted_message_id"):
            return format_html('<div class="wa-quote">{}</div>', "Reply to a message not stored here")
        return ""

    def media(self, message: Message) -> list[str]:
        """A link to each stored file of the message (served by media_view), or why there is none yet."""
        parts = []
        for media in message.media.all():
            label = media.filename or media.mime_type or "file"
            if media.state == Media.State.FETCHED:
                url = reverse("admin:whatsapp_conversation_media", args=[self.conversation.pk, media.pk])
                size = f" ({filesizeformat(media.size_bytes)})" if media.size_bytes else ""
                parts.append(format_html('<div class="wa-media">📎 <a href="{}">{}</a>{}</div>', url, label, size))
            else:
                problem = f": {Truncator(media.last_error).chars(120)}" if media.last_error else ""
                parts.append(format_html('<div class="wa-media">📎 {} <em>({}{})</em></div>', label,
                                         media.get_state_display().lower(), problem))
        if not parts and message.message_type in MEDIA_TYPES:
            # Sent by link rather than uploaded: the provider fetched it from there.
            link = _safe_link((message.content or {}).get("url"))
            if link:
                parts.append(format_html('<div class="wa-media">📎 <a href="{}" rel="noopener noreferrer" '
                                         'target="_blank">{}</a></div>', link, link))
        return parts

    def reactions(self, message: Message) -> str:
        if not message.chat_reactions:
            return ""
        badges = (format_html('<span class="wa-reaction" title="reaction from {}, {}">{}</span>', reaction["by"],
                              self.when(reaction["at"]), reaction["emoji"]) for reaction in message.chat_reactions)
        return format_html('<div class="wa-reactions">{}</div>', _joined(badges))

    def meta(self, message: Message, outbound: bool) -> str:
        at = message.created_at if outbound or not message.received_at else message.received_at
        kind = message.message_type
        if kind == MessageType.TEMPLATE and isinstance(message.content, dict) and message.content.get("template"):
            kind = f"template {message.content['template']}"
        return format_html('<div class="wa-meta"><a href="{}{}/change/">#{}</a> · {} · {}{}</div>', self.message_url,
                           message.pk, message.pk, self.when(at), kind, self.status(message) if outbound else "")

    def status(self, message: Message) -> str:
        mark, words = STATUS_MARKS.get(message.status, ("", message.status))
        steps = [("queued", message.queued_at), ("sent", message.sent_at), ("delivered", message.delivered_at),
                 ("read", message.read_at), ("played", message.played_at), ("failed", message.failed_at)]
        history = ", ".join(f"{step} {self.when(moment)}" for step, moment in steps if moment)
        return format_html(' · <span class="wa-status wa-status-{}" title="{}">{} {}</span>', message.status,
                           history, mark, words)

    def reaction_note(self, reaction: Message) -> str:
        who = "we reacted" if reaction.direction == Message.Direction.OUTBOUND else "the customer reacted"
        return format_html('<div class="wa-row wa-note"><span class="wa-reaction-note">{} {} to a message not '
                           'shown here · {}</span></div>\n', _reaction_emoji(reaction), who,
                           self.when(reaction.created_at))


def conversation_chat(conversation: Conversation) -> dict:
    """The chat above the form, in a fixed number of queries whatever the conversation's length."""
    shown, older_hidden = chat_messages(conversation, CHAT_MESSAGE_LIMIT)
    notes_since = shown[0].created_at if older_hidden and shown else None
    unplaced = _attach_reactions(shown, chat_reactions(conversation, notes_since), notes_since)
    timeline = sorted([*shown, *unplaced], key=lambda message: (message.created_at, message.pk))
    renderer = ChatRenderer(conversation)
    message_url = renderer.message_url
    return {"rows": _joined(renderer.row(item) for item in timeline), "empty": not timeline,
            "older_hidden": older_hidden, "limit": CHAT_MESSAGE_LIMIT,
            "all_messages_url": f"{message_url}?conversation__id__exact={conversation.pk}"}
