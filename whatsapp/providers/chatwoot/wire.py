"""
Chatwoot's wire format: the header and credential names, the event and attachment tables, and what an
HTTP error from its REST API means for us.
"""

from __future__ import annotations

from typing import Any

from whatsapp.providers.base import as_dict, as_text
from whatsapp.providers.events import MessageStatus, MessageType

SIGNATURE_HEADER = "X-Chatwoot-Signature"
TIMESTAMP_HEADER = "X-Chatwoot-Timestamp"
DELIVERY_HEADER = "X-Chatwoot-Delivery"
API_TOKEN = "api_token"
WEBHOOK_SECRET = "webhook_secret"
URL_TOKEN = "url_token"
TIMESTAMP_TOLERANCE_SECONDS = 300

ATTACHMENT_TYPES = {
    "image": MessageType.IMAGE,
    "audio": MessageType.AUDIO,
    "video": MessageType.VIDEO,
    "file": MessageType.DOCUMENT,
    "location": MessageType.LOCATION,
    "contact": MessageType.CONTACTS,
}
STATUS_MAP = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "failed": MessageStatus.FAILED,
}
CONVERSATION_EVENTS = frozenset({"conversation_created", "conversation_status_changed", "conversation_updated"})
CONTACT_EVENTS = frozenset({"contact_created", "contact_updated"})
# Nested (push-format) messages give message_type as an integer.
PUSH_MESSAGE_TYPES = {0: "incoming", 1: "outgoing", 2: "activity", 3: "template"}
# What an HTTP error from Chatwoot's REST API means for us.
ERROR_ADVICE = {
    401: "the API token is wrong or revoked; set the access token of an agent or bot of this account",
    403: "the API token has no access to this account or inbox; use a token of an agent or bot of the inbox",
    404: "the account, inbox or conversation does not exist in Chatwoot",
    422: "Chatwoot refused the message content",
    429: "Chatwoot's request rate limit was reached; retrying later",
}


def error_message(payload: Any) -> str:
    # Chatwoot answers {"error": "..."}, {"errors": [...]} or {"message": "..."} depending on the controller.
    payload = as_dict(payload)
    errors = payload.get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(as_text(item) for item in errors)
    return as_text(payload.get("error") or payload.get("message") or errors or "")
