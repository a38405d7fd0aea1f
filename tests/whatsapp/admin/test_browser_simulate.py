"""
A real browser (headless chromium) against a real gunicorn with two sync workers and a real Celery
worker: on the sandbox provider's page, "Simulate an inbound message" is filled in and sent, the admin
answers at once, and the message appears in its conversation. The browser holds one sync worker with a
connection it opened ahead of need (chromium preconnects), so an admin request posting to its own server
would wait for a worker until it timed out: the simulated phone's webhook is posted by the Celery worker.
"""

import os
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import admin_log_in, wait_until, web_and_workers
from whatsapp.models import Message
from whatsapp.services.providers import provider_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = "/tmp/wa-browser-simulate"


@pytest.fixture
def web_and_worker(worker_env, tmp_path):
    """gunicorn (sync workers, whatever config/gunicorn.py chooses) and a Celery worker, both posting the
    simulated phone's webhooks to that gunicorn."""
    with web_and_workers(worker_env, tmp_path, "simulate",
                         gunicorn_options=("--worker-class", "sync", "--threads", "1")) as url:
        yield url


def test_simulate_inbound_from_the_browser_appears_in_the_conversation(web_and_worker, browser,
                                                                        settings):
    url = web_and_worker
    os.makedirs(SCREENSHOTS, exist_ok=True)
    # gunicorn checks the password with the production hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    get_user_model().objects.create_superuser("simulator", "sim@example.com", "pw-123456-strong")
    provider = provider_create(kind="sandbox", name="Browser sandbox", options={})
    wait = WebDriverWait(browser, 15)
    admin_log_in(browser, SimpleNamespace(url=url), "simulator", "pw-123456-strong")

    browser.get(f"{url}/admin/whatsapp/provider/{provider.pk}/change/")
    browser.find_element(By.CSS_SELECTOR, ".object-tools a[href$='/simulate-inbound/']").click()
    wait.until(expected_conditions.presence_of_element_located((By.NAME, "from_phone")))
    for name, value in (("from_phone", "+15551230042"), ("name", "Marta Lima"),
                        ("text", "Hi! Can I change the delivery address of order #2087?")):
        field = browser.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    browser.save_screenshot(f"{SCREENSHOTS}/1-form.png")

    # The browser keeps a connection of its own open (a preconnected socket), which holds one of the two
    # sync workers; the other serves this request: it must not wait on a third.
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    notice = wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".messagelist")))
    assert "The simulated message was queued for sending to the webhook" in notice.text, notice.text
    assert browser.current_url.endswith(f"/admin/whatsapp/provider/{provider.pk}/change/")
    browser.save_screenshot(f"{SCREENSHOTS}/2-sent.png")

    message = wait_until(lambda: Message.objects.filter(text__contains="order #2087").first(), 30,
                         message="the simulated message to be stored")
    browser.get(f"{url}/admin/whatsapp/conversation/{message.conversation_id}/change/")
    transcript = wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".wa-transcript")))
    assert "Can I change the delivery address of order #2087?" in transcript.text
    assert browser.find_elements(By.CSS_SELECTOR, ".wa-bubble.wa-inbound")
    assert Message.objects.filter(text__contains="order #2087").count() == 1
    browser.save_screenshot(f"{SCREENSHOTS}/3-conversation.png")
