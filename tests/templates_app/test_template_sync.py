"""
Keeping templates in step with the provider, against local servers that play Meta's Graph API and
Chatwoot's inbox API: the sync job (imports, status changes, missing templates, name conflicts, lost
submissions, one run at a time), status webhooks, versions that keep the approved one sendable, and
each template's usage figures.
"""

import copy
import json
import threading
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.utils import timezone

from core.models import AuditLog
from templates_app.models import MessageTemplate
from templates_app.selectors import sendable_template, usage_of, versions_of, with_usage
from templates_app.services.provider_submission import template_provider_status_set, template_submit
from templates_app.services.sync import templates_sync, templates_sync_all
from templates_app.services.versions import template_diff
from templates_app.services.workflow import (
    TemplateWorkflowError,
    template_approve,
    template_create,
    template_edit,
    template_submit_for_review,
)
from tests.conftest import customer, fixture_bytes, fixture_json, json_body, wait_until
from tests.fakes import FakeServer, Reply
from tests.signing import META_PHONE_NUMBER_ID, META_WABA_ID, make_chatwoot, make_meta, post_meta
from whatsapp.models import Conversation, Message, Provider
from whatsapp.providers.events import MessageStatus, TemplateStatus
from whatsapp.services import send_rules
from whatsapp.services.delivery import message_deliver
from whatsapp.services.outbound import SendRequest, message_send
from whatsapp.services.providers import provider_create
from whatsapp.services.send_rules import SendRefused
from whatsapp.services.webhooks import webhook_event_process

GRAPH_VERSION = "v25.0"
TEMPLATES_PATH = f"/{GRAPH_VERSION}/{META_WABA_ID}/message_templates"
SEND_PATH = f"/{GRAPH_VERSION}/{META_PHONE_NUMBER_ID}/messages"
PAGE_ONE_AFTER = "c3luYy1wYWdlLW9uZS1hZnRlcg"
CHATWOOT_INBOX = "/api/v1/accounts/3/inboxes/7"
CHATWOOT_MESSAGES = "/api/v1/accounts/3/conversations/42/messages"
ORDER_BODY = "Hi {{1}}, your order {{2}} ships today."
ORDER_BODY_V2 = "Hi {{1}}, your order {{2}} ships tomorrow morning."
CODE_BODY = "Your code {{1}} expires in ten minutes."


def body_only(text: str) -> list[dict]:
    return [{"type": "BODY", "text": text}]


def meta_listing(fake: FakeServer, pages: list[dict]):
    """Meta's template list in two pages: the first names the second in paging.next (and its cursor)."""

    def answer(request) -> Reply:
        if request.method != "GET":
            return Reply(405, b'{"error": {"message": "unexpected method", "code": 100}}')
        if "after=" in request.query:
            return Reply.json(pages[1])
        first = copy.deepcopy(pages[0])
        first["paging"]["next"] = f"{fake.url}{TEMPLATES_PATH}?limit=100&after={PAGE_ONE_AFTER}"
        return Reply.json(first)

    return answer


def audits(action: str, template: MessageTemplate | None = None):
    rows = AuditLog.objects.filter(action=action)
    if template is not None:
        rows = rows.filter(object_type="templates_app.MessageTemplate", object_id=str(template.pk))
    return rows.order_by("pk")


# --- the sync job against Meta --------------------------------------------------------------------

