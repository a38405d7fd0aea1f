"""
The inbox as an operator sees it without a browser: the conversation list's columns, filters, order and
actions; the conversation page's assignment and labels (audited), its transcript poll, and its send box
(a saved reply, a file, a template's value fields).
"""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from core.models import AuditLog
from templates_app.models import MessageTemplate
from tests.conftest import customer, user_with_perms
from tests.whatsapp.admin.test_admin_conversation_view import inbound, outbound
from whatsapp.models import Conversation, Label, Media, Message, SavedReply, Session

pytestmark = pytest.mark.django_db

INBOX = reverse("admin:whatsapp_conversation_changelist")


def conversation_of(provider, phone: str, text: str = "hello", *, minutes_ago: int = 0) -> Conversation:
    at = timezone.now() - timedelta(minutes=minutes_ago)
    return inbound(provider, f"in-{phone}-{minutes_ago}", text, phone=phone, at=at).conversation


def listed(client, **params) -> list[int]:
    response = client.get(INBOX, params)
    assert response.status_code == 200, response.status_code
    return [row.pk for row in response.context["cl"].result_list]


def row_html(html: str, conversation: Conversation) -> str:
    return re.search(rf'href="[^"]*/{conversation.pk}/change/.*?</tr>', html, re.S).group(0)


def page_url(conversation: Conversation, view: str = "change") -> str:
    return reverse(f"admin:whatsapp_conversation_{view}", args=[conversation.pk])


def staff(username: str):
    return get_user_model().objects.create_user(username, f"{username}@example.com", "pw-123456-strong",
                                                is_staff=True)


# --- the list ----------------------------------------------------------------------------------------------

def test_the_list_says_who_waits_and_how_long_the_window_stays_open(admin_client_logged, sandbox_provider,
                                                                    superuser):
    waiting = conversation_of(sandbox_provider, "+16505550401", "Where is my parcel?", minutes_ago=30)
    answered = conversation_of(sandbox_provider, "+16505550402", "Thanks")
    outbound(answered, "You're welcome", "read")
    Conversation.objects.filter(pk=answered.pk).update(awaiting_reply_since=None, assignee=superuser)
    closed = conversation_of(sandbox_provider, "+16505550403", "Old question", minutes_ago=3000)
    Session.objects.filter(conversation=closed).update(expires_at=timezone.now() - timedelta(hours=26))
    answered.labels.add(Label.objects.create(name="vip", colour="#7e22ce"))

    html = admin_client_logged.get(INBOX).content.decode()
    assert "<h1>Inbox</h1>" in html
    row = row_html(html, waiting)
    assert "Where is my parcel?" in row and "Needs reply · 30 min" in row and "Window: 23 h left" in row
    row = row_html(html, answered)
    assert "You: You&#x27;re welcome" in row and "Needs reply" not in row
    assert "<strong>root</strong>" in row and 'class="wa-label"' in row and ">vip<" in row
    assert "Window closed" in row_html(html, closed)


def test_what_waits_longest_comes_first(admin_client_logged, sandbox_provider):
    recent = conversation_of(sandbox_provider, "+16505550411", minutes_ago=5)
    oldest = conversation_of(sandbox_provider, "+16505550412", minutes_ago=90)
    answered = conversation_of(sandbox_provider, "+16505550413", minutes_ago=1)
    Conversation.objects.filter(pk=answered.pk).update(awaiting_reply_since=None)
    assert listed(admin_client_logged) == [oldest.pk, recent.pk, answered.pk]


