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
import math
import mimetypes
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.rest.content.v1.content import ContentList
from twilio.rest.content.v1.content.approval_create import ApprovalCreateList

from whatsapp.providers.base import (
    BaseProvider,
    ProviderError,
    ProviderOption,
    WebhookRejected,
    WebhookRequest,
    as_dict,
    as_list,
    as_text,
    form_body_decode,
    is_retryable_status,
    parse_each,
    retry_after_seconds,
    url_host,
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
    RemoteTemplate,
    SendResult,
    StatusUpdate,
    StoredWebhook,
    TemplateDefinition,
    TemplateManagement,
    TemplateStatus,
    TemplateSubmission,
    UnhandledEvent,
)
from whatsapp.providers.safe_fetch import fetch_media, host_allowed
from whatsapp.providers.whatsapp_templates import (
    CATEGORIES,
    MEDIA_HEADER_FORMATS,
    PARAMETER,
    example_for,
    find_component,
    header_format,
    parameter_format_of,
    parameter_names,
    section_examples,
    template_buttons,
)

SIGNATURE_HEADER = "X-Twilio-Signature"
AUTH_TOKEN = "auth_token"
CHANNEL_PREFIX = "whatsapp:"
# Twilio's REST API, where media URLs point and the only place its credentials go.
TWILIO_API_HOST = "api.twilio.com"

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

# --- templates (Content API) ----------------------------------------------------------------
# https://www.twilio.com/docs/content/content-api-resources
# WhatsApp approval statuses of a Content (Twilio's own words, lower case) -> ours.
APPROVAL_STATUS_MAP = {
    "received": TemplateStatus.PENDING,
    "pending": TemplateStatus.PENDING,
    "submitted": TemplateStatus.PENDING,
    "approved": TemplateStatus.APPROVED,
    "rejected": TemplateStatus.REJECTED,
    "paused": TemplateStatus.PAUSED,
    "disabled": TemplateStatus.DISABLED,
    "in_appeal": TemplateStatus.IN_APPEAL,
    "pending_deletion": TemplateStatus.DISABLED,
    "deleted": TemplateStatus.DISABLED,
}
NEVER_SUBMITTED = frozenset({"", "unsubmitted"})
# Buttons whose value each send fills in (as a Content variable): a URL's variable part, a coupon code.
# A quick reply's id is fixed when the Content is created.
VALUED_BUTTON_SUB_TYPES = frozenset({"url", "copy_code"})
# Content types read back from Twilio, richest first (a Content may carry several, e.g. a text fallback).
CONTENT_TYPE_ORDER = ("whatsapp/card", "twilio/card", "twilio/call-to-action", "twilio/quick-reply", "twilio/media",
                      "twilio/text")