def test_sync_imports_what_meta_holds_then_follows_its_status_changes(meta, fake):
    pages = [fixture_json("meta", "sync_meta_templates_page1.json"),
             fixture_json("meta", "sync_meta_templates_page2.json")]
    fake.routes[TEMPLATES_PATH] = meta_listing(fake, pages)
    welcome = MessageTemplate.objects.create(
        provider=meta, name="welcome_note", language="en_US", status=TemplateStatus.APPROVED,
        provider_template_id="7001004", quality="green", components=body_only("Thanks for signing up with us."))
    retired = MessageTemplate.objects.create(
        provider=meta, name="old_promo", language="en_US", status=TemplateStatus.APPROVED,
        provider_template_id="7001999", components=body_only("Last chance for the old promo."))
    draft = MessageTemplate.objects.create(
        provider=meta, name="payment_reminder", language="en", components=body_only("Please pay {{1}} soon."),
        examples={"body": {"1": "INV-1"}})

    report = templates_sync(meta)

    assert (report.error, report.skipped) == ("", "")
    assert report.imported == ["shipping_update [en_US] v1", "loyalty_points [pt_BR] v1"]
    assert (report.updated, report.unchanged, report.requeued) == ([], 1, [])
    assert report.missing == ["old_promo [en_US] v1"]
    assert report.conflicts == ["payment_reminder [en]: exists at the provider and is draft here"]
    assert report.summary() == (f"{meta}: 2 imported, 0 updated, 1 unchanged, 1 not listed by the provider, "
                                "1 name conflicts")
    # Meta was asked for every field we keep, then for the page its paging named.
    first, second = fake.hits(TEMPLATES_PATH)
    assert (first.method, first.headers["authorization"]) == ("GET", "Bearer meta-access-token")
    fields = set(parse_qs(first.query)["fields"][0].split(","))
    assert {"id", "name", "language", "status", "category", "components", "parameter_format", "quality_score",
            "rejected_reason"} <= fields
    assert "after" not in parse_qs(first.query)
    assert parse_qs(second.query)["after"] == [PAGE_ONE_AFTER]

    shipping = MessageTemplate.objects.get(name="shipping_update")
    assert (shipping.provider, shipping.status, shipping.provider_template_id, shipping.version) == (
        meta, "approved", "7001001", 1)
    assert (shipping.category, shipping.parameter_format, shipping.quality, shipping.managed_elsewhere) == (
        "utility", "positional", "green", False)
    assert shipping.components == [
        {"type": "HEADER", "format": "TEXT", "text": "Parcel {{1}}"},
        {"type": "BODY", "text": "Hello {{1}}, your parcel leaves our warehouse on {{2}}."},
        {"type": "FOOTER", "text": "Questions? Just reply."},
        {"type": "BUTTONS", "buttons": [
            {"type": "URL", "text": "Track parcel", "url": "https://parcels.example.test/p/{{1}}"},
            {"type": "QUICK_REPLY", "text": "Change address"}]}]
    assert shipping.examples == {"header": {"1": "#5531"}, "body": {"1": "Lucia", "2": "Friday"},
                                 "buttons": {"0": "PX-5531"}}
    assert shipping.approved_at is not None and shipping.synced_at is not None
    loyalty = MessageTemplate.objects.get(name="loyalty_points")
    assert (loyalty.status, loyalty.category, loyalty.parameter_format, loyalty.quality, loyalty.approved_at) == (
        "pending", "marketing", "named", "", None)
    assert loyalty.examples == {"body": {"customer_name": "Rafael", "points": "120"}}
    # The conflicting draft and the template Meta no longer lists are left as they were.
    draft.refresh_from_db()
    assert (draft.status, draft.provider_template_id, draft.components) == (
        "draft", "", body_only("Please pay {{1}} soon."))
    retired.refresh_from_db()
    assert (retired.status, retired.provider_template_id) == ("approved", "7001999")
    welcome.refresh_from_db()
    assert welcome.synced_at is not None
    assert [row.object_repr for row in audits("template.imported")] == [
        "shipping_update [en_US] v1", "loyalty_points [pt_BR] v1"]
    assert {row.actor_label for row in audits("template.imported")} == {"meta sync"}
    synced = audits("templates.synced").get()
    assert (synced.actor_label, synced.after["summary"], synced.after["conflicts"]) == (
        "template sync job", report.summary(), report.conflicts)

    # Meta pauses one (quality fell to red) and rejects the other, with its reason.
    pages[0]["data"][0].update(status="PAUSED", quality_score={"score": "RED", "date": 1794200000})
    pages[0]["data"][1].update(status="REJECTED", rejected_reason="TAG_CONTENT_MISMATCH")
    report = templates_sync(meta)

    assert report.imported == []
    assert report.updated == ["shipping_update [en_US] v1", "loyalty_points [pt_BR] v1"]
    assert report.summary() == (f"{meta}: 0 imported, 2 updated, 1 unchanged, 1 not listed by the provider, "
                                "1 name conflicts")
    shipping.refresh_from_db()
    loyalty.refresh_from_db()
    assert (shipping.status, shipping.quality) == ("paused", "red")
    assert (loyalty.status, loyalty.rejection_reason) == ("rejected", "TAG_CONTENT_MISMATCH")
    paused = audits("template.provider_update", shipping).get()
    assert (paused.actor_label, paused.before["status"], paused.after["status"], paused.after["quality"]) == (
        "meta sync", "approved", "paused", "red")
    assert MessageTemplate.objects.count() == 5 and len(fake.hits(TEMPLATES_PATH)) == 4
    assert sendable_template(meta, "shipping_update", "en_US") is None


