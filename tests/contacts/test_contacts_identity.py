"""
The identity ledger: how Meta names a sender (a phone number, and since 2026 a business-scoped user id
with or without the phone) resolved to one contact, driven through signed Meta webhooks processed by
the webhook inbox, and two webhooks for one new person racing in two threads on real PostgreSQL.

The helpers at the top (Meta payload builders, `deliver`, `in_threads`) are shared by the other
tests/test_contacts_*.py files.
"""

import itertools
import json
import threading
import time

import pytest
from django.db import connection

from contacts.models import Contact, ContactIdentity
from contacts.services.identities import contact_resolve, phone_parse_e164, phone_to_e164
from tests import test_outbound_pipeline as pipeline
from tests.signing import meta_headers
from whatsapp.models import Conversation, Message, Provider, Session, WebhookEvent
from whatsapp.providers import backend_for
from whatsapp.providers.base import WebhookRequest
from whatsapp.providers.events import Identity, IdentityKind
from whatsapp.services.providers import provider_create
from whatsapp.services.webhooks import webhook_event_process, webhook_event_record

# The send pipeline's fixtures: a local server speaking Meta's Graph API, and a Meta provider sending to it.
fake_meta, meta = pipeline.fake_meta, pipeline.meta
# The `meta` fixture's app secret (it signs the webhooks) and business account.
APP_SECRET = "app-secret"
META_WABA = "102290129340398"
_message_ids = itertools.count(1)

ANA_WA_ID = "16505551234"
ANA_PHONE = "+16505551234"
ANA_BSUID = "US.13491208655302741918"
ANA_PARENT_BSUID = "US.ENT.11815799212886844830"


# --- shared helpers ---------------------------------------------------------------------------------

def meta_envelope(provider: Provider, value: dict) -> bytes:
    """A Meta `messages` webhook for this provider's number and business account."""
    return json.dumps({"object": "whatsapp_business_account", "entry": [{
        "id": provider.business_account_id,
        "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": provider.external_id},
            **value}}]}]}).encode()


def meta_text(provider: Provider, text: str = "Hello", *, wa_id: str = "", user_id: str = "",
              parent_user_id: str = "", username: str = "", name: str = "Ana Pereira",
              message_id: str = "") -> bytes:
    """A text from a sender named by a phone (wa_id), a business-scoped user id, or both (2026 shapes)."""
    profile = {"name": name, **({"username": username} if username else {})}
    contact = {"profile": profile, **({"wa_id": wa_id} if wa_id else {}), **({"user_id": user_id} if user_id else {}),
               **({"parent_user_id": parent_user_id} if parent_user_id else {})}
    message = {"id": message_id or f"wamid.contacts-{next(_message_ids)}", "timestamp": str(int(time.time())),
               "type": "text", "text": {"body": text},
               **({"from": wa_id} if wa_id else {}), **({"from_user_id": user_id} if user_id else {})}
    return meta_envelope(provider, {"contacts": [contact], "messages": [message]})


def meta_failed_status(provider: Provider, provider_message_id: str, *, recipient: str, code: int,
                       title: str = "Message undeliverable") -> bytes:
    return meta_envelope(provider, {"statuses": [{
        "id": provider_message_id, "status": "failed", "timestamp": str(int(time.time())), "recipient_id": recipient,
        "errors": [{"code": code, "title": title, "message": title,
                    "error_data": {"details": "Message failed to send."}}]}]})


def webhook_receive(provider: Provider, body: bytes, headers: dict[str, str]) -> int:
    """Receive a signed webhook as the webhook view does (signature checked, then stored in the inbox);
    the inbox row's id."""
    request = WebhookRequest(method="POST", public_url="", body=body, content_type="application/json",
                             headers={name.lower(): value for name, value in headers.items()})
    handler = backend_for(provider)
    handler.verify_webhook(request)
    handler.check_body(request)
    event, created = webhook_event_record(kind=provider.kind, provider=provider, request=request,
                                          remote_addr="127.0.0.1", signature_valid=True)
    assert created
    return event.pk


def webhook_post(provider: Provider, body: bytes, secret: str = APP_SECRET) -> int:
    """A Meta webhook, signed with the app secret the way Meta signs."""
    return webhook_receive(provider, body, meta_headers(body, secret))


def process(event_id: int) -> WebhookEvent:
    """Process a stored webhook as the inbox task does; it must go through cleanly."""
    event = webhook_event_process(event_id)
    assert (event.status, event.last_error) == ("processed", "")
    return event


def deliver(provider: Provider, body: bytes, secret: str = APP_SECRET) -> WebhookEvent:
    """Receive and process one Meta webhook."""
    return process(webhook_post(provider, body, secret))


def contact_named(kind: str, value: str, scope: str = "") -> Contact:
    return ContactIdentity.objects.select_related("contact").get(kind=kind, value=value, scope=scope).contact


def identities_of(contact: Contact) -> set[tuple[str, str, str]]:
    return set(contact.identities.values_list("kind", "value", "scope"))


