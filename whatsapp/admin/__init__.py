"""
The messaging admin, one module per screen: providers, conversations (with the chat in chat.py),
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
    media,
    messages,
    providers,
    sessions,
    storage,
)
