"""
The send pipeline in one process, against a local server speaking Meta's Graph API: the rules checked
before any call, idempotency, retries with backoff, dead letters, permanent failures, the circuit
breaker, a paused provider, and what the API shows; then the same pipeline through Twilio's SDK and
Chatwoot's REST API. (What each provider module puts on the wire is in tests/whatsapp/providers/test_send_wire.py;
flows that cross a real Celery worker are in test_send_workers.py.)
"""

import json
import uuid
from urllib.parse import parse_qs

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from contacts.models import Contact
from templates_app.models import MessageTemplate
from tests.conftest import customer, json_body, sent_bodies
from tests.fakes import FakeServer, Reply, meta_accepted, meta_error, twilio_content_created, twilio_message_created
from tests.signing import META_PHONE_NUMBER_ID, TWILIO_ACCOUNT_SID, make_chatwoot, make_twilio
from whatsapp.models import CircuitState, Conversation, Message, Provider, SendAttempt
from whatsapp.providers import sandbox
from whatsapp.providers.events import MessageStatus, TemplateStatus
from whatsapp.services.delivery import message_deliver
from whatsapp.services.outbound import (
    SendRequest,
    message_retry,
    message_send,
    message_send_text,
    messages_requeue_due,
)
from whatsapp.services.providers import provider_set_paused, provider_webhook_url
from whatsapp.services.send_batches import provider_send_due
from whatsapp.services.send_rules import SendRefused
from whatsapp.services.webhooks import webhook_event_process

pytestmark = pytest.mark.django_db

def approved_template(provider: Provider, name="order_update", body="Hi {{1}}, order {{2}} ships today.") -> \
        MessageTemplate:
    return MessageTemplate.objects.create(provider=provider, name=name, language="en_US",
                                          status=TemplateStatus.APPROVED,
                                          components=[{"type": "BODY", "text": body}])


# --- rules -----------------------------------------------------------------------------------------

def test_text_in_window_is_sent_with_its_reference(meta, fake_meta):
    message = message_send_text(provider=meta, contact=customer(meta), text="Your order ships today.")
    assert message.status == "queued" and message.lane == "reply"
    message = message_deliver(message.pk)
    assert message.status == "sent" and message.provider_message_id.startswith("wamid.test-")
    (body,) = sent_bodies(fake_meta)
    assert body == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+16505551234",
                    "type": "text", "text": {"body": "Your order ships today.", "preview_url": False},
                    "biz_opaque_callback_data": str(message.pk)}
    assert fake_meta.hits(fake_meta.send_path)[0].headers["authorization"] == "Bearer meta-access-token"
    assert list(message.send_attempts.values_list("outcome", flat=True)) == ["sent"]


def test_free_form_outside_the_window_is_refused_with_the_templates_to_use(meta, fake_meta):
    template = approved_template(meta)
    contact = customer(meta, in_window=False)
    with pytest.raises(SendRefused) as refused:
        message_send_text(provider=meta, contact=contact, text="Hello again")
    assert refused.value.code == "outside_window"
    assert "24 hours" in refused.value.reason
    assert refused.value.details["approved_templates"] == [{"id": template.pk, "name": "order_update",
                                                            "language": "en_US"}]
    assert not Message.objects.filter(direction="outbound").exists() and fake_meta.requests == []


def test_opted_out_contact_is_refused(meta, fake_meta):
    contact = customer(meta)
    Contact.objects.filter(pk=contact.pk).update(consent=Contact.Consent.OPTED_OUT, consent_source="keyword")
    contact.refresh_from_db()
    with pytest.raises(SendRefused) as refused:
        message_send_text(provider=meta, contact=contact, text="Promo")
    assert refused.value.code == "opted_out" and "opted out" in refused.value.reason


