"""
Twilio's wire format: where its APIs are, the header and credential names, the status tables, the error
codes with what they mean for us, and the Content API's names.
"""

from __future__ import annotations

from whatsapp.providers.base import ProviderSetting, base_url, is_retryable_status
from whatsapp.providers.events import MessageStatus, MessageType, TemplateStatus

# --- settings -------------------------------------------------------------------------------
api_base_url = ProviderSetting(
    "TWILIO_API_BASE_URL", "https://api.twilio.com", cast=base_url,
    help="Twilio's REST API, as the twilio SDK's `api` domain (for a proxy or a test server).")
content_base_url = ProviderSetting(
    "TWILIO_CONTENT_BASE_URL", "https://content.twilio.com", cast=base_url,
    help="Twilio's Content API (templates), as the twilio SDK's `content` domain (for a proxy or a test server).")

# --- webhooks and credentials ---------------------------------------------------------------
SIGNATURE_HEADER = "X-Twilio-Signature"
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
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

MEDIA_TYPE_BY_PREFIX = {"image/": MessageType.IMAGE, "audio/": MessageType.AUDIO, "video/": MessageType.VIDEO}


def address(value: str) -> str:
    """An address without its channel prefix ("whatsapp:+1555..." -> "+1555...")."""
    return value[len(CHANNEL_PREFIX):] if value.startswith(CHANNEL_PREFIX) else value


def is_phone(value: str) -> bool:
    return value.startswith("+") and value[1:].isdigit()


# --- error classes ----------------------------------------------------------------------------
# https://www.twilio.com/docs/whatsapp/api/error-code-mapping
# Rate limits (the WhatsApp sender's, the account's, the REST API's): retried later, not held against
# the provider's health.
THROTTLED_CODES = frozenset({"63017", "63018", "20429"})
# Codes that trying again never fixes.
PERMANENT_CODES = frozenset({"20003", "21211", "21610", "21655", "63003", "63014", "63016", "63021", "63024",
                             "63032"})
# The ContentSid of a send names no Content of this account (deleted, or of another account).
# https://www.twilio.com/docs/api/errors/21655
CONTENT_SID_INVALID = "21655"
ERROR_ADVICE = {
    "20003": "the account SID or auth token is wrong",
    "20429": "Twilio's API rate limit was reached; retrying later",
    "21211": "the recipient's number is not valid",
    "21610": "the recipient unsubscribed from this sender",
    "21655": "the Content SID names no Content of this account (deleted, or created in another account)",
    "63003": "the recipient's number is invalid or not on WhatsApp",
    "63014": "the customer blocked this business or opted out; do not resend",
    "63016": "more than 24 hours since the customer last wrote; send an approved template instead",
    "63017": "the account's message rate was exceeded; retrying later",
    "63018": "the WhatsApp sender's rate limit was reached; retrying later",
    "63021": "WhatsApp refused the content (media type, or a template longer than 1024 characters)",
    "63024": "the recipient is not a valid WhatsApp user",
    "63032": "WhatsApp did not deliver this marketing message (the customer is in an experiment or at a limit)",
}


def send_error_class(code: str, status: int) -> tuple[bool, bool]:
    """(retryable, throttled) for an error Twilio answered; a known code decides before the HTTP status."""
    if code in THROTTLED_CODES or status == 429:
        return True, True
    if code in PERMANENT_CODES:
        return False, False
    return is_retryable_status(status), False


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

# --- reply buttons and lists (session Content) ------------------------------------------------
# The Messages API has no interactive message: buttons go as a twilio/quick-reply Content, a list as a
# twilio/list-picker one. Their limits, from https://www.twilio.com/docs/content/twilio-quick-reply and
# https://www.twilio.com/docs/content/twiliolist-picker (WhatsApp's own: 20 characters for a button's title
# and for the label of a list's button).
QUICK_REPLY_TYPE = "twilio/quick-reply"
LIST_PICKER_TYPE = "twilio/list-picker"
# Up to 3 quick replies in a session message sent without WhatsApp approval.
SESSION_QUICK_REPLIES_MAX = 3
QUICK_REPLY_TITLE_MAX = 20
LIST_ITEMS_MAX = 10
LIST_ITEM_MAX = 24
LIST_DESCRIPTION_MAX = 72
LIST_BUTTON_MAX = 20
INTERACTIVE_ID_MAX = 200
INTERACTIVE_BODY_MAX = 1024
# A Content needs a language; a session message is never reviewed, so it says nothing to anyone.
INTERACTIVE_LANGUAGE = "en"
# The SID of each created Content, per account and digest of the Content's JSON, in Django's cache. A
# Content never expires at Twilio; the entry does, so one-off wordings do not stay in the cache forever.
CONTENT_CACHE_PREFIX = "wa:twilio:content:"
CONTENT_CACHE_SECONDS = 30 * 24 * 3600
