"""
Templates at the providers: what each provider module puts on the wire to create (or edit) a template and
to list the ones the provider holds, checked against local servers that play Meta's Graph API, Twilio's
Content API (through the twilio SDK) and Chatwoot's inbox API; how their answers and errors read; and the
conversions between our components + examples and each provider's own shape. No database: provider rows
are built in memory.
"""

import base64
import json
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest

from tests.conftest import fixture_bytes, fixture_json
from tests.fakes import Reply, json_of
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
    OutboundMessage,
    OutboundTemplate,
    StoredWebhook,
    TemplateButtonParameter,
    TemplateDefinition,
    TemplateManagement,
    TemplateParameter,
    TemplateStatus,
    TemplateStatusUpdate,
)
from whatsapp.providers.twilio import canonical_from_types, content_request
from whatsapp.providers.whatsapp_templates import from_whatsapp_components, to_whatsapp_components

WABA = "800100200300400"
META_TEMPLATES = f"/v25.0/{WABA}/message_templates"
CONTENT_SID = "HX5a1c3e5f7b9d1f3a5c7e9b1d3f5a7c9e"
TWILIO_CONTENT = "/v1/Content"
TWILIO_APPROVAL = f"/v1/Content/{CONTENT_SID}/ApprovalRequests/whatsapp"
TWILIO_LIST = "/v1/ContentAndApprovals"
CHATWOOT_INBOX = "/api/v1/accounts/3/inboxes/7"


def definition(**overrides) -> TemplateDefinition:
    values = {"name": "order_update", "language": "en", "category": "utility", "parameter_format": "positional",
              "components": [{"type": "BODY", "text": "Hi {{1}}, your order {{2}} has shipped."}],
              "examples": {"body": {"1": "Ana", "2": "#4521"}}}
    return TemplateDefinition(**(values | overrides))


def test_each_kind_says_how_it_manages_templates():
    assert {kind: backend_for(Provider(kind=kind)).template_management
            for kind in ("meta", "twilio", "chatwoot", "sandbox")} == {
        "meta": TemplateManagement.SUBMIT, "twilio": TemplateManagement.SUBMIT,
        "chatwoot": TemplateManagement.IMPORT, "sandbox": TemplateManagement.SUBMIT}


# --- Meta ------------------------------------------------------------------------------------------

@pytest.fixture
def graph(graph):
    """The shared Graph API fake (tests/conftest.py), accepting template creations in WABA."""
    graph.routes[META_TEMPLATES] = [Reply.json(fixture_json("meta", "template_create_accepted.json"))]
    return graph


def meta_provider():
    row = Provider(kind="meta", name="m", external_id="1234567890", business_account_id=WABA,
                   credentials={"access_token": META_TOKEN, "app_secret": "s", "verify_token": "v"})
    return backend_for(row)