def test_the_filters_combine(admin_client_logged, sandbox_provider, superuser):
    mine_waiting = conversation_of(sandbox_provider, "+16505550421")
    mine_answered = conversation_of(sandbox_provider, "+16505550422")
    theirs = conversation_of(sandbox_provider, "+16505550423")
    nobody = conversation_of(sandbox_provider, "+16505550424")
    colleague = staff("carla")
    Conversation.objects.filter(pk__in=[mine_waiting.pk, mine_answered.pk]).update(assignee=superuser)
    Conversation.objects.filter(pk=theirs.pk).update(assignee=colleague)
    Conversation.objects.filter(pk=mine_answered.pk).update(awaiting_reply_since=None)
    billing = Label.objects.create(name="billing")
    theirs.labels.add(billing)
    nobody.labels.add(billing, Label.objects.create(name="vip"))
    Session.objects.filter(conversation=nobody).update(expires_at=timezone.now() + timedelta(minutes=40))
    Session.objects.filter(conversation=theirs).update(state="closed")

    assert set(listed(admin_client_logged, assigned="mine")) == {mine_waiting.pk, mine_answered.pk}
    assert listed(admin_client_logged, assigned="mine", waiting="reply") == [mine_waiting.pk]
    assert listed(admin_client_logged, assigned="none") == [nobody.pk]
    assert listed(admin_client_logged, assigned=colleague.pk) == [theirs.pk]
    assert listed(admin_client_logged, waiting="closing") == [nobody.pk]
    assert listed(admin_client_logged, waiting="closed") == [theirs.pk]
    assert set(listed(admin_client_logged, label=billing.pk)) == {theirs.pk, nobody.pk}  # no duplicate rows
    # A bad value is a readable redirect, never a 500.
    assert admin_client_logged.get(INBOX, {"assigned": "someone"}).status_code == 302


def test_list_actions_assign_unassign_and_label_with_an_audit_entry(admin_client_logged, sandbox_provider,
                                                                    superuser):
    first = conversation_of(sandbox_provider, "+16505550431")
    second = conversation_of(sandbox_provider, "+16505550432")
    label = Label.objects.create(name="returns")
    selected = {"_selected_action": [first.pk, second.pk]}
    admin_client_logged.post(INBOX, {"action": "assign_to_me", **selected})
    assert set(Conversation.objects.values_list("assignee__username", flat=True)) == {"root"}
    admin_client_logged.post(INBOX, {"action": f"add_label_{label.pk}", **selected})
    assert set(label.conversations.values_list("pk", flat=True)) == {first.pk, second.pk}
    admin_client_logged.post(INBOX, {"action": "unassign", "_selected_action": [second.pk]})
    assert Conversation.objects.get(pk=second.pk).assignee is None
    actions = list(AuditLog.objects.filter(object_id=str(second.pk)).order_by("id")
                   .values_list("action", "before", "after"))
    assert actions == [("conversation.assign", {"assignee": ""}, {"assignee": "root"}),
                       ("conversation.labels", {"labels": []}, {"labels": ["returns"]}),
                       ("conversation.unassign", {"assignee": "root"}, {"assignee": ""})]


def test_the_list_runs_the_same_queries_for_5_and_40_rows(admin_client_logged, sandbox_provider, superuser):
    labels = [Label.objects.create(name=f"label {n}") for n in range(3)]

    def add(start: int, count: int) -> None:
        for number in range(start, start + count):
            conversation = conversation_of(sandbox_provider, f"+165055505{number:02d}")
            conversation.labels.add(*labels[: number % 3 + 1])
            outbound(conversation, "an answer", "delivered")
            if number % 2:
                Conversation.objects.filter(pk=conversation.pk).update(assignee=superuser)

    add(0, 5)
    admin_client_logged.get(INBOX)
    with CaptureQueriesContext(connection) as few:
        assert admin_client_logged.get(INBOX).status_code == 200
    add(5, 35)
    with CaptureQueriesContext(connection) as many:
        html = admin_client_logged.get(INBOX).content.decode()
    assert html.count('class="action-checkbox"') == 40
    assert len(few) == len(many), [query["sql"][:90] for query in many]


# --- the page: assignment and labels -----------------------------------------------------------------------

