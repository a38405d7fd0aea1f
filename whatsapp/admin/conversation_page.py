"""
The conversation page, an operator's working screen rather than a change form: the transcript as a chat
(whatsapp.admin.chat) that refreshes itself, the send box right under it (whatsapp.admin.send_form), and
beside them who handles the conversation, its labels, the contact's card, the panels other apps add
(whatsapp.admin.extensions) and the details. It has no Save or Delete: assigning, labelling and sending
each post to a view of their own, which go through the services and the audit log.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.html import conditional_escape
from django.utils.http import content_disposition_header, parse_etags, quote_etag
from django.utils.safestring import mark_safe

from core.admin.base import as_row_id
from core.security_headers import UNTRUSTED_FILE_POLICY
from core.storage import ObjectNotFound, StorageError
from whatsapp.admin.chat import conversation_chat
from whatsapp.admin.extensions import PANEL_FORM_ID, conversation_panels
from whatsapp.admin.forms import refusal_text
from whatsapp.admin.send_form import ConversationSendForm, conversation_send_request, send_preview
from whatsapp.models import Conversation, Label, Media, Message
from whatsapp.selectors import chat_version, contact_identities, media_of_conversation
from whatsapp.services.archive import media_content
from whatsapp.services.conversations import (
    ANYONE,
    AssignmentRefused,
    assignable_users,
    conversation_assign,
    conversation_change_labels,
    conversation_set_labels,
)
from whatsapp.services.lifecycle import StatusRefused, conversation_set_status, snooze_time
from whatsapp.services.outbound import message_send
from whatsapp.services.send_rules import SendRefused
from whatsapp.services.sessions import session_current

PAGE_TEMPLATE = "admin/whatsapp/conversation/page.html"
# Staff users offered in the page's assignee list (the current assignee is always among them).
ASSIGNEE_CHOICES = 200


def _reverse_or_none(name: str, *args) -> str | None:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def _user_admin_url(user) -> str | None:
    opts = user._meta
    return _reverse_or_none(f"admin:{opts.app_label}_{opts.model_name}_change", user.pk)


def conversation_contact_card(contact) -> dict:
    """The contact's identities, consent and mapping, for the side of the conversation page."""
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


def conversation_panels_html(request, conversation) -> str:
    """The other apps' panels for this page, joined; a receiver's plain string is escaped."""
    parts = conversation_panels.fire(request=request, conversation=conversation)
    return mark_safe("".join(str(conditional_escape(part)) for part in parts if part))  # noqa: S308


def conversation_state(conversation: Conversation) -> dict:
    """What the page's header says of the conversation now: its window and whether the customer waits."""
    now, window = timezone.now(), session_current(conversation)
    closing = window is not None and window.expires_at - now <= timedelta(minutes=settings.INBOX_WINDOW_CLOSING_MINUTES)
    return {"window": window, "closing": closing, "awaiting_since": conversation.awaiting_reply_since, "now": now}


