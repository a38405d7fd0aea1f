"""
The templates API: authoring with every broken rule reported at once, the review workflow with the admin's
permissions (a reviewer never approves their own template), submission to the sandbox provider (which
approves at once), versions and diffs, the sync job and its lock, previews, usage figures, and bad input
that never fails the server.
"""

import json
import threading
from contextlib import contextmanager

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from contacts.services.identities import contact_resolve
from core.locks import try_session_lock
from core.models import AuditLog
from templates_app.models import MessageTemplate
from templates_app.selectors import sendable_template, template_account
from templates_app.services.provider_submission import template_submit
from tests.conftest import refused, token_client
from tests.fakes import FakeServer, Reply
from whatsapp.models import Message, Provider
from whatsapp.providers.events import Identity, IdentityKind, MessageStatus, TemplateStatus
from whatsapp.providers.meta import graph_api_version
from whatsapp.services.inbound import conversation_get_or_create
from whatsapp.services.providers import provider_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/templates/"
WABA = "102290129340398"

COMPONENTS = [
    {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
    {"type": "BODY", "text": "Hi {{1}}, your order {{2}} has shipped."},
    {"type": "FOOTER", "text": "Thanks for shopping with us"},
    {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track", "url": "https://shop.example/t/{{1}}"},
                                    {"type": "QUICK_REPLY", "text": "Thanks"}]},
]
EXAMPLES = {"header": {"1": "#1042"}, "body": {"1": "Ana", "2": "#1042"}, "buttons": {"0": "1042"}}


def valid(provider: Provider, **changes) -> dict:
    return {"provider": provider.pk, "name": "order_shipped", "language": "en_US", "category": "utility",
            "components": COMPONENTS, "examples": EXAMPLES, **changes}


AUTHOR_PERMS = ("templates_app.view_messagetemplate", "templates_app.add_messagetemplate",
                "templates_app.change_messagetemplate", "templates_app.delete_messagetemplate")


def make_user(username: str, perms: tuple[str, ...] = (), groups: tuple[str, ...] = ()):
    user = get_user_model().objects.create_user(username, password="pw-123456-strong")
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    for group in groups:
        user.groups.add(Group.objects.get(name=group))
    return user


def ok(response, status: int = 200) -> dict:
    assert response.status_code == status, response.content
    return response.json()


@pytest.fixture
def author():
    return make_user("author", AUTHOR_PERMS)


@pytest.fixture
def writer(author) -> APIClient:
    return token_client(author)


@pytest.fixture
def reviewer() -> APIClient:
    # The admin's "Template reviewer" role: view, add, change and review.
    return token_client(make_user("reviewer", groups=("Template reviewer",)))


@pytest.fixture
def draft(writer, sandbox_provider) -> dict:
    return ok(writer.post(URL, valid(sandbox_provider), format="json"), 201)


def in_review(writer, template: dict) -> dict:
    return ok(writer.post(f"{URL}{template['id']}/submit/"))


def approved(writer, reviewer, template: dict) -> dict:
    """Submitted, approved by the reviewer, then sent to the sandbox provider (the submission task's body)."""
    in_review(writer, template)
    assert ok(reviewer.post(f"{URL}{template['id']}/approve/"))["status"] == "internally_approved"
    assert template_submit(template["id"]) == "approved"
    return ok(writer.get(f"{URL}{template['id']}/"))


# --- create, read, edit, delete --------------------------------------------------------------------

