"""What the AI admin pages share: the display helpers and the permission to ask for suggestions and
summaries."""

from __future__ import annotations

from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from ai.guards import ai_settings_for
from core import dates
from whatsapp.models import Provider

# Asking for suggestions or a summary, and re-running AI, are part of handling a conversation.
ASK_PERMISSION = "whatsapp.change_conversation"
RERUN_PERMISSION = "ai.change_messageinsight"
SEE_CONVERSATION_PERMISSIONS = ("whatsapp.view_conversation", "whatsapp.change_conversation")


def may_see_conversations(user) -> bool:
    return any(user.has_perm(permission) for permission in SEE_CONVERSATION_PERMISSIONS)


def when(moment) -> str:
    return dates.when(moment, seconds=True)


def admin_link(obj, label=None) -> str:
    """A link to the row's admin page, or its name alone when it has none."""
    if obj is None:
        return "-"
    opts = obj._meta
    try:
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return str(label if label is not None else obj)
    return format_html('<a href="{}">{}</a>', url, label if label is not None else obj)


def message_in_conversation_url(conversation_id: int, message_id: int) -> str:
    """The message's bubble in its conversation's transcript."""
    return reverse("admin:whatsapp_conversation_change", args=[conversation_id]) + f"#message-{message_id}"


def provider_settings_url(provider: Provider) -> str:
    """Where this provider's AI settings are changed (or first saved)."""
    ai_settings = ai_settings_for(provider)
    if ai_settings.pk:
        return reverse("admin:ai_provideraisettings_change", args=[ai_settings.pk])
    return reverse("admin:ai_provideraisettings_add") + f"?provider={provider.pk}"


def usd(amount, places: int = 4) -> str:
    return f"{amount:.{places}f}" if amount is not None else "-"
