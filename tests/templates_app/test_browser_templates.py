"""
A real browser (Debian's chromium, headless) on the template pages: a reviewer approves a colleague's
template from "Templates awaiting review" and a real Celery worker submits it to the sandbox provider,
which approves at once; the authoring page's preview follows what the author types; an author adds,
fills in and removes buttons through the form; and the lists fit the window (screenshots in /tmp/shots).
"""

from pathlib import Path

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
SHOTS = Path("/tmp/shots")


def no_sideways_scroll(browser) -> None:
    """Neither the page nor the list's table scrolls sideways (the admin puts a wide table in a scroll box)."""
    widths = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth];")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in a {widths[1]} px window"
    for box in browser.find_elements(By.CSS_SELECTOR, "#changelist .results"):
        inner = browser.execute_script("return [arguments[0].scrollWidth, arguments[0].clientWidth];", box)
        assert inner[0] <= inner[1], f"the table is {inner[0]} px wide in a {inner[1]} px box"


def narrow(browser) -> None:
    """A 420 px wide phone-sized window (headless chromium will not make its window narrower than 500 px)."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 420, "height": 900, "deviceScaleFactor": 1, "mobile": False})


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
    # An example box appears beside each parameter as it is typed.
    browser.find_element(By.NAME, "body_examples-1").send_keys("Ana")
    browser.find_element(By.NAME, "body_examples-2").send_keys("#1042")
    wait.until(lambda _: body.text == "Hi Ana, your order #1042 is ready.")

    header_example = browser.find_element(By.ID, "id_header_example")
    assert not header_example.is_displayed()  # no header, nothing to give an example for
    Select(browser.find_element(By.ID, "id_header_format")).select_by_value("TEXT")
    browser.find_element(By.ID, "id_header_text").send_keys("Ready {{1}}")
    wait.until(lambda _: header_example.is_displayed())
    header_example.send_keys("today")
    header = preview.find_element(By.CSS_SELECTOR, ".tpl-header")
    wait.until(lambda _: header.is_displayed() and header.text == "Ready today")
    browser.find_element(By.ID, "id_footer_text").send_keys("Reply STOP to opt out")
    assert preview.find_element(By.CSS_SELECTOR, ".tpl-footer").text == "Reply STOP to opt out"


def test_an_author_adds_buttons_through_the_form(browser, live_server):
    staff("author")
    provider_create(kind="sandbox", name="Browser sandbox", options={})
    wait = WebDriverWait(browser, 10)
    SHOTS.mkdir(parents=True, exist_ok=True)
    admin_log_in(browser, live_server, "author", PASSWORD)
    browser.set_window_size(1400, 900)
    browser.get(f"{live_server.url}/admin/templates_app/messagetemplate/add/")
    preview = wait.until(expected_conditions.presence_of_element_located((By.ID, "tpl-preview")))
    Select(browser.find_element(By.ID, "id_provider")).select_by_index(1)
    browser.find_element(By.ID, "id_name").send_keys("order_ready")
    browser.find_element(By.ID, "id_language").send_keys("en_US")
    browser.find_element(By.ID, "id_body_text").send_keys("Hi {{1}}, your order is ready.")
    browser.find_element(By.NAME, "body_examples-1").send_keys("Ana")

    # With JavaScript the empty rows wait behind "Add a button".
    rows = browser.find_elements(By.CSS_SELECTOR, ".tpl-button-row")
    assert [row.is_displayed() for row in rows] == [False, False, False]
    add = browser.find_element(By.CSS_SELECTOR, ".tpl-add-button")
    add.click()
    first = rows[0]
    assert Select(first.find_element(By.CSS_SELECTOR, "select")).first_selected_option.text == "Quick reply"
    assert not first.find_element(By.CSS_SELECTOR, ".tpl-cell-url").is_displayed()
    first.find_element(By.CSS_SELECTOR, "[name$='-text']").send_keys("Thanks")

    add.click()
    second = rows[1]
    Select(second.find_element(By.CSS_SELECTOR, "select")).select_by_visible_text("Open a link")
    url = second.find_element(By.CSS_SELECTOR, "[name$='-url']")
    assert url.is_displayed() and not second.find_element(By.CSS_SELECTOR, ".tpl-cell-example").is_displayed()
    second.find_element(By.CSS_SELECTOR, "[name$='-text']").send_keys("Track")
    url.send_keys("https://shop.example.test/t/{{1}}")
    example = second.find_element(By.CSS_SELECTOR, "[name$='-example']")
    wait.until(lambda _: example.is_displayed())  # the link ends in {{1}}: its example is asked for
    example.send_keys("1042")

    # A third one, then taken out again.
    add.click()
    rows[2].find_element(By.CSS_SELECTOR, "[name$='-text']").send_keys("Not this one")
    rows[2].find_element(By.CSS_SELECTOR, ".tpl-remove-button").click()
    assert not rows[2].is_displayed()
    # Past the empty rows the page brought, "Add a button" copies a row.
    add.click()
    assert len(browser.find_elements(By.CSS_SELECTOR, ".tpl-button-row")) == 4
    browser.find_elements(By.CSS_SELECTOR, ".tpl-button-row")[3].find_element(
        By.CSS_SELECTOR, ".tpl-remove-button").click()

    labels = lambda: [b.text.split("\n")[0] for b in preview.find_elements(By.CSS_SELECTOR, ".tpl-button")]  # noqa: E731
    wait.until(lambda _: labels() == ["Thanks", "Track"])
    assert "https://shop.example.test/t/1042" in preview.text
    no_sideways_scroll(browser)
    browser.find_element(By.ID, "id_buttons").location_once_scrolled_into_view  # noqa: B018
    browser.save_screenshot(str(SHOTS / "author-buttons-1400.png"))
    narrow(browser)
    browser.find_element(By.ID, "id_buttons").location_once_scrolled_into_view  # noqa: B018
    no_sideways_scroll(browser)
    browser.save_screenshot(str(SHOTS / "author-buttons-420.png"))
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    browser.find_element(By.NAME, "_continue").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "template-workflow")))
    template = MessageTemplate.objects.get()
    assert template.components == [
        {"type": "BODY", "text": "Hi {{1}}, your order is ready."},
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Thanks"},
                                        {"type": "URL", "text": "Track", "url": "https://shop.example.test/t/{{1}}"}]}]
    assert template.examples == {"body": {"1": "Ana"}, "buttons": {"1": "1042"}}
    # Back on the page: the two buttons in their rows, the empty ones hidden again.
    shown = [row for row in browser.find_elements(By.CSS_SELECTOR, ".tpl-button-row") if row.is_displayed()]
    assert [row.find_element(By.CSS_SELECTOR, "[name$='-text']").get_attribute("value") for row in shown] == [
        "Thanks", "Track"]
    browser.save_screenshot(str(SHOTS / "author-saved-1400.png"))


def test_the_lists_fit_the_window(browser, live_server):
    author, _ = staff("author"), staff("reviewer")
    provider = provider_create(kind="sandbox", name="Browser sandbox", options={})
    long_body = ("Hi {{1}}, your order {{2}} from the Main Street store is ready for pick-up. Bring this message "
                 "and a photo ID; the desk is open from 9 to 18, Monday to Saturday. Questions? Reply here.")
    for number in range(6):
        template = template_create(
            provider=provider, actor=author, name=f"order_ready_with_a_long_descriptive_name_{number}",
            language="en_US", category="utility", parameter_format="positional",
            components=[{"type": "BODY", "text": long_body if number % 2 else "Hi {{1}}, order {{2}} is ready."}],
            examples={"body": {"1": "Ana", "2": "#1042"}})
        if number < 4:
            template_submit_for_review(template, actor=author)
    SHOTS.mkdir(parents=True, exist_ok=True)
    admin_log_in(browser, live_server, "reviewer", PASSWORD)
    for name, path in [("review", "templateawaitingreview"), ("list", "messagetemplate")]:
        browser.set_window_size(1400, 900)
        browser.get(f"{live_server.url}/admin/templates_app/{path}/")
        table = browser.find_element(By.ID, "result_list")
        no_sideways_scroll(browser)
        browser.save_screenshot(str(SHOTS / f"{name}-1400.png"))
        if name == "review":
            headers = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th") if th.text]
            assert headers[:3] == ["TEMPLATE", "BODY (WITH ITS EXAMPLE VALUES)", "REVIEW"], headers
            cell = table.find_elements(By.CSS_SELECTOR, ".tpl-body-cell")[1]
            assert cell.get_attribute("title").endswith("Questions? Reply here.")
        narrow(browser)
        browser.get(browser.current_url)
        browser.save_screenshot(str(SHOTS / f"{name}-420.png"))
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
