"""
What each provider module puts on the wire when it sends, checked against local servers that play the
provider: the exact body the server received, the path, the credentials, the id handed back, and how
every kind of failure is classified. No database: provider rows are built in memory.
"""

import base64
import json
from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest

from tests.conftest import fixture_bytes, fixture_json, free_port
from tests.fakes import Recorded, Reply, form_of, json_of, multipart_of
from tests.whatsapp.providers.conftest import (
    CHATWOOT_TOKEN,
    META_TOKEN,
    TWILIO_MESSAGES,
    TWILIO_SID,
    TWILIO_TOKEN,
    chatwoot_provider,
    raised,
    twilio_provider,
)
from whatsapp.models import Provider
from whatsapp.providers import backend_for
from whatsapp.providers.events import (
    Identity,
    IdentityKind,
    MessageType,
    OutboundMedia,
    OutboundMessage,
    OutboundTemplate,
    StatusUpdate,
    StoredWebhook,
    TemplateButtonParameter,
    TemplateParameter,
)

META_NUMBER_ID = "1234567890"
META_MESSAGES = f"/v25.0/{META_NUMBER_ID}/messages"
META_MEDIA = f"/v25.0/{META_NUMBER_ID}/media"
CHATWOOT_MESSAGES = "/api/v1/accounts/3/conversations/19/messages"

ANA = (Identity(IdentityKind.PHONE, "+15551230001"), Identity(IdentityKind.WHATSAPP_ID, "15551230001"))
PHOTO = b"\x89PNG\r\n\x1a\n a tiny png-ish picture"


# --- Meta ------------------------------------------------------------------------------------------

@pytest.fixture
def graph(graph):
    """The shared Graph API fake (tests/conftest.py), accepting sends to META_NUMBER_ID."""
    graph.routes[META_MESSAGES] = [Reply.json(fixture_json("meta", "outbound_accepted.json"))]
    return graph


def meta_provider():
    row = Provider(kind="meta", name="m", external_id=META_NUMBER_ID, business_account_id="WABA1",
                   phone_number="+15550001111",
                   credentials={"access_token": META_TOKEN, "app_secret": "s", "verify_token": "v"})
    return backend_for(row)


def meta_sent_body(graph, message: OutboundMessage) -> dict:
    result = meta_provider().send(message)
    assert result.provider_message_id == "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
    assert result.raw == fixture_json("meta", "outbound_accepted.json")
    (request,) = graph.hits(META_MESSAGES)
    assert request.method == "POST"
    assert request.headers["authorization"] == f"Bearer {META_TOKEN}"
    assert request.headers["content-type"] == "application/json"
    return json_of(request)


def test_meta_text_carries_our_reference_and_the_quoted_message(graph):
    body = meta_sent_body(graph, OutboundMessage(
        to=ANA, message_type=MessageType.TEXT, text="Your order shipped: https://example.test/t/1",
        content={"text": "Your order shipped: https://example.test/t/1", "preview_url": True},
        client_reference="42", reply_to_provider_message_id="wamid.IN1"))
    assert body == {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+15551230001", "type": "text",
        "text": {"body": "Your order shipped: https://example.test/t/1", "preview_url": True},
        "biz_opaque_callback_data": "42", "context": {"message_id": "wamid.IN1"},
    }


LIST_CONTENT = {"body": "Pick a slot", "header": "Deliveries", "footer": "Times are local", "button": "Slots",
                "sections": [{"title": "Monday", "rows": [{"id": "mon-am", "title": "Morning", "description": "8-12"},
                                                          {"id": "mon-pm", "title": "Afternoon"}]}]}
BUTTONS_CONTENT = {"body": "Is this right?", "header": "Order 1234", "footer": "Reply below",
                   "buttons": [{"id": "yes", "title": "Yes"}, {"id": "no", "title": "No"}]}