ACTION_TYPES = frozenset({"QUICK_REPLY", "URL", "PHONE_NUMBER", "COPY_CODE"})
# Content variable keys are at most 16 characters.
# https://www.twilio.com/docs/content/using-variables-with-content-api
VARIABLE_KEY_MAX = 16
CONTENT_PAGE_SIZE = 100
CONTENT_MAX_PAGES = 200

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
    # Templates are created here as Content and submitted for WhatsApp approval through Twilio.
    template_management = TemplateManagement.SUBMIT
    # Media URLs are on the REST API's host, which redirects to short-lived storage URLs: mms.twiliocdn.com
    # with HTTP Basic auth enforced on media, s3-external-1.amazonaws.com for media stored before that.
    # https://help.twilio.com/articles/223183748-Protect-Media-Access-with-HTTP-Basic-Authentication-for-Programmable-Messaging
    media_hosts = (TWILIO_API_HOST, "*.twiliocdn.com", "s3-external-1.amazonaws.com")
    options = (
        ProviderOption("account_sid", "Account SID (AC...)", target="business_account_id", required=True),
        ProviderOption(AUTH_TOKEN, "Auth token", target="credentials", required=True, secret=True),
        ProviderOption("phone_number", "The WhatsApp sender number (E.164)", target="phone_number", required=True),
    )

    def check_body(self, request: WebhookRequest) -> None:
        # Read as the parser reads it, so a MessageSid of "%00" (nothing once cleaned) is refused here.
        form = form_body_decode(request.body)
        if not form:
            raise WebhookRejected(400, "body must be a non-empty form")
        if not (form.get("MessageSid") or form.get("SmsSid")):
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
        return parse_each([form_body_decode(stored.body)], lambda form: self._parse_form(form, stored))

    def _parse_form(self, form: dict[str, str], stored: StoredWebhook) -> NormalizedEvent:
        status = form.get("MessageStatus", "").lower()
        sid = form.get("MessageSid") or form.get("SmsMessageSid") or form.get("SmsSid") or ""
        if not sid:
            return UnhandledEvent("Twilio request without a MessageSid", raw=form)
        if status and status not in INBOUND_STATUSES:
            return self._status(sid, status, form, stored.received_at)
        return self._inbound(sid, form, stored.received_at)

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
        # The credentials go to the REST API's host only: neither to the storage host it redirects to, nor
        # to a media URL that names a storage host itself.
        api_hosts = tuple(host for host in (TWILIO_API_HOST, url_host(settings.TWILIO_API_BASE_URL)) if host)
        try:
            first_host = httpx.URL(media.url).host
        except httpx.InvalidURL:
            first_host = ""  # fetch_media refuses it
        auth = None
        if host_allowed(first_host, api_hosts):
            auth = (self.provider.business_account_id, self.credential(AUTH_TOKEN))
        return fetch_media(media.url, allowed_hosts=self.media_download_hosts(), source=self.label,
                           mime_type=media.mime_type, auth=auth,
                           trusted_hosts=(url_host(settings.TWILIO_API_BASE_URL),))

    def media_download_hosts(self) -> tuple[str, ...]:
        return (*self.media_hosts, url_host(settings.TWILIO_API_BASE_URL))

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
        # Messages and Accounts live in the SDK's `api` domain, templates in `content`; each domain's base
        # URL is a plain attribute.
        client.api.base_url = settings.TWILIO_API_BASE_URL
        client.content.base_url = settings.TWILIO_CONTENT_BASE_URL
        try:
            return call(client), http.last_json()
        except (TwilioRestException, TwilioServiceException) as exc:
            raise self._answered_error(exc, action, http.last_response) from exc
        except TwilioException as exc:
            # A list page that answered an error raises a bare TwilioException ("Unable to fetch page").
            if http.last_response is not None and http.last_response.status_code >= 400:
                raise self._answered_error(_rest_exception(http.last_response), action, http.last_response) from exc
            raise ProviderError(self.redact(f"Twilio's answer to {action} could not be read: {exc}"),
                                code="bad_response", title="Unreadable answer") from exc
        except requests.Timeout as exc:
            raise ProviderError(f"Twilio did not answer {action} within {settings.PROVIDER_HTTP_TIMEOUT_SECONDS} s "
                                f"({type(exc).__name__})", code="timeout", title="Timeout", retryable=True) from exc
        except requests.RequestException as exc:
            raise ProviderError(self.redact(f"could not reach Twilio for {action}: {type(exc).__name__}: {exc}"),
                                code="network", title="Network error", retryable=True) from exc
        except ValueError as exc:
            # The SDK could not read a success answer: the call may have taken effect, so no blind retry.
            raise ProviderError(self.redact(f"Twilio's answer to {action} could not be read: {exc}"),
                                code="bad_response", title="Unreadable answer") from exc
        finally:
            if http.session is not None:
                http.session.close()

    # --- templates -------------------------------------------------------------------------
    def template_problems(self, template: TemplateDefinition) -> dict[str, list[str]]:
        try:
            content_request(template, template.remote_name)
        except ProviderError as exc:
            return {"components": [str(exc)]}
        return {}

    def submit_template(self, template: TemplateDefinition) -> TemplateSubmission:
        # A Content cannot be changed once created: every version is a new Content, under its version's
        # WhatsApp name. https://www.twilio.com/docs/content/create-and-send-your-first-content-api-template
        name = template.remote_name
        request = content_request(template, name)
        created, created_raw = self._sdk_call("the content creation", lambda client: client.content.v1.contents.create(
            ContentList.ContentCreateRequest(request)))
        sid = created.sid or ""
        if not sid:
            raise ProviderError("Twilio created the content without giving its SID", code="bad_response",
                                title="No content SID", raw=created_raw)
        approval_request = ApprovalCreateList.ContentApprovalRequest({"name": name,
                                                                      "category": template.category.upper()})
        try:
            approval, approval_raw = self._sdk_call("the WhatsApp approval request", lambda client: (
                client.content.v1.contents(sid).approval_create.create(approval_request)))
        except ProviderError as exc:
            # The Content exists but is not submitted: trying again creates (and submits) a fresh one.
            raise ProviderError(f"{exc} (content {sid} was created but not submitted)", code=exc.code,
                                title=exc.title, retryable=exc.retryable, throttled=exc.throttled,
                                retry_after=exc.retry_after, http_status=exc.http_status,
                                raw={"content": created_raw, "approval": exc.raw}) from exc
        status = APPROVAL_STATUS_MAP.get((approval.status or "").lower(), TemplateStatus.PENDING)
        return TemplateSubmission(provider_template_id=sid, status=status, reason=approval.rejection_reason or "",
                                  raw={"content": created_raw, "approval": approval_raw})

    def list_templates(self) -> list[RemoteTemplate]:
        # https://www.twilio.com/docs/content/content-api-resources (GET /v1/ContentAndApprovals)
        contents, _ = self._sdk_call("the content list", _all_contents)
        templates = [remote_content(content) for content in contents]
        return [template for template in templates if template is not None]

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
        number = float(value)
    except ValueError:
        return value
    # "nan", "inf" and "1e400" stay text: a JSON column cannot hold them as numbers.
    return number if math.isfinite(number) else value


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


