"""
The conversations as an inbox: each row says who, the last message, whether the customer waits for a
reply and for how long, how long the 24-hour window stays open, who handles it, its labels and what the AI
made of the latest message; filters for mine, unassigned, needs reply, window closing, provider, label,
intent and sentiment; sorted by what waits longest. The page of one conversation is in
conversation_page.py.
"""

from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator, smart_split

from core.admin.base import AuditedModelAdmin, as_row_id
from core.dates import when
from whatsapp.admin.chat import SENTIMENT_TONES, insight_chip
from whatsapp.admin.conversation_page import ConversationPageMixin
from whatsapp.admin.extensions import intent_choices
from whatsapp.admin.filters import ProviderNameFilter
from whatsapp.models import Conversation, Label, Message
from whatsapp.selectors import (
    INBOX_ORDER,
    conversations_labelled,
    conversations_mapped,
    conversations_matching,
    conversations_of_user,
    conversations_window,
    conversations_with_latest,
    labels_in_use,
    recent_intents,
    user_by_pk,
    users_with_mappings,
    with_inbox_columns,
    with_latest_insight,
)
from whatsapp.services.conversations import assignable_users, conversation_assign, conversation_set_labels
from whatsapp.services.lifecycle import conversations_set_status


def window_closing() -> timedelta:
    return timedelta(minutes=settings.INBOX_WINDOW_CLOSING_MINUTES)


class AssignedFilter(admin.SimpleListFilter):
    """Mine, nobody's, or one staff user's conversations."""

    title = "assigned to"
    parameter_name = "assigned"
    listed_users = 30

    def lookups(self, request, model_admin):
        choices = [("mine", "Me"), ("none", "Nobody (unassigned)")]
        return choices + [(str(user.pk), user.get_username()) for user in assignable_users()[:self.listed_users]
                          if user.pk != request.user.pk]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if value == "mine":
            return queryset.filter(assignee=request.user)
        if value == "none":
            return queryset.filter(assignee__isnull=True)
        if as_row_id(value) is None:
            raise IncorrectLookupParameters(f"assigned must be a user id, 'mine' or 'none', not {value!r}")
        return queryset.filter(assignee_id=as_row_id(value))