def test_a_failed_listing_changes_nothing_and_says_why(meta, fake):
    fake.routes[TEMPLATES_PATH] = [Reply.json({"error": {"message": "Invalid OAuth access token.",
                                                         "type": "OAuthException", "code": 190}}, status=401)]
    template = MessageTemplate.objects.create(provider=meta, name="welcome_note", language="en_US",
                                              status=TemplateStatus.APPROVED, provider_template_id="7001004")

    report = templates_sync(meta)

    assert "error 190" in report.error and report.summary().startswith(f"{meta}: failed (")
    assert (report.imported, report.missing) == ([], [])
    template.refresh_from_db()
    assert (template.status, template.synced_at) == ("approved", None)
    assert audits("templates.synced").get().after["error"] == report.error


def test_a_later_version_is_its_own_template_at_meta_and_the_sync_keeps_them_apart(meta, fake):
    # Version 2 went to Meta as order_update_v2; version 1 stays listed under its own name and id.
    v1 = MessageTemplate.objects.create(provider=meta, name="order_update", language="en_US",
                                        status=TemplateStatus.APPROVED, provider_template_id="7003001",
                                        provider_template_name="order_update", components=body_only(ORDER_BODY))
    v2 = MessageTemplate.objects.create(provider=meta, name="order_update", language="en_US", version=2,
                                        status=TemplateStatus.PENDING, provider_template_id="7003002",
                                        provider_template_name="order_update_v2", components=body_only(ORDER_BODY_V2))

    def listed(template_id: str, name: str, status: str, text: str) -> dict:
        return {"id": template_id, "name": name, "language": "en_US", "status": status, "category": "UTILITY",
                "components": [{"type": "BODY", "text": text, "example": {"body_text": [["Ana", "#1"]]}}]}

    listing = {"data": [listed("7003001", "order_update", "APPROVED", ORDER_BODY),
                        listed("7003002", "order_update_v2", "PENDING", ORDER_BODY_V2)], "paging": {}}
    fake.routes[TEMPLATES_PATH] = lambda request: Reply.json(listing)

    report = templates_sync(meta)
    assert (report.imported, report.updated, report.unchanged, report.missing, report.conflicts) == (
        [], [], 2, [], [])
    assert sendable_template(meta, "order_update", "en_US") == v1

    listing["data"][1]["status"] = "APPROVED"
    report = templates_sync(meta)
    assert (report.imported, report.updated, report.unchanged, report.missing) == (
        [], ["order_update [en_US] v2"], 1, [])
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.status, v2.status) == ("superseded", "approved")
    assert sendable_template(meta, "order_update", "en_US") == v2

    # Meta still lists version 1 as approved: it stays superseded, and once Meta drops it, it is not missing.
    report = templates_sync(meta)
    assert (report.updated, report.unchanged) == ([], 2)
    listing["data"].pop(0)
    report = templates_sync(meta)
    assert (report.missing, report.unchanged) == ([], 1)
    v1.refresh_from_db()
    assert v1.status == "superseded" and MessageTemplate.objects.count() == 2


# --- lost submissions --------------------------------------------------------------------------------

def submitted(provider: Provider, name: str, minutes_ago: int, version: int = 1) -> MessageTemplate:
    # As template_submit leaves it: marked submitted, its name at the provider kept, no answer recorded.
    return MessageTemplate.objects.create(
        provider=provider, name=name, language="en_US", version=version, status=TemplateStatus.SUBMITTED,
        provider_template_name=name if version == 1 else f"{name}_v{version}", components=body_only(CODE_BODY),
        examples={"body": {"1": "4411"}}, sent_to_provider_at=timezone.now() - timedelta(minutes=minutes_ago))


