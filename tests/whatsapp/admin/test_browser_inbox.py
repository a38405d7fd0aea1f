"""
An operator works the inbox in a real browser (headless chromium) against the live server and a real Celery
worker that sends through the sandbox, whose simulated phone reports the receipts back over HTTP:
filters *needs reply*, opens the conversation, sees a new customer message appear without reloading, picks
a saved reply, sends it and watches its ticks advance; assigns the conversation to themself and finds it
under *mine*; sends a template by filling its value fields, with the live preview. Screenshots of each
screen, wide and narrow, go to /tmp/shots/inbox/.
"""

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from core.models import AuditLog
from templates_app.models import MessageTemplate
from tests.conftest import admin_log_in, wait_until
from whatsapp.models import Conversation, Label, Message, SavedReply
from whatsapp.services.providers import provider_create, provider_simulate_inbound

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots/inbox")
# Nothing scrolls sideways: neither the page nor the list's table.
FITS = ("var results = document.querySelector('#changelist .results');"
        "return document.documentElement.scrollWidth <= window.innerWidth + 1"
        " && (!results || results.scrollWidth <= results.clientWidth + 1);")
PASSWORD = "pw-123456-strong"
OPERATOR_PERMS = ["view_conversation", "change_conversation", "view_message", "view_media", "view_label",
                  "view_savedreply", "add_savedreply", "view_session", "view_provider"]


def shoot(browser, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{name}.png"))


def operator():
    user = get_user_model().objects.create_user("olivia", "olivia@example.com", PASSWORD, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="whatsapp",
                                                         codename__in=OPERATOR_PERMS))
    return user


def customer_writes(provider, phone: str, name: str, text: str) -> Message:
    """The customer writes from the sandbox phone; the worker stores it."""
    provider_message_id = provider_simulate_inbound(provider=provider, from_phone=phone, name=name, text=text)
    return wait_until(lambda: Message.objects.filter(provider_message_id=provider_message_id).first(), 30,
                      message=f"{text!r} to be stored")


def list_rows(browser) -> str:
    return browser.find_element(By.ID, "result_list").text


