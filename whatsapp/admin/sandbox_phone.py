"""
The sandbox phone: a page where the operator plays the customer of a sandbox provider. It shows one
number's conversation as that customer's phone shows it (their messages on the right, the business's on
the left with their ticks, images and voice notes, interactive messages with buttons to tap), and sends
what the customer types, attaches or taps through the simulator's signed webhook
(whatsapp.services.providers.provider_simulate_inbound). sandbox_phone.js fetches the screen again every
1.5 s, so replies and receipts appear without a reload; without JavaScript every form still works.

Reached from the provider's page (to start as a new number) and from a sandbox conversation's page (a
panel under the transcript, registered on whatsapp.admin.extensions.conversation_panels). Only staff who
may see conversations and change the provider (which simulating needs) may use it; any provider that is
not a simulator answers 404.
"""

from __future__ import annotations

import secrets

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_POST
from kombu.exceptions import OperationalError as KombuOperationalError

from contacts.phones import phone_parse_e164
from core.access import scoped
from whatsapp.admin.chat import STATUS_MARKS
from whatsapp.admin.extensions import conversation_panels
from whatsapp.admin.forms import SandboxPhoneSendForm, SandboxPhoneStartForm, SandboxPhoneTapForm
from whatsapp.models import Conversation, Media, Message, Provider
from whatsapp.providers import backend_for
from whatsapp.providers.events import MEDIA_TYPES, MessageStatus, MessageType
from whatsapp.sandbox_phone import phone_conversation, phone_number_of, phone_recent_customers, phone_transcript
from whatsapp.services.providers import SimulationRefused, provider_simulate_inbound

# The statuses after which the message is on the customer's phone (its buttons can be tapped).
ON_THE_PHONE = {MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.PLAYED}
# The conversation page's marks, but a clock any font has for a message still on its way (the phone is
# often seen in a bare headless browser, without an emoji font).
PHONE_MARKS = {**STATUS_MARKS, MessageStatus.QUEUED: ("◷", "queued"), MessageStatus.SENDING: ("◷", "sending")}
POLL_MILLISECONDS = 1500


# --- who may use it -----------------------------------------------------------------------------------

def may_use_phone(request, provider: Provider) -> bool:
    """Staff who may see conversations and may simulate on this provider (change it)."""
    user = request.user
    sees_conversations = user.has_perm("whatsapp.view_conversation") or user.has_perm("whatsapp.change_conversation")
    return bool(user.is_active and user.is_staff and sees_conversations and user.has_perm("whatsapp.change_provider"))


def _phone_provider(request, provider_id: int) -> Provider:
    provider = get_object_or_404(scoped(Provider.objects.all(), request.user), pk=provider_id)
    if not may_use_phone(request, provider):
        raise PermissionDenied
    if not backend_for(provider).can_simulate_inbound:
        raise Http404("Only a sandbox provider has a phone to play.")
    return provider


def _number(number: str) -> str:
    """The number in the URL, which must be a possible number in E.164 (as the page's links write it)."""
    try:
        canonical = phone_parse_e164(number)
    except ValueError:
        raise Http404("Not a phone number.") from None
    if canonical != number:
        raise Http404("Give the number in E.164, e.g. +15551230001.")
    return number


def phone_url(provider: Provider, number: str, name: str = "") -> str:
    url = reverse("admin:whatsapp_provider_sandbox_phone", args=[provider.pk, number])
    return f"{url}?{urlencode({'name': name})}" if name else url


# --- what the screen shows ----------------------------------------------------------------------------

def _when(moment) -> str:
    return timezone.localtime(moment).strftime("%H:%M") if moment else ""


def _media_items(request, conversation: Conversation, message: Message) -> list[dict]:
    may_open = request.user.has_perm("whatsapp.view_media") or request.user.has_perm("whatsapp.change_media")
    items = []
    for media in message.media.all():
        kind = (media.mime_type or "").split("/")[0]
        item = {"kind": kind if kind in ("image", "audio", "video") else "file", "pk": media.pk,
                "label": media.filename or media.mime_type or "file", "state": media.state,
                "problem": media.last_error}
        if media.state == Media.State.FETCHED and may_open:
            item["url"] = reverse("admin:whatsapp_conversation_media", args=[conversation.pk, media.pk])
        items.append(item)
    content = message.content if isinstance(message.content, dict) else {}
    link = content.get("url")
    if not items and message.message_type in MEDIA_TYPES and isinstance(link, str) and link.startswith("https://"):
        # Sent by link: the provider fetched it from there; the phone shows the link rather than load it.
        items.append({"kind": "link", "url": link, "label": link})
    return items


