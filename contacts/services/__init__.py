"""Contacts: the identity ledger, mapping to users, consent, verification and merging."""