def test_the_page_assigns_and_labels_through_its_own_forms(admin_client_logged, sandbox_provider, superuser):
    conversation = conversation_of(sandbox_provider, "+16505550441")
    colleague = staff("carla")
    html = admin_client_logged.get(page_url(conversation)).content.decode()
    assert 'id="wa-assign-form"' in html and 'name="_save"' not in html and "deletelink" not in html
    assert admin_client_logged.post(page_url(conversation)).status_code == 405  # the page saves nothing itself

    response = admin_client_logged.post(page_url(conversation, "assign"), {"assignee": colleague.pk}, follow=True)
    assert "Assigned to carla." in response.content.decode()
    admin_client_logged.post(page_url(conversation, "assign"), {"_mine": "1"})
    assert Conversation.objects.get(pk=conversation.pk).assignee == superuser
    customer_user = get_user_model().objects.create_user("customer-user")  # not staff
    refused = admin_client_logged.post(page_url(conversation, "assign"), {"assignee": customer_user.pk},
                                       follow=True)
    assert "cannot take conversations" in refused.content.decode()
    assert Conversation.objects.get(pk=conversation.pk).assignee == superuser
    assert admin_client_logged.get(page_url(conversation, "assign")).status_code == 405

    vip, billing = Label.objects.create(name="vip"), Label.objects.create(name="billing")
    admin_client_logged.post(page_url(conversation, "labels"), {"labels": [vip.pk, billing.pk]})
    assert set(conversation.labels.values_list("name", flat=True)) == {"vip", "billing"}
    admin_client_logged.post(page_url(conversation, "labels"), {"labels": [vip.pk]})
    entry = AuditLog.objects.filter(action="conversation.labels").latest("id")
    assert (entry.before, entry.after) == ({"labels": ["billing", "vip"]}, {"labels": ["vip"]})
    html = admin_client_logged.get(page_url(conversation)).content.decode()
    assert "<strong>root</strong>" in html and ">vip</span>" in html


def test_an_operator_without_change_permission_only_reads(client, sandbox_provider):
    conversation = conversation_of(sandbox_provider, "+16505550451")
    reader = user_with_perms("reader", "whatsapp.view_conversation")
    reader.is_staff = True
    reader.save()
    client.force_login(reader)
    html = client.get(page_url(conversation)).content.decode()
    assert 'id="transcript"' in html and 'id="wa-assign-form"' not in html and 'id="send-message"' not in html
    assert client.post(page_url(conversation, "assign"), {"_mine": "1"}).status_code == 403
    assert client.post(page_url(conversation, "labels"), {}).status_code == 403
    assert client.post(page_url(conversation, "send"), {"text": "hi"}).status_code == 403
    assert client.get(page_url(conversation, "transcript")).status_code == 200


# --- the page: the transcript poll -------------------------------------------------------------------------

def test_the_transcript_poll_returns_changed_rows_and_304_when_nothing_changed(admin_client_logged,
                                                                               sandbox_provider):
    conversation = conversation_of(sandbox_provider, "+16505550461", "first question")
    url = page_url(conversation, "transcript")
    first = admin_client_logged.get(url)
    body = first.json()
    assert "first question" in body["rows"] and "Needs reply" in body["state"]
    unchanged = admin_client_logged.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert unchanged.status_code == 304
    reply = outbound(conversation, "on its way", "sent")
    changed = admin_client_logged.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert changed.status_code == 200 and f'id="message-{reply.pk}"' in changed.json()["rows"]
    Message.objects.filter(pk=reply.pk).update(status="read", read_at=timezone.now())  # as a status report does
    ticked = admin_client_logged.get(url, HTTP_IF_NONE_MATCH=changed["ETag"])
    assert "wa-status-read" in ticked.json()["rows"]
    # A proxy that compresses the answer marks the tag weak: still recognised.
    weak = admin_client_logged.get(url, HTTP_IF_NONE_MATCH=f'W/{ticked["ETag"]}')
    assert weak.status_code == 304
    # An unchanged transcript is answered without drawing it: two aggregates, the session, the sign-in.
    with CaptureQueriesContext(connection) as queries:
        assert admin_client_logged.get(url, HTTP_IF_NONE_MATCH=ticked["ETag"]).status_code == 304
    assert not any("whatsapp_message\".\"text\"" in query["sql"] for query in queries), queries


