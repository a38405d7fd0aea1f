"""
A user account is deleted: what it leaves behind. Their contacts go back to the unmapped queue and their
data exports are deleted; erasing the data itself is only ever the GDPR erase action.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from contacts.models import Contact, ContactUserMapping
from contacts.services.export import data_exports_delete_for_user
from contacts.services.mapping import mapping_state
from core.audit import audit_record

logger = logging.getLogger(__name__)


@transaction.atomic
def mappings_release_for_user(user: Any, actor: Any = None) -> list[int]:
    """
    The user is being deleted: every contact mapped to them goes back to the unmapped queue with all its
    messages (deleting an account is no erasure; user_data_erase is the one way to erase), and their data
    exports go with their zips, which hold the person's data. Audited per contact and once for the user.
    Returns the ids of the contacts unmapped.
    """
    # One change of this user's data at a time: waits for an erasure or an export request in progress.
    # FOR NO KEY UPDATE, as they take it, so a worker recording the user's bucket is not blocked by it.
    get_user_model().objects.select_for_update(no_key=True).filter(pk=user.pk).first()
    exports_deleted = data_exports_delete_for_user(user)
    mappings = list(ContactUserMapping.objects.select_for_update(of=("self",)).select_related("contact")
                    .filter(user=user).order_by("contact_id"))
    contact_ids = [mapping.contact_id for mapping in mappings]
    ContactUserMapping.objects.filter(pk__in=[mapping.pk for mapping in mappings]).delete()
    # An auto-mapped contact may have been ignored before; back in the queue means a person sees it.
    Contact.objects.filter(pk__in=contact_ids, is_ignored=True).update(is_ignored=False)
    for mapping in mappings:
        audit_record(action="contact.unmap", obj=mapping.contact, actor=actor, before=mapping_state(mapping),
                     after={"user": None, "reason": "user deleted"})
    if contact_ids or exports_deleted:
        audit_record(action="user.delete", obj=user, actor=actor,
                     before={"username": user.get_username()},
                     after={"contacts_unmapped": contact_ids, "exports_deleted": exports_deleted})
    if contact_ids:
        logger.info("user deleted; their contacts are back in the unmapped queue",
                    extra={"user_id": user.pk, "contact_ids": contact_ids})
    return contact_ids
