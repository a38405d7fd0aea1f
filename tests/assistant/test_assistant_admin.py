"""
The assistant's admin pages: each user sees exactly their own items (lists and change pages), a superuser
and a holder of assistant.see_everyones_items see everyone's; an item made here is its maker's unless they may
pick another owner; "Mark done", the due filters, the policy form's per-outcome choices and the turns' audit
page. The data built here (two users with items, a superuser, an operator who sees everyone's) is shared with
test_assistant_api.py and test_assistant_panel.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from assistant.models import (
    AssistantPolicy,
    AssistantProfile,
    ContentRequest,
    Goal,
    Note,
    Project,
    Reminder,
    Task,
    Turn,
)
from assistant.services.items import task_prepare
from assistant.services.timezones import local_now
from contacts.models import ContactUserMapping
from contacts.services.identities import contact_resolve
from core.models import AuditLog
from tests.conftest import page
from whatsapp.models import Conversation, Message
from whatsapp.providers.events import Identity, IdentityKind
from whatsapp.services.inbound import conversation_get_or_create
from whatsapp.services.providers import provider_create

pytestmark = pytest.mark.django_db

PASSWORD = "pw-123456-strong"
OWNED_MODELS = ["project", "goal", "task", "note", "contentrequest", "reminder"]
# What a user of the assistant holds to manage their own items in the admin and through the API.
ITEM_PERMISSIONS = [*(f"assistant.{action}_{model}" for model in [*OWNED_MODELS, "assistantprofile"]
                      for action in ("view", "add", "change", "delete")), "assistant.view_turn"]
SEE_EVERYONE = "assistant.see_everyones_items"
ALICE_ZONE = "Europe/Madrid"
INSTANT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")

MODELS = {"project": Project, "goal": Goal, "task": Task, "note": Note, "contentrequest": ContentRequest,
          "reminder": Reminder, "turn": Turn, "assistantprofile": AssistantProfile}


def staff_user(username: str, *perms: str, superuser: bool = False):
    users = get_user_model().objects
    if superuser:
        return users.create_superuser(username, f"{username}@example.com", PASSWORD)
    user = users.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@dataclass
class Owned:
    """One user's items, by model name."""

    user: object
    conversation: Conversation
    rows: dict[str, list] = field(default_factory=dict)

    def count(self, model: str) -> int:
        return len(self.rows[model])


@dataclass
class People:
    alice: Owned
    bob: Owned
    root: object
    ops: object  # sees everyone's items, changes none
    provider: object

    def total(self, model: str) -> int:
        return self.alice.count(model) + self.bob.count(model)


def mapped_conversation(provider, user, phone: str) -> Conversation:
    contact = contact_resolve(provider=provider, identities=[Identity(IdentityKind.PHONE, phone)],
                              profile_name=user.get_username().capitalize())
    ContactUserMapping.objects.create(contact=contact, user=user, method=ContactUserMapping.Method.MANUAL)
    return conversation_get_or_create(provider=provider, contact=contact)


def inbound(conversation: Conversation, text: str) -> Message:
    return Message.objects.create(provider=conversation.provider, conversation=conversation, direction="inbound",
                                  text=text, status="received")


def turn_for(owner, conversation: Conversation, text: str, **values) -> Turn:
    return Turn.objects.create(message=inbound(conversation, text), owner=owner, **values)


def task(**values) -> Task:
    """A task as a person or the assistant saves it: with its due instant."""
    made = Task(**values)
    task_prepare(made)
    made.save()
    return made


def alice_today() -> date:
    return local_now(ZoneInfo(ALICE_ZONE)).date()


