"""
The failed sign-in lockout through the admin's own sign-in form: counted per user name and per client address,
the same answer whether the name exists or not, refused even with the right password, and unlocked (audited)
from the admin.
"""

import pytest
from axes.models import AccessAttempt, AccessFailureLog
from django.test import Client
from django.urls import reverse

from core.models import AuditLog
from tests.accounts.conftest import LOCKED_OUT, password_sign_in, signed_in, staff_user
from tests.conftest import page

pytestmark = pytest.mark.django_db

GENERIC_FAILURE = "Please enter the correct username and password for a staff account."


def fail(client, username: str, times: int, **extra):
    return [password_sign_in(client, username, "not-the-password", **extra) for _ in range(times)]


def test_the_fifth_failure_locks_with_the_same_page_for_a_real_and_an_unknown_name(client, superuser):
    answers = fail(client, "root", 5)
    assert [answer.status_code for answer in answers] == [200, 200, 200, 200, 429]
    assert all(GENERIC_FAILURE in page(answer) for answer in answers[:4])
    # Another address, so that only the name counts: a name nobody has.
    unknown = fail(Client(), "nobody-by-this-name", 5, REMOTE_ADDR="10.0.0.2")
    assert [answer.status_code for answer in unknown] == [200, 200, 200, 200, 429]
    assert all(GENERIC_FAILURE in page(answer) for answer in unknown[:4])
    assert LOCKED_OUT in page(answers[-1])
    assert page(answers[-1]) == page(unknown[-1])
    assert "root" not in page(answers[-1]) and "nobody" not in page(unknown[-1])


def test_a_name_is_locked_from_every_address_even_with_the_right_password(client, superuser):
    for number in range(5):
        password_sign_in(Client(), "root", "not-the-password", REMOTE_ADDR=f"10.0.1.{number}")
    answer = password_sign_in(client, "root", REMOTE_ADDR="10.0.2.1")
    assert answer.status_code == 429 and LOCKED_OUT in page(answer)
    assert not signed_in(client)


def test_an_address_is_locked_for_every_name(client, settings, superuser):
    settings.TRUSTED_PROXY_COUNT = 1
    attacker = {"HTTP_X_FORWARDED_FOR": "198.51.100.1, 203.0.113.7"}
    answers = [password_sign_in(client, f"guess-{number}", "not-the-password", **attacker) for number in range(5)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 200, 429]
    # The address counts, whatever the client claims to the left of what the proxy appended.
    refused = password_sign_in(Client(), "root", HTTP_X_FORWARDED_FOR="192.0.2.9, 203.0.113.7")
    assert refused.status_code == 429
    elsewhere = Client()
    assert password_sign_in(elsewhere, "root", HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 302
    assert signed_in(elsewhere)
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.7"}


def test_a_completed_sign_in_forgets_only_its_own_typing_mistakes(client):
    staff_user("clerk")
    fail(client, "clerk", 3)
    fail(Client(), "clerk", 1, REMOTE_ADDR="10.0.3.1")  # someone else, elsewhere, trying the name
    assert password_sign_in(client, "clerk").status_code == 302
    assert list(AccessAttempt.objects.values_list("ip_address", "failures_since_start")) == [("10.0.3.1", 1)]
    assert [answer.status_code for answer in fail(Client(), "clerk", 4)] == [200, 200, 200, 429]


def test_an_administrator_unlocks_a_name_and_it_is_audited(client, superuser, settings):
    settings.TWO_FACTOR_REQUIRED_FOR_SUPERUSERS = False  # this test is about the lockout alone
    fail(client, "root", 5)
    assert password_sign_in(client, "root").status_code == 429
    boss = staff_user("boss", is_superuser=True)
    admin_client = Client()
    admin_client.force_login(boss)
    listing = admin_client.get(reverse("admin:axes_accessattempt_changelist"))
    assert listing.status_code == 200 and "Locked Out" in page(listing)
    attempt = AccessAttempt.objects.get(username="root")
    answer = admin_client.post(reverse("admin:axes_accessattempt_changelist"),
                               {"action": "unlock_user_names", "_selected_action": [attempt.pk]}, follow=True)
    assert "Unlocked 1 user name(s)" in page(answer)
    assert not AccessAttempt.objects.exists()
    assert password_sign_in(client, "root", REMOTE_ADDR="127.0.0.1").status_code == 302

    locked = AuditLog.objects.get(action="sign_in.locked_out")
    assert locked.after["username"] == "root" and locked.after["failures_counted"] == 5
    assert locked.actor is None and locked.object_type == "axes.AccessAttempt"
    unlock = AuditLog.objects.get(action="sign_in.unlock")
    assert unlock.actor == boss and unlock.before["username"] == "root" and unlock.before["failures"] == 5


def test_refusals_during_a_lockout_do_not_extend_it_or_flood_the_audit(client, superuser):
    fail(client, "root", 5)
    fail(client, "root", 3)
    attempt = AccessAttempt.objects.get()
    assert attempt.failures_since_start == 5  # refused attempts are not counted again
    assert AuditLog.objects.filter(action="sign_in.locked_out").count() == 1
    # The admin's failure log holds each counted failure, the one that locked marked so.
    assert sorted(AccessFailureLog.objects.values_list("locked_out", flat=True)) == [False] * 4 + [True]


def test_deleting_a_failure_row_in_the_admin_is_audited(client, superuser, settings):
    settings.TWO_FACTOR_REQUIRED_FOR_SUPERUSERS = False
    fail(Client(), "someone", 2, REMOTE_ADDR="10.0.4.1")
    attempt = AccessAttempt.objects.get()
    client.force_login(superuser)
    answer = client.post(reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"})
    assert answer.status_code == 302
    assert not AccessAttempt.objects.exists()
    entry = AuditLog.objects.get(action="sign_in.unlock")
    assert entry.actor == superuser and entry.before["ip_address"] == "10.0.4.1"


def test_passwords_are_never_stored(client, superuser):
    fail(client, "root", 6)
    password_sign_in(client, "root", "another-secret-guess", REMOTE_ADDR="10.0.5.1")
    stored = [*AccessAttempt.objects.values_list("post_data", flat=True),
              *(str(row) for row in AuditLog.objects.values_list("before", "after"))]
    assert stored and not any("not-the-password" in text or "another-secret-guess" in text for text in stored)