def test_opt_out_after_queueing_fails_the_message_without_calling_the_provider(meta, fake_meta):
    contact = customer(meta)
    message = message_send_text(provider=meta, contact=contact, text="Soon")
    Contact.objects.filter(pk=contact.pk).update(consent=Contact.Consent.OPTED_OUT)
    message = message_deliver(message.pk)
    assert (message.status, message.error_code) == ("failed", "opted_out")
    assert fake_meta.requests == []


# --- the API ---------------------------------------------------------------------------------------

def test_api_template_send_checks_variables_and_sends_the_exact_body(api_client, meta, fake_meta):
    template = approved_template(meta)
    customer(meta, in_window=False)
    payload = {"provider": meta.pk, "to": "+16505551234", "type": "template", "template": template.pk}
    missing = api_client.post("/api/v1/messages/", {**payload, "variables": {"body": ["Ana"]}}, format="json")
    assert missing.status_code == 422
    assert missing.json()["code"] == "template_variables" and missing.json()["missing"] == ["body.2"]
    extra = api_client.post("/api/v1/messages/", {**payload, "variables": {"body": ["Ana", "1042", "x"]}},
                            format="json")
    assert extra.status_code == 422 and extra.json()["extra"] == ["body.3"]

    response = api_client.post("/api/v1/messages/", {**payload, "variables": {"body": ["Ana", "#1042"]}},
                               format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["text"] == "Hi Ana, order #1042 ships today." and created["lane"] == "bulk"
    message_deliver(created["id"])
    (body,) = sent_bodies(fake_meta)
    assert body["type"] == "template" and body["template"] == {
        "name": "order_update", "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"},
                                                       {"type": "text", "text": "#1042"}]}]}


def test_api_refuses_templates_that_are_not_approved(api_client, meta, fake_meta):
    template = approved_template(meta)
    MessageTemplate.objects.filter(pk=template.pk).update(status=TemplateStatus.PAUSED)
    response = api_client.post("/api/v1/messages/", {"provider": meta.pk, "to": "+16505551234", "type": "template",
                                                     "template": template.pk, "variables": {"body": ["a", "b"]}},
                               format="json")
    assert response.status_code == 422 and response.json()["code"] == "template_not_approved"


def test_api_refuses_an_invalid_recipient_and_bad_content(api_client, meta, fake_meta):
    bad_number = api_client.post("/api/v1/messages/", {"provider": meta.pk, "to": "12", "text": "hi"}, format="json")
    assert bad_number.status_code == 422 and bad_number.json()["code"] == "invalid_recipient"
    customer(meta)
    four_buttons = {"body": "Pick", "buttons": [{"id": f"b{i}", "title": f"B{i}"} for i in range(4)]}
    response = api_client.post("/api/v1/messages/", {"provider": meta.pk, "to": "+16505551234", "type": "interactive",
                                                     "interactive": four_buttons}, format="json")
    assert response.status_code == 422
    assert response.json() == {"code": "invalid_content", "detail": "reply buttons: between 1 and 3"}
    no_recipient = api_client.post("/api/v1/messages/", {"provider": meta.pk, "text": "hi"}, format="json")
    assert no_recipient.status_code == 400 and no_recipient.json()["code"] == "invalid_request"
    assert fake_meta.requests == []


def test_api_answers_deeply_nested_json_and_lone_surrogates_with_400(api_client, meta, fake_meta):
    start = '{"provider": ' + str(meta.pk) + ', "to": "+16505551234", '
    nested = start + '"text": ' + "[" * 100_000 + "]" * 100_000 + "}"
    too_deep = api_client.post("/api/v1/messages/", nested, content_type="application/json")
    assert too_deep.status_code == 400 and "nested too deeply" in too_deep.json()["detail"]
    surrogate = api_client.post("/api/v1/messages/", start + '"type": "\\ud800"}', content_type="application/json")
    assert surrogate.status_code == 400 and surrogate.json()["code"] == "invalid_request"
    assert fake_meta.requests == []