def _choices(content: dict) -> tuple[list[dict], list[dict]]:
    buttons = [button for button in content.get("buttons") or [] if isinstance(button, dict)]
    sections = [{"title": section.get("title", ""),
                 "rows": [row for row in section.get("rows") or [] if isinstance(row, dict)]}
                for section in content.get("sections") or [] if isinstance(section, dict)]
    return buttons, sections


def _quote(message: Message) -> dict | None:
    quoted = message.reply_to
    if quoted is None:
        return None
    # As the customer sees it: their own messages are "You".
    who = "You" if quoted.direction == Message.Direction.INBOUND else "Business"
    return {"who": who, "text": quoted.text or quoted.get_message_type_display(), "pk": quoted.pk}


def screen_bubble(request, conversation: Conversation, message: Message) -> dict:
    """One message as the customer's phone shows it."""
    theirs = message.direction == Message.Direction.OUTBOUND  # the business's, on the left
    content = message.content if isinstance(message.content, dict) else {}
    bubble = {"pk": message.pk, "side": "business" if theirs else "customer",
              "provider_message_id": message.provider_message_id or "", "quote": _quote(message),
              "text": message.text, "media": _media_items(request, conversation, message),
              "at": _when(message.created_at if theirs or not message.received_at else message.received_at),
              "type_label": message.get_message_type_display()}
    if message.message_type == MessageType.INTERACTIVE and theirs:
        buttons, sections = _choices(content)
        bubble.update(header=content.get("header", ""), footer=content.get("footer", ""), buttons=buttons,
                      sections=sections, list_label=content.get("button") or "Choose",
                      can_tap=message.status in ON_THE_PHONE and bool(message.provider_message_id))
    if message.message_type == MessageType.INTERACTIVE_REPLY:
        bubble["tapped"] = True
    if message.message_type == MessageType.AUDIO and content.get("voice"):
        bubble["voice"] = True
    if theirs:
        mark, words = PHONE_MARKS.get(message.status, ("", message.status))
        bubble["status"] = {"mark": mark, "words": words, "code": message.status}
    return bubble


def screen_context(request, provider: Provider, number: str) -> dict:
    conversation = phone_conversation(provider, number)
    shown, older_hidden = phone_transcript(conversation)
    return {"provider": provider, "number": number, "conversation": conversation, "older_hidden": older_hidden,
            "bubbles": [screen_bubble(request, conversation, message) for message in shown]}


# --- the pages ----------------------------------------------------------------------------------------

def _page(model_admin, request, template: str, title: str, **context) -> HttpResponse:
    context = {**model_admin.admin_site.each_context(request), "title": title, "opts": model_admin.model._meta,
               **context}
    return render(request, template, context)


def start_view(model_admin, request, provider_id: int) -> HttpResponse:
    """Choose the number to play: a new one (a new customer), or one that wrote before."""
    provider = _phone_provider(request, provider_id)
    form = SandboxPhoneStartForm(request.GET or None, initial={
        "number": f"+1555123{secrets.randbelow(10000):04d}", "name": "Test customer"})
    if form.is_bound and form.is_valid():
        return redirect(phone_url(provider, form.cleaned_data["number"], form.cleaned_data["name"]))
    customers = [{**customer, "url": phone_url(provider, customer["number"])}
                 for customer in phone_recent_customers(provider)]
    return _page(model_admin, request, "admin/whatsapp/sandbox_phone/start.html",
                 f"Sandbox phone of {provider}", provider=provider, form=form, customers=customers)


def phone_view(model_admin, request, provider_id: int, number: str) -> HttpResponse:
    provider = _phone_provider(request, provider_id)
    number = _number(number)
    context = screen_context(request, provider, number)
    conversation = context["conversation"]
    name = conversation.contact.profile_name if conversation else request.GET.get("name", "")[:100]
    send_form = SandboxPhoneSendForm(initial={"name": name})
    urls = {"screen": reverse("admin:whatsapp_provider_sandbox_phone_screen", args=[provider.pk, number]),
            "send": reverse("admin:whatsapp_provider_sandbox_phone_send", args=[provider.pk, number]),
            "tap": reverse("admin:whatsapp_provider_sandbox_phone_tap", args=[provider.pk, number]),
            "start": reverse("admin:whatsapp_provider_sandbox_phone_start", args=[provider.pk])}
    if conversation is not None:
        urls["conversation"] = reverse("admin:whatsapp_conversation_change", args=[conversation.pk])
    return _page(model_admin, request, "admin/whatsapp/sandbox_phone/phone.html",
                 f"Sandbox phone: {name or number}",
                 send_form=send_form, name=name, urls=urls, poll_ms=POLL_MILLISECONDS, **context)


