"""
A real browser (Debian's chromium, headless) on the pages people read most: the provider add page keeps only
the picked kind's ids and credentials; the audit entry, the message page and the provider page fit a 1400 px
window and a 420 px phone, and the busiest lists fit at 1400 px without scrolling sideways. Screenshots go
to /tmp/shots/.
"""

from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from core.audit import audit_record
from tests.conftest import admin_log_in, customer
from whatsapp.models import Conversation, Message, MessageStatusEvent

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")
SIZES = {"wide": (1400, 900), "phone": (420, 900)}


def visible_rows(browser) -> set[str]:
    """The names of the provider form's kind fields now shown."""
    names = set()
    for row in browser.find_elements(By.CSS_SELECTOR, "fieldset.provider-kind-ids .form-row, "
                                                      "fieldset.provider-kind-options .form-row"):
        if row.is_displayed():
            names |= {cls.removeprefix("field-") for cls in row.get_attribute("class").split()
                      if cls.startswith("field-")}
    return names


def shoot(browser, url: str, name: str) -> None:
    for size, (width, height) in SIZES.items():
        browser.set_window_size(width, height)
        browser.get(url)
        assert browser.execute_script("return document.documentElement.scrollWidth") <= width
        # The whole page in one picture: the window as tall as the page.
        browser.set_window_size(width, min(browser.execute_script("return document.body.scrollHeight") + 120, 6000))
        browser.save_screenshot(str(SHOTS / f"{name}_{size}.png"))


def test_provider_add_page_keeps_the_picked_kinds_fields(browser, live_server, superuser):
    admin_log_in(browser, live_server, "root", "pw-123456-strong")
    browser.set_window_size(*SIZES["wide"])
    browser.get(live_server.url + reverse("admin:whatsapp_provider_add"))
    assert {"external_id", "access_token", "auth_token", "api_token", "webhook_secret"} <= visible_rows(browser)

    kind = Select(browser.find_element(By.ID, "id_kind"))
    kind.select_by_value("meta")
    assert visible_rows(browser) == {"external_id", "business_account_id", "phone_number", "access_token",
                                     "app_secret", "verify_token"}
    help_text = browser.find_element(By.CSS_SELECTOR, ".field-external_id .help").text
    assert help_text == "Cloud API phone number id."
    assert not browser.find_element(By.CSS_SELECTOR, "fieldset.provider-kind-options .description").is_displayed()
    SHOTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(SHOTS / "provider_add_meta_wide.png"))

    kind.select_by_value("sandbox")
    assert visible_rows(browser) == {"phone_number", "webhook_secret"}
    kind.select_by_value("")
    assert "auth_token" in visible_rows(browser)


def test_pages_fit_wide_and_phone_windows(browser, live_server, superuser, sandbox_provider):
    SHOTS.mkdir(exist_ok=True)
    conversation = Conversation.objects.get(contact=customer(sandbox_provider), provider=sandbox_provider)
    now = timezone.now()
    message = Message.objects.create(
        provider=sandbox_provider, conversation=conversation, direction=Message.Direction.OUTBOUND,
        text="Yes, it ships today. Send the new address here and we'll update it. " * 3, status="read",
        provider_message_id="wamid.shots", queued_at=now, sent_at=now + timedelta(seconds=1),
        delivered_at=now + timedelta(seconds=3), read_at=now + timedelta(seconds=8), attempts=1,
        content={"text": {"body": "Yes, it ships today."}, "preview_url": False})
    for status, seconds, applied in [("sent", 1, True), ("read", 8, True), ("delivered", 3, False)]:
        MessageStatusEvent.objects.create(provider=sandbox_provider, message=message, provider_message_id="wamid.shots",
                                          status=status, occurred_at=now + timedelta(seconds=seconds), applied=applied)
    entry = audit_record(action="admin.change", obj=sandbox_provider, actor=superuser,
                         before={"name": "Sandbox", "rate_limit_per_second": 50, "is_paused": False,
                                 "config": {}, "kind": "sandbox"},
                         after={"name": "Sandbox test", "rate_limit_per_second": 5, "is_paused": True,
                                "config": {"media_storage_hosts": ["a.example.com", "b.example.com"]},
                                "kind": "sandbox"})
    admin_log_in(browser, live_server, "root", "pw-123456-strong")

    shoot(browser, live_server.url + reverse("admin:whatsapp_auditlog_change", args=[entry.pk]), "audit_entry")
    shoot(browser, live_server.url + reverse("admin:whatsapp_message_change", args=[message.pk]), "message_page")
    shoot(browser, live_server.url + reverse("admin:whatsapp_provider_change", args=[sandbox_provider.pk]),
          "provider_page")

    browser.set_window_size(*SIZES["wide"])
    for name in ("message", "deadletter", "messagestatusevent", "webhookevent", "auditlog"):
        browser.get(live_server.url + reverse(f"admin:whatsapp_{name}_changelist"))
        results = browser.find_elements(By.CSS_SELECTOR, "#changelist .results")
        if results:  # an empty list has no table
            assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth",
                                          results[0]), name
        browser.save_screenshot(str(SHOTS / f"list_{name}_wide.png"))
