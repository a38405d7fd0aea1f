"""What the erasure tests share: people who write in through the sandbox, their webhooks archived."""

import hashlib
import uuid

from django.utils import timezone

from tests.conftest import json_body
from whatsapp.models import Media, Message, WebhookEvent
from whatsapp.providers.sandbox import inbound_body
from whatsapp.services.archive import media_store
from whatsapp.services.archive_bundles import webhook_bodies_bundle
from whatsapp.services.webhooks import webhook_event_process

ANA_PHONE = "+15551230001"
BEN_PHONE = "+15551230002"
CARL_PHONE = "+15551230003"
PHOTO = b"\xff\xd8\xff\xe0 a photo of the parcel \xff\xd9" * 40


def say(post_sandbox, provider, phone: str, text: str) -> WebhookEvent:
    """A contact writes: the webhook is processed; its raw body waits for its hour's bundle."""
    body = inbound_body(from_phone=phone, text=text, name=f"Person {phone[-4:]}", message_id=f"sbx-{uuid.uuid4()}")
    response = post_sandbox(provider, body)
    assert response.status_code == 200, response.content
    return webhook_event_process(json_body(response)["event"])


def say_archived(post_sandbox, provider, phone: str, text: str) -> WebhookEvent:
    """say, and the raw body archived at once (a bundle of its own)."""
    event_id = say(post_sandbox, provider, phone, text).pk
    webhook_bodies_bundle(event_ids=[event_id])
    event = WebhookEvent.objects.get(pk=event_id)
    assert event.archive_status == "archived", event.archive_error
    return event


def bundle_together(*events: WebhookEvent) -> list[WebhookEvent]:
    """These bodies archived in one bundle, as the beat job does with a bucket's hour."""
    assert webhook_bodies_bundle(event_ids=[event.pk for event in events]).bundles == 1
    return [WebhookEvent.objects.get(pk=event.pk) for event in events]


def photo_for(text: str) -> Media:
    message = Message.objects.get(text=text)
    media = Media.objects.create(message=message, mime_type="image/jpeg", filename="parcel.jpg",
                                 state=Media.State.FETCHED, sha256=hashlib.sha256(PHOTO).hexdigest(),
                                 size_bytes=len(PHOTO), fetched_at=timezone.now())
    media_store(media, PHOTO)
    media.save()
    assert media.archive_status == "archived"
    return media
