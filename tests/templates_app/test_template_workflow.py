"""
A template's whole life, end to end: authored and reviewed here (the services an admin action or the API
calls), submitted to the provider by a real Celery worker, and followed through the provider's verdicts —
against local servers that play Meta's Graph API (template creation, signed status webhooks) and
Twilio's Content API (content, WhatsApp approval request, ContentAndApprovals for the sync job). Each
step is checked where a user would see it: the rows, their statuses and reasons, the audit trail, and
what the provider received.
"""

import itertools
import json
import os
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from config.celery import app as celery_app
from core.models import AuditLog
from templates_app.models import MessageTemplate
from templates_app.services.provider_submission import template_resubmit, templates_submit_due
from templates_app.services.sync import templates_sync
from templates_app.services.workflow import (
    TemplateWorkflowError,
    template_approve,
    template_create,
    template_edit,
    template_reject,
    template_submit_for_review,
)
from tests.conftest import (
    _database_url,
    customer,
    default_group,
    fixture_bytes,
    fixture_json,
    json_body,
    start_worker,
    stop_worker,
    wait_until,
)
from tests.fakes import FakeServer, Recorded, Reply, json_of
from tests.signing import META_WABA_ID, TWILIO_ACCOUNT_SID, make_meta, make_twilio, post_meta
from whatsapp.models import Message, Provider, WebhookEvent
from whatsapp.services.outbound import SendRequest, message_send

GRAPH_VERSION = "v25.0"
META_CREATE = f"/{GRAPH_VERSION}/{META_WABA_ID}/message_templates"
META_TEMPLATE_ID = "1180442077009001"
META_TEMPLATE_V2_ID = "1180442077009002"
TWILIO_CONTENT = "/v1/Content"
TWILIO_LIST = "/v1/ContentAndApprovals"
TWILIO_MESSAGES = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json"
TEMPLATE_TYPE = "templates_app.MessageTemplate"