def test_an_operator_answers_from_the_inbox(celery_worker, live_server, browser, settings):
    settings.INBOX_POLL_SECONDS = 0.5
    user = operator()
    provider = provider_create(kind="sandbox", name="Demo shop", options={})
    template = MessageTemplate.objects.create(
        provider=provider, name="order_ready", language="en_US", status="approved",
        components=[{"type": "BODY", "text": "Hi {{1}}, your order {{2}} is ready for pickup."}],
        examples={"body": ["Ana", "#1042"]})
    SavedReply.objects.create(title="Shipping times", text="Orders ship within two working days.")
    Label.objects.create(name="billing", colour="#b91c1c")
    waiting = customer_writes(provider, "+15551230061", "Marta Lima", "Where is my parcel?").conversation
    answered = customer_writes(provider, "+15551230062", "Bruno Dias", "Thanks!").conversation
    Conversation.objects.filter(pk=answered.pk).update(awaiting_reply_since=None)
    # The page replaces parts of itself as the phone reports (ticks, state): an element read mid-swap is
    # looked up again.
    wait = WebDriverWait(browser, 30, ignored_exceptions=[StaleElementReferenceException])
    admin_log_in(browser, live_server, "olivia", PASSWORD)

    # The inbox, filtered to what needs a reply.
    browser.get(f"{live_server.url}/admin/whatsapp/conversation/")
    rows = list_rows(browser)
    assert "Marta Lima" in rows and "Bruno Dias" in rows and "Where is my parcel?" in rows
    assert browser.execute_script(FITS)  # at 1280 px, with the admin's navigation open
    shoot(browser, "list")
    browser.find_element(By.LINK_TEXT, "Needs reply").click()
    wait.until(lambda _: "waiting=reply" in browser.current_url)
    rows = list_rows(browser)
    assert "Marta Lima" in rows and "Needs reply" in rows and "Bruno Dias" not in rows
    shoot(browser, "list_needs_reply")

    # The conversation; a new message from the customer appears without a reload.
    browser.find_element(By.PARTIAL_LINK_TEXT, "Marta Lima").click()
    transcript = wait.until(expected_conditions.presence_of_element_located((By.ID, "wa-transcript")))
    assert "Where is my parcel?" in transcript.text
    browser.execute_script("window.samePage = true;")  # gone if the page were loaded again
    customer_writes(provider, "+15551230061", "Marta Lima", "It was due on Monday.")
    wait.until(lambda _: "It was due on Monday." in browser.find_element(By.ID, "wa-transcript").text)
    assert browser.execute_script("return window.samePage === true;")
    assert "Needs reply" in browser.find_element(By.ID, "wa-state").text

    # A saved reply goes into the box; sent with the keyboard; its ticks advance as the phone reports them.
    Select(browser.find_element(By.NAME, "saved_reply")).select_by_visible_text("Shipping times")
    box = browser.find_element(By.NAME, "text")
    assert box.get_attribute("value") == "Orders ship within two working days."
    box.send_keys(" Yours is on its way.")
    shoot(browser, "page_saved_reply")
    box.send_keys(Keys.CONTROL, Keys.ENTER)
    wait.until(lambda _: "queued" in browser.find_element(By.CSS_SELECTOR, ".messagelist").text)
    sent = Message.objects.get(conversation=waiting, direction="outbound")
    assert sent.text == "Orders ship within two working days. Yours is on its way."
    browser.execute_script("window.samePage = true;")
    wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, f"#message-{sent.pk} .wa-status-read"))
    assert browser.execute_script("return window.samePage === true;")  # the ticks came without a reload
    wait.until(lambda _: "Needs reply" not in browser.find_element(By.ID, "wa-state").text)
    shoot(browser, "page_read")

    # Assigned to themself, found under "mine"; a label on it.
    browser.find_element(By.ID, "wa-assign-me").click()
    wait.until(lambda _: "Assigned to olivia" in browser.find_element(By.CSS_SELECTOR, ".messagelist").text)
    browser.find_element(By.CSS_SELECTOR, '#wa-labels-form input[name="labels"]').click()
    browser.find_element(By.CSS_SELECTOR, "#wa-labels-form button").click()
    wait.until(lambda _: "Labels: billing" in browser.find_element(By.CSS_SELECTOR, ".messagelist").text)
    assert set(AuditLog.objects.filter(actor=user, object_id=str(waiting.pk)).values_list("action", flat=True)) == {
        "conversation.assign", "conversation.labels"}
    browser.get(f"{live_server.url}/admin/whatsapp/conversation/?assigned=mine")
    rows = list_rows(browser)
    assert "Marta Lima" in rows and "olivia" in rows and "billing" in rows and "Bruno Dias" not in rows
    shoot(browser, "list_mine")

    # A template, its values typed into their own fields, the preview filling in as they are typed.
    browser.find_element(By.PARTIAL_LINK_TEXT, "Marta Lima").click()
    Select(wait.until(expected_conditions.presence_of_element_located((By.NAME, "template")))
           ).select_by_value(str(template.pk))
    first = wait.until(expected_conditions.presence_of_element_located((By.NAME, "body__1")))
    first.send_keys("Marta")
    browser.find_element(By.NAME, "body__2").send_keys("#2087")
    preview = browser.find_element(By.ID, "wa-template-preview")
    assert preview.text == "Hi Marta, your order #2087 is ready for pickup."
    shoot(browser, "page_template")
    browser.find_element(By.ID, "wa-send-button").click()
    wait.until(lambda _: "queued" in browser.find_element(By.CSS_SELECTOR, ".messagelist").text)
    sent_template = Message.objects.get(conversation=waiting, template=template)
    assert sent_template.text == "Hi Marta, your order #2087 is ready for pickup."
    wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, f"#message-{sent_template.pk} .wa-status-read"))

    # A phone-sized window: one column, nothing wider than the screen.
    browser.set_window_size(400, 860)
    wait.until(lambda _: browser.execute_script(FITS))
    shoot(browser, "page_narrow")
    browser.get(f"{live_server.url}/admin/whatsapp/conversation/")
    assert browser.execute_script(FITS)
    shoot(browser, "list_narrow")
    browser.set_window_size(1400, 900)
    browser.get(f"{live_server.url}/admin/whatsapp/conversation/")
    assert browser.execute_script(FITS)
    shoot(browser, "list_1400")