def button_variable_names(text_names: list[str], button_indexes: list[int]) -> dict[int, str]:
    """
    The Content variable of each valued button. Header and body variables share one namespace; a
    positional template numbers its buttons after the highest of them (body {{1}} {{2}} -> a URL button's
    {{3}}), a named one calls them button_<index>. Sending and creating a Content both use this.
    """
    numbers = [int(name) for name in text_names if name.isdigit()]
    positional = len(numbers) == len(text_names)
    return {index: str(max(numbers, default=0) + offset) if positional else f"button_{index}"
            for offset, index in enumerate(sorted(button_indexes), start=1)}


def _template_arguments(template: OutboundTemplate) -> dict[str, Any]:
    # A template goes out as its Content SID plus variables, never as Body: a templated Body outside the
    # 24-hour window fails with 63016. https://www.twilio.com/docs/content/send-templates-created-with-the-content-template-builder
    if not template.provider_template_id:
        raise ProviderError(f"template {template.name!r} has no Twilio Content SID (HX...); sync or create it in "
                            "Twilio's Content API first", code="content_sid_missing", title="Content SID missing")
    variables = {parameter.name: parameter.value for parameter in (*template.header, *template.body)}
    buttons = {button.index: button.value for button in template.buttons if button.sub_type in VALUED_BUTTON_SUB_TYPES}
    for index, name in button_variable_names(list(variables), list(buttons)).items():
        variables[name] = buttons[index]
    return {"content_sid": template.provider_template_id, "content_variables": json.dumps(variables)}


# --- templates: our components <-> Twilio Content types ---------------------------------------
# https://www.twilio.com/docs/content/content-types-overview
def _unsupported(reason: str) -> ProviderError:
    return ProviderError(f"Twilio cannot carry this template: {reason}", code="template_unsupported",
                         title="Not expressible on Twilio")


def content_request(template: TemplateDefinition, name: str) -> dict[str, Any]:
    """The JSON of POST /v1/Content for a template: friendly_name, language, variables (the examples) and
    one content type. Raises ProviderError("template_unsupported") for what no Content type can carry."""
    components = template.components
    if template.category.lower() == "authentication":
        raise _unsupported("authentication templates have WhatsApp's preset text (whatsapp/authentication); "
                           "create them in Twilio's Content Template Builder")
    fmt = header_format(components)
    if fmt and fmt != "TEXT" and fmt not in MEDIA_HEADER_FORMATS:
        raise _unsupported(f"a {fmt.lower()} header has no Content type")
    header_text = as_text((find_component(components, "HEADER") or {}).get("text")) if fmt == "TEXT" else ""
    body = as_text((find_component(components, "BODY") or {}).get("text"))
    footer = as_text((find_component(components, "FOOTER") or {}).get("text"))
    if not body:
        raise ProviderError("the template has no body text", code="template_invalid", title="No body")
    variables = _text_variables(template, header_text, body)
    buttons = template_buttons(components)
    actions = _actions(buttons, list(variables), variables, section_examples(template.examples, "buttons"))
    media = _media_example(template) if fmt in MEDIA_HEADER_FORMATS else ""
    kinds = {as_text(button.get("type")).upper() for button in buttons}
    content: dict[str, Any] = {"body": body}
    if header_text or footer or (media and actions) or ("QUICK_REPLY" in kinds and len(kinds) > 1):
        # Only whatsapp/card has a text header and a footer, and takes any mix of buttons with media.
        content_type = "whatsapp/card"
        content.update({key: value for key, value in (("header_text", header_text), ("footer", footer)) if value})
        if media:
            content["media"] = [media]
        if actions:
            content["actions"] = actions
    elif media:
        content_type, content["media"] = "twilio/media", [media]
    elif kinds == {"QUICK_REPLY"}:
        content_type, content["actions"] = "twilio/quick-reply", [
            {"title": action["title"], "id": action["id"]} for action in actions]
    elif actions:
        content_type, content["actions"] = "twilio/call-to-action", actions
    else:
        content_type = "twilio/text"
    return {"friendly_name": name, "language": template.language, "variables": variables,
            "types": {content_type: content}}