def test_a_submission_whose_answer_was_lost_is_sent_again_or_adopted(meta, fake,
                                                                    django_capture_on_commit_callbacks):
    lost = submitted(meta, "lost_code", 15)
    recent = submitted(meta, "recent_code", 2)
    found_v1 = MessageTemplate.objects.create(
        provider=meta, name="found_code", language="en_US", status=TemplateStatus.APPROVED,
        provider_template_id="7002001", provider_template_name="found_code", components=body_only(CODE_BODY),
        examples={"body": {"1": "4411"}})
    found = submitted(meta, "found_code", 15, version=2)

    def listed(template_id: str, name: str) -> dict:
        return {"id": template_id, "name": name, "language": "en_US", "status": "APPROVED", "category": "UTILITY",
                "components": [{"type": "BODY", "text": CODE_BODY, "example": {"body_text": [["4411"]]}}]}

    created = fixture_json("meta", "sync_meta_template_created.json")
    fake.routes[TEMPLATES_PATH] = lambda request: (
        Reply.json({"data": [listed("7002002", "found_code_v2"), listed("7002001", "found_code")], "paging": {}})
        if request.method == "GET" else Reply.json(created))

    with django_capture_on_commit_callbacks() as callbacks:
        report = templates_sync(meta)

    assert report.requeued == ["lost_code [en_US] v1"]
    assert (report.imported, report.missing, report.conflicts) == ([], [], [])
    assert report.summary().endswith("1 submissions to send again")
    lost.refresh_from_db()
    assert lost.status == "internally_approved" and "never answered" in lost.submission_error
    assert lost.next_submission_at is not None and len(callbacks) == 1
    entry = audits("template.submission_lost", lost).get()
    assert (entry.before["status"], entry.after["status"]) == ("submitted", "internally_approved")
    # Found by its name at the provider: it takes Meta's id and status, and supersedes version 1.
    found.refresh_from_db()
    found_v1.refresh_from_db()
    assert (found.status, found.provider_template_id, found.approved_at is not None) == ("approved", "7002002", True)
    assert found_v1.status == "superseded"
    recent.refresh_from_db()
    assert (recent.status, recent.submission_error) == ("submitted", "")

    # The scheduled submission goes to Meta again.
    assert template_submit(lost.pk) == "pending"
    (create,) = [request for request in fake.hits(TEMPLATES_PATH) if request.method == "POST"]
    assert json.loads(create.body)["name"] == "lost_code"
    lost.refresh_from_db()
    assert (lost.status, lost.provider_template_id, lost.submission_error) == ("pending", "7003001", "")


# --- Chatwoot ------------------------------------------------------------------------------------------

