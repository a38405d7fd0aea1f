"""Inbound media downloads against local servers speaking each provider's media protocol."""

import base64
import hashlib
import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from core.storage import get_storage
from tests.conftest import FIXTURES, event_id, fixture_bytes, json_body, start_worker, stop_worker, wait_until
from tests.fakes import FakeServer, Reply
from tests.signing import (
    TWILIO_ACCOUNT_SID,
    make_chatwoot,
    make_meta,
    make_twilio,
    post_chatwoot,
    post_meta,
    post_twilio,
)
from whatsapp.models import Media, Message
from whatsapp.services.media import media_download, media_requeue_due
from whatsapp.services.webhooks import webhook_event_process
from whatsapp.tasks import requeue_due_media_downloads_task

pytestmark = pytest.mark.django_db

PHOTO = b"\xff\xd8\xff\xe0 a small jpeg-ish photo \xff\xd9" * 40


def _meta_image(client, graph) -> Media:
    provider = make_meta()
    graph.routes["/v25.0/1410000000000101"] = [Reply.json({
        "messaging_product": "whatsapp", "url": f"{graph.url}/whatsapp_business/attachments/photo-1",
        "mime_type": "image/jpeg", "sha256": hashlib.sha256(PHOTO).hexdigest(), "file_size": len(PHOTO),
        "id": "1410000000000101"})]
    response = post_meta(client, provider, fixture_bytes("meta", "image.json"))
    webhook_event_process(json_body(response)["event"])
    # The fixture's message is from October: its 7-day media lifetime has passed. Pretend it is fresh.
    Media.objects.update(expires_at=timezone.now() + timedelta(days=7))
    return Media.objects.get()


def test_meta_download_fails_twice_then_succeeds_and_the_message_is_never_touched(client, graph):
    media = _meta_image(client, graph)
    graph.routes["/whatsapp_business/attachments/photo-1"] = [
        Reply(503, b"busy"), Reply(500, b"oops"), Reply(200, PHOTO, {"Content-Type": "image/jpeg"})]
    message_before = Message.objects.values().get()

    first = media_download(media.pk)
    assert (first.state, first.attempts) == ("pending", 1) and "HTTP 503" in first.last_error
    assert first.next_attempt_at > timezone.now()
    assert media_requeue_due() == 0  # not due yet: backoff
    Media.objects.filter(pk=media.pk).update(next_attempt_at=timezone.now())
    second = media_download(media.pk)
    assert (second.state, second.attempts) == ("pending", 2) and "HTTP 500" in second.last_error
    assert second.next_attempt_at - timezone.now() > timedelta(seconds=45)  # the delay doubled
    third = media_download(media.pk)
    assert (third.state, third.attempts, third.size_bytes) == ("fetched", 3, len(PHOTO))
    assert get_storage().read(third.archive_path) == PHOTO
    assert third.archive_path.endswith(".jpg") and "whatsapp-messages/2026-10-26/" in third.archive_path

    # Each attempt resolved the id afresh (download URLs live ~5 minutes) with the bearer token.
    resolves = graph.hits("/v25.0/1410000000000101")
    assert len(resolves) == 3
    assert all(r.headers["authorization"] == "Bearer meta-access-token" for r in graph.requests)
    assert "phone_number_id=109900112233445" in resolves[0].query
    assert Message.objects.values().get() == message_before
    assert media_download(media.pk).attempts == 3  # done: another run changes nothing


def test_meta_checksum_mismatch_is_retried_not_stored(client, graph):
    media = _meta_image(client, graph)
    graph.routes["/whatsapp_business/attachments/photo-1"] = [Reply(200, b"tampered bytes")]
    media = media_download(media.pk)
    assert media.state == "pending" and "sha256" in media.last_error and not media.archive_path


def test_meta_media_id_gone_fails_permanently(client, graph):
    media = _meta_image(client, graph)
    graph.routes["/v25.0/1410000000000101"] = [Reply.json(
        {"error": {"message": "Unsupported get request", "type": "GraphMethodException", "code": 100}}, 400)]
    media = media_download(media.pk)
    assert (media.state, media.next_attempt_at) == ("failed", None)
    assert "HTTP 400" in media.last_error
    assert Message.objects.get().text == "The damaged box"


