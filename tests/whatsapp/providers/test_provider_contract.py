"""
The contract every provider's webhook passes (the Zulip shape): bad signature, missing secret,
replayed request, malformed body, oversized body, wrong content type, duplicate delivery -> one
message. Each kind says how it signs; the assertions are the same for all.

The kinds come from the provider registry: a newly registered kind is tested here at once, and fails
every test, saying what to add, until it has a Contract below and its fixtures in
tests/whatsapp/providers/fixtures/<kind>/.
"""

import json
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest

from tests.conftest import FIXTURES, REPO_ROOT, event_id, fixture_bytes, json_body
from tests.signing import (
    chatwoot_headers,
    make_chatwoot,
    make_meta,
    make_twilio,
    meta_headers,
    twilio_headers,
    webhook_path,
)
from whatsapp import sandbox_phone
from whatsapp.models import Message, WebhookEvent
from whatsapp.providers import DuplicateProviderKind, register, registered_kinds
from whatsapp.providers.sandbox import SandboxBackend
from whatsapp.services.providers import provider_create
from whatsapp.services.webhooks import webhook_event_process

pytestmark = pytest.mark.django_db


class Contract:
    """How to make a provider of one kind and post it a webhook: one inbound text, signed as it signs."""

    kind = ""
    content_type = "application/json"
    secret_name = ""
    #: The fixture in tests/whatsapp/providers/fixtures/<kind>/ holding a webhook with one inbound text message.
    inbound_text_fixture = ""

    def make(self):
        raise NotImplementedError

    def body(self) -> bytes:
        return fixture_bytes(self.kind, self.inbound_text_fixture)

    def sign(self, provider, path: str, body: bytes) -> dict[str, str]:
        raise NotImplementedError

    def malformed(self) -> bytes:
        return b'{"not json'

    def tamper(self, body: bytes) -> bytes:
        return body.rstrip() + b" \n"  # still valid JSON, no longer what was signed


class Meta(Contract):
    kind = "meta"
    secret_name = "app_secret"
    inbound_text_fixture = "text.json"

    def make(self):
        return make_meta()

    def sign(self, provider, path, body):
        return meta_headers(body)


class Twilio(Contract):
    kind = "twilio"
    content_type = "application/x-www-form-urlencoded"
    secret_name = "auth_token"
    inbound_text_fixture = "inbound_text.json"

    def make(self):
        return make_twilio()

    def body(self):
        # The fixture holds the form's fields as JSON; Twilio posts them form-encoded.
        return urlencode(json.loads(super().body())).encode()

    def sign(self, provider, path, body):
        return {**twilio_headers(path, dict(parse_qsl(body.decode()))),
                "I-Twilio-Idempotency-Token": "f1b5e2c4-0000-4000-8000-000000000001"}

    def malformed(self):
        return b"Body=a+form+that+is+not+a+Twilio+message"

    def tamper(self, body):
        return body + b"&Body=changed"


class Chatwoot(Contract):
    kind = "chatwoot"
    secret_name = "webhook_secret"
    inbound_text_fixture = "message_created_text.json"

    def make(self):
        return make_chatwoot()

    def sign(self, provider, path, body):
        return chatwoot_headers(body, delivery="0c1f7a52-2d5e-4f57-9a1e-5b0d9d1e0001")


class Sandbox(Contract):
    kind = "sandbox"
    secret_name = "webhook_secret"
    inbound_text_fixture = "inbound_text.json"

    def make(self):
        return provider_create(kind="sandbox", name="Sandbox contract", options={})

    def sign(self, provider, path, body):
        return {"X-Sandbox-Signature": sandbox_phone.signed_headers(provider, body)["X-Sandbox-Signature"]}


CONTRACTS = {contract.kind: contract for contract in (Meta(), Twilio(), Chatwoot(), Sandbox())}


def contract_for(kind: str) -> Contract:
    contract = CONTRACTS.get(kind)
    if contract is None:
        pytest.fail(f"provider kind {kind!r} is registered but has no webhook contract: add a Contract subclass "
                    f"for it to {Path(__file__).relative_to(REPO_ROOT)} (how to make one, sign a body, tamper with it) "
                    f"and its fixtures to {(FIXTURES / kind).relative_to(REPO_ROOT)}/")
    fixture = FIXTURES / kind / contract.inbound_text_fixture
    if not contract.inbound_text_fixture or not fixture.is_file():
        pytest.fail(f"provider kind {kind!r} has no inbound text fixture: add {fixture.relative_to(REPO_ROOT)} "
                    "(a webhook body carrying one inbound text message) and name it in its Contract")
    return contract


