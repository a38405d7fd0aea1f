"""A conversation's state through real webhooks, the API and the admin: resolve, reopen on a customer message,
pending, snooze and wake, bulk resolve, and Chatwoot's state both ways."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import AuditLog
from tests.conftest import fixture_bytes, json_body, refused
from tests.fakes import Reply, json_of
from tests.signing import make_chatwoot, post_chatwoot
from whatsapp.models import Conversation, Resolution
from whatsapp.services.lifecycle import conversation_set_status, lifecycle_tick, status_push
from whatsapp.services.webhooks import webhook_event_process

pytestmark = pytest.mark.django_db
PHONE = "+16505550101"


def status_of(api_client, conversation, body):
    return api_client.post(f"/api/v1/conversations/{conversation.pk}/status/", body, format="json")


def test_resolved_by_an_operator_and_reopened_by_the_customer(say, api_client, superuser):
    say(PHONE, "Where is my parcel?")
    conversation = Conversation.objects.get()
    assert conversation.status == "open" and conversation.opened_at is not None

    response = status_of(api_client, conversation, {"status": "resolved"})
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["status_changed_by"]) == ("resolved", superuser.pk)
    resolution = Resolution.objects.get()
    assert resolution.resolved_by == superuser and resolution.resolution_seconds >= 0
    conversation.refresh_from_db()
    assert conversation.awaiting_reply_since is None  # a resolved conversation waits for no reply
    assert resolution.survey == "not_asked"  # no team asks for a survey
    entry = AuditLog.objects.get(action="conversation.status")
    assert (entry.before["status"], entry.after["status"], entry.after["source"]) == ("open", "resolved", "operator")

    say(PHONE, "It has not arrived yet")
    conversation.refresh_from_db()
    assert (conversation.status, conversation.status_source, conversation.status_changed_by) == ("open", "customer",
                                                                                                  None)
    assert conversation.opened_at >= resolution.resolved_at  # a new round
    status_of(api_client, conversation, {"status": "resolved"})
    assert Resolution.objects.count() == 2
    assert api_client.get("/api/v1/conversations/?status=resolved").json()["count"] == 1
    assert api_client.get("/api/v1/resolutions/").json()["count"] == 2


def test_pending_snooze_and_waking(say, api_client):
    say(PHONE, "Can you check my order?")
    conversation = Conversation.objects.get()
    assert status_of(api_client, conversation, {"status": "pending"}).json()["status"] == "pending"
    say(PHONE, "Order 1042")
    conversation.refresh_from_db()
    assert conversation.status == "open"

    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    refused(status_of(api_client, conversation, {"status": "snoozed", "snoozed_until": past}), 400, "invalid_status")
    refused(status_of(api_client, conversation, {"status": "snoozed"}), 400, "invalid_status")
    refused(status_of(api_client, conversation, {"status": "closed"}), 400, "invalid_request")
    until = timezone.now() + timedelta(hours=2)
    response = status_of(api_client, conversation, {"status": "snoozed", "snoozed_until": until.isoformat()})
    assert response.json()["status"] == "snoozed" and response.json()["snoozed_until"]

    assert lifecycle_tick(now=until - timedelta(seconds=1))["woken"] == 0
    assert lifecycle_tick(now=until + timedelta(seconds=1))["woken"] == 1
    conversation.refresh_from_db()
    assert (conversation.status, conversation.status_source, conversation.snoozed_until) == ("open", "system", None)


def test_bulk_resolve_is_all_or_nothing_over_what_the_caller_sees(say, api_client):
    for number in ("+16505550111", "+16505550112", "+16505550113"):
        say(number, "hello")
    ids = sorted(Conversation.objects.values_list("pk", flat=True))
    response = api_client.post("/api/v1/conversations/bulk-status/", {"ids": [*ids, 999999], "status": "resolved"},
                               format="json")
    detail = refused(response, 404, "not_found")["detail"]
    assert detail.startswith("No conversation you can see has the id(s) [999999]")
    assert not Conversation.objects.filter(status="resolved").exists()
    response = api_client.post("/api/v1/conversations/bulk-status/", {"ids": ids, "status": "resolved"}, format="json")
    assert response.json() == {"status": "resolved", "changed": 3, "unchanged": 0}
    assert AuditLog.objects.filter(action="conversation.status").count() == 3
    refused(api_client.post("/api/v1/conversations/bulk-status/", {"ids": [], "status": "resolved"}, format="json"),
            400, "invalid_request")


def test_the_admin_list_resolves_in_bulk_and_the_page_snoozes(say, admin_client_logged):
    say("+16505550121", "one")
    say("+16505550122", "two")
    ids = [str(pk) for pk in Conversation.objects.values_list("pk", flat=True)]
    response = admin_client_logged.post("/admin/whatsapp/conversation/", {"action": "resolve",
                                                                          "_selected_action": ids}, follow=True)
    assert "2 conversation(s) resolved." in response.content.decode()
    listed = admin_client_logged.get("/admin/whatsapp/conversation/?status__exact=resolved")
    assert listed.context["cl"].result_count == 2
    conversation = Conversation.objects.first()
    page = admin_client_logged.get(f"/admin/whatsapp/conversation/{conversation.pk}/change/").content.decode()
    assert 'id="wa-reopen"' in page and "Resolved" in page
    later = (timezone.localtime() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = admin_client_logged.post(f"/admin/whatsapp/conversation/{conversation.pk}/status/",
                                        {"status": "snoozed", "snoozed_until": later}, follow=True)
    assert "The conversation is snoozed." in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.status == "snoozed" and conversation.snoozed_until > timezone.now()
    response = admin_client_logged.post(f"/admin/whatsapp/conversation/{conversation.pk}/status/",
                                        {"status": "snoozed", "snoozed_until": "tomorrow"}, follow=True)
    assert "Not changed: give the time" in response.content.decode()


def deliver(client, provider, body: bytes):
    response = post_chatwoot(client, provider, body)
    assert response.status_code == 200, response.content
    return webhook_event_process(json_body(response)["event"])


def test_chatwoot_state_follows_both_ways(client, fake, superuser, django_capture_on_commit_callbacks, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    provider = make_chatwoot(base_url=fake.url)
    toggle = "/api/v1/accounts/3/conversations/55/toggle_status"
    fake.routes[toggle] = [Reply.json({"payload": {"success": True, "current_status": "open"}})]
    deliver(client, provider, fixture_bytes("chatwoot", "conversation_created.json"))
    conversation = Conversation.objects.get()
    assert (conversation.status, conversation.external_state) == ("open", "open")

    # Resolved in Chatwoot: ours follows, and nothing is pushed back.
    deliver(client, provider, fixture_bytes("chatwoot", "conversation_status_changed.json"))
    conversation.refresh_from_db()
    assert (conversation.status, conversation.status_source, conversation.external_state) == (
        "resolved", "provider", "resolved")
    assert Resolution.objects.get().resolved_by is None
    assert fake.hits(toggle) == []

    # Reopened here: Chatwoot is told.
    with django_capture_on_commit_callbacks(execute=True):
        conversation_set_status(conversation, "open", actor=superuser)
    (request,) = fake.hits(toggle)
    assert json_of(request) == {"status": "open"} and request.headers["api_access_token"] == "chatwoot-api-token"
    conversation.refresh_from_db()
    assert conversation.external_state == "open"

    # A late report of Chatwoot's older "resolved" (before our reopening) changes nothing.
    deliver(client, provider, fixture_bytes("chatwoot", "conversation_status_changed.json"))
    conversation.refresh_from_db()
    assert (conversation.status, conversation.external_state) == ("open", "open")

    # Snoozed here: Chatwoot gets the wake-up time in Unix seconds; a refused push is retried by beat.
    until = timezone.now() + timedelta(hours=3)
    fake.routes[toggle] = [Reply(500, b"down")]
    with django_capture_on_commit_callbacks(execute=True):
        conversation_set_status(conversation, "snoozed", actor=superuser, snoozed_until=until)
    assert json_of(fake.hits(toggle)[-1]) == {"status": "snoozed", "snoozed_until": int(until.timestamp())}
    conversation.refresh_from_db()
    assert conversation.external_state == "open"  # not confirmed
    fake.routes[toggle] = [Reply.json({"payload": {"success": True}})]
    assert lifecycle_tick(now=timezone.now() + timedelta(minutes=2))["pushed"] == 1
    conversation.refresh_from_db()
    assert conversation.external_state == "snoozed"
    assert status_push(conversation.pk) == "already there"

    # A customer message reopens it here without a push (Chatwoot reopens its own on the same message).
    hits = len(fake.hits(toggle))
    body = json.loads(fixture_bytes("chatwoot", "message_created_text.json"))
    deliver(client, provider, json.dumps(body).encode())
    conversation.refresh_from_db()
    assert (conversation.status, conversation.status_source) == ("open", "customer")
    assert len(fake.hits(toggle)) == hits


def test_chatwoot_reopening_on_a_survey_answer_is_undone(client, fake, superuser, django_capture_on_commit_callbacks,
                                                        settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    provider = make_chatwoot(base_url=fake.url)
    toggle = "/api/v1/accounts/3/conversations/55/toggle_status"
    fake.routes[toggle] = [Reply.json({"payload": {"success": True}})]
    deliver(client, provider, fixture_bytes("chatwoot", "conversation_created.json"))
    conversation = Conversation.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        conversation_set_status(conversation, "resolved", actor=superuser)
    Resolution.objects.update(survey="answered", rating=5, answered_at=timezone.now())
    reopened = json.loads(fixture_bytes("chatwoot", "conversation_status_changed.json"))
    reopened.update(status="open", updated_at=timezone.now().timestamp() + 1)
    with django_capture_on_commit_callbacks(execute=True):
        deliver(client, provider, json.dumps(reopened).encode())
    conversation.refresh_from_db()
    assert conversation.status == "resolved"
    assert [json_of(hit)["status"] for hit in fake.hits(toggle)] == ["resolved", "resolved"]
