"""
Media downloads fetch only from the provider's own hosts, never from a private address (unless allowed),
and never hand the provider's credentials to another host. Local servers play the provider (127.0.0.1)
and a host that must not be reached (127.0.0.2: Linux answers on all of 127/8).
"""

import hashlib
import ipaddress
import json
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from core.storage import get_storage
from tests.conftest import FIXTURES, event_id, fixture_bytes, json_body
from tests.fakes import FakeServer, Reply
from tests.signing import make_chatwoot, make_meta, make_twilio, post_chatwoot, post_meta, post_twilio
from whatsapp.models import Media, Provider
from whatsapp.providers import backend_for, safe_fetch
from whatsapp.providers.base import ProviderError
from whatsapp.providers.chatwoot import ChatwootBackend
from whatsapp.providers.events import Identity, IdentityKind, MessageType, OutboundMedia, OutboundMessage
from whatsapp.providers.meta import MetaBackend
from whatsapp.providers.safe_fetch import (
    CheckedAddressTransport,
    DownloadRefused,
    address_problem,
    fetch_media,
    host_allowed,
)
from whatsapp.providers.twilio import TwilioBackend
from whatsapp.services.media import media_download
from whatsapp.services.webhooks import webhook_event_process

pytestmark = pytest.mark.django_db

PHOTO = b"\xff\xd8\xff\xe0 a photo \xff\xd9" * 40
MEDIA_ID = "1410000000000101"


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


def test_an_allowed_host_name_at_a_loopback_address_is_refused_before_connecting(client, graph, settings,
                                                                                 monkeypatch):
    settings.MEDIA_ALLOW_PRIVATE_ADDRESSES = False
    # One of Meta's media hosts by name (not a host the operator configured), resolving to a loopback address.
    monkeypatch.setattr(MetaBackend, "media_hosts", (*MetaBackend.media_hosts, "localhost"))
    graph.routes["/attachments/photo-1"] = [Reply(200, PHOTO)]
    media = media_download(_meta_media(client, graph, f"http://localhost:{graph.port}/attachments/photo-1").pk)
    assert media.state == "failed"
    assert media.last_error == "attempt 1: refused to download from localhost: it resolves to 127.0.0.1, " \
                               "a loopback address"
    assert graph.hits("/attachments/photo-1") == []


def test_the_configured_graph_host_may_be_a_private_address(client, graph, settings):
    # The operator named META_GRAPH_BASE_URL (a proxy, a test server): its host is trusted at any address.
    settings.MEDIA_ALLOW_PRIVATE_ADDRESSES = False
    settings.META_GRAPH_BASE_URL = f"http://localhost:{graph.port}"
    graph.routes["/attachments/photo-1"] = [Reply(200, PHOTO)]
    media = media_download(_meta_media(client, graph, f"http://localhost:{graph.port}/attachments/photo-1").pk)
    assert media.state == "fetched" and get_storage().read(media.archive_path) == PHOTO


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


def test_twilio_credentials_are_not_sent_to_a_storage_host_named_first(client, settings, monkeypatch):
    # A MediaUrl straight on a storage host Twilio redirects to: allowed, but no place for the auth token.
    with FakeServer() as twilio_api, FakeServer(host="127.0.0.2") as storage:
        settings.TWILIO_API_BASE_URL = twilio_api.url
        monkeypatch.setattr(TwilioBackend, "media_hosts", (*TwilioBackend.media_hosts, "127.0.0.2"))
        storage.routes["/signed/photo"] = [Reply(200, PHOTO, {"Content-Type": "image/jpeg"})]
        media = media_download(_twilio_media(client, storage, "/signed/photo").pk)
    assert media.state == "fetched" and get_storage().read(media.archive_path) == PHOTO
    assert "authorization" not in storage.hits("/signed/photo")[0].headers
    assert twilio_api.requests == []