def test_chatwoot_templates_are_imported_read_only_and_the_approved_one_is_sent(db, fake):
    chatwoot = make_chatwoot(base_url=fake.url)
    inbox = fixture_json("chatwoot", "sync_chatwoot_inbox.json")
    fake.routes[CHATWOOT_INBOX] = lambda request: Reply.json(inbox)
    fake.routes[CHATWOOT_MESSAGES] = [Reply.json({"id": 9101, "content": "Hi", "message_type": 1})]

    report = templates_sync(chatwoot)

    assert report.imported == ["delivery_slot [en] v1", "autumn_deals [es] v1"]
    (listing,) = fake.hits(CHATWOOT_INBOX)
    assert (listing.method, listing.headers["api_access_token"]) == ("GET", "chatwoot-api-token")
    slot = MessageTemplate.objects.get(name="delivery_slot")
    assert (slot.status, slot.managed_elsewhere, slot.provider_template_id, slot.category) == (
        "approved", True, "8802001", "utility")
    assert slot.examples == {"body": {"1": "Ana", "2": "2pm and 4pm"}}
    autumn = MessageTemplate.objects.get(name="autumn_deals")
    assert (autumn.status, autumn.rejection_reason, autumn.managed_elsewhere) == ("rejected", "PROMOTIONAL", True)

    with pytest.raises(TemplateWorkflowError) as refused:
        template_edit(slot, actor=None, changes={"components": body_only("Hello {{1}}, we come at {{2}}.")})
    assert refused.value.code == "templates_managed_elsewhere"
    with pytest.raises(TemplateWorkflowError) as refused:
        template_create(provider=chatwoot, actor=None, name="new_one", language="en", category="utility",
                        parameter_format="positional", components=body_only("Hello there"), examples={})
    assert refused.value.code == "templates_managed_elsewhere"

    contact = customer(chatwoot, "+15551230009", in_window=False)
    Conversation.objects.filter(provider=chatwoot, contact=contact).update(external_conversation_id="42")
    with pytest.raises(SendRefused) as not_approved:
        send_rules.check_template(autumn, chatwoot, {})
    assert not_approved.value.code == "template_not_approved"
    message, _ = message_send(SendRequest(provider=chatwoot, contact=contact, message_type="template",
                                          template=slot, template_variables={"body": ["Ana", "9 and 11"]}))
    message = message_deliver(message.pk)
    assert (message.status, message.provider_message_id, message.template_id) == ("sent", "9101", slot.pk)
    (sent,) = fake.hits(CHATWOOT_MESSAGES)
    body = json.loads(sent.body)
    assert body["content"] == "Hi Ana, your delivery arrives between 9 and 11."
    assert body["template_params"] == {"name": "delivery_slot", "category": "UTILITY", "language": "en",
                                       "processed_params": {"body": {"1": "Ana", "2": "9 and 11"}}}

    # Edited in Chatwoot (from WhatsApp Manager): the read-only copy follows.
    inbox["message_templates"][0]["components"][0] = {
        "type": "BODY", "text": "Hello {{1}}, we arrive between {{2}}.", "example": {"body_text": [["Ana", "2-4"]]}}
    report = templates_sync(chatwoot)
    assert (report.imported, report.updated, report.unchanged) == ([], ["delivery_slot [en] v1"], 1)
    slot.refresh_from_db()
    assert slot.components[0] == {"type": "BODY", "text": "Hello {{1}}, we arrive between {{2}}."}
    assert (slot.examples, slot.version) == ({"body": {"1": "Ana", "2": "2-4"}}, 1)


# --- one sync per business account ---------------------------------------------------------------------

def test_sync_all_reads_each_business_account_once(db, fake):
    first = make_meta()
    make_meta(name="Meta second", phone_number_id="109900998877665")
    other_account = make_meta(name="Meta other account", phone_number_id="109900554433221",
                              waba_id="800100200300999")
    idle = make_meta(name="Meta idle", phone_number_id="109900111111111", waba_id="800100200300777")
    Provider.objects.filter(pk=idle.pk).update(is_active=False)
    sandbox = provider_create(kind="sandbox", name="Sandbox", options={})
    other_path = f"/{GRAPH_VERSION}/800100200300999/message_templates"
    fake.routes[TEMPLATES_PATH] = [Reply.json(fixture_json("meta", "sync_meta_templates_page2.json"))]
    fake.routes[other_path] = [Reply.json({"data": [], "paging": {}})]

    reports = templates_sync_all()

    assert [report.provider for report in reports] == [str(first), str(other_account), str(sandbox)]
    assert all(not report.skipped and not report.error for report in reports)
    assert len(fake.hits(TEMPLATES_PATH)) == 1 and len(fake.hits(other_path)) == 1
    assert len(fake.requests) == 2
    assert reports[0].imported == ["payment_reminder [en] v1", "welcome_note [en_US] v1"]