def test_create_valid_is_a_draft_with_preview_and_usage(writer, sandbox_provider):
    response = writer.post(URL, valid(sandbox_provider), format="json")
    body = ok(response, 201)
    assert response["Location"] == f"{URL}{body['id']}/"
    assert (body["status"], body["status_label"], body["version"], body["created_by"], body["provider"]) == (
        "draft", "Draft", 1, "author", sandbox_provider.pk)
    assert body["components"] == COMPONENTS and body["examples"] == EXAMPLES
    assert body["preview"] == {"header_text": "Order #1042", "header_media": "",
                               "body": "Hi Ana, your order #1042 has shipped.",
                               "footer": "Thanks for shopping with us",
                               "buttons": [{"type": "URL", "label": "Track", "detail": "https://shop.example/t/1042"},
                                           {"type": "QUICK_REPLY", "label": "Thanks", "detail": ""}]}
    assert body["usage"] == {"sends": 0, "delivered": 0, "read": 0, "failed": 0, "delivered_rate": None,
                             "read_rate": None, "failed_rate": None}
    assert (body["submitted_by"], body["reviewed_by"], body["provider_template_id"], body["parameter_format"]) == (
        None, None, "", "positional")
    assert AuditLog.objects.filter(action="template.created", object_id=str(body["id"])).exists()


def test_create_invalid_lists_every_broken_rule_on_its_field(writer, sandbox_provider):
    broken = valid(sandbox_provider, name="Order Shipped!", language="english", category="promo",
                   components=[{"type": "BODY", "text": "{{1}}{{3}} is on its way"},
                               {"type": "FOOTER", "text": "x" * 61},
                               {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Go",
                                                                "url": "https://shop.example/{{1}}/page"}]}],
                   examples={})
    body = refused(writer.post(URL, broken, format="json"), 400, "invalid_request")
    errors = body["errors"]
    assert set(errors) == {"name", "language", "category", "body", "footer", "buttons", "examples"}
    assert "lowercase letters, digits and underscores" in errors["name"][0]
    assert "marketing, utility, authentication" in errors["category"][0]
    assert len(errors["body"]) == 3  # a gap in the numbering, two parameters side by side, one at the start
    assert any("without gaps" in message for message in errors["body"])
    assert any("next to each other" in message for message in errors["body"])
    assert any("starts with the parameter" in message for message in errors["body"])
    assert "at most 60 characters" in errors["footer"][0]
    assert "very end of the url" in errors["buttons"][0]
    assert len(errors["examples"]) == 3
    assert "footer: " in body["detail"] and "name: " in body["detail"]
    assert not MessageTemplate.objects.exists()


def test_create_refuses_read_only_fields_unknown_provider_and_taken_names(writer, sandbox_provider):
    body = refused(writer.post(URL, valid(sandbox_provider, status="approved", provider_template_id="x",
                                          reviewed_by=1, colour="red"), format="json"), 400, "invalid_request")
    assert "submit, withdraw, approve and reject" in body["errors"]["status"][0]
    assert body["errors"]["provider_template_id"] == ["read-only"]
    assert body["errors"]["reviewed_by"] == ["read-only"]
    assert body["errors"]["colour"] == ["unknown field"]
    body = refused(writer.post(URL, {**valid(sandbox_provider), "provider": 999999}, format="json"), 400,
                   "invalid_request")
    assert list(body["errors"]) == ["provider"]
    assert not MessageTemplate.objects.exists()

    ok(writer.post(URL, valid(sandbox_provider), format="json"), 201)
    body = refused(writer.post(URL, valid(sandbox_provider), format="json"), 400, "invalid_request")
    assert "already exists" in body["errors"]["name"][0]
    assert MessageTemplate.objects.count() == 1


def test_create_for_a_provider_that_manages_its_own_templates_is_a_conflict(writer):
    chatwoot = provider_create(kind="chatwoot", name="Chatwoot", options={
        "base_url": "https://chat.example.test", "account_id": "3", "inbox_id": "7", "api_token": "t",
        "webhook_secret": "s"})
    body = refused(writer.post(URL, valid(chatwoot), format="json"), 409, "templates_managed_elsewhere")
    assert "Chatwoot" in body["detail"]