def alice_items(user, conversation: Conversation) -> Owned:
    profile = AssistantProfile.objects.create(user=user, time_zone=ALICE_ZONE)  # her tasks' due times use it
    today = alice_today()
    website = Project.objects.create(owner=user, name="Website")
    launch = Project.objects.create(owner=user, name="Launch")
    note_message = inbound(conversation, "note: call the printer about the flyers")
    tasks = [task(owner=user, title="Write the landing page", project=website, priority="high", due_date=today,
                  due_time=time(23, 59)),  # late, so that it is not overdue yet whenever the test runs
             task(owner=user, title="Book the venue", priority="urgent", due_date=today - timedelta(days=2)),
             task(owner=user, title="Send the invoices", due_date=today + timedelta(days=40))]
    return Owned(user, conversation, {
        "project": [website, launch],
        "goal": [Goal.objects.create(owner=user, title="Ship the new site", project=website,
                                     target_date=date(2027, 3, 1))],
        "task": tasks,
        "note": [Note.objects.create(owner=user, text="Call the printer about the flyers", tags=["print"],
                                     source_message=note_message),
                 Note.objects.create(owner=user, text="Ideas for the spring campaign", tags=["ideas", "marketing"])],
        "contentrequest": [ContentRequest.objects.create(
            owner=user, brief="A post about our launch", platform="linkedin", length="short", tone="friendly",
            topic="launch", status="ready", draft="We launched!\n\nCome and see.", conversation=conversation)],
        "reminder": [Reminder.objects.create(owner=user, task=tasks[0], due_at=timezone.now() + timedelta(hours=2)),
                     Reminder.objects.create(owner=user, text="Water the plants",
                                             due_at=timezone.now() + timedelta(days=1))],
        "assistantprofile": [profile],
        "turn": [turn_for(user, conversation, "remind me to write the landing page", status="done",
                          outcome="task_created",
                          tool_calls=[{"name": "create_task", "arguments": {"title": "Write the landing page"},
                                       "result": {"task": tasks[0].pk}, "ok": True}]),
                 turn_for(user, conversation, "what is due?", status="done", outcome="due_reported")],
    })


def bob_items(user, conversation: Conversation) -> Owned:
    shop = Project.objects.create(owner=user, name="Shop")
    return Owned(user, conversation, {
        "project": [shop],
        "goal": [Goal.objects.create(owner=user, title="Open the shop")],
        "task": [task(owner=user, title="Order shelves", project=shop),
                 task(owner=user, title="Hire a cashier", status="done")],
        "note": [Note.objects.create(owner=user, text="The landlord prefers email", tags=["shop"])],
        "contentrequest": [ContentRequest.objects.create(owner=user, brief="An email to suppliers"),
                           ContentRequest.objects.create(owner=user, brief="A blog post", status="done")],
        "reminder": [Reminder.objects.create(owner=user, text="Pay the rent",
                                             due_at=timezone.now() + timedelta(days=3))],
        "assistantprofile": [AssistantProfile.objects.create(user=user)],
        "turn": [turn_for(user, conversation, "note: the landlord prefers email", status="done",
                          outcome="note_saved")],
    })


def people_with_items() -> People:
    provider = provider_create(kind="sandbox", name="Assistant sandbox", options={})
    alice = staff_user("alice", *ITEM_PERMISSIONS)
    bob = staff_user("bob", *ITEM_PERMISSIONS)
    return People(
        alice=alice_items(alice, mapped_conversation(provider, alice, "+34600000001")),
        bob=bob_items(bob, mapped_conversation(provider, bob, "+34600000002")),
        root=staff_user("root", superuser=True),
        ops=staff_user("ops", SEE_EVERYONE, *(f"assistant.view_{model}" for model in MODELS)),
        provider=provider,
    )


@pytest.fixture
def people(db) -> People:
    return people_with_items()


def listed(client: Client, model: str, query: str = "") -> int:
    response = client.get(reverse(f"admin:assistant_{model}_changelist") + query)
    assert response.status_code == 200, response.content[:500]
    return response.context["cl"].result_count


# --- who sees what ------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", list(MODELS))
def test_each_user_lists_exactly_their_own_items(people, model):
    assert listed(logged_in(people.alice.user), model) == people.alice.count(model)
    assert listed(logged_in(people.bob.user), model) == people.bob.count(model)


@pytest.mark.parametrize("model", list(MODELS))
def test_superuser_and_permission_holder_list_everyones_items(people, model):
    assert listed(logged_in(people.root), model) == people.total(model)
    assert listed(logged_in(people.ops), model) == people.total(model)


