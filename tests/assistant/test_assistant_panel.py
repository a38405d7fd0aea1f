"""
The assistant panel of the conversation page: active, off, or paused by a person's reply (until when, by
whom) with "Resume assistant", which hands the conversation back (state cleared, audited); the question it
waits on; its last turns with a link to all of them; nothing for a contact mapped to no user.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from assistant.models import AssistantPolicy, ConversationState
from contacts.services.identities import contact_resolve
from core.models import AuditLog
from tests.assistant.test_assistant_admin import logged_in, people_with_items, staff_user
from tests.conftest import page
from whatsapp.providers.events import Identity, IdentityKind
from whatsapp.services.inbound import conversation_get_or_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(db):
    """Alice and Bob with their items, a superuser and an operator who sees everyone's items."""
    return people_with_items()

CONVERSATION_PERMISSIONS = ("whatsapp.view_conversation", "whatsapp.change_conversation")


def conversation_page(client, conversation) -> str:
    response = client.get(reverse("admin:whatsapp_conversation_change", args=[conversation.pk]))
    assert response.status_code == 200
    return page(response)


def paused(conversation, *, minutes: int = 30, by: str = "carol") -> ConversationState:
    return ConversationState.objects.create(conversation=conversation, silenced_by=by,
                                            silenced_until=timezone.now() + timedelta(minutes=minutes))


def test_active_assistant_with_its_last_turns(people):
    conversation = people.alice.conversation
    text = conversation_page(logged_in(people.root), conversation)
    assert 'id="assistant-panel"' in text
    assert "Assistant: active" in text and "Resume assistant" not in text
    assert "task_created" in text and "due_reported" in text
    assert f'{reverse("admin:assistant_turn_changelist")}?conversation={conversation.pk}' in text
    assert "note_saved" not in text  # Bob's turn, on Bob's conversation


def test_paused_assistant_and_resume(people):
    conversation = people.alice.conversation
    state = paused(conversation)
    root = logged_in(people.root)
    text = conversation_page(root, conversation)
    until = timezone.localtime(state.silenced_until)
    shown = until.strftime("%H:%M:%S") if until.date() == timezone.localdate() else \
        until.strftime("%Y-%m-%d %H:%M:%S")
    assert f"Assistant paused until {shown}</strong> (a person replied: carol)" in text
    resume_url = reverse("admin:assistant_conversation_resume", args=[conversation.pk])
    assert f'formaction="{resume_url}"' in text and "Resume assistant" in text
    assert 'id="conversation-panel-form"' in text  # the empty form the button submits

    assert root.get(resume_url).status_code == 405  # a change: POST only
    response = root.post(resume_url)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:whatsapp_conversation_change",
                                           args=[conversation.pk]) + "#assistant-panel"
    state.refresh_from_db()
    assert state.silenced_until is None and state.silenced_by == ""
    entry = AuditLog.objects.get(action="assistant_resumed")
    assert (entry.actor, entry.object_type, entry.object_id) == (people.root, "whatsapp.Conversation",
                                                                 str(conversation.pk))
    assert "Assistant: active" in conversation_page(root, conversation)


def test_resume_needs_the_permission_to_change_the_conversation(people):
    conversation = people.alice.conversation
    state = paused(conversation)
    viewer = staff_user("viewer", "whatsapp.view_conversation")
    client = logged_in(viewer)
    text = conversation_page(client, conversation)
    assert "Assistant paused until" in text and "Resume assistant" not in text
    assert client.post(reverse("admin:assistant_conversation_resume", args=[conversation.pk])).status_code == 403
    state.refresh_from_db()
    assert state.silenced_until is not None
    assert not AuditLog.objects.filter(action="assistant_resumed").exists()


def test_resuming_a_conversation_that_is_not_paused_changes_nothing(people):
    root = logged_in(people.root)
    response = root.post(reverse("admin:assistant_conversation_resume", args=[people.alice.conversation.pk]),
                         follow=True)
    assert "was not paused" in page(response)
    assert not AuditLog.objects.filter(action="assistant_resumed").exists()


def test_a_pause_that_ended_shows_active(people):
    paused(people.alice.conversation, minutes=-5)
    assert "Assistant: active" in conversation_page(logged_in(people.root), people.alice.conversation)


def test_pending_clarification(people):
    request = people.bob.rows["contentrequest"][0]
    ConversationState.objects.create(
        conversation=people.bob.conversation, pending_expires_at=timezone.now() + timedelta(minutes=10),
        pending={"kind": "content_field", "request": request.pk, "field": "platform",
                 "choices": [{"id": f"cr{request.pk}:platform:linkedin", "title": "LinkedIn"},
                             {"id": f"cr{request.pk}:platform:x", "title": "X (Twitter)"}]})
    text = conversation_page(logged_in(people.root), people.bob.conversation)
    assert f"Waiting for an answer: the platform of content request #{request.pk} (LinkedIn, X (Twitter))" in text


def test_assistant_off_on_the_provider(people):
    AssistantPolicy.objects.create(provider=people.provider, enabled=False)
    text = conversation_page(logged_in(people.root), people.alice.conversation)
    assert "Assistant: off" in text and "Assistant: active" not in text


def test_turns_in_the_panel_follow_who_may_see_them(people):
    """An operator who may change conversations but not see everyone's items gets the state and the
    button, not another user's turns."""
    conversation = people.alice.conversation
    paused(conversation)
    operator = staff_user("operator", *CONVERSATION_PERMISSIONS, "assistant.view_turn")
    text = conversation_page(logged_in(operator), conversation)
    assert "Resume assistant" in text and "task_created" not in text
    ops_with_conversations = staff_user("ops2", *CONVERSATION_PERMISSIONS, "assistant.view_turn",
                                        "assistant.see_everyones_items")
    assert "task_created" in conversation_page(logged_in(ops_with_conversations), conversation)


def test_nothing_for_an_unmapped_contact(people):
    contact = contact_resolve(provider=people.provider, identities=[Identity(IdentityKind.PHONE, "+34600000009")])
    conversation = conversation_get_or_create(provider=people.provider, contact=contact)
    text = conversation_page(logged_in(people.root), conversation)
    assert 'id="assistant-panel"' not in text and "Assistant:" not in text