class ConversationPageMixin:
    """The conversation page's views, mixed into ConversationAdmin."""

    def get_urls(self):
        def view(name, function, route):
            return path(f"<int:conversation_id>/{route}", self.admin_site.admin_view(function),
                        name=f"whatsapp_conversation_{name}")

        return [view("send", self.send_view, "send/"),
                view("send_fields", self.send_fields_view, "send/fields/"),
                view("transcript", self.transcript_view, "transcript/"),
                view("assign", self.assign_view, "assign/"),
                view("labels", self.labels_view, "labels/"),
                view("status", self.status_view, "status/"),
                view("media", self.media_view, "media/<int:media_id>/"),
                *super().get_urls()]

    # --- reading ---------------------------------------------------------------------------------------

    def _visible(self, request, conversation_id) -> Conversation:
        conversation = self.get_object(request, unquote(str(conversation_id)))
        if conversation is None:
            raise Http404("No such conversation.")
        if not self.has_view_or_change_permission(request, conversation):
            raise PermissionDenied
        return conversation

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET"], "This page changes nothing itself: assigning, labels and "
                                                   "sending have their own forms on it.")
        conversation = self.get_object(request, unquote(object_id))
        if conversation is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, conversation):
            raise PermissionDenied
        may_change = self.has_change_permission(request, conversation)
        context = self.page_context(request, conversation, may_change)
        if may_change:
            context.update(self.send_context(context, ConversationSendForm(provider=conversation.provider)))
        context.update(extra_context or {})
        request.current_app = self.admin_site.name
        return TemplateResponse(request, PAGE_TEMPLATE, context)

    def page_context(self, request, conversation: Conversation, may_change: bool) -> dict:
        chat = conversation_chat(conversation)
        if chat["older_hidden"]:
            chat["total"] = Message.objects.filter(conversation_id=conversation.pk).count()
        return {
            **self.admin_site.each_context(request), "opts": self.opts, "original": conversation,
            "title": str(conversation.contact), "number_name": conversation.provider.name,
            "conversation": conversation, "chat": chat, "may_change": may_change,
            "state": conversation_state(conversation),
            "contact_card": conversation_contact_card(conversation.contact),
            "extension_panels": conversation_panels_html(request, conversation), "panel_form_id": PANEL_FORM_ID,
            "labels": list(conversation.labels.all()), "all_labels": list(Label.objects.all()) if may_change else [],
            "assignable": self._assignable(conversation) if may_change else [],
            "last_resolution": conversation.resolutions.order_by("-resolved_at").first(),
            "poll_ms": int(settings.INBOX_POLL_SECONDS * 1000),
            "has_history": self.has_view_permission(request, conversation),
        }

    @staticmethod
    def _assignable(conversation: Conversation) -> list:
        users = list(assignable_users(conversation.provider_id)[:ASSIGNEE_CHOICES])
        # The current assignee is always a choice, so that pressing Assign never unassigns by accident.
        if conversation.assignee is not None and conversation.assignee not in users:
            users.append(conversation.assignee)
        return users

    def transcript_view(self, request, conversation_id):
        """The chat's rows and the header's state as JSON, for the page's script to refresh them in place.
        The ETag is a digest of what the rows and the state are made of (chat_version), read before any
        rendering: an unchanged transcript answers 304 after two small queries."""
        conversation = self._visible(request, conversation_id)
        state = conversation_state(conversation)
        # The state line counts minutes down: it changes every minute even when no message does.
        version = (chat_version(conversation), state["window"] and state["window"].expires_at,
                   conversation.awaiting_reply_since, int(state["now"].timestamp() // 60))
        etag = quote_etag(hashlib.sha256(repr(version).encode()).hexdigest()[:32])
        # Weakly compared: a proxy that compresses the answer marks the tag weak (W/"...").
        if etag.strip('"') in {tag.removeprefix("W/").strip('"')
                               for tag in parse_etags(request.headers.get("If-None-Match", ""))}:
            response = HttpResponse(status=304)
        else:
            chat = conversation_chat(conversation)
            state_html = render_to_string("admin/whatsapp/conversation/_state.html", {"state": state},
                                          request=request)
            response = JsonResponse({"rows": str(chat["rows"]), "empty": chat["empty"], "state": state_html})
        response["ETag"] = etag
        response["Cache-Control"] = "private, no-cache"
        return response

    def media_view(self, request, conversation_id, media_id):
        """A stored file of one of this conversation's messages, for whoever may see the conversation."""
        if not (self.has_view_or_change_permission(request)
                and (request.user.has_perm("whatsapp.view_media") or request.user.has_perm("whatsapp.change_media"))):
            raise PermissionDenied
        self._visible(request, conversation_id)
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

    # --- changing --------------------------------------------------------------------------------------

    def _changeable(self, request, conversation_id) -> Conversation:
        conversation = self._visible(request, conversation_id)
        if not self.has_change_permission(request, conversation):
            raise PermissionDenied
        return conversation

    def _back(self, conversation: Conversation, anchor: str = ""):
        return redirect(reverse("admin:whatsapp_conversation_change", args=[conversation.pk]) + anchor)

    @staticmethod
    def send_context(context: dict, form, preview=None) -> dict:
        """The send box's part of the page: the form, a preview, and the window the page already read."""
        return {"send_form": form, "preview": preview, "window": context["state"]["window"]}

    def send_view(self, request, conversation_id):
        """The send box posts here: Preview shows what the customer would read, Send queues it. A refused
        or invalid send shows the whole page again with the box as it was filled in."""
        conversation = self._changeable(request, conversation_id)
        if request.method != "POST":
            return self._back(conversation, "#send-message")
        form = ConversationSendForm(request.POST, request.FILES, provider=conversation.provider)
        preview = None
        if form.is_valid():
            if "_preview" in request.POST:
                preview = send_preview(form.cleaned_data)
            elif self._send(request, conversation, form.cleaned_data):
                return self._back(conversation, "#send-message")
        context = self.page_context(request, conversation, True)
        context.update(self.send_context(context, form, preview))
        request.current_app = self.admin_site.name
        return TemplateResponse(request, PAGE_TEMPLATE, context, status=200 if form.is_valid() else 400)

    def _send(self, request, conversation, data) -> bool:
        try:
            message, created = message_send(conversation_send_request(conversation, data, request.user))
        except SendRefused as refusal:
            self.message_user(request, refusal_text(refusal), messages.ERROR)
            return False
        self.message_user(request, f"Message #{message.pk} queued." if created
                          else f"Message #{message.pk} was already queued by this form; not sent twice.")
        return True

    def send_fields_view(self, request, conversation_id):
        """The value fields of the template picked in the send box (the page's script swaps them in)."""
        conversation = self._changeable(request, conversation_id)
        form = ConversationSendForm(initial={"template": request.GET.get("template")},
                                    provider=conversation.provider)
        return TemplateResponse(request, "admin/whatsapp/conversation/_template_fields.html",
                                {"send_form": form})

    @staticmethod
    def _assignee(request):
        chosen = request.POST.get("assignee", "")
        if "_mine" in request.POST:
            return request.user
        if chosen in ("", "none") or "_unassign" in request.POST:
            return None
        if as_row_id(chosen) is None:
            raise AssignmentRefused(f"Choose a user, not {chosen!r}.")
        user = assignable_users().filter(pk=as_row_id(chosen)).first()
        if user is None:
            raise AssignmentRefused("That user is not an active staff user and cannot take conversations.")
        return user

    @staticmethod
    def _done(request, changed: bool, done: str) -> None:
        messages.success(request, done) if changed else messages.info(request, "Nothing changed.")

    def assign_view(self, request, conversation_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        conversation = self._changeable(request, conversation_id)
        shown = request.POST.get("shown_assignee")
        # The assignment the page showed: refused if someone changed it since (a form without it assigns anyway).
        expected = ANYONE if shown is None else as_row_id(shown)
        try:
            assignee = self._assignee(request)
            changed = conversation_assign(conversation, assignee, actor=request.user, expected=expected)
        except AssignmentRefused as refusal:
            messages.error(request, str(refusal))
            return self._back(conversation)
        self._done(request, changed, f"Assigned to {assignee.get_username()}." if assignee else "Unassigned.")
        return self._back(conversation)

    def status_view(self, request, conversation_id):
        """Resolve, mark pending, snooze until a time, or reopen (audited; pushed to Chatwoot)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        conversation = self._changeable(request, conversation_id)
        status = request.POST.get("status", "")
        try:
            snoozing = status == Conversation.Status.SNOOZED
            until = snooze_time(request.POST.get("snoozed_until", "")) if snoozing else None
            changed = conversation_set_status(conversation, status, actor=request.user, snoozed_until=until)
        except StatusRefused as refusal:
            messages.error(request, f"Not changed: {refusal}.")
            return self._back(conversation)
        self._done(request, changed, f"The conversation is {conversation.get_status_display().lower()}.")
        return self._back(conversation)

    def labels_view(self, request, conversation_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        conversation = self._changeable(request, conversation_id)
        def labels(field: str) -> set[int]:
            return {pk for pk in map(as_row_id, request.POST.getlist(field)) if pk is not None}

        checked = labels("labels")
        if "shown" in request.POST:
            # Only what the operator changed on the page: a label someone else put on meanwhile stays.
            shown = labels("shown")
            changed = conversation_change_labels(conversation, add=Label.objects.filter(pk__in=checked - shown),
                                                 remove=Label.objects.filter(pk__in=shown - checked),
                                                 actor=request.user)
        else:
            changed = conversation_set_labels(conversation, Label.objects.filter(pk__in=checked), actor=request.user)
        names = ", ".join(conversation.labels.order_by("name").values_list("name", flat=True)) or "none"
        self._done(request, changed, f"Labels: {names}.")
        return self._back(conversation)
