"""
Generated webhook bodies, shaped like each provider's payloads with random leaves (huge numbers, deep
nesting, long strings, NULs, lone surrogates, values of the wrong type), signed as each provider signs and
POSTed over real HTTP to the live server, then processed as the worker does. No answer is a 5xx, and
every acknowledged event ends `processed` or given up with a reason: none is left pending or retrying.
"""

import json
from collections import Counter
from urllib.parse import parse_qsl, quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.signing import (
    META_PHONE_NUMBER_ID,
    chatwoot_headers,
    make_chatwoot,
    make_meta,
    make_twilio,
    meta_headers,
    twilio_headers,
    webhook_path,
)
from whatsapp import sandbox_phone
from whatsapp.models import WebhookEvent
from whatsapp.services.providers import provider_create
from whatsapp.services.webhooks import webhook_event_process

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CASES_PER_PROVIDER = 120
FUZZ = settings(max_examples=CASES_PER_PROVIDER, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

ODD_TEXT = ["\x00", "a\x00b", "\ud800", "x\udfff", "\ufeff", "é" * 300, "9" * 400, "whatsapp:" + "1" * 300,
            "2026-13-45T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "NaN", "-1",
            "__DEEP__", "__BIGINT__"]
# Leaves json.dumps cannot write itself, put in the text in place of these markers.
RAW_LEAVES = {'"__DEEP__"': "[" * 3000 + "]" * 3000, '"__BIGINT__"': "9" * 5000}
ODD_NUMBERS = [2**31, 2**63, 2**70, -(2**70), 10**99, 10**101, 1e308, 1e400, float("nan"), -0.0]


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from(ODD_NUMBERS), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from(ODD_TEXT), st.text(min_size=120, max_size=300), st.integers(min_value=1, max_value=80).map(_nested),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def like(plausible):
    """The provider's own kind of value (three times in four), or any odd leaf in its place."""
    return st.one_of(plausible, plausible, plausible, leaves)


def obj(required: dict, optional: dict | None = None):
    return st.fixed_dictionaries({key: like(value) for key, value in required.items()},
                                 optional={key: like(value) for key, value in (optional or {}).items()})


ids = st.one_of(st.text(alphabet="abcdef0123456789.-", min_size=1, max_size=40), st.integers(0, 10**12))
phones = st.from_regex(r"\+?[1-9][0-9]{6,14}", fullmatch=True)
unix_times = st.one_of(st.integers(0, 2**34), st.integers(0, 2**34).map(str))
names = st.text(max_size=30)

meta_message = obj({"from": phones, "id": ids, "timestamp": unix_times,
                    "type": st.sampled_from(["text", "image", "reaction", "interactive", "location", "system", "x"])},
                   {"text": obj({"body": names}), "image": obj({"id": ids, "mime_type": names, "sha256": names}),
                    "reaction": obj({"message_id": ids, "emoji": names}), "from_user_id": ids,
                    "context": obj({"id": ids, "forwarded": st.booleans()}),
                    "interactive": obj({"type": st.just("button_reply"), "button_reply": obj({"id": ids,
                                                                                              "title": names})}),
                    "location": obj({"latitude": st.floats(), "longitude": st.floats(), "name": names}),
                    "system": obj({"body": names, "wa_id": phones})})
meta_status = obj({"id": ids, "status": st.sampled_from(["sent", "delivered", "read", "failed", "x"]),
                   "timestamp": unix_times, "recipient_id": phones},
                  {"errors": st.lists(obj({"code": ids, "title": names}), max_size=2),
                   "biz_opaque_callback_data": ids})
meta_value = obj({"metadata": obj({"phone_number_id": st.just(META_PHONE_NUMBER_ID)}),
                  "contacts": st.lists(obj({"wa_id": phones, "profile": obj({"name": names})}), max_size=2),
                  "messages": st.lists(meta_message, min_size=1, max_size=4),
                  "statuses": st.lists(meta_status, max_size=3)})
meta_template = obj({"event": st.sampled_from(["APPROVED", "REJECTED"]), "message_template_id": ids,
                     "message_template_name": names, "message_template_language": names, "reason": names})
meta_bodies = st.fixed_dictionaries({
    "object": st.just("whatsapp_business_account"),
    "entry": st.lists(st.fixed_dictionaries({"id": like(ids), "time": like(unix_times), "changes": st.lists(
        st.one_of(st.fixed_dictionaries({"field": st.just("messages"), "value": meta_value}),
                  st.fixed_dictionaries({"field": st.just("messages"), "value": meta_value}),
                  st.fixed_dictionaries({"field": st.just("message_template_status_update"),
                                         "value": like(meta_template)})), min_size=1, max_size=3)}),
        min_size=1, max_size=2)})

chatwoot_contact = obj({"id": ids, "name": names, "phone_number": phones, "email": names})
chatwoot_bodies = st.fixed_dictionaries(
    {"event": st.sampled_from(["message_created", "message_updated", "conversation_created", "contact_updated"])},
    optional={key: like(value) for key, value in {
        "id": ids, "message_type": st.sampled_from(["incoming", "outgoing", 0, 1, 3]), "private": st.booleans(),
        "content": names, "content_type": st.sampled_from(["text", "sticker"]), "created_at": unix_times,
        "updated_at": unix_times, "status": st.sampled_from(["sent", "delivered", "failed", "open"]),
        "source_id": ids, "echo_id": ids, "sender": chatwoot_contact, "name": names, "phone_number": phones,
        "inbox": obj({"id": st.just(7)}), "inbox_id": st.just(7),
        "content_attributes": obj({}, {"in_reply_to": ids, "external_error": names, "echo_id": ids}),
        "attachments": st.lists(obj({"id": ids, "file_type": st.sampled_from(["image", "audio", "location", "x"]),
                                     "data_url": st.just("https://chat.example.test/f.png"), "extension": names,
                                     "file_size": st.integers()}), max_size=2),
        "conversation": obj({"id": ids, "inbox_id": st.just(7)},
                            {"contact_inbox": obj({"source_id": ids}), "meta": obj({"sender": chatwoot_contact}),
                             "messages": st.lists(obj({"id": ids, "status": names}), max_size=2)}),
    }.items()})

sandbox_event = obj({"type": st.sampled_from(["message", "status", "x"]), "id": ids, "from": phones,
                     "timestamp": unix_times},
                    {"name": names, "text": names, "message_id": ids, "status": st.sampled_from(["sent", "read"]),
                     "error": obj({"code": ids, "title": names}), "reply_to": ids})
sandbox_bodies = st.fixed_dictionaries({"events": st.lists(sandbox_event, min_size=1, max_size=4)})

TWILIO_FIELDS = ["MessageSid", "SmsSid", "From", "WaId", "Body", "ProfileName", "NumMedia", "MediaUrl0",
                 "MediaContentType0", "MessageStatus", "ErrorCode", "Latitude", "Longitude", "ButtonPayload",
                 "ButtonText", "ExternalUserId", "MessageType", "OriginalRepliedMessageSid", "Forwarded"]
twilio_text = st.one_of(st.text(max_size=20), st.sampled_from(ODD_TEXT), st.sampled_from(["inf", "nan", "1e400"]),
                        st.text(min_size=120, max_size=300))
twilio_forms = st.tuples(
    st.fixed_dictionaries({"MessageSid": st.one_of(st.from_regex(r"SM[0-9a-f]{32}", fullmatch=True), twilio_text)}),
    st.lists(st.tuples(st.sampled_from(TWILIO_FIELDS), twilio_text), max_size=8),
).map(lambda parts: [*parts[0].items(), *parts[1]])


def _encoded(payload, encoding: str) -> bytes:
    text = json.dumps(payload, ensure_ascii=encoding == "ascii")
    for marker, raw in RAW_LEAVES.items():
        text = text.replace(marker, raw)
    if encoding in ("ascii", "utf-8"):
        return text.encode("utf-8", "surrogatepass")
    return text.encode(encoding, "surrogatepass")


encodings = st.sampled_from(["ascii", "utf-8", "utf-8-sig", "utf-16", "utf-32"])


class Fuzz:
    """Posts generated bodies and tallies what came back."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = httpx.Client(timeout=30)
        self.answers: Counter = Counter()
        self.outcomes: Counter = Counter()
        self.given_up: list[str] = []

    def post(self, provider, body: bytes, headers: dict[str, str], content_type: str = "application/json") -> None:
        response = self.http.post(self.base_url + webhook_path(provider), content=body,
                                  headers={"Content-Type": content_type, **headers})
        self.answers[f"{response.status_code // 100}xx"] += 1
        assert response.status_code < 500, (response.status_code, response.text, body[:500])
        if response.status_code != 200:
            assert json.loads(response.text)["error"]  # a readable reason
            return
        event = webhook_event_process(int(response.headers["X-Webhook-Event"]))
        event = WebhookEvent.objects.get(pk=event.pk)
        self.outcomes[event.status] += 1
        self.outcomes["updates"] += event.event_count
        self.outcomes["invalid updates"] += len(event.invalid_updates)
        assert event.status in ("processed", "failed"), (event.status, body[:500])
        if event.status == "failed":
            # Given up with the reason, never left to retry: nothing generated here is transient.
            assert event.next_attempt_at is None and event.last_error, (event.last_error, body[:500])
            self.given_up.append(event.last_error[:200])

    def report(self, kind: str) -> None:
        cases = sum(self.answers.values())
        print(f"\nfuzz {kind}: {cases} cases, answers {dict(self.answers)}, 5xx: {self.answers['5xx']}, "
              f"outcomes {dict(self.outcomes)}, given up: {self.given_up[:3]}")
        assert cases >= CASES_PER_PROVIDER


@pytest.fixture
def fuzz(live_server):
    runner = Fuzz(live_server.url)
    yield runner
    runner.http.close()


def test_meta(fuzz):
    provider = make_meta()

    @FUZZ
    @given(payload=meta_bodies, encoding=encodings)
    def run(payload, encoding):
        body = _encoded(payload, encoding)
        fuzz.post(provider, body, meta_headers(body))

    run()
    fuzz.report("meta")


def test_chatwoot(fuzz):
    provider = make_chatwoot()

    @FUZZ
    @given(payload=chatwoot_bodies, encoding=encodings)
    def run(payload, encoding):
        body = _encoded(payload, encoding)
        fuzz.post(provider, body, chatwoot_headers(body))

    run()
    fuzz.report("chatwoot")


def test_sandbox(fuzz):
    provider = provider_create(kind="sandbox", name="Sandbox fuzz", options={})

    @FUZZ
    @given(payload=sandbox_bodies, encoding=encodings)
    def run(payload, encoding):
        body = _encoded(payload, encoding)
        fuzz.post(provider, body, {"X-Sandbox-Signature": sandbox_phone.signed_headers(provider, body)[
            "X-Sandbox-Signature"]})

    run()
    fuzz.report("sandbox")


def test_twilio(fuzz):
    provider = make_twilio()
    path = webhook_path(provider)

    @FUZZ
    @given(fields=twilio_forms)
    def run(fields):
        body = "&".join(f"{quote(name)}={quote(value.encode('utf-8', 'surrogatepass'))}"
                        for name, value in fields).encode()
        # Twilio signs the parameters as the server reads them (a repeated one: its last value).
        signed = dict(parse_qsl(body.decode(), keep_blank_values=True, errors="replace"))
        fuzz.post(provider, body, twilio_headers(path, signed), "application/x-www-form-urlencoded")

    run()
    fuzz.report("twilio")


def test_a_chunked_body_over_http_is_never_a_5xx(live_server):
    provider = provider_create(kind="sandbox", name="Sandbox chunked", options={})
    body = json.dumps({"events": []}).encode()
    headers = {"Content-Type": "application/json", **{
        "X-Sandbox-Signature": sandbox_phone.signed_headers(provider, body)["X-Sandbox-Signature"]}}
    response = httpx.post(live_server.url + webhook_path(provider), content=iter([body]), headers=headers)
    # Django's development server hands the chunk framing through undecoded: the body is refused (411);
    # gunicorn decodes it and says so, and the body is read (test_webhook_edge_cases.py).
    assert response.status_code == 411 and "Content-Length" in response.json()["error"]
