"""
The assistant panel of the conversation page (registered on whatsapp.admin.extensions.conversation_panels),
for a conversation whose contact is mapped to a user: whether the assistant answers there or a person took
over (until when, and who), with the button that hands the conversation back; the question it is waiting
on, if any; and its last turns, with a link to all of them. Nothing for an unmapped contact.
"""

from __future__ import annotations

from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from assistant.admin.common import when
from assistant.admin.turns import RESUME_PERMISSION, turns_of_conversation_url
from assistant.models import ConversationState, Turn
from assistant.selectors import mapped_user, policy_for, visible_to
from assistant.services.clarify import pending_active
from assistant.services.handoff import is_silenced
from whatsapp.admin.extensions import PANEL_FORM_ID
from whatsapp.models import Conversation

TURNS_SHOWN = 5
TURN_PERMISSIONS = ("assistant.view_turn", "assistant.change_turn")
POLICY_PERMISSIONS = ("assistant.view_assistantpolicy", "assistant.change_assistantpolicy")


def clock(moment, now) -> str:
    """HH:MM:SS on the same day, the full date and time otherwise (a handoff can last days)."""
    local, today = timezone.localtime(moment), timezone.localtime(now).date()
    return local.strftime("%H:%M:%S") if local.date() == today else when(moment)


def _pending(state: ConversationState | None, now) -> dict | None:
    if state is None or not pending_active(state, now):
        return None
    pending = state.pending
    choices = [str(choice.get("title", choice.get("id", ""))) if isinstance(choice, dict) else str(choice)
               for choice in pending.get("choices") or []]
    return {"field": str(pending.get("field") or ""), "request": pending.get("request"), "choices": choices,
            "kind": str(pending.get("kind") or ""), "expires": clock(state.pending_expires_at, now)}


def conversation_assistant_panel(request, conversation: Conversation) -> SafeString | str:
    """The hook's receiver: the panel, or '' when the contact is mapped to no (active) user."""
    owner = mapped_user(conversation)
    if owner is None:
        return ""
    now = timezone.now()
    user = request.user
    state = ConversationState.objects.filter(conversation=conversation).first()
    silenced = state is not None and is_silenced(state, now)
    policy = policy_for(conversation.provider)
    may_see_turns = any(user.has_perm(permission) for permission in TURN_PERMISSIONS)
    turns = []
    if may_see_turns:
        turns = list(visible_to(user, Turn.objects.filter(message__conversation=conversation))
                     .order_by("-created_at", "-pk")[:TURNS_SHOWN])
    context = {
        "conversation": conversation, "owner": owner, "enabled": policy.enabled,
        "policy_url": reverse("admin:assistant_assistantpolicy_change", args=[policy.pk])
        if policy.pk and any(user.has_perm(permission) for permission in POLICY_PERMISSIONS) else "",
        "silenced": silenced,
        "silenced_until": clock(state.silenced_until, now) if silenced else "",
        "silenced_by": state.silenced_by if silenced else "",
        "may_resume": silenced and user.has_perm(RESUME_PERMISSION),
        "resume_url": reverse("admin:assistant_conversation_resume", args=[conversation.pk]),
        "panel_form_id": PANEL_FORM_ID,
        "pending": _pending(state, now),
        "may_see_turns": may_see_turns,
        "turns": [{"turn": turn, "created": when(turn.created_at),
                   "url": reverse("admin:assistant_turn_change", args=[turn.pk])} for turn in turns],
        "turns_url": turns_of_conversation_url(conversation.pk),
    }
    return render_to_string("admin/assistant/conversation_panel.html", context, request=request)
