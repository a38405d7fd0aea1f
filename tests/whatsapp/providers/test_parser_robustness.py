"""
Whatever JSON a signed webhook carries, a provider's parser returns events (unknown shapes become
"unhandled" notes); it never raises on a body the body check accepts (NaN and Infinity are refused there,
with a 400), so an odd payload cannot leave an inbox row failing forever.
"""

from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whatsapp.models import Provider
from whatsapp.providers import backend_for
from whatsapp.providers.base import BodyUndecodable, json_body_decode
from whatsapp.providers.events import StoredWebhook

pytestmark = pytest.mark.django_db

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12))
json_values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=3), st.dictionaries(st.text(max_size=10), children, max_size=4)), max_leaves=20)


def _keyed(keys: list[str]):
    """Dictionaries that use the provider's own keys (with any values) so the parser goes deep."""
    return st.dictionaries(st.sampled_from(keys), json_values, max_size=len(keys))


META_KEYS = ["object", "entry", "id", "changes", "field", "value", "metadata", "phone_number_id", "contacts",
             "messages", "statuses", "errors", "from", "type", "text", "timestamp", "context", "wa_id", "profile",
             "image", "interactive", "reaction", "status", "event", "message_template_id"]
CHATWOOT_KEYS = ["event", "id", "message_type", "private", "content", "content_type", "content_attributes",
                 "conversation", "sender", "inbox", "attachments", "created_at", "meta", "contact_inbox",
                 "source_id", "status", "phone_number", "email", "echo_id", "updated_at", "inbox_id"]
meta_bodies = st.fixed_dictionaries({"entry": st.lists(st.fixed_dictionaries(
    {"changes": st.lists(st.fixed_dictionaries({"field": st.sampled_from(["messages", "x"]),
                                                "value": _keyed(META_KEYS)}), max_size=3)}), max_size=2)})
chatwoot_bodies = st.fixed_dictionaries({"event": st.sampled_from(
    ["message_created", "message_updated", "conversation_created", "contact_updated", "other"])}).flatmap(
    lambda head: _keyed(CHATWOOT_KEYS).map(lambda rest: {**rest, **head}))
twilio_forms = st.dictionaries(st.sampled_from(
    ["MessageSid", "From", "WaId", "Body", "NumMedia", "MediaUrl0", "MediaContentType0", "MessageStatus",
     "Latitude", "Longitude", "ButtonPayload", "ExternalUserId", "MessageType"]), st.text(max_size=12), max_size=8)

NOW = datetime(2026, 11, 23, tzinfo=UTC)
QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _provider(kind: str) -> Provider:
    return Provider(kind=kind, name=kind, external_id="1", business_account_id="2",
                    config={"base_url": "https://chat.example.test"}, credentials={})


def _accepted(body: bytes) -> bool:
    """Whether the body check lets it through (the parser only ever sees such bodies)."""
    try:
        json_body_decode(body)
    except BodyUndecodable:
        return False
    return True


@QUICK
@given(body=meta_bodies)
def test_meta_parser_never_raises(body):
    import json

    raw = json.dumps(body).encode()
    if not _accepted(raw):
        return
    events = backend_for(_provider("meta")).parse_webhook(StoredWebhook(raw, {}, "application/json", NOW))
    assert isinstance(events, list)


@QUICK
@given(body=chatwoot_bodies)
def test_chatwoot_parser_never_raises(body):
    import json

    raw = json.dumps(body).encode()
    if not _accepted(raw):
        return
    events = backend_for(_provider("chatwoot")).parse_webhook(StoredWebhook(raw, {}, "application/json", NOW))
    assert len(events) == 1


@QUICK
@given(form=twilio_forms)
def test_twilio_parser_never_raises(form):
    events = backend_for(_provider("twilio")).parse_webhook(
        StoredWebhook(urlencode(form).encode(), {}, "application/x-www-form-urlencoded", NOW))
    assert len(events) == 1


@QUICK
@given(value=st.recursive(st.text(st.characters(exclude_categories=()))  # lone surrogates and NULs included
                          | st.integers() | st.booleans() | st.none(),
                          lambda children: st.lists(children, max_size=4)
                          | st.dictionaries(st.text(st.characters(exclude_categories=()), max_size=6), children,
                                            max_size=4), max_leaves=20),
       ensure_ascii=st.booleans())
def test_decoded_strings_never_hold_what_postgresql_refuses(value, ensure_ascii):
    """Whatever text a body carries (NULs, lone surrogates, escaped or not), every decoded string and key
    is fit for a jsonb column, and a body needing no cleaning comes back as json.loads reads it."""
    import json

    raw = json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")
    decoded = json_body_decode(raw)
    strings, stack = [], [decoded]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings.append(item)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            strings.extend(item)
            stack.extend(item.values())
    for text in strings:
        assert "\x00" not in text
        text.encode("utf-8")  # no lone surrogate
    if "\\u0000" not in raw.decode("utf-8", "surrogatepass") and all(
            not 0xD800 <= ord(char) <= 0xDFFF for char in json.dumps(value, ensure_ascii=False)):
        assert decoded == json.loads(raw.decode("utf-8", "surrogatepass"))