ORDER_READY = definition(
    name="order_ready", language="en_US",
    components=[
        {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
        {"type": "BODY", "text": "Hi {{1}}, your order is ready for pickup at {{2}}."},
        {"type": "FOOTER", "text": "Reply STOP to opt out"},
        {"type": "BUTTONS", "buttons": [
            {"type": "URL", "text": "Track", "url": "https://shop.example.test/t/{{1}}"},
            {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+15550001111"},
            {"type": "QUICK_REPLY", "text": "Thanks"},
            {"type": "COPY_CODE", "text": "Copy code"}]},
    ],
    examples={"header": {"1": "#4521"}, "body": {"1": "Ana", "2": "the Main Street store"},
              "buttons": {"0": "order-4521", "3": "SAVE10"}})
ORDER_READY_WIRE = [
    {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}", "example": {"header_text": ["#4521"]}},
    {"type": "BODY", "text": "Hi {{1}}, your order is ready for pickup at {{2}}.",
     "example": {"body_text": [["Ana", "the Main Street store"]]}},
    {"type": "FOOTER", "text": "Reply STOP to opt out"},
    {"type": "BUTTONS", "buttons": [
        {"type": "URL", "text": "Track", "url": "https://shop.example.test/t/{{1}}",
         "example": ["https://shop.example.test/t/order-4521"]},
        {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+15550001111"},
        {"type": "QUICK_REPLY", "text": "Thanks"},
        # The copy-code label is WhatsApp's own; the example is the code.
        {"type": "COPY_CODE", "example": "SAVE10"}]},
]
SPRING_SALE = definition(
    name="spring_sale", language="es_MX", category="marketing", parameter_format="named",
    components=[
        {"type": "HEADER", "format": "TEXT", "text": "Hola {{store}}"},
        {"type": "BODY", "text": "{{first_name}}, use code {{code}} for 20% off everything."},
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Not interested"}]},
    ],
    examples={"header": {"store": "Centro"}, "body": {"first_name": "Ana", "code": "SPRING20"}})


def test_meta_create_sends_components_with_examples_inside(graph):
    submission = meta_provider().submit_template(ORDER_READY)
    (request,) = graph.hits(META_TEMPLATES)
    assert (request.method, request.headers["authorization"]) == ("POST", f"Bearer {META_TOKEN}")
    assert json_of(request) == {"name": "order_ready", "language": "en_US", "category": "UTILITY",
                                "parameter_format": "POSITIONAL", "components": ORDER_READY_WIRE}
    assert (submission.provider_template_id, submission.status) == ("1180442077001234", TemplateStatus.PENDING)
    assert submission.raw == fixture_json("meta", "template_create_accepted.json")


def test_meta_create_of_a_named_template(graph):
    graph.routes[META_TEMPLATES] = [Reply.json({"id": "1180442077005678", "status": "APPROVED",
                                                "category": "MARKETING"})]
    submission = meta_provider().submit_template(SPRING_SALE)
    (request,) = graph.hits(META_TEMPLATES)
    assert json_of(request) == {"name": "spring_sale", "language": "es_MX", "category": "MARKETING",
                                "parameter_format": "NAMED", "components": [
        {"type": "HEADER", "format": "TEXT", "text": "Hola {{store}}",
         "example": {"header_text_named_params": [{"param_name": "store", "example": "Centro"}]}},
        {"type": "BODY", "text": "{{first_name}}, use code {{code}} for 20% off everything.",
         "example": {"body_text_named_params": [{"param_name": "first_name", "example": "Ana"},
                                                {"param_name": "code", "example": "SPRING20"}]}},
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Not interested"}]}]}
    # Some templates are approved on the spot.
    assert (submission.provider_template_id, submission.status) == ("1180442077005678", TemplateStatus.APPROVED)


def test_meta_later_versions_are_new_templates_under_their_own_name(graph):
    """Never an edit of the approved template (that would put it back into review): version 2 is created
    beside it, as <name>_v2."""
    graph.routes[META_TEMPLATES] = [Reply.json(fixture_json("meta", "template_create_accepted.json"))]
    second = TemplateDefinition(**{**ORDER_READY.__dict__, "version": 2})
    meta_provider().submit_template(second)
    (request,) = graph.hits(META_TEMPLATES)
    assert json_of(request)["name"] == f"{ORDER_READY.name}_v2"
    assert json_of(request)["components"] == ORDER_READY_WIRE


def test_meta_refuses_a_media_header_and_a_missing_example_before_calling(graph):
    media = definition(components=[{"type": "HEADER", "format": "IMAGE"}, {"type": "BODY", "text": "Spring is here"}],
                       examples={"header": {"url": "https://files.example.test/spring.jpg"}})
    error = raised(lambda: meta_provider().submit_template(media))
    assert (error.code, error.retryable) == ("template_unsupported", False)
    assert "Resumable Upload API" in str(error) and "WhatsApp Manager" in str(error)

    error = raised(lambda: meta_provider().submit_template(definition(examples={"body": {"1": "Ana"}})))
    assert (error.code, error.retryable) == ("template_invalid", False)
    assert "{{2}} has no example" in str(error)
    assert graph.requests == []


def test_meta_refusal_reads_as_meta_explains_it(graph):
    graph.routes[META_TEMPLATES] = [Reply(400, fixture_bytes("meta", "template_error_100.json"),
                                          {"Content-Type": "application/json"})]
    error = raised(lambda: meta_provider().submit_template(ORDER_READY))
    assert (error.code, error.retryable, error.throttled, error.http_status) == ("100", False, False, 400)
    assert error.title == "Variables can't be at the start or end of the template"
    assert "Add text before {{1}} and after {{2}}" in str(error)
    assert str(error).startswith("Meta refused the template submission (HTTP 400, error 100")


@pytest.mark.parametrize(("reply", "code", "throttled"), [
    (Reply(429, fixture_bytes("meta", "template_error_80007.json"), {"Content-Type": "application/json",
                                                                     "Retry-After": "60"}), "80007", True),
    (Reply(503, b"<html>busy</html>"), "http_503", False),
], ids=["80007", "503"])
def test_meta_rate_limit_and_outage_are_retryable(graph, reply, code, throttled):
    graph.routes[META_TEMPLATES] = [reply]
    error = raised(lambda: meta_provider().submit_template(ORDER_READY))
    assert (error.code, error.retryable, error.throttled) == (code, True, throttled)


def test_meta_list_follows_the_cursor_through_every_page(graph):
    graph.routes[META_TEMPLATES] = [Reply.json(fixture_json("meta", "template_list_page1.json")),
                                    Reply.json(fixture_json("meta", "template_list_page2.json"))]
    templates = meta_provider().list_templates()
    first, second = graph.hits(META_TEMPLATES)
    assert first.method == "GET" and first.headers["authorization"] == f"Bearer {META_TOKEN}"
    fields = "id,name,language,status,category,components,parameter_format,quality_score,rejected_reason"
    assert parse_qs(first.query) == {"fields": [fields], "limit": ["100"]}
    assert parse_qs(second.query) == {"fields": [fields], "limit": ["100"],
                                      "after": ["QVFIUnV2d3h5ejAxMjM0NTY3ODlhYmNk"]}

    assert [(t.provider_template_id, t.name, t.language, t.status, t.category, t.quality, t.reason)
            for t in templates] == [
        ("991100220033", "order_ready", "en_US", TemplateStatus.APPROVED, "utility", "green", ""),
        ("991100220044", "spring_sale", "es_MX", TemplateStatus.REJECTED, "marketing", "", "INVALID_FORMAT"),
        ("991100220055", "payment_due", "en", TemplateStatus.PAUSED, "utility", "red", ""),
    ]
    order_ready, spring_sale, payment_due = templates
    assert order_ready.parameter_format == "positional"
    assert order_ready.components == [
        {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
        {"type": "BODY", "text": "Hi {{1}}, your order is ready for pickup at {{2}}."},
        {"type": "FOOTER", "text": "Reply STOP to opt out"},
        {"type": "BUTTONS", "buttons": [
            {"type": "URL", "text": "Track", "url": "https://shop.example.test/t/{{1}}"},
            {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+15550001111"}]}]
    assert order_ready.examples == {"header": {"1": "#4521"}, "body": {"1": "Ana", "2": "the Main Street store"},
                                    "buttons": {"0": "order-4521"}}
    assert spring_sale.parameter_format == "named"
    assert spring_sale.components[0] == {"type": "HEADER", "format": "IMAGE"}
    assert spring_sale.examples == {"header": {"url": "https://scontent.whatsapp.example.test/v/sample-spring.jpg"},
                                    "body": {"first_name": "Ana", "code": "SPRING20"}, "buttons": {"1": "SPRING20"}}
    assert payment_due.examples == {"body": {"1": "$25.00", "2": "May 3"}}
    assert payment_due.raw == fixture_json("meta", "template_list_page2.json")["data"][0]


def test_meta_list_error_is_classified(graph):
    graph.routes[META_TEMPLATES] = [Reply(429, fixture_bytes("meta", "template_error_80007.json"))]
    error = raised(lambda: meta_provider().list_templates())
    assert (error.code, error.retryable, error.throttled) == ("80007", True, True)
    assert "the template list" in str(error)


@pytest.mark.parametrize("template", [ORDER_READY, SPRING_SALE], ids=["positional", "named"])
def test_meta_conversion_round_trip(template):
    wire = to_whatsapp_components(template.components, template.examples, template.parameter_format)
    components, examples = from_whatsapp_components(wire)
    # The copy-code label does not travel (WhatsApp sets it); everything else comes back as it was.
    expected = json.loads(json.dumps(template.components).replace(', "text": "Copy code"', ""))
    assert (components, examples) == (expected, template.examples)


def test_meta_rejection_keeps_its_recommendation_apart_from_its_reason():
    stored = StoredWebhook(body=fixture_bytes("meta", "template_rejected.json"), headers={},
                           content_type="application/json", received_at=datetime(2026, 1, 1, tzinfo=UTC))
    (event,) = meta_provider().parse_webhook(stored)
    assert isinstance(event, TemplateStatusUpdate)
    assert (event.provider_template_id, event.name, event.language, event.status) == (
        "991100220033", "order_ready", "en_US", TemplateStatus.REJECTED)
    assert event.reason == "INVALID_FORMAT — The variable {{1}} is at the end of the body."
    assert event.recommendation == "Add text after the last variable."


# --- Twilio ----------------------------------------------------------------------------------------

@pytest.fixture
def content_api(fake):
    fake.routes[TWILIO_CONTENT] = [Reply.json(fixture_json("twilio", "content_created.json"), 201)]
    fake.routes[TWILIO_APPROVAL] = [Reply.json(fixture_json("twilio", "content_approval_received.json"), 201)]
    return fake


BASIC_AUTH = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
SPRING_JPG = "https://files.example.test/spring.jpg"
BODY = {"type": "BODY", "text": "Hi {{1}}, your order {{2}} has shipped."}
BODY_EXAMPLES = {"1": "Ana", "2": "#4521"}
CTA_BUTTONS = {"type": "BUTTONS", "buttons": [
    {"type": "URL", "text": "Track", "url": "https://shop.example.test/t/{{1}}"},
    {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+15550001111"},
    {"type": "COPY_CODE", "text": "Copy code"}]}
QUICK_REPLIES = {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Yes"},
                                                {"type": "QUICK_REPLY", "text": "No"}]}

# (our template, the Content types Twilio gets, the Content variables)
CONTENT_CASES = {
    "text": (definition(), {"twilio/text": {"body": BODY["text"]}}, BODY_EXAMPLES),
    "media": (definition(components=[{"type": "HEADER", "format": "IMAGE"}, BODY],
                         examples={"header": {"url": SPRING_JPG}, "body": BODY_EXAMPLES}),
              {"twilio/media": {"body": BODY["text"], "media": [SPRING_JPG]}}, BODY_EXAMPLES),
    "quick-reply": (definition(components=[BODY, QUICK_REPLIES]),
                    {"twilio/quick-reply": {"body": BODY["text"], "actions": [{"title": "Yes", "id": "Yes"},
                                                                             {"title": "No", "id": "No"}]}},
                    BODY_EXAMPLES),
    # Button variables are numbered after the body's: the URL's {{1}} becomes {{3}}, the coupon {{4}}.
    "call-to-action": (definition(components=[BODY, CTA_BUTTONS],
                                  examples={"body": BODY_EXAMPLES, "buttons": {"0": "order-4521", "2": "SAVE10"}}),
                       {"twilio/call-to-action": {"body": BODY["text"], "actions": [
                           {"type": "URL", "title": "Track", "url": "https://shop.example.test/t/{{3}}"},
                           {"type": "PHONE_NUMBER", "title": "Call us", "phone": "+15550001111"},
                           {"type": "COPY_CODE", "title": "Copy code", "code": "{{4}}"}]}},
                       {**BODY_EXAMPLES, "3": "order-4521", "4": "SAVE10"}),
    "card": (definition(components=[{"type": "HEADER", "format": "TEXT", "text": "Order {{3}}"}, BODY,
                                    {"type": "FOOTER", "text": "Reply STOP to opt out"},
                                    {"type": "BUTTONS", "buttons": [
                                        {"type": "QUICK_REPLY", "text": "Thanks"},
                                        {"type": "URL", "text": "Track", "url": "https://shop.example.test/t/{{1}}"}]}],
                        examples={"header": {"3": "#4521"}, "body": BODY_EXAMPLES, "buttons": {"1": "order-4521"}}),
             {"whatsapp/card": {"body": BODY["text"], "header_text": "Order {{3}}", "footer": "Reply STOP to opt out",
                                "actions": [{"type": "QUICK_REPLY", "title": "Thanks", "id": "Thanks"},
                                            {"type": "URL", "title": "Track",
                                             "url": "https://shop.example.test/t/{{4}}"}]}},
             {"3": "#4521", **BODY_EXAMPLES, "4": "order-4521"}),
    "media-card": (definition(components=[{"type": "HEADER", "format": "IMAGE"}, BODY, QUICK_REPLIES],
                              examples={"header": {"url": SPRING_JPG}, "body": BODY_EXAMPLES}),
                   {"whatsapp/card": {"body": BODY["text"], "media": [SPRING_JPG], "actions": [
                       {"type": "QUICK_REPLY", "title": "Yes", "id": "Yes"},
                       {"type": "QUICK_REPLY", "title": "No", "id": "No"}]}}, BODY_EXAMPLES),
    "named": (definition(parameter_format="named", components=[
                  {"type": "BODY", "text": "Hi {{first_name}}, your order {{order}} has shipped."},
                  {"type": "BUTTONS", "buttons": [
                      {"type": "URL", "text": "Track", "url": "https://shop.example.test/t/{{1}}"}]}],
                  examples={"body": {"first_name": "Ana", "order": "#4521"}, "buttons": {"0": "order-4521"}}),
              {"twilio/call-to-action": {"body": "Hi {{first_name}}, your order {{order}} has shipped.", "actions": [
                  {"type": "URL", "title": "Track", "url": "https://shop.example.test/t/{{button_0}}"}]}},
              {"first_name": "Ana", "order": "#4521", "button_0": "order-4521"}),
}


@pytest.mark.parametrize("case", CONTENT_CASES.values(), ids=CONTENT_CASES.keys())
def test_twilio_creates_a_content_then_asks_whatsapp_to_approve_it(content_api, case):
    template, types, variables = case
    submission = twilio_provider().submit_template(template)
    (create,) = content_api.hits(TWILIO_CONTENT)
    (approval,) = content_api.hits(TWILIO_APPROVAL)
    for request in (create, approval):
        assert request.method == "POST" and request.headers["authorization"] == BASIC_AUTH
        assert request.headers["content-type"] == "application/json"
    assert json_of(create) == {"friendly_name": "order_update", "language": "en", "variables": variables,
                               "types": types}
    assert json_of(approval) == {"name": "order_update", "category": "UTILITY"}
    assert (submission.provider_template_id, submission.status, submission.reason) == (
        CONTENT_SID, TemplateStatus.PENDING, "")
    assert submission.raw == {"content": fixture_json("twilio", "content_created.json"),
                              "approval": fixture_json("twilio", "content_approval_received.json")}


@pytest.mark.parametrize("case", CONTENT_CASES.values(), ids=CONTENT_CASES.keys())
def test_twilio_conversion_round_trip(case):
    template = case[0]
    request = content_request(template, template.name)
    assert canonical_from_types(request["types"], request["variables"]) == (template.components, template.examples)


def test_twilio_send_fills_the_variables_the_created_content_declares(content_api):
    """The numbering a Content is created with is the numbering a send uses."""
    variables = CONTENT_CASES["card"][2]
    content_api.routes[TWILIO_MESSAGES] = [Reply.json(fixture_json("twilio", "outbound_created.json"), 201)]
    outbound = OutboundTemplate(
        name="order_update", language="en", provider_template_id=CONTENT_SID,
        header=(TemplateParameter("3", "#9"),), body=(TemplateParameter("1", "Bo"), TemplateParameter("2", "#9")),
        # A quick reply's id is fixed in the Content: it takes no variable.
        buttons=(TemplateButtonParameter(0, "quick_reply", "Thanks"), TemplateButtonParameter(1, "url", "order-9")))
    twilio_provider().send(OutboundMessage(to=(Identity(IdentityKind.PHONE, "+15551230001"),),
                                           message_type=MessageType.TEMPLATE, template=outbound))
    (send,) = content_api.hits(TWILIO_MESSAGES)
    sent = json.loads(parse_qs(send.body.decode())["ContentVariables"][0])
    assert sent == {"3": "#9", "1": "Bo", "2": "#9", "4": "order-9"}
    assert sent.keys() == variables.keys()


def test_twilio_later_versions_get_their_own_whatsapp_name_and_the_answer_maps(content_api):
    content_api.routes[TWILIO_APPROVAL] = [Reply.json(fixture_json("twilio", "content_approval_rejected.json"), 201)]
    submission = twilio_provider().submit_template(definition(version=2))
    (create,) = content_api.hits(TWILIO_CONTENT)
    (approval,) = content_api.hits(TWILIO_APPROVAL)
    # Twilio Content cannot be edited: every version is a new Content.
    assert json_of(create)["friendly_name"] == "order_update_v2"
    assert json_of(approval) == {"name": "order_update_v2", "category": "UTILITY"}
    assert (submission.status, submission.reason) == (
        TemplateStatus.REJECTED, "The template's variable parameters are not formatted correctly.")


@pytest.mark.parametrize(("template", "words"), [
    (definition(components=[{"type": "HEADER", "format": "LOCATION"}, BODY]), "location header"),
    (definition(components=[BODY, {"type": "BUTTONS", "buttons": [{"type": "FLOW", "text": "Book"}]}]),
     "flow buttons"),
    (definition(components=[{"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"}, BODY],
                examples={"header": {"1": "#4521"}, "body": BODY_EXAMPLES}), "both use {{1}}"),
    (definition(category="authentication"), "authentication templates"),
    (definition(parameter_format="named", components=[{"type": "BODY", "text": "Hi {{first_name_of_customer}}!"}],
                examples={"body": {"first_name_of_customer": "Ana"}}), "longer than 16 characters"),
], ids=["location", "flow", "shared-variable", "authentication", "long-name"])
def test_twilio_refuses_what_it_cannot_express_before_calling(content_api, template, words):
    error = raised(lambda: twilio_provider().submit_template(template))
    assert (error.code, error.retryable) == ("template_unsupported", False)
    assert words in str(error)
    assert content_api.requests == []


def test_twilio_rate_limit_on_create_is_retryable(content_api):
    content_api.routes[TWILIO_CONTENT] = [Reply(429, fixture_bytes("twilio", "content_error_20429.json"),
                                                {"Content-Type": "application/json", "Retry-After": "5"})]
    error = raised(lambda: twilio_provider().submit_template(definition()))
    assert (error.code, error.retryable, error.throttled, error.retry_after) == ("20429", True, True, 5.0)
    assert content_api.hits(TWILIO_APPROVAL) == []


def test_twilio_refused_approval_names_the_content_left_behind(content_api):
    content_api.routes[TWILIO_APPROVAL] = [Reply.json(fixture_json("twilio", "content_error_400.json"), 400)]
    error = raised(lambda: twilio_provider().submit_template(definition()))
    assert (error.code, error.retryable, error.http_status) == ("21656", False, 400)
    assert "WhatsApp approval request" in str(error) and f"content {CONTENT_SID} was created" in str(error)


def test_twilio_list_reads_every_page_and_skips_contents_never_submitted(content_api):
    content_api.routes[TWILIO_LIST] = [Reply.json(fixture_json("twilio", "content_and_approvals_page1.json")),
                                       Reply.json(fixture_json("twilio", "content_and_approvals_page2.json"))]
    templates = twilio_provider().list_templates()
    first, second = content_api.hits(TWILIO_LIST)
    assert first.headers["authorization"] == BASIC_AUTH
    assert parse_qs(first.query) == {"PageSize": ["100"]}
    # Twilio's next_page_url names content.twilio.com; the next page still comes from the configured host.
    assert parse_qs(second.query)["PageToken"] == ["PAHX0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a02"]

    order_update, spring_sale = templates
    assert (order_update.provider_template_id, order_update.name, order_update.language, order_update.status,
            order_update.category, order_update.parameter_format, order_update.reason) == (
        "HX0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a01", "order_update", "en", TemplateStatus.APPROVED, "utility",
        "positional", "")
    assert order_update.components == [
        {"type": "BODY", "text": "Hi {{1}}, your order {{2}} has shipped."},
        {"type": "BUTTONS", "buttons": [
            {"type": "URL", "text": "Track", "url": "https://shop.example.test/t/{{1}}"},
            {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+15550001111"}]}]
    assert order_update.examples == {"body": {"1": "Ana", "2": "#4521"}, "buttons": {"0": "order-4521"}}

    assert (spring_sale.name, spring_sale.language, spring_sale.status, spring_sale.category,
            spring_sale.parameter_format, spring_sale.reason) == (
        "spring_sale_v2", "es_MX", TemplateStatus.REJECTED, "marketing", "named",
        "Marketing content is not allowed in this category.")
    assert spring_sale.components == [
        {"type": "HEADER", "format": "TEXT", "text": "Spring sale"},
        {"type": "BODY", "text": "{{first_name}}, everything is 20% off this week."},
        {"type": "FOOTER", "text": "Offer ends Sunday"},
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Not interested"},
                                        {"type": "COPY_CODE", "text": "Copy code"}]}]
    assert spring_sale.examples == {"body": {"first_name": "Ana"}, "buttons": {"1": "SPRING20"}}


def test_twilio_list_error_is_classified(content_api):
    content_api.routes[TWILIO_LIST] = [Reply(429, fixture_bytes("twilio", "content_error_20429.json"),
                                             {"Content-Type": "application/json"})]
    error = raised(lambda: twilio_provider().list_templates())
    assert (error.code, error.retryable, error.throttled) == ("20429", True, True)
    assert "the content list" in str(error)


# --- Chatwoot --------------------------------------------------------------------------------------

def test_chatwoot_imports_the_templates_its_inbox_synced_from_meta(fake):
    fake.routes[CHATWOOT_INBOX] = [Reply.json(fixture_json("chatwoot", "template_inbox.json"))]
    reminder, welcome = chatwoot_provider(fake.url).list_templates()
    (request,) = fake.hits(CHATWOOT_INBOX)
    assert request.method == "GET" and request.headers["api_access_token"] == CHATWOOT_TOKEN
    assert (reminder.provider_template_id, reminder.name, reminder.language, reminder.status, reminder.category) == (
        "991100220066", "appointment_reminder", "pt_BR", TemplateStatus.APPROVED, "utility")
    assert reminder.components == [
        {"type": "BODY", "text": "Olá {{1}}, lembrete da sua consulta em {{2}}."},
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Confirmar"},
                                        {"type": "QUICK_REPLY", "text": "Remarcar"}]}]
    assert reminder.examples == {"body": {"1": "Ana", "2": "12/05 às 14h"}}
    assert (welcome.status, welcome.category, welcome.parameter_format, welcome.examples) == (
        TemplateStatus.PENDING, "marketing", "positional", {})


def test_chatwoot_without_templates_and_with_errors(fake):
    fake.routes[CHATWOOT_INBOX] = [Reply.json(fixture_json("chatwoot", "outbound_inbox.json")),
                                   Reply.json(fixture_json("chatwoot", "outbound_error_401.json"), 401)]
    provider = chatwoot_provider(fake.url)
    assert provider.list_templates() == []
    error = raised(provider.list_templates)
    assert (error.code, error.retryable) == ("http_401", False)
    error = raised(lambda: provider.submit_template(definition()))
    assert error.code == "not_supported"


# --- Sandbox ---------------------------------------------------------------------------------------

def test_sandbox_approves_at_once_and_holds_nothing_of_its_own():
    sandbox = backend_for(Provider(kind="sandbox", name="s", credentials={"webhook_secret": "x"}))
    submission = sandbox.submit_template(definition())
    assert re.fullmatch(r"sandbox-tpl-[0-9a-f]{32}", submission.provider_template_id)
    assert submission.status == TemplateStatus.APPROVED
    second = sandbox.submit_template(definition(version=2))
    assert second.provider_template_id != submission.provider_template_id and second.status == TemplateStatus.APPROVED
    assert sandbox.list_templates() == []