def test_idempotency_key_same_body_same_message_different_body_refused(api_client, meta, fake_meta):
    customer(meta)
    body = {"provider": meta.pk, "to": "+16505551234", "text": "Only once"}
    first = api_client.post("/api/v1/messages/", body, format="json", HTTP_IDEMPOTENCY_KEY="order-1042-ship")
    again = api_client.post("/api/v1/messages/", body, format="json", HTTP_IDEMPOTENCY_KEY="order-1042-ship")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    changed = api_client.post("/api/v1/messages/", {**body, "text": "Something else"}, format="json",
                              HTTP_IDEMPOTENCY_KEY="order-1042-ship")
    assert changed.status_code == 409 and changed.json()["code"] == "idempotency_key_reused"
    assert Message.objects.filter(direction="outbound").count() == 1

    message_deliver(first.json()["id"])
    message_deliver(first.json()["id"])  # a redelivered task
    assert len(fake_meta.hits(fake_meta.send_path)) == 1


def test_get_shows_the_status_history(api_client, meta, fake_meta, settings):
    fake_meta.routes[fake_meta.send_path] = [meta_error(131000, 500, "Something went wrong"), meta_accepted]
    customer(meta)
    created = api_client.post("/api/v1/messages/", {"provider": meta.pk, "to": "+16505551234", "text": "hi"},
                              format="json").json()
    message_deliver(created["id"])
    message_deliver(created["id"])
    shown = api_client.get(f"/api/v1/messages/{created['id']}/").json()
    assert shown["status"] == "sent" and shown["attempts"] == 2
    assert [(item["status"], item.get("outcome")) for item in shown["history"]] == [
        ("queued", None), ("attempt", "retry"), ("attempt", "sent")]
    assert shown["send_attempts"][0]["error_code"] == "131000"


def test_api_sends_an_uploaded_file(api_client, meta, fake_meta, client):
    fake_meta.routes[f"/{fake_meta.send_path.split('/')[1]}/{META_PHONE_NUMBER_ID}/media"] = [
        Reply.json({"id": "4490709327384033"})]
    customer(meta)
    upload = SimpleUploadedFile("invoice.pdf", b"%PDF-1.4 test invoice", content_type="application/pdf")
    response = api_client.post("/api/v1/messages/", {"provider": meta.pk, "to": "+16505551234", "type": "document",
                                                     "file": upload, "caption": "Your invoice"}, format="multipart")
    assert response.status_code == 201, response.content
    message = message_deliver(response.json()["id"])
    assert message.status == "sent"
    body = sent_bodies(fake_meta)[-1]
    assert body["document"] == {"id": "4490709327384033", "caption": "Your invoice", "filename": "invoice.pdf"}
    # The same file is served to providers that fetch links, at an unguessable URL.
    media = message.media.get()
    assert client.get(f"/media/out/{media.public_token}/").content == b"%PDF-1.4 test invoice"
    assert client.get("/media/out/not-a-token/").status_code == 404


# --- retries, dead letters, permanent errors -----------------------------------------------------------

def test_throttled_then_accepted_is_sent_once_after_a_backoff(meta, fake_meta):
    fake_meta.routes[fake_meta.send_path] = [
        Reply(429, json.dumps({"error": {"message": "(#130429) Rate limit hit", "code": 130429}}).encode(),
              {"Content-Type": "application/json", "Retry-After": "1"}),
        meta_accepted]
    message = message_send_text(provider=meta, contact=customer(meta), text="Busy?")
    first = message_deliver(message.pk)
    assert first.status == "queued" and first.error_code == "130429"
    assert (first.next_attempt_at - timezone.now()).total_seconds() > 0.5  # Retry-After is honoured
    meta.refresh_from_db()
    assert meta.circuit_failures == 0  # throttling says the provider is up
    second = message_deliver(message.pk)
    assert second.status == "sent"
    hits = fake_meta.hits(fake_meta.send_path)
    assert len(hits) == 2 and hits[1].at - hits[0].at >= 0
    assert list(second.send_attempts.values_list("outcome", flat=True)) == ["retry", "sent"]