def test_read_edit_in_place_and_delete(writer, sandbox_provider, draft):
    url = f"{URL}{draft['id']}/"
    assert ok(writer.get(url))["name"] == "order_shipped"
    refused(writer.get(f"{URL}999999/"), 404, "not_found")

    footer = [*COMPONENTS[:2], {"type": "FOOTER", "text": "See you soon"}, COMPONENTS[3]]
    patched = ok(writer.patch(url, {"components": footer}, format="json"))
    assert (patched["id"], patched["version"], patched["status"]) == (draft["id"], 1, "draft")
    assert patched["preview"]["footer"] == "See you soon"
    put = ok(writer.put(url, {"name": "order_sent", "language": "en_US", "category": "marketing",
                              "components": COMPONENTS}, format="json"))
    assert (put["id"], put["name"], put["category"], put["examples"]) == (draft["id"], "order_sent", "marketing",
                                                                          EXAMPLES)  # left out: kept
    body = refused(writer.put(url, {"name": "order_sent"}, format="json"), 400, "invalid_request")
    assert {"language", "category", "components"} <= set(body["errors"])
    body = refused(writer.patch(url, {"status": "approved", "provider": 5, "version": 9}, format="json"), 400,
                   "invalid_request")
    assert set(body["errors"]) == {"status", "provider", "version"}
    body = refused(writer.patch(url, {"components": [{"type": "BODY", "text": "{{1}}"}]}, format="json"), 400,
                   "invalid_request")
    assert "body" in body["errors"] and "examples" in body["errors"]
    assert MessageTemplate.objects.get(pk=draft["id"]).status == "draft"

    assert writer.delete(url).status_code == 204
    assert not MessageTemplate.objects.exists()
    assert AuditLog.objects.filter(action="template.deleted", object_id=str(draft["id"])).exists()
    refused(writer.delete(url), 404, "not_found")


def test_a_template_in_review_or_at_the_provider_is_neither_edited_nor_deleted(writer, reviewer, draft):
    url = f"{URL}{draft['id']}/"
    in_review(writer, draft)
    refused(writer.patch(url, {"category": "marketing"}, format="json"), 409, "wrong_status")
    refused(writer.delete(url), 409, "wrong_status")
    approved(writer, reviewer, ok(writer.post(f"{url}withdraw/")))
    refused(writer.delete(url), 409, "wrong_status")
    assert MessageTemplate.objects.get(pk=draft["id"]).category == "utility"


def test_managed_elsewhere_is_read_only(writer, sandbox_provider):
    imported = MessageTemplate.objects.create(provider=sandbox_provider, name="imported", language="en_US",
                                              components=COMPONENTS, examples=EXAMPLES, managed_elsewhere=True,
                                              status=TemplateStatus.APPROVED, provider_template_id="cw-1")
    refused(writer.patch(f"{URL}{imported.pk}/", {"category": "marketing"}, format="json"), 409,
            "templates_managed_elsewhere")


# --- the workflow ----------------------------------------------------------------------------------

def test_submit_approve_by_another_reviewer_and_the_provider_approves(writer, reviewer, draft):
    url = f"{URL}{draft['id']}/"
    submitted = in_review(writer, draft)
    assert (submitted["status"], submitted["submitted_by"]) == ("in_review", "author") and submitted["submitted_at"]
    refused(writer.post(f"{url}submit/"), 409, "wrong_status")  # already in review

    approved_now = ok(reviewer.post(f"{url}approve/"))
    assert (approved_now["status"], approved_now["reviewed_by"]) == ("internally_approved", "reviewer")
    assert approved_now["reviewed_at"]
    assert template_submit(draft["id"]) == "approved"  # the submission task, run here
    detail = ok(writer.get(url))
    assert detail["status"] == "approved" and detail["provider_template_id"].startswith("sandbox-tpl-")
    assert detail["sent_to_provider_at"] and detail["approved_at"]
    actions = list(AuditLog.objects.filter(object_id=str(draft["id"]), action__startswith="template.")
                   .order_by("id").values_list("action", flat=True))
    assert actions[:3] == ["template.created", "template.submitted_for_review", "template.approved_internally"]


def test_a_reviewer_cannot_approve_their_own_template(sandbox_provider):
    both = token_client(make_user("both", groups=("Template reviewer",)))
    template = ok(both.post(URL, valid(sandbox_provider), format="json"), 201)
    in_review(both, template)
    body = refused(both.post(f"{URL}{template['id']}/approve/"), 403, "own_template")
    assert "own template" in body["detail"]
    refused(both.post(f"{URL}{template['id']}/reject/", {"reason": "no"}, format="json"), 403, "own_template")
    assert MessageTemplate.objects.get(pk=template["id"]).status == "in_review"


