"""
The messaging admin, one module per screen: providers, conversations (the inbox list; the page in
conversation_page.py, its chat in chat.py, its send box in send_form.py), labels and saved replies,
messages (with dead letters, send attempts and status reports), the webhook inbox, media, sessions and
the archive storage's bookkeeping; forms.py holds their forms, filters.py the list filters other apps'
pages share, archive.py the base of the lists of archived rows, extensions.py the hooks through which
the apps above add actions to the message list and panels to the conversation page. Their page queries
are in whatsapp.selectors.

Importing this package (Django's admin autodiscovery does) registers every page.
"""

from whatsapp.admin import (  # noqa: F401  (each module registers its pages with the admin site)
    conversations,
    inbox,
    labels,
    media,
    messages,
    providers,
    sessions,
    storage,
    teams,
)