def screen_view(model_admin, request, provider_id: int, number: str) -> HttpResponse:
    """The phone's screen alone, which the page fetches again and again."""
    provider = _phone_provider(request, provider_id)
    html = render_to_string("admin/whatsapp/sandbox_phone/_screen.html",
                            screen_context(request, provider, _number(number)), request=request)
    return HttpResponse(html)  # never cached: admin_view says so


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _answer(request, provider: Provider, number: str, *, sent: str = "", problem: str = "") -> HttpResponse:
    """JSON for the page's script; otherwise back to the phone with a message (no JavaScript)."""
    if _wants_json(request):
        return JsonResponse({"ok": True, "id": sent} if sent else {"ok": False, "error": problem},
                            status=202 if sent else 400)
    if sent:
        messages.success(request, "Sent from the phone; it appears once the webhook is processed.")
    else:
        messages.error(request, problem)
    return redirect(phone_url(provider, number))


def _simulate(request, provider: Provider, number: str, **message) -> HttpResponse:
    try:
        sent = provider_simulate_inbound(provider=provider, from_phone=number, **message)
    except SimulationRefused as refusal:
        return _answer(request, provider, number, problem=str(refusal))
    except KombuOperationalError as exc:
        return _answer(request, provider, number, problem=f"Not sent: the task queue cannot be reached ({exc}).")
    return _answer(request, provider, number, sent=sent)


def _form_problem(form) -> str:
    return " ".join(str(error) for errors in form.errors.values() for error in errors)


def send_view(model_admin, request, provider_id: int, number: str) -> HttpResponse:
    """The customer sends a text, a voice note or an image."""
    provider = _phone_provider(request, provider_id)
    number = _number(number)
    form = SandboxPhoneSendForm(request.POST, request.FILES)
    if not form.is_valid():
        return _answer(request, provider, number, problem=_form_problem(form))
    data = form.cleaned_data
    return _simulate(request, provider, number, name=data["name"], text=data["text"], file=data["file"])


def tap_view(model_admin, request, provider_id: int, number: str) -> HttpResponse:
    """The customer taps a reply button or a list row of one of the business's interactive messages."""
    provider = _phone_provider(request, provider_id)
    number = _number(number)
    form = SandboxPhoneTapForm(request.POST)
    if not form.is_valid():
        return _answer(request, provider, number, problem=_form_problem(form))
    message_id, choice_id = form.cleaned_data["choice"]
    answered = Message.objects.filter(pk=message_id, provider=provider).first()
    if answered is None:
        return _answer(request, provider, number, problem="That message is not one of this provider's.")
    conversation = phone_conversation(provider, number)
    name = conversation.contact.profile_name if conversation else ""
    return _simulate(request, provider, number, name=name, answered=answered, choice_id=choice_id)


def sandbox_phone_urls(model_admin) -> list:
    """The phone's pages, under the provider's admin URLs."""

    def route(suffix: str, view, name: str, post_only: bool = False):
        def bound(request, *args, **kwargs):
            return view(model_admin, request, *args, **kwargs)

        # Sending changes state: POST only (and CSRF-checked by admin_view).
        bound = require_POST(bound) if post_only else bound
        return path(f"<int:provider_id>/sandbox-phone/{suffix}", model_admin.admin_site.admin_view(bound),
                    name=f"whatsapp_provider_sandbox_phone{name}")

    return [
        route("", start_view, "_start"),
        route("<str:number>/", phone_view, ""),
        route("<str:number>/screen/", screen_view, "_screen"),
        route("<str:number>/send/", send_view, "_send", post_only=True),
        route("<str:number>/tap/", tap_view, "_tap", post_only=True),
    ]


# --- the way in from a conversation's page -------------------------------------------------------------

def sandbox_phone_panel(request, conversation: Conversation) -> str:
    """A sandbox conversation's page: open the phone of its customer (nothing for other providers)."""
    provider = conversation.provider
    if not backend_for(provider).can_simulate_inbound or not may_use_phone(request, provider):
        return ""
    number = phone_number_of(conversation)
    if not number:
        return ""
    return render_to_string("admin/whatsapp/sandbox_phone/_conversation_panel.html",
                            {"number": number, "url": phone_url(provider, number)}, request=request)


conversation_panels.register(sandbox_phone_panel)
