"""The inbox over the API: assigning and labelling conversations, the inbox filters and order, labels and saved
replies."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from contacts.models import Contact
from core.api_tokens import api_token_create
from core.models import AuditLog
from tests.conftest import audit_actions, customer, refused, token_client, user_with_perms
from whatsapp.models import Conversation, Label, LabelColour, Message, SavedReply, Session
from whatsapp.services.providers import provider_create

pytestmark = pytest.mark.django_db

OPERATOR_PERMS = ("whatsapp.view_conversation", "whatsapp.change_conversation")


def conversation_of(contact: Contact) -> Conversation:
    return Conversation.objects.get(contact=contact)


def staff(username: str, **extra):
    return get_user_model().objects.create_user(username, password="pw-123456-strong", is_staff=True, **extra)


@pytest.fixture
def conversation(sandbox_provider):
    return conversation_of(customer(sandbox_provider))


@pytest.fixture
def labels(db):
    return {name: Label.objects.create(name=name) for name in ("billing", "vip", "urgent")}


def post_json(client, url: str, body):
    """POST a body, given as data or (for what the client cannot encode, such as a lone surrogate) as JSON text."""
    text = body if isinstance(body, str) else json.dumps(body)
    return client.generic("POST", url, text, content_type="application/json")


def label_names(conversation: Conversation) -> list[str]:
    return sorted(conversation.labels.values_list("name", flat=True))


# --- the conversation as the client sees it --------------------------------------------------------

def test_conversation_shows_labels_assignee_reply_state_and_last_message(api_client, sandbox_provider, say, labels):
    contact = say("+16505550101", "Where is my parcel?", name="Ana")
    conversation = conversation_of(contact)
    conversation.labels.add(labels["vip"], labels["billing"])
    agent = staff("agent")
    Conversation.objects.filter(pk=conversation.pk).update(assignee=agent)

    body = api_client.get(f"/api/v1/conversations/{conversation.pk}/").json()

    assert sorted(body["labels"]) == ["billing", "vip"]
    assert body["assignee"] == agent.pk and body["assignee_username"] == "agent"
    assert body["needs_reply"] is True and body["awaiting_reply_since"]
    assert body["last_message"] == {"text": "Where is my parcel?", "type": "text", "direction": "inbound"}
    assert body["session_open_until"]
    assert body["contact_name"] == "Ana"


def test_conversation_without_messages_or_assignee(api_client, conversation):
    body = api_client.get(f"/api/v1/conversations/{conversation.pk}/").json()
    assert body["labels"] == [] and body["assignee"] is None and body["assignee_username"] is None
    assert body["needs_reply"] is False and body["awaiting_reply_since"] is None
    assert body["last_message"] is None


# --- assigning -------------------------------------------------------------------------------------

def test_assign_to_a_user_then_me_then_nobody(api_client, superuser, conversation):
    agent = staff("agent")
    url = f"/api/v1/conversations/{conversation.pk}/assign/"

    response = api_client.post(url, {"assignee": agent.pk}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["assignee"] == agent.pk and response.json()["assignee_username"] == "agent"

    response = api_client.post(url, {"assignee": "me"}, format="json")
    assert response.status_code == 200 and response.json()["assignee_username"] == superuser.username

    response = api_client.post(url, {"assignee": None}, format="json")
    assert response.status_code == 200 and response.json()["assignee"] is None

    conversation.refresh_from_db()
    assert conversation.assignee is None
    assert audit_actions(conversation) == [("conversation.assign", "root"), ("conversation.assign", "root"),
                                           ("conversation.unassign", "root")]
    entry = AuditLog.objects.filter(action="conversation.unassign").get()
    assert entry.before == {"assignee": "root"} and entry.after == {"assignee": ""}


def test_assigning_a_non_staff_user_is_refused(api_client, conversation):
    customer_user = get_user_model().objects.create_user("shopper", password="pw-123456-strong")
    response = api_client.post(f"/api/v1/conversations/{conversation.pk}/assign/", {"assignee": customer_user.pk},
                               format="json")
    body = refused(response, 400, "not_assignable")
    assert "shopper" in body["detail"]
    inactive = staff("gone", is_active=False)
    refused(api_client.post(f"/api/v1/conversations/{conversation.pk}/assign/", {"assignee": inactive.pk},
                            format="json"), 400, "not_assignable")
    conversation.refresh_from_db()
    assert conversation.assignee is None and audit_actions(conversation) == []


@pytest.mark.parametrize("body", [{"assignee": 999999}, {"assignee": 10**30}])
def test_assigning_an_unknown_user_is_refused(api_client, conversation, body):
    refused(api_client.post(f"/api/v1/conversations/{conversation.pk}/assign/", body, format="json"),
            400, "unknown_user")


@pytest.mark.parametrize("body", [{}, {"assignee": True}, {"assignee": "someone"}, {"assignee": [1]},
                                  {"assignee": 1.5}, ["me"], "me"])
def test_malformed_assign_bodies_are_refused(api_client, conversation, body):
    body = refused(api_client.post(f"/api/v1/conversations/{conversation.pk}/assign/", body, format="json"),
                   400, "invalid_request")
    assert body["errors"]


def test_assigning_an_unknown_conversation_is_not_found(api_client, db):
    refused(api_client.post("/api/v1/conversations/424242/assign/", {"assignee": "me"}, format="json"),
            404, "not_found")


# --- labelling -------------------------------------------------------------------------------------

def test_labels_put_post_delete(api_client, conversation, labels):
    url = f"/api/v1/conversations/{conversation.pk}/labels/"

    response = api_client.put(url, {"labels": ["Billing", "VIP"]}, format="json")
    assert response.status_code == 200, response.content
    assert sorted(response.json()["labels"]) == ["billing", "vip"]

    response = api_client.post(url, {"labels": ["urgent", "vip"]}, format="json")
    assert sorted(response.json()["labels"]) == ["billing", "urgent", "vip"]

    response = api_client.delete(url, {"labels": ["BILLING"]}, format="json")
    assert response.status_code == 200 and sorted(response.json()["labels"]) == ["urgent", "vip"]

    response = api_client.put(url, {"labels": []}, format="json")
    assert response.status_code == 200 and response.json()["labels"] == []

    assert label_names(conversation) == []
    entries = list(AuditLog.objects.filter(action="conversation.labels").order_by("id").values_list("before", "after"))
    assert entries == [
        ({"labels": []}, {"labels": ["billing", "vip"]}),
        ({"labels": ["billing", "vip"]}, {"labels": ["billing", "urgent", "vip"]}),
        ({"labels": ["billing", "urgent", "vip"]}, {"labels": ["urgent", "vip"]}),
        ({"labels": ["urgent", "vip"]}, {"labels": []}),
    ]


def test_setting_the_same_labels_again_changes_and_audits_nothing(api_client, conversation, labels):
    url = f"/api/v1/conversations/{conversation.pk}/labels/"
    api_client.put(url, {"labels": ["vip"]}, format="json")
    assert api_client.post(url, {"labels": ["VIP"]}, format="json").status_code == 200
    assert AuditLog.objects.filter(action="conversation.labels").count() == 1


@pytest.mark.parametrize("method", ["put", "post", "delete"])
def test_unknown_label_names_are_refused_and_nothing_changes(api_client, conversation, labels, method):
    conversation.labels.add(labels["billing"])
    response = getattr(api_client, method)(f"/api/v1/conversations/{conversation.pk}/labels/",
                                           {"labels": ["vip", "nope", "Ghost"]}, format="json")
    body = refused(response, 400, "unknown_labels")
    assert body["unknown"] == ["nope", "Ghost"] and "nope" in body["detail"] and "Ghost" in body["detail"]
    assert label_names(conversation) == ["billing"]
    assert not AuditLog.objects.filter(action="conversation.labels").exists()


@pytest.mark.parametrize("body", ['{}', '{"labels": "vip"}', '{"labels": [{"name": "vip"}]}', '{"labels": [""]}',
                                  '{"labels": ["\\ud800"]}', json.dumps({"labels": ["x"] * 101}), "[]", "null",
                                  '{"labels": [', ""])
def test_malformed_label_bodies_are_refused(api_client, conversation, labels, body):
    response = api_client.generic("PUT", f"/api/v1/conversations/{conversation.pk}/labels/", body,
                                  content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] in {"invalid_request", "parse_error"}
    assert label_names(conversation) == []


# --- who may ---------------------------------------------------------------------------------------

def test_a_key_without_the_manage_scope_is_refused(sandbox_provider, conversation, labels, superuser):
    _, key = api_token_create(user=superuser, name="reader", scopes=["read"])
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert reader.get(f"/api/v1/conversations/{conversation.pk}/").status_code == 200
    refused(reader.post(f"/api/v1/conversations/{conversation.pk}/assign/", {"assignee": "me"}, format="json"),
            403, "insufficient_scope")
    refused(reader.put(f"/api/v1/conversations/{conversation.pk}/labels/", {"labels": ["vip"]}, format="json"),
            403, "insufficient_scope")
    refused(reader.post("/api/v1/labels/", {"name": "new"}, format="json"), 403, "insufficient_scope")
    conversation.refresh_from_db()
    assert conversation.assignee is None and label_names(conversation) == []


def test_a_user_without_the_change_permission_is_refused(conversation, labels):
    viewer = user_with_perms("viewer", "whatsapp.view_conversation")
    viewer.is_staff = True
    viewer.save()
    client = token_client(viewer)
    assert client.get(f"/api/v1/conversations/{conversation.pk}/").status_code == 200
    refused(client.post(f"/api/v1/conversations/{conversation.pk}/assign/", {"assignee": "me"}, format="json"),
            403, "permission_denied")
    refused(client.put(f"/api/v1/conversations/{conversation.pk}/labels/", {"labels": ["vip"]}, format="json"),
            403, "permission_denied")
    conversation.refresh_from_db()
    assert conversation.assignee is None and label_names(conversation) == []


def test_an_operator_with_the_change_permission_assigns_themselves(conversation, labels):
    operator = user_with_perms("operator", *OPERATOR_PERMS)
    operator.is_staff = True
    operator.save()
    client = token_client(operator)
    response = client.post(f"/api/v1/conversations/{conversation.pk}/assign/", {"assignee": "me"}, format="json")
    assert response.status_code == 200 and response.json()["assignee_username"] == "operator"
    assert client.post(f"/api/v1/conversations/{conversation.pk}/labels/", {"labels": ["vip"]},
                       format="json").json()["labels"] == ["vip"]


# --- filters and order -----------------------------------------------------------------------------

@pytest.fixture
def inbox(sandbox_provider, labels, superuser):
    """Four conversations: two waiting (the oldest wait first in the inbox), one answered, one closed."""
    now = timezone.now()
    rows = {}
    for name, phone in [("old_wait", "+16505550001"), ("new_wait", "+16505550002"), ("answered", "+16505550003"),
                        ("closed", "+16505550004")]:
        rows[name] = conversation_of(customer(sandbox_provider, phone, in_window=name != "closed"))
    Conversation.objects.filter(pk=rows["old_wait"].pk).update(
        awaiting_reply_since=now - timedelta(hours=3), last_message_at=now - timedelta(hours=3), assignee=superuser)
    Conversation.objects.filter(pk=rows["new_wait"].pk).update(
        awaiting_reply_since=now - timedelta(minutes=5), last_message_at=now - timedelta(minutes=5))
    Conversation.objects.filter(pk=rows["answered"].pk).update(last_message_at=now - timedelta(minutes=1))
    Conversation.objects.filter(pk=rows["closed"].pk).update(last_message_at=now - timedelta(days=3))
    # The answered one's window ends within the hour: "closing".
    Session.objects.filter(conversation=rows["answered"]).update(expires_at=now + timedelta(minutes=30))
    rows["new_wait"].labels.add(labels["vip"])
    rows["answered"].labels.add(labels["vip"], labels["billing"])
    return rows


def listed(client, **params) -> list[int]:
    response = client.get("/api/v1/conversations/", params)
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def ids(inbox, *names) -> list[int]:
    return [inbox[name].pk for name in names]


def test_needs_reply_filter(api_client, inbox):
    assert sorted(listed(api_client, needs_reply="true")) == sorted(ids(inbox, "old_wait", "new_wait"))
    assert sorted(listed(api_client, needs_reply="false")) == sorted(ids(inbox, "answered", "closed"))
    refused(api_client.get("/api/v1/conversations/", {"needs_reply": "maybe"}), 400, "invalid_request")


def test_label_filter_by_name_in_any_case(api_client, inbox):
    assert sorted(listed(api_client, label="VIP")) == sorted(ids(inbox, "new_wait", "answered"))
    assert listed(api_client, label="billing") == ids(inbox, "answered")
    assert listed(api_client, label="urgent") == []
    body = refused(api_client.get("/api/v1/conversations/", {"label": "nope"}), 400, "invalid_request")
    assert "nope" in body["detail"]


def test_window_filter(api_client, inbox, settings):
    settings.INBOX_WINDOW_CLOSING_MINUTES = 60
    assert sorted(listed(api_client, window="open")) == sorted(ids(inbox, "old_wait", "new_wait", "answered"))
    assert listed(api_client, window="closing") == ids(inbox, "answered")
    assert listed(api_client, window="closed") == ids(inbox, "closed")
    refused(api_client.get("/api/v1/conversations/", {"window": "ajar"}), 400, "invalid_request")


def test_assignee_filter_me_or_an_id(api_client, inbox, superuser):
    assert listed(api_client, assignee="me") == ids(inbox, "old_wait")
    assert listed(api_client, assignee=superuser.pk) == ids(inbox, "old_wait")
    assert len(listed(api_client, assignee__isnull="true")) == 3
    refused(api_client.get("/api/v1/conversations/", {"assignee": "someone"}), 400, "invalid_request")
    refused(api_client.get("/api/v1/conversations/", {"assignee": 987654}), 400, "invalid_request")


def test_filters_combine(api_client, inbox):
    assert listed(api_client, label="vip", needs_reply="true") == ids(inbox, "new_wait")


def test_ordering_waiting_is_the_inbox_order(api_client, inbox):
    assert listed(api_client, ordering="waiting") == ids(inbox, "old_wait", "new_wait", "answered", "closed")
    # The default: newest activity first.
    assert listed(api_client) == ids(inbox, "answered", "new_wait", "old_wait", "closed")
    assert listed(api_client, ordering="-waiting") == listed(api_client)  # one direction only, as if not asked
    # With a search across the contacts' identities (a DISTINCT query) and another field after it.
    assert listed(api_client, ordering="waiting,-created_at", search="+1650555") == listed(api_client,
                                                                                          ordering="waiting")


def test_list_query_count_is_constant(api_client, sandbox_provider, labels, superuser):
    def make(count: int, start: int):
        for number in range(start, start + count):
            conversation = conversation_of(customer(sandbox_provider, f"+1650555{number:04d}"))
            conversation.labels.add(labels["vip"], labels["billing"])
            Conversation.objects.filter(pk=conversation.pk).update(assignee=superuser)
            Message.objects.create(provider=sandbox_provider, conversation=conversation, direction="inbound",
                                   status="received", text=f"hello {number}",
                                   provider_message_id=f"sbx-count-{number}")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = api_client.get("/api/v1/conversations/", {"ordering": "waiting", "page_size": 100})
        assert response.status_code == 200
        return len(captured), response.json()["count"]

    make(5, 0)
    queries()  # once before counting: what a first request reads once (the key's last use) is not counted
    five, listed_five = queries()
    make(25, 100)
    thirty, listed_thirty = queries()
    assert (listed_five, listed_thirty) == (5, 30)
    assert five == thirty


# --- labels ----------------------------------------------------------------------------------------

def test_labels_crud_with_conversation_counts(api_client, conversation):
    response = api_client.post("/api/v1/labels/", {"name": " billing ", "colour": "red",
                                                   "description": "Invoices"}, format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["name"] == "billing" and created["colour"] == LabelColour.RED == "#b91c1c"
    assert created["conversation_count"] == 0
    label = Label.objects.get(pk=created["id"])
    conversation.labels.add(label)
    Label.objects.create(name="vip")

    listing = api_client.get("/api/v1/labels/").json()["results"]
    assert [(row["name"], row["conversation_count"]) for row in listing] == [("billing", 1), ("vip", 0)]

    response = api_client.patch(f"/api/v1/labels/{label.pk}/", {"colour": LabelColour.TEAL.value}, format="json")
    assert response.status_code == 200 and response.json()["colour"] == "#0f766e"
    assert response.json()["conversation_count"] == 1

    assert api_client.delete(f"/api/v1/labels/{label.pk}/").status_code == 204
    assert not Label.objects.filter(pk=label.pk).exists() and label_names(conversation) == []
    assert audit_actions(label) == [("label.create", "root"), ("label.change", "root"), ("label.delete", "root")]
    change = AuditLog.objects.get(action="label.change")
    assert change.before["colour"] == "#b91c1c" and change.after["colour"] == "#0f766e"


@pytest.mark.parametrize("body, field", [
    ({"name": "x", "colour": "#123456"}, "colour"),
    ({"name": "x", "colour": "chartreuse"}, "colour"),
    ({"name": "VIP"}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 41}, "name"),
    ('{"name": "\\ud800"}', "name"),
    ({"name": "x", "colour": ["red"]}, "colour"),
    ({}, "name"),
])
def test_invalid_labels_are_refused(api_client, db, body, field):
    Label.objects.create(name="vip")
    body = refused(post_json(api_client, "/api/v1/labels/", body), 400, "invalid_request")
    assert field in body["errors"]
    assert Label.objects.count() == 1


def test_a_bad_colour_names_the_palette(api_client, db):
    body = refused(api_client.post("/api/v1/labels/", {"name": "x", "colour": "#123456"}, format="json"),
                   400, "invalid_request")
    assert "#b91c1c (red)" in body["detail"]


def test_labels_need_the_label_permissions(db):
    Label.objects.create(name="vip")
    viewer = token_client(user_with_perms("viewer", "whatsapp.view_label"))
    assert viewer.get("/api/v1/labels/").status_code == 200
    refused(viewer.post("/api/v1/labels/", {"name": "new"}, format="json"), 403, "permission_denied")
    editor = token_client(user_with_perms("editor", "whatsapp.view_label", "whatsapp.add_label"))
    assert editor.post("/api/v1/labels/", {"name": "new"}, format="json").status_code == 201


# --- saved replies ---------------------------------------------------------------------------------

def test_saved_replies_crud_and_provider_filter(api_client, sandbox_provider, superuser):
    other = provider_create(kind="sandbox", name="Second number", options={})
    response = api_client.post("/api/v1/saved-replies/", {"title": "Hours", "text": "We open at 9."}, format="json")
    assert response.status_code == 201, response.content
    everywhere = response.json()
    assert everywhere["provider"] is None and everywhere["created_by"] == superuser.username
    reply = SavedReply.objects.get(pk=everywhere["id"])
    assert reply.created_by == superuser
    own = api_client.post("/api/v1/saved-replies/", {"title": "Returns", "text": "Send it back within 30 days.",
                                                     "provider": sandbox_provider.pk}, format="json").json()
    api_client.post("/api/v1/saved-replies/", {"title": "Other", "text": "Elsewhere.", "provider": other.pk},
                    format="json")

    def titles(**params):
        return [row["title"] for row in api_client.get("/api/v1/saved-replies/", params).json()["results"]]

    assert titles() == ["Hours", "Other", "Returns"]
    assert titles(provider=sandbox_provider.pk) == ["Hours", "Returns"]
    assert titles(provider=other.pk) == ["Hours", "Other"]
    assert titles(for_every_number="true") == ["Hours"]
    refused(api_client.get("/api/v1/saved-replies/", {"provider": 987654}), 400, "invalid_request")

    response = api_client.patch(f"/api/v1/saved-replies/{own['id']}/", {"text": "Within 60 days."}, format="json")
    assert response.status_code == 200 and response.json()["text"] == "Within 60 days."
    assert response.json()["created_by"] == superuser.username
    assert api_client.delete(f"/api/v1/saved-replies/{own['id']}/").status_code == 204
    assert not SavedReply.objects.filter(pk=own["id"]).exists()
    own_row = SavedReply(pk=own["id"])
    assert audit_actions(own_row) == [("savedreply.create", "root"), ("savedreply.change", "root"),
                                      ("savedreply.delete", "root")]


@pytest.mark.parametrize("body, field", [
    ({"title": "Hours", "text": "Again"}, "title"),
    ({"title": "New", "text": "   "}, "text"),
    ({"title": "New"}, "text"),
    ({"title": "New", "text": "x" * 4097}, "text"),
    ('{"title": "New", "text": "bad \\ud800"}', "text"),
    ({"title": "New", "text": "ok", "provider": 987654}, "provider"),
    ({"title": "New", "text": "ok", "provider": "one"}, "provider"),
])
def test_invalid_saved_replies_are_refused(api_client, db, body, field):
    SavedReply.objects.create(title="Hours", text="We open at 9.")
    body = refused(post_json(api_client, "/api/v1/saved-replies/", body), 400, "invalid_request")
    assert field in body["errors"]
    assert SavedReply.objects.count() == 1
