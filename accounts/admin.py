"""
Sign-in security in the admin: the failed-login attempts with audited unlocks, a group's two-factor requirement,
the users' reset of a lost second factor, and a read-only list of who has enrolled.

The group and user pages extend whatever admin is registered for them (the user admin is the contacts app's),
so this app adds to them without either side naming the other; it is listed after them in INSTALLED_APPS.
"""

from axes import admin as axes_admin
from axes.models import AccessAttempt
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Authenticator, GroupSecurity
from accounts.services import lockout_clear, lockout_clear_addresses, lockout_clear_names, two_factor_reset
from core.audit import audit_record

User = get_user_model()


def _extend_registered(model, extension: type) -> None:
    """Register `model` with its current admin class extended by `extension` (a mixin)."""
    current = type(admin.site.get_model_admin(model))
    extended = type(f"{extension.__name__}{current.__name__}", (extension, current), {
        "inlines": [*current.inlines, *getattr(extension, "extra_inlines", [])],
        "actions": [*(current.actions or []), *getattr(extension, "extra_actions", [])],
    })
    admin.site.unregister(model)
    admin.site.register(model, extended)


# --- Failed sign-ins (django-axes) ------------------------------------------------------------------------

class AccessAttemptAdmin(axes_admin.AccessAttemptAdmin):
    """Counted failures of the lockout window. Unlocking, or deleting a row, forgets failures: audited."""

    actions = [*axes_admin.AccessAttemptAdmin.actions, "unlock_user_names", "unlock_addresses"]

    def delete_model(self, request, obj):
        lockout_clear(attempts=[obj], actor=request.user)

    def delete_queryset(self, request, queryset):
        lockout_clear(attempts=queryset, actor=request.user)

    @admin.action(description="Unlock the selected user names (from every address)", permissions=["delete"])
    def unlock_user_names(self, request, queryset):
        names = {name for name in queryset.values_list("username", flat=True) if name}
        count = lockout_clear_names(usernames=names, actor=request.user)
        self.message_user(request, f"Unlocked {len(names)} user name(s): {count} failure record(s) forgotten.",
                          messages.SUCCESS)

    @admin.action(description="Unlock the selected addresses (for every user name)", permissions=["delete"])
    def unlock_addresses(self, request, queryset):
        addresses = {address for address in queryset.values_list("ip_address", flat=True) if address}
        count = lockout_clear_addresses(addresses=addresses, actor=request.user)
        self.message_user(request, f"Unlocked {len(addresses)} address(es): {count} failure record(s) forgotten.",
                          messages.SUCCESS)


admin.site.unregister(AccessAttempt)
admin.site.register(AccessAttempt, AccessAttemptAdmin)


# --- Groups: whether members must use two-factor sign-in --------------------------------------------------

class GroupSecurityInline(admin.StackedInline):
    model = GroupSecurity
    can_delete = False
    max_num = 1
    verbose_name = verbose_name_plural = "Sign-in security"


class GroupSecurityAdmin:
    extra_inlines = [GroupSecurityInline]

    def save_formset(self, request, form, formset, change):
        if formset.model is not GroupSecurity:
            return super().save_formset(request, form, formset, change)
        before = {row.pk: row.requires_two_factor for row in GroupSecurity.objects.filter(group=form.instance)}
        super().save_formset(request, form, formset, change)
        for row in GroupSecurity.objects.filter(group=form.instance):
            if before.get(row.pk, False) != row.requires_two_factor:
                audit_record(action="two_factor.group_requirement", obj=form.instance, actor=request.user,
                             before={"requires_two_factor": before.get(row.pk, False)},
                             after={"requires_two_factor": row.requires_two_factor})


_extend_registered(Group, GroupSecurityAdmin)


# --- Users: resetting a lost second factor ----------------------------------------------------------------

class TwoFactorResetAdmin:
    extra_actions = ["reset_two_factor"]

    @admin.action(description="Reset two-factor sign-in (lost phone)", permissions=["change"])
    def reset_two_factor(self, request, queryset):
        for user in queryset.order_by("username"):
            # A superuser's second factor guards everything: only another superuser may remove it.
            if user.is_superuser and not request.user.is_superuser:
                self.message_user(request, f"Not reset for {user.get_username()}: only a superuser can reset a "
                                           "superuser's two-factor sign-in.", messages.ERROR)
                continue
            if two_factor_reset(user=user, actor=request.user):
                self.message_user(request, f"Two-factor sign-in of {user.get_username()} reset: authenticator and "
                                           "backup codes removed; it is set up again at the next sign-in where it "
                                           "is required.", messages.SUCCESS)
            else:
                self.message_user(request, f"Nothing to reset for {user.get_username()}: no two-factor sign-in.",
                                  messages.INFO)


_extend_registered(User, TwoFactorResetAdmin)


# --- Who has enrolled (read only: secrets and backup codes never show) -------------------------------------

admin.site.unregister(TOTPDevice)
admin.site.unregister(StaticDevice)


@admin.register(Authenticator)
class AuthenticatorAdmin(admin.ModelAdmin):
    list_display = ["user", "name", "confirmed", "created_at", "last_used_at"]
    list_filter = ["confirmed", "created_at", "last_used_at"]
    search_fields = ["user__username", "user__email"]
    list_select_related = ["user"]
    fields = ["user", "name", "confirmed", "created_at", "last_used_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # through the users' "Reset two-factor sign-in", which is audited
