"""
Reply buttons and lists through Twilio, on the local fake through the real twilio SDK: each goes out as a
Content (twilio/quick-reply or twilio/list-picker, POST /v1/Content) and then a message naming its
ContentSid; one Content per wording and account, its SID kept in Django's cache (Redis); what Twilio
cannot carry is refused before any call; the customer's tap or choice comes back with the id we sent.
"""

import base64
import re
import uuid
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
import redis
from django.core.cache import cache

from tests.conftest import fixture_bytes, fixture_json
from tests.fakes import Reply, form_of, json_of, twilio_content_created, twilio_message_created
from tests.whatsapp.providers.conftest import TWILIO_TOKEN, raised
from whatsapp.models import Provider
from whatsapp.providers import backend_for
from whatsapp.providers.events import (
    Identity,
    IdentityKind,
    InboundMessage,
    MessageType,
    OutboundMessage,
    StoredWebhook,
)
from whatsapp.providers.twilio.interactive import content_cache_key, interactive_request
from whatsapp.providers.twilio.wire import CONTENT_CACHE_PREFIX

CONTENT = "/v1/Content"
CALLBACK = "https://platform.example.test/webhooks/twilio/abc/"
ANA = (Identity(IdentityKind.PHONE, "+15551230001"),)
BUTTONS = {"header": "Order 1234", "body": "Your delivery is due tomorrow.", "footer": "Acme Deliveries",
           "buttons": [{"id": "keep", "title": "Keep the date"}, {"id": "reschedule", "title": "Reschedule"}]}
LIST = {"body": "When should we come?", "button": "Pick a slot", "sections": [
    {"title": "Tuesday", "rows": [{"id": "slot-tue-am", "title": "Tuesday morning", "description": "8:00 to 12:00"},
                                  {"id": "slot-tue-pm", "title": "Tuesday afternoon"}]},
    {"title": "Wednesday", "rows": [{"id": "slot-wed-am", "title": "Wednesday morning"}]}]}


def messages_path(account: str) -> str:
    return f"/2010-04-01/Accounts/{account}/Messages.json"


def interactive(content: dict) -> OutboundMessage:
    return OutboundMessage(to=ANA, message_type=MessageType.INTERACTIVE, content=content,
                           status_callback_url=CALLBACK)


def provider(account: str):
    return backend_for(Provider(kind="twilio", name="t", business_account_id=account, phone_number="+14155238886",
                                credentials={"auth_token": TWILIO_TOKEN}))


@pytest.fixture
def new_account(settings):
    """Makes account SIDs never used before: cached Content SIDs are per account, so no test (and no
    earlier run) hands another its Content. Their cache entries are removed afterwards."""
    made = []

    def make() -> str:
        made.append("AC" + uuid.uuid4().hex)
        return made[-1]

    yield make
    if settings.REDIS_URL:
        client = redis.Redis.from_url(settings.REDIS_URL)
        for account in made:
            if keys := list(client.scan_iter(f"*{CONTENT_CACHE_PREFIX}{account}:*")):
                client.delete(*keys)
        client.close()


@pytest.fixture
def account(new_account):
    return new_account()


@pytest.fixture
def twilio(fake, account):
    """A Twilio provider whose REST API and Content API are the local fake, which creates every Content
    and accepts every message (a new sid each)."""
    fake.routes[CONTENT] = twilio_content_created
    fake.routes[messages_path(account)] = twilio_message_created
    return provider(account)


def content_sids(fake, account: str) -> list[str]:
    return [form_of(request)["ContentSid"][0] for request in fake.hits(messages_path(account))]


def test_buttons_go_as_a_quick_reply_content_then_a_message_naming_it(twilio, fake, account):
    result = twilio.send(interactive(BUTTONS))
    create, send = fake.requests
    assert (create.method, create.path, send.method, send.path) == ("POST", CONTENT, "POST", messages_path(account))
    assert create.headers["content-type"] == "application/json"
    assert create.headers["authorization"] == "Basic " + base64.b64encode(
        f"{account}:{TWILIO_TOKEN}".encode()).decode()
    request = json_of(create)
    # Quick replies have no header or footer: they are the body's first and last paragraphs.
    assert request == {"friendly_name": request["friendly_name"], "language": "en", "types": {"twilio/quick-reply": {
        "body": "Order 1234\n\nYour delivery is due tomorrow.\n\nAcme Deliveries",
        "actions": [{"title": "Keep the date", "id": "keep"}, {"title": "Reschedule", "id": "reschedule"}]}}}
    assert re.fullmatch(r"interactive_[0-9a-f]{24}", request["friendly_name"])
    form = form_of(send)
    sid = form["ContentSid"][0]
    assert re.fullmatch(r"HX[0-9a-f]{32}", sid)
    assert form == {"From": ["whatsapp:+14155238886"], "To": ["whatsapp:+15551230001"], "ContentSid": [sid],
                    "StatusCallback": [CALLBACK]}
    assert result.provider_message_id.startswith("SM") and result.raw["sid"] == result.provider_message_id
    _, digest = interactive_request(interactive(BUTTONS))
    assert cache.get(content_cache_key(account, digest)) == sid


