"""
The assistant's API: each user lists and opens exactly their own items (another user's is a 404), a superuser
and a holder of assistant.see_everyones_items see everyone's; what a caller makes is theirs; the filters;
validation answers 400 with readable reasons; the caller's own preferences at /me/; turns are read-only.
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from assistant.models import AssistantProfile, ContentRequest, Note, Project, Reminder, Task
from core.models import AuditLog
from tests.assistant.test_assistant_admin import ALICE_ZONE, alice_today, people_with_items
from tests.conftest import refused, token_client, user_with_perms

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(db):
    """Alice and Bob with their items, a superuser and an operator who sees everyone's items."""
    return people_with_items()

ENDPOINTS = {"projects": "project", "goals": "goal", "tasks": "task", "notes": "note",
             "content-requests": "contentrequest", "reminders": "reminder", "assistant-turns": "turn",
             "assistant-preferences": "assistantprofile"}
API = "/api/v1"


def count(client, endpoint: str, query: str = "") -> int:
    response = client.get(f"{API}/{endpoint}/{query}")
    assert response.status_code == 200, response.content
    return response.json()["count"]


@pytest.fixture
def api(people):
    """A token client per person."""
    return {name: token_client(user) for name, user in [("alice", people.alice.user), ("bob", people.bob.user),
                                                         ("root", people.root), ("ops", people.ops)]}


# --- who sees what ------------------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_each_user_lists_exactly_their_own_items(people, api, endpoint):
    model = ENDPOINTS[endpoint]
    assert count(api["alice"], endpoint) == people.alice.count(model)
    assert count(api["bob"], endpoint) == people.bob.count(model)
    assert count(api["root"], endpoint) == people.total(model)
    assert count(api["ops"], endpoint) == people.total(model)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_another_users_item_is_not_found(people, api, endpoint):
    bobs = people.bob.rows[ENDPOINTS[endpoint]][0]
    refused(api["alice"].get(f"{API}/{endpoint}/{bobs.pk}/"), 404, "not_found")
    assert api["bob"].get(f"{API}/{endpoint}/{bobs.pk}/").status_code == 200
    assert api["ops"].get(f"{API}/{endpoint}/{bobs.pk}/").status_code == 200


@pytest.mark.parametrize("endpoint", ["projects", "goals", "tasks", "notes", "content-requests", "reminders"])
def test_another_users_item_cannot_be_changed_or_deleted(people, api, endpoint):
    bobs = people.bob.rows[ENDPOINTS[endpoint]][0]
    refused(api["alice"].patch(f"{API}/{endpoint}/{bobs.pk}/", {}, format="json"), 404, "not_found")
    refused(api["alice"].delete(f"{API}/{endpoint}/{bobs.pk}/"), 404, "not_found")
    assert type(bobs).objects.filter(pk=bobs.pk).exists()


def test_the_owner_filter_narrows_everyones_list(people, api):
    assert count(api["ops"], "tasks", f"?owner={people.alice.user.pk}") == people.alice.count("task")
    assert count(api["alice"], "tasks", f"?owner={people.bob.user.pk}") == 0  # never another user's


def test_seeing_everyones_items_does_not_grant_changing_them(people, api):
    bobs = people.bob.rows["task"][0]
    refused(api["ops"].patch(f"{API}/tasks/{bobs.pk}/", {"title": "Mine now"}, format="json"), 403,
            "permission_denied")


def test_without_the_model_permission_nothing_is_listed(people):
    stranger = token_client(user_with_perms("stranger"))
    refused(stranger.get(f"{API}/tasks/"), 403, "permission_denied")


# --- making and changing ------------------------------------------------------------------------------

