"""
What the apps above the messaging core add to its admin pages. The core declares the hooks and reads
them where the page is built; an app registers its receivers when its admin module is imported (Django's
admin autodiscovery does that once, before the first request). Registering the same receiver again
changes nothing.
"""

from core.hooks import Hook

message_actions = Hook(
    "message_admin_actions",
    doc="Extra actions of the message list. Each receiver is an admin action function "
        "(modeladmin, request, queryset) made with @admin.action. Its `permissions` are checked like Django "
        "checks them (the message admin's has_<name>_permission) and, for a name the message admin has no "
        "method for, as a Django permission 'app_label.codename' the user must hold.",
)

conversation_panels = Hook(
    "conversation_panels",
    doc="Extra panels of the conversation page, shown under the transcript: receiver(request, conversation) "
        "-> HTML marked safe (format_html, a rendered template), or '' to show nothing. A plain string is "
        "escaped. The panels sit inside the page's change form, where a form cannot nest: a button that "
        "posts names the page's empty form instead, <button form=\"conversation-panel-form\" "
        "formaction=\"...\">, which carries the CSRF token.",
)

intent_choices = Hook(
    "conversation_intent_choices",
    doc="The intents the conversation list's intent filter offers: receiver() -> a list of intent names "
        "(the classifier's taxonomy). Without a receiver the list offers the intents of recent messages, "
        "read from the message table.",
)

# The id of the empty POST form (with its CSRF token) that panels' buttons submit.
PANEL_FORM_ID = "conversation-panel-form"
