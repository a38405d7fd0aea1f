from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

PASSWORD = "pw-123456-strong"
LOCKED_OUT = ("Too many failed sign-in attempts. Try again in 15 minutes or ask an administrator to unlock the "
              "account.")


@pytest.fixture(autouse=True)
def sign_in_policy(settings):
    """The shipped policy (the suite's settings sign superusers in without a second factor), with the lockout's
    defaults fixed whatever the environment says."""
    settings.TWO_FACTOR_REQUIRED_FOR_SUPERUSERS = True
    settings.TWO_FACTOR_REQUIRED_FOR_ALL_STAFF = False
    settings.AXES_FAILURE_LIMIT = settings.LOGIN_FAILURE_LIMIT = 5
    settings.LOGIN_LOCKOUT_MINUTES = 15
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    settings.TRUSTED_PROXY_COUNT = 0
    return settings


def staff_user(username: str, **fields):
    return get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True,
                                                **fields)


def authenticator(user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)


def code_of(device: TOTPDevice, drift: int = 0) -> str:
    """The code the user's app shows now (drift 1: the next 30-second step's)."""
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, drift=drift):0{device.digits}d}"


def wrong_code(device: TOTPDevice) -> str:
    valid = {code_of(device, drift) for drift in (-1, 0, 1, 2)}
    return next(code for code in ("000000", "111111", "222222") if code not in valid)


def password_sign_in(client: Client, username: str, password: str = PASSWORD, **extra):
    """The admin's sign-in form, posted as a browser does."""
    return client.post(reverse("admin:login"), {"username": username, "password": password, "next": "/admin/"},
                       **extra)


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session
