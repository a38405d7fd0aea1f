"""
The conversations: the list (filtered by mapped user, and by the intent and sentiment of the latest
inbound message), and the conversation page with the contact's card, the transcript as a chat
(whatsapp.admin.chat), the panels other apps add under it (whatsapp.admin.extensions), its files, and the
form that sends a text or an approved template.
"""

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import conditional_escape
from django.utils.http import content_disposition_header
from django.utils.safestring import mark_safe

from core.admin.base import AuditedModelAdmin
from core.security_headers import UNTRUSTED_FILE_POLICY
from core.storage import ObjectNotFound, StorageError
from whatsapp.admin.chat import SENTIMENT_TONES, conversation_chat, insight_chip
from whatsapp.admin.extensions import PANEL_FORM_ID, conversation_panels
from whatsapp.admin.forms import ConversationSendForm, conversation_send_request, refusal_text, send_preview
from whatsapp.models import Conversation, Media
from whatsapp.selectors import (
    contact_identities,
    conversations_mapped,
    conversations_of_user,
    conversations_with_latest,
    media_of_conversation,
    recent_intents,
    user_by_pk,
    users_with_mappings,
    with_latest_insight,
    with_message_total,
)
from whatsapp.services.archive import media_content
from whatsapp.services.outbound import message_send
from whatsapp.services.send_rules import SendRefused
from whatsapp.services.sessions import session_current


def _reverse_or_none(name: str, *args) -> str | None:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def _user_admin_url(user) -> str | None:
    opts = user._meta
    return _reverse_or_none(f"admin:{opts.app_label}_{opts.model_name}_change", user.pk)


def conversation_contact_card(contact) -> dict:
    """The contact's identities, consent and mapping, for the top of the conversation page."""
    identities = contact_identities(contact)
    # Usually joined already (ConversationAdmin.get_queryset); a missing one raises an AttributeError subclass.
    mapping = getattr(contact, "user_mapping", None)
    card = {"contact": contact, "identities": identities, "mapping": mapping,
            "contact_url": _reverse_or_none("admin:contacts_contact_change", contact.pk)}
    if mapping is not None:
        card["user_url"] = _user_admin_url(mapping.user)
    else:
        # The queue where it can be mapped; the contact's own page if the queue is not there.
        card["unmapped_url"] = _reverse_or_none("admin:contacts_unmappedcontact_changelist") or card["contact_url"]
    return card


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
        if chosen and chosen.isdigit() and chosen not in {value for value, _ in choices}:
            user = user_by_pk(int(chosen))
            if user is not None:
                choices.append((chosen, str(user)))
        return choices

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if value in ("none", "any"):
            return conversations_mapped(queryset, mapped=value == "any")
        if not value.isdigit():
            raise IncorrectLookupParameters(f"mapped_user must be a user id, 'any' or 'none', not {value!r}")
        return conversations_of_user(queryset, int(value))


class LatestIntentFilter(admin.SimpleListFilter):
    """Conversations by the intent of their latest inbound message; the choices are the intents of recent
    inbound messages."""

    title = "intent"
    parameter_name = "intent"

    def lookups(self, request, model_admin):
        choices = [(intent, intent) for intent in recent_intents()]
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


def conversation_panels_html(request, conversation) -> str:
    """The other apps' panels for this page, joined; a receiver's plain string is escaped."""
    parts = conversation_panels.fire(request=request, conversation=conversation)
    return mark_safe("".join(str(conditional_escape(part)) for part in parts if part))  # noqa: S308


