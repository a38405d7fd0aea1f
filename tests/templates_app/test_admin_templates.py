"""
The templates admin as its users meet it: the authoring form (WhatsApp's rules shown on the field they
are about), versions made by editing what the provider approved, the workflow buttons of the template
page and of the "Templates awaiting review" screen (with who may press them), the sync button, usage
figures, history and diff, and a constant number of queries per page. Each step is checked by the rows it
leaves, the audit entries and what the page says.
"""

import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.http import urlencode

from contacts.models import Contact
from core.models import AuditLog
from templates_app.models import MessageTemplate
from templates_app.services.provider_submission import template_submit
from templates_app.services.workflow import (
    review_version,
    template_approve,
    template_create,
    template_submit_for_review,
)
from tests.conftest import audit_actions, fixture_bytes, page
from tests.fakes import Reply
from whatsapp.models import Conversation, Message
from whatsapp.providers.events import TemplateStatus
from whatsapp.services.providers import provider_create

pytestmark = pytest.mark.django_db

User = get_user_model()
CHANGELIST = reverse("admin:templates_app_messagetemplate_changelist")
ADD = reverse("admin:templates_app_messagetemplate_add")
REVIEW = reverse("admin:templates_app_templateawaitingreview_changelist")
SYNC = reverse("admin:templates_app_messagetemplate_sync")

BUTTONS = [{"type": "QUICK_REPLY", "text": "Thanks"},
           {"type": "URL", "text": "Track", "url": "https://shop.example.test/t/{{1}}"}]