def test_two_chatwoot_inboxes_of_one_account_each_have_their_own_templates(db, fake):
    # Each Chatwoot inbox is its own WhatsApp number (often of another WABA) with its own message_templates;
    # the Chatwoot account id they share is no WhatsApp business account.
    store = make_chatwoot(base_url=fake.url)
    branch = make_chatwoot(name="Chatwoot branch", base_url=fake.url, inbox_id="8")
    fake.routes[CHATWOOT_INBOX] = [Reply.json(fixture_json("chatwoot", "sync_chatwoot_inbox.json"))]
    fake.routes["/api/v1/accounts/3/inboxes/8"] = [Reply.json({"id": 8, "name": "Branch WhatsApp",
                                                               "message_templates": [{
        "id": "8803001", "name": "branch_hours", "status": "APPROVED", "category": "UTILITY", "language": "en",
        "components": [{"type": "BODY", "text": "We are open from 9 to 5."}]}]})]

    reports = templates_sync_all()

    assert len(fake.hits(CHATWOOT_INBOX)) == 1 and len(fake.hits("/api/v1/accounts/3/inboxes/8")) == 1
    assert {report.provider: report.imported for report in reports} == {
        str(store): ["delivery_slot [en] v1", "autumn_deals [es] v1"], str(branch): ["branch_hours [en] v1"]}
    assert MessageTemplate.objects.get(name="branch_hours").provider == branch
    assert sendable_template(store, "branch_hours", "en") is None


# --- versions --------------------------------------------------------------------------------------------

@pytest.fixture
def people(db):
    users = get_user_model().objects
    author = users.create_user("author", password="pw-author-123456")
    reviewer = users.create_user("reviewer", password="pw-reviewer-123456")
    reviewer.user_permissions.add(Permission.objects.get(codename="review_messagetemplate"))
    return author, users.get(pk=reviewer.pk)


def through_review(template: MessageTemplate, author, reviewer) -> MessageTemplate:
    template_submit_for_review(template, actor=author)
    template_approve(template, reviewer=reviewer)
    assert template_submit(template.pk) == "pending"
    template.refresh_from_db()
    return template


def send_by_name(api_client, provider: Provider) -> dict:
    response = api_client.post("/api/v1/messages/", {
        "provider": provider.pk, "to": "+16505551234", "type": "template", "template_name": "order_update",
        "template_language": "en_US", "variables": {"body": ["Ana", "#1042"]}}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def deliver_webhook(client, provider: Provider, fixture: str) -> None:
    response = post_meta(client, provider, fixture_bytes("meta", fixture))
    assert response.status_code == 200, response.content
    event = webhook_event_process(json_body(response)["event"])
    assert event.status == "processed", event.last_error


def meta_creates(fake: FakeServer) -> None:
    """Meta's answer to a template creation: a new id per template name."""
    ids = {"order_update": "7003001", "order_update_v2": "7003002"}
    created = fixture_json("meta", "sync_meta_template_created.json")
    fake.routes[TEMPLATES_PATH] = lambda request: Reply.json({**created, "id": ids[json.loads(request.body)["name"]]})


def test_the_approved_version_stays_sendable_until_its_successor_is_approved(client, api_client, meta, fake,
                                                                            people):
    author, reviewer = people
    meta_creates(fake)
    fake.routes[SEND_PATH] = lambda request: Reply.json({
        "messaging_product": "whatsapp", "contacts": [{"input": "+16505551234", "wa_id": "16505551234"}],
        "messages": [{"id": f"wamid.sync-{len(fake.hits(SEND_PATH))}"}]})
    v1 = template_create(provider=meta, actor=author, name="order_update", language="en_US", category="utility",
                         parameter_format="positional", components=body_only(ORDER_BODY),
                         examples={"body": {"1": "Ana", "2": "#1042"}})
    v1 = through_review(v1, author, reviewer)
    assert (v1.provider_template_id, v1.provider_template_name) == ("7003001", "order_update")
    assert template_provider_status_set(v1, TemplateStatus.APPROVED, actor_label="meta webhook")

    v2 = template_edit(v1, actor=author, changes={"components": body_only(ORDER_BODY_V2)})
    assert (v2.pk != v1.pk, v2.version, v2.status, v2.provider_template_id) == (True, 2, "draft", "")
    assert list(versions_of(v1)) == [v2, v1]
    with pytest.raises(TemplateWorkflowError) as refused:
        template_edit(v1, actor=author, changes={"components": body_only("Hi {{1}}, order {{2}} is late.")})
    assert refused.value.code == "newer_version_exists"
    body = {diff.section: diff for diff in template_diff(v1, v2)}
    assert [section for section, diff in body.items() if diff.changed] == ["body"]
    assert body["body"].lines == [("-", ORDER_BODY), ("+", ORDER_BODY_V2)]

    # While v2 is a draft, in review, then pending at Meta, sends by name use v1.
    customer(meta, in_window=False)
    sent_while_draft = send_by_name(api_client, meta)
    assert sent_while_draft["text"] == "Hi Ana, your order #1042 ships today."
    assert message_deliver(sent_while_draft["id"]).status == "sent"
    template_submit_for_review(v2, actor=author)
    assert sendable_template(meta, "order_update", "en_US") == v1
    template_approve(v2, reviewer=reviewer)
    assert template_submit(v2.pk) == "pending"
    creations = [json.loads(request.body) for request in fake.hits(TEMPLATES_PATH)]
    assert [(c["name"], c["components"][0]["text"]) for c in creations] == [
        ("order_update", ORDER_BODY), ("order_update_v2", ORDER_BODY_V2)]
    v2.refresh_from_db()
    assert (v2.status, v2.provider_template_id, v2.provider_template_name) == ("pending", "7003002",
                                                                                "order_update_v2")
    sent_while_pending = send_by_name(api_client, meta)
    assert Message.objects.get(pk=sent_while_pending["id"]).template_id == v1.pk
    assert message_deliver(sent_while_pending["id"]).status == "sent"

    # Meta approves order_update_v2: v2 takes over, v1 is superseded.
    deliver_webhook(client, meta, "sync_meta_status_approved.json")
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.status, v2.status) == ("superseded", "approved")
    superseded = audits("template.superseded", v1).get()
    assert (superseded.actor_label, superseded.after["by_version"]) == ("meta webhook", 2)
    sent_after = send_by_name(api_client, meta)
    assert sent_after["text"] == "Hi Ana, your order #1042 ships tomorrow morning."
    assert Message.objects.get(pk=sent_after["id"]).template_id == v2.pk
    assert message_deliver(sent_after["id"]).status == "sent"
    assert [json.loads(r.body)["template"]["name"] for r in fake.hits(SEND_PATH)] == [
        "order_update", "order_update", "order_update_v2"]

    by_id = api_client.post("/api/v1/messages/", {"provider": meta.pk, "to": "+16505551234", "type": "template",
                                                  "template": v1.pk, "variables": {"body": ["Ana", "#1"]}},
                            format="json")
    assert by_id.status_code == 422 and by_id.json()["code"] == "template_not_approved"
    assert "superseded" in by_id.json()["detail"] and "only approved templates can be sent" in by_id.json()["detail"]


