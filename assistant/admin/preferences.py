"""Each user's assistant preferences: time zone, summaries, reminders and quiet hours."""

from django.contrib import admin
from django.core.exceptions import ValidationError

from assistant.admin.common import OwnedAdmin, OwnedForm, when
from assistant.models import AssistantProfile
from assistant.services.items import owner_zone, tasks_rezone
from assistant.services.timezones import zone_named


class AssistantProfileForm(OwnedForm):
    class Meta:
        model = AssistantProfile
        fields = "__all__"

    def clean_time_zone(self):
        name = self.cleaned_data["time_zone"].strip()
        if name and zone_named(name) is None:
            raise ValidationError(f"{name!r} is not a time zone: give an IANA name such as Europe/Madrid, or leave "
                                  "it empty.")
        return name

    def clean(self):
        cleaned = super().clean()
        if (cleaned.get("quiet_hours_start") is None) != (cleaned.get("quiet_hours_end") is None):
            self.add_error("quiet_hours_end", "Give both ends of the quiet hours, or neither.")
        return cleaned


@admin.register(AssistantProfile)
class AssistantProfileAdmin(OwnedAdmin):
    form = AssistantProfileForm
    owner_field = "user"
    list_display = ["user", "time_zone_shown", "daily", "weekly", "reminders", "quiet_hours", "updated"]
    list_filter = ["daily_summary", "weekly_summary", "reminders"]
    search_fields = ["user__username", "user__email", "time_zone"]
    list_select_related = ["user"]
    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "time_zone" in form.changed_data:
            tasks_rezone(obj.user)

    fieldsets = [
        (None, {"fields": ["user", "time_zone", "effective_zone"]}),
        ("Summaries", {"fields": ["daily_summary", "daily_summary_time", "weekly_summary", "weekly_summary_day"]}),
        ("Reminders and quiet hours", {"fields": ["reminders", "quiet_hours_start", "quiet_hours_end"]}),
        (None, {"fields": ["updated"]}),
    ]
    readonly_fields = ["effective_zone", "updated"]

    @admin.display(description="Time zone", ordering="time_zone")
    def time_zone_shown(self, obj):
        return obj.time_zone or "(from the phone number)"

    @admin.display(description="Time zone in use")
    def effective_zone(self, obj):
        return owner_zone(obj.user).key if obj and obj.user_id else "-"

    @admin.display(description="Daily summary", ordering="daily_summary")
    def daily(self, obj):
        return f"at {obj.daily_summary_time:%H:%M}" if obj.daily_summary else "off"

    @admin.display(description="Weekly summary", ordering="weekly_summary")
    def weekly(self, obj):
        return obj.get_weekly_summary_day_display() if obj.weekly_summary else "off"

    @admin.display(description="Quiet hours")
    def quiet_hours(self, obj):
        if obj.quiet_hours_start is None or obj.quiet_hours_end is None:
            return "-"
        return f"{obj.quiet_hours_start:%H:%M}–{obj.quiet_hours_end:%H:%M}"

    @admin.display(description="Updated", ordering="updated_at")
    def updated(self, obj):
        return when(obj.updated_at)
