"""API rate limits per key, per user and per address, and the cheap cut-off of webhook floods."""

import json
import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from core.api_tokens import api_token_create
from core.rate_limits import Rate, hit, parse_rate
from tests.conftest import free_port, refused, sandbox_fixture_now, start_web, stop_web
from whatsapp import sandbox_phone
from whatsapp.models import WebhookEvent

pytestmark = pytest.mark.django_db


def random_address() -> str:
    """An address of the documentation range of its own, so counts left in Redis by other tests never meet it."""
    return f"2001:db8:{secrets.token_hex(2)}:{secrets.token_hex(2)}::1"


def keyed_client(key: str, address: str | None = None) -> APIClient:
    client = APIClient(**({"HTTP_X_FORWARDED_FOR": address} if address else {}))
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def limits(settings):
    """Small limits for one test, and the client address through one trusted proxy so that each test can
    call from addresses of its own (the counts outlive a test in Redis)."""
    settings.TRUSTED_PROXY_COUNT = 1

    def set_limits(**rates):
        settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, **rates}

    return set_limits


def test_rates_parse():
    assert parse_rate("120/min") == Rate(120, 60)
    assert parse_rate("10/hour") == Rate(10, 3600)
    assert parse_rate("5/15min") == Rate(5, 900)
    assert parse_rate("off") is None
    for wrong in ("1/0min", "often", "5 per minute", "0/min"):
        with pytest.raises(ImproperlyConfigured):
            parse_rate(wrong)


@pytest.fixture(params=["redis", "local memory"])
def any_cache(request, settings):
    """The counters through Redis (production) and through Django's portable calls (the embedded run)."""
    if request.param == "local memory":
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def test_the_sliding_window_weighs_the_previous_window(any_cache):
    name, rate = f"test:{uuid.uuid4()}", Rate(10, 60)
    start = 6_000_000.0  # the start of a window (a multiple of 60)
    for _ in range(10):
        assert hit(name, rate, now=start + 50).allowed
    assert hit(name, rate, now=start + 55).refused
    # A third into the next window two thirds of the last one still count: 6.67 + 3 <= 10, the fourth is not.
    for _ in range(3):
        assert hit(name, rate, now=start + 80).allowed
    assert hit(name, rate, now=start + 80).refused


