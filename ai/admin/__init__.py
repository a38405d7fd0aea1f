"""
AI in the admin, one module per screen: the intent taxonomy (intents.py), the settings per provider and
the setup guide (provider_settings.py), the ledger of calls and the usage page (calls.py), the messages'
insights and the conversations' summaries (insights.py), the requests for suggestions and summaries with
the conversation page's buttons (requests.py). The AI panel of the conversation page is in panel.py, the
message list's "Re-run AI" action in actions.py; common.py holds what they share. Every AI page starts
with whether AI is on and the AI API's circuit (templatetags/ai_admin.py).

Importing this package (Django's admin autodiscovery does) registers every page, and plugs the panel and
the action into the messaging admin's hooks; registering them again changes nothing.
"""

from ai.admin import calls, insights, intents, provider_settings, requests  # noqa: F401  (register the pages)
from ai.admin.actions import rerun_ai
from ai.admin.panel import conversation_ai_panel
from ai.selectors import intent_names
from whatsapp.admin.extensions import conversation_panels, intent_choices, message_actions

message_actions.register(rerun_ai)
conversation_panels.register(conversation_ai_panel)
intent_choices.register(intent_names)
