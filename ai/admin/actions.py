"""The message list's "Re-run AI" action (registered on whatsapp.admin.extensions.message_actions)."""

from django.contrib import admin, messages

from ai.admin.common import RERUN_PERMISSION
from ai.client import ai_configured
from ai.services.pipeline import message_rerun
from whatsapp.models import Message


@admin.action(description="Re-run AI on the selected inbound messages", permissions=[RERUN_PERMISSION])
def rerun_ai(modeladmin, request, queryset):
    if not ai_configured():
        modeladmin.message_user(request, "AI is off (OPENAI_API_KEY is not set): nothing was queued. See AI settings "
                                         "for how to turn it on.", messages.ERROR)
        return
    selected = list(queryset)
    inbound = [message for message in selected if message.direction == Message.Direction.INBOUND]
    for message in inbound:
        message_rerun(message)
    text = f"{len(inbound)} inbound message(s) queued for AI again; what the AI made of them before is gone."
    if len(selected) > len(inbound):
        text += f" {len(selected) - len(inbound)} outbound message(s) left alone: AI reads inbound messages only."
    modeladmin.message_user(request, text, messages.SUCCESS if inbound else messages.WARNING)