@admin.register(Conversation)
class ConversationAdmin(AuditedModelAdmin):
    list_display = ["__str__", "latest_insight", "provider", "contact", "mapped_user", "last_message_at", "assignee",
                    "message_count"]
    list_filter = ["provider", MappedUserFilter, LatestIntentFilter, LatestSentimentFilter,
                   ("assignee", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["contact__profile_name", "contact__identities__value", "external_conversation_id",
                     "contact__user_mapping__user__username"]
    autocomplete_fields = ["contact", "assignee"]
    readonly_fields = ["created_at", "last_message_at"]
    fieldsets = [
        (None, {"fields": ["provider", "contact", "assignee", "external_conversation_id", "last_message_at",
                           "created_at"]}),
        ("Context and summary", {"fields": ["context", "ai_summary"], "classes": ["collapse"]}),
    ]
    list_select_related = ["provider", "contact", "assignee", "contact__user_mapping__user"]
    change_form_template = "admin/whatsapp/conversation/change_form.html"

    def get_queryset(self, request):
        # The list and the conversation page both show these. (The changelist skips list_select_related
        # once the queryset has a select_related, so it is all named here.)
        queryset = with_message_total(super().get_queryset(request).select_related(*self.list_select_related))
        return with_latest_insight(queryset)

    def get_urls(self):
        send = path("<int:conversation_id>/send/", self.admin_site.admin_view(self.send_view),
                    name="whatsapp_conversation_send")
        media = path("<int:conversation_id>/media/<int:media_id>/", self.admin_site.admin_view(self.media_view),
                     name="whatsapp_conversation_media")
        return [send, media, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        conversation = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if conversation is not None and self.has_view_or_change_permission(request, conversation):
            extra_context.update(chat=conversation_chat(conversation),
                                 contact_card=conversation_contact_card(conversation.contact),
                                 message_total=conversation.message_total,
                                 extension_panels=conversation_panels_html(request, conversation),
                                 panel_form_id=PANEL_FORM_ID)
        if conversation is not None and self.has_change_permission(request, conversation):
            extra_context.update(self._send_context(conversation,
                                                    ConversationSendForm(provider=conversation.provider)))
        return super().change_view(request, object_id, form_url, extra_context)

    def media_view(self, request, conversation_id, media_id):
        """A stored file of one of this conversation's messages, for whoever may see the conversation."""
        if not (self.has_view_or_change_permission(request)
                and (request.user.has_perm("whatsapp.view_media") or request.user.has_perm("whatsapp.change_media"))):
            raise PermissionDenied
        media = get_object_or_404(media_of_conversation(conversation_id), pk=media_id)
        if media.state != Media.State.FETCHED:
            raise Http404("This file has not been downloaded.")
        try:
            data = media_content(media)
        except ObjectNotFound:
            raise Http404("This file is no longer in storage.") from None
        except StorageError:
            return HttpResponse("The archive storage cannot be reached right now; try again shortly.",
                                status=503, content_type="text/plain")
        mime_type = media.mime_type or "application/octet-stream"
        # A customer's file is untrusted: only plain media open in the browser (never SVG, which runs
        # scripts); everything else downloads, typed as bytes so that no page of ours could load it as a
        # script or a style sheet (which our own origin is allowed to serve).
        inline = mime_type.split("/")[0] in ("image", "audio", "video") and "svg" not in mime_type
        response = HttpResponse(data, content_type=mime_type if inline else "application/octet-stream")
        response["Content-Security-Policy"] = UNTRUSTED_FILE_POLICY
        response["Content-Disposition"] = content_disposition_header(not inline,
                                                                     media.filename or f"media-{media.pk}")
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "private, no-store"
        return response

    def _send_context(self, conversation, form, preview=None) -> dict:
        return {"conversation": conversation, "send_form": form, "preview": preview,
                "window": session_current(conversation)}

    def send_view(self, request, conversation_id):
        """The conversation page's send form posts here: Preview shows the text, Send queues it."""
        conversation = get_object_or_404(Conversation.objects.select_related("provider", "contact"),
                                         pk=conversation_id)
        if not self.has_change_permission(request, conversation):
            raise PermissionDenied
        form = ConversationSendForm(request.POST or None, provider=conversation.provider)
        preview = None
        if request.method == "POST" and form.is_valid():
            if "_preview" in request.POST:
                preview = send_preview(form.cleaned_data)
            elif self._send(request, conversation, form.cleaned_data):
                return redirect("admin:whatsapp_conversation_change", conversation.pk)
        context = {**self.admin_site.each_context(request), "title": f"Send a message to {conversation.contact}",
                   "opts": self.model._meta, **self._send_context(conversation, form, preview)}
        return render(request, "admin/whatsapp/conversation/send.html", context)

    def _send(self, request, conversation, data) -> bool:
        try:
            message, created = message_send(conversation_send_request(conversation, data, request.user))
        except SendRefused as refusal:
            self.message_user(request, refusal_text(refusal), messages.ERROR)
            return False
        self.message_user(request, f"Message #{message.pk} queued." if created
                          else f"Message #{message.pk} was already queued by this form; not sent twice.")
        return True

    def get_readonly_fields(self, request, obj=None):
        # A conversation belongs to one provider and one contact for good.
        return [*self.readonly_fields, "provider", "contact"] if obj else self.readonly_fields

    @admin.display(description="Mapped user", ordering="contact__user_mapping__user__username")
    def mapped_user(self, obj):
        mapping = getattr(obj.contact, "user_mapping", None)
        return mapping.user if mapping is not None else "-"

    @admin.display(description="Intent · sentiment", empty_value="")
    def latest_insight(self, obj):
        """What the AI made of the latest inbound message."""
        return insight_chip(obj.latest_intent, obj.latest_sentiment)

    @admin.display(description="Messages", ordering="message_total")
    def message_count(self, obj):
        return obj.message_total
