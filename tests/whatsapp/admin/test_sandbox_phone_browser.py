"""
A real browser (headless chromium) on the sandbox phone, against a real gunicorn and a real Celery worker:
the operator opens the phone from a sandbox conversation's page, types a message that appears without a
reload, sends an image and a voice note that show inline once the worker has downloaded them, sees an
interactive message the platform sent with its buttons, taps one, and the tap is stored as an interactive
reply quoting that message. Screenshots (wide and narrow) are saved under the test's tmp dir.
"""

from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import admin_log_in, wait_until, web_and_workers
from tests.whatsapp.inbox.test_sandbox_phone_services import png_bytes, wav_bytes
from whatsapp.models import Message
from whatsapp.providers.events import MessageType
from whatsapp.services.outbound import SendRequest, message_send
from whatsapp.services.providers import provider_create, provider_simulate_inbound

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PHONE = "+15551230042"


@pytest.fixture
def web_and_worker(local_storage, worker_env, tmp_path):
    """gunicorn and a Celery worker sharing the test's database, broker and archive directory; the worker
    posts the phone's webhooks to that gunicorn and downloads the phone's files from it."""
    with web_and_workers(worker_env, tmp_path, "phone") as url:
        yield url


def in_transcript(browser, css: str, text: str = ""):
    """The first element of the screen's stored messages (not the pending ones) matching css and text."""
    for element in browser.find_elements(By.CSS_SELECTOR, f"#sbx-transcript {css}"):
        if text in element.text:
            return element
    return None


def test_the_operator_plays_the_customer_on_the_sandbox_phone(web_and_worker, browser, settings, tmp_path):
    url = web_and_worker
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]  # what gunicorn checks with
    get_user_model().objects.create_superuser("phone", "phone@example.com", "pw-123456-strong")
    provider = provider_create(kind="sandbox", name="Demo shop", options={})
    # The customer wrote once already: a sandbox conversation, with its 24-hour window open.
    first = provider_simulate_inbound(provider=provider, from_phone=PHONE, name="Marta Lima",
                                      text="Hi! Is my order #2087 on its way?")
    conversation = wait_until(lambda: Message.objects.filter(provider_message_id=first).first(), 30,
                              message="the first message to be stored").conversation
    wait = WebDriverWait(browser, 30)
    admin_log_in(browser, SimpleNamespace(url=url), "phone", "pw-123456-strong")

    # From the conversation's page, under its transcript.
    browser.get(f"{url}/admin/whatsapp/conversation/{conversation.pk}/change/")
    browser.find_element(By.ID, "open-sandbox-phone").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "sbx-transcript")))
    assert "Is my order #2087 on its way?" in browser.find_element(By.ID, "sbx-transcript").text
    browser.execute_script("window.sbxSamePage = true;")  # gone if the page were loaded again

    # A text, typed and sent with Enter, shows as the customer's once stored.
    composer = browser.find_element(By.NAME, "text")
    composer.send_keys("Can it come on Saturday instead?", Keys.ENTER)
    wait.until(lambda _: in_transcript(browser, ".sbx-customer", "Can it come on Saturday instead?"))
    wait.until(lambda _: not browser.find_elements(By.CSS_SELECTOR, "#sbx-outbox [data-pending-id]"))
    stored = Message.objects.get(conversation=conversation, text="Can it come on Saturday instead?")
    assert (stored.direction, stored.message_type) == ("inbound", "text")

    # An image with a caption and a voice note: shown inline once the worker has fetched them.
    image, voice = tmp_path / "parcel.png", tmp_path / "voice-note.wav"
    image.write_bytes(png_bytes(240, 150))
    voice.write_bytes(wav_bytes(seconds=3))
    browser.find_element(By.CSS_SELECTOR, "#sbx-composer input[type=file]").send_keys(str(image))
    assert "parcel.png" in browser.find_element(By.ID, "sbx-attached").text
    browser.find_element(By.NAME, "text").send_keys("The parcel from last time")
    browser.find_element(By.ID, "sbx-send").click()
    picture = wait.until(lambda _: in_transcript(browser, ".sbx-customer img.sbx-image"))
    wait.until(lambda _: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", picture))
    assert in_transcript(browser, ".sbx-customer", "The parcel from last time")
    browser.find_element(By.CSS_SELECTOR, "#sbx-composer input[type=file]").send_keys(str(voice))
    browser.find_element(By.ID, "sbx-send").click()
    player = wait.until(lambda _: in_transcript(browser, ".sbx-customer audio.sbx-audio"))
    # The player has read the file: it knows how long the note lasts.
    wait.until(lambda _: browser.execute_script("return arguments[0].duration > 0", player))

    # The platform sends an interactive message; its buttons appear, tappable once it is on the phone.
    offer, _ = message_send(SendRequest(
        provider=provider, contact=conversation.contact, message_type=MessageType.INTERACTIVE,
        interactive={"body": "Saturday works. Same address as last time?", "footer": "Demo shop deliveries",
                     "buttons": [{"id": "same", "title": "Yes, same address"}, {"id": "new", "title": "New address"}]}))
    button = wait.until(lambda _: in_transcript(browser, f'button.sbx-choice[value="{offer.pk}:same"]:enabled'))
    wait.until(lambda _: in_transcript(browser, ".sbx-business .sbx-status-read"))
    button.click()
    reply = wait_until(lambda: Message.objects.filter(conversation=conversation,
                                                      message_type=MessageType.INTERACTIVE_REPLY).first(), 30,
                       message="the tap to be stored")
    offer.refresh_from_db()
    assert reply.content == {"kind": "button_reply", "id": "same", "title": "Yes, same address",
                             "quoted_message_id": offer.provider_message_id}
    assert reply.reply_to == offer and reply.text == "Yes, same address"
    tapped = wait.until(lambda _: in_transcript(browser, ".sbx-customer", "Yes, same address"))
    assert "Saturday works. Same address as last time?" in tapped.find_element(By.CSS_SELECTOR, ".sbx-quote").text
    wait.until(lambda _: not browser.find_elements(By.CSS_SELECTOR, "#sbx-outbox [data-pending-id]"))
    assert browser.execute_script("return window.sbxSamePage === true;"), "the page was loaded again"
    assert not browser.find_element(By.ID, "sbx-status-line").text

    browser.save_screenshot(str(tmp_path / "sandbox-phone-wide.png"))
    # A narrow window: the phone fills it, nothing sticks out sideways.
    browser.set_window_size(400, 860)
    wait.until(lambda _: browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"))
    browser.execute_script("document.getElementById('sbx-screen').scrollTop = 1e6;")
    browser.save_screenshot(str(tmp_path / "sandbox-phone-narrow.png"))

    # Another number, from the provider's side: a new customer starts with an empty phone.
    browser.set_window_size(1280, 900)
    browser.find_element(By.LINK_TEXT, "Play another number").click()
    assert PHONE in browser.find_element(By.ID, "sandbox-phone-customers").text
    for name, value in (("number", "+1 555 123 0777"), ("name", "Rui Costa")):
        field = browser.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    browser.save_screenshot(str(tmp_path / "sandbox-phone-start.png"))
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    empty = wait.until(expected_conditions.presence_of_element_located((By.ID, "sbx-empty")))
    assert "No messages yet" in empty.text
    assert browser.current_url.endswith("/sandbox-phone/+15551230777/?name=Rui+Costa")
    print(f"screenshots in {tmp_path}")
