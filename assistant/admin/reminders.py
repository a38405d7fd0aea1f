"""Reminders: when each is due (an instant), whether it went out, and the message that carried it."""

from django.contrib import admin
from django.utils import timezone

from assistant.admin.common import OwnedAdmin, message_link, when
from assistant.models import Reminder
from assistant.services.items import item_audit, reminder_prepare


@admin.register(Reminder)
class ReminderAdmin(OwnedAdmin):
    owned_relations = ("task",)
    list_display = ["__str__", "owner", "due", "status", "sent", "task"]
    list_filter = ["status"]
    search_fields = ["text", "task__title"]
    list_select_related = ["owner", "task"]
    date_hierarchy = "due_at"
    actions = ["cancel"]
    fields = ["owner", "text", "task", "due_at", "status", "sent", "carried_by", "error", "created", "updated"]
    readonly_fields = ["sent", "carried_by", "error", "created", "updated"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("message")

    def save_model(self, request, obj, form, change):
        reminder_prepare(obj)
        super().save_model(request, obj, form, change)

    @admin.action(description="Cancel the selected pending reminders", permissions=["change"])
    def cancel(self, request, queryset):
        cancelled = 0
        for reminder in queryset.filter(status=Reminder.Status.PENDING):
            Reminder.objects.filter(pk=reminder.pk, status=Reminder.Status.PENDING).update(
                status=Reminder.Status.CANCELLED, updated_at=timezone.now())
            reminder.status = Reminder.Status.CANCELLED
            item_audit("cancel", reminder, actor=request.user, before={"status": Reminder.Status.PENDING})
            cancelled += 1
        self.message_user(request, f"{cancelled} reminder(s) cancelled.")

    @admin.display(description="Due", ordering="due_at")
    def due(self, obj):
        return when(obj.due_at)

    @admin.display(description="Sent", ordering="sent_at")
    def sent(self, obj):
        return when(obj.sent_at)

    @admin.display(description="Carried by")
    def carried_by(self, obj):
        return message_link(obj.message)
