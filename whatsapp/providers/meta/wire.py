"""
Meta's wire format: where the Graph API is, the header and credential names, the status and message-type
tables, and the error codes with what they mean for us.
"""

from __future__ import annotations

from typing import Any

from whatsapp.providers.base import ProviderSetting, as_dict, as_list, as_text, base_url, is_retryable_status
from whatsapp.providers.events import MessageStatus, MessageType

# --- settings -------------------------------------------------------------------------------
graph_base_url = ProviderSetting(
    "META_GRAPH_BASE_URL", "https://graph.facebook.com", cast=base_url,
    help="Meta's Graph API (sending, media uploads and downloads, connection tests); a proxy or a test server "
         "may stand in.")
graph_api_version = ProviderSetting("META_GRAPH_API_VERSION", "v25.0", help="Graph API version in every Meta call.")


def graph_url(path: str) -> str:
    return f"{graph_base_url()}/{graph_api_version()}/{path.lstrip('/')}"


# --- webhooks and credentials ---------------------------------------------------------------
SIGNATURE_HEADER = "X-Hub-Signature-256"
ACCESS_TOKEN = "access_token"
APP_SECRET = "app_secret"
VERIFY_TOKEN = "verify_token"

STATUS_MAP = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "played": MessageStatus.PLAYED,
    "failed": MessageStatus.FAILED,
}
# A legacy status Meta still sends for deleted messages; courier ignores it too.
IGNORED_STATUSES = frozenset({"deleted"})

MESSAGE_TYPE_MAP = {
    "text": MessageType.TEXT,
    "image": MessageType.IMAGE,
    "audio": MessageType.AUDIO,
    "voice": MessageType.AUDIO,
    "video": MessageType.VIDEO,
    "document": MessageType.DOCUMENT,
    "sticker": MessageType.STICKER,
    "location": MessageType.LOCATION,
    "contacts": MessageType.CONTACTS,
    "interactive": MessageType.INTERACTIVE_REPLY,
    "button": MessageType.BUTTON,
    "reaction": MessageType.REACTION,
    "order": MessageType.ORDER,
    "system": MessageType.SYSTEM,
    "unsupported": MessageType.UNSUPPORTED,
}

# --- sending ----------------------------------------------------------------------------------
# Meta takes a caption on these media kinds only, and a filename on documents only.
CAPTIONED_MEDIA = frozenset({MessageType.IMAGE, MessageType.VIDEO, MessageType.DOCUMENT})
# A template button's variable goes in a differently named parameter per button kind.
BUTTON_PARAMETER_TYPES = {"quick_reply": "payload", "url": "text", "copy_code": "coupon_code"}

# --- templates --------------------------------------------------------------------------------
# What a listing asks for, per page (Meta's maximum page size varies; 100 is accepted), and a bound on
# pages (a portfolio holds at most 6,000 templates).
TEMPLATE_FIELDS = "id,name,language,status,category,components,parameter_format,quality_score,rejected_reason"
TEMPLATE_PAGE_SIZE = 100
TEMPLATE_MAX_PAGES = 200

# --- error classes ----------------------------------------------------------------------------
# https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes
# Meta pushing back on our rate (app, WABA, number, spam and pair-rate limits): retried later, and not
# held against the provider's health. courier classes these the same way (handlers/meta/whatsapp/api.go).
THROTTLED_CODES = frozenset({"4", "80007", "130429", "131048", "131056", "133016"})
# Transient trouble on Meta's side (unknown error, service unavailable, media fetch, maintenance).
RETRYABLE_CODES = frozenset({"131000", "131016", "131053", "131057"})
# Codes that trying again never fixes, whatever the HTTP status they come with.
PERMANENT_CODES = frozenset({
    "0", "3", "10", "100", "190", "200", "368", "130472", "131008", "131009", "131021", "131026", "131031",
    "131047", "131049", "131050", "131064", "132000", "132001", "132005", "132007", "132012", "132015",
    "132016",
})
# What the error means for us and what to do about it, appended to Meta's own wording.
ERROR_ADVICE = {
    "0": "the access token is invalid or revoked; issue a new system user token",
    "3": "the app lacks a capability or permission for this call",
    "4": "the app's API call rate limit was reached; retrying later",
    "10": "the token lacks a permission (whatsapp_business_messaging); fix the system user's permissions",
    "100": "Meta refused a parameter of the request; check what was sent",
    "190": "the access token has expired; issue a new system user token",
    "200": "the token has no access to this WhatsApp Business Account; assign the asset to the system user",
    "368": "the business account is restricted for policy violations; see WhatsApp Manager",
    "80007": "the business account's rate limit was reached; retrying later",
    "130429": "the number's message throughput was reached; retrying later",
    "130472": "the customer is part of a Meta marketing experiment; the message was not sent",
    "131000": "Meta reported an unknown error; retrying",
    "131008": "a required parameter is missing",
    "131009": "a parameter value is invalid (for a reaction: the target is older than 30 days, deleted, "
              "or itself a reaction)",
    "131016": "Meta's service is temporarily unavailable; retrying",
    "131021": "the recipient is the business number itself",
    "131026": "the message is undeliverable: the number is not on WhatsApp, has not accepted the terms, "
              "or uses an old app version",
    "131031": "the business account is locked; see WhatsApp Manager",
    "131047": "more than 24 hours since the customer last wrote; send an approved template instead",
    "131048": "Meta's spam rate limit was reached (after blocks or spam reports); slow down and pause campaigns",
    "131049": "Meta held back this marketing message to keep engagement healthy; wait at least 24 hours",
    "131050": "the customer stopped marketing messages from this business; do not resend",
    "131053": "Meta could not fetch or read the media (check the link and the MIME type); retrying",
    "131056": "too many messages to this customer in a short time (pair rate); retrying later",
    "131057": "the business number is in maintenance; retrying",
    "131064": "the messaging limit was reached after template-classification violations",
    "132000": "the number of template parameters does not match the template's variables",
    "132001": "the template does not exist in this language or is not approved",
    "132005": "the template text with its variables filled in is too long",
    "132007": "the template's content breaks a format-character policy",
    "132012": "a template parameter does not have the format the template expects",
    "132015": "the template is paused for low quality; edit it or use another",
    "132016": "the template is permanently disabled; create a new one",
    "133016": "too many registration attempts for this number; retrying later",
}


def first_error(errors: Any) -> dict[str, Any]:
    errors = as_list(errors)
    return as_dict(errors[0]) if errors else {}


def error_detail(error: dict[str, Any]) -> str:
    return as_text(as_dict(error.get("error_data")).get("details") or error.get("message"))


def send_error_class(code: str, status: int) -> tuple[bool, bool]:
    """(retryable, throttled) for an error Meta answered; a known code decides before the HTTP status."""
    if code in THROTTLED_CODES:
        return True, True
    if code in RETRYABLE_CODES:
        return True, False
    if code in PERMANENT_CODES:
        return False, False
    if status == 429:
        return True, True
    return is_retryable_status(status), False


def error_title(error: dict[str, Any]) -> str:
    # Meta's message reads "(#131047) Re-engagement message": the part after the code is the title.
    message = as_text(error.get("message"))
    if message.startswith("(#") and ") " in message:
        message = message.split(") ", 1)[1]
    return as_text(error.get("error_user_title")) or message