# --- the page: the send box --------------------------------------------------------------------------------

def test_a_saved_reply_is_sent_as_it_is_without_the_page_script(admin_client_logged, sandbox_provider):
    contact = customer(sandbox_provider, "+16505550471")
    conversation = Conversation.objects.get(contact=contact)
    other_number = type(sandbox_provider).objects.create(kind="sandbox", name="Other number")
    saved = SavedReply.objects.create(title="Hours", text="We are open 9 to 6.")
    SavedReply.objects.create(title="Elsewhere", text="Only for the other number", provider=other_number)
    html = admin_client_logged.get(page_url(conversation)).content.decode()
    assert 'data-text="We are open 9 to 6."' in html and "Only for the other number" not in html
    admin_client_logged.post(page_url(conversation, "send"), {"saved_reply": saved.pk, "_send": "Send"})
    assert Message.objects.get(conversation=conversation, direction="outbound").text == "We are open 9 to 6."


def test_a_file_is_sent_as_media_with_the_message_as_its_caption(admin_client_logged, sandbox_provider,
                                                                 local_storage):
    contact = customer(sandbox_provider, "+16505550481")
    conversation = Conversation.objects.get(contact=contact)
    upload = SimpleUploadedFile("receipt.png", b"\x89PNG\r\n\x1a\n" + b"0" * 64, content_type="image/png")
    response = admin_client_logged.post(page_url(conversation, "send"),
                                        {"text": "Your receipt", "file": upload, "_send": "Send"})
    assert response.status_code == 302, response.content.decode()[:2000]
    message = Message.objects.get(conversation=conversation, direction="outbound")
    assert (message.message_type, message.content.get("caption")) == ("image", "Your receipt")
    assert Media.objects.get(message=message).filename == "receipt.png"


def test_a_template_gets_a_field_per_value_with_its_example(admin_client_logged, sandbox_provider):
    contact = customer(sandbox_provider, "+16505550491", in_window=False)
    conversation = Conversation.objects.get(contact=contact)
    template = MessageTemplate.objects.create(
        provider=sandbox_provider, name="pickup", language="en_US", status="approved",
        components=[{"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
                    {"type": "BODY", "text": "Hi {{1}}, collect it at {{2}}."},
                    {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track",
                                                     "url": "https://shop.example/track/{{1}}"}]}],
        examples={"header": ["#1042"], "body": ["Ana", "the front desk"], "buttons": {"0": "1042"}})
    fields = admin_client_logged.get(page_url(conversation, "send_fields"), {"template": template.pk})
    html = fields.content.decode()
    for name in ("header__1", "body__1", "body__2", "button__0"):
        assert f'name="{name}"' in html
    assert 'placeholder="the front desk"' in html and 'data-body="Hi {{1}}, collect it at {{2}}."' in html
    response = admin_client_logged.post(page_url(conversation, "send"), {
        "template": template.pk, "header__1": "#2087", "body__1": "Marta", "body__2": "door 3",
        "button__0": "2087", "_send": "Send"})
    assert response.status_code == 302
    message = Message.objects.get(conversation=conversation, direction="outbound")
    assert message.text == "Hi Marta, collect it at door 3."
    assert message.template_variables == {"header": {"1": "#2087"}, "body": {"1": "Marta", "2": "door 3"},
                                          "buttons": {"0": "2087"}}


# --- what the page survives ----------------------------------------------------------------------------------