def test_a_list_goes_as_a_list_picker_content_with_its_rows_in_order(twilio, fake, account):
    twilio.send(interactive(LIST))
    create, send = fake.requests
    # A list-picker has no sections: the rows of every section make one list.
    assert json_of(create)["types"] == {"twilio/list-picker": {
        "body": "When should we come?", "button": "Pick a slot", "items": [
            {"item": "Tuesday morning", "id": "slot-tue-am", "description": "8:00 to 12:00"},
            {"item": "Tuesday afternoon", "id": "slot-tue-pm"},
            {"item": "Wednesday morning", "id": "slot-wed-am"}]}}
    assert form_of(send).keys() == {"From", "To", "ContentSid", "StatusCallback"}


def test_the_same_wording_reuses_its_content_and_another_gets_its_own(twilio, fake, account):
    twilio.send(interactive(BUTTONS))
    twilio.send(interactive(BUTTONS))
    assert len(fake.hits(CONTENT)) == 1
    first, second = content_sids(fake, account)
    assert first == second

    twilio.send(interactive({**BUTTONS, "body": "Your delivery is due on Friday."}))
    assert len(fake.hits(CONTENT)) == 2
    assert content_sids(fake, account)[2] != first


def test_another_account_creates_its_own_content(twilio, fake, account, new_account):
    twilio.send(interactive(LIST))
    other = new_account()
    fake.routes[messages_path(other)] = twilio_message_created
    provider(other).send(interactive(LIST))
    # A Content SID works only in the account that created it.
    assert len(fake.hits(CONTENT)) == 2
    assert content_sids(fake, account) != content_sids(fake, other)


def test_over_long_titles_are_cut_to_twilios_limits(twilio, fake):
    twilio.send(interactive({"body": "Which one?", "buttons": [
        {"id": "a", "title": "Reschedule the delivery"}, {"id": "b", "title": "Exactly twenty chars"}]}))
    twilio.send(interactive({"body": "Which one?", "button": "Choose a delivery slot", "sections": [{"rows": [
        {"id": "r1", "title": "Tuesday morning, before noon", "description": "d" * 80}]}]}))
    buttons, listing = (json_of(request)["types"] for request in fake.hits(CONTENT))
    assert [action["title"] for action in buttons["twilio/quick-reply"]["actions"]] == [
        "Reschedule the deli…", "Exactly twenty chars"]
    (item,) = listing["twilio/list-picker"]["items"]
    assert (item["item"], item["description"]) == ("Tuesday morning, before…", "d" * 71 + "…")
    assert listing["twilio/list-picker"]["button"] == "Choose a delivery s…"
    assert [len(text) for text in (item["item"], item["description"], listing["twilio/list-picker"]["button"])] == [
        24, 72, 20]


ROWS = [{"id": f"r{n}", "title": f"Row {n}"} for n in range(11)]
REFUSED = {
    "four buttons": ({"body": "Pick", "buttons": [{"id": str(n), "title": str(n)} for n in range(4)]}, "4 buttons"),
    "eleven rows": ({"body": "Pick", "button": "Open", "sections": [{"rows": ROWS}]}, "has 11"),
    "buttons and a list": ({"body": "Pick", "buttons": [{"id": "a", "title": "A"}], "button": "Open",
                            "sections": [{"rows": ROWS[:1]}]}, "either buttons"),
    "no choices": ({"body": "Pick"}, "either buttons"),
    "no body": ({"buttons": [{"id": "a", "title": "A"}]}, "no body"),
    "an id too long to come back unchanged": ({"body": "Pick", "buttons": [{"id": "x" * 201, "title": "A"}]},
                                              "201 characters"),
    "no title": ({"body": "Pick", "buttons": [{"id": "a", "title": " "}]}, "needs a title"),
    "the same id twice": ({"body": "Pick", "buttons": [{"id": "a", "title": "A"}, {"id": "a", "title": "B"}]},
                          "button ids must differ"),
    "titles the same once cut": ({"body": "Pick", "buttons": [{"id": "a", "title": "Reschedule the delivery"},
                                                              {"id": "b", "title": "Reschedule the delivery!"}]},
                                 "button titles"),
    "a list without its button": ({"body": "Pick", "sections": [{"rows": ROWS[:2]}]}, "label of the button"),
    "a body over 1024 characters": ({"body": "b" * 1020, "header": "Header", "buttons": [{"id": "a", "title": "A"}]},
                                    "1028 characters"),
}