class WaitingFilter(admin.SimpleListFilter):
    """Whether the customer waits for a reply, and the 24-hour window."""

    title = "waiting"
    parameter_name = "waiting"

    def lookups(self, request, model_admin):
        return [("reply", "Needs reply"), ("closing", "Window closing"), ("open", "Window open"),
                ("closed", "Window closed")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "reply":
            return queryset.filter(awaiting_reply_since__isnull=False)
        if value in ("closing", "open", "closed"):
            return conversations_window(queryset, value, window_closing())
        return queryset


class LabelFilter(admin.SimpleListFilter):
    title = "label"
    parameter_name = "label"

    def lookups(self, request, model_admin):
        return [(str(label.pk), label.name) for label in labels_in_use()]

    def queryset(self, request, queryset):
        if self.value() and as_row_id(self.value()) is None:
            raise IncorrectLookupParameters(f"label must be a label id, not {self.value()!r}")
        return conversations_labelled(queryset, as_row_id(self.value())) if self.value() else queryset


class MappedUserFilter(admin.SimpleListFilter):
    """Conversations of one mapped user. The sidebar lists a few mapped users; any other is reached by
    ?mapped_user=<user id> (the user's link on a conversation page) or by searching their username."""

    title = "mapped user"
    parameter_name = "mapped_user"
    listed_users = 30

    def lookups(self, request, model_admin):
        users = users_with_mappings(self.listed_users)
        choices = [("none", "Not mapped"), ("any", "Mapped to any user")]
        choices += [(str(user.pk), str(user)) for user in users]
        chosen = self.value()
        if as_row_id(chosen) is not None and chosen not in {value for value, _ in choices}:
            user = user_by_pk(as_row_id(chosen))
            if user is not None:
                choices.append((chosen, str(user)))
        return choices

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if value in ("none", "any"):
            return conversations_mapped(queryset, mapped=value == "any")
        if as_row_id(value) is None:
            raise IncorrectLookupParameters(f"mapped_user must be a user id, 'any' or 'none', not {value!r}")
        return conversations_of_user(queryset, as_row_id(value))


class LatestIntentFilter(admin.SimpleListFilter):
    """Conversations by the intent of their latest inbound message; the choices are the intents of recent
    inbound messages."""

    title = "intent"
    parameter_name = "intent"

    def lookups(self, request, model_admin):
        # The taxonomy an app above registers (a small table) rather than a scan of months of messages.
        named = [name for names in intent_choices.fire() for name in names]
        choices = [(intent, intent) for intent in dict.fromkeys(named or recent_intents())]
        chosen = self.value()
        if chosen and chosen not in {value for value, _ in choices}:
            choices.append((chosen, chosen))
        return choices

    def queryset(self, request, queryset):
        return conversations_with_latest(queryset, intent=self.value()) if self.value() else queryset


class LatestSentimentFilter(admin.SimpleListFilter):
    title = "sentiment"
    parameter_name = "sentiment"

    def lookups(self, request, model_admin):
        return [(tone, tone) for tone in sorted(SENTIMENT_TONES)]

    def queryset(self, request, queryset):
        return conversations_with_latest(queryset, sentiment=self.value()) if self.value() else queryset


def compact_duration(delta: timedelta) -> str:
    """"just now", "12 min", "5 h", "3 d": what fits a narrow column."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 1:
        return "just now"
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} d"


def label_chips(labels) -> str:
    return format_html_join("", '<span class="wa-label" style="--label-colour:{}">{}</span>',
                            ((label.colour, label.name) for label in labels))


def _label_action(label: Label):
    def add_label(modeladmin, request, queryset):
        changed = sum(conversation_set_labels(conversation, [*conversation.labels.all(), label], actor=request.user)
                      for conversation in queryset.prefetch_related("labels"))
        modeladmin.message_user(request, f"Label {label.name} added to {changed} conversation(s).")

    add_label.__name__ = f"add_label_{label.pk}"
    return add_label, add_label.__name__, f"Add the label “{label.name}”"


@admin.register(Conversation)
class ConversationAdmin(ConversationPageMixin, AuditedModelAdmin):
    list_display = ["contact_column", "last_message", "waiting", "handling", "latest_insight"]
    list_display_links = ["contact_column"]
    list_filter = ["status", AssignedFilter, WaitingFilter, ProviderNameFilter, LabelFilter, LatestIntentFilter,
                   LatestSentimentFilter, MappedUserFilter]
    search_fields = ["contact__profile_name", "contact__identities__value", "external_conversation_id",
                     "contact__user_mapping__user__username"]
    autocomplete_fields = ["contact", "assignee"]
    ordering = INBOX_ORDER
    list_per_page = 50
    # The full count is a second COUNT(*) over every conversation on each filtered page: not worth it.
    show_full_result_count = False
    actions = ["resolve", "mark_pending", "reopen", "assign_to_me", "unassign"]
    fields = ["provider", "contact", "assignee"]
    change_list_template = "admin/whatsapp/conversation/change_list.html"

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {"title": "Inbox", **(extra_context or {})})

    def get_queryset(self, request):
        # The list and the page both show these; a provider's credentials are not read (they are decrypted
        # on load, and neither shows them).
        queryset = (super().get_queryset(request)
                    .select_related("provider", "contact", "assignee", "contact__user_mapping__user")
                    .defer("provider__credentials").prefetch_related("labels"))
        return with_inbox_columns(with_latest_insight(queryset))

    def get_actions(self, request):
        actions = super().get_actions(request)
        if self.has_change_permission(request):
            for label in labels_in_use()[:20]:
                function, name, description = _label_action(label)
                actions[name] = (function, name, description)
        return actions

    @admin.action(description="Resolve", permissions=["change"])
    def resolve(self, request, queryset):
        self._set_status(request, queryset, Conversation.Status.RESOLVED, "resolved")

    @admin.action(description="Mark pending (waiting on the customer)", permissions=["change"])
    def mark_pending(self, request, queryset):
        self._set_status(request, queryset, Conversation.Status.PENDING, "marked pending")

    @admin.action(description="Reopen", permissions=["change"])
    def reopen(self, request, queryset):
        self._set_status(request, queryset, Conversation.Status.OPEN, "reopened")

    def _set_status(self, request, queryset, status: str, done: str) -> None:
        changed = conversations_set_status(queryset, status, actor=request.user)
        self.message_user(request, f"{changed} conversation(s) {done}.", messages.SUCCESS)

    @admin.action(description="Assign to me", permissions=["change"])
    def assign_to_me(self, request, queryset):
        changed = sum(conversation_assign(conversation, request.user, actor=request.user) for conversation in queryset)
        self.message_user(request, f"{changed} conversation(s) assigned to you.")

    @admin.action(description="Unassign", permissions=["change"])
    def unassign(self, request, queryset):
        changed = sum(conversation_assign(conversation, None, actor=request.user) for conversation in queryset)
        self.message_user(request, f"{changed} conversation(s) unassigned.", messages.SUCCESS)

    def get_search_results(self, request, queryset, search_term):
        words = [word.strip("\"'") for word in smart_split(search_term) if word.strip("\"'")]
        return (conversations_matching(queryset, words), False) if words else (queryset, False)

    def has_add_permission(self, request):
        # A conversation starts when a customer writes or a message is sent to a number (the API, the
        # provider's test send); an empty one made by hand would have nothing in it.
        return False

    def get_readonly_fields(self, request, obj=None):
        # A conversation belongs to one provider and one contact for good.
        return ["provider", "contact"] if obj else []

    # --- the columns -------------------------------------------------------------------------------------

    @admin.display(description="Conversation", ordering="contact__profile_name")
    def contact_column(self, obj):
        mapping = getattr(obj.contact, "user_mapping", None)
        mapped = format_html(' · <span class="wa-mapped" title="The contact is mapped to this user">{}</span>',
                             mapping.user) if mapping is not None else ""
        return format_html('<strong class="wa-contact">{}</strong><br><span class="wa-provider">{}{}</span>',
                           obj.contact, obj.provider.name, mapped)

    @admin.display(description="Last message", ordering="last_message_at")
    def last_message(self, obj):
        preview = obj.last_preview or {}
        if not preview:
            return format_html('<span class="wa-quiet">{}</span>', "No messages yet")
        text = preview.get("text") or f"[{Message(message_type=preview.get('type')).get_message_type_display()}]"
        who = "You: " if preview.get("direction") == Message.Direction.OUTBOUND else ""
        return format_html('<div class="wa-preview" title="{}">{}{}</div><span class="wa-when">{}</span>', text,
                           who, Truncator(text).chars(80), when(obj.last_message_at))

    @admin.display(description="Waiting", ordering=INBOX_ORDER[0])
    def waiting(self, obj):
        """Whether the customer waits for a reply (and since when), over the 24-hour window's state."""
        return format_html("{}{}", self._needs_reply(obj), self._window(obj))

    @staticmethod
    def _needs_reply(obj) -> str:
        if obj.awaiting_reply_since is None:
            return ""
        how_long = compact_duration(timezone.now() - obj.awaiting_reply_since)
        return format_html('<span class="wa-needs-reply" title="The customer wrote last, at {}">Needs reply · {}'
                           '</span><br>', when(obj.awaiting_reply_since), how_long)

    @staticmethod
    def _window(obj) -> str:
        expires = obj.window_expires_at
        if expires is None:
            return format_html('<span class="wa-window-closed" title="{}">{}</span>',
                               "Only an approved template can be sent", "Window closed")
        closing = expires - timezone.now() <= window_closing()
        return format_html('<span class="wa-window-{}" title="The 24-hour window is open until {}">Window: {} '
                           'left</span>', "closing" if closing else "open", when(expires),
                           compact_duration(expires - timezone.now()))

    @admin.display(description="Handled by", ordering="assignee__username")
    def handling(self, obj):
        who = (format_html("<strong>{}</strong>", obj.assignee.get_username()) if obj.assignee_id
               else format_html('<span class="wa-quiet">{}</span>', "Unassigned"))
        if obj.status != Conversation.Status.OPEN:
            who = format_html('<span class="wa-status wa-status-{}">{}</span> {}', obj.status,
                              obj.get_status_display().split(" (")[0], who)
        labels = label_chips(obj.labels.all())
        return format_html("{}<br>{}", who, labels) if labels else who

    @admin.display(description="AI", empty_value="")
    def latest_insight(self, obj):
        """What the AI made of the latest inbound message."""
        return insight_chip(obj.latest_intent, obj.latest_sentiment)