def _text_variables(template: TemplateDefinition, header_text: str, body: str) -> dict[str, str]:
    header_names, body_names = parameter_names(header_text), parameter_names(body)
    if clash := [name for name in header_names if name in body_names]:
        # One namespace for the whole Content: the header's {{1}} would be the body's {{1}} too.
        raise _unsupported(f"the header and the body both use {{{{{clash[0]}}}}}; Twilio shares variables "
                           "between them, so number the header's after the body's or use other names")
    if long := [name for name in header_names + body_names if len(name) > VARIABLE_KEY_MAX]:
        raise _unsupported(f"the variable name {long[0]!r} is longer than {VARIABLE_KEY_MAX} characters")
    header_examples = section_examples(template.examples, "header")
    body_examples = section_examples(template.examples, "body")
    variables = {name: example_for(header_examples, name, "header") for name in header_names}
    variables.update({name: example_for(body_examples, name, "body") for name in body_names})
    return variables


def _actions(buttons: list[dict[str, Any]], text_names: list[str], variables: dict[str, str],
             examples: dict[str, str]) -> list[dict[str, Any]]:
    """Buttons as Content actions; a URL's variable and a coupon code become Content variables (added to
    `variables` with their examples), numbered the way sending numbers them."""
    for button in buttons:
        if (kind := as_text(button.get("type")).upper()) not in ACTION_TYPES:
            raise _unsupported(f"{kind.lower() or 'untyped'} buttons have no Content action")
    valued = [index for index, button in enumerate(buttons) if _is_valued(button)]
    names = button_variable_names(text_names, valued)
    actions = []
    for index, button in enumerate(buttons):
        kind, title = as_text(button.get("type")).upper(), as_text(button.get("text"))
        if index in names:
            variables[names[index]] = example_for(examples, str(index), f"button {index}")
        if kind == "QUICK_REPLY":
            # The id comes back as the reply's payload; WhatsApp uses the button's text there too.
            actions.append({"type": kind, "title": title, "id": title})
        elif kind == "URL":
            url = as_text(button.get("url"))
            if index in names:
                url = PARAMETER.sub(lambda _, name=names[index]: "{{" + name + "}}", url, count=1)
            actions.append({"type": kind, "title": title, "url": url})
        elif kind == "PHONE_NUMBER":
            actions.append({"type": kind, "title": title, "phone": as_text(button.get("phone_number"))})
        else:
            actions.append({"type": kind, "title": title or "Copy code", "code": "{{" + names[index] + "}}"})
    return actions


def _is_valued(button: dict[str, Any]) -> bool:
    kind = as_text(button.get("type")).upper()
    return kind == "COPY_CODE" or (kind == "URL" and bool(PARAMETER.search(as_text(button.get("url")))))


def _media_example(template: TemplateDefinition) -> str:
    # Twilio sends the Content's own media; WhatsApp reviews it as the header's sample.
    url = as_text(as_dict(template.examples.get("header")).get("url"))
    if not url.startswith("https://"):
        raise ProviderError("the media header needs an example: a public https link to the file",
                            code="template_invalid", title="Missing media example")
    return url


def remote_content(content: dict[str, Any]) -> RemoteTemplate | None:
    """One entry of ContentAndApprovals as a template, or None when it was never submitted to WhatsApp."""
    approvals = as_dict(content.get("approval_requests"))
    # Seen both flat ({"status": ...}) and per channel ({"whatsapp": {...}}).
    approval = as_dict(approvals.get("whatsapp")) or approvals
    status = as_text(approval.get("status")).lower()
    if status in NEVER_SUBMITTED:
        return None
    variables = {str(name): as_text(value) for name, value in as_dict(content.get("variables")).items()}
    components, examples = canonical_from_types(as_dict(content.get("types")), variables)
    return RemoteTemplate(
        provider_template_id=as_text(content.get("sid")),
        name=as_text(approval.get("name")) or as_text(content.get("friendly_name")),
        language=as_text(content.get("language")).replace("-", "_"),
        status=APPROVAL_STATUS_MAP.get(status, TemplateStatus.UNKNOWN),
        category=CATEGORIES.get(as_text(approval.get("category")).upper(), ""),
        parameter_format=parameter_format_of("", components),
        components=components,
        examples=examples,
        reason=as_text(approval.get("rejection_reason")),
        raw=content,
    )


