"""
Two-factor sign-in through HTTP: who must give a code, what an unverified session reaches (admin and session
API), enrolment, verification with the app's code or a backup code, wrong codes meeting the lockout, resets and
the group requirement in the admin.
"""

import re
from base64 import b32encode

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import GroupSecurity
from accounts.services import backup_codes_regenerate, two_factor_required
from core.models import AuditLog
from tests.accounts.conftest import (
    LOCKED_OUT,
    authenticator,
    code_of,
    password_sign_in,
    signed_in,
    staff_user,
    wrong_code,
)
from tests.conftest import page, refused, token_client

pytestmark = pytest.mark.django_db

VERIFY = reverse("accounts:two_factor_verify")
ENROL = reverse("accounts:two_factor_enrol")
PROVIDERS = "/admin/whatsapp/provider/"
API = "/api/v1/contacts/"


def verify(client, code: str, next_url: str = "/admin/"):
    return client.post(VERIFY, {"code": code, "next": next_url})


def test_a_superuser_without_an_authenticator_is_sent_to_enrol(admin_client_logged):
    answer = admin_client_logged.get(PROVIDERS)
    assert answer.status_code == 302 and answer["Location"] == f"{ENROL}?next=%2Fadmin%2Fwhatsapp%2Fprovider%2F"
    refused(admin_client_logged.get(API), 403, "two_factor_required")


def test_an_unverified_session_reaches_only_the_code_page(admin_client_logged, superuser):
    authenticator(superuser)
    answer = admin_client_logged.get(PROVIDERS)
    assert answer.status_code == 302 and answer["Location"].startswith(f"{VERIFY}?next=")
    assert admin_client_logged.get("/admin/").status_code == 302
    body = refused(admin_client_logged.get(API), 403, "two_factor_required")
    assert "second" in body["detail"]
    verify_page = admin_client_logged.get(VERIFY)
    assert verify_page.status_code == 200 and 'name="code"' in page(verify_page)
    assert 'id="nav-sidebar"' not in page(verify_page)
    # An API key is a credential of its own: not affected.
    assert token_client(superuser).get(API).status_code == 200


def test_another_authorization_scheme_does_not_bypass_the_session_check(admin_client_logged, superuser):
    authenticator(superuser)
    refused(admin_client_logged.get(API, HTTP_AUTHORIZATION="Basic cm9vdDpwdw=="), 403, "two_factor_required")


def test_the_authenticator_code_verifies_the_session(client, superuser):
    device = authenticator(superuser)
    assert password_sign_in(client, "root")["Location"] == "/admin/"
    assert client.get("/admin/")["Location"] == f"{VERIFY}?next=%2Fadmin%2F"
    code = code_of(device)
    answer = verify(client, code, PROVIDERS)
    assert answer.status_code == 302 and answer["Location"] == PROVIDERS
    assert client.get(PROVIDERS).status_code == 200
    assert client.get(API).status_code == 200
    # The same code cannot be replayed in another session.
    other = Client()
    password_sign_in(other, "root")
    assert verify(other, code).status_code == 200


