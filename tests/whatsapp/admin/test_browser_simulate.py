"""
A real browser (headless chromium) against a real gunicorn with two sync workers and a real Celery
worker: on the sandbox provider's page, "Simulate an inbound message" is filled in and sent, the admin
answers at once, and the message appears in its conversation. The browser holds one sync worker with a
connection it opened ahead of need (chromium preconnects), so an admin request posting to its own server
would wait for a worker until it timed out: the simulated phone's webhook is posted by the Celery worker.
"""

import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import httpx
import pytest
from django.contrib.auth import get_user_model

from tests.conftest import REPO_ROOT, free_port, start_worker, stop_worker, wait_until
from tests.test_browser import _log_in, browser  # noqa: F401  (the browser fixture)
from whatsapp.models import Message
from whatsapp.services.providers import provider_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = "/tmp/wa-browser-simulate"


@pytest.fixture
def web_and_worker(worker_env, tmp_path):
    """gunicorn (sync workers, whatever config/gunicorn.py chooses) and a Celery worker, both posting the
    simulated phone's webhooks to that gunicorn."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**worker_env, "PUBLIC_BASE_URL": url, "INTERNAL_BASE_URL": url, "CSRF_TRUSTED_ORIGINS": url,
           "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2",
           "GUNICORN_CONTROL_SOCKET": str(tmp_path / "gunicorn.ctl")}
    log = (tmp_path / "gunicorn.log").open("wb")
    web = subprocess.Popen([sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.py",
                            "--worker-class", "sync", "--threads", "1", "--access-logfile", "/dev/null"],
                           cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    worker = None
    try:
        wait_until(lambda: _answers(url), 30, message="gunicorn to start")
        worker = start_worker(env, tmp_path / "worker.log", "simulate")
        yield url
    finally:
        if worker is not None:
            stop_worker(worker)
        os.killpg(web.pid, signal.SIGTERM)
        try:
            web.wait(timeout=20)
        except subprocess.TimeoutExpired:  # a worker still waiting on a connection nobody uses
            os.killpg(web.pid, signal.SIGKILL)
            web.wait()
        log.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/health/", timeout=10).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def test_simulate_inbound_from_the_browser_appears_in_the_conversation(web_and_worker, browser,  # noqa: F811
                                                                        settings):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    url = web_and_worker
    os.makedirs(SCREENSHOTS, exist_ok=True)
    # gunicorn checks the password with the production hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    get_user_model().objects.create_superuser("simulator", "sim@example.com", "pw-123456-strong")
    provider = provider_create(kind="sandbox", name="Browser sandbox", options={})
    wait = WebDriverWait(browser, 15)
    _log_in(browser, SimpleNamespace(url=url), "simulator", "pw-123456-strong")

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