def test_the_configured_twilio_host_may_be_a_private_address(client, settings):
    settings.MEDIA_ALLOW_PRIVATE_ADDRESSES = False
    with FakeServer() as twilio_api:
        settings.TWILIO_API_BASE_URL = twilio_api.url
        twilio_api.routes["/media/ME1"] = [Reply(200, PHOTO, {"Content-Type": "image/jpeg"})]
        media = media_download(_twilio_media(client, twilio_api, "/media/ME1").pk)
    assert media.state == "fetched" and get_storage().read(media.archive_path) == PHOTO
    assert twilio_api.hits("/media/ME1")[0].headers["authorization"].startswith("Basic ")


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


def test_the_configured_chatwoot_host_is_trusted_but_not_its_storage_hosts(client, settings, elsewhere):
    settings.MEDIA_ALLOW_PRIVATE_ADDRESSES = False
    with FakeServer() as chatwoot_server:
        chatwoot_server.routes[REDIRECT_PATH] = [Reply(302, b"", {"Location": f"{elsewhere.url}/loot"})]
        media = media_download(_chatwoot_media(client, chatwoot_server, media_storage_hosts="127.0.0.2").pk)
    # base_url (127.0.0.1) was fetched from; the storage host it redirected to is allowed, yet not trusted.
    assert len(chatwoot_server.hits(REDIRECT_PATH)) == 1
    assert media.state == "failed"
    assert media.last_error == "attempt 1: refused to download from 127.0.0.2: a loopback address"
    assert elsewhere.requests == []


def test_a_link_a_user_gave_on_the_chatwoot_host_gets_no_trust(settings):
    settings.MEDIA_ALLOW_PRIVATE_ADDRESSES = False
    with FakeServer() as chatwoot_server:
        chatwoot_server.routes["/files/a.pdf"] = [Reply(200, b"%PDF-1.7 tiny", {"Content-Type": "application/pdf"})]
        provider = backend_for(Provider(kind="chatwoot", name="c", external_id="7", business_account_id="3",
                                         config={"base_url": chatwoot_server.url}, credentials={"api_token": "t"}))
        link = OutboundMedia(MessageType.DOCUMENT, url=f"{chatwoot_server.url}/files/a.pdf")
        with pytest.raises(ProviderError) as refused:
            provider.send(OutboundMessage(to=(Identity(IdentityKind.PHONE, "+15551230001"),),
                                          message_type=MessageType.DOCUMENT, conversation_ref="19", media=link))
    assert refused.value.code == "download_refused" and "a loopback address" in str(refused.value)
    assert chatwoot_server.requests == []


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/", "http://[2002:a9fe:a9fe::1]/latest/meta-data/",
    "http://0.0.0.0:{port}/secret", "http://[::ffff:169.254.169.254]/", "http://240.0.0.1/",
])
def test_link_local_unspecified_and_reserved_addresses_are_refused_even_with_private_addresses_allowed(settings, url):
    # MEDIA_ALLOW_PRIVATE_ADDRESSES is on for the test suite; cloud metadata services stay out of reach.
    settings.PROVIDER_HTTP_TIMEOUT_SECONDS = 1
    with FakeServer() as internal:
        internal.routes["/secret"] = [Reply(200, b"internal data")]
        with pytest.raises(DownloadRefused) as refused:
            fetch_media(url.format(port=internal.port), allowed_hosts=None, source="a link")
        assert internal.requests == []
    assert "refused to download from" in str(refused.value)
    assert any(problem in str(refused.value) for problem in ("link-local", "unspecified", "reserved"))


def test_a_trusted_host_cannot_be_link_local_either(settings):
    settings.MEDIA_ALLOW_PRIVATE_ADDRESSES = False
    with pytest.raises(DownloadRefused) as refused:
        fetch_media("http://169.254.169.254/latest/meta-data/", allowed_hosts=("169.254.169.254",),
                    trusted_hosts=("169.254.169.254",), source="Chatwoot")
    assert str(refused.value) == "refused to download from 169.254.169.254: a link-local address"


def test_trusted_hosts_do_not_apply_to_a_link_a_user_gave(settings):
    settings.MEDIA_ALLOW_PRIVATE_ADDRESSES = False
    with FakeServer() as internal:
        with pytest.raises(DownloadRefused):
            fetch_media(f"{internal.url}/secret", allowed_hosts=None, trusted_hosts=("127.0.0.1",), source="a link")
        assert internal.requests == []