def test_approve_and_reject_need_the_review_permission(writer, draft):
    in_review(writer, draft)
    refused(writer.post(f"{URL}{draft['id']}/approve/"), 403, "permission_denied")
    refused(writer.post(f"{URL}{draft['id']}/reject/", {"reason": "no"}, format="json"), 403, "permission_denied")
    assert MessageTemplate.objects.get(pk=draft["id"]).status == "in_review"


def test_reject_needs_a_reason_then_the_author_edits_and_submits_again(writer, reviewer, draft):
    url = f"{URL}{draft['id']}/"
    refused(reviewer.post(f"{url}reject/", {"reason": "not yet"}, format="json"), 409, "wrong_status")  # a draft
    in_review(writer, draft)
    body = refused(reviewer.post(f"{url}reject/", {}, format="json"), 400, "invalid_request")
    assert "reason" in body["errors"]
    refused(reviewer.post(f"{url}reject/", {"reason": "   "}, format="json"), 400, "invalid_request")
    assert MessageTemplate.objects.get(pk=draft["id"]).status == "in_review"

    rejected = ok(reviewer.post(f"{url}reject/", {"reason": "Say 'order', not 'purchase'."}, format="json"))
    assert (rejected["status"], rejected["review_note"], rejected["reviewed_by"]) == (
        "internally_rejected", "Say 'order', not 'purchase'.", "reviewer")
    edited = ok(writer.patch(url, {"category": "marketing"}, format="json"))
    assert (edited["id"], edited["status"]) == (draft["id"], "draft")
    assert in_review(writer, edited)["review_note"] == ""


def test_withdraw_from_review(writer, draft):
    url = f"{URL}{draft['id']}/"
    refused(writer.post(f"{url}withdraw/"), 409, "wrong_status")
    in_review(writer, draft)
    assert ok(writer.post(f"{url}withdraw/"))["status"] == "draft"


def test_submit_an_internally_approved_template_to_the_provider_again(writer, reviewer, draft):
    url = f"{URL}{draft['id']}/"
    in_review(writer, draft)
    ok(reviewer.post(f"{url}approve/"))
    MessageTemplate.objects.filter(pk=draft["id"]).update(submission_error="Meta refused: token expired",
                                                          submission_attempts=8, next_submission_at=None)
    again = ok(writer.post(f"{url}submit/"))
    assert again["status"] == "internally_approved"
    row = MessageTemplate.objects.get(pk=draft["id"])
    assert row.submission_attempts == 0 and row.next_submission_at is not None
    assert AuditLog.objects.filter(action="template.resubmitted", object_id=str(draft["id"])).exists()
    assert template_submit(draft["id"]) == "approved"
    assert ok(writer.get(url))["submission_error"] == ""


def test_read_only_users_and_strangers(sandbox_provider, draft):
    viewer = token_client(make_user("viewer", ("templates_app.view_messagetemplate",)))
    assert ok(viewer.get(URL))["count"] == 1
    refused(viewer.post(URL, valid(sandbox_provider, name="other"), format="json"), 403, "permission_denied")
    refused(viewer.patch(f"{URL}{draft['id']}/", {"category": "marketing"}, format="json"), 403,
            "permission_denied")
    refused(viewer.post(f"{URL}{draft['id']}/submit/"), 403, "permission_denied")
    refused(viewer.delete(f"{URL}{draft['id']}/"), 403, "permission_denied")
    refused(viewer.post(f"{URL}sync/", {}, format="json"), 403, "permission_denied")
    stranger = token_client(make_user("stranger"))
    refused(stranger.get(URL), 403, "permission_denied")
    refused(stranger.post(f"{URL}preview/", {"components": COMPONENTS}, format="json"), 403, "permission_denied")
    refused(APIClient().get(URL), 401, "not_authenticated")
    assert MessageTemplate.objects.get(pk=draft["id"]).status == "draft"


