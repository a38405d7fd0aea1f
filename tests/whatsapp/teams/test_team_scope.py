"""
Who sees what, over two teams: team A answers number A, team B number B, one operator is in both, and a
superuser, a holder of "see all" and an API token (acting as its owner) come along. Every admin list, the
change pages, actions, search, autocomplete, CSV exports, the dashboard and the REST API show each exactly
its rows: counts are asserted, and each listed row is checked to belong to a number the user may see.
"""

import csv
import io

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from campaigns.models import Campaign
from contacts.models import Contact
from core.access import scope_of
from tests.campaigns.conftest import approved_template, campaign_for
from tests.conftest import token_client
from whatsapp.models import Conversation, Label, Message, Provider, Team
from whatsapp.providers.events import MessageStatus
from whatsapp.services.lifecycle import conversation_set_status
from whatsapp.services.providers import provider_create

pytestmark = pytest.mark.django_db

# Who writes to which number (the last one writes to both).
PEOPLE = {"+16505550401": ("Alma", "A"), "+16505550402": ("Arno", "A"), "+16505550403": ("Bea", "B"),
          "+16505550404": ("Both", "AB")}
# What each user sees, by number: conversations, contacts, messages (inbound and dead letters), templates.
EXPECTED = {
    "op_a": {"conversations": 3, "contacts": 3, "messages": 4, "templates": 2, "dead_letters": 1, "providers": 1,
             "resolutions": 1, "campaigns": 1, "received": 3},
    "op_b": {"conversations": 2, "contacts": 2, "messages": 4, "templates": 1, "dead_letters": 2, "providers": 1,
             "resolutions": 1, "campaigns": 0, "received": 2},
}
EXPECTED["op_both"] = EXPECTED["root"] = EXPECTED["seer"] = {
    "conversations": 5, "contacts": 4, "messages": 8, "templates": 3, "dead_letters": 3, "providers": 2,
    "resolutions": 2, "campaigns": 1, "received": 5}
EXPECTED["token_a"] = EXPECTED["op_a"]


def _viewer(username: str, *, see_all: bool = False):
    """A staff user who may view everything of the messaging apps and change conversations: without teams,
    such a user would see every number's rows."""
    user = get_user_model().objects.create_user(username, password="pw-123456-strong", is_staff=True)
    perms = Permission.objects.filter(content_type__app_label__in=[
        "whatsapp", "contacts", "templates_app", "analytics", "campaigns", "ai", "core", "monitoring"],
        codename__startswith="view_")
    user.user_permissions.add(*perms, Permission.objects.get(codename="change_conversation"))
    if see_all:
        user.user_permissions.add(Permission.objects.get(codename="see_all_teams"))
    return user


@pytest.fixture
def world(say, sandbox_provider):
    number_a = sandbox_provider
    number_a.name = "Number A"
    number_a.save()
    number_b = provider_create(kind="sandbox", name="Number B", options={})
    numbers = {"A": number_a, "B": number_b}
    for phone, (name, where) in PEOPLE.items():
        for key in where:
            say(phone, f"Hello from {name}", name=name, provider=numbers[key])
    for key, count in (("A", 1), ("B", 2)):
        conversation = Conversation.objects.filter(provider=numbers[key]).first()
        for index in range(count):
            Message.objects.create(provider=numbers[key], conversation=conversation, direction="outbound",
                                   message_type="text", text=f"lost {index}", status=MessageStatus.DEAD_LETTER)
    first_a = approved_template(number_a, name="order_ready")
    approved_template(number_a, name="order_late")
    approved_template(number_b, name="table_ready")
    campaign_for(number_a, template=first_a, name="Spring A")
    for key in ("A", "B"):
        conversation_set_status(Conversation.objects.filter(provider=numbers[key]).last(), "resolved")

    users = {name: _viewer(name) for name in ("op_a", "op_b", "op_both")}
    users["seer"] = _viewer("seer", see_all=True)
    users["root"] = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456-strong")
    team_a, team_b = Team.objects.create(name="Team A"), Team.objects.create(name="Team B")
    team_a.providers.add(number_a)
    team_b.providers.add(number_b)
    team_a.members.add(users["op_a"], users["op_both"])
    team_b.members.add(users["op_b"], users["op_both"])
    return numbers, users


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def visible_numbers(user, numbers) -> set[int]:
    if user.is_superuser or user.username in ("seer", "op_both"):
        return {provider.pk for provider in numbers.values()}
    return {numbers["A" if user.username == "op_a" else "B"].pk}