ORDER_READY = {
    "name": "order_ready", "language": "en_US", "category": "utility", "parameter_format": "positional",
    "components": [
        {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
        {"type": "BODY", "text": "Hi {{1}}, your order is ready for pickup at {{2}}."},
        {"type": "FOOTER", "text": "Reply STOP to opt out"},
        {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track", "url": "https://shop.example.test/t/{{1}}"},
                                        {"type": "QUICK_REPLY", "text": "Thanks"}]},
    ],
    "examples": {"header": {"1": "#4521"}, "body": {"1": "Ana", "2": "the Main Street store"},
                 "buttons": {"0": "order-4521"}},
}
# What Meta's create call takes for ORDER_READY: each example inside its component.
ORDER_READY_WIRE = [
    {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}", "example": {"header_text": ["#4521"]}},
    {"type": "BODY", "text": "Hi {{1}}, your order is ready for pickup at {{2}}.",
     "example": {"body_text": [["Ana", "the Main Street store"]]}},
    {"type": "FOOTER", "text": "Reply STOP to opt out"},
    {"type": "BUTTONS", "buttons": [
        {"type": "URL", "text": "Track", "url": "https://shop.example.test/t/{{1}}",
         "example": ["https://shop.example.test/t/order-4521"]},
        {"type": "QUICK_REPLY", "text": "Thanks"}]},
]
# Version 2, after Meta's rejection: no footer, a clearer body.
ORDER_READY_V2_COMPONENTS = [
    {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
    {"type": "BODY", "text": "Hi {{1}}, your order is ready for pickup at {{2}}. Show this message at the desk."},
    ORDER_READY["components"][3],
]
ORDER_READY_V2_WIRE = [
    ORDER_READY_WIRE[0],
    {"type": "BODY", "text": "Hi {{1}}, your order is ready for pickup at {{2}}. Show this message at the desk.",
     "example": {"body_text": [["Ana", "the Main Street store"]]}},
    ORDER_READY_WIRE[3],
]

ORDER_UPDATE = {
    "name": "order_update", "language": "en", "category": "utility", "parameter_format": "positional",
    "components": [
        {"type": "BODY", "text": "Hi {{1}}, your order {{2}} has shipped."},
        {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track", "url": "https://shop.example.test/t/{{1}}"}]},
    ],
    "examples": {"body": {"1": "Ana", "2": "#4521"}, "buttons": {"0": "order-4521"}},
}
ORDER_UPDATE_V2_BODY = "Hi {{1}}, your order {{2}} has shipped and arrives in two days."


def meta_error_fixture(name: str, status: int) -> Reply:
    """Meta refusing with the error body of this fixture."""
    return Reply(status, fixture_bytes("meta", name), {"Content-Type": "application/json"})


# --- people ---------------------------------------------------------------------------------------

def make_user(username: str, *, reviewer: bool):
    user = get_user_model().objects.create_user(username, f"{username}@example.com", "pw-123456-strong",
                                                is_staff=True)
    if reviewer:
        user.groups.add(default_group("Template reviewer"))
    return user


@pytest.fixture
def author(db):
    # A reviewer too: what stops them approving is that the template is theirs.
    return make_user("ana_author", reviewer=True)


@pytest.fixture
def reviewer(db):
    return make_user("rui_reviewer", reviewer=True)


@pytest.fixture
def outsider(db):
    return make_user("olga_operator", reviewer=False)


# --- the provider's side and the worker ------------------------------------------------------------

@pytest.fixture(scope="module")
def worker(django_db_setup, fake_server, tmp_path_factory):
    """One real Celery worker for this module's tests (each start costs seconds), on the test database and
    this test run's Redis (emptied first), calling the fake providers. The tests that use it are
    transactional, so it sees what they commit."""
    with celery_app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()
    env = {**os.environ, "DATABASE_URL": _database_url(connection.settings_dict),
           "ALLOWED_HOSTS": "localhost,127.0.0.1", "META_GRAPH_BASE_URL": fake_server.url,
           "META_GRAPH_API_VERSION": GRAPH_VERSION, "TWILIO_API_BASE_URL": fake_server.url,
           "TWILIO_CONTENT_BASE_URL": fake_server.url, "SEND_PAIR_INTERVAL_SECONDS": "0"}
    process = start_worker(env, tmp_path_factory.mktemp("template-worker") / "worker.log", "templates")
    try:
        yield process
    finally:
        stop_worker(process)


class ContentApi:
    """
    Twilio's Content API as a small stateful fake: POST /v1/Content creates a content (HX sid), POST
    .../ApprovalRequests/whatsapp asks WhatsApp to approve it, and GET /v1/ContentAndApprovals lists every
    content with its approval as WhatsApp last decided (`review` plays WhatsApp's reviewer).
    """

    def __init__(self, server: FakeServer):
        self.server = server
        self.contents: dict[str, dict] = {}
        self.approvals: dict[str, dict] = {}
        self._numbers = itertools.count(1)
        server.routes[TWILIO_CONTENT] = self._create
        server.routes[TWILIO_LIST] = self._list

    @staticmethod
    def approval_path(sid: str) -> str:
        return f"{TWILIO_CONTENT}/{sid}/ApprovalRequests/whatsapp"

    def _create(self, request: Recorded) -> Reply:
        sid = f"HX{next(self._numbers):032x}"
        url = f"https://content.twilio.com/v1/Content/{sid}"
        content = {"account_sid": TWILIO_ACCOUNT_SID, "sid": sid, **json_of(request), "url": url,
                   "date_created": "2026-03-02T10:00:00Z", "date_updated": "2026-03-02T10:00:00Z",
                   "links": {"approval_create": f"{url}/ApprovalRequests/whatsapp",
                             "approval_fetch": f"{url}/ApprovalRequests"}}
        self.contents[sid] = content
        self.server.routes[self.approval_path(sid)] = lambda approval: self._request_approval(sid, approval)
        return Reply.json(content, 201)

    def _request_approval(self, sid: str, request: Recorded) -> Reply:
        asked = json_of(request)
        approval = {**fixture_json("twilio", "flow_approval_received.json"), "name": asked["name"],
                    "category": asked["category"]}
        self.approvals[sid] = approval
        return Reply.json(approval, 201)

    def review(self, sid: str, status: str, reason: str = "") -> None:
        self.approvals[sid].update(status=status, rejection_reason=reason)

    def _list(self, request: Recorded) -> Reply:
        page = fixture_json("twilio", "flow_content_and_approvals_empty.json")
        never_submitted = {"name": "", "category": "", "status": "unsubmitted", "rejection_reason": ""}
        page["contents"] = [{**content, "approval_requests": self.approvals.get(sid, never_submitted)}
                            for sid, content in self.contents.items()]
        return Reply.json(page)


# --- helpers --------------------------------------------------------------------------------------

def fresh(template: MessageTemplate) -> MessageTemplate:
    return MessageTemplate.objects.get(pk=template.pk)


def wait_status(template: MessageTemplate, status: str, timeout: float = 30) -> MessageTemplate:
    wait_until(lambda: fresh(template).status == status, timeout,
               message=f"{template} to be {status} (it is {fresh(template).status})")
    return fresh(template)


def wait_submission_error(template: MessageTemplate, timeout: float = 30) -> MessageTemplate:
    wait_until(lambda: fresh(template).submission_error, timeout, message=f"the submission of {template} to fail")
    return fresh(template)


def reviewed_and_approved(provider: Provider, author, reviewer, fields: dict) -> MessageTemplate:
    template = template_create(provider=provider, actor=author, **fields)
    template = template_submit_for_review(template, actor=author)
    return template_approve(template, reviewer=reviewer)


def history(template: MessageTemplate) -> list[tuple[str, str, str]]:
    """(action, who, status after) of every audit row of the template, oldest first; each has a time."""
    rows = list(AuditLog.objects.filter(object_type=TEMPLATE_TYPE, object_id=str(template.pk)).order_by("pk"))
    assert all(row.created_at for row in rows)
    return [(row.action, row.actor_label, row.after.get("status", "")) for row in rows]


def deliver_meta(client, provider: Provider, fixture: str) -> WebhookEvent:
    """POST a signed Meta webhook to our endpoint; the worker processes it."""
    response = post_meta(client, provider, fixture_bytes("meta", fixture))
    assert response.status_code == 200, response.content
    event_id = json_body(response)["event"]
    wait_until(lambda: WebhookEvent.objects.get(pk=event_id).status not in ("pending", "processing"), 30,
               message=f"the worker to process {fixture}")
    event = WebhookEvent.objects.get(pk=event_id)
    assert (event.status, event.last_error) == ("processed", "")
    return event


# --- Meta -----------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_meta_workflow_review_submission_rejection_new_version_pause_and_reapproval(client, fake, worker, author,
                                                                                     reviewer):
    meta = make_meta()
    fake.routes[META_CREATE] = [Reply.json(fixture_json("meta", "flow_template_created.json")),
                                Reply.json(fixture_json("meta", "flow_template_v2_created.json"))]

    v1 = template_create(provider=meta, actor=author, **ORDER_READY)
    assert (v1.status, v1.version, v1.created_by) == ("draft", 1, author)
    v1 = template_submit_for_review(v1, actor=author)
    assert (v1.status, v1.submitted_by) == ("in_review", author)
    with pytest.raises(TemplateWorkflowError) as refused:
        template_approve(v1, reviewer=author)
    assert refused.value.code == "own_template"
    assert fresh(v1).status == "in_review" and fake.requests == []

    v1 = template_approve(v1, reviewer=reviewer)
    assert (v1.status, v1.reviewed_by) == ("internally_approved", reviewer) and v1.reviewed_at
    v1 = wait_status(v1, "pending")
    (create,) = fake.hits(META_CREATE)
    assert (create.method, create.headers["authorization"]) == ("POST", "Bearer meta-access-token")
    assert json_of(create) == {"name": "order_ready", "language": "en_US", "category": "UTILITY",
                               "parameter_format": "POSITIONAL", "components": ORDER_READY_WIRE}
    assert (v1.provider_template_id, v1.provider_template_name, v1.submission_error) == (
        META_TEMPLATE_ID, "order_ready", "")
    assert v1.sent_to_provider_at and v1.next_submission_at is None

    # Meta rejects it, with its reason and what to change.
    deliver_meta(client, meta, "flow_status_rejected.json")
    v1 = fresh(v1)
    assert v1.status == "rejected"
    assert v1.rejection_reason == ("INVALID_FORMAT — The footer repeats an opt-out instruction that is not allowed "
                                   "in utility templates.")
    assert v1.provider_recommendation == "Remove the opt-out sentence from the footer and submit again."

    # Its author edits it: version 2, a draft; version 1 stays as Meta left it.
    v2 = template_edit(v1, actor=author, changes={"components": ORDER_READY_V2_COMPONENTS})
    assert v2.pk != v1.pk
    assert (v2.version, v2.status, v2.provider_template_id) == (2, "draft", "")
    assert fresh(v1).status == "rejected"
    v2 = template_submit_for_review(v2, actor=author)
    v2 = template_approve(v2, reviewer=reviewer)
    v2 = wait_status(v2, "pending")
    # Each version is a template of its own at Meta, under <name>_v<N>.
    create_v2 = fake.hits(META_CREATE)[1]
    assert json_of(create_v2) == {"name": "order_ready_v2", "language": "en_US", "category": "UTILITY",
                                  "parameter_format": "POSITIONAL", "components": ORDER_READY_V2_WIRE}
    assert [request.path for request in fake.requests] == [META_CREATE, META_CREATE]
    assert (v2.provider_template_id, v2.provider_template_name, v2.rejection_reason) == (
        META_TEMPLATE_V2_ID, "order_ready_v2", "")

    deliver_meta(client, meta, "flow_status_approved.json")
    v2 = fresh(v2)
    assert v2.status == "approved" and v2.approved_at and v2.is_sendable
    assert fresh(v1).status == "rejected"

    deliver_meta(client, meta, "flow_status_paused.json")
    v2 = fresh(v2)
    assert v2.status == "paused" and not v2.is_sendable
    assert v2.rejection_reason == "FIRST_PAUSE: Paused for 3 hours because customers blocked the business after it."

    deliver_meta(client, meta, "flow_status_reapproved.json")
    v2 = fresh(v2)
    assert (v2.status, v2.rejection_reason) == ("approved", "")
    assert fresh(v1).status == "rejected"

    assert history(v1) == [
        ("template.created", "ana_author", "draft"),
        ("template.submitted_for_review", "ana_author", "in_review"),
        ("template.approved_internally", "rui_reviewer", "internally_approved"),
        ("template.sent_to_provider", "submission task", "submitted"),
        ("template.provider_update", "meta submission", "pending"),
        ("template.provider_update", "meta webhook", "rejected"),
    ]
    assert history(v2) == [
        ("template.version_created", "ana_author", "draft"),
        ("template.submitted_for_review", "ana_author", "in_review"),
        ("template.approved_internally", "rui_reviewer", "internally_approved"),
        ("template.sent_to_provider", "submission task", "submitted"),
        ("template.provider_update", "meta submission", "pending"),
        ("template.provider_update", "meta webhook", "approved"),
        ("template.provider_update", "meta webhook", "paused"),
        ("template.provider_update", "meta webhook", "approved"),
    ]
    by_people = AuditLog.objects.filter(object_type=TEMPLATE_TYPE, actor__isnull=False)
    assert {(row.action, row.actor) for row in by_people} >= {("template.created", author),
                                                              ("template.approved_internally", reviewer)}


# --- Twilio ---------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_twilio_workflow_content_approval_request_sync_new_version_and_send(fake, worker, author, reviewer):
    twilio = make_twilio()
    content_api = ContentApi(fake)
    fake.routes[TWILIO_MESSAGES] = [Reply.json({"sid": "SM" + "7e" * 16, "status": "queued"}, 201)]

    v1 = reviewed_and_approved(twilio, author, reviewer, ORDER_UPDATE)
    v1 = wait_status(v1, "pending")
    hx1 = v1.provider_template_id
    assert hx1 in content_api.contents
    (create,) = fake.hits(TWILIO_CONTENT)
    assert create.method == "POST"
    # The URL button's variable is numbered after the body's, the way a send numbers it.
    assert json_of(create) == {
        "friendly_name": "order_update", "language": "en",
        "variables": {"1": "Ana", "2": "#4521", "3": "order-4521"},
        "types": {"twilio/call-to-action": {
            "body": "Hi {{1}}, your order {{2}} has shipped.",
            "actions": [{"type": "URL", "title": "Track", "url": "https://shop.example.test/t/{{3}}"}]}}}
    (approval,) = fake.hits(ContentApi.approval_path(hx1))
    assert approval.method == "POST" and json_of(approval) == {"name": "order_update", "category": "UTILITY"}

    # WhatsApp rejects it; the sync job (run by a user from the admin) reads that from Twilio.
    reason = "The URL button's link does not match the business's website."
    content_api.review(hx1, "rejected", reason)
    report = templates_sync(twilio, actor=reviewer)
    assert (report.error, report.skipped, report.updated) == ("", "", [str(v1)])
    assert fake.hits(TWILIO_LIST)[-1].method == "GET"
    v1 = fresh(v1)
    assert (v1.status, v1.rejection_reason) == ("rejected", reason)

    v2 = template_edit(v1, actor=author, changes={"components": [
        {"type": "BODY", "text": ORDER_UPDATE_V2_BODY}, ORDER_UPDATE["components"][1]]})
    assert (v2.version, v2.status) == (2, "draft")
    v2 = template_submit_for_review(v2, actor=author)
    v2 = template_approve(v2, reviewer=reviewer)
    v2 = wait_status(v2, "pending")
    hx2 = v2.provider_template_id
    # A content cannot change: version 2 is a new content, under its own WhatsApp name.
    assert hx2 != hx1 and set(content_api.contents) == {hx1, hx2}
    assert (v1.provider_template_name, v2.provider_template_name) == ("order_update", "order_update_v2")
    create_v2 = fake.hits(TWILIO_CONTENT)[1]
    assert json_of(create_v2)["friendly_name"] == "order_update_v2"
    assert json_of(create_v2)["types"]["twilio/call-to-action"]["body"] == ORDER_UPDATE_V2_BODY
    (approval_v2,) = fake.hits(ContentApi.approval_path(hx2))
    assert json_of(approval_v2) == {"name": "order_update_v2", "category": "UTILITY"}

    content_api.review(hx2, "approved")
    report = templates_sync(twilio)  # as the beat job runs it
    assert report.error == "" and report.updated == [str(v2)] and report.unchanged == 1
    v2 = fresh(v2)
    assert (v2.status, v2.provider_template_id) == ("approved", hx2) and v2.approved_at
    assert (fresh(v1).status, fresh(v1).rejection_reason) == ("rejected", reason)

    # A message with version 2 (outside the 24-hour window) goes out as its new content.
    contact = customer(twilio, "+5511900000007", in_window=False)
    message, _ = message_send(SendRequest(provider=twilio, contact=contact, message_type="template", template=v2,
                                          template_variables={"body": ["Bia", "#7"], "buttons": {"0": "order-7"}}))
    wait_until(lambda: Message.objects.get(pk=message.pk).status == "sent", 30, message="the worker to send it")
    (send,) = fake.hits(TWILIO_MESSAGES)
    form = parse_qs(send.body.decode())
    assert form["ContentSid"] == [hx2]
    assert json.loads(form["ContentVariables"][0]) == {"1": "Bia", "2": "#7", "3": "order-7"}
    assert form["To"] == ["whatsapp:+5511900000007"]

    assert history(v1)[-2:] == [("template.provider_update", "twilio submission", "pending"),
                                ("template.provider_update", "twilio sync", "rejected")]
    assert history(v2)[-2:] == [("template.provider_update", "twilio submission", "pending"),
                                ("template.provider_update", "twilio sync", "approved")]
    syncs = AuditLog.objects.filter(action="templates.synced", object_id=str(twilio.pk)).order_by("pk")
    assert [(row.actor, row.actor_label) for row in syncs] == [(reviewer, "rui_reviewer"),
                                                               (None, "template sync job")]


# --- internal review ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_internal_rejection_needs_a_reviewer_and_a_reason(author, reviewer, outsider):
    meta = make_meta()
    template = template_submit_for_review(template_create(provider=meta, actor=author, **ORDER_READY), actor=author)

    for attempt in (lambda: template_approve(template, reviewer=outsider),
                    lambda: template_reject(template, reviewer=outsider, reason="Not for me")):
        with pytest.raises(TemplateWorkflowError) as refused:
            attempt()
        assert refused.value.code == "not_a_reviewer"
    with pytest.raises(TemplateWorkflowError) as refused:
        template_reject(template, reviewer=reviewer, reason="   ")
    assert refused.value.code == "reason_required"
    assert fresh(template).status == "in_review"

    note = "Say which store: customers have three to choose from."
    rejected = template_reject(template, reviewer=reviewer, reason=note)
    assert (rejected.status, rejected.review_note, rejected.reviewed_by) == ("internally_rejected", note, reviewer)
    assert rejected.reviewed_at and rejected.next_submission_at is None and rejected.provider_template_id == ""
    (audit,) = AuditLog.objects.filter(object_type=TEMPLATE_TYPE, action="template.rejected_internally")
    assert (audit.actor, audit.before["status"], audit.after["status"], audit.after["reason"]) == (
        reviewer, "in_review", "internally_rejected", note)

    # The author fixes it in place (no new version: the provider never saw it) and asks again.
    edited = template_edit(rejected, actor=author, changes={"examples": {
        **ORDER_READY["examples"], "body": {"1": "Ana", "2": "the Main Street store (north entrance)"}}})
    assert (edited.pk, edited.version, edited.status) == (template.pk, 1, "draft")
    again = template_submit_for_review(edited, actor=author)
    assert (again.status, again.review_note) == ("in_review", "")


# --- submission failures --------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_meta_server_error_leaves_it_approved_internally_until_the_due_job_retries(fake, worker, author,
                                                                                    reviewer):
    meta = make_meta()
    fake.routes[META_CREATE] = [meta_error_fixture("flow_error_500.json", 500),
                                Reply.json(fixture_json("meta", "flow_template_created.json"))]

    template = wait_submission_error(reviewed_and_approved(meta, author, reviewer, ORDER_READY))
    assert template.status == "internally_approved" and template.submission_attempts == 1
    assert "HTTP 500" in template.submission_error and template.provider_template_id == ""
    # Retried with backoff: due in about a minute, not before.
    assert timezone.now() + timedelta(seconds=30) < template.next_submission_at
    assert templates_submit_due() == 0
    assert len(fake.hits(META_CREATE)) == 1

    MessageTemplate.objects.filter(pk=template.pk).update(next_submission_at=timezone.now() - timedelta(seconds=1))
    assert templates_submit_due() == 1
    template = wait_status(template, "pending")
    assert (template.provider_template_id, template.submission_error, template.next_submission_at) == (
        META_TEMPLATE_ID, "", None)
    assert len(fake.hits(META_CREATE)) == 2
    failed = AuditLog.objects.get(object_id=str(template.pk), action="template.submission_failed")
    assert (failed.actor_label, failed.after["retry"], failed.after["status"]) == (
        "meta submission", True, "internally_approved")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_meta_refusal_is_not_retried_until_a_user_resubmits(fake, worker, author, reviewer):
    meta = make_meta()
    fake.routes[META_CREATE] = [meta_error_fixture("flow_error_100.json", 400)]

    template = wait_submission_error(reviewed_and_approved(meta, author, reviewer, ORDER_READY))
    assert template.status == "internally_approved" and template.next_submission_at is None
    assert "error 100" in template.submission_error
    assert "The language en_US is not enabled for this business account" in template.submission_error
    assert "gave up" not in template.submission_error
    failed = AuditLog.objects.get(object_id=str(template.pk), action="template.submission_failed")
    assert (failed.after["retry"], failed.after["code"]) == (False, "100")
    assert templates_submit_due() == 0

    # Someone enables the language at Meta, then sends the template again.
    fake.routes[META_CREATE] = [Reply.json(fixture_json("meta", "flow_template_created.json"))]
    template_resubmit(template, actor=reviewer)
    template = wait_status(template, "pending")
    assert (template.provider_template_id, template.submission_error) == (META_TEMPLATE_ID, "")
    assert len(fake.hits(META_CREATE)) == 2
    resubmitted = AuditLog.objects.get(object_id=str(template.pk), action="template.resubmitted")
    assert resubmitted.actor == reviewer and "error 100" in resubmitted.before["submission_error"]