def in_threads(*calls):
    """Run the calls at the same moment, each in its own thread with its own database connection."""
    barrier = threading.Barrier(len(calls))
    results, errors = [None] * len(calls), []

    def run(index, call):
        try:
            barrier.wait(timeout=10)
            results[index] = call()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    assert not errors, errors
    return results


def other_business() -> Provider:
    """A second Meta number in another business account (another WABA), with its own app secret."""
    return provider_create(kind="meta", name="Meta other business", options={
        "phone_number_id": "207710000000001", "waba_id": "300400500600700", "phone_number": "+15550002222",
        "access_token": "EAAother-token", "app_secret": "other-app-secret", "verify_token": "verify-other"})


# --- one message, several identities ------------------------------------------------------------------

@pytest.mark.django_db
def test_phone_and_business_scoped_id_in_one_message_make_one_contact_with_both(meta):
    deliver(meta, meta_text(meta, wa_id=ANA_WA_ID, user_id=ANA_BSUID, parent_user_id=ANA_PARENT_BSUID,
                            username="@ana.p"))
    contact = Contact.objects.get()
    assert contact.profile_name == "Ana Pereira"
    assert identities_of(contact) == {
        ("phone", ANA_PHONE, ""), ("whatsapp_id", ANA_WA_ID, ""),
        # Business-scoped ids carry the business account they belong to.
        ("bsuid", ANA_BSUID, META_WABA), ("bsuid_parent", ANA_PARENT_BSUID, META_WABA),
        ("username", "@ana.p", ""),
    }
    message = Message.objects.get()
    assert (message.conversation.contact, message.text) == (contact, "Hello")


@pytest.mark.django_db
def test_business_scoped_id_only_sender_gets_a_contact_without_a_phone(meta):
    deliver(meta, meta_text(meta, "no phone number here", user_id=ANA_BSUID, name="Dani"))
    contact = Contact.objects.get()
    assert identities_of(contact) == {("bsuid", ANA_BSUID, META_WABA)}
    assert not contact.identities.filter(kind__in=["phone", "whatsapp_id"]).exists()
    message = Message.objects.get()
    assert (message.conversation.contact, message.text) == (contact, "no phone number here")
    assert Session.objects.get(conversation__contact=contact).state == "open"

    deliver(meta, meta_text(meta, "still me", user_id=ANA_BSUID, name="Dani"))
    assert Contact.objects.count() == 1
    assert list(Message.objects.order_by("pk").values_list("conversation__contact", flat=True)) == [contact.pk] * 2


@pytest.mark.django_db
def test_the_same_business_scoped_id_at_two_businesses_makes_two_contacts(meta, fake_meta):
    other = other_business()
    deliver(meta, meta_text(meta, "to the first business", user_id=ANA_BSUID))
    deliver(other, meta_text(other, "to the second business", user_id=ANA_BSUID), secret="other-app-secret")

    first, second = contact_named("bsuid", ANA_BSUID, META_WABA), contact_named("bsuid", ANA_BSUID, "300400500600700")
    assert first != second and Contact.objects.count() == 2
    assert Message.objects.get(text="to the first business").conversation.contact == first
    assert Message.objects.get(text="to the second business").conversation.contact == second
    assert set(Conversation.objects.values_list("provider", "contact")) == {(meta.pk, first.pk), (other.pk, second.pk)}


@pytest.mark.django_db
def test_a_phone_number_is_one_person_across_businesses(meta, fake_meta):
    other = other_business()
    deliver(meta, meta_text(meta, wa_id=ANA_WA_ID))
    deliver(other, meta_text(other, wa_id=ANA_WA_ID), secret="other-app-secret")
    contact = Contact.objects.get()
    assert Conversation.objects.filter(contact=contact).count() == 2


@pytest.mark.django_db
def test_a_later_message_with_phone_and_business_id_links_the_id_to_the_phone_contact(meta):
    deliver(meta, meta_text(meta, "first, before 2026", wa_id=ANA_WA_ID))
    contact = Contact.objects.get()
    deliver(meta, meta_text(meta, "now with my user id", wa_id=ANA_WA_ID, user_id=ANA_BSUID))

    assert Contact.objects.get() == contact
    assert ("bsuid", ANA_BSUID, META_WABA) in identities_of(contact)
    # One thread and one window for the person.
    assert Conversation.objects.get().contact == contact
    assert Message.objects.filter(conversation__contact=contact).count() == 2
    assert Session.objects.filter(state="open").count() == 1

    # From now on the business-scoped id alone finds the same contact.
    deliver(meta, meta_text(meta, "phone hidden now", user_id=ANA_BSUID))
    assert Contact.objects.count() == 1
    assert Message.objects.get(text="phone hidden now").conversation.contact == contact


@pytest.mark.django_db
def test_a_business_id_contact_gains_the_phone_when_a_message_names_both(meta):
    deliver(meta, meta_text(meta, "id only", user_id=ANA_BSUID))
    contact = Contact.objects.get()
    deliver(meta, meta_text(meta, "both", wa_id=ANA_WA_ID, user_id=ANA_BSUID))
    assert Contact.objects.get() == contact
    assert {("phone", ANA_PHONE, ""), ("whatsapp_id", ANA_WA_ID, "")} <= identities_of(contact)