@pytest.mark.parametrize(("message", "wire_type", "payload"), [
    (OutboundMessage(to=ANA, message_type=MessageType.IMAGE, media=OutboundMedia(
        MessageType.IMAGE, url="https://files.example.test/a.jpg", caption="The receipt", filename="a.jpg")),
     "image", {"link": "https://files.example.test/a.jpg", "caption": "The receipt"}),
    (OutboundMessage(to=ANA, message_type=MessageType.VIDEO, media=OutboundMedia(
        MessageType.VIDEO, url="https://files.example.test/v.mp4", caption="How to")),
     "video", {"link": "https://files.example.test/v.mp4", "caption": "How to"}),
    (OutboundMessage(to=ANA, message_type=MessageType.DOCUMENT, media=OutboundMedia(
        MessageType.DOCUMENT, url="https://files.example.test/i.pdf", caption="Invoice", filename="invoice.pdf")),
     "document", {"link": "https://files.example.test/i.pdf", "caption": "Invoice", "filename": "invoice.pdf"}),
    # No caption on audio or stickers: Meta refuses it.
    (OutboundMessage(to=ANA, message_type=MessageType.AUDIO, media=OutboundMedia(
        MessageType.AUDIO, url="https://files.example.test/n.ogg", caption="ignored")),
     "audio", {"link": "https://files.example.test/n.ogg"}),
    (OutboundMessage(to=ANA, message_type=MessageType.STICKER, media=OutboundMedia(
        MessageType.STICKER, url="https://files.example.test/s.webp")),
     "sticker", {"link": "https://files.example.test/s.webp"}),
    (OutboundMessage(to=ANA, message_type=MessageType.LOCATION, content={
        "latitude": 52.52, "longitude": 13.405, "name": "Depot", "address": "Hauptstr. 1, Berlin"}),
     "location", {"latitude": 52.52, "longitude": 13.405, "name": "Depot", "address": "Hauptstr. 1, Berlin"}),
    (OutboundMessage(to=ANA, message_type=MessageType.INTERACTIVE, content=BUTTONS_CONTENT),
     "interactive", {"type": "button", "header": {"type": "text", "text": "Order 1234"},
                     "body": {"text": "Is this right?"}, "footer": {"text": "Reply below"},
                     "action": {"buttons": [{"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                                            {"type": "reply", "reply": {"id": "no", "title": "No"}}]}}),
    (OutboundMessage(to=ANA, message_type=MessageType.INTERACTIVE, content=LIST_CONTENT),
     "interactive", {"type": "list", "header": {"type": "text", "text": "Deliveries"},
                     "body": {"text": "Pick a slot"}, "footer": {"text": "Times are local"},
                     "action": {"button": "Slots", "sections": [{"title": "Monday", "rows": [
                         {"id": "mon-am", "title": "Morning", "description": "8-12"},
                         {"id": "mon-pm", "title": "Afternoon"}]}]}}),
], ids=["image", "video", "document", "audio", "sticker", "location", "buttons", "list"])
def test_meta_wire_body_per_message_type(graph, message, wire_type, payload):
    body = meta_sent_body(graph, message)
    assert body == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+15551230001",
                    "type": wire_type, wire_type: payload}


def test_meta_reaction_never_carries_a_context(graph):
    body = meta_sent_body(graph, OutboundMessage(
        to=ANA, message_type=MessageType.REACTION, content={"emoji": "👍", "target": "wamid.IN7"},
        reply_to_provider_message_id="wamid.IN7"))
    assert body["reaction"] == {"message_id": "wamid.IN7", "emoji": "👍"}
    assert "context" not in body


def test_meta_positional_template_with_text_header_and_every_button_kind(graph):
    template = OutboundTemplate(
        name="order_update", language="en_US", header=(TemplateParameter("1", "Spring"),),
        body=(TemplateParameter("1", "Ana"), TemplateParameter("2", "#1234")),
        buttons=(TemplateButtonParameter(1, "url", "track/1234"), TemplateButtonParameter(0, "quick_reply", "STOP"),
                 TemplateButtonParameter(2, "copy_code", "SAVE10")))
    body = meta_sent_body(graph, OutboundMessage(to=ANA, message_type=MessageType.TEMPLATE, template=template))
    assert body["type"] == "template"
    assert body["template"] == {"name": "order_update", "language": {"code": "en_US"}, "components": [
        {"type": "header", "parameters": [{"type": "text", "text": "Spring"}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "#1234"}]},
        {"type": "button", "sub_type": "quick_reply", "index": "0",
         "parameters": [{"type": "payload", "payload": "STOP"}]},
        {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "track/1234"}]},
        {"type": "button", "sub_type": "copy_code", "index": "2",
         "parameters": [{"type": "coupon_code", "coupon_code": "SAVE10"}]},
    ]}


def test_meta_named_template_with_media_header_and_no_empty_components(graph):
    template = OutboundTemplate(
        name="welcome", language="pt_BR", named_parameters=True,
        header_media=OutboundMedia(MessageType.IMAGE, url="https://files.example.test/banner.jpg"),
        body=(TemplateParameter("first_name", "Ana"),))
    body = meta_sent_body(graph, OutboundMessage(to=ANA, message_type=MessageType.TEMPLATE, template=template))
    assert body["template"] == {"name": "welcome", "language": {"code": "pt_BR"}, "components": [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://files.example.test/banner.jpg"}}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Ana", "parameter_name": "first_name"}]},
    ]}
    bare = OutboundTemplate(name="hello_world", language="en_US")
    graph.requests.clear()
    body = meta_sent_body(graph, OutboundMessage(to=ANA, message_type=MessageType.TEMPLATE, template=bare))
    assert body["template"] == {"name": "hello_world", "language": {"code": "en_US"}}


def test_meta_file_without_a_link_is_uploaded_first_then_sent_by_id(graph):
    graph.routes[META_MEDIA] = [Reply.json(fixture_json("meta", "outbound_media_uploaded.json"))]
    body = meta_sent_body(graph, OutboundMessage(to=ANA, message_type=MessageType.DOCUMENT, media=OutboundMedia(
        MessageType.DOCUMENT, data=PHOTO, filename="scan.png", mime_type="image/png", caption="Scan")))
    upload, send = graph.requests
    assert (upload.method, upload.path, send.path) == ("POST", META_MEDIA, META_MESSAGES)
    assert upload.headers["authorization"] == f"Bearer {META_TOKEN}"
    fields = multipart_of(upload)
    assert fields["messaging_product"][2] == b"whatsapp"
    assert fields["type"][2] == b"image/png"
    assert fields["file"] == ("scan.png", "image/png", PHOTO)
    assert body["document"] == {"id": "1037543291543636", "caption": "Scan", "filename": "scan.png"}


def test_meta_failed_upload_sends_nothing(graph):
    graph.routes[META_MEDIA] = [Reply(503, b"upstream busy")]
    error = raised(lambda: meta_provider().send(OutboundMessage(
        to=ANA, message_type=MessageType.IMAGE, media=OutboundMedia(MessageType.IMAGE, data=PHOTO))))
    assert (error.code, error.retryable, error.http_status) == ("http_503", True, 503)
    assert graph.hits(META_MESSAGES) == []


def test_meta_recipient_prefers_the_phone_then_the_whatsapp_id_and_never_a_bsuid():
    provider = meta_provider()
    assert provider.recipient_address(ANA) == "+15551230001"
    assert provider.recipient_address((Identity(IdentityKind.WHATSAPP_ID, "4915112345678"),)) == "+4915112345678"
    assert provider.recipient_address((Identity(IdentityKind.BUSINESS_SCOPED_ID, "US.13491208655302741918"),)) == ""
    error = raised(lambda: provider.send(OutboundMessage(
        to=(Identity(IdentityKind.BUSINESS_SCOPED_ID, "US.1"),), message_type=MessageType.TEXT, text="hi")))
    assert (error.code, error.retryable) == ("no_address", False)


def test_meta_rate_limit_is_retryable_throttled_and_honours_retry_after(graph):
    graph.routes[META_MESSAGES] = [Reply(429, fixture_bytes("meta", "outbound_error_130429.json"),
                                         {"Content-Type": "application/json", "Retry-After": "30"})]
    error = raised(lambda: meta_provider().send(OutboundMessage(to=ANA, message_type=MessageType.TEXT, text="hi")))
    assert (error.code, error.title, error.http_status) == ("130429", "Rate limit hit", 429)
    assert (error.retryable, error.throttled, error.retry_after) == (True, True, 30.0)
    assert "throughput has been reached" in str(error)


def test_meta_server_error_is_retryable_but_not_throttling(graph):
    graph.routes[META_MESSAGES] = [Reply(500, fixture_bytes("meta", "outbound_error_500.json"))]
    error = raised(lambda: meta_provider().send(OutboundMessage(to=ANA, message_type=MessageType.TEXT, text="hi")))
    assert (error.retryable, error.throttled, error.http_status, error.retry_after) == (True, False, 500, None)


def test_meta_outside_the_window_is_permanent_with_a_reason_to_act_on(graph):
    graph.routes[META_MESSAGES] = [Reply(400, fixture_bytes("meta", "outbound_error_131047.json"))]
    error = raised(lambda: meta_provider().send(OutboundMessage(to=ANA, message_type=MessageType.TEXT, text="hi")))
    assert (error.code, error.title, error.retryable, error.throttled) == (
        "131047", "Re-engagement message", False, False)
    assert "more than 24 hours" in str(error) and "send an approved template instead" in str(error)
    assert error.raw == fixture_json("meta", "outbound_error_131047.json")


@pytest.mark.parametrize(("status", "code", "retryable", "throttled"), [
    (400, 131056, True, True),    # pair rate
    (400, 4, True, True),         # app rate limit
    (400, 131053, True, False),   # media fetch
    (400, 131000, True, False),   # unknown, transient
    (500, 132001, False, False),  # a permanent code wins over a 5xx
    (400, 131026, False, False),
    (400, 999999, False, False),  # an unknown 4xx
    (503, 999999, True, False),   # an unknown 5xx
    (429, 999999, True, True),
])
def test_meta_error_code_classes(graph, status, code, retryable, throttled):
    graph.routes[META_MESSAGES] = [Reply.json({"error": {"message": f"(#{code}) Something", "code": code}}, status)]
    error = raised(lambda: meta_provider().send(OutboundMessage(to=ANA, message_type=MessageType.TEXT, text="hi")))
    assert (error.code, error.title, error.retryable, error.throttled) == (str(code), "Something", retryable, throttled)


def test_meta_answer_without_a_message_id_is_not_retried_blindly(graph):
    graph.routes[META_MESSAGES] = [Reply.json({"messaging_product": "whatsapp", "messages": []})]
    error = raised(lambda: meta_provider().send(OutboundMessage(to=ANA, message_type=MessageType.TEXT, text="hi")))
    assert (error.code, error.retryable, error.http_status) == ("bad_response", False, 200)


def test_meta_expired_token_is_permanent_and_never_quoted(graph):
    graph.routes[META_MESSAGES] = [Reply(401, fixture_bytes("meta", "outbound_error_190.json"))]
    error = raised(lambda: meta_provider().send(OutboundMessage(to=ANA, message_type=MessageType.TEXT, text="hi")))
    assert (error.code, error.retryable, error.http_status) == ("190", False, 401)
    assert "issue a new system user token" in str(error)


def test_meta_unreachable_and_slow_graph_are_retryable(settings, graph):
    settings.META_GRAPH_BASE_URL = f"http://127.0.0.1:{free_port()}"
    message = OutboundMessage(to=ANA, message_type=MessageType.TEXT, text="hi")
    error = raised(lambda: meta_provider().send(message))
    assert (error.code, error.retryable, error.throttled) == ("network", True, False)

    settings.META_GRAPH_BASE_URL = graph.url
    settings.PROVIDER_HTTP_TIMEOUT_SECONDS = 0.05
    graph.routes[META_MESSAGES] = [Reply(200, b"{}", delay=0.4)]
    error = raised(lambda: meta_provider().send(message))
    assert (error.code, error.retryable) == ("timeout", True)


def test_meta_check_connection(graph):
    number_path = f"/v25.0/{META_NUMBER_ID}"
    graph.routes[number_path] = [Reply.json(fixture_json("meta", "outbound_phone_number.json")),
                                 Reply(401, fixture_bytes("meta", "outbound_error_190.json"))]
    check = meta_provider().check_connection()
    assert check.ok and check.detail == "+1 555-000-1111, Acme, quality GREEN, throughput STANDARD"
    (request,) = graph.hits(number_path)
    assert request.method == "GET" and request.headers["authorization"] == f"Bearer {META_TOKEN}"
    assert parse_qs(request.query) == {"fields": ["display_phone_number,verified_name,quality_rating,throughput"]}

    failed = meta_provider().check_connection()
    assert not failed.ok and "190" in failed.detail and "Session has expired" in failed.detail
    assert META_TOKEN not in failed.detail


def test_meta_status_echoes_our_reference():
    payload = {"object": "whatsapp_business_account", "entry": [{"id": "WABA1", "changes": [{"field": "messages",
               "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": META_NUMBER_ID},
                         "statuses": [{"id": "wamid.OUT1", "status": "delivered", "timestamp": "1767225600",
                                       "recipient_id": "15551230001", "biz_opaque_callback_data": "42"}]}}]}]}
    stored = StoredWebhook(body=json.dumps(payload).encode(), headers={}, content_type="application/json",
                           received_at=datetime(2026, 1, 1, tzinfo=UTC))
    (event,) = meta_provider().parse_webhook(stored)
    assert isinstance(event, StatusUpdate)
    assert (event.provider_message_id, event.client_reference) == ("wamid.OUT1", "42")


