"""
Contacts in the admin, one module per screen: the contact pages (identities, consent history, mapping,
merging), the mappings and the unmapped-contacts queue with its suggested users, the consent keywords
and history, the verification codes, the users (their WhatsApp profile, and the GDPR actions on the
user list: export a user's WhatsApp data, erase it) and the exports' downloads. forms.py and display.py
hold what several screens share; the page queries are in contacts.selectors. Deleting a user unmaps
their contacts, and its confirmation page says so. Every action calls a service, which audits it.

Importing this package (Django's admin autodiscovery does) registers every page.
"""

from contacts.admin import (  # noqa: F401  (each module registers its pages with the admin site)
    consent,
    contacts,
    exports,
    mappings,
    users,
    verification,
)
