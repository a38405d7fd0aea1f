"""The message list's "Re-run AI" action (registered on whatsapp.admin.extensions.message_actions)."""

from django.contrib import admin, messages

from ai.admin.common import RERUN_PERMISSION
from ai.client import ai_configured
from ai.services.pipeline import messages_rerun


@admin.action(description="Re-run AI on the selected inbound messages", permissions=[RERUN_PERMISSION])
def rerun_ai(modeladmin, request, queryset):
    if not ai_configured():
        modeladmin.message_user(request, "AI is off (OPENAI_API_KEY is not set): nothing was queued. See AI settings "
                                         "for how to turn it on.", messages.ERROR)
        return
    selected = list(queryset)
    rerun = messages_rerun(selected)
    text = f"{rerun} inbound message(s) queued for AI again; what the AI made of them before is gone."
    if len(selected) > rerun:
        text += f" {len(selected) - rerun} outbound message(s) left alone: AI reads inbound messages only."
    modeladmin.message_user(request, text, messages.SUCCESS if rerun else messages.WARNING)
