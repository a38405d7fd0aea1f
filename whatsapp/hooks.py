"""
What the messaging core announces to the apps above it. Each app registers its receivers in its
`AppConfig.ready()`; the core fires these and never imports those apps.
"""

from core.hooks import Hook

inbound_message_saved = Hook(
    "inbound_message_saved",
    doc="A new inbound message was stored (called once per message, never for a duplicate): "
        "receiver(message). Consent keywords, verification codes and registration replies react here.",
)

media_stored = Hook(
    "media_stored",
    doc="An inbound attachment's file was downloaded and stored: receiver(media). Voice notes are "
        "transcribed from here.",
)

status_failed_reported = Hook(
    "status_failed_reported",
    doc="A provider's status report moved a message to failed: receiver(message). The message carries "
        "the provider's error code.",
)

send_failed = Hook(
    "send_failed",
    doc="A send failed for good (a permanent provider error): receiver(message, error_code).",
)

template_status_reported = Hook(
    "template_status_reported",
    doc="A provider reported a template's review status: receiver(provider, event) with the normalized "
        "TemplateStatusUpdate.",
)

human_reply_recorded = Hook(
    "human_reply_recorded",
    doc="A person on the business side wrote in a conversation (sent from the admin or the API, or written "
        "in the provider's own inbox, e.g. by a Chatwoot agent): receiver(message). Automated replies step "
        "back here. Never fired for the platform's own messages (those carry a purpose).",
)