def providers_of(obj) -> set:
    """The numbers a row belongs to, read along its model's path (not through core.access)."""
    scope = scope_of(type(obj))
    return set(type(obj)._base_manager.filter(pk=obj.pk).values_list(scope.path, flat=True))


SCOPED_ADMINS = sorted((model._meta.label, model_admin) for model, model_admin in admin.site._registry.items()
                       if scope_of(model) is not None)


@pytest.mark.parametrize("who", ["op_a", "op_b", "op_both", "seer", "root"])
def test_every_admin_list_shows_only_rows_of_the_users_numbers(world, who):
    numbers, users = world
    user = users[who]
    client, allowed = client_of(user), visible_numbers(user, numbers)
    counts = {}
    for label, model_admin in SCOPED_ADMINS:
        opts = model_admin.model._meta
        response = client.get(f"/admin/{opts.app_label}/{opts.model_name}/")
        if response.status_code == 403:
            continue
        assert response.status_code == 200, (label, response.status_code)
        changelist = response.context["cl"]
        counts[label] = changelist.result_count
        for row in changelist.result_list:
            found = providers_of(row) - {None}
            shared = scope_of(type(row)).shared_when_empty and not found
            assert shared or found & allowed, (label, row.pk, found, allowed)
    expected = EXPECTED[who]
    assert counts["whatsapp.Conversation"] == expected["conversations"]
    assert counts["contacts.Contact"] == expected["contacts"]
    assert counts["whatsapp.Message"] == expected["messages"]
    assert counts["whatsapp.DeadLetter"] == expected["dead_letters"]
    assert counts["templates_app.MessageTemplate"] == expected["templates"]
    assert counts["whatsapp.Provider"] == expected["providers"]
    assert counts["whatsapp.Resolution"] == expected["resolutions"]
    assert counts["campaigns.Campaign"] == expected["campaigns"]
    assert counts["whatsapp.WebhookEvent"] == expected["received"]


def test_change_pages_actions_and_search_of_another_team(world):
    numbers, users = world
    client = client_of(users["op_a"])
    theirs = Conversation.objects.filter(provider=numbers["B"]).first()
    ours = Conversation.objects.filter(provider=numbers["A"]).first()
    assert client.get(f"/admin/whatsapp/conversation/{ours.pk}/change/").status_code == 200
    for url in (f"/admin/whatsapp/conversation/{theirs.pk}/change/",
                f"/admin/contacts/contact/{Contact.objects.get(profile_name='Bea').pk}/change/",
                f"/admin/whatsapp/provider/{numbers['B'].pk}/change/",
                f"/admin/whatsapp/message/{Message.objects.filter(provider=numbers['B']).first().pk}/change/"):
        response = client.get(url)
        assert response.status_code == 302 and response.url == "/admin/", url  # "does not exist", as Django says
    assert client.get(f"/admin/whatsapp/conversation/{theirs.pk}/transcript/").status_code == 404
    assert client.post(f"/admin/whatsapp/conversation/{theirs.pk}/status/", {"status": "resolved"}).status_code == 404

    # An action given both teams' rows changes only the user's.
    both = [str(pk) for pk in Conversation.objects.filter(status="open").values_list("pk", flat=True)]
    client.post("/admin/whatsapp/conversation/", {"action": "resolve", "_selected_action": both})
    assert not Conversation.objects.filter(provider=numbers["A"], status="open").exists()
    assert Conversation.objects.filter(provider=numbers["B"], status="open").count() == 1

    # Search: Bea wrote to B only; "Both" wrote to both numbers.
    def found(user, model, term):
        return client_of(user).get(f"/admin/{model}/?q={term}").context["cl"].result_count

    assert (found(users["op_a"], "whatsapp/conversation", "Bea"), found(users["op_b"], "whatsapp/conversation", "Bea"),
            found(users["op_a"], "whatsapp/conversation", "Both"), found(users["root"], "whatsapp/conversation",
                                                                         "Both")) == (0, 1, 1, 2)
    assert (found(users["op_a"], "contacts/contact", "Bea"), found(users["op_b"], "contacts/contact", "Bea")) == (0, 1)