@pytest.fixture(params=registered_kinds())
def kind(request):
    return contract_for(request.param)


def test_every_contract_is_of_a_registered_kind():
    assert set(CONTRACTS) <= set(registered_kinds()), "a Contract for a kind the registry does not know"


def test_registry_knows_every_kind_and_refuses_a_duplicate():
    assert registered_kinds() == ["chatwoot", "meta", "sandbox", "twilio"]

    class AnotherSandbox(SandboxBackend):
        pass

    with pytest.raises(DuplicateProviderKind, match="'sandbox' is already registered"):
        register(AnotherSandbox)


def post(client, kind, provider, body, headers, content_type=None):
    return client.post(webhook_path(provider), data=body, content_type=content_type or kind.content_type,
                       headers=headers)


def test_signed_request_is_stored_and_becomes_one_message(client, kind):
    provider = kind.make()
    body = kind.body()
    response = post(client, kind, provider, body, kind.sign(provider, webhook_path(provider), body))
    assert response.status_code == 200, response.content
    event = webhook_event_process(event_id(response))
    assert event.status == "processed" and bytes(event.body) == body
    assert Message.objects.filter(direction="inbound").count() == 1


def test_unsigned_gets_401_and_a_rejected_row(client, kind):
    provider = kind.make()
    response = post(client, kind, provider, kind.body(), {})
    assert response.status_code == 401 and json_body(response)["error"]
    assert WebhookEvent.objects.get().status == "rejected"


def test_wrong_signature_gets_403(client, kind):
    provider = kind.make()
    body = kind.body()
    headers = kind.sign(provider, webhook_path(provider), body)
    tampered = kind.tamper(body)
    response = post(client, kind, provider, tampered, headers)
    assert response.status_code == 403
    rejected = WebhookEvent.objects.get()
    assert (rejected.status, rejected.signature_valid, rejected.http_status) == ("rejected", False, 403)
    assert not Message.objects.exists()


def test_missing_secret_refuses_everything(client, kind):
    provider = kind.make()
    body = kind.body()
    headers = kind.sign(provider, webhook_path(provider), body)
    provider.credentials = {key: value for key, value in provider.credentials.items() if key != kind.secret_name}
    provider.save()
    response = post(client, kind, provider, body, headers)
    assert response.status_code == 403 and "no" in json_body(response)["error"]


def test_replayed_request_is_harmless(client, kind):
    provider = kind.make()
    body = kind.body()
    headers = kind.sign(provider, webhook_path(provider), body)
    for _ in range(3):
        response = post(client, kind, provider, body, headers)
        assert response.status_code == 200
        webhook_event_process(event_id(response))
    assert Message.objects.count() == 1


def test_malformed_body_gets_400_and_is_recorded(client, kind):
    provider = kind.make()
    body = kind.malformed()
    response = post(client, kind, provider, body, kind.sign(provider, webhook_path(provider), body))
    assert response.status_code == 400 and json_body(response)["error"]
    assert WebhookEvent.objects.get().http_status == 400


def test_oversized_body_gets_413(client, kind, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 100
    provider = kind.make()
    body = kind.body()
    assert len(body) > 100
    response = post(client, kind, provider, body, kind.sign(provider, webhook_path(provider), body))
    assert response.status_code == 413
    event = WebhookEvent.objects.get()
    assert (event.http_status, event.body_size) == (413, len(body))


def test_wrong_content_type_gets_415(client, kind):
    provider = kind.make()
    body = kind.body()
    response = post(client, kind, provider, body, kind.sign(provider, webhook_path(provider), body),
                    content_type="text/plain")
    assert response.status_code == 415


def test_unknown_or_inactive_provider_gets_404(client, kind):
    provider = kind.make()
    provider.is_active = False
    provider.save()
    body = kind.body()
    response = post(client, kind, provider, body, kind.sign(provider, webhook_path(provider), body))
    assert response.status_code == 404


def test_chatwoot_replay_outside_the_time_window_is_refused(client):
    provider = make_chatwoot()
    body = fixture_bytes("chatwoot", "message_created_text.json")
    stale = chatwoot_headers(body, timestamp=int(time.time()) - 3600)
    response = client.post(webhook_path(provider), data=body, content_type="application/json", headers=stale)
    assert response.status_code == 403 and "window" in json_body(response)["error"]
