"""A real browser (Debian's chromium, headless) logs into the admin and opens a conversation page."""

import pytest
from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import admin_log_in, sandbox_message_stored
from whatsapp.services.providers import provider_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_admin_login_and_conversation_page(browser, live_server, tmp_path):
    get_user_model().objects.create_superuser("operator", "op@example.com", "pw-123456-strong")
    conversation = sandbox_message_stored(provider_create(kind="sandbox", name="Browser sandbox", options={}))
    admin_log_in(browser, live_server, "operator", "pw-123456-strong")

    browser.get(f"{live_server.url}/admin/whatsapp/conversation/{conversation.pk}/change/")
    transcript = WebDriverWait(browser, 10).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".wa-transcript")))
    assert "Is my order #1042 on its way?" in transcript.text
    assert browser.find_elements(By.CSS_SELECTOR, ".wa-bubble.wa-inbound")
    browser.save_screenshot(str(tmp_path / "conversation.png"))