def test_autocomplete_offers_only_the_users_rows(world):
    _, users = world
    url = "/admin/autocomplete/?app_label=whatsapp&model_name=conversation&field_name=contact&term="
    seen = {who: sorted(row["text"] for row in client_of(users[who]).get(url).json()["results"])
            for who in ("op_a", "op_b", "op_both")}
    assert seen == {"op_a": ["Alma", "Arno", "Both"], "op_b": ["Bea", "Both"],
                    "op_both": ["Alma", "Arno", "Bea", "Both"]}


def _csv_rows(response) -> list[dict]:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return list(csv.DictReader(io.StringIO(body.decode())))


def test_exports_and_figures_are_scoped(world):
    numbers, users = world
    campaign = Campaign.objects.get()
    for who, status in (("op_a", 200), ("op_b", 404), ("root", 200)):
        response = client_of(users[who]).get(reverse("admin:campaigns_campaign_csv", args=[campaign.pk]))
        assert response.status_code == status, who
    for who in ("op_a", "op_b", "op_both", "root", "token_a"):
        api = token_client(users["op_a"]) if who == "token_a" else token_client(users[who])
        rows = _csv_rows(api.get("/api/v1/analytics/summary/?format=csv"))
        assert int(rows[0]["received"]) == EXPECTED[who]["received"], who
        attention = {row["figure"]: row["value"] for row in api.get("/api/v1/analytics/attention/").json()["rows"]}
        assert int(attention["dead_letters"]) == EXPECTED[who]["dead_letters"], who
    # Another team's number is refused as a filter, as one that does not exist.
    response = token_client(users["op_a"]).get(f"/api/v1/analytics/summary/?provider={numbers['B'].pk}")
    assert response.status_code == 400 and f"there is no provider {numbers['B'].pk}" in response.json()["detail"]
    page = client_of(users["op_b"]).get("/admin/").content.decode()
    assert "Number B" in page and "Number A" not in page


API_LISTS = {"conversations": "conversations", "contacts": "contacts", "messages": "messages",
             "templates": "templates", "providers": "providers", "resolutions": "resolutions",
             "campaigns": "campaigns"}


@pytest.mark.parametrize("who", ["op_a", "op_b", "op_both", "seer", "root", "token_a"])
def test_every_api_list_counts_only_the_users_rows(world, who):
    _, users = world
    api = token_client(users["op_a" if who == "token_a" else who])
    for key, path in API_LISTS.items():
        response = api.get(f"/api/v1/{path}/")
        assert response.status_code == 200, (path, response.content)
        assert response.json()["count"] == EXPECTED[who][key], (who, path)
    dead = api.get("/api/v1/messages/?status=dead_letter").json()["count"]
    assert dead == EXPECTED[who]["dead_letters"]
    # The unmapped queue (nobody is mapped here): the caller's contacts, with only their numbers' messages.
    queue = api.get("/api/v1/contacts/unmapped/").json()
    assert queue["count"] == EXPECTED[who]["contacts"]
    both = next(row for row in queue["results"] if row["profile_name"] == "Both")
    assert both["message_count"] == (2 if EXPECTED[who]["providers"] == 2 else 1)


def test_the_api_treats_another_teams_rows_as_missing(world):
    numbers, users = world
    users["op_a"].user_permissions.add(Permission.objects.get(codename="add_message"))
    api = token_client(users["op_a"])
    theirs = Conversation.objects.filter(provider=numbers["B"]).first()
    bea = Contact.objects.get(profile_name="Bea")
    assert api.get(f"/api/v1/conversations/{theirs.pk}/").status_code == 404
    assert api.get(f"/api/v1/contacts/{bea.pk}/").status_code == 404
    assert api.post(f"/api/v1/conversations/{theirs.pk}/status/", {"status": "resolved"},
                    format="json").status_code == 404
    assert api.post("/api/v1/conversations/bulk-status/", {"ids": [theirs.pk], "status": "resolved"},
                    format="json").status_code == 404
    assert api.get(f"/api/v1/conversations/{theirs.pk}/suggestions/").status_code == 404
    sent = api.post("/api/v1/messages/", {"provider": numbers["B"].pk, "contact": bea.pk, "type": "text",
                                          "text": "hi"}, format="json")
    assert sent.status_code == 400 and "provider" in sent.json()["errors"]
    assert not Message.objects.filter(text="hi").exists()
    teams = api.get("/api/v1/teams/").json()
    assert [team["name"] for team in teams["results"]] == ["Team A"]


