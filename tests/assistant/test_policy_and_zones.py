"""The notification policy's rules, one by one, and how a user's time zone is found."""

import pytest

from assistant.models import AssistantPolicy, ConversationState
from assistant.policy import Action, Outcome, decide
from assistant.services.clarify import answer_of
from assistant.services.outbox import Choice, numbered_question
from assistant.services.timezones import phone_zone, user_zone
from contacts.models import Contact
from whatsapp.models import Message

MINIMAL = AssistantPolicy(preset="minimal")
CONVERSATIONAL = AssistantPolicy(preset="conversational")


@pytest.mark.parametrize(("outcome", "minimal", "conversational"), [
    (Outcome.NOTE_SAVED, Action.SILENT, Action.SILENT),
    (Outcome.TASK_CREATED, Action.SILENT, Action.CONFIRM),
    (Outcome.TASK_UPDATED, Action.SILENT, Action.CONFIRM),
    (Outcome.TASK_COMPLETED, Action.SILENT, Action.CONFIRM),
    (Outcome.PROJECT_CREATED, Action.SILENT, Action.CONFIRM),
    (Outcome.GOAL_CREATED, Action.SILENT, Action.CONFIRM),
    (Outcome.REMINDER_SET, Action.SILENT, Action.CONFIRM),
    (Outcome.PREFERENCES_CHANGED, Action.CONFIRM, Action.CONFIRM),
    (Outcome.CONTENT_REQUESTED, Action.SILENT, Action.SILENT),
    (Outcome.TASKS_LISTED, Action.ANSWER, Action.ANSWER),
    (Outcome.DUE_REPORTED, Action.ANSWER, Action.ANSWER),
    (Outcome.NOTES_FOUND, Action.ANSWER, Action.ANSWER),
    (Outcome.ANSWERED, Action.ANSWER, Action.ANSWER),
    (Outcome.CONTENT_CLARIFY, Action.ASK, Action.ASK),
    (Outcome.FAILED, Action.NOTICE, Action.NOTICE),
    (Outcome.UNAVAILABLE, Action.NOTICE, Action.NOTICE),
    (Outcome.NOTHING, Action.SILENT, Action.SILENT),
])
def test_each_outcome_has_its_rule_in_each_preset(outcome, minimal, conversational):
    assert decide(outcome, MINIMAL).action == minimal
    assert decide(outcome, CONVERSATIONAL).action == conversational


def test_the_ready_notice_goes_only_to_users_who_opted_in():
    for policy in (MINIMAL, CONVERSATIONAL):
        assert decide(Outcome.CONTENT_READY, policy, notify_on_ready=False).action == Action.SILENT
        assert decide(Outcome.CONTENT_READY, policy, notify_on_ready=True).action == Action.CONFIRM
    muted = AssistantPolicy(overrides={"content_ready": "silent"})
    assert decide(Outcome.CONTENT_READY, muted, notify_on_ready=True).action == Action.SILENT


def test_a_note_reaction_and_overrides_per_outcome():
    reacting = AssistantPolicy(preset="minimal", note_reaction="👍")
    assert (decide(Outcome.NOTE_SAVED, reacting).action, decide(Outcome.NOTE_SAVED, reacting).emoji) == \
        (Action.REACT, "👍")
    custom = AssistantPolicy(preset="minimal", overrides={"task_created": "confirm", "task_completed": "react",
                                                          "tasks_listed": "silent", "note_saved": "bogus"})
    assert decide(Outcome.TASK_CREATED, custom).action == Action.CONFIRM
    assert (decide(Outcome.TASK_COMPLETED, custom).action, decide(Outcome.TASK_COMPLETED, custom).emoji) == \
        (Action.REACT, "✅")
    # A question is always answered, and an unknown override value changes nothing.
    assert decide(Outcome.TASKS_LISTED, custom).action == Action.ANSWER
    assert decide(Outcome.NOTE_SAVED, custom).action == Action.SILENT


def test_a_numbered_question_is_answered_by_its_number():
    choices = [Choice("cr7:tone:professional", "Professional"), Choice("cr7:tone:friendly", "Friendly")]
    assert numbered_question("Which tone?", choices) == (
        "Which tone?\n\n1. Professional\n2. Friendly\n\nReply with the number.")
    state = ConversationState(pending={"kind": "content_field", "request": 7, "field": "tone",
                                       "choices": [{"id": c.id, "title": c.title} for c in choices]})
    assert answer_of(state, Message(message_type="text", text="2")) == "friendly"
    assert answer_of(state, Message(message_type="text", text=" friendly ")) == "friendly"
    assert answer_of(state, Message(message_type="text", text="3")) is None
    assert answer_of(state, Message(message_type="interactive_reply",
                                    content={"id": "cr7:tone:professional"})) == "professional"
    # A tap on an older question (another request) is no answer to this one.
    assert answer_of(state, Message(message_type="interactive_reply", content={"id": "cr6:tone:friendly"})) is None


@pytest.mark.django_db
def test_a_users_zone_from_their_profile_their_contact_or_their_number():
    assert phone_zone("+81312345678").key == "Asia/Tokyo"
    # A mobile number names a country, not a place: its main zone, not the first in alphabetical order.
    assert phone_zone("+34612345678").key == "Europe/Madrid"  # not Atlantic/Canary
    assert phone_zone("+351912345678").key == "Europe/Lisbon"  # not Atlantic/Azores
    assert phone_zone("+13105551234").key == "America/Los_Angeles"  # an area code names its zone
    assert phone_zone("+5511912345678").key == "America/Sao_Paulo"
    assert phone_zone("not a number") is None
    contact = Contact.objects.create(profile_name="Ana")
    contact.identities.create(kind="phone", value="+5511912345678")
    assert user_zone(contact=contact).key == "America/Sao_Paulo"
    contact.time_zone = "Europe/Lisbon"
    assert user_zone(contact=contact).key == "Europe/Lisbon"
    assert user_zone(profile_zone="Asia/Tokyo", contact=contact).key == "Asia/Tokyo"
    assert user_zone(profile_zone="Not/AZone").key == "UTC"