def test_server_errors_every_time_end_in_the_dead_letter_state_then_retry_succeeds(meta, fake_meta, settings,
                                                                                   superuser):
    settings.SEND_MAX_ATTEMPTS = 3
    fake_meta.routes[fake_meta.send_path] = [meta_error(131000, 500)]
    message = message_send_text(provider=meta, contact=customer(meta), text="Try hard")
    for _ in range(3):
        message = message_deliver(message.pk)
    assert message.status == "dead_letter" and message.dead_lettered_at
    assert "gave up after 3 attempts" in message.error_detail
    assert message_deliver(message.pk).status == "dead_letter"  # nothing more happens by itself
    assert len(fake_meta.hits(fake_meta.send_path)) == 3

    fake_meta.routes[fake_meta.send_path] = meta_accepted
    assert message_retry(message=message, actor=superuser)
    assert message_deliver(message.pk).status == "sent"
    assert len(fake_meta.hits(fake_meta.send_path)) == 4


def test_permanent_error_fails_at_once_with_code_title_and_reason(meta, fake_meta):
    fake_meta.routes[fake_meta.send_path] = [meta_error(131026, 400, "Message undeliverable")]
    message = message_deliver(message_send_text(provider=meta, contact=customer(meta), text="Hi").pk)
    assert (message.status, message.error_code) == ("failed", "131026")
    assert message.error_title and message.error_detail
    assert len(fake_meta.hits(fake_meta.send_path)) == 1
    assert message_deliver(message.pk).status == "failed"
    assert len(fake_meta.hits(fake_meta.send_path)) == 1


def test_circuit_opens_holds_messages_then_a_probe_closes_it(meta, fake_meta, settings, client):
    settings.SEND_CIRCUIT_THRESHOLD = 2
    settings.SEND_CIRCUIT_COOLDOWN_SECONDS = 60
    fake_meta.routes[fake_meta.send_path] = [Reply(503, b"upstream down")]
    first = message_send_text(provider=meta, contact=customer(meta, "+16505550001"), text="one")
    second = message_send_text(provider=meta, contact=customer(meta, "+16505550002"), text="two")
    third = message_send_text(provider=meta, contact=customer(meta, "+16505550003"), text="three")
    message_deliver(first.pk)
    message_deliver(second.pk)
    meta.refresh_from_db()
    assert meta.circuit_state == CircuitState.OPEN
    assert client.get("/health/").json()["send_circuits"][f"meta-{meta.pk}"] == "open"

    held = message_deliver(third.pk)
    assert held.status == "queued" and held.hold_reason.startswith("circuit open")
    assert len(fake_meta.hits(fake_meta.send_path)) == 2  # the held message did not call

    # Cooldown over: the next message through is the probe; its success closes the circuit.
    Provider.objects.filter(pk=meta.pk).update(circuit_retry_at=timezone.now())
    fake_meta.routes[fake_meta.send_path] = meta_accepted
    assert message_deliver(third.pk).status == "sent"
    meta.refresh_from_db()
    assert (meta.circuit_state, meta.circuit_failures) == (CircuitState.CLOSED, 0)
    assert client.get("/health/").json()["send_circuits"][f"meta-{meta.pk}"] == "closed"


def test_requeue_job_wakes_the_sender_of_a_provider_with_an_overdue_message(meta, fake_meta,
                                                                            django_capture_on_commit_callbacks):
    message = message_send_text(provider=meta, contact=customer(meta), text="lost?")
    assert messages_requeue_due() == 0  # just queued: the wake published with it takes it
    # Its wake was lost (the broker was down): it is overdue, and the sweep wakes the provider's sender.
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now() - timezone.timedelta(minutes=1))
    with django_capture_on_commit_callbacks() as callbacks:
        assert messages_requeue_due() == 1
    assert len(callbacks) == 1
    assert provider_send_due(meta.pk) == 1
    assert Message.objects.get(pk=message.pk).status == "sent"
    assert len(fake_meta.hits(fake_meta.send_path)) == 1