def canonical_from_types(types: dict[str, Any], variables: dict[str, str]) -> tuple[list[dict], dict]:
    """The inverse of content_request: the richest Content type as our components and examples."""
    kind = next((name for name in CONTENT_TYPE_ORDER if isinstance(types.get(name), dict)), "")
    fields = as_dict(types.get(kind))
    if kind == "twilio/card":
        # twilio/card names WhatsApp's body its title and the footer its subtitle.
        fields = {**fields, "body": fields.get("title"), "footer": fields.get("subtitle")}
    components: list[dict[str, Any]] = []
    examples: dict[str, Any] = {}

    def known(text: str) -> dict[str, str]:
        return {name: variables[name] for name in parameter_names(text) if name in variables}

    media = as_text(next(iter(as_list(fields.get("media"))), ""))
    if header_text := as_text(fields.get("header_text")):
        components.append({"type": "HEADER", "format": "TEXT", "text": header_text})
        if known(header_text):
            examples["header"] = known(header_text)
    elif media:
        url = PARAMETER.sub(lambda match: variables.get(match.group(1), match.group(0)), media)
        components.append({"type": "HEADER", "format": _media_format(url)})
        examples["header"] = {"url": url}
    if body := as_text(fields.get("body")):
        components.append({"type": "BODY", "text": body})
        if known(body):
            examples["body"] = known(body)
    if footer := as_text(fields.get("footer")):
        components.append({"type": "FOOTER", "text": footer})
    buttons = [_button(as_dict(action), index, variables, examples)
               for index, action in enumerate(as_list(fields.get("actions")))]
    if buttons:
        components.append({"type": "BUTTONS", "buttons": buttons})
    return components, examples


def _button(action: dict[str, Any], index: int, variables: dict[str, str], examples: dict[str, Any]) -> dict:
    kind = as_text(action.get("type")).upper() or "QUICK_REPLY"  # twilio/quick-reply actions carry no type
    title = as_text(action.get("title"))
    value = ""
    if kind == "URL":
        url = as_text(action.get("url"))
        if match := PARAMETER.search(url):
            value = variables.get(match.group(1), "")
            # WhatsApp's URL buttons have one variable, always {{1}}.
            url = url[:match.start()] + "{{1}}" + url[match.end():]
        button = {"type": kind, "text": title, "url": url}
    elif kind == "PHONE_NUMBER":
        button = {"type": kind, "text": title, "phone_number": as_text(action.get("phone"))}
    else:
        button = {"type": kind, "text": title}
        if kind == "COPY_CODE":
            code = as_text(action.get("code"))
            match = PARAMETER.fullmatch(code.strip())
            value = variables.get(match.group(1), "") if match else code
    if value:
        examples.setdefault("buttons", {})[str(index)] = value
    return button


def _media_format(url: str) -> str:
    # WhatsApp tells image, video and document headers apart by the sample's type.
    mime_type = mimetypes.guess_type(urlsplit(url).path)[0] or ""
    return {"image": "IMAGE", "video": "VIDEO"}.get(mime_type.split("/")[0], "DOCUMENT")


def _all_contents(client: Client) -> list[dict[str, Any]]:
    """Every page of ContentAndApprovals. Twilio's next_page_url names content.twilio.com; it is re-based
    on TWILIO_CONTENT_BASE_URL so that a proxy or test server also gets the following pages."""
    listing = client.content.v1.content_and_approvals
    page = listing.page(page_size=CONTENT_PAGE_SIZE)
    contents: list[dict[str, Any]] = []
    for _ in range(CONTENT_MAX_PAGES):
        contents += [{"sid": item.sid, "friendly_name": item.friendly_name, "language": item.language,
                      "variables": item.variables, "types": item.types, "approval_requests": item.approval_requests}
                     for item in page]
        if not page.next_page_url:
            return contents
        parts = urlsplit(page.next_page_url)
        page = listing.get_page(f"{settings.TWILIO_CONTENT_BASE_URL}{parts.path}?{parts.query}")
    raise ProviderError(f"Twilio's content list has more than {CONTENT_MAX_PAGES} pages; stopped reading",
                        code="too_many_pages", title="Content list too long")


def _rest_exception(response: Response) -> TwilioRestException:
    payload = _parsed(response.text)
    code = payload.get("code")
    return TwilioRestException(response.status_code, "", msg=str(payload.get("message") or ""),
                               code=code if isinstance(code, int) else None)


def _parsed(text: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except ValueError:
        return {"text": text[:2000]}
    return payload if isinstance(payload, dict) else {"value": payload}


PROVIDER = TwilioProvider
