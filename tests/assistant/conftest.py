"""The assistant tests' shared parts: the fake OpenAI (as for the AI tests), a user mapped to a sandbox
contact, and a phone that talks to the platform through the sandbox's signed webhook."""

import json

import pytest

from assistant.models import AssistantPolicy, AssistantProfile, Turn
from assistant.services import engine
from contacts.services.identities import contact_resolve
from contacts.services.mapping import contact_map_to_user
from tests.ai.conftest import fake_openai, openai_server, read_fresh  # noqa: F401  (shared fixtures)
from whatsapp.models import Message
from whatsapp.providers.events import Identity, IdentityKind, MessageType
from whatsapp.providers.sandbox import inbound_body
from whatsapp.services.webhooks import webhook_event_process

USER_PHONE = "+34612345678"


class Phone:
    """The mapped user's phone: says things through the sandbox webhook (processed at once, as the inbox
    worker would) and lets the test run the assistant's turn."""

    def __init__(self, post_sandbox, provider, contact, user):
        self.post, self.provider, self.contact, self.user = post_sandbox, provider, contact, user
        self.count = 0

    def say(self, text: str, *, reply_to: str = "") -> Message:
        self.count += 1
        message_id = f"sbx-test-{self.contact.pk}-{self.count}"
        body = json.loads(inbound_body(from_phone=USER_PHONE, text=text, name="Ana", message_id=message_id))
        if reply_to:
            body["events"][0]["reply_to"] = reply_to
        response = self.post(self.provider, json.dumps(body).encode())
        assert response.status_code == 200, response.content
        webhook_event_process(response.json()["event"])
        return Message.objects.get(provider=self.provider, provider_message_id=message_id)

    def turn(self, text: str) -> Turn:
        """Say it and run the assistant on it, as the AI worker does."""
        message = self.say(text)
        engine.turn_run(message.pk)
        return Turn.objects.get(message=message)

    def replies(self) -> list[Message]:
        return list(Message.objects.filter(conversation__contact=self.contact, direction=Message.Direction.OUTBOUND)
                    .order_by("pk"))

    def texts(self) -> list[str]:
        return [message.text for message in self.replies() if message.message_type == MessageType.TEXT]


@pytest.fixture
def assistant_user(django_user_model):
    user = django_user_model.objects.create_user("ana", password="secret-pass-123", first_name="Ana")
    AssistantProfile.objects.create(user=user, time_zone="Europe/Madrid")
    return user


@pytest.fixture
def phone(sandbox_provider, assistant_user, post_sandbox, request):
    request.getfixturevalue("fake_openai")  # the assistant acts only when AI is on
    contact = contact_resolve(provider=sandbox_provider, identities=[Identity(IdentityKind.PHONE, USER_PHONE)])
    contact_map_to_user(contact=contact, user=assistant_user, actor=None)
    return Phone(post_sandbox, sandbox_provider, contact, assistant_user)


@pytest.fixture
def conversational(sandbox_provider):
    return AssistantPolicy.objects.create(provider=sandbox_provider, preset="conversational")
