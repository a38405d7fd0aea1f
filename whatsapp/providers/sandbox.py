"""
The sandbox provider: a simulated phone, so the whole loop runs with no account and no network.

Webhook format (our own, kept deliberately small), signed with `X-Sandbox-Signature:
sha256=<hex HMAC-SHA256 of the raw body keyed with the provider's webhook secret>`:

    {"events": [
        {"type": "message", "id": "sbx-1", "from": "+15551230001", "name": "Ana",
         "text": "hello", "timestamp": 1767225600},
        {"type": "message", "id": "sbx-3", "from": "+15551230001", "kind": "voice", "timestamp": 1767225602,
         "file": {"id": "f-1", "url": "http://127.0.0.1:8000/simulator/<provider uuid>/media/f-1/",
                  "mime_type": "audio/ogg", "sha256": "<hex>", "size": 5120, "filename": "note.ogg"}},
        {"type": "message", "id": "sbx-4", "from": "+15551230001", "kind": "image", "caption": "the receipt",
         "file": {...}, "timestamp": 1767225603},
        {"type": "message", "id": "sbx-5", "from": "+15551230001", "kind": "button", "reply_to": "sbx-9",
         "reply": {"id": "yes", "title": "Yes"}, "timestamp": 1767225604},
        {"type": "status", "message_id": "sbx-2", "status": "delivered", "timestamp": 1767225601,
         "error": {"code": "...", "title": "..."}}
    ]}

A message's "kind" is text (the default), voice (a voice note), image (with an optional caption), button
(a tap on a reply button) or list (a tap on a list row); "reply_to" names the message it quotes. A file is
fetched from its "url", which the simulator serves from our own server (INTERNAL_BASE_URL, see
`whatsapp.services.providers.provider_simulated_file_keep`).

Sending records the message under a new `sbx-` id; the simulated phone then reports sent, delivered
and read back through the provider's own webhook URL (see `whatsapp.sandbox_phone`).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction

from core.queueing import task_named
from whatsapp.providers.base import (
    ProviderBackend,
    ProviderOption,
    ProviderSetting,
    WebhookRejected,
    WebhookRequest,
    as_dict,
    as_list,
    as_text,
    constant_time_equals,
    hmac_sha256_hex,
    json_body_decode,
    parse_each,
    url_host,
)
from whatsapp.providers.events import (
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
from whatsapp.providers.safe_fetch import fetch_media

status_delay_seconds = ProviderSetting(
    "SANDBOX_STATUS_DELAY_SECONDS", 1.0, cast=float,
    help="Delay between the sandbox phone's sent, delivered and read receipts.")

SIGNATURE_HEADER = "X-Sandbox-Signature"
WEBHOOK_SECRET = "webhook_secret"

STATUS_MAP = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "failed": MessageStatus.FAILED,
}


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac_sha256_hex(secret, body)


# A message's kind on the wire, and what it is in our vocabulary. A tap answers with the kind of choice
# tapped: a reply button or a list row.
KIND_TYPES = {"text": MessageType.TEXT, "voice": MessageType.AUDIO, "image": MessageType.IMAGE,
              "button": MessageType.INTERACTIVE_REPLY, "list": MessageType.INTERACTIVE_REPLY}
REPLY_KINDS = {"button": "button_reply", "list": "list_reply"}


def inbound_body(*, from_phone: str, text: str = "", name: str = "", message_id: str = "",
                 **fields: Any) -> bytes:
    """One inbound message; `fields` are the other members of its event ("kind", "file", "reply"...)."""
    event = {"type": "message", "id": message_id or f"sbx-in-{uuid.uuid4().hex}", "from": from_phone,
             "name": name, "timestamp": time.time(), **({"text": text} if text or not fields else {}), **fields}
    return json.dumps({"events": [event]}).encode()


def status_body(provider_message_id: str, status: str) -> bytes:
    event = {"type": "status", "message_id": provider_message_id, "status": status, "timestamp": time.time()}
    return json.dumps({"events": [event]}).encode()


def _timestamp(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(tz=UTC)


class SandboxBackend(ProviderBackend):
    kind = "sandbox"
    label = "Sandbox"
    display_label = "Sandbox (local simulator)"
    own_settings = (status_delay_seconds,)
    stored_headers = (SIGNATURE_HEADER.lower(),)
    # Its sends schedule the simulated receipts when the caller's transaction commits.
    sends_on_threads = False
    default_rate_limit_per_second = 50
    can_simulate_inbound = True
    # The simulated phone shows anything; it only reports receipts.
    sendable_types = frozenset({MessageType.TEXT, MessageType.IMAGE, MessageType.AUDIO, MessageType.VIDEO,
                                MessageType.DOCUMENT, MessageType.STICKER, MessageType.LOCATION,
                                MessageType.INTERACTIVE, MessageType.REACTION, MessageType.TEMPLATE})
    supports_reply_context = True
    # Templates are submitted to the simulator, which approves them at once (it has no reviewer).
    template_management = TemplateManagement.SUBMIT
    lists_templates = False
    options = (
        ProviderOption("phone_number", "The simulated business number (E.164)", target="phone_number",
                       default="+15550000000"),
        ProviderOption(WEBHOOK_SECRET, "Shared secret that signs the simulator's webhooks (generated when empty)",
                       target="credentials", secret=True, generated=True),
    )

    def verify_webhook(self, request: WebhookRequest) -> None:
        secret = self.credential(WEBHOOK_SECRET)
        if not secret:
            raise WebhookRejected(403, "this sandbox provider has no webhook secret configured")
        received = request.header(SIGNATURE_HEADER)
        if not received:
            raise WebhookRejected(401, f"missing {SIGNATURE_HEADER} header")
        if not constant_time_equals(received, sign(secret, request.body)):
            raise WebhookRejected(403, f"{SIGNATURE_HEADER} does not match the body")

    def check_payload(self, payload: Any) -> None:
        if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
            raise WebhookRejected(400, 'body must be a JSON object with an "events" list')

    def parse_webhook(self, stored: StoredWebhook) -> list[NormalizedEvent]:
        payload = json_body_decode(stored.body)
        return parse_each(as_list(as_dict(payload).get("events")), self._parse_event)

    def _parse_event(self, item: Any) -> NormalizedEvent:
        if not isinstance(item, dict):
            return UnhandledEvent("sandbox event is not an object", raw={"value": item})
        if item.get("type") == "message" and item.get("id") and item.get("from"):
            message_type, text, content, media = _message_content(item)
            return InboundMessage(
                provider_message_id=str(item["id"]),
                timestamp=_timestamp(item.get("timestamp")),
                identities=(Identity(IdentityKind.PHONE, str(item["from"])),),
                profile_name=as_text(item.get("name")),
                message_type=message_type,
                text=text,
                content=content,
                media=media,
                reply_to_provider_message_id=as_text(item.get("reply_to")),
                raw=item,
            )
        if item.get("type") == "status" and item.get("message_id"):
            error = item.get("error") if isinstance(item.get("error"), dict) else {}
            return StatusUpdate(
                provider_message_id=str(item["message_id"]),
                status=STATUS_MAP.get(str(item.get("status")), MessageStatus.UNKNOWN),
                timestamp=_timestamp(item.get("timestamp")),
                error_code=str(error.get("code", "")),
                error_title=str(error.get("title", "")),
                raw=item,
            )
        return UnhandledEvent(f"unknown sandbox event type {item.get('type')!r}", raw=item)

    def download_media(self, media: MediaRef) -> DownloadedMedia:
        # The simulator serves its phone's files from our own server, where workers reach it: a host the
        # operator configured, so it may be on a private network (a container's name, localhost).
        fetched = fetch_media(media.url, allowed_hosts=self.media_download_hosts(), source=self.label,
                              mime_type=media.mime_type, trusted_hosts=self.media_download_hosts())
        return DownloadedMedia(content=fetched.content, mime_type=fetched.mime_type, sha256=media.sha256)

    def media_download_hosts(self) -> tuple[str, ...]:
        return tuple(host for host in (url_host(settings.INTERNAL_BASE_URL),) if host)

    def recipient_address(self, to: tuple[Identity, ...]) -> str:
        for kind in (IdentityKind.PHONE, IdentityKind.SANDBOX_ID, IdentityKind.WHATSAPP_ID):
            for identity in to:
                if identity.kind == kind:
                    return identity.value
        return ""

    # A status report with this error code stands for a person who blocked the business.
    consent_error_codes = {"blocked": "blocked the business (simulated)"}
    marketing_cap_error_codes = frozenset({"marketing_cap"})
    not_on_whatsapp_error_codes = frozenset({"not_on_whatsapp"})

    def send(self, message: OutboundMessage) -> SendResult:
        provider_message_id = f"sbx-{uuid.uuid4().hex}"
        schedule_receipts(self.provider.pk, provider_message_id)
        return SendResult(provider_message_id=provider_message_id, status=MessageStatus.SENT,
                          raw={"id": provider_message_id, "to": self.recipient_address(message.to)})

    def submit_template(self, template: TemplateDefinition) -> TemplateSubmission:
        # The simulator has no reviewer: every version is approved at once, under an id of its own.
        template_id = f"sandbox-tpl-{uuid.uuid4().hex}"
        return TemplateSubmission(provider_template_id=template_id, status=TemplateStatus.APPROVED,
                                  raw={"id": template_id, "status": "approved", "name": template.name,
                                       "language": template.language, "version": template.version})

    def list_templates(self) -> list[RemoteTemplate]:
        # The simulator holds no templates of its own: everything it approved is already ours.
        return []

    def signed_headers(self, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.credential(WEBHOOK_SECRET), body)}

    def simulated_inbound(self, *, from_phone: str, name: str, message_type: str = MessageType.TEXT, text: str = "",
                          media: MediaRef | None = None, content: dict[str, Any] | None = None,
                          reply_to_provider_message_id: str = "") -> tuple[bytes, dict[str, str], str]:
        message_id = f"sbx-in-{uuid.uuid4().hex}"
        fields = _simulated_fields(message_type, text, media, content or {})
        if reply_to_provider_message_id:
            fields["reply_to"] = reply_to_provider_message_id
        body = inbound_body(from_phone=from_phone, name=name, message_id=message_id, **fields)
        return body, self.signed_headers(body), message_id

    def check_connection(self) -> ConnectionCheck:
        if not self.credential(WEBHOOK_SECRET):
            return ConnectionCheck(False, "no webhook secret configured")
        return ConnectionCheck(True, "the sandbox simulator is always reachable")


PROVIDER = SandboxBackend


def _file(media: MediaRef) -> dict[str, Any]:
    file = {"id": media.provider_media_id, "url": media.url, "mime_type": media.mime_type, "sha256": media.sha256,
            "size": media.size_bytes, "filename": media.filename}
    return {key: value for key, value in file.items() if value not in ("", None)}


def _simulated_fields(message_type: str, text: str, media: MediaRef | None, content: dict[str, Any]) -> dict[str, Any]:
    """The wire members of one simulated message, from our vocabulary (see simulated_inbound's docstring)."""
    if message_type == MessageType.TEXT:
        return {"kind": "text", "text": text}
    if message_type in (MessageType.AUDIO, MessageType.IMAGE) and media is not None:
        if message_type == MessageType.AUDIO:
            return {"kind": "voice", "file": _file(media)}
        return {"kind": "image", "file": _file(media), **({"caption": text} if text else {})}
    kind = {reply: wire for wire, reply in REPLY_KINDS.items()}.get(content.get("kind", ""))
    if message_type == MessageType.INTERACTIVE_REPLY and kind:
        reply = {key: str(content[key]) for key in ("id", "title", "description") if content.get(key)}
        return {"kind": kind, "reply": reply}
    raise ValueError(f"the sandbox phone cannot send a {message_type} message like this")


def _message_content(item: dict[str, Any]) -> tuple[str, str, dict[str, Any], tuple[MediaRef, ...]]:
    """(message type, text, content, media) of one message event, by its kind."""
    kind = as_text(item.get("kind")) or "text"
    message_type = KIND_TYPES.get(kind, MessageType.UNSUPPORTED)
    if message_type == MessageType.TEXT:
        text = as_text(item.get("text"))
        return message_type, text, {"text": text}, ()
    if message_type in (MessageType.AUDIO, MessageType.IMAGE):
        file = as_dict(item.get("file"))
        caption = as_text(item.get("caption"))
        size = file.get("size")
        ref = MediaRef(provider_media_id=as_text(file.get("id")), url=as_text(file.get("url")),
                       mime_type=as_text(file.get("mime_type")), sha256=as_text(file.get("sha256")),
                       filename=as_text(file.get("filename")), caption=caption,
                       size_bytes=size if isinstance(size, int) and size >= 0 else None)
        # A voice note, as WhatsApp marks one (a recording, not an audio file shared).
        content = {"voice": True} if message_type == MessageType.AUDIO else {}
        return message_type, caption, content, (ref,) if ref.url else ()
    if message_type == MessageType.INTERACTIVE_REPLY:
        reply = as_dict(item.get("reply"))
        content = {"kind": REPLY_KINDS[kind], "id": as_text(reply.get("id")), "title": as_text(reply.get("title"))}
        if kind == "list" and reply.get("description"):
            content["description"] = as_text(reply.get("description"))
        return message_type, content["title"], content, ()
    return message_type, "", {"unsupported_type": kind}, ()


# The simulated phone reports each of these, one delay apart, after a send.
RECEIPT_SEQUENCE = ("sent", "delivered", "read")


def schedule_receipts(provider_id: int, provider_message_id: str) -> None:
    sandbox_report_status_task = task_named("whatsapp.tasks.sandbox_report_status_task")

    delay = status_delay_seconds()
    for step, status in enumerate(RECEIPT_SEQUENCE):
        transaction.on_commit(
            lambda status=status, step=step: sandbox_report_status_task.apply_async(
                (provider_id, provider_message_id, status), countdown=delay * step
            ),
            robust=True,
        )