def test_what_a_caller_makes_is_theirs_and_audited(people, api):
    response = api["alice"].post(f"{API}/tasks/", {"title": "Plan the week", "owner": people.bob.user.pk,
                                                   "due_date": "2027-01-15", "due_time": "09:30",
                                                   "project": people.alice.rows["project"][1].pk}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["owner"] == people.alice.user.pk and body["owner_username"] == "alice"
    assert body["project_name"] == "Launch"
    task = Task.objects.get(pk=body["id"])
    assert task.owner == people.alice.user
    assert task.due_at.astimezone(ZoneInfo(ALICE_ZONE)).strftime("%Y-%m-%d %H:%M") == "2027-01-15 09:30"
    entry = AuditLog.objects.get(action="task.create", object_id=str(task.pk))
    assert entry.actor == people.alice.user and entry.after["title"] == "Plan the week"

    response = api["root"].post(f"{API}/notes/", {"text": "Root's own note", "tags": ["Ideas", " ideas", "X"]},
                                format="json")
    assert response.status_code == 201, response.content
    assert Note.objects.get(pk=response.json()["id"]).owner == people.root
    assert response.json()["tags"] == ["ideas", "x"]


def test_done_sets_and_reopening_clears_the_completion_time(people, api):
    mine = people.alice.rows["task"][2]
    response = api["alice"].patch(f"{API}/tasks/{mine.pk}/", {"status": "done"}, format="json")
    assert response.status_code == 200 and response.json()["completed_at"]
    response = api["alice"].patch(f"{API}/tasks/{mine.pk}/", {"status": "open"}, format="json")
    assert response.json()["completed_at"] is None
    assert AuditLog.objects.filter(action="task.change", object_id=str(mine.pk)).count() == 2


def test_delete_is_audited(people, api):
    note = people.alice.rows["note"][1]
    assert api["alice"].delete(f"{API}/notes/{note.pk}/").status_code == 204
    assert not Note.objects.filter(pk=note.pk).exists()
    assert AuditLog.objects.get(action="note.delete", object_id=str(note.pk)).before["text"] == note.text


def test_another_users_project_cannot_be_used(people, api):
    bobs_project = people.bob.rows["project"][0]
    body = refused(api["alice"].post(f"{API}/tasks/", {"title": "x", "project": bobs_project.pk}, format="json"),
                   400, "invalid_request")
    assert "project" in body["errors"]
    # Someone who sees everyone's projects is told why.
    body = refused(api["root"].post(f"{API}/tasks/", {"title": "x", "project": bobs_project.pk}, format="json"),
                   400, "invalid_request")
    assert "belongs to another user" in body["detail"]
    mine = people.alice.rows["task"][0]
    body = refused(api["root"].patch(f"{API}/tasks/{mine.pk}/", {"project": bobs_project.pk}, format="json"),
                   400, "invalid_request")
    assert "choose one of alice's" in body["errors"]["project"][0]


@pytest.mark.parametrize(("endpoint", "data", "field", "reason"), [
    ("tasks", {"title": ""}, "title", "may not be blank"),
    ("tasks", {"title": "x", "due_time": "10:00"}, "due_time", "needs a due date"),
    ("tasks", {"title": "x", "priority": "whenever"}, "priority", "not a valid choice"),
    ("projects", {"name": "Website"}, "name", "already a project named 'Website'"),
    ("content-requests", {"brief": "A post", "platform": "myspace"}, "platform", "not a valid choice"),
    ("content-requests", {"brief": "A post", "status": "ready"}, "status", "only done or cancelled"),
    ("reminders", {"due_at": "2030-01-01T10:00:00Z"}, "text", "give the text to remind of, or a task"),
    ("reminders", {"text": "Late", "due_at": "2020-01-01T10:00:00Z"}, "due_at", "in the future"),
    ("notes", {"text": "x", "tags": ["a" * 41]}, "tags", "no more than 40 characters"),
])
def test_validation_errors_are_readable(people, api, endpoint, data, field, reason):
    body = refused(api["alice"].post(f"{API}/{endpoint}/", data, format="json"), 400, "invalid_request")
    assert field in body["errors"] and reason in body["detail"], body


def test_a_content_request_with_every_detail_goes_to_drafting(people, api):
    response = api["alice"].post(f"{API}/content-requests/", {
        "brief": "A post about spring", "platform": "instagram", "length": "short", "tone": "playful",
        "topic": "spring"}, format="json")
    assert response.status_code == 201, response.content
    request = ContentRequest.objects.get(pk=response.json()["id"])
    assert request.status == ContentRequest.Status.DRAFTING
    assert request.conversation == people.alice.conversation
    partial = api["alice"].post(f"{API}/content-requests/", {"brief": "Something"}, format="json").json()
    assert partial["status"] == "needs_input"
    done = api["alice"].patch(f"{API}/content-requests/{partial['id']}/", {"status": "cancelled"}, format="json")
    assert done.status_code == 200 and done.json()["status"] == "cancelled"


def test_a_task_with_a_due_time_gets_its_reminder_until_done(people, api):
    response = api["alice"].post(f"{API}/tasks/", {"title": "Call Rui", "due_date": "2030-01-15",
                                                   "due_time": "09:30"}, format="json")
    assert response.status_code == 201, response.content
    task = Task.objects.get(pk=response.json()["id"])
    reminder = Reminder.objects.get(task=task)
    assert (reminder.status, reminder.due_at, reminder.text, reminder.owner) == ("pending", task.due_at, "",
                                                                                 people.alice.user)
    api["alice"].patch(f"{API}/tasks/{task.pk}/", {"due_time": "11:00"}, format="json")
    reminder.refresh_from_db()
    assert reminder.due_at.astimezone(ZoneInfo(ALICE_ZONE)).strftime("%H:%M") == "11:00"
    api["alice"].patch(f"{API}/tasks/{task.pk}/", {"status": "done"}, format="json")
    reminder.refresh_from_db()
    assert reminder.status == "cancelled"


def test_reminders_of_a_task_and_cancelling(people, api):
    mine = people.alice.rows["task"][0]
    due = (timezone.now() + timedelta(hours=3)).isoformat()
    response = api["alice"].post(f"{API}/reminders/", {"task": mine.pk, "due_at": due}, format="json")
    assert response.status_code == 201, response.content
    reminder = response.json()
    assert reminder["text"] == mine.title  # an explicit reminder: apart from the task's automatic one
    cancelled = api["alice"].patch(f"{API}/reminders/{reminder['id']}/", {"status": "cancelled"}, format="json")
    assert cancelled.json()["status"] == "cancelled"
    refused(api["alice"].patch(f"{API}/reminders/{reminder['id']}/", {"status": "sent"}, format="json"), 400,
            "invalid_request")


# --- filters ------------------------------------------------------------------------------------------

def titles(client, query: str) -> set[str]:
    response = client.get(f"{API}/tasks/{query}")
    assert response.status_code == 200, response.content
    return {task["title"] for task in response.json()["results"]}


def test_task_filters(people, api):
    alice = api["alice"]
    website = people.alice.rows["project"][0]
    assert titles(alice, "?due=today") == {"Write the landing page"}
    assert titles(alice, "?due=overdue") == {"Book the venue"}
    assert titles(alice, "?priority=urgent") == {"Book the venue"}
    assert titles(alice, f"?project={website.pk}") == {"Write the landing page"}
    assert titles(api["bob"], "?status=done") == {"Hire a cashier"}
    today = alice_today()
    monday = today - timedelta(days=today.weekday())
    assert titles(alice, "?due=this_week") == {
        task.title for task in people.alice.rows["task"]
        if task.due_date and monday <= task.due_date <= monday + timedelta(days=6)}
    body = refused(alice.get(f"{API}/tasks/?due=someday"), 400, "invalid_request")
    assert "due" in body["errors"]


def test_note_search(people, api):
    found = api["alice"].get(f"{API}/notes/?q=PRINTER flyers").json()
    assert [note["text"] for note in found["results"]] == ["Call the printer about the flyers"]
    assert found["results"][0]["conversation"] == people.alice.conversation.pk
    assert count(api["alice"], "notes", "?q=marketing") == 1  # a tag
    assert count(api["alice"], "notes", "?q=landlord") == 0  # Bob's
    assert count(api["root"], "notes", "?q=landlord") == 1
    assert count(api["alice"], "notes", "?tag=ideas") == 1


# --- preferences and turns ----------------------------------------------------------------------------

def test_my_preferences(people, api):
    me = api["alice"].get(f"{API}/assistant-preferences/me/")
    assert me.status_code == 200
    assert me.json()["user"] == people.alice.user.pk and me.json()["effective_time_zone"] == ALICE_ZONE
    changed = api["alice"].patch(f"{API}/assistant-preferences/me/",
                                 {"daily_summary": True, "daily_summary_time": "07:15"}, format="json")
    assert changed.status_code == 200, changed.content
    profile = AssistantProfile.objects.get(user=people.alice.user)
    assert profile.daily_summary and f"{profile.daily_summary_time:%H:%M}" == "07:15"
    assert AuditLog.objects.filter(action="assistantprofile.change", actor=people.alice.user).exists()
    body = refused(api["alice"].patch(f"{API}/assistant-preferences/me/", {"time_zone": "Mars/Olympus"},
                                      format="json"), 400, "invalid_request")
    assert "is not a time zone" in body["detail"]
    refused(api["alice"].patch(f"{API}/assistant-preferences/me/", {"quiet_hours_start": "22:00"}, format="json"),
            400, "invalid_request")


def test_preferences_are_made_on_first_read(people, api):
    assert not AssistantProfile.objects.filter(user=people.root).exists()
    response = api["root"].get(f"{API}/assistant-preferences/me/")
    assert response.status_code == 200 and response.json()["user"] == people.root.pk
    assert AssistantProfile.objects.filter(user=people.root).exists()


def test_turns_are_read_only(people, api):
    turn = people.alice.rows["turn"][0]
    body = api["alice"].get(f"{API}/assistant-turns/{turn.pk}/").json()
    assert body["conversation"] == people.alice.conversation.pk and body["outcome"] == "task_created"
    assert body["tool_calls"][0]["name"] == "create_task"
    assert api["root"].post(f"{API}/assistant-turns/", {}, format="json").status_code == 405
    assert api["root"].delete(f"{API}/assistant-turns/{turn.pk}/").status_code == 405
    assert count(api["root"], "assistant-turns", f"?conversation={people.bob.conversation.pk}") == 1


def test_projects_are_unique_per_owner(people, api):
    response = api["bob"].post(f"{API}/projects/", {"name": "Website"}, format="json")
    assert response.status_code == 201  # Alice's project of that name is hers alone
    assert Project.objects.filter(name="Website").count() == 2