# --- versions ----------------------------------------------------------------------------------------

def test_editing_an_approved_template_makes_version_2_and_keeps_version_1_sendable(writer, reviewer,
                                                                                   sandbox_provider, draft):
    v1 = approved(writer, reviewer, draft)
    body = [{"type": "BODY", "text": "Hello {{1}}, order {{2}} is on its way."}, *COMPONENTS[2:]]
    response = writer.patch(f"{URL}{v1['id']}/", {"components": [COMPONENTS[0], *body]}, format="json")
    v2 = ok(response, 201)
    assert response["Location"] == f"{URL}{v2['id']}/"
    assert (v2["version"], v2["status"], v2["name"], v2["created_by"]) == (2, "draft", "order_shipped", "author")
    assert v2["id"] != v1["id"]
    assert ok(writer.get(f"{URL}{v1['id']}/"))["status"] == "approved"
    assert sendable_template(sandbox_provider, "order_shipped", "en_US").pk == v1["id"]
    refused(writer.patch(f"{URL}{v1['id']}/", {"category": "marketing"}, format="json"), 409,
            "newer_version_exists")
    body = refused(writer.patch(f"{URL}{v1['id']}/", {"name": "renamed"}, format="json"), 400, "invalid_request")
    assert "name" in body["errors"]

    versions = ok(writer.get(f"{URL}{v1['id']}/versions/"))
    assert [(row["version"], row["status"]) for row in versions["results"]] == [(2, "draft"), (1, "approved")]

    diff = ok(writer.get(f"{URL}{v2['id']}/diff/"))
    assert (diff["older"]["version"], diff["newer"]["version"]) == (1, 2)
    sections = {section["section"]: section for section in diff["sections"]}
    assert [name for name, section in sections.items() if section["changed"]] == ["body"]
    assert sections["body"]["lines"] == [{"marker": "-", "text": "Hi {{1}}, your order {{2}} has shipped."},
                                         {"marker": "+", "text": "Hello {{1}}, order {{2}} is on its way."}]
    assert ok(writer.get(f"{URL}{v1['id']}/diff/", {"against": 2}))["sections"] == diff["sections"]
    refused(writer.get(f"{URL}{v1['id']}/diff/"), 404, "not_found")  # version 1 has no earlier version
    refused(writer.get(f"{URL}{v2['id']}/diff/", {"against": 7}), 404, "not_found")
    refused(writer.get(f"{URL}{v2['id']}/diff/", {"against": "one"}), 400, "invalid_request")

    # Approved in turn, version 2 supersedes version 1.
    approved(writer, reviewer, v2)
    assert ok(writer.get(f"{URL}{v1['id']}/"))["status"] == "superseded"
    assert sendable_template(sandbox_provider, "order_shipped", "en_US").pk == v2["id"]


# --- sync --------------------------------------------------------------------------------------------

def test_sync_one_provider_and_all(writer, reviewer, sandbox_provider, draft):
    approved(writer, reviewer, draft)
    report = ok(writer.post(f"{URL}sync/", {"provider": sandbox_provider.pk}, format="json"))["reports"]
    assert len(report) == 1 and report[0]["provider"] == str(sandbox_provider)
    # The simulator holds no list of its own: its approved template is not reported missing.
    assert report[0]["missing"] == [] and not report[0]["skipped"]
    assert report[0]["summary"].endswith("0 imported, 0 updated, 0 unchanged")
    reports = ok(writer.post(f"{URL}sync/", {}, format="json"))["reports"]
    assert [row["provider"] for row in reports] == [str(sandbox_provider)]
    assert AuditLog.objects.filter(action="templates.synced", actor__username="author").exists()
    refused(writer.post(f"{URL}sync/", {"provider": 999999}, format="json"), 400, "invalid_request")
    refused(writer.post(f"{URL}sync/", {"provider": "sandbox"}, format="json"), 400, "invalid_request")


