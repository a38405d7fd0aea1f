from django.contrib.auth.models import Group
from django.db import models
from django_otp.plugins.otp_totp.models import TOTPDevice


class GroupSecurity(models.Model):
    """What a group's members must do to sign in, beyond their password."""

    group = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="security")
    requires_two_factor = models.BooleanField(
        default=False,
        help_text="Members must sign in with an authenticator app (or a backup code) as well as their password.",
    )

    class Meta:
        verbose_name = verbose_name_plural = "sign-in security"

    def __str__(self) -> str:
        return f"Sign-in security of {self.group}"


class Authenticator(TOTPDevice):
    """A user's authenticator app, as the admin lists it (read only, without its key)."""

    class Meta:
        proxy = True
        verbose_name = "authenticator app"
