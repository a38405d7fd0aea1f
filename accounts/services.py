"""
Staff sign-in: who must give a second factor, enrolling an authenticator app, checking codes, backup codes and
resetting a lost factor; and how codes and completed sign-ins meet the failed-login lockout (django-axes).
"""

import re
from base64 import b32encode
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO

import segno
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_credentials
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.signals import user_login_failed
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.http import HttpRequest
from django_otp import verify_token
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import GroupSecurity
from core.audit import audit_record
from core.client_address import client_address

BACKUP_CODE_COUNT = 10
AUTHENTICATOR_NAME = "Authenticator app"
BACKUP_CODES_NAME = "Backup codes"


class CodeRefused(Exception):
    """The code does not match the authenticator being enrolled."""


# --- Who must give a second factor ------------------------------------------------------------------------

@dataclass(frozen=True)
class TwoFactorState:
    required: bool  # by being a superuser, staff (when all staff must) or in a group that requires it
    enrolled: bool  # has a confirmed authenticator app

    @property
    def code_due(self) -> bool:
        """Whether signing in takes a code: where it is required, and for anyone who chose to enrol."""
        return self.required or self.enrolled


def _required_by_role(user) -> bool:
    return bool((user.is_superuser and settings.TWO_FACTOR_REQUIRED_FOR_SUPERUSERS)
                or (user.is_staff and settings.TWO_FACTOR_REQUIRED_FOR_ALL_STAFF))


def _groups_requiring(user_ref):
    return GroupSecurity.objects.filter(group__user=user_ref, requires_two_factor=True)


def two_factor_required(user) -> bool:
    if not user.is_authenticated:
        return False
    return _required_by_role(user) or _groups_requiring(user.pk).exists()


def two_factor_state(user) -> TwoFactorState:
    """Whether the user must give a second factor and whether they have one, in one query."""
    if not user.is_authenticated:
        return TwoFactorState(required=False, enrolled=False)
    enrolled, group_requires = (
        get_user_model().objects.filter(pk=user.pk)
        .annotate(enrolled=Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)),
                  group_requires=Exists(_groups_requiring(OuterRef("pk"))))
        .values_list("enrolled", "group_requires").get()
    )
    return TwoFactorState(required=_required_by_role(user) or group_requires, enrolled=enrolled)


def request_two_factor_state(request: HttpRequest) -> TwoFactorState:
    """The signed-in user's state, worked out at most once per request."""
    state = getattr(request, "_two_factor_state", None)
    if state is None:
        state = request._two_factor_state = two_factor_state(request.user)
    return state


# --- Enrolling an authenticator app -----------------------------------------------------------------------

def authenticator_of(user) -> TOTPDevice | None:
    """The user's confirmed authenticator app, if they enrolled one."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


def authenticator_for_enrolment(user) -> TOTPDevice:
    """The authenticator this user is enrolling, made on first use: a reload shows the same secret, so an app
    that already scanned it keeps working."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    return device or TOTPDevice.objects.create(user=user, name=AUTHENTICATOR_NAME, confirmed=False)


def authenticator_secret(device: TOTPDevice) -> str:
    """The key in base32, as apps take it typed in, in groups of four characters."""
    secret = b32encode(device.bin_key).decode()
    return " ".join(secret[start:start + 4] for start in range(0, len(secret), 4))


def authenticator_qr_svg(device: TOTPDevice) -> bytes:
    buffer = BytesIO()
    segno.make(device.config_url, error="m").save(buffer, kind="svg", scale=5, border=2,
                                                  title="Authenticator set-up code")
    return buffer.getvalue()


def _compact(code: str) -> str:
    """A code as typed, without the spaces and dashes people put in to read it."""
    return re.sub(r"[\s-]", "", code)


@transaction.atomic
def authenticator_enrol(*, user, device: TOTPDevice, code: str) -> list[str]:
    """Confirm the authenticator with a code it made; returns the new backup codes, to show once."""
    device = TOTPDevice.objects.select_for_update().filter(pk=device.pk, user=user, confirmed=False).first()
    if device is None or not device.verify_token(_compact(code)):
        raise CodeRefused
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    # Set-ups abandoned earlier (another page load, another browser) are left unused: drop them.
    TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
    codes = _backup_codes_replace(user)
    audit_record(action="two_factor.enrol", obj=user, actor=user,
                 after={"device": device.name, "backup_codes": len(codes)})
    return codes


# --- Backup codes -----------------------------------------------------------------------------------------