def test_odd_ids_in_urls_and_forms_are_refused_readably(admin_client_logged, sandbox_provider):
    conversation = conversation_of(sandbox_provider, "+16505550501")
    Label.objects.create(name="vip")
    for params in ({"assigned": "²"}, {"label": "²"}, {"mapped_user": "²"}, {"provider": "²"}):
        assert admin_client_logged.get(INBOX, params).status_code in (200, 302), params
    assert admin_client_logged.get(page_url(conversation, "send_fields"), {"template": "²"}).status_code == 200
    assert admin_client_logged.post(page_url(conversation, "send"), {"template": "²"}).status_code == 400
    assert admin_client_logged.post(page_url(conversation, "assign"), {"assignee": "²"}).status_code == 302
    assert admin_client_logged.post(page_url(conversation, "labels"), {"labels": ["²"]}).status_code == 302


def test_the_page_changes_only_what_the_operator_changed(admin_client_logged, sandbox_provider, superuser):
    conversation = conversation_of(sandbox_provider, "+16505550511")
    vip, billing, late = (Label.objects.create(name=name) for name in ("vip", "billing", "late"))
    conversation.labels.add(vip)
    # The page showed "vip"; meanwhile a colleague added "late"; the operator ticks "billing" too.
    conversation.labels.add(late)
    admin_client_logged.post(page_url(conversation, "labels"), {"shown": [vip.pk, ""],
                                                                "labels": [vip.pk, billing.pk]})
    assert set(conversation.labels.values_list("name", flat=True)) == {"vip", "billing", "late"}
    # The page showed nobody assigned; meanwhile a colleague took it: the operator's Assign is refused.
    colleague = staff("carla")
    Conversation.objects.filter(pk=conversation.pk).update(assignee=colleague)
    response = admin_client_logged.post(page_url(conversation, "assign"),
                                        {"shown_assignee": "", "_mine": "1"}, follow=True)
    assert "Meanwhile the conversation was assigned to carla" in response.content.decode()
    assert Conversation.objects.get(pk=conversation.pk).assignee == colleague


def test_one_form_sent_twice_queues_once_and_edited_it_queues_again(admin_client_logged, sandbox_provider):
    contact = customer(sandbox_provider, "+16505550521")
    conversation = Conversation.objects.get(contact=contact)
    send = page_url(conversation, "send")
    admin_client_logged.post(send, {"text": "first", "send_key": "k1", "_send": "Send"})
    admin_client_logged.post(send, {"text": "first", "send_key": "k1", "_send": "Send"})
    admin_client_logged.post(send, {"text": "first, edited", "send_key": "k1", "_send": "Send"})
    assert list(Message.objects.filter(conversation=conversation, direction="outbound").order_by("id")
                .values_list("text", flat=True)) == ["first", "first, edited"]


@pytest.mark.parametrize(("name", "mime_type", "size", "kind"), [
    ("photo.png", "image/png", 1000, "image"),
    ("animation.gif", "image/gif", 1000, "document"),        # not a type WhatsApp shows inline
    ("scan.jpg", "image/jpeg", 6 * 1024 * 1024, "document"),  # over an image's 5 MB
    ("clip.mp4", "video/mp4", 1000, "video"),
    ("note.ogg", "audio/ogg", 1000, "audio"),
    ("report.pdf", "application/pdf", 1000, "document"),
])
def test_a_file_goes_as_the_kind_whatsapp_allows_for_it(admin_client_logged, sandbox_provider, local_storage,
                                                          name, mime_type, size, kind):
    contact = customer(sandbox_provider, "+16505550531")
    conversation = Conversation.objects.get(contact=contact)
    upload = SimpleUploadedFile(name, b"0" * size, content_type=mime_type)
    response = admin_client_logged.post(page_url(conversation, "send"), {"file": upload, "_send": "Send"})
    assert response.status_code == 302
    assert Message.objects.get(conversation=conversation, direction="outbound").message_type == kind
