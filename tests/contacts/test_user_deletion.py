"""
Deleting a Django user erases nothing: whatever deletes the account (the shell, the admin, its bulk
action), the contacts mapped to the user go back to the unmapped queue with their conversations and
messages, each unmapping is audited and one entry names the user and the contacts; the user's data
exports go with their zips. The admin's delete confirmations say so. Only the GDPR erase action erases.
An export being built while the user is deleted delays the deletion; it is no error.
"""

import threading
import time
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.urls import reverse

from contacts.models import Contact, ContactUserMapping, DataExport
from contacts.services.mapping import contact_map_to_user, unmapped_contacts
from core.models import AuditLog
from tests.conftest import json_body, user_with_perms
from whatsapp.models import Message, StorageDeletion
from whatsapp.providers.sandbox import inbound_body
from whatsapp.services.webhooks import webhook_event_process

pytestmark = pytest.mark.django_db

ANA_PHONE, ANA_SECOND_PHONE, BEN_PHONE = "+15551230001", "+15551230011", "+15551230002"
NOTE = "go back to the unmapped queue"


def _say(post_sandbox, provider, phone: str, text: str) -> Contact:
    body = inbound_body(from_phone=phone, text=text, name=f"Person {phone[-4:]}", message_id=f"sbx-{uuid.uuid4()}")
    response = post_sandbox(provider, body)
    assert response.status_code == 200, response.content
    webhook_event_process(json_body(response)["event"])
    return Contact.objects.get(identities__value=phone)


@pytest.fixture
def ana(local_storage, sandbox_provider, post_sandbox, superuser):
    """Ana's user with two contacts (one of them once ignored), three messages and a ready export; Ben's
    user with his own contact."""
    user, ben_user = user_with_perms("ana"), user_with_perms("ben")
    first = _say(post_sandbox, sandbox_provider, ANA_PHONE, "Where is my parcel?")
    _say(post_sandbox, sandbox_provider, ANA_PHONE, "Any news?")
    second = _say(post_sandbox, sandbox_provider, ANA_SECOND_PHONE, "Writing from my other phone")
    ben = _say(post_sandbox, sandbox_provider, BEN_PHONE, "Ben says hello")
    for contact in (first, second):
        contact_map_to_user(contact=contact, user=user, actor=superuser)
    contact_map_to_user(contact=ben, user=ben_user, actor=superuser)
    Contact.objects.filter(pk=second.pk).update(is_ignored=True)  # ignored once, mapped by a rule since
    export = DataExport.objects.create(user=user, status=DataExport.Status.READY,
                                       location="wa-archive-u-ana/exports/export-1.zip")
    return {"user": user, "contacts": [first, second], "ben": ben, "export": export}


def _assert_unmapped_and_kept(data) -> None:
    contact_ids = [contact.pk for contact in data["contacts"]]
    assert not get_user_model().objects.filter(pk=data["user"].pk).exists()
    assert set(unmapped_contacts().filter(pk__in=contact_ids).values_list("pk", flat=True)) == set(contact_ids)
    assert Message.objects.filter(conversation__contact_id__in=contact_ids).count() == 3
    assert ContactUserMapping.objects.filter(contact=data["ben"]).exists()
    assert not AuditLog.objects.filter(action="user.erase").exists()
    # The export went, and its zip (the person's data) is due for deletion; nothing else leaves the storage.
    assert not DataExport.objects.filter(pk=data["export"].pk).exists()
    assert list(StorageDeletion.objects.values_list("target", "name")) == [("object", data["export"].location)]


def test_deleting_a_user_from_the_shell_sends_their_contacts_back_to_the_queue(ana):
    user_id = ana["user"].pk
    ana["user"].delete()

    _assert_unmapped_and_kept(ana)
    entry = AuditLog.objects.get(action="user.delete", object_id=str(user_id))
    assert (entry.actor_label, entry.object_repr) == ("system", "ana")
    assert entry.after == {"contacts_unmapped": [contact.pk for contact in ana["contacts"]], "exports_deleted": 1}
    for contact in ana["contacts"]:
        unmap = AuditLog.objects.get(action="contact.unmap", object_id=str(contact.pk))
        assert unmap.before["user"] == user_id and unmap.after["user"] is None


def test_the_admins_delete_page_says_what_happens_and_the_deletion_names_who_deleted(ana, admin_client_logged,
                                                                                      superuser):
    url = reverse("admin:auth_user_delete", args=[ana["user"].pk])
    page = admin_client_logged.get(url).content.decode()
    assert "2 WhatsApp contacts mapped to" in page and f"this user {NOTE}" in page
    assert "messages are kept" in page and "Erase WhatsApp data (GDPR)" in page

    response = admin_client_logged.post(url, {"post": "yes"})
    assert response.status_code == 302, response.content.decode()[:2000]
    _assert_unmapped_and_kept(ana)
    entry = AuditLog.objects.get(action="user.delete", object_id=str(ana["user"].pk))
    assert entry.actor == superuser
    assert set(AuditLog.objects.filter(action="contact.unmap").values_list("actor_label", flat=True)) == {"root"}


def test_the_bulk_delete_says_so_too(ana, admin_client_logged):
    url = reverse("admin:auth_user_changelist")
    selection = {"action": "delete_selected", "_selected_action": [ana["user"].pk]}
    page = admin_client_logged.post(url, selection).content.decode()
    assert "2 WhatsApp contacts mapped to" in page and f"these users {NOTE}" in page

    response = admin_client_logged.post(url, {**selection, "post": "yes"})
    assert response.status_code == 302
    _assert_unmapped_and_kept(ana)
    assert AuditLog.objects.filter(action="user.delete", actor__username="root").count() == 1


def test_a_user_without_contacts_gets_no_note(admin_client_logged):
    user = user_with_perms("nobody")
    page = admin_client_logged.get(reverse("admin:auth_user_delete", args=[user.pk])).content.decode()
    assert "Are you sure" in page and NOTE not in page


@pytest.mark.django_db(transaction=True)
def test_deleting_a_user_while_their_export_is_built_waits_for_it_and_deletes_its_zip(ana, admin_client_logged):
    export, building, written = ana["export"], threading.Event(), "wa-archive-u-ana/exports/export-2.zip"
    DataExport.objects.filter(pk=export.pk).update(status=DataExport.Status.PENDING, location="")

    def build_in_progress():
        # What a worker building the zip does: it holds the export's row while it writes, then records it.
        with transaction.atomic():
            DataExport.objects.select_for_update().get(pk=export.pk)
            building.set()
            time.sleep(1.5)
            DataExport.objects.filter(pk=export.pk).update(status=DataExport.Status.READY, location=written)
        connection.close()

    worker = threading.Thread(target=build_in_progress)
    worker.start()
    try:
        assert building.wait(timeout=10)
        response = admin_client_logged.post(reverse("admin:auth_user_delete", args=[ana["user"].pk]),
                                            {"post": "yes"})
    finally:
        worker.join(timeout=30)
    assert response.status_code == 302
    ana["export"].location = written
    _assert_unmapped_and_kept(ana)  # the zip the build wrote meanwhile is deleted, not left behind