def test_a_webhook_for_a_template_shared_by_two_numbers_updates_the_version_at_the_provider(client, meta, fake):
    other_number = make_meta(name="Meta second", phone_number_id="109900998877665")
    v1 = MessageTemplate.objects.create(provider=other_number, name="order_update", language="en_US",
                                        status=TemplateStatus.APPROVED, provider_template_id="7003001",
                                        provider_template_name="order_update", components=body_only(ORDER_BODY),
                                        examples={"body": {"1": "Ana", "2": "#1042"}})
    v2 = template_edit(v1, actor=None, changes={"components": body_only(ORDER_BODY_V2)})
    assert (v2.version, v2.status) == (2, "draft")

    # The pause reaches the approved version through the other number; the newer draft is not touched.
    deliver_webhook(client, meta, "sync_meta_status_paused.json")
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.status, v2.status) == ("paused", "draft")
    assert "FIRST_PAUSE" in v1.rejection_reason and v2.rejection_reason == ""
    paused = audits("template.provider_update", v1).get()
    assert (paused.actor_label, paused.before["status"], paused.after["status"]) == (
        "meta webhook", "approved", "paused")

    # Once v2 is at Meta as order_update_v2, its approval supersedes the paused v1 ...
    MessageTemplate.objects.filter(pk=v2.pk).update(status=TemplateStatus.PENDING, provider_template_id="7003002",
                                                    provider_template_name="order_update_v2",
                                                    sent_to_provider_at=timezone.now())
    deliver_webhook(client, meta, "sync_meta_status_approved.json")
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.status, v2.status) == ("superseded", "approved")
    assert sendable_template(meta, "order_update", "en_US") == v2
    # ... and Meta lifting v1's pause later does not bring it back beside v2.
    deliver_webhook(client, meta, "sync_meta_status_reinstated.json")
    v1.refresh_from_db()
    assert v1.status == "superseded"
    assert sendable_template(other_number, "order_update", "en_US") == v2