def test_a_backup_code_works_once(client, superuser):
    authenticator(superuser)
    codes = backup_codes_regenerate(user=superuser)
    assert len(codes) == 10 and len(set(codes)) == 10
    password_sign_in(client, "root")
    spaced = f" {codes[0][:4].upper()} {codes[0][4:]} "  # as someone might copy it from a printout
    assert verify(client, spaced)["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    again = Client()
    password_sign_in(again, "root")
    answer = verify(again, codes[0])
    assert answer.status_code == 200 and "That code is not right" in page(answer)
    assert StaticToken.objects.filter(device__user=superuser).count() == 9
    assert AuditLog.objects.get(action="two_factor.backup_code_used").after == {"backup_codes_left": 9}


def test_wrong_codes_count_towards_the_lockout(client, superuser):
    device = authenticator(superuser)
    password_sign_in(client, "root")
    answers = [verify(client, wrong_code(device)) for _ in range(5)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 200, 429]
    assert LOCKED_OUT in page(answers[-1])
    assert not signed_in(client)  # the half-open session ends
    assert password_sign_in(Client(), "root", REMOTE_ADDR="10.9.9.9").status_code == 429


def test_a_password_alone_does_not_clear_the_failures_of_wrong_codes(client, superuser):
    device = authenticator(superuser)
    password_sign_in(client, "root")
    for _ in range(4):
        verify(client, wrong_code(device))
    password_sign_in(client, "root")  # the password is right, but the sign-in is not complete
    assert verify(client, wrong_code(device)).status_code == 429


def test_enrolment(client, superuser):
    password_sign_in(client, "root")
    start = client.get(client.get("/admin/")["Location"])
    assert start.status_code == 200
    secret = re.search(r'id="two-factor-secret">([A-Z2-7 ]+)<', page(start)).group(1)
    device = TOTPDevice.objects.get(user=superuser, confirmed=False)
    assert secret.replace(" ", "") == b32encode(device.bin_key).decode()
    assert secret in page(client.get(ENROL))  # a reload keeps the secret the app may have scanned
    assert TOTPDevice.objects.filter(user=superuser).count() == 1

    qr = client.get(reverse("accounts:two_factor_enrol_qr"))
    assert qr.status_code == 200 and qr["Content-Type"] == "image/svg+xml"
    assert "no-store" in qr["Cache-Control"] and b"<svg" in qr.content

    refused_code = client.post(ENROL, {"code": wrong_code(device), "next": "/admin/"})
    assert refused_code.status_code == 200 and "That code does not match" in page(refused_code)
    done = client.post(ENROL, {"code": code_of(device), "next": "/admin/"})
    assert done["Location"] == f"{reverse('accounts:two_factor_backup_codes')}?next=%2Fadmin%2F"
    shown = page(client.get(done["Location"]))
    codes = re.findall(r"<li>([a-z2-7]{8})</li>", shown)
    assert len(codes) == 10 and "Store them now" in shown
    assert sorted(codes) == sorted(StaticToken.objects.filter(device__user=superuser).values_list("token", flat=True))
    assert re.findall(r"<li>([a-z2-7]{8})</li>", page(client.get(done["Location"]))) == []  # shown once
    assert client.get("/admin/").status_code == 200
    assert client.get(reverse("accounts:two_factor_enrol_qr")).status_code == 404
    device.refresh_from_db()
    assert device.confirmed
    assert AuditLog.objects.get(action="two_factor.enrol").actor == superuser


def test_a_group_can_require_two_factor_and_plain_staff_sign_in_with_a_password(client):
    group = Group.objects.create(name="Supervisors")
    GroupSecurity.objects.create(group=group, requires_two_factor=True)
    supervisor = staff_user("supervisor")
    supervisor.groups.add(group)
    plain = staff_user("plain")
    assert two_factor_required(supervisor) and not two_factor_required(plain)
    password_sign_in(client, "supervisor")
    assert client.get("/admin/")["Location"] == f"{ENROL}?next=%2Fadmin%2F"
    other = Client()
    assert password_sign_in(other, "plain")["Location"] == "/admin/"
    assert other.get("/admin/").status_code == 200
    assert other.get(API).json().get("code") != "two_factor_required"


def test_all_staff_can_be_required(client, settings):
    settings.TWO_FACTOR_REQUIRED_FOR_ALL_STAFF = True
    staff_user("plain")
    password_sign_in(client, "plain")
    assert client.get("/admin/")["Location"].startswith(ENROL)


def test_a_voluntary_enrolment_is_asked_for_at_every_sign_in(client):
    user = staff_user("careful")
    password_sign_in(client, "careful")
    assert client.get(reverse("accounts:two_factor")).status_code == 200
    client.get(ENROL)
    device = TOTPDevice.objects.get(user=user)
    client.post(ENROL, {"code": code_of(device)})
    later = Client()
    password_sign_in(later, "careful")
    assert later.get("/admin/")["Location"].startswith(VERIFY)
    # Not required: they may turn it off again.
    verify(later, code_of(device, drift=1))
    later.post(reverse("accounts:two_factor"), {"action": "turn_off"})
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert AuditLog.objects.filter(action="two_factor.reset", actor=user).exists()


def test_a_required_user_cannot_turn_it_off_but_can_renew_backup_codes(client, superuser):
    device = authenticator(superuser)
    old_codes = backup_codes_regenerate(user=superuser)
    password_sign_in(client, "root")
    verify(client, code_of(device))
    own_page = page(client.get(reverse("accounts:two_factor")))
    assert "10 backup codes left" in own_page and "turn_off" not in own_page
    client.post(reverse("accounts:two_factor"), {"action": "turn_off"})
    assert TOTPDevice.objects.filter(user=superuser).exists()
    renewed = client.post(reverse("accounts:two_factor"), {"action": "backup_codes"}, follow=True)
    new_codes = re.findall(r"<li>([a-z2-7]{8})</li>", page(renewed))
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    assert client.get("/admin/").status_code == 200  # still verified


def test_an_administrator_resets_a_lost_phone(client, superuser):
    lost = staff_user("lost")
    authenticator(lost)
    backup_codes_regenerate(user=lost)
    boss_device = authenticator(superuser)
    password_sign_in(client, "root")
    verify(client, code_of(boss_device))
    answer = client.post(reverse("admin:auth_user_changelist"),
                         {"action": "reset_two_factor", "_selected_action": [lost.pk]}, follow=True)
    assert "Two-factor sign-in of lost reset" in page(answer)
    assert not TOTPDevice.objects.filter(user=lost).exists() and not StaticDevice.objects.filter(user=lost).exists()
    entry = AuditLog.objects.get(action="two_factor.reset")
    assert entry.actor == superuser and entry.object_id == str(lost.pk)
    assert entry.before == {"devices": ["Authenticator app", "Backup codes"]}


def test_only_a_superuser_resets_a_superusers_second_factor(superuser):
    authenticator(superuser)
    manager = staff_user("manager")
    manager.user_permissions.add(*Permission.objects.filter(codename__in=["view_user", "change_user"]))
    client = Client()
    client.force_login(manager)
    answer = client.post(reverse("admin:auth_user_changelist"),
                         {"action": "reset_two_factor", "_selected_action": [superuser.pk]}, follow=True)
    assert "Not reset for root: only a superuser can reset" in page(answer)
    assert TOTPDevice.objects.filter(user=superuser).exists()


def test_the_user_admin_keeps_its_own_actions_and_gains_the_reset():
    user_admin = admin.site.get_model_admin(get_user_model())
    assert {"export_whatsapp_data", "erase_whatsapp_data", "reset_two_factor"} <= set(user_admin.actions)


def test_a_group_is_marked_as_requiring_two_factor_in_the_admin(client, superuser, settings):
    settings.TWO_FACTOR_REQUIRED_FOR_SUPERUSERS = False
    client.force_login(superuser)
    assert "Sign-in security" in page(client.get(reverse("admin:auth_group_add")))
    answer = client.post(reverse("admin:auth_group_add"), {
        "name": "Managers", "security-TOTAL_FORMS": "1", "security-INITIAL_FORMS": "0",
        "security-MIN_NUM_FORMS": "0", "security-MAX_NUM_FORMS": "1", "security-0-requires_two_factor": "on",
    })
    assert answer.status_code == 302, page(answer)
    group = Group.objects.get(name="Managers")
    assert group.security.requires_two_factor
    entry = AuditLog.objects.get(action="two_factor.group_requirement")
    assert entry.actor == superuser and entry.after == {"requires_two_factor": True}


def test_the_authenticator_list_shows_no_secrets(client, superuser, settings):
    settings.TWO_FACTOR_REQUIRED_FOR_SUPERUSERS = False
    device = authenticator(staff_user("enrolled"))
    client.force_login(superuser)
    listing = page(client.get(reverse("admin:accounts_authenticator_changelist")))
    detail = page(client.get(reverse("admin:accounts_authenticator_change", args=[device.pk])))
    assert "Authenticator app" in listing
    assert device.key not in listing and device.key not in detail
    assert TOTPDevice not in admin.site._registry and StaticDevice not in admin.site._registry
