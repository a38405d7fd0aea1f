"""The dashboard in a real browser: the charts are drawn from the page's figures and follow the filters."""

import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import admin_log_in, default_group, user_with_perms
from whatsapp.models import Message
from whatsapp.services.outbound import message_send_text

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SHOTS = Path("/tmp/shots")

CHART_TOTAL = """
const chart = window.Chart && Chart.getChart(arguments[0]);
if (!chart) { return null; }
return {labels: chart.data.labels.length,
        totals: chart.data.datasets.map(d => d.data.reduce((a, b) => a + (b || 0), 0))};
"""


def _chart(browser, canvas_id: str):
    return WebDriverWait(browser, 10).until(lambda b: b.execute_script(CHART_TOTAL, canvas_id))


def test_the_dashboard_draws_its_charts_and_follows_the_filters(browser, live_server, say, sandbox_provider):
    SHOTS.mkdir(exist_ok=True)
    user = user_with_perms("analyst", "analytics.view_hourlycount", "contacts.view_contact")
    user.is_staff = True
    user.save()
    user.groups.add(default_group("Operator"))
    for n in range(4):
        contact = say(f"+3460040000{n}", "Where is my order?", at=time.time() - 300)
        if n < 3:
            message_send_text(provider=sandbox_provider, contact=contact, text="On its way.", actor=user)
    Message.objects.filter(direction="outbound").update(status="sent")

    admin_log_in(browser, live_server, "analyst", "pw-123456-strong")
    volume = _chart(browser, "chart-volume")
    assert volume["labels"] == 7 and volume["totals"][0] == 4  # received, by day over the last 7 days
    assert _chart(browser, "chart-funnel")["labels"] == 4
    assert _chart(browser, "chart-response")["labels"] == 7
    tiles = {tile.get_attribute("data-key"): tile.text for tile in browser.find_elements(By.CSS_SELECTOR,
                                                                                          "[data-key]")}
    assert tiles["unmapped_contacts"].startswith("4")
    browser.save_screenshot(str(SHOTS / "analytics_dashboard.png"))

    # By the hour, for one provider: the page reloads with the filters and redraws.
    Select(browser.find_element(By.NAME, "grain")).select_by_value("hour")
    Select(browser.find_element(By.NAME, "provider")).select_by_visible_text(sandbox_provider.name)
    browser.find_element(By.CSS_SELECTOR, ".wa-filters button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda b: "grain=hour" in b.current_url)
    hourly = _chart(browser, "chart-volume")
    assert hourly["labels"] == 7 * 24 and hourly["totals"][0] == 4
    browser.find_element(By.LINK_TEXT, "Last 24 hours").click()
    WebDriverWait(browser, 10).until(lambda b: _chart(b, "chart-volume")["labels"] == 24)
    browser.save_screenshot(str(SHOTS / "analytics_dashboard_hourly.png"))

    # A phone-sized window: everything still fits the width.
    browser.set_window_size(390, 844)
    browser.refresh()
    _chart(browser, "chart-volume")
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    browser.save_screenshot(str(SHOTS / "analytics_dashboard_narrow.png"))
    # No script error and no Content-Security-Policy refusal (the browser asks for a favicon we do not have).
    errors = [entry for entry in browser.get_log("browser")
              if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]]
    assert errors == []
