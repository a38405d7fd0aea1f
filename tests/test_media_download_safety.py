"""
Media downloads fetch only from the provider's own hosts, never from a private address (unless allowed),
and never hand the provider's credentials to another host. Local servers play the provider (127.0.0.1)
and a host that must not be reached (127.0.0.2: Linux answers on all of 127/8).
"""

import hashlib
import ipaddress
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import FIXTURES, event_id, fixture_bytes, json_body
from tests.fakes import FakeServer, Reply
from tests.signing import make_chatwoot, make_meta, make_twilio, post_chatwoot, post_meta, post_twilio
from whatsapp.models import Media
from whatsapp.providers.safe_fetch import DownloadRefused, address_problem, fetch_media, host_allowed
from whatsapp.services.media import media_download
from whatsapp.services.webhooks import webhook_event_process
from whatsapp.storage import get_storage

pytestmark = pytest.mark.django_db

PHOTO = b"\xff\xd8\xff\xe0 a photo \xff\xd9" * 40
MEDIA_ID = "1410000000000101"


@pytest.fixture
def graph(settings):
    with FakeServer() as server:
        settings.META_GRAPH_BASE_URL = server.url
        settings.META_GRAPH_API_VERSION = "v25.0"
        yield server


@pytest.fixture
def elsewhere():
    """A host that is no provider's: whatever reaches it is a leak."""
    with FakeServer(host="127.0.0.2") as server:
        server.routes["/loot"] = [Reply(200, PHOTO, {"Content-Type": "image/jpeg"})]
        yield server


def _meta_media(client, graph, file_url: str) -> Media:
    """An inbound Meta image whose media id the Graph API resolves to `file_url`."""
    provider = make_meta()
    graph.routes[f"/v25.0/{MEDIA_ID}"] = [Reply.json({
        "messaging_product": "whatsapp", "url": file_url, "mime_type": "image/jpeg",
        "sha256": hashlib.sha256(PHOTO).hexdigest(), "file_size": len(PHOTO), "id": MEDIA_ID})]
    webhook_event_process(json_body(post_meta(client, provider, fixture_bytes("meta", "image.json")))["event"])
    Media.objects.update(expires_at=timezone.now() + timedelta(days=7))
    return Media.objects.get()


def test_meta_url_on_another_host_is_refused_and_never_requested(client, graph, elsewhere):
    media = media_download(_meta_media(client, graph, f"{elsewhere.url}/loot").pk)
    assert (media.state, media.next_attempt_at, media.archive_path) == ("failed", None, "")
    assert "refused to download from 127.0.0.2: not one of Meta Cloud API's media hosts" in media.last_error
    assert "lookaside.fbsbx.com" in media.last_error
    assert elsewhere.requests == []


def test_an_allowed_host_name_at_a_loopback_address_is_refused_before_connecting(client, graph, settings):
    settings.MEDIA_ALLOW_PRIVATE_ADDRESSES = False
    # The configured Graph host is allowed by name, but the name resolves to a loopback address.
    settings.META_GRAPH_BASE_URL = f"http://localhost:{graph.port}"
    graph.routes["/attachments/photo-1"] = [Reply(200, PHOTO)]
    media = media_download(_meta_media(client, graph, f"http://localhost:{graph.port}/attachments/photo-1").pk)
    assert media.state == "failed"
    assert media.last_error == "attempt 1: refused to download from localhost: it resolves to 127.0.0.1, " \
                               "a loopback address"
    assert graph.hits("/attachments/photo-1") == []


def test_with_private_addresses_allowed_the_download_connects_to_the_checked_address(client, graph, settings):
    settings.META_GRAPH_BASE_URL = f"http://localhost:{graph.port}"
    graph.routes["/attachments/photo-1"] = [Reply(200, PHOTO)]
    media = media_download(_meta_media(client, graph, f"http://localhost:{graph.port}/attachments/photo-1").pk)
    assert media.state == "fetched" and get_storage().read(media.archive_path) == PHOTO
    # Connected to the address it checked, still asking for the host by its name.
    assert graph.hits("/attachments/photo-1")[0].headers["host"] == f"localhost:{graph.port}"


def test_meta_redirect_to_another_host_is_refused(client, graph, elsewhere):
    graph.routes["/attachments/photo-1"] = [Reply(302, b"", {"Location": f"{elsewhere.url}/loot"})]
    media = media_download(_meta_media(client, graph, f"{graph.url}/attachments/photo-1").pk)
    assert media.state == "failed"
    assert "refused to download from 127.0.0.2 (redirected from 127.0.0.1): not one of Meta Cloud API's" \
        in media.last_error
    assert elsewhere.requests == []


def test_meta_token_is_not_sent_past_a_redirect_to_another_origin(client, graph):
    with FakeServer() as cdn:  # the same allowed host name, another origin (port)
        cdn.routes["/photo"] = [Reply(200, PHOTO, {"Content-Type": "image/jpeg"})]
        graph.routes["/attachments/photo-1"] = [Reply(307, b"", {"Location": f"{cdn.url}/photo"})]
        media = media_download(_meta_media(client, graph, f"{graph.url}/attachments/photo-1").pk)
    assert media.state == "fetched" and get_storage().read(media.archive_path) == PHOTO
    assert graph.hits("/attachments/photo-1")[0].headers["authorization"] == "Bearer meta-access-token"
    assert "authorization" not in cdn.hits("/photo")[0].headers


def test_endless_redirects_fail_the_download(client, graph):
    graph.routes["/attachments/photo-1"] = [Reply(302, b"", {"Location": "/attachments/photo-1"})]
    media = media_download(_meta_media(client, graph, f"{graph.url}/attachments/photo-1").pk)
    assert media.state == "failed" and "redirected more than 5 times" in media.last_error
    assert len(graph.hits("/attachments/photo-1")) == 6