@contextmanager
def sync_lock_held_elsewhere(provider: Provider):
    """Another connection (another worker's sync) holds the business account's sync lock."""
    held, release = threading.Event(), threading.Event()

    def hold():
        try:
            with try_session_lock("templates-sync", *template_account(provider)) as locked:
                assert locked
                held.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(10), "the other connection did not take the lock"
        yield
    finally:
        release.set()
        thread.join(10)


def test_sync_while_another_sync_runs_is_a_conflict(writer, sandbox_provider):
    with sync_lock_held_elsewhere(sandbox_provider):
        body = refused(writer.post(f"{URL}sync/", {"provider": sandbox_provider.pk}, format="json"), 409,
                       "sync_running")
        assert "another sync" in body["detail"] and body["reports"][0]["skipped"]
        everyone = ok(writer.post(f"{URL}sync/", {}, format="json"))["reports"]
        assert everyone[0]["skipped"]
    assert ok(writer.post(f"{URL}sync/", {"provider": sandbox_provider.pk}, format="json"))["reports"][0][
        "skipped"] == ""


def test_sync_provider_failure_is_a_bad_gateway(writer, settings):
    with FakeServer() as fake:
        settings.META_GRAPH_BASE_URL = fake.url
        fake.routes[f"/{graph_api_version()}/{WABA}/message_templates"] = [Reply.json(
            {"error": {"message": "Invalid parameter", "type": "OAuthException", "code": 100,
                       "error_data": {"details": "Unknown WABA"}}}, status=400)]
        meta = provider_create(kind="meta", name="Meta", options={
            "phone_number_id": "1100220033", "waba_id": WABA, "phone_number": "+15550001111",
            "access_token": "EAAtoken-secret-value", "app_secret": "app-secret", "verify_token": "verify"})
        body = refused(writer.post(f"{URL}sync/", {"provider": meta.pk}, format="json"), 502, "provider_error")
        assert fake.hits(f"/{graph_api_version()}/{WABA}/message_templates")
    assert "Unknown WABA" in body["detail"] and body["reports"][0]["error"] == body["detail"]
    assert "EAAtoken" not in json.dumps(body)


# --- preview -----------------------------------------------------------------------------------------

def test_preview_without_saving(writer):
    body = ok(writer.post(f"{URL}preview/", {"components": COMPONENTS, "examples": EXAMPLES}, format="json"))
    assert body["valid"] is True and body["errors"] == {}
    assert body["preview"]["body"] == "Hi Ana, your order #1042 has shipped."
    filled = ok(writer.post(f"{URL}preview/", {"components": COMPONENTS, "examples": EXAMPLES,
                                               "values": {"header": ["#7"], "body": ["Ben", "#7"],
                                                          "buttons": {"0": "7"}}}, format="json"))
    assert filled["preview"]["body"] == "Hi Ben, your order #7 has shipped."
    assert filled["preview"]["buttons"][0]["detail"] == "https://shop.example/t/7"

    broken = ok(writer.post(f"{URL}preview/", {"components": [{"type": "BODY", "text": "Hi {{1}} and {{2}}"}],
                                               "examples": {"body": {"1": "Ana"}}, "name": "Bad Name"},
                            format="json"))
    assert broken["valid"] is False and set(broken["errors"]) == {"name", "body", "examples"}
    assert broken["preview"]["body"] == "Hi Ana and {{2}}"  # what has no value stays visible
    assert not MessageTemplate.objects.exists()
    refused(writer.post(f"{URL}preview/", {}, format="json"), 400, "invalid_request")


# --- usage and the list ------------------------------------------------------------------------------

def outbound(template: MessageTemplate, status: str, n: int) -> Message:
    contact = contact_resolve(provider=template.provider, identities=[
        Identity(IdentityKind.PHONE, f"+1555010{n:04d}")], profile_name=f"Customer {n}")
    conversation = conversation_get_or_create(provider=template.provider, contact=contact)
    return Message.objects.create(provider=template.provider, conversation=conversation, direction="outbound",
                                  message_type="template", status=status, template=template,
                                  provider_message_id=f"sbx-out-{template.pk}-{n}")