@pytest.mark.parametrize("model", list(MODELS))
def test_another_users_change_page_does_not_open(people, model):
    alice, bob = logged_in(people.alice.user), logged_in(people.bob.user)
    bobs = people.bob.rows[model][0]
    response = alice.get(reverse(f"admin:assistant_{model}_change", args=[bobs.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("admin:index")
    assert bob.get(reverse(f"admin:assistant_{model}_change", args=[bobs.pk])).status_code == 200
    assert logged_in(people.ops).get(reverse(f"admin:assistant_{model}_change", args=[bobs.pk])).status_code == 200


def test_owner_filter_is_offered_only_to_those_who_see_everyone(people):
    url = reverse("admin:assistant_task_changelist")
    assert "owner" not in [spec.title for spec in logged_in(people.alice.user).get(url).context["cl"].filter_specs]
    assert "owner" in [spec.title for spec in logged_in(people.ops).get(url).context["cl"].filter_specs]
    ops = logged_in(people.ops)
    assert listed(ops, "task", f"?owner={people.bob.user.pk}") == people.bob.count("task")


def test_project_filter_offers_only_visible_projects(people):
    response = logged_in(people.alice.user).get(reverse("admin:assistant_task_changelist"))
    spec = next(spec for spec in response.context["cl"].filter_specs if spec.title == "project")
    assert {title for _, title in spec.lookup_choices} == {"Website", "Launch"}
    assert listed(logged_in(people.alice.user), "task", f"?project={people.alice.rows['project'][0].pk}") == 1


# --- owners on add ------------------------------------------------------------------------------------

def task_form(owner, **values) -> dict:
    return {"owner": owner.pk, "title": "Plan the week", "details": "", "priority": "normal", "status": "open",
            "project": "", "due_date": "", "due_time": "", **values}


def test_an_item_made_here_is_its_makers_whatever_is_posted(people):
    alice = logged_in(people.alice.user)
    add_page = alice.get(reverse("admin:assistant_task_add"))
    owner_field = add_page.context["adminform"].form.fields["owner"]
    assert owner_field.disabled and list(owner_field.queryset) == [people.alice.user]
    response = alice.post(reverse("admin:assistant_task_add"), task_form(people.bob.user))
    assert response.status_code == 302, page(response)
    task = Task.objects.get(title="Plan the week")
    assert task.owner == people.alice.user
    assert AuditLog.objects.filter(action="admin.add", object_type="assistant.Task", object_id=str(task.pk)).exists()


def test_owner_defaults_to_the_maker_and_can_be_chosen_with_the_permission(people):
    root = logged_in(people.root)
    form = root.get(reverse("admin:assistant_note_add")).context["adminform"].form
    assert form.initial["owner"] == people.root.pk and not form.fields["owner"].disabled
    response = root.post(reverse("admin:assistant_task_add"), task_form(people.bob.user, title="For Bob"))
    assert response.status_code == 302, page(response)
    assert Task.objects.get(title="For Bob").owner == people.bob.user


def test_a_task_cannot_join_another_owners_project(people):
    bobs_project = people.bob.rows["project"][0]
    alice = logged_in(people.alice.user)
    response = alice.post(reverse("admin:assistant_task_add"), task_form(people.alice.user, project=bobs_project.pk))
    assert response.status_code == 200
    assert "project" in response.context["adminform"].form.errors
    root = logged_in(people.root)
    response = root.post(reverse("admin:assistant_task_add"),
                         task_form(people.alice.user, title="Mixed", project=bobs_project.pk))
    assert response.status_code == 200
    assert "belongs to bob" in str(response.context["adminform"].form.errors["project"])
    assert not Task.objects.filter(title__in=["Plan the week", "Mixed"]).exists()


def test_a_task_saved_here_gets_its_due_instant_in_the_owners_zone(people):
    alice = logged_in(people.alice.user)
    response = alice.post(reverse("admin:assistant_task_add"),
                          task_form(people.alice.user, due_date="2027-01-15", due_time="09:30"))
    assert response.status_code == 302, page(response)
    task = Task.objects.get(title="Plan the week")
    assert timezone.localtime(task.due_at, timezone.get_fixed_timezone(60)).strftime("%Y-%m-%d %H:%M") == \
        "2027-01-15 09:30"  # Madrid is UTC+1 in January


# --- the task list ------------------------------------------------------------------------------------

def test_task_list_shows_chips_local_due_and_instants(people):
    response = logged_in(people.alice.user).get(reverse("admin:assistant_task_changelist"))
    text = page(response)
    assert 'class="assistant-priority assistant-priority-urgent"' in text
    assert f"{alice_today():%Y-%m-%d} 23:59" in text
    note_list = page(logged_in(people.alice.user).get(reverse("admin:assistant_note_changelist")))
    assert INSTANT.search(note_list)


@pytest.mark.parametrize(("period", "titles"), [
    ("today", {"Write the landing page"}),
    ("overdue", {"Book the venue"}),
    ("this_week", None),
])
def test_due_filters(people, period, titles):
    response = logged_in(people.alice.user).get(reverse("admin:assistant_task_changelist") + f"?due={period}")
    shown = {task.title for task in response.context["cl"].result_list}
    if titles is None:
        today = alice_today()
        monday = today - timedelta(days=today.weekday())
        titles = {task.title for task in people.alice.rows["task"]
                  if task.due_date and monday <= task.due_date <= monday + timedelta(days=6)}
    assert shown == titles


def test_mark_done(people):
    alice_tasks = people.alice.rows["task"]
    bobs = people.bob.rows["task"][0]
    response = logged_in(people.alice.user).post(reverse("admin:assistant_task_changelist"), {
        "action": "mark_done", "_selected_action": [alice_tasks[0].pk, alice_tasks[1].pk, bobs.pk]})
    assert response.status_code == 302
    done = Task.objects.filter(status="done", completed_at__isnull=False)
    assert set(done.values_list("pk", flat=True)) == {alice_tasks[0].pk, alice_tasks[1].pk,
                                                       people.bob.rows["task"][1].pk}
    assert Task.objects.get(pk=bobs.pk).status == "open"  # not Alice's: not even selectable
    assert AuditLog.objects.filter(action="task.complete", actor=people.alice.user).count() == 2
    assert Reminder.objects.get(pk=people.alice.rows["reminder"][0].pk).status == "cancelled"  # of a done task


# --- notes, content requests, turns -------------------------------------------------------------------

def test_note_list_links_the_source_conversation_and_tags_are_edited_as_words(people):
    alice = logged_in(people.alice.user)
    note = people.alice.rows["note"][0]
    text = page(alice.get(reverse("admin:assistant_note_changelist")))
    conversation_url = reverse("admin:whatsapp_conversation_change", args=[people.alice.conversation.pk])
    assert f"{conversation_url}#message-{note.source_message_id}" in text
    assert "ideas, marketing" in text
    response = alice.post(reverse("admin:assistant_note_change", args=[note.pk]),
                          {"owner": people.alice.user.pk, "text": note.text, "tags": "Print, flyers, print"})
    assert response.status_code == 302, page(response)
    note.refresh_from_db()
    assert note.tags == ["print", "flyers"]


def test_content_request_page_shows_the_draft_readable(people):
    request = people.alice.rows["contentrequest"][0]
    text = page(logged_in(people.alice.user).get(reverse("admin:assistant_contentrequest_change",
                                                         args=[request.pk])))
    assert "white-space:pre-wrap" in text and "We launched!\n\nCome and see." in text


def test_turn_page_is_a_read_only_audit_with_the_tool_calls_as_a_table(people):
    turn = people.alice.rows["turn"][0]
    alice = logged_in(people.alice.user)
    text = page(alice.get(reverse("admin:assistant_turn_change", args=[turn.pk])))
    assert "assistant-tool-calls" in text and "<strong>create_task</strong>" in text
    assert "&quot;title&quot;: &quot;Write the landing page&quot;" in text
    assert f"#message-{turn.message_id}" in text
    assert 'name="_save"' not in text
    assert alice.get(reverse("admin:assistant_turn_add")).status_code == 403
    assert alice.post(reverse("admin:assistant_turn_delete", args=[turn.pk]), {"post": "yes"}).status_code == 403


def test_turn_list_by_conversation(people):
    root = logged_in(people.root)
    assert listed(root, "turn", f"?conversation={people.alice.conversation.pk}") == people.alice.count("turn")
    assert listed(root, "turn", f"?conversation={people.bob.conversation.pk}") == people.bob.count("turn")


# --- preferences and policies -------------------------------------------------------------------------

def test_preferences_refuse_an_unknown_time_zone(people):
    profile = people.alice.rows["assistantprofile"][0]
    response = logged_in(people.alice.user).post(
        reverse("admin:assistant_assistantprofile_change", args=[profile.pk]),
        {"user": people.alice.user.pk, "time_zone": "Mars/Olympus", "daily_summary_time": "08:00",
         "weekly_summary_day": "0", "reminders": "on"})
    assert response.status_code == 200
    assert "is not a time zone" in str(response.context["adminform"].form.errors["time_zone"])


def policy_form(provider, **overrides) -> dict:
    data = {"provider": provider.pk, "enabled": "on", "preset": "minimal", "note_reaction": "",
            "handoff_minutes": "60", "reminder_template": "", "summary_template": ""}
    return {**data, **{f"override_{outcome}": value for outcome, value in overrides.items()}}


def test_policy_form_writes_the_overrides_json(people):
    root = logged_in(people.root)
    form = root.get(reverse("admin:assistant_assistantpolicy_add")).context["adminform"].form
    for outcome in ("note_saved", "task_created", "task_updated", "task_completed", "project_created",
                    "goal_created", "reminder_set", "preferences_changed", "content_requested", "content_ready"):
        assert [value for value, _ in form.fields[f"override_{outcome}"].choices] == ["", "silent", "react",
                                                                                       "confirm"]
    response = root.post(reverse("admin:assistant_assistantpolicy_add"),
                         policy_form(people.provider, task_created="confirm", note_saved="react"))
    assert response.status_code == 302, page(response)
    policy = AssistantPolicy.objects.get(provider=people.provider)
    assert policy.overrides == {"task_created": "confirm", "note_saved": "react"}

    # An outcome back on the preset's rule leaves the JSON; a key this form does not know stays.
    AssistantPolicy.objects.filter(pk=policy.pk).update(overrides={**policy.overrides, "future_outcome": "silent"})
    form = root.get(reverse("admin:assistant_assistantpolicy_change", args=[policy.pk])).context["adminform"].form
    assert form["override_task_created"].value() == "confirm"
    data = policy_form(people.provider, note_saved="react", reminder_set="silent")
    del data["provider"]
    response = root.post(reverse("admin:assistant_assistantpolicy_change", args=[policy.pk]), data)
    assert response.status_code == 302, page(response)
    policy.refresh_from_db()
    assert policy.overrides == {"future_outcome": "silent", "note_saved": "react", "reminder_set": "silent"}
    assert AuditLog.objects.filter(action="admin.change", object_type="assistant.AssistantPolicy").exists()


def test_policy_form_refuses_an_unknown_choice(people):
    response = logged_in(people.root).post(reverse("admin:assistant_assistantpolicy_add"),
                                           policy_form(people.provider, task_created="shout"))
    assert response.status_code == 200
    assert "override_task_created" in response.context["adminform"].form.errors
    assert not AssistantPolicy.objects.exists()


# --- content requests and reminders made here ---------------------------------------------------------

def test_a_complete_content_request_made_here_goes_to_drafting(people):
    response = logged_in(people.alice.user).post(reverse("admin:assistant_contentrequest_add"), {
        "owner": people.alice.user.pk, "brief": "A post about spring", "platform": "instagram", "length": "short",
        "tone": "playful", "topic": "spring", "status": "needs_input"})
    assert response.status_code == 302, page(response)
    request = ContentRequest.objects.get(brief="A post about spring")
    assert (request.owner, request.conversation, request.status) == (people.alice.user, people.alice.conversation,
                                                                     "drafting")


def test_a_reminder_made_here_without_text_takes_its_tasks_title(people):
    task = people.alice.rows["task"][2]
    due = timezone.localtime(timezone.now() + timedelta(days=2))
    response = logged_in(people.alice.user).post(reverse("admin:assistant_reminder_add"), {
        "owner": people.alice.user.pk, "text": "", "task": task.pk, "due_at_0": f"{due:%Y-%m-%d}",
        "due_at_1": f"{due:%H:%M:%S}", "status": "pending"})
    assert response.status_code == 302, page(response)
    assert Reminder.objects.filter(task=task, text=task.title, owner=people.alice.user).exists()


@pytest.mark.django_db
def test_default_groups_grant_the_assistant_pages():
    def codenames(name):
        return set(Group.objects.get(name=name).permissions.filter(content_type__app_label="assistant")
                   .values_list("codename", flat=True))
    assert {"see_everyones_items", "change_assistantpolicy", "view_turn", "delete_note"} <= codenames("Admin")
    # Operators see how the assistant is set up, never a user's notes, tasks or turns.
    assert codenames("Operator") == {"view_assistantpolicy"}
    assert {"add_task", "view_note", "change_assistantprofile"} <= codenames("Assistant user")
    assert "see_everyones_items" not in codenames("Assistant user")