@pytest.mark.django_db
def test_a_message_naming_two_existing_contacts_does_not_merge_them(meta):
    deliver(meta, meta_text(meta, "phone contact", wa_id=ANA_WA_ID))
    deliver(meta, meta_text(meta, "id contact", user_id=ANA_BSUID))
    phone_contact, id_contact = contact_named("phone", ANA_PHONE), contact_named("bsuid", ANA_BSUID, META_WABA)
    assert phone_contact != id_contact

    deliver(meta, meta_text(meta, "both at once", wa_id=ANA_WA_ID, user_id=ANA_BSUID))
    # Merging is a person's decision (the admin's merge action); the message goes to the first one named.
    assert Contact.objects.count() == 2
    assert contact_named("bsuid", ANA_BSUID, META_WABA) == id_contact
    assert Message.objects.get(text="both at once").conversation.contact == phone_contact


@pytest.mark.django_db
def test_contact_resolve_normalizes_phones_and_emails(meta):
    contact = contact_resolve(provider=meta, identities=[Identity(IdentityKind.PHONE, "+1 (650) 555-1234"),
                                                         Identity(IdentityKind.EMAIL, " Ana@Example.COM ")])
    assert identities_of(contact) == {("phone", ANA_PHONE, ""), ("email", "ana@example.com", "")}
    again = contact_resolve(provider=meta, identities=[Identity(IdentityKind.PHONE, "16505551234")])
    assert again == contact
    with pytest.raises(ValueError):
        contact_resolve(provider=meta, identities=[Identity(IdentityKind.PHONE, "")])


def test_phone_helpers():
    assert phone_to_e164("+44 20 7946 0958") == "+442079460958"
    assert phone_to_e164("5511987650001") == "+5511987650001"
    assert phone_parse_e164("  +55 11 98765-0001 ") == "+5511987650001"
    for bad in ("not a number", "+1 23", ""):
        with pytest.raises(ValueError):
            phone_parse_e164(bad)


# --- races: two webhooks for one new person at the same moment ----------------------------------------

def _race_webhooks(provider: Provider, first: bytes, second: bytes) -> list[WebhookEvent]:
    # Both requests are stored (committed) first, as the webhook view does; then two workers take one each.
    events = [webhook_post(provider, first), webhook_post(provider, second)]
    processed = in_threads(*(lambda event_id=event_id: webhook_event_process(event_id) for event_id in events))
    assert [(event.status, event.last_error) for event in processed] == [("processed", "")] * 2
    return processed


@pytest.mark.django_db(transaction=True)
def test_two_webhooks_for_a_new_contact_at_once_make_one_contact(meta):
    for attempt in range(5):
        wa_id, bsuid = f"1650555{attempt:04d}", f"US.9000{attempt}"
        _race_webhooks(meta, meta_text(meta, "first", wa_id=wa_id, user_id=bsuid),
                       meta_text(meta, "second", wa_id=wa_id, user_id=bsuid))
        contact = contact_named("phone", f"+{wa_id}")
        assert Contact.objects.filter(identities__value__in=[f"+{wa_id}", bsuid]).distinct().count() == 1
        assert identities_of(contact) >= {("phone", f"+{wa_id}", ""), ("bsuid", bsuid, META_WABA)}
        conversation = Conversation.objects.get(contact=contact)
        assert conversation.messages.count() == 2
        assert Session.objects.filter(conversation=conversation, state="open").count() == 1
    assert Contact.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_two_webhooks_naming_a_new_contact_differently_make_one_contact(meta):
    for attempt in range(5):
        wa_id, bsuid = f"1650556{attempt:04d}", f"US.9100{attempt}"
        # One message knows only the phone; the other knows the phone and the business-scoped id.
        _race_webhooks(meta, meta_text(meta, "phone only", wa_id=wa_id),
                       meta_text(meta, "phone and id", wa_id=wa_id, user_id=bsuid))
        contact = contact_named("phone", f"+{wa_id}")
        assert contact_named("bsuid", bsuid, META_WABA) == contact
        assert Message.objects.filter(conversation__contact=contact).count() == 2
    assert Contact.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_identities_in_opposite_orders_at_once_resolve_to_one_contact(meta):
    for attempt in range(5):
        phone = Identity(IdentityKind.PHONE, f"+1650557{attempt:04d}")
        bsuid = Identity(IdentityKind.BUSINESS_SCOPED_ID, f"US.9200{attempt}")
        first, second = in_threads(
            lambda phone=phone, bsuid=bsuid: contact_resolve(provider=meta, identities=[phone, bsuid]),
            lambda phone=phone, bsuid=bsuid: contact_resolve(provider=meta, identities=[bsuid, phone]))
        assert first.pk == second.pk
        assert identities_of(first) == {("phone", phone.value, ""), ("bsuid", bsuid.value, META_WABA)}
    assert Contact.objects.count() == 5