def test_usage_figures_come_from_the_messages(writer, sandbox_provider, draft):
    template = MessageTemplate.objects.get(pk=draft["id"])
    for n, status in enumerate([MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED,
                                MessageStatus.SENT]):
        outbound(template, status, n)
    inbound = outbound(template, MessageStatus.RECEIVED, 9)
    Message.objects.filter(pk=inbound.pk).update(direction="inbound")  # not a send
    usage = {"sends": 4, "delivered": 2, "read": 1, "failed": 1, "delivered_rate": 0.5, "read_rate": 0.25,
             "failed_rate": 0.25}
    assert ok(writer.get(f"{URL}{template.pk}/"))["usage"] == usage
    assert ok(writer.get(URL))["results"][0]["usage"] == usage
    other = ok(writer.post(URL, valid(sandbox_provider, name="other"), format="json"), 201)
    assert ids(writer.get(URL, {"ordering": "-sends_count"})) == [template.pk, other["id"]]
    refused(writer.delete(f"{URL}{template.pk}/"), 409, "in_use")  # it is in messages: history


def ids(response) -> list[int]:
    return [row["id"] for row in ok(response)["results"]]


def test_list_filters_search_and_ordering(writer, reviewer, sandbox_provider, draft):
    marketing = ok(writer.post(URL, valid(sandbox_provider, name="summer_sale", category="marketing",
                                          language="pt_BR"), format="json"), 201)
    approved(writer, reviewer, draft)
    imported = MessageTemplate.objects.create(provider=sandbox_provider, name="imported_one", language="en_US",
                                              managed_elsewhere=True, status=TemplateStatus.APPROVED)
    assert ids(writer.get(URL, {"status": "approved", "managed_elsewhere": "false"})) == [draft["id"]]
    assert ids(writer.get(URL, {"status__in": "draft,approved", "ordering": "name"})) == [
        imported.pk, draft["id"], marketing["id"]]
    assert ids(writer.get(URL, {"category": "marketing"})) == [marketing["id"]]
    assert ids(writer.get(URL, {"language": "pt_BR"})) == [marketing["id"]]
    assert ids(writer.get(URL, {"managed_elsewhere": "true"})) == [imported.pk]
    assert ids(writer.get(URL, {"name": "summer_sale"})) == [marketing["id"]]
    assert ids(writer.get(URL, {"name__icontains": "SALE"})) == [marketing["id"]]
    assert ids(writer.get(URL, {"search": "order"})) == [draft["id"]]
    assert ids(writer.get(URL, {"provider": sandbox_provider.pk, "ordering": "-name"})) == [
        marketing["id"], draft["id"], imported.pk]
    for bad in ({"status": "fine"}, {"provider": "abc"}, {"provider": sandbox_provider.pk + 1000},
                {"managed_elsewhere": "perhaps"}, {"status__in": "approved,x"}):
        refused(writer.get(URL, bad), 400, "invalid_request")


def test_list_query_count_does_not_grow_with_the_page(writer, sandbox_provider):
    people = [make_user(f"person{n}") for n in range(3)]

    def add(numbers: range) -> None:
        for n in numbers:
            template = MessageTemplate.objects.create(
                provider=sandbox_provider, name=f"template_{n}", language="en_US", components=COMPONENTS,
                examples=EXAMPLES, created_by=people[0], submitted_by=people[1], reviewed_by=people[2],
                status=TemplateStatus.APPROVED)
            outbound(template, MessageStatus.READ, n)

    def queries() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as captured:
            rows = ok(writer.get(URL, {"page_size": 100}))["results"]
        assert all(row["usage"]["sends"] == 1 and row["reviewed_by"] == "person2" for row in rows)
        return len(rows), len(captured)

    add(range(3))
    writer.get(URL)  # the token's last-used time is written once, here
    rows_few, few = queries()
    add(range(3, 25))
    rows_many, many = queries()
    assert (rows_few, rows_many) == (3, 25)
    assert many == few, f"{few} queries for 3 templates, {many} for 25"