def _twilio_media(client, twilio_api, media_path: str) -> Media:
    provider = make_twilio()
    form = json.loads((FIXTURES / "twilio" / "inbound_image.json").read_text())
    form["MediaUrl0"] = twilio_api.url + media_path
    webhook_event_process(event_id(post_twilio(client, provider, form)))
    return Media.objects.get()


def test_twilio_redirect_to_another_host_is_refused_without_reaching_it(client, settings, elsewhere):
    with FakeServer() as twilio_api:
        settings.TWILIO_API_BASE_URL = twilio_api.url
        twilio_api.routes["/media/ME1"] = [Reply(307, b"", {"Location": f"{elsewhere.url}/loot"})]
        media = media_download(_twilio_media(client, twilio_api, "/media/ME1").pk)
    assert media.state == "failed"
    assert "refused to download from 127.0.0.2 (redirected from 127.0.0.1): not one of Twilio's" in media.last_error
    assert "*.twiliocdn.com" in media.last_error
    assert elsewhere.requests == []


def test_twilio_credentials_stay_with_the_api_host(client, settings):
    with FakeServer() as twilio_api, FakeServer() as storage:
        settings.TWILIO_API_BASE_URL = twilio_api.url
        twilio_api.routes["/media/ME1"] = [Reply(307, b"", {"Location": f"{storage.url}/signed/photo?sig=abc"})]
        storage.routes["/signed/photo"] = [Reply(200, PHOTO, {"Content-Type": "image/jpeg"})]
        media = media_download(_twilio_media(client, twilio_api, "/media/ME1").pk)
    assert media.state == "fetched" and get_storage().read(media.archive_path) == PHOTO
    assert twilio_api.hits("/media/ME1")[0].headers["authorization"].startswith("Basic ")
    assert "authorization" not in storage.hits("/signed/photo")[0].headers


def test_twilio_media_url_outside_twilio_is_refused(client, settings, elsewhere):
    # TWILIO_API_BASE_URL is Twilio's own: a media URL on any other host is not fetched.
    media = media_download(_twilio_media(client, elsewhere, "/loot").pk)
    assert media.state == "failed" and "not one of Twilio's media hosts" in media.last_error
    assert elsewhere.requests == []


REDIRECT_PATH = "/rails/active_storage/blobs/redirect/eyJfcmFpbHMiOnsiZGF0YSI6MzMwMX19--sig/box.jpg"


def _chatwoot_media(client, chatwoot_server, **options) -> Media:
    provider = make_chatwoot(base_url=chatwoot_server.url, **options)
    body = fixture_bytes("chatwoot", "message_created_image.json").replace(
        b"https://chat.example.test", chatwoot_server.url.encode())
    webhook_event_process(json_body(post_chatwoot(client, provider, body))["event"])
    return Media.objects.get()


def test_chatwoot_redirect_to_a_storage_host_it_was_not_given_is_refused(client, elsewhere):
    with FakeServer() as chatwoot_server:
        chatwoot_server.routes[REDIRECT_PATH] = [Reply(302, b"", {"Location": f"{elsewhere.url}/loot"})]
        media = media_download(_chatwoot_media(client, chatwoot_server).pk)
    assert media.state == "failed" and "refused to download from 127.0.0.2" in media.last_error
    assert elsewhere.requests == []


def test_chatwoot_storage_host_named_in_the_provider_is_followed(client, elsewhere):
    with FakeServer() as chatwoot_server:
        chatwoot_server.routes[REDIRECT_PATH] = [Reply(302, b"", {"Location": f"{elsewhere.url}/loot"})]
        media = media_download(_chatwoot_media(client, chatwoot_server, media_storage_hosts="127.0.0.2").pk)
    assert media.state == "fetched" and get_storage().read(media.archive_path) == PHOTO
    assert "api_access_token" not in elsewhere.hits("/loot")[0].headers


def test_a_link_a_user_gave_is_fetched_only_from_a_public_address(settings):
    settings.MEDIA_ALLOW_PRIVATE_ADDRESSES = False
    with FakeServer() as internal:
        internal.routes["/secret"] = [Reply(200, b"internal data")]
        with pytest.raises(DownloadRefused) as refused:
            fetch_media(f"{internal.url}/secret", allowed_hosts=None, source="a link")
    assert str(refused.value) == "refused to download from 127.0.0.1: a loopback address"
    assert not refused.value.retryable
    assert internal.requests == []


@pytest.mark.parametrize(("address", "problem"), [
    ("10.1.2.3", "a private address"), ("192.168.0.10", "a private address"), ("127.0.0.2", "a loopback address"),
    ("169.254.169.254", "a link-local address"), ("224.0.0.251", "a multicast address"),
    ("0.0.0.0", "an unspecified address"),  # noqa: S104 (an address to classify, not to bind) ("240.0.0.1", "a reserved address"), ("100.64.0.1", "not a public address"),
    ("::1", "a loopback address"), ("::ffff:127.0.0.1", "a loopback address"), ("fe80::1", "a link-local address"),
    ("fd00::1", "a private address"), ("157.240.1.1", ""), ("2a03:2880::1", ""),
])
def test_address_classification(address, problem):
    assert address_problem(ipaddress.ip_address(address)) == problem


def test_host_patterns_cover_subdomains_only():
    hosts = ("*.twiliocdn.com", "api.twilio.com")
    assert host_allowed("mms.twiliocdn.com", hosts) and host_allowed("API.Twilio.com.", hosts)
    assert not host_allowed("twiliocdn.com.evil.test", hosts)
    assert not host_allowed("eviltwiliocdn.com", hosts)
    assert not host_allowed("api.twilio.com.evil.test", hosts)
