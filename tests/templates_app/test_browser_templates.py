"""
A real browser (Debian's chromium, headless) on the template pages: a reviewer approves a colleague's
template from "Templates awaiting review" and a real Celery worker submits it to the sandbox provider,
which approves at once; and the authoring page's preview follows what the author types.
"""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from templates_app.models import MessageTemplate
from templates_app.services.workflow import template_create, template_submit_for_review
from tests.conftest import admin_log_in, wait_until
from whatsapp.providers.events import TemplateStatus
from whatsapp.services.providers import provider_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-123456-strong"


def staff(username: str):
    """A member of the "Template reviewer" role. (A transactional test empties the tables the migrations
    filled, the default groups included; the permissions come back with post_migrate.)"""
    user = get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True)
    codenames = ["view_messagetemplate", "add_messagetemplate", "change_messagetemplate", "review_messagetemplate"]
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="templates_app",
                                                         codename__in=codenames))
    return user


def test_a_reviewer_approves_a_colleagues_template_from_the_review_screen(browser, live_server, celery_worker,
                                                                            tmp_path):
    author, _ = staff("author"), staff("reviewer")
    provider = provider_create(kind="sandbox", name="Browser sandbox", options={})
    template = template_create(
        provider=provider, actor=author, name="order_ready", language="en_US", category="utility",
        parameter_format="positional",
        components=[{"type": "BODY", "text": "Hi {{1}}, your order is ready."},
                    {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Thanks"}]}],
        examples={"body": {"1": "Ana"}})
    template_submit_for_review(template, actor=author)

    wait = WebDriverWait(browser, 10)
    admin_log_in(browser, live_server, "reviewer", PASSWORD)
    browser.get(f"{live_server.url}/admin/templates_app/templateawaitingreview/")
    queue = wait.until(expected_conditions.presence_of_element_located((By.ID, "result_list")))
    assert "order_ready" in queue.text and "Hi Ana, your order is ready." in queue.text
    browser.save_screenshot(str(tmp_path / "review-queue.png"))

    queue.find_element(By.CSS_SELECTOR, "button.tpl-approve").click()
    message = wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".messagelist")))
    # (The admin's style capitalises a message's first letter.)
    assert "order_ready [en_us] v1 is approved internally and on its way to browser sandbox." in message.text.lower()
    assert browser.current_url.endswith("/admin/templates_app/templateawaitingreview/")
    assert not browser.find_elements(By.ID, "result_list")  # the queue is empty now

    # The worker submits it; the sandbox provider approves at once.
    wait_until(lambda: MessageTemplate.objects.get(pk=template.pk).status == TemplateStatus.APPROVED, 30,
               message="the sandbox provider's approval")
    template.refresh_from_db()
    assert (template.reviewed_by.username, template.provider_template_id.startswith("sandbox-tpl-")) == (
        "reviewer", True)

    browser.get(f"{live_server.url}/admin/templates_app/messagetemplate/{template.pk}/change/")
    facts = wait.until(expected_conditions.presence_of_element_located((By.ID, "template-workflow")))
    assert "Approved" in facts.text and "reviewer" in facts.text
    browser.save_screenshot(str(tmp_path / "approved.png"))


def test_the_preview_follows_what_the_author_types(browser, live_server, tmp_path):
    staff("author")
    provider_create(kind="sandbox", name="Browser sandbox", options={})
    wait = WebDriverWait(browser, 10)
    admin_log_in(browser, live_server, "author", PASSWORD)
    browser.get(f"{live_server.url}/admin/templates_app/messagetemplate/add/")
    preview = wait.until(expected_conditions.presence_of_element_located((By.ID, "tpl-preview")))
    body = preview.find_element(By.CSS_SELECTOR, ".tpl-body")

    browser.find_element(By.ID, "id_body_text").send_keys("Hi {{1}}, your order {{2}} is ready.")
    wait.until(lambda _: body.text == "Hi {{1}}, your order {{2}} is ready.")
    browser.find_element(By.ID, "id_examples").send_keys('{"body": ["Ana", "#1042"], "header": {"1": "today"}}')
    wait.until(lambda _: body.text == "Hi Ana, your order #1042 is ready.")

    Select(browser.find_element(By.ID, "id_header_format")).select_by_value("TEXT")
    browser.find_element(By.ID, "id_header_text").send_keys("Ready {{1}}")
    header = preview.find_element(By.CSS_SELECTOR, ".tpl-header")
    wait.until(lambda _: header.is_displayed() and header.text == "Ready today")
    browser.find_element(By.ID, "id_footer_text").send_keys("Reply STOP to opt out")
    browser.find_element(By.ID, "id_buttons").send_keys('[{"type": "QUICK_REPLY", "text": "Thanks"}]')
    wait.until(lambda _: [b.text for b in preview.find_elements(By.CSS_SELECTOR, ".tpl-button")] == ["Thanks"])
    assert preview.find_element(By.CSS_SELECTOR, ".tpl-footer").text == "Reply STOP to opt out"
    browser.save_screenshot(str(tmp_path / "preview.png"))

    # Half-typed JSON does not break the preview: it says so and keeps the last good values out.
    browser.find_element(By.ID, "id_buttons").send_keys(",")
    problem = preview.find_element(By.CSS_SELECTOR, ".tpl-preview-problem")
    wait.until(lambda _: "buttons: not valid JSON yet" in problem.text)
    assert body.text == "Hi Ana, your order #1042 is ready."