def test_without_teams_everyone_sees_everything_and_a_user_in_none_sees_nothing(world):
    _, users = world
    loner = _viewer("loner")
    assert token_client(loner).get("/api/v1/conversations/").json()["count"] == 0
    Team.objects.all().delete()
    for user in (loner, users["op_a"]):
        assert token_client(user).get("/api/v1/conversations/").json()["count"] == 5
    assert Provider.objects.count() == 2


def _scoped_api_lists():
    from config.api import router

    for prefix, viewset, _ in router.registry:
        model = getattr(getattr(viewset, "queryset", None), "model", None)
        if model is not None and scope_of(model) is not None:
            yield prefix, model


@pytest.mark.parametrize("who", ["op_a", "op_b", "token_a"])
def test_every_scoped_api_list_returns_only_rows_of_the_users_numbers(world, who):
    numbers, users = world
    user = users["op_a" if who == "token_a" else who]
    api, allowed = token_client(user), visible_numbers(user, numbers)
    checked = []
    for prefix, model in _scoped_api_lists():
        response = api.get(f"/api/v1/{prefix}/?page_size=100")
        if response.status_code == 403:
            continue
        assert response.status_code == 200, (prefix, response.content)
        body = response.json()
        rows = body["results"] if isinstance(body, dict) else body
        for row in rows:
            found = providers_of(model._base_manager.get(pk=row["id"])) - {None}
            assert found & allowed or (scope_of(model).shared_when_empty and not found), (prefix, row["id"])
        checked.append(prefix)
    assert {"conversations", "contacts", "messages", "templates", "providers", "resolutions", "campaigns",
            "audiences", "marketing-suppressions", "message-insights", "ai-calls"} <= set(checked)


def test_label_counts_count_only_the_users_conversations(world):
    numbers, users = world
    label = Label.objects.create(name="vip")
    for key in ("A", "B"):
        Conversation.objects.filter(provider=numbers[key]).first().labels.add(label)
    for who, expected in (("op_a", 1), ("op_b", 1), ("root", 2)):
        (row,) = token_client(users[who]).get("/api/v1/labels/").json()["results"]
        assert row["conversation_count"] == expected, who
        listed = client_of(users[who]).get("/admin/whatsapp/label/").context["cl"].result_list
        assert [item.conversation_total for item in listed] == [expected], who


def test_assignees_shared_replies_segments_and_gdpr_follow_the_teams(world):
    numbers, users = world
    op_a = users["op_a"]
    op_a.user_permissions.add(*Permission.objects.filter(codename__in=[
        "add_savedreply", "change_savedreply", "delete_savedreply", "view_dataexport"]))
    api = token_client(op_a)
    ours = Conversation.objects.filter(provider=numbers["A"]).first()
    refused = api.post(f"/api/v1/conversations/{ours.pk}/assign/", {"assignee": users["op_b"].pk}, format="json")
    assert refused.status_code == 400 and "team of this number" in refused.json()["detail"]
    for assignee in (op_a, users["op_both"], users["seer"], users["root"]):
        response = api.post(f"/api/v1/conversations/{ours.pk}/assign/", {"assignee": assignee.pk}, format="json")
        assert response.status_code == 200, assignee.username

    shared = api.post("/api/v1/saved-replies/", {"title": "Hours", "text": "9 to 5"}, format="json")
    assert shared.status_code == 403 and "every team" in shared.json()["detail"]
    own = api.post("/api/v1/saved-replies/", {"title": "Hours A", "text": "9 to 5", "provider": numbers["A"].pk},
                   format="json")
    assert own.status_code == 201
    root_reply = token_client(users["root"]).post("/api/v1/saved-replies/", {"title": "Everyone", "text": "Hi"},
                                                  format="json").json()
    assert api.patch(f"/api/v1/saved-replies/{root_reply['id']}/", {"text": "changed"},
                     format="json").status_code == 403
    assert api.delete(f"/api/v1/saved-replies/{root_reply['id']}/").status_code == 403

    segment = token_client(users["root"]).post("/api/v1/segments/", {"name": "Everyone", "filters": {}},
                                               format="json").json()
    counts = {who: token_client(users[who]).get(f"/api/v1/segments/{segment['id']}/count/").json()["matches"]
              for who in ("op_a", "op_b", "root")}
    assert counts == {"op_a": 3, "op_b": 2, "root": 4}

    assert api.get("/api/v1/exports/").status_code == 403  # a person's data spans every number
    assert token_client(users["root"]).get("/api/v1/exports/").status_code == 200
