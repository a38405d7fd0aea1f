"""
What the contacts tests share: Meta webhooks built for the `meta` provider (tests/conftest.py: a Meta
number whose sends go to `fake_meta`), received and processed as the webhook view and the inbox task do, a
second business, and a way to race calls in threads.
"""

import itertools
import json
import time

from contacts.models import Contact, ContactIdentity
from tests.signing import META_APP_SECRET, META_WABA_ID, meta_headers
from whatsapp.models import Provider, WebhookEvent
from whatsapp.providers import backend_for
from whatsapp.providers.base import WebhookRequest
from whatsapp.services.providers import provider_create
from whatsapp.services.webhooks import webhook_event_process, webhook_event_record

# The `meta` fixture's app secret (it signs the webhooks) and business account.
APP_SECRET = META_APP_SECRET
META_WABA = META_WABA_ID
_message_ids = itertools.count(1)

ANA_WA_ID = "16505551234"
ANA_PHONE = "+16505551234"
ANA_BSUID = "US.13491208655302741918"
ANA_PARENT_BSUID = "US.ENT.11815799212886844830"


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


def other_business() -> Provider:
    """A second Meta number in another business account (another WABA), with its own app secret."""
    return provider_create(kind="meta", name="Meta other business", options={
        "phone_number_id": "207710000000001", "waba_id": "300400500600700", "phone_number": "+15550002222",
        "access_token": "EAAother-token", "app_secret": "other-app-secret", "verify_token": "verify-other"})
