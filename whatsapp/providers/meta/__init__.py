"""
Meta WhatsApp Cloud API: webhook verification and parsing, media download through the Graph API, and
sending (`POST /<phone_number_id>/messages`, one call per message, after an upload of the file when we
hold bytes rather than a public link).

The package: `wire` (settings, names, status and error tables), `parsing` (webhooks -> events), `sending`
(message JSON), `templates` (template submission and listing); this module is the backend, which makes
the calls.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx

from whatsapp.providers.base import (
    ProviderBackend,
    ProviderError,
    ProviderOption,
    VerificationAnswer,
    WebhookRejected,
    WebhookRequest,
    as_dict,
    as_list,
    as_text,
    constant_time_equals,
    hmac_sha256_hex,
    http_client,
    is_retryable_status,
    json_body_decode,
    pooled_http_client,
    response_json,
    retry_after_seconds,
    url_host,
)
from whatsapp.providers.events import (
    ConnectionCheck,
    DownloadedMedia,
    Identity,
    IdentityKind,
    MediaRef,
    MessageType,
    NormalizedEvent,
    OutboundMedia,
    OutboundMessage,
    RemoteTemplate,
    SendResult,
    StoredWebhook,
    TemplateDefinition,
    TemplateManagement,
    TemplateSubmission,
)
from whatsapp.providers.meta import templates
from whatsapp.providers.meta.parsing import parse_payload
from whatsapp.providers.meta.sending import message_body, phone_address, upload_request
from whatsapp.providers.meta.wire import (
    ACCESS_TOKEN,
    APP_SECRET,
    ERROR_ADVICE,
    SIGNATURE_HEADER,
    VERIFY_TOKEN,
    error_title,
    graph_api_version,
    graph_base_url,
    graph_url,
    send_error_class,
)
from whatsapp.providers.safe_fetch import fetch_media

if TYPE_CHECKING:
    from whatsapp.models import Provider as ProviderRow

__all__ = ["PROVIDER", "MetaBackend", "graph_api_version", "graph_base_url", "graph_url"]


class MetaBackend(ProviderBackend):
    redacted_credential = ACCESS_TOKEN
    kind = "meta"
    label = "Meta Cloud API"
    display_label = "Meta WhatsApp Cloud API"
    own_settings = (graph_base_url, graph_api_version)
    stored_headers = (SIGNATURE_HEADER.lower(),)
    # Cloud API default throughput per business number (messages/second); Meta upgrades busy numbers to
    # 1000. https://developers.facebook.com/documentation/business-messaging/whatsapp/throughput
    default_rate_limit_per_second = 80
    max_rate_limit_per_second = 1000
    sendable_types = frozenset({MessageType.TEXT, MessageType.IMAGE, MessageType.AUDIO, MessageType.VIDEO,
                                MessageType.DOCUMENT, MessageType.STICKER, MessageType.LOCATION,
                                MessageType.INTERACTIVE, MessageType.REACTION, MessageType.TEMPLATE})
    supports_reply_context = True
    # Pair rate: about one message every 6 s to one user; bursts borrow from later quota and then fail
    # with 131056. https://developers.facebook.com/documentation/business-messaging/whatsapp/messaging-limits
    pair_interval_seconds = 6.0
    # 131026 "Message undeliverable": the number is not on WhatsApp, has not accepted the terms, or
    # blocked the business (Meta does not say which, on purpose).
    # https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes
    consent_error_codes = {"131026": "undeliverable: not on WhatsApp or blocked the business"}
    # 131049: Meta held a marketing template back to keep the person's engagement healthy (a cap across all
    # businesses); resending at once only burns money. https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes
    marketing_cap_error_codes = frozenset({"131049"})
    not_on_whatsapp_error_codes = frozenset({"131026"})
    # Media ids in webhooks stay downloadable for 7 days.
    media_lifetime = timedelta(days=7)
    # The Graph API answers a media id with a short-lived URL on Meta's lookaside host, e.g.
    # https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=...
    # https://developers.facebook.com/documentation/business-messaging/whatsapp/business-phone-numbers/media
    media_hosts = ("lookaside.fbsbx.com", "graph.facebook.com")
    # Templates are created here and submitted to the WhatsApp Business Account.
    template_management = TemplateManagement.SUBMIT
    options = (
        ProviderOption("phone_number_id", "Cloud API phone number id", target="external_id", required=True),
        ProviderOption("waba_id", "WhatsApp Business Account id", target="business_account_id", required=True),
        ProviderOption("phone_number", "The business phone number (E.164)", target="phone_number"),
        ProviderOption(ACCESS_TOKEN, "System user access token", target="credentials", required=True, secret=True),
        ProviderOption(APP_SECRET, "App secret (signs webhooks)", target="credentials", required=True, secret=True),
        ProviderOption(VERIFY_TOKEN, "Webhook verify token", target="credentials", required=True, secret=True),
    )

    # --- receiving -------------------------------------------------------------------------
    def answer_verification(self, request: WebhookRequest) -> VerificationAnswer:
        # https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/create-webhook-endpoint
        expected = self.credential(VERIFY_TOKEN)
        if request.query.get("hub.mode") != "subscribe":
            raise WebhookRejected(400, "hub.mode must be 'subscribe'")
        if not expected or not constant_time_equals(request.query.get("hub.verify_token", ""), expected):
            raise WebhookRejected(403, "hub.verify_token does not match")
        return VerificationAnswer(200, request.query.get("hub.challenge", ""))

    def verify_webhook(self, request: WebhookRequest) -> None:
        secret = self.credential(APP_SECRET)
        if not secret:
            raise WebhookRejected(403, "this provider has no app secret configured")
        received = request.header(SIGNATURE_HEADER)
        if not received:
            raise WebhookRejected(401, f"missing {SIGNATURE_HEADER} header")
        if not constant_time_equals(received, "sha256=" + hmac_sha256_hex(secret, request.body)):
            raise WebhookRejected(403, f"{SIGNATURE_HEADER} does not match the body")

    def may_route_to(self, other: ProviderRow) -> bool:
        # Numbers of the same Meta app share its app secret, which signed the update.
        secret = self.credential(APP_SECRET)
        return bool(secret) and constant_time_equals(secret, str(other.credentials.get(APP_SECRET, "")))

    def check_payload(self, payload: Any) -> None:
        if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
            raise WebhookRejected(400, 'body must be a JSON object with an "entry" list')

    def parse_webhook(self, stored: StoredWebhook) -> list[NormalizedEvent]:
        return parse_payload(json_body_decode(stored.body), stored.received_at)

    # --- media -----------------------------------------------------------------------------
    def media_download_hosts(self) -> tuple[str, ...]:
        return (*self.media_hosts, url_host(graph_base_url()))

    def rest_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential(ACCESS_TOKEN)}"}

    def download_media(self, media: MediaRef) -> DownloadedMedia:
        # https://developers.facebook.com/documentation/business-messaging/whatsapp/business-phone-numbers/media
        # The id resolves to a URL that lives about 5 minutes and needs the same bearer token, so each
        # attempt resolves afresh.
        with http_client() as client:
            try:
                response = client.get(graph_url(media.provider_media_id), headers=self.rest_headers(),
                                      params={"phone_number_id": self.provider.external_id})
            except httpx.HTTPError as exc:
                raise ProviderError(f"resolving media id failed: {type(exc).__name__}: {exc}", code="network",
                                    retryable=True) from exc
            if response.status_code >= 400:
                error = as_dict(as_dict(response_json(response)).get("error"))
                raise ProviderError(
                    f"resolving media id answered HTTP {response.status_code}: {error.get('message', '')}".strip(),
                    code=as_text(error.get("code")) or f"http_{response.status_code}",
                    retryable=is_retryable_status(response.status_code))
            described = as_dict(response_json(response))
            url = as_text(described.get("url"))
            if not url:
                raise ProviderError("Meta's media description has no url", code="no_url", retryable=True)
        # The token goes to that URL only; a redirect elsewhere is followed without it. The configured Graph
        # host (a proxy, a test server) may be on a private network.
        fetched = fetch_media(url, allowed_hosts=self.media_download_hosts(), source=self.label,
                              mime_type=as_text(described.get("mime_type")), headers=self.rest_headers(),
                              trusted_hosts=(url_host(graph_base_url()),))
        return DownloadedMedia(content=fetched.content, mime_type=fetched.mime_type,
                               sha256=as_text(described.get("sha256")) or media.sha256)

    # --- sending ---------------------------------------------------------------------------
    def recipient_address(self, to: tuple[Identity, ...]) -> str:
        for kind in (IdentityKind.PHONE, IdentityKind.WHATSAPP_ID):
            for identity in to:
                if identity.kind == kind and (address := phone_address(identity.value)):
                    return address
        # A business-scoped user id alone is not sendable yet: Meta's send reference documents only phone
        # numbers for "to", so such a contact waits until a phone number is known.
        return ""

    def send(self, message: OutboundMessage) -> SendResult:
        # https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/send-messages
        to = self.recipient_address(message.to)
        if not to:
            raise ProviderError("the contact has no phone number or WhatsApp id Meta can send to",
                                code="no_address", title="No address")
        client = pooled_http_client()
        body = message_body(message, to, upload=lambda media: self._upload(client, media))
        response = self.rest_call(client, "POST", graph_url(f"{self.provider.external_id}/messages"),
                                  action="the message", json=body)
        payload = as_dict(response_json(response))
        sent = as_dict(next(iter(as_list(payload.get("messages"))), None))
        if not as_text(sent.get("id")):
            # Meta may well have accepted the message: sending it again could deliver it twice.
            raise ProviderError(f"Meta answered HTTP {response.status_code} without a message id; the message "
                                "may have been accepted, so it is not sent again", code="bad_response",
                                title="No message id", http_status=response.status_code, raw=payload)
        return SendResult(provider_message_id=as_text(sent["id"]), raw=payload)

    def _upload(self, client: httpx.Client, media: OutboundMedia) -> str:
        response = self.rest_call(client, "POST", graph_url(f"{self.provider.external_id}/media"),
                                  action="the media upload", **upload_request(media))
        media_id = as_text(as_dict(response_json(response)).get("id"))
        if not media_id:
            # Nothing was sent yet, so trying again is safe.
            raise ProviderError("Meta's media upload answered without an id", code="bad_response",
                                title="No media id", retryable=True, http_status=response.status_code)
        return media_id

    def check_connection(self) -> ConnectionCheck:
        fields = "display_phone_number,verified_name,quality_rating,throughput"
        try:
            with http_client() as client:
                response = self.rest_call(client, "GET", graph_url(self.provider.external_id),
                                          action="the phone number lookup", params={"fields": fields})
        except ProviderError as exc:
            return ConnectionCheck(False, str(exc))
        number = as_dict(response_json(response))
        parts = [as_text(number.get("display_phone_number")), as_text(number.get("verified_name")),
                 f"quality {as_text(number.get('quality_rating')) or 'unknown'}",
                 f"throughput {as_text(as_dict(number.get('throughput')).get('level')) or 'unknown'}"]
        return ConnectionCheck(True, ", ".join(part for part in parts if part))

    # --- templates -------------------------------------------------------------------------
    def template_problems(self, template: TemplateDefinition) -> dict[str, list[str]]:
        try:
            templates.check_submittable(template)
        except ProviderError as exc:
            return {"header": [str(exc)]}
        return {}

    def submit_template(self, template: TemplateDefinition) -> TemplateSubmission:
        request = templates.submission_request(template)
        with http_client() as client:
            response = self.rest_call(client, "POST", graph_url(f"{self._waba_id()}/message_templates"),
                                      action="the template submission", json=request)
        return templates.submission_answer(as_dict(response_json(response)))

    def list_templates(self) -> list[RemoteTemplate]:
        url = graph_url(f"{self._waba_id()}/message_templates")
        with http_client() as client:
            return templates.list_all(url, lambda page_url, params: response_json(
                self.rest_call(client, "GET", page_url, action="the template list", params=params)))

    def _waba_id(self) -> str:
        if not self.provider.business_account_id:
            raise ProviderError("this provider has no WhatsApp Business Account id (templates belong to it)",
                                code="not_configured", title="No WABA id")
        return self.provider.business_account_id

    def answered_error(self, response: httpx.Response, action: str) -> ProviderError:
        # https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes
        # Branch on the code, never on the wording; error_data.details says what happened in this case.
        payload = response_json(response)
        error = as_dict(as_dict(payload).get("error"))
        status = response.status_code
        code = as_text(error.get("code")) or f"http_{status}"
        title = error_title(error) or response.reason_phrase
        retryable, throttled = send_error_class(code, status)
        details = as_text(as_dict(error.get("error_data")).get("details"))
        # Template calls explain a refusal in error_user_msg (e.g. which rule the template breaks).
        user_message = as_text(error.get("error_user_msg"))
        parts = [f"Meta refused {action} (HTTP {status}, error {code}: {title})",
                 details.rstrip(".") if details != title else "",
                 user_message.rstrip(".") if user_message not in (title, details) else "", ERROR_ADVICE.get(code, "")]
        reason = ". ".join(part for part in parts if part)
        return ProviderError(self.redact(reason), code=code, title=title, retryable=retryable,
                             throttled=throttled, http_status=status, raw=payload or response.text[:2000],
                             retry_after=retry_after_seconds(response.headers.get("retry-after")))


PROVIDER = MetaBackend
