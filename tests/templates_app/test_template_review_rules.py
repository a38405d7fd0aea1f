"""
The rules that keep the review honest and the workflow from getting stuck, against a local server that
plays Meta's Graph API: nobody approves content they wrote or edited, a reviewer approves what they
saw, a provider's outright refusal goes back to draft, what a provider cannot take is said before the
review, a timed-out submission the provider did create is adopted, and a slow sync does not overwrite a
newer webhook status.
"""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from templates_app.models import MessageTemplate
from templates_app.services.provider_submission import template_provider_status_set, template_submit
from templates_app.services.sync import templates_sync
from templates_app.services.workflow import (
    TemplateWorkflowError,
    review_version,
    template_approve,
    template_create,
    template_edit,
    template_reject,
    template_submit_for_review,
    template_withdraw,
)
from templates_app.validation import TemplateInvalid
from tests.fakes import Reply
from tests.signing import META_WABA_ID
from whatsapp.providers.events import TemplateStatus

GRAPH_VERSION = "v25.0"
TEMPLATES_PATH = f"/{GRAPH_VERSION}/{META_WABA_ID}/message_templates"
BODY = [{"type": "BODY", "text": "Hi {{1}}, your table is ready."}]
EXAMPLES = {"body": {"1": "Ana"}}


@pytest.fixture
def people(db):
    users = get_user_model().objects
    review = Permission.objects.get(codename="review_messagetemplate")
    author = users.create_user("author", password="pw-author-123456")
    first, second = (users.create_user(name, password=f"pw-{name}-123456") for name in ("rita", "raul"))
    for reviewer in (first, second):
        reviewer.user_permissions.add(review)
    return author, users.get(pk=first.pk), users.get(pk=second.pk)


def draft(provider, author, name="table_ready") -> MessageTemplate:
    return template_create(provider=provider, actor=author, name=name, language="en_US", category="utility",
                           parameter_format="positional", components=BODY, examples=EXAMPLES)


def refused(call) -> TemplateWorkflowError:
    with pytest.raises(TemplateWorkflowError) as caught:
        call()
    return caught.value


def test_a_reviewer_who_edited_the_template_cannot_approve_it(meta, people):
    author, rita, raul = people
    template = draft(meta, author)
    template_edit(template, actor=rita, changes={"components": [{"type": "BODY", "text": "Hi {{1}}, come in."}]})
    template_submit_for_review(template, actor=author)
    error = refused(lambda: template_approve(template, reviewer=rita))
    assert error.code == "own_template" and "wrote, edited or submitted" in str(error)
    assert template_approve(template, reviewer=raul).status == TemplateStatus.INTERNALLY_APPROVED


def test_a_template_changed_and_submitted_again_since_the_reviewer_looked_is_refused(meta, people):
    author, rita, _ = people
    template = template_submit_for_review(draft(meta, author), actor=author)
    seen = review_version(template)
    template_withdraw(template, actor=author)
    template_edit(template, actor=author, changes={"components": [{"type": "BODY", "text": "Hi {{1}}, hurry."}]})
    template_submit_for_review(template, actor=author)
    for step in (lambda: template_approve(template, reviewer=rita, seen=seen),
                 lambda: template_reject(template, reviewer=rita, reason="tone", seen=seen)):
        assert refused(step).code == "changed_since_seen"
    template.refresh_from_db()
    assert template.status == TemplateStatus.IN_REVIEW
    fresh = review_version(template)
    assert template_approve(template, reviewer=rita, seen=fresh).status == TemplateStatus.INTERNALLY_APPROVED


def test_a_template_the_provider_refused_outright_goes_back_to_draft(meta, fake, people):
    author, rita, _ = people
    fake.routes[TEMPLATES_PATH] = [Reply.json({"error": {
        "message": "Invalid parameter", "type": "OAuthException", "code": 100, "error_subcode": 2388023,
        "error_user_msg": "The body has too many variables for its length.", "fbtrace_id": "AbCdEf"}}, 400)]
    template = template_approve(template_submit_for_review(draft(meta, author), actor=author), reviewer=rita)
    assert template_submit(template.pk).startswith("failed")
    template.refresh_from_db()
    assert template.status == TemplateStatus.INTERNALLY_APPROVED and template.next_submission_at is None
    assert "too many variables" in template.submission_error
    fixed = template_edit(template, actor=author, changes={"components": [
        {"type": "BODY", "text": "Hi {{1}}, your table by the window is ready for you now."}]})
    assert (fixed.pk, fixed.status, fixed.submission_error) == (template.pk, TemplateStatus.DRAFT, "")
    # A failure that is still being retried is not "refused outright": it stays locked.
    other = template_approve(template_submit_for_review(draft(meta, author, "other"), actor=author), reviewer=rita)
    MessageTemplate.objects.filter(pk=other.pk).update(submission_error="timeout", submission_attempts=1,
                                                       next_submission_at=timezone.now())
    assert refused(lambda: template_withdraw(other, actor=author)).code == "wrong_status"