def _backup_codes_replace(user) -> list[str]:
    # The device is kept and only its codes replaced: a session verified with a backup code stays verified.
    device = (StaticDevice.objects.filter(user=user).order_by("pk").first()
              or StaticDevice.objects.create(user=user, name=BACKUP_CODES_NAME))
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(BACKUP_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


@transaction.atomic
def backup_codes_regenerate(*, user) -> list[str]:
    codes = _backup_codes_replace(user)
    audit_record(action="two_factor.backup_codes", obj=user, actor=user, after={"backup_codes": len(codes)})
    return codes


def backup_codes_left(user) -> int:
    return StaticToken.objects.filter(device__user=user).count()


# --- Checking a code at sign-in ---------------------------------------------------------------------------

def second_factor_check(*, user, code: str) -> Device | None:
    """The device that accepts this code: the authenticator app's six digits, or a backup code (used up)."""
    compact = _compact(code)
    if compact.isdigit():
        for device in TOTPDevice.objects.filter(user=user, confirmed=True):
            if verify_token(user, device.persistent_id, compact):
                return device
    for device in StaticDevice.objects.filter(user=user, confirmed=True):
        if verify_token(user, device.persistent_id, compact.lower()):
            audit_record(action="two_factor.backup_code_used", obj=user, actor=user,
                         after={"backup_codes_left": device.token_set.count()})
            return device
    return None


@transaction.atomic
def two_factor_reset(*, user, actor) -> int:
    """Remove the user's authenticator and backup codes (a lost phone, or their own choice where not required).
    Sessions verified with them are no longer verified; the next sign-in enrols again where it is required."""
    devices = [*TOTPDevice.objects.filter(user=user), *StaticDevice.objects.filter(user=user)]
    for device in devices:
        device.delete()
    if devices:
        audit_record(action="two_factor.reset", obj=user, actor=actor,
                     before={"devices": sorted({device.name for device in devices})})
    return len(devices)


# --- The lockout (django-axes) ----------------------------------------------------------------------------

@contextmanager
def one_code_attempt_at_a_time(user: AbstractBaseUser) -> Iterator[None]:
    """Hold the user's row while a code is checked and counted: codes sent in parallel from several half
    signed-in sessions are then checked one after another, each against the lockout the previous ones left."""
    with transaction.atomic():
        list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))
        yield


def sign_in_allowed(request: HttpRequest, user: AbstractBaseUser) -> bool:
    """Whether the user's name and the client's address are clear of a lockout."""
    if not settings.AXES_ENABLED:
        return True
    return AxesProxyHandler.is_allowed(request, get_credentials(user.get_username()))


def wrong_code_count(request: HttpRequest, user: AbstractBaseUser) -> bool:
    """Count a wrong second-factor code as a failed sign-in of this name from this address, exactly as a wrong
    password is; returns whether that locked them out."""
    user_login_failed.send(sender=__name__, credentials=get_credentials(user.get_username()), request=request)
    return bool(getattr(request, "axes_locked_out", False))


def sign_in_completed(request: HttpRequest, user: AbstractBaseUser) -> int:
    """
    The person proved who they are from here: forget their name's failures from this address (their own typing
    mistakes). Failures of the name from other addresses, and of this address under other names, still count,
    so a success never clears what someone else is trying.
    """
    deleted, _ = AccessAttempt.objects.filter(username=user.get_username(),
                                              ip_address=client_address(request)).delete()
    return deleted


def _attempt_snapshot(attempt: AccessAttempt) -> dict:
    return {"username": attempt.username, "ip_address": attempt.ip_address,
            "failures": attempt.failures_since_start, "last_attempt": attempt.attempt_time.isoformat(),
            "path": attempt.path_info}


def lockout_record(*, request: HttpRequest, username: str | None, ip_address: str | None) -> None:
    """Audit the failure that locked a name or an address out. Attempts refused while the lockout lasts are
    kept by axes (access failures) but not audited again, so an attack cannot flood the audit log."""
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is None:  # refused before counting: the lockout was already recorded
        return
    attempt = (AccessAttempt.objects.filter(username=username, ip_address=ip_address)
               .order_by("-attempt_time").first())
    if attempt is not None:
        audit_record(action="sign_in.locked_out", obj=attempt, actor_label="anonymous",
                     after={**_attempt_snapshot(attempt), "failures_counted": failures,
                            "lockout_minutes": settings.LOGIN_LOCKOUT_MINUTES})


@transaction.atomic
def lockout_clear(*, attempts: Iterable[AccessAttempt], actor) -> int:
    """Forget these counted failures (an administrator's unlock), each audited before it goes."""
    count = 0
    for attempt in attempts:
        audit_record(action="sign_in.unlock", obj=attempt, actor=actor, before=_attempt_snapshot(attempt))
        attempt.delete()
        count += 1
    return count


def lockout_clear_names(*, usernames: Iterable[str], actor) -> int:
    return lockout_clear(attempts=AccessAttempt.objects.filter(username__in=set(usernames)), actor=actor)


def lockout_clear_addresses(*, addresses: Iterable[str], actor) -> int:
    return lockout_clear(attempts=AccessAttempt.objects.filter(ip_address__in=set(addresses)), actor=actor)