EXAMPLES = {"header": {"1": "#1042"}, "body": {"1": "Ana", "2": "the Main Street store"}, "buttons": {"1": "1042"}}
COMPONENTS = [
    {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
    {"type": "BODY", "text": "Hi {{1}}, your order is ready at {{2}}."},
    {"type": "FOOTER", "text": "Reply STOP to opt out"},
    {"type": "BUTTONS", "buttons": BUTTONS},
]


def url(name: str, template) -> str:
    return reverse(f"admin:templates_app_messagetemplate_{name}", args=[template.pk])


def text_of(response) -> str:
    """The page's text without tags, entities decoded: what a reader sees."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page(response)))


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]] if response.context else []


def form_errors(response) -> dict[str, list[str]]:
    return response.context["adminform"].form.errors


def staff(username: str, group: str):
    user = User.objects.create_user(username, f"{username}@example.com", "pw-123456-strong", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def provider(sandbox_provider):
    return sandbox_provider


@pytest.fixture
def author(db):
    return staff("author", "Template reviewer")


@pytest.fixture
def reviewer(db):
    return staff("reviewer", "Template reviewer")


@pytest.fixture
def operator(db):
    return staff("operator", "Operator")


@pytest.fixture
def as_author(author):
    return client_for(author)


@pytest.fixture
def as_reviewer(reviewer):
    return client_for(reviewer)


def button_rows(buttons: list[dict], examples: dict | None = None, *, empty: int = 3) -> dict[str, str]:
    """The buttons as the form posts them: one row of boxes each, then `empty` rows left blank."""
    examples = examples or {}
    data = {}
    for index, button in enumerate([*buttons, *[{}] * empty]):
        data.update({f"buttons-{index}-type": button.get("type", ""), f"buttons-{index}-text": button.get("text", ""),
                     f"buttons-{index}-url": button.get("url", ""),
                     f"buttons-{index}-phone_number": button.get("phone_number", ""),
                     f"buttons-{index}-example": examples.get(str(index), "")})
    return data


def body_examples(values: dict[str, str]) -> dict[str, str]:
    return {f"body_examples-{name}": value for name, value in values.items()}


def form_data(provider, *, buttons: list[dict] = BUTTONS, button_examples: dict | None = None, **overrides) -> dict:
    data = {"provider": provider.pk, "name": "order_ready", "language": "en_US", "category": "utility",
            "parameter_format": "positional", "header_format": "TEXT", "header_text": "Order {{1}}",
            "header_example": EXAMPLES["header"]["1"], "body_text": "Hi {{1}}, your order is ready at {{2}}.",
            **body_examples(EXAMPLES["body"]), "footer_text": "Reply STOP to opt out",
            **button_rows(buttons, button_examples if button_examples is not None
                          else EXAMPLES["buttons"] if buttons is BUTTONS else {})}
    return {**data, **overrides}


def make_template(provider, actor, *, name="order_ready", body="Hi {{1}}, your order is ready at {{2}}.",
                  status=TemplateStatus.DRAFT, reviewer=None) -> MessageTemplate:
    """A template taken through the real workflow up to `status` (approved: the sandbox approves at once)."""
    components = [*COMPONENTS[:1], {"type": "BODY", "text": body}, *COMPONENTS[2:]]
    template = template_create(provider=provider, actor=actor, name=name, language="en_US", category="utility",
                               parameter_format="positional", components=components, examples=EXAMPLES)
    if status == TemplateStatus.DRAFT:
        return template
    template = template_submit_for_review(template, actor=actor)
    if status == TemplateStatus.IN_REVIEW:
        return template
    template = template_approve(template, reviewer=reviewer)
    if status == TemplateStatus.INTERNALLY_APPROVED:
        return template
    template_submit(template.pk)  # the submission task's body, as the worker runs it
    template.refresh_from_db()
    assert template.status == status
    return template


# --- authoring -----------------------------------------------------------------------------------------

def test_authoring_form_creates_a_draft_with_the_components_composed(as_author, author, provider):
    form_page = as_author.get(ADD)
    assert form_page.status_code == 200
    assert 'id="tpl-preview"' in page(form_page) and "template_preview.js" in page(form_page)
    assert "template_form.js" in page(form_page)
    # No buttons yet: three empty rows to fill in (with JavaScript, "Add a button" reveals them one by one).
    assert [f'name="buttons-{n}-type"' in page(form_page) for n in range(4)] == [True, True, True, False]
    assert "Add a button" in page(form_page)

    response = as_author.post(ADD, form_data(provider))
    assert response.status_code == 302, form_errors(response)
    template = MessageTemplate.objects.get()
    assert (template.name, template.language, template.version, template.status, template.created_by) == (
        "order_ready", "en_US", 1, TemplateStatus.DRAFT, author)
    assert template.components == COMPONENTS
    assert template.examples == EXAMPLES
    assert audit_actions(template) == [("template.created", "author")]

    change = as_author.get(url("change", template))
    form = change.context["adminform"].form
    assert form.initial["header_format"] == "TEXT" and form.initial["body_text"] == COMPONENTS[1]["text"]
    shown = page(change)
    # Each part in its own box, filled in: the buttons' rows, an example box per body parameter.
    for name, value in [("header_example", "#1042"), ("body_examples-1", "Ana"),
                        ("body_examples-2", "the Main Street store"), ("buttons-0-text", "Thanks"),
                        ("buttons-1-url", "https://shop.example.test/t/{{1}}"), ("buttons-1-example", "1042")]:
        assert re.search(rf'name="{re.escape(name)}"[^>]*value="{re.escape(html.escape(value))}"', shown), name
    assert re.search(r'<option value="URL" selected>Open a link</option>', shown)
    # The server-drawn preview, with the example values in.
    assert "Hi Ana, your order is ready at the Main Street store." in text_of(change)


def test_save_and_continue_editing_opens_the_new_template(as_author, provider):
    response = as_author.post(ADD, {**form_data(provider), "_continue": "1"})
    assert response["Location"] == url("change", MessageTemplate.objects.get())


def test_the_authoring_page_shows_no_json(as_author, author, provider):
    template = make_template(provider, author)
    for response in (as_author.get(ADD), as_author.get(url("change", template))):
        shown = text_of(response)
        assert not re.search(r'[\[{]\s*"(type|text|url|body|header|buttons)"\s*:', shown), shown
        assert "QUICK_REPLY" not in shown and "PHONE_NUMBER" not in shown


def test_adding_removing_and_changing_buttons(as_author, author, provider):
    template = make_template(provider, author)
    phone = {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+15550001111"}
    code = {"type": "COPY_CODE", "text": "", "url": "", "phone_number": ""}
    data = form_data(provider, buttons=[*BUTTONS, phone, code], button_examples={"1": "1042", "3": "SAVE10"})
    data["buttons-0-remove"] = "1"  # the quick reply goes
    response = as_author.post(url("change", template), data)
    assert response.status_code == 302, form_errors(response)
    template.refresh_from_db()
    assert template.components[-1] == {"type": "BUTTONS", "buttons": [
        BUTTONS[1], phone, {"type": "COPY_CODE"}]}
    # Examples follow the buttons' new positions.
    assert template.examples["buttons"] == {"0": "1042", "2": "SAVE10"}
    # The same rows come back on the page, the empty rows below them.
    shown = page(as_author.get(url("change", template)))
    assert 'value="+15550001111"' in shown and 'value="SAVE10"' in shown and 'name="buttons-5-type"' in shown


def test_an_example_typed_for_a_parameter_since_removed_is_left_out(as_author, author, provider):
    response = as_author.post(ADD, form_data(provider, body_text="Hi {{1}}, it is ready.", buttons=[],
                                             **{"body_examples-2": "left over"}))
    assert response.status_code == 302, form_errors(response)
    assert MessageTemplate.objects.get().examples == {"header": {"1": "#1042"}, "body": {"1": "Ana"}}


def test_a_template_without_header_footer_or_buttons(as_author, provider):
    response = as_author.post(ADD, form_data(provider, header_format="", header_text="", header_example="",
                                             footer_text="", buttons=[]))
    assert response.status_code == 302, form_errors(response)
    template = MessageTemplate.objects.get()
    assert template.components == [{"type": "BODY", "text": "Hi {{1}}, your order is ready at {{2}}."}]
    assert template.examples == {"body": EXAMPLES["body"]}


@pytest.mark.parametrize(("overrides", "field", "words"), [
    ({"name": "Order Ready"}, "name", "only lowercase letters, digits and underscores"),
    ({"body_text": "{{1}}, your order is ready at {{2}}."}, "body_text", "starts with the parameter {{1}}"),
    ({"body_text": "Hi {{1}}, your order is ready at {{3}}."}, "body_text", "numbered from {{1}} without gaps"),
    ({"body_text": "Hi {{1}} {{2}} is ready."}, "body_text", "next to each other"),
    ({"header_text": "Order {{1}} " + "x" * 60}, "header_text", "at most 60 characters"),
    ({"footer_text": "Bye {{1}}"}, "footer_text", "cannot have parameters"),
    ({"body_examples-2": ""}, "body_examples", "Body parameter {{2}} needs an example value"),
    ({"header_example": " "}, "header_example", "Header parameter {{1}} needs an example value"),
    ({"header_format": "IMAGE", "header_text": "", "header_example": ""}, "header_example",
     "The IMAGE header needs an example https link, found nothing"),
    ({"buttons": [{"type": "URL", "text": "Track", "url": "https://shop.example.test/{{1}}/t"}],
      "button_examples": {"0": "1042"}},
     "buttons", "Button 1 (link): the url's parameter {{1}} must be at the very end of the url"),
    ({"buttons": [{"type": "QUICK_REPLY", "text": "A"}, {"type": "URL", "text": "B", "url": "https://x.example.test"},
                  {"type": "QUICK_REPLY", "text": "C"}], "button_examples": {}},
     "buttons", "must be grouped together, all before or all after the other buttons; found quick reply, link, "
                "quick reply"),
    ({"buttons": [{"type": "", "text": "Yes"}], "button_examples": {}}, "buttons",
     "Button 1: choose what it does"),
    ({"buttons": [{"type": "PHONE_NUMBER", "text": "Call", "phone_number": "5550001111"}], "button_examples": {}},
     "buttons", "Button 1 (call): the phone number must be + then country code"),
    ({"buttons": [{"type": "COPY_CODE"}], "button_examples": {}}, "buttons",
     "Button 1 (copy code) needs an example value (the code to copy)"),
    ({"buttons": [{"type": "URL", "text": "Track", "url": "https://shop.example.test/t/{{1}}"}],
      "button_examples": {}}, "buttons", "Button 1 (link) needs an example value (the url's variable part)"),
    ({"parameter_format": "named"}, "parameter_format", "Parameter format is named but the text uses positional"),
    ({"header_format": "IMAGE"}, "header_text", "the IMAGE header has no text"),
], ids=["name", "starts-with-parameter", "gap", "adjacent", "header-length", "footer-parameter",
        "missing-body-example", "missing-header-example", "media-header-link", "url-parameter", "button-grouping",
        "button-type", "phone-number", "copy-code-example", "url-example", "parameter-format", "media-header-text"])
def test_each_broken_rule_shows_on_its_field(as_author, provider, overrides, field, words):
    response = as_author.post(ADD, form_data(provider, **overrides))
    assert response.status_code == 200
    errors = form_errors(response)
    assert any(words.lower() in message.lower() for message in errors.get(field, [])), errors
    assert html.escape(errors[field][0]) in page(response)
    assert not MessageTemplate.objects.exists()


def test_a_broken_button_is_marked_on_its_row(as_author, provider):
    buttons = [{"type": "QUICK_REPLY", "text": "Fine"}, {"type": "QUICK_REPLY", "text": "x" * 30}]
    response = as_author.post(ADD, form_data(provider, buttons=buttons, button_examples={}))
    assert form_errors(response)["buttons"] == ["Button 2 (quick reply): the label is at most 25 characters, "
                                                "found 30"]
    rows = re.findall(r'<fieldset class="tpl-button-row([^"]*)" data-index="(\d)"', page(response))
    assert rows[:2] == [("", "0"), (" tpl-row-invalid", "1")]
    # Every value typed is still there to fix.
    assert 'value="Fine"' in page(response) and f'value="{"x" * 30}"' in page(response)


def test_a_structure_problem_shows_above_the_form(as_author, provider):
    response = as_author.post(ADD, form_data(provider, body_text="   "))
    assert "The body text is required" in " ".join(form_errors(response)["body_text"])


def test_a_name_taken_in_the_account_is_refused_by_the_service_on_the_name_field(as_author, author, provider):
    make_template(provider, author)
    response = as_author.post(ADD, form_data(provider))
    assert response.status_code == 200
    assert "already exists for this business account" in " ".join(form_errors(response)["name"])
    assert MessageTemplate.objects.count() == 1


def test_chatwoot_inboxes_are_not_offered_for_authoring(as_author, provider):
    chatwoot = provider_create(kind="chatwoot", name="Support inbox", options={
        "base_url": "https://chat.example.test", "account_id": "3", "inbox_id": "7", "api_token": "tok"})
    choices = [value for value, _ in as_author.get(ADD).context["adminform"].form.fields["provider"].choices]
    assert provider.pk in [getattr(v, "value", v) for v in choices]
    assert chatwoot.pk not in [getattr(v, "value", v) for v in choices]


def test_editing_a_draft_changes_it_in_place(as_author, author, provider):
    template = make_template(provider, author)
    response = as_author.post(url("change", template), form_data(provider, body_text="Hello {{1}}, ready at {{2}}."))
    assert response.status_code == 302, form_errors(response)
    template.refresh_from_db()
    assert (template.version, template.status) == (1, TemplateStatus.DRAFT)
    assert template.components[1] == {"type": "BODY", "text": "Hello {{1}}, ready at {{2}}."}
    assert MessageTemplate.objects.count() == 1
    assert audit_actions(template)[-1] == ("template.edited", "author")


def test_editing_an_approved_template_makes_version_2_and_keeps_version_1_sendable(as_author, author, reviewer,
                                                                                    provider):
    v1 = make_template(provider, author, status=TemplateStatus.APPROVED, reviewer=reviewer)
    before = as_author.get(url("change", v1))
    assert "your edit becomes version 2, a draft, and version 1 stays sendable" in text_of(before)
    assert "name" not in before.context["adminform"].form.fields  # a version keeps its name and language

    response = as_author.post(url("change", v1), form_data(provider, body_text="Hi {{1}}, pick it up at {{2}}."),
                              follow=True)
    v2 = MessageTemplate.objects.get(version=2)
    assert response.redirect_chain[-1][0] == url("change", v2)
    assert ("Saved as version 2 of order_ready [en_US], a draft: submit it for review when it is ready. "
            "Version 1 stays sendable until version 2 is approved.") in shown_messages(response)
    v1.refresh_from_db()
    assert (v1.status, v1.components[1]["text"]) == (TemplateStatus.APPROVED, "Hi {{1}}, your order is ready at {{2}}.")
    assert (v2.status, v2.name, v2.created_by, v2.components[1]["text"]) == (
        TemplateStatus.DRAFT, "order_ready", author, "Hi {{1}}, pick it up at {{2}}.")
    assert ("template.version_created", "author") in audit_actions(v2)

    # v1 now has a successor: read-only, pointing to it.
    again = as_author.get(url("change", v1))
    assert "Version 2 of this template exists (draft): edit that one." in text_of(again)
    assert as_author.post(url("change", v1), form_data(provider)).status_code == 403


def test_a_template_in_review_is_read_only_with_its_preview(as_author, author, provider):
    template = make_template(provider, author, status=TemplateStatus.IN_REVIEW)
    response = as_author.get(url("change", template))
    assert response.status_code == 200
    assert 'name="body_text"' not in page(response)
    assert "Hi Ana, your order is ready at the Main Street store." in text_of(response)
    assert "read-only while it is being reviewed" in text_of(response)
    assert as_author.post(url("change", template), form_data(provider)).status_code == 403


def test_a_read_only_template_shows_its_parts_not_json(as_author, author, provider):
    template = make_template(provider, author, status=TemplateStatus.IN_REVIEW)
    response = as_author.get(url("change", template))
    shown = " ".join(text_of(response).split())
    # Part by part, each parameter beside its example value, the buttons as a numbered list.
    for words in ["Header (text) Order {{1}} {{1}} = #1042",
                  "Body Hi {{1}}, your order is ready at {{2}}. {{1}} = Ana · {{2}} = the Main Street store",
                  "Footer Reply STOP to opt out",
                  "Thanks — quick reply",
                  "Track — open a link https://shop.example.test/t/{{1}} · example: 1042",
                  "Button 2 the end of the link 1042",
                  "Written: Here"]:
        assert words in shown, words
    assert not re.search(r'[\[{]\s*"(type|text|url|body|header|buttons)"\s*:', shown)
    assert "{'" not in shown and "QUICK_REPLY" not in shown
    assert "icon-no" not in page(response)  # "not managed elsewhere" is no failure: no red cross
    # The audit trail in words too.
    assert "submitted for review" in shown and "status: draft, version: 1 → status: in internal review" in shown


def test_statuses_look_like_what_they_are(as_author, author, reviewer, provider):
    make_template(provider, author, name="a_draft")
    make_template(provider, author, name="live", status=TemplateStatus.APPROVED, reviewer=reviewer)
    MessageTemplate.objects.filter(name="a_draft").update(status=TemplateStatus.INTERNALLY_REJECTED)
    listing = page(as_author.get(CHANGELIST))
    assert '<span class="tpl-status tpl-status-good">Approved</span>' in listing
    assert '<span class="tpl-status tpl-status-bad">Rejected internally</span>' in listing
    MessageTemplate.objects.filter(name="a_draft").update(status=TemplateStatus.DRAFT)
    assert '<span class="tpl-status tpl-status-neutral">Draft</span>' in page(as_author.get(CHANGELIST))


def test_a_draft_is_deleted_through_the_workflow(admin_client_logged, author, reviewer, provider):
    template = make_template(provider, author)
    approved = make_template(provider, author, name="approved_one", status=TemplateStatus.APPROVED, reviewer=reviewer)
    assert admin_client_logged.get(url("delete", approved)).status_code == 403  # the provider has seen it
    response = admin_client_logged.post(url("delete", template), {"post": "yes"})
    assert response.status_code == 302
    assert list(MessageTemplate.objects.values_list("name", flat=True)) == ["approved_one"]
    assert AuditLog.objects.filter(action="template.deleted", actor_label="root").exists()


# --- workflow from the template page -----------------------------------------------------------------

def test_submit_and_withdraw_from_the_template_page(as_author, author, provider):
    template = make_template(provider, author)
    buttons = as_author.get(url("change", template)).context["workflow_buttons"]
    assert [button["name"] for button in buttons] == ["submit"]

    response = as_author.post(url("submit_for_review", template), follow=True)
    template.refresh_from_db()
    assert (template.status, template.submitted_by) == (TemplateStatus.IN_REVIEW, author)
    assert any("is in review" in message for message in shown_messages(response))
    # The author may withdraw it but not approve their own template.
    assert [b["name"] for b in response.context["workflow_buttons"]] == ["withdraw"]

    as_author.post(url("withdraw", template))
    template.refresh_from_db()
    assert template.status == TemplateStatus.DRAFT
    assert audit_actions(template)[-2:] == [("template.submitted_for_review", "author"),
                                            ("template.withdrawn", "author")]
    assert as_author.get(url("withdraw", template)).status_code == 405  # steps are POST only


def test_a_reviewer_approves_from_the_template_page(as_reviewer, author, provider):
    template = make_template(provider, author, status=TemplateStatus.IN_REVIEW)
    buttons = as_reviewer.get(url("change", template)).context["workflow_buttons"]
    assert [button["name"] for button in buttons] == ["withdraw", "approve", "reject"]

    response = as_reviewer.post(url("approve", template), follow=True)
    template.refresh_from_db()
    assert (template.status, template.reviewed_by.username) == (TemplateStatus.INTERNALLY_APPROVED, "reviewer")
    assert f"{template} is approved internally and on its way to Sandbox test." in shown_messages(response)
    assert audit_actions(template)[-1] == ("template.approved_internally", "reviewer")
    assert "Submit to Sandbox test again" in page(response)


def test_rejecting_needs_a_reason(as_reviewer, author, provider):
    template = make_template(provider, author, status=TemplateStatus.IN_REVIEW)
    form_page = as_reviewer.get(url("reject", template))
    assert form_page.status_code == 200 and 'name="reason"' in page(form_page)

    missing = as_reviewer.post(url("reject", template), {"reason": "  "})
    assert missing.status_code == 200
    assert "Give the author a reason" in page(missing)
    template.refresh_from_db()
    assert template.status == TemplateStatus.IN_REVIEW

    response = as_reviewer.post(url("reject", template), {"reason": "Say which store."}, follow=True)
    template.refresh_from_db()
    assert (template.status, template.review_note) == (TemplateStatus.INTERNALLY_REJECTED, "Say which store.")
    assert audit_actions(template)[-1] == ("template.rejected_internally", "reviewer")
    assert "Say which store." in text_of(response)  # the workflow panel shows the reviewer's note


def test_a_reviewer_cannot_approve_their_own_template(as_author, author, provider):
    template = make_template(provider, author, status=TemplateStatus.IN_REVIEW)
    assert "approve" not in [b["name"] for b in as_author.get(url("change", template)).context["workflow_buttons"]]
    response = as_author.post(url("approve", template), follow=True)
    assert any("a reviewer cannot approve their own template" in m for m in shown_messages(response))
    template.refresh_from_db()
    assert template.status == TemplateStatus.IN_REVIEW
    assert "template.approved_internally" not in dict(audit_actions(template))


def test_a_user_without_the_review_permission_cannot_approve_or_reject(operator, author, provider):
    template = make_template(provider, author, status=TemplateStatus.IN_REVIEW)
    client = client_for(operator)
    assert client.get(url("change", template)).context["workflow_buttons"] == []
    response = client.post(url("approve", template), follow=True)
    assert any("only a template reviewer can approve templates" in m for m in shown_messages(response))
    response = client.post(url("reject", template), {"reason": "no"}, follow=True)
    assert any("only a template reviewer can reject templates" in m for m in shown_messages(response))
    template.refresh_from_db()
    assert template.status == TemplateStatus.IN_REVIEW
    assert client.post(url("submit_for_review", template)).status_code == 403  # viewing only


def test_an_internally_approved_template_can_be_sent_to_the_provider_again(as_author, author, reviewer,
                                                                           provider):
    template = make_template(provider, author, status=TemplateStatus.INTERNALLY_APPROVED, reviewer=reviewer)
    MessageTemplate.objects.filter(pk=template.pk).update(submission_error="Meta is down (HTTP 503)")
    response = as_author.get(url("change", template))
    assert [b["name"] for b in response.context["workflow_buttons"]] == ["resubmit"]
    assert "Meta is down (HTTP 503)" in text_of(response)
    response = as_author.post(url("resubmit", template), follow=True)
    assert f"{template} is being sent to Sandbox test again." in shown_messages(response)
    assert audit_actions(template)[-1] == ("template.resubmitted", "author")


def test_submit_for_review_action_reports_each_refusal(as_author, author, provider):
    draft = make_template(provider, author, name="first")
    in_review = make_template(provider, author, name="second", status=TemplateStatus.IN_REVIEW)
    response = as_author.post(CHANGELIST, {"action": "submit_for_review", "_selected_action": [draft.pk, in_review.pk]},
                              follow=True)
    said = shown_messages(response)
    assert "1 template(s) submitted for review." in said
    assert any(m.startswith("second [en_US] v1: not submitted: second [en_US] v1 is in internal review") for m in said)
    draft.refresh_from_db()
    assert draft.status == TemplateStatus.IN_REVIEW


# --- the review screen -------------------------------------------------------------------------------

def review_rows(response) -> list[str]:
    return re.findall(r'<td class="field-template_link"><a href="[^"]+">([^<]+)</a>', page(response))


def test_the_review_screen_lists_only_templates_in_review(as_reviewer, author, reviewer, provider):
    make_template(provider, author, name="a_draft")
    make_template(provider, author, name="approved_one", status=TemplateStatus.APPROVED, reviewer=reviewer)
    waiting = make_template(provider, author, name="waiting", status=TemplateStatus.IN_REVIEW)
    response = as_reviewer.get(REVIEW)
    assert response.status_code == 200
    assert review_rows(response) == ["waiting"]
    html_page = page(response)
    # Each button names the version on screen (`seen`): a template submitted again since is refused.
    back = urlencode({"next": "/admin/templates_app/templateawaitingreview/", "seen": review_version(waiting)})
    assert f'formaction="{url("approve", waiting)}?{html.escape(back)}"' in html_page
    assert f'href="{url("reject", waiting)}?{html.escape(back)}"' in html_page
    assert "Hi Ana, your order is ready at the Main Street store." in html_page
    assert as_reviewer.get(reverse("admin:templates_app_templateawaitingreview_add")).status_code == 403
    # The columns a reviewer needs first: the template, its body, the decision.
    headers = re.findall(r'<th scope="col" class="(?:sortable )?column-(\w+)', html_page)
    assert headers[:3] == ["template_link", "body_preview", "review"], headers
    # The template list points to it with the count.
    assert "1 awaiting review" in text_of(as_reviewer.get(CHANGELIST))


def test_the_review_screen_shows_a_long_body_cut_short_and_whole_on_hover(as_reviewer, author, provider):
    body = "Hi {{1}}, your order is ready at {{2}}. " + "We keep it for you for seven days, then it goes back. " * 6
    make_template(provider, author, body=body.strip(), status=TemplateStatus.IN_REVIEW)
    cell = re.search(r'<span class="tpl-body-cell" title="([^"]*)">([^<]*)</span>', page(as_reviewer.get(REVIEW)))
    whole = body.strip().replace("{{1}}", "Ana").replace("{{2}}", "the Main Street store")
    assert html.unescape(cell.group(1)) == whole
    assert html.unescape(cell.group(2)).endswith("…") and len(html.unescape(cell.group(2))) == 220


def test_approve_from_a_row_returns_to_the_review_screen(as_reviewer, author, provider):
    template = make_template(provider, author, status=TemplateStatus.IN_REVIEW)
    response = as_reviewer.post(f"{url('approve', template)}?next={REVIEW}", follow=True)
    assert response.redirect_chain[-1][0] == REVIEW
    template.refresh_from_db()
    assert template.status == TemplateStatus.INTERNALLY_APPROVED
    assert review_rows(response) == []
    # An outside address in `next` is ignored.
    other = make_template(provider, author, name="other", status=TemplateStatus.IN_REVIEW)
    response = as_reviewer.post(f"{url('approve', other)}?next=https://evil.example.test/")
    assert response["Location"] == url("change", other)


def test_reject_from_a_row_asks_for_the_reason_then_returns(as_reviewer, author, provider):
    template = make_template(provider, author, status=TemplateStatus.IN_REVIEW)
    form_page = as_reviewer.get(url("reject", template), {"next": REVIEW})
    assert f'name="next" value="{REVIEW}"' in page(form_page)
    response = as_reviewer.post(url("reject", template), {"reason": "Too vague.", "next": REVIEW})
    assert response["Location"] == REVIEW
    template.refresh_from_db()
    assert (template.status, template.review_note) == (TemplateStatus.INTERNALLY_REJECTED, "Too vague.")


def test_bulk_approve_reports_own_templates_and_approves_the_others(reviewer, author, provider):
    theirs = make_template(provider, author, name="theirs", status=TemplateStatus.IN_REVIEW)
    own = make_template(provider, reviewer, name="own", status=TemplateStatus.IN_REVIEW)
    client = client_for(reviewer)
    assert 'class="tpl-own"' in page(client.get(REVIEW))
    response = client.post(REVIEW, {"action": "approve_selected", "_selected_action": [theirs.pk, own.pk]},
                           follow=True)
    said = shown_messages(response)
    assert "1 template(s) approved internally and on their way to their providers." in said
    assert any(m.startswith("own [en_US] v1: not approved: a reviewer cannot approve their own template")
               for m in said)
    theirs.refresh_from_db()
    own.refresh_from_db()
    assert (theirs.status, own.status) == (TemplateStatus.INTERNALLY_APPROVED, TemplateStatus.IN_REVIEW)
    assert audit_actions(theirs)[-1] == ("template.approved_internally", "reviewer")


def test_bulk_reject_asks_one_reason_for_all(as_reviewer, author, provider):
    first = make_template(provider, author, name="first", status=TemplateStatus.IN_REVIEW)
    second = make_template(provider, author, name="second", status=TemplateStatus.IN_REVIEW)
    selected = {"action": "reject_selected", "_selected_action": [first.pk, second.pk]}
    intermediate = as_reviewer.post(REVIEW, selected)
    assert intermediate.status_code == 200 and "Reject 2 templates" in page(intermediate)
    missing = as_reviewer.post(REVIEW, {**selected, "apply": "1", "reason": ""})
    assert "Give the author a reason" in page(missing)
    response = as_reviewer.post(REVIEW, {**selected, "apply": "1", "reason": "Use the new wording."}, follow=True)
    assert "2 template(s) rejected internally; their authors see your reason." in shown_messages(response)
    assert set(MessageTemplate.objects.values_list("status", "review_note")) == {
        (TemplateStatus.INTERNALLY_REJECTED, "Use the new wording.")}


def test_an_operator_sees_the_review_screen_without_review_actions(operator, author, provider):
    make_template(provider, author, status=TemplateStatus.IN_REVIEW)
    response = client_for(operator).get(REVIEW)
    assert response.status_code == 200
    assert review_rows(response) == ["order_ready"]
    assert "formaction" not in page(response)
    assert "approve_selected" not in page(response)
    index = client_for(operator).get(reverse("admin:index"))
    assert "Templates awaiting review" in page(index)


# --- sync ----------------------------------------------------------------------------------------------

def test_sync_button_reports_each_provider(as_author, provider, fake):
    fake.routes["/api/v1/accounts/3/inboxes/7"] = [Reply(200, fixture_bytes("chatwoot", "template_inbox.json"),
                                                         {"Content-Type": "application/json"})]
    fake.routes["/api/v1/accounts/4/inboxes/8"] = [Reply(401, b'{"error": "Invalid token"}',
                                                         {"Content-Type": "application/json"})]
    provider_create(kind="chatwoot", name="Support inbox", options={
        "base_url": fake.url + "/", "account_id": "3", "inbox_id": "7", "api_token": "tok"})
    provider_create(kind="chatwoot", name="Broken inbox", options={
        "base_url": fake.url + "/", "account_id": "4", "inbox_id": "8", "api_token": "bad"})

    assert "Sync templates now" in page(as_author.get(CHANGELIST))
    assert as_author.get(SYNC).status_code == 405
    response = as_author.post(SYNC, follow=True)
    said = [(str(m), m.level_tag) for m in response.context["messages"]]

    def said_about(name: str) -> tuple[str, str]:
        (found,) = [(text, level) for text, level in said if text.startswith(name)]
        return found

    assert "0 imported, 0 updated, 0 unchanged" in said_about("Sandbox test")[0]
    assert "2 imported" in said_about("Support inbox")[0] and said_about("Support inbox")[1] == "success"
    assert "failed (Chatwoot refused" in said_about("Broken inbox")[0] and said_about("Broken inbox")[1] == "warning"

    imported = MessageTemplate.objects.get(name="appointment_reminder")
    assert imported.managed_elsewhere
    imported_page = as_author.get(url("change", imported))
    assert "Managed in Support inbox's own tool" in text_of(imported_page)
    assert 'name="body_text"' not in page(imported_page)
    assert imported_page.context["workflow_buttons"] == []


def test_sync_needs_the_change_permission(operator):
    assert client_for(operator).post(SYNC).status_code == 403
    assert "Sync templates now" not in page(client_for(operator).get(CHANGELIST))


# --- usage, history, audit -----------------------------------------------------------------------------

def sent_messages(provider, template, statuses: list[str]) -> None:
    contact = Contact.objects.create(profile_name="Ana")
    conversation = Conversation.objects.create(provider=provider, contact=contact)
    for status in statuses:
        Message.objects.create(provider=provider, conversation=conversation, direction="outbound",
                               message_type="template", status=status, template=template)
    Message.objects.create(provider=provider, conversation=conversation, direction="inbound", status="received",
                           text="thanks")


def test_usage_rates_come_from_the_templates_messages(as_author, author, reviewer, provider):
    template = make_template(provider, author, status=TemplateStatus.APPROVED, reviewer=reviewer)
    unused = make_template(provider, author, name="unused")
    sent_messages(provider, template, ["delivered", "read", "failed", "sent"])

    listing = page(as_author.get(CHANGELIST))
    row = re.search(rf'<tr[^>]*>(?:(?!</tr>).)*?/{template.pk}/change/(?:(?!</tr>).)*</tr>', listing, re.S).group(0)
    usage = re.search(r'<td class="field-usage">(.*?)</td>', row).group(1)
    assert " ".join(html.unescape(re.sub(r"<[^>]+>", " ", usage)).split()) == (
        "4 sent 50.0% delivered 25.0% read 25.0% failed")
    unused_row = re.search(rf'<tr[^>]*>(?:(?!</tr>).)*?/{unused.pk}/change/(?:(?!</tr>).)*</tr>', listing, re.S)
    assert "Not sent yet" in unused_row.group(0)

    usage = as_author.get(url("change", template)).context["usage"]
    assert usage == {"sends": 4, "delivered": 2, "read": 1, "failed": 1, "delivered_rate": "50.0%",
                     "read_rate": "25.0%", "failed_rate": "25.0%"}
    assert as_author.get(url("change", unused)).context["usage"]["read_rate"] == "—"


def test_history_diff_and_audit_trail(as_author, author, reviewer, provider):
    v1 = make_template(provider, author, status=TemplateStatus.APPROVED, reviewer=reviewer)
    as_author.post(url("change", v1), form_data(provider, body_text="Hi {{1}}, pick it up at {{2}}."))
    v2 = MessageTemplate.objects.get(version=2)

    response = as_author.get(url("change", v2))
    assert [version.version for version in response.context["versions"]] == [2, 1]
    assert f'href="{url("change", v1)}">v1</a>' in page(response)
    sections = response.context["diff_sections"]
    assert [section["section"] for section in sections] == ["body"]  # only what changed
    assert sections[0]["lines"] == [("tpl-diff-del", "-", "Hi {{1}}, your order is ready at {{2}}."),
                                    ("tpl-diff-add", "+", "Hi {{1}}, pick it up at {{2}}.")]
    assert '<span class="tpl-diff-add">+ Hi {{1}}, pick it up at {{2}}.</span>' in page(response)
    assert "Changes from v1 to v2" in page(response)

    # From v1's page, ?diff=2 compares it with its successor.
    from_v1 = as_author.get(url("change", v1), {"diff": "2"})
    assert "Changes from v1 to v2" in page(from_v1) and from_v1.context["diff_sections"] == sections
    assert as_author.get(url("change", v1)).context["diff_with"] is None  # v1 has no previous version

    trail = [(entry.action, entry.actor_label) for entry in as_author.get(url("change", v1)).context["audit_entries"]]
    steps = [("template.approved_internally", "reviewer"), ("template.submitted_for_review", "author"),
             ("template.created", "author")]
    assert [step for step in trail if step in steps] == steps  # newest first
    assert "approved internally" in text_of(as_author.get(url("change", v1)))


def test_workflow_facts_show_the_providers_reason(as_author, author, reviewer, provider):
    template = make_template(provider, author, status=TemplateStatus.APPROVED, reviewer=reviewer)
    MessageTemplate.objects.filter(pk=template.pk).update(
        status=TemplateStatus.REJECTED, rejection_reason="INVALID_FORMAT",
        provider_recommendation="Remove the parameter from the start of the body.")
    facts = dict(as_author.get(url("change", template)).context["workflow_facts"])
    assert facts["Status"] == "Rejected" and facts["Provider's reason"] == "INVALID_FORMAT"
    assert facts["Provider's recommendation"] == "Remove the parameter from the start of the body."
    assert facts["Author"] == "author" and facts["Reviewed"].startswith("reviewer ")


# --- queries per page ----------------------------------------------------------------------------------

def queries_for(client, path: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200
    return len(captured)


def test_the_list_and_the_review_screen_take_the_same_queries_for_5_or_50_templates(as_reviewer, author, provider):
    counts = {}
    for total in (5, 50):
        templates = [make_template(provider, author, name=f"t{n}", status=TemplateStatus.IN_REVIEW)
                     for n in range(MessageTemplate.objects.count(), total)]
        sent_messages(provider, templates[0], ["delivered", "read"])
        counts[total] = (queries_for(as_reviewer, CHANGELIST), queries_for(as_reviewer, REVIEW))
        assert len(review_rows(as_reviewer.get(REVIEW))) == total
    assert counts[5] == counts[50], counts