# --- bad input ---------------------------------------------------------------------------------------

DEEP = "[" * 5000 + "]" * 5000
ODD_BODIES = [
    ("", "{not json"),
    ("", DEEP),
    ("", '{"name": "x", "components": ' + "[" * 500 + "]" * 500 + "}"),
    ("", '["order_shipped"]'),
    ("", '"just text"'),
    ("", '{"provider": 99999999999999999999}'),
    ("", '{"provider": [1], "name": {"a": 1}, "language": 5, "category": null, "components": "BODY"}'),
    ("", '{"name": "' + "a" * 100_000 + '", "language": "en_US", "category": "utility", "components": []}'),
    ("", '{"name": "n\\u0000", "language": "en_US", "category": "utility", "components": []}'),
    ("", '{"name": "n", "language": "en_US", "category": "utility", '
         '"components": [{"type": "BODY", "text": "Hi \\u0000 there"}]}'),
    ("", '{"name": "n", "language": "\\ud800", "category": "\\udfff", '
         '"components": [{"type": "BODY\\ud800", "text": "Hi \\ud800 there"}]}'),
    ("", '{"name": "n", "language": "en_US", "category": "utility", "components": [{"type": "BODY", "text": '
         '"Hi {{1}}."}], "examples": {"body": {"1": 1e400}}}'),
    ("", '{"name": "n", "language": "en_US", "category": "utility", "components": [{"type": "BODY", "text": "'
         + "x" * 2_000_000 + '"}]}'),
    ("{id}/", '{"components": {"type": "BODY"}}'),
    ("{id}/", '{"examples": [1, 2, 3], "version": 2}'),
    ("{id}/", '{"components": [{"type": "BODY", "text": "\\ud83d"}]}'),
    ("{id}/reject/", '{"reason": ["no"]}'),
    ("{id}/reject/", '{"reason": "' + "r" * 6000 + '"}'),
    ("{id}/reject/", "{not json"),
    ("sync/", '{"provider": "x"}'),
    ("sync/", '{"provider": 99999999999999999999}'),
    ("sync/", "[1]"),
    ("preview/", '{"components": null}'),
    ("preview/", '{"components": [{"type": "BODY", "text": "\\ud800 {{1}}"}]}'),
    ("preview/", '{"components": [], "values": "abc", "name": "' + "b" * 1000 + '"}'),
    ("preview/", DEEP),
]


@pytest.mark.parametrize(("path", "raw"), ODD_BODIES, ids=range(len(ODD_BODIES)))
def test_odd_bodies_never_fail_the_server(writer, reviewer, draft, path, raw):
    url = URL + path.replace("{id}", str(draft["id"]))
    client = reviewer if "reject" in path else writer
    if "reject" in path:
        in_review(writer, draft)
    method = client.patch if path == "{id}/" else client.post
    response = method(url, raw.encode("utf-8", "surrogatepass"), content_type="application/json")
    assert response.status_code == 400, (response.status_code, response.content[:300])
    body = response.json()
    assert body["code"] in ("invalid_request", "parse_error") and body["detail"]
    row = MessageTemplate.objects.get(pk=draft["id"])
    assert (MessageTemplate.objects.count(), row.components, row.examples) == (1, COMPONENTS, EXAMPLES)


ODD_QUERIES = [{"provider": "99999999999999999999"}, {"status": "\x00"}, {"name": "a\x00b"}, {"search": "\x00"},
               {"page": "0"}, {"page_size": "-5"}, {"ordering": "secret"}, {"version": "x"},
               {"managed_elsewhere": ""}, {"name__icontains": "x" * 5000}]


@pytest.mark.parametrize("params", ODD_QUERIES)
def test_odd_queries_never_fail_the_server(writer, draft, params):
    response = writer.get(URL, params)
    assert response.status_code in (200, 400, 404), (response.status_code, response.content[:300])
    if response.status_code != 200:
        assert response.json()["code"] and response.json()["detail"]
