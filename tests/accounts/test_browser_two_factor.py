"""
A real browser (Debian's chromium, headless) through two-factor sign-in: a superuser's first sign-in enrols an
authenticator from the secret on the page and shows the backup codes; the next sign-in asks for a code, refuses a
wrong one and admits the right one. A staff member who needs no second factor signs in with a password alone.
Screenshots go to /tmp/shots/.
"""

from base64 import b32decode
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django_otp.oath import totp
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.accounts.conftest import PASSWORD, staff_user

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")


def code_from_secret(secret: str, drift: int = 0) -> str:
    return f"{totp(b32decode(secret.replace(' ', '')), drift=drift):06d}"


def type_password(browser, live_server, username: str) -> None:
    browser.get(live_server.url + "/admin/")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login-form input[type=submit]").click()


def type_code(browser, form_id: str, code: str) -> None:
    field = browser.find_element(By.CSS_SELECTOR, f"#{form_id} input[name=code]")
    field.clear()
    field.send_keys(code)
    browser.find_element(By.CSS_SELECTOR, f"#{form_id} input[type=submit]").click()


def wait_for(browser, css: str):
    return WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))


def at_admin_index(browser, live_server) -> bool:
    return browser.current_url == live_server.url + "/admin/" and bool(browser.find_elements(By.ID, "user-tools"))


def test_enrol_then_sign_in_with_a_code(browser, live_server):
    SHOTS.mkdir(exist_ok=True)
    get_user_model().objects.create_superuser("owner", "owner@example.com", PASSWORD)

    type_password(browser, live_server, "owner")
    secret = wait_for(browser, "#two-factor-secret").text
    qr = browser.find_element(By.CSS_SELECTOR, "img.sign-in-qr")
    assert browser.execute_script("return arguments[0].naturalWidth", qr) > 0  # the QR image loaded
    browser.save_screenshot(str(SHOTS / "two_factor_enrol.png"))
    type_code(browser, "two-factor-enrol", code_from_secret(secret))

    codes = [item.text for item in wait_for(browser, "#backup-codes").find_elements(By.TAG_NAME, "li")]
    assert len(codes) == 10 and all(len(code) == 8 for code in codes)
    browser.save_screenshot(str(SHOTS / "two_factor_backup_codes.png"))
    browser.find_element(By.ID, "backup-codes-done").click()
    wait_for(browser, "#user-tools")
    assert at_admin_index(browser, live_server)

    browser.find_element(By.CSS_SELECTOR, "#logout-form button").click()
    WebDriverWait(browser, 10).until(expected_conditions.url_contains("/admin/logout/"))
    type_password(browser, live_server, "owner")
    wait_for(browser, "#two-factor-verify")
    valid = {code_from_secret(secret, drift) for drift in (-1, 0, 1, 2)}
    type_code(browser, "two-factor-verify", next(code for code in ("000000", "111111") if code not in valid))
    error = wait_for(browser, "#two-factor-verify .errorlist")
    assert "not right" in error.text
    browser.save_screenshot(str(SHOTS / "two_factor_wrong_code.png"))
    # The code of the next 30-second step: the one used to enrol cannot be used twice.
    type_code(browser, "two-factor-verify", code_from_secret(secret, drift=1))
    wait_for(browser, "#user-tools")
    assert at_admin_index(browser, live_server)
    browser.save_screenshot(str(SHOTS / "two_factor_signed_in.png"))


def test_staff_without_a_second_factor_sign_in_with_a_password(browser, live_server):
    staff_user("clerk")
    type_password(browser, live_server, "clerk")
    wait_for(browser, "#user-tools")
    assert at_admin_index(browser, live_server)