def test_reads_are_limited_per_key_with_headers_and_a_readable_429(superuser, limits):
    limits(read="3/min")
    _, key = api_token_create(user=superuser, name="reader")
    client = keyed_client(key)
    remaining = []
    for _ in range(3):
        response = client.get("/api/v1/contacts/")
        assert response.status_code == 200
        assert (response["RateLimit-Limit"], response["RateLimit-Policy"]) == ("3", "3;w=60")
        remaining.append(int(response["RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    response = client.get("/api/v1/contacts/")
    body = refused(response, 429, "throttled")
    assert 1 <= int(response["Retry-After"]) <= 60 and "available in" in body["detail"]


def test_buckets_are_separate(superuser, limits):
    limits(send="1/min", read="100/min")
    _, key = api_token_create(user=superuser, name="sender")
    client = keyed_client(key)
    assert client.post("/api/v1/messages/", {}, format="json").status_code == 400  # counted, then invalid
    refused(client.post("/api/v1/messages/", {}, format="json"), 429, "throttled")
    assert client.get("/api/v1/contacts/").status_code == 200  # reading goes on


def test_a_users_keys_share_the_users_allowance(superuser, limits):
    limits(read="4/min")
    first, second = (keyed_client(api_token_create(user=superuser, name=name)[1]) for name in ("a", "b"))
    statuses = [client.get("/api/v1/contacts/").status_code for client in (first, second, first, second)]
    assert statuses == [200, 200, 200, 200]
    refused(first.get("/api/v1/contacts/"), 429, "throttled")
    refused(second.get("/api/v1/contacts/"), 429, "throttled")


def test_a_signed_in_session_is_limited_per_user(admin_client_logged, limits):
    limits(read="2/min")
    assert [admin_client_logged.get("/api/v1/contacts/").status_code for _ in range(2)] == [200, 200]
    assert admin_client_logged.get("/api/v1/contacts/").status_code == 429


def test_anonymous_requests_are_limited_per_client_address(db, limits):
    limits(anonymous="2/min")
    address = random_address()
    client = APIClient(HTTP_X_FORWARDED_FOR=address)
    assert [client.get("/api/v1/contacts/").status_code for _ in range(2)] == [401, 401]
    response = client.get("/api/v1/contacts/")
    refused(response, 429, "throttled")
    assert int(response["Retry-After"]) >= 1
    # Another address is counted on its own.
    assert APIClient(HTTP_X_FORWARDED_FOR=random_address()).get("/api/v1/contacts/").status_code == 401


def test_guessing_keys_from_one_address_is_cut_off(superuser, limits, settings):
    settings.API_KEY_FAILURE_RATE = "3/min"
    address = random_address()
    for _ in range(3):
        refused(keyed_client(f"{secrets.token_hex(4)}.guess", address).get("/api/v1/contacts/"), 401,
                "authentication_failed")
    refused(keyed_client("0000.guess", address).get("/api/v1/contacts/"), 429, "throttled")
    # A valid key from the same address still works: its neighbours behind one NAT are not locked out.
    _, key = api_token_create(user=superuser, name="real")
    assert keyed_client(key, address).get("/api/v1/contacts/").status_code == 200


def test_an_expired_key_is_not_counted_as_guessing(superuser, limits, settings):
    settings.API_KEY_FAILURE_RATE = "2/min"
    address = random_address()
    _, old_key = api_token_create(user=superuser, name="old", expires_at=timezone.now() - timedelta(seconds=1))
    for _ in range(4):  # a client nobody updated after a rotation
        refused(keyed_client(old_key, address).get("/api/v1/contacts/"), 401, "authentication_failed")
    refused(keyed_client("0000.guess", address).get("/api/v1/contacts/"), 401, "authentication_failed")


def test_webhooks_are_not_api_limited(sandbox_provider, post_sandbox, limits):
    limits(read="1/min", write="1/min", anonymous="1/min")
    for _ in range(3):
        assert post_sandbox(sandbox_provider, sandbox_fixture_now("inbound_text.json")).status_code == 200


def writes(queries) -> list[str]:
    return [query["sql"] for query in queries.captured_queries
            if query["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]


def test_a_flood_of_unsigned_webhooks_is_cut_off_before_any_database_write(sandbox_provider, client, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.WEBHOOK_REJECTION_RATE = "5/min"
    url = f"/webhooks/sandbox/{sandbox_provider.public_id}/"
    flooder = random_address()
    body = sandbox_fixture_now("inbound_text.json")
    for _ in range(5):
        response = client.post(url, body, content_type="application/json", HTTP_X_FORWARDED_FOR=flooder)
        assert response.status_code == 401
    assert WebhookEvent.objects.filter(status=WebhookEvent.Status.REJECTED).count() == 5
    with CaptureQueriesContext(connection) as queries:
        response = client.post(url, body, content_type="application/json", HTTP_X_FORWARDED_FOR=flooder)
    assert response.status_code == 429 and 1 <= int(response["Retry-After"]) <= 60
    assert "too many rejected requests" in json.loads(response.content)["error"]
    assert writes(queries) == []
    assert WebhookEvent.objects.filter(status=WebhookEvent.Status.REJECTED).count() == 5
    # Inventing other webhook URLs does not reset the count: it is the address's, across them all.
    other = client.post(f"/webhooks/meta/{uuid.uuid4()}/", body, content_type="application/json",
                        HTTP_X_FORWARDED_FOR=flooder)
    assert other.status_code == 429
    # A correctly signed request is never refused, even from the flooding address.
    signature = sandbox_phone.signed_headers(sandbox_provider, body)["X-Sandbox-Signature"]
    response = client.post(url, body, content_type="application/json", HTTP_X_FORWARDED_FOR=flooder,
                           HTTP_X_SANDBOX_SIGNATURE=signature)
    assert response.status_code == 200


def test_invented_webhook_urls_are_counted_per_address(db, client, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.WEBHOOK_REJECTION_RATE = "3/min"
    flooder = random_address()
    statuses = [client.post(f"/webhooks/{kind}/{uuid.uuid4()}/", b"{}", content_type="application/json",
                            HTTP_X_FORWARDED_FOR=flooder).status_code for kind in ("meta", "x", "sandbox", "meta")]
    assert statuses == [404, 404, 404, 429]
    assert WebhookEvent.objects.count() == 3


def test_an_ipv6_client_is_counted_per_64_block(db, client, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.WEBHOOK_REJECTION_RATE = "2/min"
    block = f"2001:db8:{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    statuses = [client.post(f"/webhooks/meta/{uuid.uuid4()}/", b"{}", content_type="application/json",
                            HTTP_X_FORWARDED_FOR=f"{block}::{host}").status_code for host in (1, 2, 3)]
    assert statuses == [404, 404, 429]


def test_past_the_recorded_rate_rejections_are_counted_not_stored(sandbox_provider, client, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.WEBHOOK_REJECTIONS_RECORDED_RATE = "3/min"
    url = f"/webhooks/sandbox/{sandbox_provider.public_id}/"
    statuses = [client.post(url, b"{}", content_type="application/json",
                            HTTP_X_FORWARDED_FOR=random_address()).status_code for _ in range(6)]
    assert statuses == [401] * 6  # each still answered with its reason
    assert WebhookEvent.objects.filter(status=WebhookEvent.Status.REJECTED).count() == 3


@pytest.mark.slow
def test_the_limit_holds_across_gunicorn_workers(worker_env, tmp_path, superuser):
    _, key = api_token_create(user=superuser, name="many workers")
    port = free_port()
    env = {**worker_env, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "3",
           "API_RATE_READ": "20/hour", "GUNICORN_CONTROL_SOCKET": str(tmp_path / "gunicorn.ctl")}
    web = start_web(env, tmp_path / "gunicorn.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          headers={"Authorization": f"Token {key}"}) as http:
            http.get("/api/v1/providers/")  # not counted twice: the same bucket, part of the 20

            def one(_):
                return http.get("/api/v1/providers/").status_code

            with ThreadPoolExecutor(max_workers=8) as pool:
                statuses = list(pool.map(one, range(39)))
    finally:
        stop_web(web)
    assert statuses.count(200) == 19 and statuses.count(429) == 20
