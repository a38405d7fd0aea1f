"""Receivers: the lockout's audit trail, and clearing a name's own failures once its sign-in is complete."""

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from accounts.services import lockout_record, sign_in_completed, two_factor_state


@receiver(user_locked_out, dispatch_uid="accounts.lockout_audit")
def lockout_audit(sender, request, username=None, ip_address=None, **kwargs) -> None:
    lockout_record(request=request, username=username, ip_address=ip_address)


@receiver(user_logged_in, dispatch_uid="accounts.password_sign_in")
def password_sign_in(sender, request, user, **kwargs) -> None:
    # Where a code is still due, the sign-in completes only when it is given (accounts.views): until then a
    # password alone must not clear the failures that wrong codes counted.
    if request is not None and not two_factor_state(user).code_due:
        sign_in_completed(request, user)