def test_meta_download_stops_when_the_media_id_expires(client, graph):
    media = _meta_image(client, graph)
    graph.routes["/whatsapp_business/attachments/photo-1"] = [Reply(503, b"busy")]
    Media.objects.filter(pk=media.pk).update(expires_at=timezone.now() + timedelta(seconds=10))
    assert media_download(media.pk).state == "expired"


def test_requeue_job_hands_due_downloads_back(client, graph):
    media = _meta_image(client, graph)
    Media.objects.filter(pk=media.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert media_requeue_due() == 1
    assert Media.objects.get().next_attempt_at > timezone.now()


def test_twilio_media_with_account_credentials_and_redirect(client, settings):
    with FakeServer() as twilio_api:
        settings.TWILIO_API_BASE_URL = twilio_api.url
        provider = make_twilio()
        form = json.loads((FIXTURES / "twilio" / "inbound_image.json").read_text())
        media_path = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages/SM1/Media/ME1"
        form["MediaUrl0"] = twilio_api.url + media_path
        twilio_api.routes[media_path] = [Reply(307, b"", {"Location": f"{twilio_api.url}/s3/photo"})]
        twilio_api.routes["/s3/photo"] = [Reply(200, PHOTO, {"Content-Type": "image/jpeg"})]
        webhook_event_process(event_id(post_twilio(client, provider, form)))
        media = media_download(Media.objects.get().pk)
    assert media.state == "fetched" and get_storage().read(media.archive_path) == PHOTO
    expected = "Basic " + base64.b64encode(f"{TWILIO_ACCOUNT_SID}:twilio-auth-token-for-tests".encode()).decode()
    assert twilio_api.hits(media_path)[0].headers["authorization"] == expected


def test_chatwoot_data_url_redirect(client):
    with FakeServer() as chatwoot_server:
        provider = make_chatwoot(base_url=chatwoot_server.url)
        body = fixture_bytes("chatwoot", "message_created_image.json").replace(
            b"https://chat.example.test", chatwoot_server.url.encode())
        redirect_path = "/rails/active_storage/blobs/redirect/eyJfcmFpbHMiOnsiZGF0YSI6MzMwMX19--sig/box.jpg"
        chatwoot_server.routes[redirect_path] = [Reply(302, b"", {"Location": f"{chatwoot_server.url}/blob/box"})]
        chatwoot_server.routes["/blob/box"] = [Reply(200, PHOTO, {"Content-Type": "image/jpeg"})]
        webhook_event_process(json_body(post_chatwoot(client, provider, body))["event"])
        media = media_download(Media.objects.get().pk)
    assert (media.state, media.size_bytes) == ("fetched", len(PHOTO))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_processes_the_webhook_and_downloads_the_media(client, worker_env, tmp_path):
    with FakeServer() as graph:
        graph.routes["/v25.0/1410000000000101"] = [Reply.json({
            "url": f"{graph.url}/attachments/photo-1", "mime_type": "image/jpeg",
            "sha256": hashlib.sha256(PHOTO).hexdigest(), "id": "1410000000000101"})]
        graph.routes["/attachments/photo-1"] = [Reply(503, b"busy"), Reply(200, PHOTO)]
        env = {**worker_env, "META_GRAPH_BASE_URL": graph.url, "META_GRAPH_API_VERSION": "v25.0"}
        worker = start_worker(env, tmp_path / "worker.log", "media")
        try:
            provider = make_meta()
            # A message from now, so its media id is within Meta's 7-day lifetime.
            body = fixture_bytes("meta", "image.json").replace(b'"1793000002"', f'"{int(time.time())}"'.encode())
            assert post_meta(client, provider, body).status_code == 200
            media = wait_until(lambda: Media.objects.filter(attempts__gte=1).first(), 30,
                               message="the worker to store the message and try the download")
            assert Message.objects.get().text == "The damaged box"
            # First try got a 503; make the retry due now and let the beat job's task hand it back.
            assert (media.state, media.attempts) == ("pending", 1)
            Media.objects.filter(pk=media.pk).update(next_attempt_at=timezone.now())

            requeue_due_media_downloads_task.delay()
            media = wait_until(lambda: Media.objects.filter(pk=media.pk, state="fetched").first(), 30,
                               message="the retried download")
        finally:
            stop_worker(worker)
    assert media.attempts == 2 and get_storage().read(media.archive_path) == PHOTO
