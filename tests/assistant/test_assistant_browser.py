"""
A real browser on the sandbox phone, playing a mapped user through a whole clarification: gunicorn, a worker
on the default queue and one on the AI queue, and the local OpenAI-compatible server answering with the tool
calls a model would make. The user asks for a LinkedIn post, taps the length and the tone the platform asks
for, and gets the draft. Screenshots are kept under the test's tmp dir.
"""

from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from assistant.models import ContentRequest
from contacts.services.mapping import contact_map_to_user
from tests.conftest import admin_log_in, wait_until, web_and_workers
from whatsapp.models import Message
from whatsapp.services.providers import provider_create, provider_simulate_inbound

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PHONE = "+15551230099"


@pytest.fixture
def platform(local_storage, worker_env, fake_openai, tmp_path):
    ai = {"OPENAI_API_KEY": "sk-test-key", "OPENAI_BASE_URL": fake_openai.url, "OPENAI_MODEL": "gpt-4.1-mini"}
    with web_and_workers(worker_env, tmp_path, "assistant-web", queues=("celery", "ai"), env=ai) as url:
        yield url


def bubble(browser, text: str):
    for element in browser.find_elements(By.CSS_SELECTOR, "#sbx-transcript .sbx-business"):
        if text in element.text:
            return element
    return None


def test_a_user_plays_a_whole_clarification_on_the_sandbox_phone(platform, browser, settings, tmp_path):
    url = platform
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]  # what gunicorn checks with
    admin = get_user_model().objects.create_superuser("owner", "owner@example.com", "pw-123456-strong")
    provider = provider_create(kind="sandbox", name="Demo", options={})
    first = provider_simulate_inbound(provider=provider, from_phone=PHONE, name="Owner", text="Hi, it's me.")
    contact = wait_until(lambda: Message.objects.filter(provider_message_id=first).first(), 30,
                         message="the first message to be stored").conversation.contact
    contact_map_to_user(contact=contact, user=admin, actor=None, notify_on_ready=True)

    wait = WebDriverWait(browser, 40)
    admin_log_in(browser, SimpleNamespace(url=url), "owner", "pw-123456-strong")
    browser.get(url + reverse("admin:whatsapp_provider_sandbox_phone", args=[provider.pk, PHONE]))
    browser.find_element(By.NAME, "text").send_keys("Write a LinkedIn post about our launch", Keys.ENTER)

    # One question at a time: the length as three buttons...
    wait.until(lambda _: bubble(browser, "How long should it be?"))
    short = wait.until(lambda _: browser.find_element(By.CSS_SELECTOR, 'button.sbx-choice[data-title="Short"]:enabled'))
    browser.save_screenshot(str(tmp_path / "assistant-length-question.png"))
    short.click()
    # ...then the tone, four choices: a list.
    wait.until(lambda _: bubble(browser, "Which tone?"))
    browser.find_element(By.CSS_SELECTOR, "details.sbx-list summary").click()
    wait.until(lambda _: browser.find_element(
        By.CSS_SELECTOR, 'button.sbx-row-choice[data-title="Friendly"]:enabled')).click()

    ready = wait.until(lambda _: bubble(browser, "Your draft is ready"))
    request = ContentRequest.objects.get()
    assert (request.platform, request.length, request.tone, request.status) == ("linkedin", "short", "friendly",
                                                                                 "ready")
    assert request.draft and request.draft[:40] in ready.text
    browser.execute_script("document.getElementById('sbx-screen').scrollTop = 1e6;")
    browser.save_screenshot(str(tmp_path / "assistant-draft-ready.png"))
    print(f"screenshots in {tmp_path}")
