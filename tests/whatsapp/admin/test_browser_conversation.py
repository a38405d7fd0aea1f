"""A real browser (Debian's chromium, headless) logs into the admin and opens a conversation page."""

import shutil

import pytest
from django.contrib.auth import get_user_model

from tests.conftest import fixture_bytes
from whatsapp.models import Conversation
from whatsapp.services.providers import provider_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "install Debian's chromium and chromium-driver (.ci/run does)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def _sandbox_message_stored(provider) -> Conversation:
    """The sandbox fixture's inbound message, stored and processed as the webhook view and worker do."""
    from whatsapp import sandbox_phone
    from whatsapp.providers.base import WebhookRequest
    from whatsapp.services.webhooks import webhook_event_process, webhook_event_record

    body = fixture_bytes("sandbox", "inbound_text.json")
    headers = {k.lower(): v for k, v in sandbox_phone.signed_headers(provider, body).items()}
    event, _ = webhook_event_record(kind="sandbox", provider=provider, remote_addr=None, request=WebhookRequest(
        method="POST", public_url="", body=body, headers=headers, content_type="application/json"))
    webhook_event_process(event.pk)
    return Conversation.objects.get()


def _log_in(browser, live_server, username: str, password: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(live_server.url + "/admin/")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.ID, "user-tools")))


def test_admin_login_and_conversation_page(browser, live_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    get_user_model().objects.create_superuser("operator", "op@example.com", "pw-123456-strong")
    conversation = _sandbox_message_stored(provider_create(kind="sandbox", name="Browser sandbox", options={}))
    _log_in(browser, live_server, "operator", "pw-123456-strong")

    browser.get(f"{live_server.url}/admin/whatsapp/conversation/{conversation.pk}/change/")
    transcript = WebDriverWait(browser, 10).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".wa-transcript")))
    assert "Is my order #1042 on its way?" in transcript.text
    assert browser.find_elements(By.CSS_SELECTOR, ".wa-bubble.wa-inbound")
    browser.save_screenshot(str(tmp_path / "conversation.png"))


def test_unmapped_contact_is_mapped_from_the_queue_and_leaves_it(browser, live_server, tmp_path):
    """Two users share the phone a new contact writes from (a family phone): the auto rule leaves the
    ambiguous contact in the queue with both as suggestions; a person picks one on the map page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    from contacts.models import ContactUserMapping
    from contacts.services.mapping import user_phone_set

    users = get_user_model().objects
    users.create_superuser("mapper", "mapper@example.com", "pw-123456-strong")
    ana = users.create_user("asouza", "ana@example.com", first_name="Ana", last_name="Souza")
    bruno = users.create_user("bsouza", "bruno@example.com", first_name="Bruno", last_name="Souza")
    for user in (ana, bruno):
        user_phone_set(user, "+15551230001")  # the number the fixture's message comes from
    contact = _sandbox_message_stored(provider_create(kind="sandbox", name="Browser sandbox", options={})).contact
    assert not ContactUserMapping.objects.filter(contact=contact).exists()

    wait = WebDriverWait(browser, 10)
    _log_in(browser, live_server, "mapper", "pw-123456-strong")

    browser.get(f"{live_server.url}/admin/contacts/unmappedcontact/")
    queue = wait.until(expected_conditions.presence_of_element_located((By.ID, "result_list")))
    assert "Ana Souza" in queue.text and "Is my order #1042 on its way?" in queue.text
    suggestions = [link.text for link in queue.find_elements(By.CSS_SELECTOR, "a.wa-suggestion")]
    assert suggestions == ["Ana Souza <asouza>", "Bruno Souza <bsouza>"]
    browser.save_screenshot(str(tmp_path / "queue.png"))

    queue.find_element(By.CSS_SELECTOR, "a.wa-map-link").click()
    choice = wait.until(expected_conditions.element_to_be_clickable(
        (By.CSS_SELECTOR, f"input[name=suggested_user][value='{ana.pk}']")))
    choice.click()
    browser.find_element(By.NAME, "_map").click()

    message = wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".messagelist")))
    assert "Mapped 1 contact(s) to Ana Souza <asouza>." in message.text
    assert browser.current_url.endswith("/admin/contacts/unmappedcontact/")
    assert not browser.find_elements(By.ID, "result_list")
    assert "Ana Souza" not in browser.find_element(By.ID, "content").text
    mapping = ContactUserMapping.objects.get(contact=contact)
    assert (mapping.user, mapping.method, mapping.created_by.username) == (ana, "manual", "mapper")
    browser.save_screenshot(str(tmp_path / "mapped.png"))