@pytest.mark.parametrize("content, words", REFUSED.values(), ids=REFUSED.keys())
def test_what_twilio_cannot_carry_is_refused_before_any_call(twilio, fake, content, words):
    error = raised(lambda: twilio.send(interactive(content)))
    assert (error.code, error.retryable, error.title) == ("invalid_interactive", False, "Invalid interactive message")
    assert str(error).startswith("Twilio cannot send this interactive message") and words in str(error)
    assert fake.requests == []


def test_a_content_deleted_at_twilio_is_created_again(twilio, fake, account):
    twilio.send(interactive(BUTTONS))
    fake.routes[messages_path(account)] = [Reply.json(fixture_json("twilio", "outbound_error_21655.json"), 400),
                                           twilio_message_created]
    result = twilio.send(interactive(BUTTONS))
    assert result.provider_message_id.startswith("SM")
    assert len(fake.hits(CONTENT)) == 2
    first, refused, resent = content_sids(fake, account)
    assert refused == first and resent != first
    _, digest = interactive_request(interactive(BUTTONS))
    assert cache.get(content_cache_key(account, digest)) == resent


def test_a_refused_content_creation_is_classified_and_sends_nothing(twilio, fake, account):
    fake.routes[CONTENT] = [Reply(429, fixture_bytes("twilio", "content_error_20429.json"),
                                  {"Content-Type": "application/json", "Retry-After": "5"})]
    error = raised(lambda: twilio.send(interactive(LIST)))
    assert (error.code, error.retryable, error.throttled, error.retry_after) == ("20429", True, True, 5.0)
    assert "the interactive content" in str(error)
    assert fake.hits(messages_path(account)) == []
    _, digest = interactive_request(interactive(LIST))
    assert cache.get(content_cache_key(account, digest)) is None


def test_the_message_refused_after_the_content_was_made_keeps_the_content(twilio, fake, account):
    fake.routes[messages_path(account)] = [Reply.json(fixture_json("twilio", "outbound_error_63016.json"), 400),
                                           twilio_message_created]
    error = raised(lambda: twilio.send(interactive(BUTTONS)))
    assert (error.code, error.retryable) == ("63016", False)
    twilio.send(interactive(BUTTONS))
    assert len(fake.hits(CONTENT)) == 1
    assert len(set(content_sids(fake, account))) == 1


# --- the customer's answer ------------------------------------------------------------------------

def parsed(name: str) -> InboundMessage:
    body = urlencode(fixture_json("twilio", name)).encode()
    stored = StoredWebhook(body=body, headers={}, content_type="application/x-www-form-urlencoded",
                           received_at=datetime(2026, 3, 2, tzinfo=UTC))
    (event,) = provider("AC" + "1f" * 16).parse_webhook(stored)
    assert isinstance(event, InboundMessage)
    return event


@pytest.mark.parametrize("name, content", [
    # A tap on a quick reply: ButtonPayload is the action's id, ButtonText its title.
    ("inbound_interactive_button.json", {"kind": "button_reply", "id": "reschedule", "title": "Reschedule"}),
    # A choice from a list-picker: ListId is the item's id, ListTitle its text.
    ("inbound_list_reply.json", {"kind": "list_reply", "id": "slot-tue-am", "title": "Tuesday morning",
                                 "description": "8:00 to 12:00"}),
])
def test_a_tap_or_a_choice_comes_back_with_the_id_we_sent(name, content):
    event = parsed(name)
    assert (event.message_type, event.content) == (MessageType.INTERACTIVE_REPLY, content)
    assert event.text == content["title"]
    sent_ids = [button["id"] for button in BUTTONS["buttons"]] + [
        row["id"] for section in LIST["sections"] for row in section["rows"]]
    assert content["id"] in sent_ids
