"""A real browser (Debian's chromium, headless) maps a contact from the unmapped-contacts queue."""

import pytest
from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from contacts.models import ContactUserMapping
from contacts.services.mapping import user_phone_set
from tests.conftest import admin_log_in, sandbox_message_stored
from whatsapp.services.providers import provider_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_unmapped_contact_is_mapped_from_the_queue_and_leaves_it(browser, live_server, tmp_path):
    """Two users share the phone a new contact writes from (a family phone): the auto rule leaves the
    ambiguous contact in the queue with both as suggestions; a person picks one on the map page."""
    users = get_user_model().objects
    users.create_superuser("mapper", "mapper@example.com", "pw-123456-strong")
    ana = users.create_user("asouza", "ana@example.com", first_name="Ana", last_name="Souza")
    bruno = users.create_user("bsouza", "bruno@example.com", first_name="Bruno", last_name="Souza")
    for user in (ana, bruno):
        user_phone_set(user, "+15551230001")  # the number the fixture's message comes from
    contact = sandbox_message_stored(provider_create(kind="sandbox", name="Browser sandbox", options={})).contact
    assert not ContactUserMapping.objects.filter(contact=contact).exists()

    wait = WebDriverWait(browser, 10)
    admin_log_in(browser, live_server, "mapper", "pw-123456-strong")

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