def test_a_send_whose_worker_vanished_is_not_sent_again(meta, fake_meta, settings):
    message = message_send_text(provider=meta, contact=customer(meta), text="Once")
    an_hour_ago = timezone.now() - timezone.timedelta(hours=1)
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENDING, attempts=1, updated_at=an_hour_ago)
    message = message_deliver(message.pk)
    assert (message.status, message.error_code) == ("dead_letter", "send_outcome_unknown")
    assert fake_meta.requests == []
    assert list(SendAttempt.objects.filter(message=message).values_list("outcome", flat=True)) == ["unknown"]


def test_a_second_message_to_one_recipient_waits_for_the_pair_rate(meta, fake_meta, settings):
    settings.SEND_PAIR_INTERVAL_SECONDS = None  # Meta's own: about one message every 6 s to one user
    contact = customer(meta)
    first = message_send_text(provider=meta, contact=contact, text="one")
    second = message_send_text(provider=meta, contact=contact, text="two")
    assert message_deliver(first.pk).status == "sent"
    deferred = message_deliver(second.pk)
    assert deferred.status == "queued" and deferred.hold_reason.startswith("per-recipient pacing")
    assert 4 < (deferred.next_attempt_at - timezone.now()).total_seconds() <= 6.1
    assert len(fake_meta.hits(fake_meta.send_path)) == 1
    # It comes back holding its reserved slot and is sent.
    Message.objects.filter(pk=second.pk).update(next_attempt_at=timezone.now())
    assert message_deliver(second.pk).status == "sent"


# --- a paused provider ----------------------------------------------------------------------------

def test_paused_provider_holds_messages_until_resumed(sandbox_provider, post_sandbox, superuser,
                                                      django_capture_on_commit_callbacks):
    # The customer writes now (so the 24-hour window is open whatever the fixtures' dates).
    inbound = sandbox.inbound_body(from_phone="+15551230001", name="Ana", text="Where is my order?")
    webhook_event_process(json_body(post_sandbox(sandbox_provider, inbound))["event"])
    provider_set_paused(provider=sandbox_provider, paused=True, actor=superuser)
    first = message_send_text(provider=sandbox_provider, contact=Contact.objects.get(), text="one")
    second = message_send_text(provider=sandbox_provider, contact=Contact.objects.get(), text="two")
    assert message_deliver(first.pk).status == "queued"

    with django_capture_on_commit_callbacks() as callbacks:
        provider_set_paused(provider=sandbox_provider, paused=False, actor=superuser)
    # The first was held (out of the broker) and is handed back; the second's task is still queued.
    assert len(callbacks) == 1
    assert [message_deliver(m.pk).status for m in (first, second)] == ["sent", "sent"]
    assert Message.objects.get(pk=first.pk).provider_message_id.startswith("sbx-")


# --- the same pipeline through Twilio's SDK and Chatwoot's REST API -----------------------------------

def test_twilio_template_goes_out_as_content_sid_with_our_status_callback(settings):
    with FakeServer() as fake:
        settings.TWILIO_API_BASE_URL = fake.url
        path = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json"
        fake.routes[path] = [Reply.json({"sid": "SM" + "0a" * 16, "status": "queued"}, status=201)]
        twilio = make_twilio()
        template = approved_template(twilio)
        MessageTemplate.objects.filter(pk=template.pk).update(provider_template_id="HX" + "cd" * 16)
        template.refresh_from_db()
        contact = customer(twilio, "+5511900000001", in_window=False)
        message, _ = message_send(SendRequest(provider=twilio, contact=contact, message_type="template",
                                              template=template, template_variables={"body": ["Ana", "#7"]}))
        message = message_deliver(message.pk)
        assert (message.status, message.provider_message_id) == ("sent", "SM" + "0a" * 16)
        form = parse_qs(fake.hits(path)[0].body.decode())
    assert form["ContentSid"] == ["HX" + "cd" * 16]
    assert json.loads(form["ContentVariables"][0]) == {"1": "Ana", "2": "#7"}
    assert form["To"] == ["whatsapp:+5511900000001"] and form["From"] == ["whatsapp:+14155238886"]
    assert form["StatusCallback"] == [provider_webhook_url(twilio)]