def test_what_the_provider_cannot_take_is_said_on_the_form_before_the_review(meta, people):
    author, _, _ = people
    with pytest.raises(TemplateInvalid) as caught:
        template_create(provider=meta, actor=author, name="spring_sale", language="en_US", category="marketing",
                        parameter_format="positional",
                        components=[{"type": "HEADER", "format": "IMAGE"}, {"type": "BODY", "text": "Spring is here"}],
                        examples={"header": {"url": "https://files.example.test/spring.jpg"}})
    assert "Resumable Upload" in " ".join(caught.value.errors["header"])
    assert not MessageTemplate.objects.exists()


def test_names_kept_for_versions_and_renaming_a_later_version_are_refused(meta, people):
    author, _, _ = people
    with pytest.raises(TemplateInvalid) as caught:
        draft(meta, author, name="promo_v2")
    assert "kept for later versions" in caught.value.errors["name"][0]
    v1 = draft(meta, author)
    MessageTemplate.objects.filter(pk=v1.pk).update(status=TemplateStatus.APPROVED)
    v2 = template_edit(v1, actor=author, changes={"components": [{"type": "BODY", "text": "Hi {{1}}, welcome."}]})
    with pytest.raises(TemplateInvalid) as caught:
        template_edit(v2, actor=author, changes={"name": "another_name"})
    assert "keeps its template's name" in caught.value.errors["name"][0]


def test_a_timed_out_submission_that_meta_did_create_is_adopted_by_the_sync(meta, fake, people):
    author, rita, _ = people
    fake.routes[TEMPLATES_PATH] = [Reply(status=504, body=b"gateway timeout")]
    template = template_approve(template_submit_for_review(draft(meta, author), actor=author), reviewer=rita)
    assert template_submit(template.pk).startswith("failed")
    template.refresh_from_db()
    assert template.status == TemplateStatus.INTERNALLY_APPROVED and template.next_submission_at is not None
    # Meta created it after all: the listing shows it under the name the submission used.
    fake.routes[TEMPLATES_PATH] = [Reply.json({"data": [{
        "name": "table_ready", "language": "en_US", "status": "PENDING", "category": "UTILITY", "id": "5550001",
        "parameter_format": "POSITIONAL",
        "components": [{"type": "BODY", "text": BODY[0]["text"], "example": {"body_text": [["Ana"]]}}]}],
        "paging": {"cursors": {"before": "x", "after": "y"}}})]
    report = templates_sync(meta)
    template.refresh_from_db()
    assert report.conflicts == [] and report.updated == [str(template)]
    assert (template.status, template.provider_template_id) == (TemplateStatus.PENDING, "5550001")
    assert (template.next_submission_at, template.submission_error) == (None, "")
    assert template_submit(template.pk) == "not due"


def test_a_sync_listing_read_before_a_webhook_does_not_overwrite_it(meta, people):
    author, rita, _ = people
    template = template_approve(template_submit_for_review(draft(meta, author), actor=author), reviewer=rita)
    MessageTemplate.objects.filter(pk=template.pk).update(status=TemplateStatus.PENDING, provider_template_id="77")
    listed_at = timezone.now() - timedelta(seconds=30)
    assert template_provider_status_set(template, TemplateStatus.APPROVED, actor_label="meta webhook")
    assert not template_provider_status_set(template, TemplateStatus.PENDING, actor_label="meta sync",
                                            unless_changed_since=listed_at)
    template.refresh_from_db()
    assert template.status == TemplateStatus.APPROVED
    # A listing read after the change applies.
    assert template_provider_status_set(template, TemplateStatus.PAUSED, actor_label="meta sync",
                                        unless_changed_since=timezone.now())
