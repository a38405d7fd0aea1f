"""
Twilio WhatsApp senders. Verification uses the twilio SDK's RequestValidator over the public URL
(rebuilt from PUBLIC_BASE_URL, because Twilio signs the URL it called, not the one behind our proxy).
Inbound messages and status callbacks arrive form-encoded on the same URL. Sending goes through the twilio
SDK (`messages.create`, a form POST to /2010-04-01/Accounts/<AC...>/Messages.json), templates as a Content
SID plus variables.

https://www.twilio.com/docs/messaging/guides/webhook-request
https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from whatsapp.providers.base import (
    BaseProvider,
    ProviderError,
    ProviderOption,
    WebhookRejected,
    WebhookRequest,
    fetch_media_bytes,
    http_client,
    is_retryable_status,
    retry_after_seconds,
)
from whatsapp.providers.events import (
    MEDIA_TYPES,
    ConnectionCheck,
    DownloadedMedia,
    Identity,
    IdentityKind,
    InboundMessage,
    MediaRef,
    MessageStatus,
    MessageType,
    NormalizedEvent,
    OutboundMessage,
    OutboundTemplate,
    SendResult,
    StatusUpdate,
    StoredWebhook,
    UnhandledEvent,
)

SIGNATURE_HEADER = "X-Twilio-Signature"
AUTH_TOKEN = "auth_token"
CHANNEL_PREFIX = "whatsapp:"

# MessageStatus values of status callbacks (twilio-python's MessageInstance.Status). The early ones
# change nothing we have not recorded already; the status ranks keep them from moving anything back.
STATUS_MAP = {
    "queued": MessageStatus.QUEUED,
    "accepted": MessageStatus.QUEUED,
    "scheduled": MessageStatus.QUEUED,
    "sending": MessageStatus.SENDING,
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "partially_delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "failed": MessageStatus.FAILED,
    "undelivered": MessageStatus.FAILED,
    "canceled": MessageStatus.FAILED,
}
INBOUND_STATUSES = frozenset({"received", "receiving"})

# --- sending: error classes -----------------------------------------------------------------
# https://www.twilio.com/docs/whatsapp/api/error-code-mapping
# Rate limits (the WhatsApp sender's, the account's, the REST API's): retried later, not held against
# the provider's health.
THROTTLED_CODES = frozenset({"63017", "63018", "20429"})
# Codes that trying again never fixes.
PERMANENT_CODES = frozenset({"20003", "21211", "21610", "63003", "63014", "63016", "63021", "63024", "63032"})
ERROR_ADVICE = {
    "20003": "the account SID or auth token is wrong",
    "20429": "Twilio's API rate limit was reached; retrying later",
    "21211": "the recipient's number is not valid",
    "21610": "the recipient unsubscribed from this sender",
    "63003": "the recipient's number is invalid or not on WhatsApp",
    "63014": "the customer blocked this business or opted out; do not resend",
    "63016": "more than 24 hours since the customer last wrote; send an approved template instead",
    "63017": "the account's message rate was exceeded; retrying later",
    "63018": "the WhatsApp sender's rate limit was reached; retrying later",
    "63021": "WhatsApp refused the content (media type, or a template longer than 1024 characters)",
    "63024": "the recipient is not a valid WhatsApp user",
    "63032": "WhatsApp did not deliver this marketing message (the customer is in an experiment or at a limit)",
}

T = TypeVar("T")

MEDIA_TYPE_BY_PREFIX = {"image/": MessageType.IMAGE, "audio/": MessageType.AUDIO, "video/": MessageType.VIDEO}


def _address(value: str) -> str:
    return value[len(CHANNEL_PREFIX):] if value.startswith(CHANNEL_PREFIX) else value


def _is_phone(value: str) -> bool:
    return value.startswith("+") and value[1:].isdigit()


def _flag(value: str) -> bool:
    return value.lower() == "true"


def _media_type(content_type: str) -> str:
    if content_type == "image/webp":
        return MessageType.STICKER  # WhatsApp stickers are WebP images
    for prefix, message_type in MEDIA_TYPE_BY_PREFIX.items():
        if content_type.startswith(prefix):
            return message_type
    return MessageType.DOCUMENT


class TwilioProvider(BaseProvider):
    redacted_credential = AUTH_TOKEN
    kind = "twilio"
    label = "Twilio"
    accepted_content_types = ("application/x-www-form-urlencoded",)
    stored_headers = (SIGNATURE_HEADER.lower(), "i-twilio-idempotency-token")
    # WhatsApp senders on Twilio start at 10 text messages per second (Meta's tier can raise it).
    # https://www.twilio.com/docs/whatsapp/api#rate-limits
    default_rate_limit_per_second = 10
    # Buttons and lists need a Twilio Content template (quick-reply, list-picker), so they go out as
    # templates; reactions and stickers have no Messages API form.
    sendable_types = frozenset({MessageType.TEXT, MessageType.IMAGE, MessageType.AUDIO, MessageType.VIDEO,
                                MessageType.DOCUMENT, MessageType.LOCATION, MessageType.TEMPLATE})
    # https://www.twilio.com/docs/api/errors/63014 (blocked by the user), 63024 (invalid recipient),
    # 63003 (the To address is not a WhatsApp user or is inactive).
    consent_error_codes = {"63014": "blocked the business", "63024": "invalid recipient: not on WhatsApp",
                           "63003": "not a WhatsApp user or inactive"}
    # WhatsApp's pair rate (about one message every 6 s to one user) applies behind Twilio too.
    pair_interval_seconds = 6.0
    options = (
        ProviderOption("account_sid", "Account SID (AC...)", target="business_account_id", required=True),
        ProviderOption(AUTH_TOKEN, "Auth token", target="credentials", required=True, secret=True),
        ProviderOption("phone_number", "The WhatsApp sender number (E.164)", target="phone_number", required=True),
    )

    def check_body(self, request: WebhookRequest) -> None:
        if not request.form:
            raise WebhookRejected(400, "body must be a non-empty form")
        if not (request.form.get("MessageSid") or request.form.get("SmsSid")):
            raise WebhookRejected(400, "form has no MessageSid: not a Twilio message or status callback")

    def verify_webhook(self, request: WebhookRequest) -> None:
        token = self.credential(AUTH_TOKEN)
        if not token:
            raise WebhookRejected(403, "this provider has no auth token configured")
        received = request.header(SIGNATURE_HEADER)
        if not received:
            raise WebhookRejected(401, f"missing {SIGNATURE_HEADER} header")
        if not RequestValidator(token).validate(request.public_url, request.form, received):
            raise WebhookRejected(403, f"{SIGNATURE_HEADER} does not match the URL and parameters")

    def acknowledgement(self, receipt: dict[str, Any]) -> tuple[str, str]:
        # Twilio reads the answer to an inbound message as TwiML; an empty <Response/> sends no reply
        # (anything else is logged as error 12300 in Twilio's debugger).
        return '<?xml version="1.0" encoding="UTF-8"?><Response/>', "text/xml"

    def delivery_id(self, request: WebhookRequest) -> str:
        return request.header("I-Twilio-Idempotency-Token")

    def parse_webhook(self, stored: StoredWebhook) -> list[NormalizedEvent]:
        form = dict(parse_qsl(stored.body.decode("utf-8", "replace").replace("\x00", ""), keep_blank_values=True))
        status = form.get("MessageStatus", "").lower()
        sid = form.get("MessageSid") or form.get("SmsMessageSid") or form.get("SmsSid") or ""
        if not sid:
            return [UnhandledEvent("Twilio request without a MessageSid", raw=form)]
        if status and status not in INBOUND_STATUSES:
            return [self._status(sid, status, form, stored.received_at)]
        return [self._inbound(sid, form, stored.received_at)]

    def _status(self, sid: str, status: str, form: dict[str, str], received_at: datetime) -> NormalizedEvent:
        # Status callbacks carry no time of their own: the time we received it is the best there is.
        return StatusUpdate(
            provider_message_id=sid,
            status=STATUS_MAP.get(status, MessageStatus.UNKNOWN),
            timestamp=received_at,
            error_code=form.get("ErrorCode", ""),
            error_title=form.get("ErrorMessage", ""),
            raw=form,
        )

    def _identities(self, form: dict[str, str]) -> tuple[Identity, ...]:
        sender = _address(form.get("From", ""))
        identities = []
        if _is_phone(sender):
            identities.append(Identity(IdentityKind.PHONE, sender))
        if wa_id := form.get("WaId", ""):
            identities += [Identity(IdentityKind.PHONE, wa_id), Identity(IdentityKind.WHATSAPP_ID, wa_id)]
        # 2026: From may be "whatsapp:<business-scoped id>" with the id also in ExternalUserId.
        external = _address(form.get("ExternalUserId", "")) or ("" if _is_phone(sender) else sender)
        if external:
            identities.append(Identity(IdentityKind.TWILIO_EXTERNAL_ID, external))
        if parent := _address(form.get("ParentExternalUserId", "")):
            identities.append(Identity(IdentityKind.PARENT_BUSINESS_SCOPED_ID, parent))
        if username := form.get("ProfileUsername") or form.get("Username"):
            identities.append(Identity(IdentityKind.USERNAME, username))
        return tuple(dict.fromkeys(identities))

    def _inbound(self, sid: str, form: dict[str, str], received_at: datetime) -> NormalizedEvent:
        identities = self._identities(form)
        if not identities:
            return UnhandledEvent("Twilio message without a sender", raw=form)
        media = self._media(form)
        message_type, content = self._type_and_content(form, media)
        if _flag(form.get("Forwarded", "")):
            content["forwarded"] = True
        if _flag(form.get("FrequentlyForwarded", "")):
            content["frequently_forwarded"] = True
        referral = {key[len("Referral"):]: value for key, value in form.items()
                    if key.startswith("Referral") and value and key != "ReferralNumMedia"}
        if referral:
            content["referral"] = referral
        caption = form.get("Body", "")
        return InboundMessage(
            provider_message_id=sid,
            timestamp=received_at,
            identities=identities,
            profile_name=form.get("ProfileName", ""),
            message_type=message_type,
            text=caption,
            content=content,
            media=tuple(MediaRef(url=ref.url, mime_type=ref.mime_type, caption=caption if i == 0 else "")
                        for i, ref in enumerate(media)),
            reply_to_provider_message_id=form.get("OriginalRepliedMessageSid", ""),
            raw=form,
        )

    def _media(self, form: dict[str, str]) -> list[MediaRef]:
        try:
            count = min(int(form.get("NumMedia") or 0), 10)
        except ValueError:
            count = 0
        return [MediaRef(url=form[f"MediaUrl{i}"], mime_type=form.get(f"MediaContentType{i}", ""))
                for i in range(count) if form.get(f"MediaUrl{i}")]

    def _type_and_content(self, form: dict[str, str], media: list[MediaRef]) -> tuple[str, dict]:
        wire_type = form.get("MessageType", "").lower()
        if form.get("ButtonPayload") or form.get("ButtonText"):
            content = {"id": form.get("ButtonPayload", ""), "title": form.get("ButtonText", "")}
            if wire_type == "interactive":
                return MessageType.INTERACTIVE_REPLY, {"kind": "button_reply", **content}
            return MessageType.BUTTON, {"payload": content["id"], "title": content["title"]}
        if form.get("Latitude") and form.get("Longitude"):
            content = {"latitude": _number(form["Latitude"]), "longitude": _number(form["Longitude"])}
            content.update({key.lower(): form[key] for key in ("Address", "Label") if form.get(key)})
            return MessageType.LOCATION, content
        if media:
            return _media_type(media[0].mime_type), {}
        if wire_type and wire_type not in ("text", "interactive"):
            return MessageType.UNSUPPORTED, {"unsupported_type": wire_type}
        return MessageType.TEXT, {}

    def download_media(self, media: MediaRef) -> DownloadedMedia:
        # Twilio serves media only with HTTP Basic auth and redirects to short-lived storage URLs.
        # https://www.twilio.com/docs/messaging/api/media-resource
        auth = (self.provider.business_account_id, self.credential(AUTH_TOKEN))
        with http_client() as client:
            return fetch_media_bytes(client, media.url, mime_type=media.mime_type, auth=auth)

    def recipient_address(self, to: tuple[Identity, ...]) -> str:
        for kind in (IdentityKind.PHONE, IdentityKind.WHATSAPP_ID):
            for identity in to:
                digits = identity.value.strip().removeprefix(CHANNEL_PREFIX).removeprefix("+")
                if identity.kind == kind and digits.isdigit():
                    return "+" + digits
        return ""

    def send(self, message: OutboundMessage) -> SendResult:
        # https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource
        to = self.recipient_address(message.to)
        if not to:
            raise ProviderError("the contact has no phone number Twilio can send to", code="no_address",
                                title="No address")
        arguments = {"from_": CHANNEL_PREFIX + self.provider.phone_number, "to": CHANNEL_PREFIX + to,
                     **_message_arguments(message)}
        if message.status_callback_url:
            arguments["status_callback"] = message.status_callback_url
        created, raw = self._sdk_call("the message", lambda client: client.messages.create(**arguments))
        if not created.sid:
            raise ProviderError("Twilio answered without a message sid; the message may have been accepted, so it "
                                "is not sent again", code="bad_response", title="No message sid", raw=raw)
        return SendResult(provider_message_id=created.sid, raw=raw)

    def check_connection(self) -> ConnectionCheck:
        sid = self.provider.business_account_id
        try:
            account, _ = self._sdk_call("the account lookup", lambda client: client.api.v2010.accounts(sid).fetch())
        except ProviderError as exc:
            return ConnectionCheck(False, str(exc))
        return ConnectionCheck(True, f"{account.friendly_name or sid}, account {account.status or 'unknown'}")

    def _sdk_call(self, action: str, call: Callable[[Client], T]) -> tuple[T, dict[str, Any]]:
        """
        Run one twilio SDK call against TWILIO_API_BASE_URL; return its result and the JSON answer as
        Twilio sent it. Failures become ProviderError.
        """
        token = self.credential(AUTH_TOKEN)
        if not self.provider.business_account_id or not token:
            raise ProviderError("this provider has no account SID or auth token", code="not_configured")
        http = _AnswerKeepingHttpClient(timeout=settings.PROVIDER_HTTP_TIMEOUT_SECONDS)
        client = Client(self.provider.business_account_id, token, http_client=http)
        # Messages and Accounts live in the SDK's `api` domain; its base URL is a plain attribute.
        client.api.base_url = settings.TWILIO_API_BASE_URL
        try:
            return call(client), http.last_json()
        except (TwilioRestException, TwilioServiceException) as exc:
            raise self._answered_error(exc, action, http.last_response) from exc
        except requests.Timeout as exc:
            raise ProviderError(f"Twilio did not answer {action} within {settings.PROVIDER_HTTP_TIMEOUT_SECONDS} s "
                                f"({type(exc).__name__})", code="timeout", title="Timeout", retryable=True) from exc
        except requests.RequestException as exc:
            raise ProviderError(self.redact(f"could not reach Twilio for {action}: {type(exc).__name__}: {exc}"),
                                code="network", title="Network error", retryable=True) from exc
        except (TwilioException, ValueError) as exc:
            # The SDK could not read a success answer: the call may have taken effect, so no blind retry.
            raise ProviderError(self.redact(f"Twilio's answer to {action} could not be read: {exc}"),
                                code="bad_response", title="Unreadable answer") from exc
        finally:
            if http.session is not None:
                http.session.close()

    def _answered_error(self, exc: TwilioRestException | TwilioServiceException, action: str,
                        response: Response | None) -> ProviderError:
        # https://www.twilio.com/docs/api/errors and https://www.twilio.com/docs/whatsapp/api/error-code-mapping
        status = int(exc.status or 0)
        # Without a code in the body the SDK repeats the HTTP status as the code.
        code = str(exc.code) if exc.code and exc.code != status else f"http_{status}"
        # The SDK prefixes Twilio's message with its own ("Unable to create record: ...").
        title = exc.title if isinstance(exc, TwilioServiceException) else (exc.msg or "").split(": ", 1)[-1]
        title = title or f"HTTP {status}"
        retryable, throttled = _send_error_class(code, status)
        parts = [f"Twilio refused {action} (HTTP {status}, error {code}: {title.rstrip('.')})",
                 ERROR_ADVICE.get(code, "")]
        return ProviderError(self.redact(". ".join(part for part in parts if part)), code=code, title=title,
                             retryable=retryable, throttled=throttled, http_status=status or None,
                             retry_after=retry_after_seconds((response.headers or {}).get("Retry-After")
                                                             if response else None),
                             raw=_parsed(response.text) if response else {})



def _number(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


class _AnswerKeepingHttpClient(TwilioHttpClient):
    """
    The SDK's own HTTP client, keeping the last answer: the SDK's exceptions drop the Retry-After header
    and its resources drop the JSON as Twilio sent it.
    """

    last_response: Response | None = None

    def request(self, *args: Any, **kwargs: Any) -> Response:
        self.last_response = super().request(*args, **kwargs)
        return self.last_response

    def last_json(self) -> dict[str, Any]:
        return _parsed(self.last_response.text) if self.last_response is not None else {}


def _send_error_class(code: str, status: int) -> tuple[bool, bool]:
    """(retryable, throttled) for an error Twilio answered; a known code decides before the HTTP status."""
    if code in THROTTLED_CODES or status == 429:
        return True, True
    if code in PERMANENT_CODES:
        return False, False
    return is_retryable_status(status), False


def _message_arguments(message: OutboundMessage) -> dict[str, Any]:
    """The message-type part of messages.create()."""
    content = message.content
    kind = message.message_type
    if kind == MessageType.TEXT:
        return {"body": message.text or str(content.get("text", ""))}
    if kind in MEDIA_TYPES:
        media = message.media
        if media is None or not media.url:
            # Twilio fetches media from a URL itself; it has no upload endpoint for WhatsApp messages.
            raise ProviderError("Twilio needs a public URL for media; this file has none", code="media_url_required",
                                title="Media URL required")
        caption = media.caption or str(content.get("caption", ""))
        return {"media_url": [media.url], **({"body": caption} if caption else {})}
    if kind == MessageType.LOCATION:
        # https://www.twilio.com/docs/whatsapp/api#location-messages-with-whatsapp
        label = ", ".join(str(content[key]) for key in ("name", "address") if content.get(key))
        geo = f"geo:{content.get('latitude')},{content.get('longitude')}"
        return {"persistent_action": [f"{geo}|{label}" if label else geo], "body": label or geo.removeprefix("geo:")}
    if kind == MessageType.TEMPLATE:
        if message.template is None:
            raise ProviderError("a template message needs its template", code="invalid_message")
        return _template_arguments(message.template)
    raise ProviderError(f"Twilio sending does not handle {kind!r} messages", code="unsupported_type")


def _template_arguments(template: OutboundTemplate) -> dict[str, Any]:
    # A template goes out as its Content SID plus variables, never as Body: a templated Body outside the
    # 24-hour window fails with 63016. https://www.twilio.com/docs/content/send-templates-created-with-the-content-template-builder
    if not template.provider_template_id:
        raise ProviderError(f"template {template.name!r} has no Twilio Content SID (HX...); sync or create it in "
                            "Twilio's Content API first", code="content_sid_missing", title="Content SID missing")
    variables = {parameter.name: parameter.value for parameter in (*template.header, *template.body)}
    # Content variables share one namespace; a positional template numbers its button variables after
    # the body's (e.g. a URL button's {{3}} after body {{1}} and {{2}}).
    numbers = [int(name) for name in variables if name.isdigit()]
    positional = len(numbers) == len(variables)
    for offset, button in enumerate(sorted(template.buttons, key=lambda b: b.index), start=1):
        name = str(max(numbers, default=0) + offset) if positional else f"button_{button.index}"
        variables[name] = button.value
    return {"content_sid": template.provider_template_id, "content_variables": json.dumps(variables)}


def _parsed(text: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except ValueError:
        return {"text": text[:2000]}
    return payload if isinstance(payload, dict) else {"value": payload}


PROVIDER = TwilioProvider