# --- Twilio ----------------------------------------------------------------------------------------

@pytest.fixture
def twilio_api(fake):
    fake.routes[TWILIO_MESSAGES] = [Reply.json(fixture_json("twilio", "outbound_created.json"), 201)]
    return fake


def twilio_sent_form(twilio_api, message: OutboundMessage) -> dict[str, list[str]]:
    result = twilio_provider().send(message)
    assert result.provider_message_id == "SM3f2a9c1e4b5d6a7f8e9d0c1b2a3f4e5d"
    assert result.raw == fixture_json("twilio", "outbound_created.json")
    (request,) = twilio_api.hits(TWILIO_MESSAGES)
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(
        f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
    return form_of(request)


def test_twilio_text_through_the_sdk(twilio_api):
    form = twilio_sent_form(twilio_api, OutboundMessage(
        to=ANA, message_type=MessageType.TEXT, text="hi", client_reference="42",
        status_callback_url="https://platform.example.test/webhooks/twilio/abc/"))
    assert form == {"From": ["whatsapp:+14155238886"], "To": ["whatsapp:+15551230001"], "Body": ["hi"],
                    "StatusCallback": ["https://platform.example.test/webhooks/twilio/abc/"]}


def test_twilio_media_by_url_with_caption(twilio_api):
    form = twilio_sent_form(twilio_api, OutboundMessage(to=ANA, message_type=MessageType.IMAGE, media=OutboundMedia(
        MessageType.IMAGE, url="https://files.example.test/a.jpg", caption="The receipt")))
    assert form == {"From": ["whatsapp:+14155238886"], "To": ["whatsapp:+15551230001"], "Body": ["The receipt"],
                    "MediaUrl": ["https://files.example.test/a.jpg"]}


def test_twilio_media_without_a_url_is_refused_before_calling(twilio_api):
    error = raised(lambda: twilio_provider().send(OutboundMessage(
        to=ANA, message_type=MessageType.IMAGE, media=OutboundMedia(MessageType.IMAGE, data=PHOTO))))
    assert (error.code, error.retryable) == ("media_url_required", False)
    assert twilio_api.requests == []


def test_twilio_template_goes_as_content_sid_and_variables(twilio_api):
    template = OutboundTemplate(
        name="order_update", language="en", provider_template_id="HX" + "ab" * 16,
        header=(TemplateParameter("1", "Spring"),), body=(TemplateParameter("2", "Ana"), TemplateParameter("3", "#12")),
        buttons=(TemplateButtonParameter(0, "url", "track/12"),))
    form = twilio_sent_form(twilio_api, OutboundMessage(to=ANA, message_type=MessageType.TEMPLATE, template=template))
    assert form.keys() == {"From", "To", "ContentSid", "ContentVariables"}
    assert form["ContentSid"] == ["HX" + "ab" * 16]
    assert json.loads(form["ContentVariables"][0]) == {"1": "Spring", "2": "Ana", "3": "#12", "4": "track/12"}

    error = raised(lambda: twilio_provider().send(OutboundMessage(
        to=ANA, message_type=MessageType.TEMPLATE, template=OutboundTemplate(name="order_update", language="en"))))
    assert (error.code, error.retryable) == ("content_sid_missing", False)


def test_twilio_location(twilio_api):
    form = twilio_sent_form(twilio_api, OutboundMessage(to=ANA, message_type=MessageType.LOCATION, content={
        "latitude": 52.52, "longitude": 13.405, "name": "Depot", "address": "Hauptstr. 1"}))
    assert form["PersistentAction"] == ["geo:52.52,13.405|Depot, Hauptstr. 1"]
    assert form["Body"] == ["Depot, Hauptstr. 1"]


def test_twilio_recipient_address():
    provider = twilio_provider()
    assert provider.recipient_address(ANA) == "+15551230001"
    assert provider.recipient_address((Identity(IdentityKind.WHATSAPP_ID, "15551230001"),)) == "+15551230001"
    assert provider.recipient_address((Identity(IdentityKind.TWILIO_EXTERNAL_ID, "US.1"),)) == ""


def test_twilio_outside_the_window_is_permanent(twilio_api):
    twilio_api.routes[TWILIO_MESSAGES] = [Reply.json(fixture_json("twilio", "outbound_error_63016.json"), 400)]
    error = raised(lambda: twilio_provider().send(OutboundMessage(to=ANA, message_type=MessageType.TEXT, text="hi")))
    assert (error.code, error.retryable, error.throttled, error.http_status) == ("63016", False, False, 400)
    assert error.title.startswith("Failed to send freeform message")
    assert "send an approved template instead" in str(error)


def test_twilio_channel_rate_limit_is_retryable_and_throttled(twilio_api):
    twilio_api.routes[TWILIO_MESSAGES] = [Reply(429, fixture_bytes("twilio", "outbound_error_63018.json"),
                                                {"Content-Type": "application/json", "Retry-After": "5"})]
    error = raised(lambda: twilio_provider().send(OutboundMessage(to=ANA, message_type=MessageType.TEXT, text="hi")))
    assert (error.code, error.title, error.http_status) == ("63018", "Rate limit exceeded for Channel", 429)
    assert (error.retryable, error.throttled, error.retry_after) == (True, True, 5.0)


def test_twilio_server_error_and_bad_credentials(twilio_api):
    message = OutboundMessage(to=ANA, message_type=MessageType.TEXT, text="hi")
    twilio_api.routes[TWILIO_MESSAGES] = [Reply(503, b"<html>unavailable</html>")]
    error = raised(lambda: twilio_provider().send(message))
    assert (error.code, error.retryable, error.throttled, error.http_status) == ("http_503", True, False, 503)

    twilio_api.routes[TWILIO_MESSAGES] = [Reply.json(fixture_json("twilio", "outbound_error_20003.json"), 401)]
    error = raised(lambda: twilio_provider().send(message))
    assert (error.code, error.retryable, error.http_status) == ("20003", False, 401)


def test_twilio_unreachable_and_slow_api_are_retryable(settings, twilio_api):
    message = OutboundMessage(to=ANA, message_type=MessageType.TEXT, text="hi")
    settings.TWILIO_API_BASE_URL = f"http://127.0.0.1:{free_port()}"
    error = raised(lambda: twilio_provider().send(message))
    assert (error.code, error.retryable) == ("network", True)

    settings.TWILIO_API_BASE_URL = twilio_api.url
    settings.PROVIDER_HTTP_TIMEOUT_SECONDS = 0.05
    twilio_api.routes[TWILIO_MESSAGES] = [Reply(201, b"{}", delay=0.4)]
    error = raised(lambda: twilio_provider().send(message))
    assert (error.code, error.retryable) == ("timeout", True)


def test_twilio_check_connection(twilio_api):
    account_path = f"/2010-04-01/Accounts/{TWILIO_SID}.json"
    twilio_api.routes[account_path] = [Reply.json(fixture_json("twilio", "outbound_account.json")),
                                       Reply.json(fixture_json("twilio", "outbound_error_20003.json"), 401)]
    check = twilio_provider().check_connection()
    assert check.ok and check.detail == "Acme Support, account active"
    assert twilio_api.hits(account_path)[0].method == "GET"

    failed = twilio_provider().check_connection()
    assert not failed.ok and "20003" in failed.detail and "auth token is wrong" in failed.detail
    assert TWILIO_TOKEN not in failed.detail


# --- Chatwoot --------------------------------------------------------------------------------------

@pytest.fixture
def chatwoot_api(fake):
    fake.routes[CHATWOOT_MESSAGES] = [Reply.json(fixture_json("chatwoot", "outbound_message.json"))]
    return fake


def chatwoot_sent(chatwoot_api, message: OutboundMessage) -> Recorded:
    result = chatwoot_provider(chatwoot_api.url).send(message)
    assert result.provider_message_id == "5521"
    assert result.raw == fixture_json("chatwoot", "outbound_message.json")
    (request,) = chatwoot_api.hits(CHATWOOT_MESSAGES)
    assert request.method == "POST" and request.headers["api_access_token"] == CHATWOOT_TOKEN
    return request


def test_chatwoot_text_with_echo_id_and_quoted_message(chatwoot_api):
    request = chatwoot_sent(chatwoot_api, OutboundMessage(
        to=ANA, message_type=MessageType.TEXT, text="hello from the platform", client_reference="42",
        conversation_ref="19", reply_to_provider_message_id="5500"))
    assert json_of(request) == {"content": "hello from the platform", "message_type": "outgoing", "private": False,
                                "echo_id": "42", "content_attributes": {"in_reply_to": 5500}}


@pytest.mark.parametrize("content", [BUTTONS_CONTENT, LIST_CONTENT], ids=["buttons", "list"])
def test_chatwoot_buttons_and_lists_become_input_select(chatwoot_api, content):
    request = chatwoot_sent(chatwoot_api, OutboundMessage(
        to=ANA, message_type=MessageType.INTERACTIVE, content=content, conversation_ref="19"))
    choices = content.get("buttons") or content["sections"][0]["rows"]
    assert json_of(request) == {
        "content": content["body"], "message_type": "outgoing", "private": False, "content_type": "input_select",
        "content_attributes": {"items": [{"title": c["title"], "value": c["id"]} for c in choices]}}


def test_chatwoot_template(chatwoot_api):
    template = OutboundTemplate(
        name="order_update", language="en_US", category="utility", rendered_text="Hi Ana, order #12 shipped",
        header=(TemplateParameter("1", "Spring"),),
        body=(TemplateParameter("1", "Ana"), TemplateParameter("2", "#12")),
        buttons=(TemplateButtonParameter(1, "url", "track/12"),))
    request = chatwoot_sent(chatwoot_api, OutboundMessage(
        to=ANA, message_type=MessageType.TEMPLATE, template=template, conversation_ref="19", client_reference="7"))
    assert json_of(request) == {
        "content": "Hi Ana, order #12 shipped", "message_type": "outgoing", "private": False, "echo_id": "7",
        "template_params": {"name": "order_update", "category": "UTILITY", "language": "en_US", "processed_params": {
            "body": {"1": "Ana", "2": "#12"}, "header": {"1": "Spring"},
            "buttons": [{}, {"type": "url", "parameter": "track/12"}]}}}


def test_chatwoot_file_from_bytes_is_a_multipart_upload(chatwoot_api):
    request = chatwoot_sent(chatwoot_api, OutboundMessage(
        to=ANA, message_type=MessageType.IMAGE, conversation_ref="19", client_reference="42",
        reply_to_provider_message_id="5500",
        media=OutboundMedia(MessageType.IMAGE, data=PHOTO, filename="scan.png", mime_type="image/png",
                            caption="Scan")))
    assert request.headers["content-type"].startswith("multipart/form-data")
    fields = multipart_of(request)
    assert fields.keys() == {"content", "message_type", "echo_id", "content_attributes", "attachments[]"}
    assert (fields["content"][2], fields["message_type"][2], fields["echo_id"][2]) == (b"Scan", b"outgoing", b"42")
    assert json.loads(fields["content_attributes"][2]) == {"in_reply_to": 5500}
    assert fields["attachments[]"] == ("scan.png", "image/png", PHOTO)


def test_chatwoot_file_by_url_is_downloaded_then_uploaded(chatwoot_api):
    chatwoot_api.routes["/files/a.pdf"] = [Reply(200, b"%PDF-1.7 tiny", {"Content-Type": "application/pdf"})]
    request = chatwoot_sent(chatwoot_api, OutboundMessage(
        to=ANA, message_type=MessageType.DOCUMENT, conversation_ref="19",
        media=OutboundMedia(MessageType.DOCUMENT, url=f"{chatwoot_api.url}/files/a.pdf", filename="a.pdf")))
    assert multipart_of(request)["attachments[]"] == ("a.pdf", "application/pdf", b"%PDF-1.7 tiny")

    chatwoot_api.routes["/files/gone.pdf"] = [Reply(404, b"not here")]
    chatwoot_api.requests.clear()
    error = raised(lambda: chatwoot_provider(chatwoot_api.url).send(OutboundMessage(
        to=ANA, message_type=MessageType.DOCUMENT, conversation_ref="19",
        media=OutboundMedia(MessageType.DOCUMENT, url=f"{chatwoot_api.url}/files/gone.pdf"))))
    assert (error.code, error.retryable) == ("http_404", True)
    assert chatwoot_api.hits(CHATWOOT_MESSAGES) == []


def test_chatwoot_needs_a_conversation(chatwoot_api):
    error = raised(lambda: chatwoot_provider(chatwoot_api.url).send(OutboundMessage(
        to=ANA, message_type=MessageType.TEXT, text="hi")))
    assert (error.code, error.retryable) == ("no_conversation", False)
    assert "written to this inbox first" in str(error)
    assert chatwoot_api.requests == []


def test_chatwoot_recipient_address():
    provider = chatwoot_provider("https://chat.example.test")
    contact = Identity(IdentityKind.CHATWOOT_CONTACT_ID, "88", "chat.example.test/3")
    elsewhere = Identity(IdentityKind.CHATWOOT_CONTACT_ID, "99", "other.example.test/3")
    assert provider.recipient_address((*ANA, contact)) == "88"
    assert provider.recipient_address((elsewhere, *ANA)) == "+15551230001"
    assert provider.recipient_address((elsewhere,)) == ""


@pytest.mark.parametrize(("reply", "code", "retryable", "throttled"), [
    (Reply(401, fixture_bytes("chatwoot", "outbound_error_401.json")), "http_401", False, False),
    (Reply.json({"error": "Access to this resource is forbidden"}, 403), "http_403", False, False),
    (Reply.json({"message": "Unprocessable"}, 422), "http_422", False, False),
    (Reply(503, b"<html>maintenance</html>"), "http_503", True, False),
    (Reply(429, b"Retry later\n", {"Retry-After": "12"}), "http_429", True, True),
], ids=["401", "403", "422", "503", "429"])
def test_chatwoot_error_classes(chatwoot_api, reply, code, retryable, throttled):
    chatwoot_api.routes[CHATWOOT_MESSAGES] = [reply]
    error = raised(lambda: chatwoot_provider(chatwoot_api.url).send(OutboundMessage(
        to=ANA, message_type=MessageType.TEXT, text="hi", conversation_ref="19")))
    assert (error.code, error.retryable, error.throttled, error.http_status) == (
        code, retryable, throttled, reply.status)
    if reply.status == 401:
        assert "API token is wrong" in str(error) and error.title == "You need to sign in or sign up before continuing."
    if reply.status == 429:
        assert error.retry_after == 12.0


def test_chatwoot_unreachable_and_slow_server_are_retryable(settings, chatwoot_api):
    message = OutboundMessage(to=ANA, message_type=MessageType.TEXT, text="hi", conversation_ref="19")
    error = raised(lambda: chatwoot_provider(f"http://127.0.0.1:{free_port()}").send(message))
    assert (error.code, error.retryable) == ("network", True)

    settings.PROVIDER_HTTP_TIMEOUT_SECONDS = 0.05
    chatwoot_api.routes[CHATWOOT_MESSAGES] = [Reply(200, b"{}", delay=0.4)]
    error = raised(lambda: chatwoot_provider(chatwoot_api.url).send(message))
    assert (error.code, error.retryable) == ("timeout", True)


def test_chatwoot_check_connection(chatwoot_api):
    inbox_path = "/api/v1/accounts/3/inboxes/7"
    chatwoot_api.routes[inbox_path] = [Reply.json(fixture_json("chatwoot", "outbound_inbox.json")),
                                       Reply(401, fixture_bytes("chatwoot", "outbound_error_401.json"))]
    check = chatwoot_provider(chatwoot_api.url).check_connection()
    assert check.ok and check.detail == "inbox Support WhatsApp (Channel::Whatsapp)"
    (request,) = chatwoot_api.hits(inbox_path)
    assert request.method == "GET" and request.headers["api_access_token"] == CHATWOOT_TOKEN

    failed = chatwoot_provider(chatwoot_api.url).check_connection()
    assert not failed.ok and "API token is wrong" in failed.detail
    assert CHATWOOT_TOKEN not in failed.detail


def test_sending_capabilities_per_kind():
    meta, twilio, chatwoot = meta_provider(), twilio_provider(), chatwoot_provider("https://chat.example.test")
    assert MessageType.REACTION in meta.sendable_types and MessageType.STICKER in meta.sendable_types
    assert MessageType.INTERACTIVE in twilio.sendable_types and MessageType.TEMPLATE in twilio.sendable_types
    assert MessageType.REACTION not in twilio.sendable_types
    assert MessageType.LOCATION not in chatwoot.sendable_types and MessageType.INTERACTIVE in chatwoot.sendable_types
    assert (meta.supports_reply_context, twilio.supports_reply_context, chatwoot.supports_reply_context) == (
        True, False, True)
    assert {meta.pair_interval_seconds, twilio.pair_interval_seconds, chatwoot.pair_interval_seconds} == {6.0}
    assert (meta.default_rate_limit_per_second, meta.max_rate_limit_per_second) == (80, 1000)
    assert twilio.default_rate_limit_per_second == 10
