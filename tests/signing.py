"""
Test helpers that sign webhooks the way each provider does, and make providers with known secrets, so
a test posts exactly what the provider would post.
"""

import time
from urllib.parse import urlencode

from django.conf import settings
from twilio.request_validator import RequestValidator

from whatsapp.providers.base import hmac_sha256_hex
from whatsapp.services.providers import provider_create

META_APP_SECRET = "meta-app-secret-for-tests"
META_PHONE_NUMBER_ID = "109900112233445"
META_WABA_ID = "800100200300400"
TWILIO_ACCOUNT_SID = "AC" + "1f" * 16
TWILIO_AUTH_TOKEN = "twilio-auth-token-for-tests"
CHATWOOT_SECRET = "chatwoot-webhook-secret-for-tests"


def make_meta(name: str = "Meta main", phone_number_id: str = META_PHONE_NUMBER_ID, **options):
    return provider_create(kind="meta", name=name, options={
        "phone_number_id": phone_number_id, "waba_id": META_WABA_ID, "phone_number": "+15550001111",
        "access_token": "meta-access-token", "app_secret": META_APP_SECRET, "verify_token": "meta-verify",
        **options})


def make_twilio(name: str = "Twilio main", **options):
    return provider_create(kind="twilio", name=name, options={
        "account_sid": TWILIO_ACCOUNT_SID, "auth_token": TWILIO_AUTH_TOKEN, "phone_number": "+14155238886",
        **options})


def make_chatwoot(name: str = "Chatwoot main", **options):
    return provider_create(kind="chatwoot", name=name, options={
        "base_url": "https://chat.example.test", "account_id": "3", "inbox_id": "7",
        "api_token": "chatwoot-api-token", "webhook_secret": CHATWOOT_SECRET, **options})


def webhook_path(provider, query: dict | None = None) -> str:
    path = f"/webhooks/{provider.kind}/{provider.public_id}/"
    return f"{path}?{urlencode(query)}" if query else path


def meta_headers(body: bytes, secret: str = META_APP_SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac_sha256_hex(secret, body)}


def twilio_headers(path: str, form: dict[str, str], token: str = TWILIO_AUTH_TOKEN) -> dict[str, str]:
    # Twilio signs the public URL it called plus the sorted form parameters.
    signature = RequestValidator(token).compute_signature(settings.PUBLIC_BASE_URL + path, form)
    return {"X-Twilio-Signature": signature}


def chatwoot_headers(body: bytes, secret: str = CHATWOOT_SECRET, timestamp: int | None = None,
                     delivery: str = "") -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    headers = {"X-Chatwoot-Timestamp": ts,
               "X-Chatwoot-Signature": "sha256=" + hmac_sha256_hex(secret, ts.encode() + b"." + body)}
    if delivery:
        headers["X-Chatwoot-Delivery"] = delivery
    return headers


def post_meta(client, provider, body: bytes, **headers):
    return client.post(webhook_path(provider), data=body, content_type="application/json",
                       headers={**meta_headers(body), **headers})


def post_twilio(client, provider, form: dict[str, str], **headers):
    path = webhook_path(provider)
    return client.post(path, data=urlencode(form), content_type="application/x-www-form-urlencoded",
                       headers={**twilio_headers(path, form), **headers})


def post_chatwoot(client, provider, body: bytes, *, delivery: str = "", **headers):
    return client.post(webhook_path(provider), data=body, content_type="application/json",
                       headers={**chatwoot_headers(body, delivery=delivery), **headers})