# --- usage figures ---------------------------------------------------------------------------------------

def test_usage_counts_the_outbound_messages_of_that_template_only(meta):
    used = MessageTemplate.objects.create(provider=meta, name="order_update", language="en_US",
                                          status=TemplateStatus.APPROVED, components=body_only(ORDER_BODY))
    other = MessageTemplate.objects.create(provider=meta, name="other_one", language="en_US",
                                           status=TemplateStatus.APPROVED, components=body_only("Hello"))
    unused = MessageTemplate.objects.create(provider=meta, name="never_sent", language="en_US",
                                            status=TemplateStatus.APPROVED, components=body_only("Hello"))
    conversation = Conversation.objects.get(contact=customer(meta, in_window=False))

    def message(template, status, direction=Message.Direction.OUTBOUND):
        Message.objects.create(provider=meta, conversation=conversation, direction=direction, status=status,
                               message_type="template", template=template)

    for status in ("queued", "sent", "delivered", "read", "played", "failed", "dead_letter"):
        message(used, status)
    message(used, MessageStatus.READ, Message.Direction.INBOUND)
    message(other, MessageStatus.FAILED)
    message(None, MessageStatus.DELIVERED)

    figures = usage_of(used)
    assert (figures.sends, figures.delivered, figures.read, figures.failed) == (7, 3, 2, 2)
    assert figures.as_dict() == {"sends": 7, "delivered": 3, "read": 2, "failed": 2, "delivered_rate": 0.4286,
                                 "read_rate": 0.2857, "failed_rate": 0.2857}
    assert usage_of(other).as_dict() == {"sends": 1, "delivered": 0, "read": 0, "failed": 1, "delivered_rate": 0.0,
                                         "read_rate": 0.0, "failed_rate": 1.0}
    nothing = usage_of(unused)
    assert (nothing.sends, nothing.delivered_rate, nothing.read_rate, nothing.failed_rate) == (0, None, None, None)
    rows = {row.name: (row.sends_count, row.delivered_count, row.read_count, row.failed_count)
            for row in with_usage(MessageTemplate.objects.filter(provider=meta))}
    assert rows == {"order_update": (7, 3, 2, 2), "other_one": (1, 0, 0, 1), "never_sent": (0, 0, 0, 0)}


# --- no two syncs at once (real transactions, two threads) --------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_two_syncs_of_one_business_account_never_overlap(fake):
    first_number = make_meta()
    second_number = make_meta(name="Meta second", phone_number_id="109900998877665")
    page = fixture_json("meta", "sync_meta_templates_page2.json")
    fake.routes[TEMPLATES_PATH] = [Reply(200, json.dumps(page).encode(), {"Content-Type": "application/json"},
                                         delay=1.0)]
    reports = []

    def sync(provider_pk: int) -> None:
        try:
            reports.append(templates_sync(Provider.objects.get(pk=provider_pk)))
        finally:
            connection.close()

    running = threading.Thread(target=sync, args=(first_number.pk,))
    running.start()
    wait_until(lambda: fake.hits(TEMPLATES_PATH), 10, interval=0.02, message="the first sync to ask Meta")
    second = threading.Thread(target=sync, args=(second_number.pk,))
    second.start()
    second.join(10)
    assert reports and reports[0].skipped == "another sync of this business account is running"
    assert reports[0].summary() == f"{second_number}: skipped (another sync of this business account is running)"
    running.join(10)
    assert not running.is_alive() and len(reports) == 2
    assert reports[1].imported == ["payment_reminder [en] v1", "welcome_note [en_US] v1"]
    assert len(fake.hits(TEMPLATES_PATH)) == 1
    assert MessageTemplate.objects.count() == 2

    fake.routes[TEMPLATES_PATH] = [Reply.json(page)]
    again = templates_sync(second_number)
    assert (again.skipped, again.imported, again.unchanged) == ("", [], 2)
    assert len(fake.hits(TEMPLATES_PATH)) == 2
