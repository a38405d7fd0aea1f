"""
The assistant in the admin, one module per screen: projects and goals (projects.py), tasks (tasks.py), notes
(notes.py), content requests (content.py), reminders (reminders.py), each user's preferences
(preferences.py), the policy per provider (policies.py) and the turns, read-only (turns.py, which also
serves the conversation page's "Resume assistant" button). The assistant panel of the conversation page is in
panel.py; common.py holds what the screens share, above all the rule that a user sees only their own items
unless they may see everyone's.

Importing this package (Django's admin autodiscovery does) registers every page and plugs the panel into
the messaging admin's hook; registering it again changes nothing.
"""

from assistant.admin import (  # noqa: F401  (each module registers its pages with the admin site)
    content,
    notes,
    policies,
    preferences,
    projects,
    reminders,
    tasks,
    turns,
)
from assistant.admin.panel import conversation_assistant_panel
from whatsapp.admin.extensions import conversation_panels

conversation_panels.register(conversation_assistant_panel)
