"""
Twilio WhatsApp senders. Verification uses the twilio SDK's RequestValidator over the public URL
(rebuilt from PUBLIC_BASE_URL, because Twilio signs the URL it called, not the one behind our proxy).
Inbound messages and status callbacks arrive form-encoded on the same URL. Sending goes through the twilio
SDK (`messages.create`, a form POST to /2010-04-01/Accounts/<AC...>/Messages.json), templates as a Content
SID plus variables, reply buttons and lists as a Content created for them (once per wording).

The package: `wire` (settings, names, status and error tables), `parsing` (webhooks -> events), `sending`
(messages.create arguments), `templates` (Content API), `interactive` (buttons and lists as Content), `sdk`
(the SDK's HTTP client); this module is the backend, which makes the calls.

https://www.twilio.com/docs/messaging/guides/webhook-request
https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.rest.content.v1.content import ContentList
from twilio.rest.content.v1.content.approval_create import ApprovalCreateList

from whatsapp.providers.base import (
    ProviderBackend,
    ProviderError,
    ProviderOption,
    WebhookRejected,
    WebhookRequest,
    parse_each,
    retry_after_seconds,
    url_host,
)
from whatsapp.providers.bodies import form_body_decode
from whatsapp.providers.events import (
    ConnectionCheck,
    DownloadedMedia,
    Identity,
    IdentityKind,
    MediaRef,
    MessageType,
    NormalizedEvent,
    OutboundMessage,
    RemoteTemplate,
    SendResult,
    StoredWebhook,
    TemplateDefinition,
    TemplateManagement,
    TemplateStatus,
    TemplateSubmission,
)
from whatsapp.providers.safe_fetch import fetch_media, host_allowed
from whatsapp.providers.twilio.interactive import (
    cached_content_sid,
    content_cache_key,
    forget_content_sid,
    interactive_request,
    remember_content_sid,
)
from whatsapp.providers.twilio.parsing import parse_form
from whatsapp.providers.twilio.sdk import AnswerKeepingHttpClient, parsed, rest_exception
from whatsapp.providers.twilio.sending import message_arguments
from whatsapp.providers.twilio.templates import (
    all_contents,
    button_variable_names,
    canonical_from_types,
    content_request,
    remote_content,
)
from whatsapp.providers.twilio.wire import (
    APPROVAL_STATUS_MAP,
    AUTH_TOKEN,
    CHANNEL_PREFIX,
    CONTENT_SID_INVALID,
    ERROR_ADVICE,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TWILIO_API_HOST,
    api_base_url,
    content_base_url,
    send_error_class,
)

__all__ = ["PROVIDER", "TwilioBackend", "api_base_url", "button_variable_names", "canonical_from_types",
           "content_base_url", "content_request", "remote_content"]

T = TypeVar("T")


class TwilioBackend(ProviderBackend):
    redacted_credential = AUTH_TOKEN
    kind = "twilio"
    label = "Twilio"
    display_label = "Twilio"
    own_settings = (api_base_url, content_base_url)
    accepted_content_types = ("application/x-www-form-urlencoded",)
    stored_headers = (SIGNATURE_HEADER.lower(), IDEMPOTENCY_HEADER.lower())
    # WhatsApp senders on Twilio start at 10 text messages per second (Meta's tier can raise it).
    # https://www.twilio.com/docs/whatsapp/api#rate-limits
    default_rate_limit_per_second = 10
    # Buttons and lists go out as a Content created for them (see `interactive`); reactions and stickers
    # have no Messages API form.
    sendable_types = frozenset({MessageType.TEXT, MessageType.IMAGE, MessageType.AUDIO, MessageType.VIDEO,
                                MessageType.DOCUMENT, MessageType.LOCATION, MessageType.INTERACTIVE,
                                MessageType.TEMPLATE})
    # https://www.twilio.com/docs/api/errors/63014 (blocked by the user), 63024 (invalid recipient),
    # 63003 (the To address is not a WhatsApp user or is inactive).
    consent_error_codes = {"63014": "blocked the business", "63024": "invalid recipient: not on WhatsApp",
                           "63003": "not a WhatsApp user or inactive"}
    # 63049: Meta chose not to deliver a marketing message (WhatsApp's 131049).
    # https://www.twilio.com/docs/api/errors/63049
    marketing_cap_error_codes = frozenset({"63049"})
    not_on_whatsapp_error_codes = frozenset({"63024", "63003"})
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
        ProviderOption("sms_from", "Sender of SMS fallbacks: an SMS-capable number (E.164) or a Messaging Service "
                                   "SID (MG...); empty: the WhatsApp sender number", target="config"),
    )
    # Plain SMS through the same account: a campaign's fallback for people WhatsApp cannot reach.
    sends_sms = True

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
        return request.header(IDEMPOTENCY_HEADER)

    def parse_webhook(self, stored: StoredWebhook) -> list[NormalizedEvent]:
        return parse_each([form_body_decode(stored.body)], lambda form: parse_form(form, stored.received_at))

    def download_media(self, media: MediaRef) -> DownloadedMedia:
        # Twilio serves media only with HTTP Basic auth and redirects to short-lived storage URLs.
        # https://www.twilio.com/docs/messaging/api/media-resource
        # The credentials go to the REST API's host only: neither to the storage host it redirects to, nor
        # to a media URL that names a storage host itself.
        api_hosts = tuple(host for host in (TWILIO_API_HOST, url_host(api_base_url())) if host)
        try:
            first_host = httpx.URL(media.url).host
        except httpx.InvalidURL:
            first_host = ""  # fetch_media refuses it
        auth = None
        if host_allowed(first_host, api_hosts):
            auth = (self.provider.business_account_id, self.credential(AUTH_TOKEN))
        return fetch_media(media.url, allowed_hosts=self.media_download_hosts(), source=self.label,
                           mime_type=media.mime_type, auth=auth,
                           trusted_hosts=(url_host(api_base_url()),))

    def media_download_hosts(self) -> tuple[str, ...]:
        return (*self.media_hosts, url_host(api_base_url()))

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
        addressed = {"from_": CHANNEL_PREFIX + self.provider.phone_number, "to": CHANNEL_PREFIX + to}
        if message.status_callback_url:
            addressed["status_callback"] = message.status_callback_url
        if message.message_type == MessageType.INTERACTIVE:
            return self._send_interactive(message, addressed)
        return self._create_message({**addressed, **message_arguments(message)})

    def send_sms(self, to_phone: str, text: str) -> SendResult:
        # The same Messages resource without the whatsapp: channel prefix is an SMS; a Messaging Service SID
        # lets Twilio pick the sender from its pool. https://www.twilio.com/docs/messaging/api/message-resource
        sender = self.config_value("sms_from") or self.provider.phone_number
        origin = {"messaging_service_sid": sender} if sender.startswith("MG") else {"from_": sender}
        return self._create_message({**origin, "to": to_phone, "body": text})

    def _create_message(self, arguments: dict[str, Any]) -> SendResult:
        created, raw = self._sdk_call("the message", lambda client: client.messages.create(**arguments))
        if not created.sid:
            raise ProviderError("Twilio answered without a message sid; the message may have been accepted, so it "
                                "is not sent again", code="bad_response", title="No message sid", raw=raw)
        return SendResult(provider_message_id=created.sid, raw=raw)

    def _send_interactive(self, message: OutboundMessage, addressed: dict[str, Any]) -> SendResult:
        # The Messages API has no interactive message: it sends a Content by its SID, with no Body. A session
        # message of type quick-reply or list-picker needs no WhatsApp approval.
        # https://www.twilio.com/docs/content/send-templates-created-with-the-content-template-builder
        request, digest = interactive_request(message)
        key = content_cache_key(self.provider.business_account_id, digest)
        if sid := cached_content_sid(key):
            try:
                return self._create_message({**addressed, "content_sid": sid})
            except ProviderError as exc:
                if exc.code != CONTENT_SID_INVALID:
                    raise
                # The cached Content is gone at Twilio (deleted in the Console): create it again, once.
                forget_content_sid(key)
        sid = self._create_content(request)
        remember_content_sid(key, sid)
        return self._create_message({**addressed, "content_sid": sid})

    def _create_content(self, request: dict[str, Any]) -> str:
        # https://www.twilio.com/docs/content/content-api-resources (POST /v1/Content)
        created, raw = self._sdk_call("the interactive content", lambda client: client.content.v1.contents.create(
            ContentList.ContentCreateRequest(request)))
        sid = created.sid or ""
        if not sid.startswith("HX"):
            raise ProviderError("Twilio created the interactive content without giving its SID", code="bad_response",
                                title="No content SID", raw=raw)
        return sid

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
        http = AnswerKeepingHttpClient(timeout=settings.PROVIDER_HTTP_TIMEOUT_SECONDS)
        client = Client(self.provider.business_account_id, token, http_client=http)
        # Messages and Accounts live in the SDK's `api` domain, templates in `content`; each domain's base
        # URL is a plain attribute.
        client.api.base_url = api_base_url()
        client.content.base_url = content_base_url()
        try:
            return call(client), http.last_json()
        except (TwilioRestException, TwilioServiceException) as exc:
            raise self._answered_error(exc, action, http.last_response) from exc
        except TwilioException as exc:
            # A list page that answered an error raises a bare TwilioException ("Unable to fetch page").
            if http.last_response is not None and http.last_response.status_code >= 400:
                raise self._answered_error(rest_exception(http.last_response), action, http.last_response) from exc
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
        contents, _ = self._sdk_call("the content list", all_contents)
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
        retryable, throttled = send_error_class(code, status)
        parts = [f"Twilio refused {action} (HTTP {status}, error {code}: {title.rstrip('.')})",
                 ERROR_ADVICE.get(code, "")]
        return ProviderError(self.redact(". ".join(part for part in parts if part)), code=code, title=title,
                             retryable=retryable, throttled=throttled, http_status=status or None,
                             retry_after=retry_after_seconds((response.headers or {}).get("Retry-After")
                                                             if response else None),
                             raw=parsed(response.text) if response else {})


PROVIDER = TwilioBackend