def test_chatwoot_reply_buttons_go_into_the_contacts_conversation_as_input_select():
    with FakeServer() as fake:
        chatwoot = make_chatwoot(base_url=fake.url)
        path = "/api/v1/accounts/3/conversations/42/messages"
        fake.routes[path] = [Reply.json({"id": 9001, "content": "Pick a slot", "message_type": 1})]
        contact = customer(chatwoot, "+15551230009")
        Conversation.objects.filter(provider=chatwoot, contact=contact).update(external_conversation_id="42")
        buttons = {"body": "Pick a slot",
                   "buttons": [{"id": "am", "title": "Morning"}, {"id": "pm", "title": "Evening"}]}
        message, _ = message_send(SendRequest(provider=chatwoot, contact=contact, message_type="interactive",
                                              interactive=buttons))
        message = message_deliver(message.pk)
        assert (message.status, message.provider_message_id) == ("sent", "9001")
        (request,) = fake.hits(path)
    assert request.headers["api_access_token"] == "chatwoot-api-token"
    assert json.loads(request.body) == {
        "content": "Pick a slot", "message_type": "outgoing", "private": False, "echo_id": str(message.pk),
        "content_type": "input_select",
        "content_attributes": {"items": [{"title": "Morning", "value": "am"}, {"title": "Evening", "value": "pm"}]}}


def test_twilio_reply_buttons_go_out_as_one_quick_reply_content_reused(settings):
    # A new account SID: the Content SIDs cached in Redis are per account.
    account = "AC" + uuid.uuid4().hex
    settings.SEND_PAIR_INTERVAL_SECONDS = 0
    with FakeServer() as fake:
        settings.TWILIO_API_BASE_URL = settings.TWILIO_CONTENT_BASE_URL = fake.url
        path = f"/2010-04-01/Accounts/{account}/Messages.json"
        fake.routes["/v1/Content"] = twilio_content_created
        fake.routes[path] = twilio_message_created
        twilio = make_twilio(account_sid=account)
        contact = customer(twilio, "+5511900000002")
        buttons = {"body": "Pick a slot",
                   "buttons": [{"id": "am", "title": "Morning"}, {"id": "pm", "title": "Evening"}]}
        sent = []
        for _ in range(2):
            message, _ = message_send(SendRequest(provider=twilio, contact=contact, message_type="interactive",
                                                  interactive=buttons))
            sent.append(message_deliver(message.pk))
        (create,) = fake.hits("/v1/Content")
        forms = [parse_qs(request.body.decode()) for request in fake.hits(path)]
    assert [(message.status, message.provider_message_id[:2]) for message in sent] == [("sent", "SM")] * 2
    assert json.loads(create.body)["types"] == {"twilio/quick-reply": {
        "body": "Pick a slot", "actions": [{"title": "Morning", "id": "am"}, {"title": "Evening", "id": "pm"}]}}
    assert forms[0]["ContentSid"] == forms[1]["ContentSid"] and forms[0]["ContentSid"][0].startswith("HX")
    assert forms[0].keys() == {"From", "To", "ContentSid", "StatusCallback"}


def test_a_refused_send_to_a_new_number_leaves_no_contact_behind(api_client, meta, fake_meta):
    response = api_client.post("/api/v1/messages/", {"provider": meta.pk, "to": "+16505559999", "text": "Hi"},
                               format="json")
    assert response.status_code == 422 and response.json()["code"] == "outside_window"
    assert not Contact.objects.filter(identities__value="+16505559999").exists()