@pytest.mark.parametrize("url", ["http://files.example.test:port/a.jpg", "http://exa\u200dmple.test/a.jpg"])
def test_an_invalid_url_is_refused(url):
    with pytest.raises(DownloadRefused) as refused:
        fetch_media(url, allowed_hosts=None, source="a link")
    assert str(refused.value).startswith(f"refused to download {url}: not a valid URL (")


def test_a_redirect_to_an_invalid_url_fails_the_download(client, graph):
    graph.routes["/attachments/photo-1"] = [Reply(302, b"", {"Location": "http://files.example.test:port/x"})]
    media = media_download(_meta_media(client, graph, f"{graph.url}/attachments/photo-1").pk)
    assert (media.state, media.attempts, media.next_attempt_at) == ("failed", 1, None)
    assert "refused to download http://files.example.test:port/x (redirected from 127.0.0.1): not a valid URL" \
        in media.last_error


def test_a_chatwoot_attachment_url_that_cannot_be_joined_fails_the_download(client):
    with FakeServer() as chatwoot_server:
        media = _chatwoot_media(client, chatwoot_server)
        Media.objects.filter(pk=media.pk).update(source_url="http://[x/y")
        media = media_download(media.pk)
    assert (media.state, media.attempts, media.next_attempt_at) == ("failed", 1, None)
    assert media.last_error.startswith("attempt 1: refused to download http://[x/y: not a valid URL (")
    assert chatwoot_server.requests[1:] == []


def test_an_unexpected_error_fails_the_download_for_good(client, monkeypatch):
    def broken(self, media):
        raise KeyError("mime")

    monkeypatch.setattr(ChatwootBackend, "download_media", broken)
    with FakeServer() as chatwoot_server:
        media = media_download(_chatwoot_media(client, chatwoot_server).pk)
    assert (media.state, media.attempts, media.next_attempt_at) == ("failed", 1, None)
    assert media.last_error == "attempt 1: unexpected error: KeyError: 'mime'"
    assert Media.objects.get().state == "failed"


def test_a_connect_timeout_moves_on_to_the_next_address(monkeypatch):
    # A name with two addresses, the first one unreachable (e.g. IPv6 without a route): nothing was sent there.
    monkeypatch.setattr(safe_fetch, "checked_addresses", lambda host, port, **kwargs: ["127.0.0.3", "127.0.0.1"])
    real_handle = httpx.HTTPTransport.handle_request

    def handle(self, request):
        if request.url.host == "127.0.0.3":
            raise httpx.ConnectTimeout("timed out", request=request)
        return real_handle(self, request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", handle)
    with FakeServer() as server:
        server.routes["/photo"] = [Reply(200, PHOTO, {"Content-Type": "image/jpeg"})]
        with httpx.Client(transport=CheckedAddressTransport()) as client:
            response = client.get(f"http://files.example.test:{server.port}/photo")
    assert response.status_code == 200 and response.content == PHOTO
    assert server.hits("/photo")[0].headers["host"] == f"files.example.test:{server.port}"


@pytest.mark.parametrize(("address", "problem"), [
    ("10.1.2.3", "a private address"), ("192.168.0.10", "a private address"), ("127.0.0.2", "a loopback address"),
    ("169.254.169.254", "a link-local address"), ("224.0.0.251", "a multicast address"),
    ("0.0.0.0", "an unspecified address"), ("240.0.0.1", "a reserved address"),  # noqa: S104 (to classify, not bind)
    ("100.64.0.1", "not a public address"), ("0.1.2.3", "an unspecified address"),
    # 6to4 and Teredo addresses carry an IPv4 address, which is what the packet ends up reaching.
    ("2002:a9fe:a9fe::1", "a link-local address"), ("2002:7f00:1::1", "a loopback address"),
    ("2002:9df0:101::1", ""), ("2001:0:4136:e378:8000:63bf:5601:5601", "a link-local address"),
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
