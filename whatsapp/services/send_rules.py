"""
What is checked before any provider call, for every way a message is sent (API, admin, beat jobs):
the content against WhatsApp's limits, the contact's consent, the 24-hour window, the template and
its variables, the recipient and what the provider can carry. Each refusal has a code and a readable
reason; the API answers it with a 4xx.

Limits: https://developers.facebook.com/docs/whatsapp/cloud-api/messages (text 4096; captions 1024;
reply buttons at most 3, titles 20, ids 256; lists at most 10 rows in at most 10 sections, row titles
24, descriptions 72, the list button 20; headers and footers 60).
"""

from __future__ import annotations

from typing import Any

from contacts.models import Contact, ContactIdentity
from templates_app.models import MessageTemplate
from templates_app.parameters import BoundTemplate, TemplateVariablesError, template_bind
from templates_app.selectors import templates_for
from whatsapp.models import Conversation, Message, Provider
from whatsapp.providers import backend_for
from whatsapp.providers.events import MEDIA_TYPES, Identity, MessageType, TemplateStatus
from whatsapp.services.sessions import session_current

TEXT_MAX = 4096
CAPTION_MAX = 1024
BUTTONS_MAX = 3
BUTTON_TITLE_MAX = 20
BUTTON_ID_MAX = 256
BUTTON_BODY_MAX = 1024
LIST_ROWS_MAX = 10
LIST_SECTIONS_MAX = 10
ROW_ID_MAX = 200
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
HEADER_FOOTER_MAX = 60
EMOJI_MAX = 16
# Audio and stickers carry no caption on WhatsApp.
CAPTIONED_TYPES = frozenset({MessageType.IMAGE, MessageType.VIDEO, MessageType.DOCUMENT})


class SendRefused(Exception):
    """A message that will not be sent, with a code, a readable reason and details for the caller."""

    def __init__(self, code: str, reason: str, *, details: dict[str, Any] | None = None):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.details = details or {}

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "detail": self.reason, **self.details}


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise SendRefused("invalid_content", reason)


def _text_within(value: Any, limit: int, what: str, *, required: bool = True) -> str:
    text = value if isinstance(value, str) else ("" if value is None else None)
    _require(text is not None, f"{what} must be text")
    _require(bool(text.strip()) or not required, f"{what} is required")
    _require(len(text) <= limit, f"{what} is longer than {limit} characters ({len(text)})")
    return text


def text_content(text: Any, preview_url: bool = False) -> dict[str, Any]:
    return {"text": _text_within(text, TEXT_MAX, "text"), "preview_url": bool(preview_url)}


def media_content(message_type: str, *, url: str, caption: str, filename: str, mime_type: str) -> dict[str, Any]:
    _require(message_type in MEDIA_TYPES, f"{message_type} is not a media type")
    if caption:
        _require(message_type in CAPTIONED_TYPES, f"WhatsApp shows no caption on {message_type} messages")
        _text_within(caption, CAPTION_MAX, "caption")
    if url:
        _require(url.startswith(("https://", "http://")) and len(url) <= 2000, "media_url must be an http(s) URL")
    content = {"url": url, "caption": caption, "mime_type": mime_type}
    if message_type == MessageType.DOCUMENT and filename:
        content["filename"] = filename[:240]
    return content


def _choices_unique(items: list[dict], what: str) -> None:
    ids = [item["id"] for item in items]
    titles = [item["title"] for item in items]
    _require(len(set(ids)) == len(ids), f"{what} ids must be unique")
    _require(len(set(titles)) == len(titles), f"{what} titles must be unique")


def interactive_content(data: dict[str, Any]) -> dict[str, Any]:
    _require(isinstance(data, dict), "interactive content must be an object")
    content: dict[str, Any] = {
        "header": _text_within(data.get("header", ""), HEADER_FOOTER_MAX, "header", required=False),
        "footer": _text_within(data.get("footer", ""), HEADER_FOOTER_MAX, "footer", required=False),
    }
    buttons, sections = data.get("buttons"), data.get("sections")
    _require(bool(buttons) != bool(sections), "give either buttons (reply buttons) or sections (a list)")
    if buttons:
        _require(isinstance(buttons, list) and 1 <= len(buttons) <= BUTTONS_MAX,
                 f"reply buttons: between 1 and {BUTTONS_MAX}")
        content["body"] = _text_within(data.get("body"), BUTTON_BODY_MAX, "body")
        content["buttons"] = [_choice(button, BUTTON_ID_MAX, BUTTON_TITLE_MAX, "button") for button in buttons]
        _choices_unique(content["buttons"], "button")
        return content
    _require(isinstance(sections, list) and 1 <= len(sections) <= LIST_SECTIONS_MAX,
             f"list sections: between 1 and {LIST_SECTIONS_MAX}")
    content["body"] = _text_within(data.get("body"), TEXT_MAX, "body")
    content["button"] = _text_within(data.get("button"), BUTTON_TITLE_MAX, "button (the list's button label)")
    content["sections"] = [_section(section, many=len(sections) > 1) for section in sections]
    rows = [row for section in content["sections"] for row in section["rows"]]
    _require(1 <= len(rows) <= LIST_ROWS_MAX, f"a list holds between 1 and {LIST_ROWS_MAX} rows in all")
    _choices_unique(rows, "row")
    return content


def _section(section: Any, *, many: bool) -> dict[str, Any]:
    _require(isinstance(section, dict) and isinstance(section.get("rows"), list), "each section needs rows")
    return {
        "title": _text_within(section.get("title", ""), ROW_TITLE_MAX, "section title", required=many),
        "rows": [_choice(row, ROW_ID_MAX, ROW_TITLE_MAX, "row", description=True) for row in section["rows"]],
    }


def _choice(item: Any, id_max: int, title_max: int, what: str, *, description: bool = False) -> dict[str, str]:
    _require(isinstance(item, dict), f"each {what} must be an object with id and title")
    choice = {"id": _text_within(item.get("id"), id_max, f"{what} id"),
              "title": _text_within(item.get("title"), title_max, f"{what} title")}
    if description and item.get("description"):
        choice["description"] = _text_within(item["description"], ROW_DESCRIPTION_MAX, f"{what} description")
    return choice


def location_content(data: dict[str, Any]) -> dict[str, Any]:
    _require(isinstance(data, dict), "location must be an object")
    try:
        latitude, longitude = float(data.get("latitude")), float(data.get("longitude"))
    except (TypeError, ValueError):
        raise SendRefused("invalid_content", "latitude and longitude must be numbers") from None
    _require(-90 <= latitude <= 90 and -180 <= longitude <= 180, "latitude or longitude out of range")
    return {"latitude": latitude, "longitude": longitude,
            "name": _text_within(data.get("name", ""), 1000, "name", required=False),
            "address": _text_within(data.get("address", ""), 1000, "address", required=False)}


def reaction_content(*, emoji: Any, target: Message | None, conversation: Conversation) -> dict[str, Any]:
    emoji = _text_within(emoji, EMOJI_MAX, "emoji")
    _require(target is not None and target.conversation_id == conversation.pk,
             "react_to must be a message of the same conversation")
    _require(bool(target.provider_message_id), "the message reacted to has no provider id yet")
    return {"emoji": emoji, "target": target.provider_message_id, "target_message": target.pk}


# --- rules about the recipient, the window and the template --------------------------------------

def check_consent(contact: Contact, purpose: str = "") -> None:
    # The confirmation of an opt-out is the one message an opted-out contact still gets.
    if contact.consent == Contact.Consent.OPTED_OUT and purpose != Message.Purpose.CONSENT_CONFIRMATION:
        raise SendRefused("opted_out", f"{contact} opted out of messages"
                          + (f" ({contact.consent_source})" if contact.consent_source else "")
                          + "; nothing is sent to them until they opt in again")


def approved_templates(provider: Provider) -> list[dict[str, Any]]:
    rows = templates_for(provider).filter(status=TemplateStatus.APPROVED).order_by("name", "language", "-version")
    return [{"id": t.pk, "name": t.name, "language": t.language} for t in rows[:50]]


def check_window(conversation: Conversation, message_type: str) -> None:
    """Free-form messages only inside an open 24-hour session; outside it, only approved templates."""
    if message_type == MessageType.TEMPLATE or session_current(conversation) is not None:
        return
    templates = approved_templates(conversation.provider)
    hint = (f"send one of the {len(templates)} approved templates instead" if templates
            else "no approved template exists for this number yet")
    raise SendRefused("outside_window",
                      "the customer has not written in the last 24 hours, so WhatsApp only allows an approved "
                      f"template; {hint}", details={"approved_templates": templates})


def check_template(template: MessageTemplate | None, provider: Provider, variables: Any, *,
                   already_queued: bool = False) -> BoundTemplate:
    """
    `already_queued`: the check at send time of a message accepted earlier. A version superseded since
    still goes out then: each version is a template of its own at the provider, still approved there.
    """
    if template is None:
        raise SendRefused("template_required", "a template message needs a template")
    if not templates_for(provider).filter(pk=template.pk).exists():
        raise SendRefused("template_not_found", f"template {template} belongs to another business account")
    if template.status != TemplateStatus.APPROVED and not (
            already_queued and template.status == TemplateStatus.SUPERSEDED):
        raise SendRefused("template_not_approved",
                          f"template {template} is {template.get_status_display().lower()}, not approved; "
                          "only approved templates can be sent")
    try:
        return template_bind(template, variables)
    except TemplateVariablesError as exc:
        raise SendRefused("template_variables", str(exc), details={"missing": exc.missing, "extra": exc.extra,
                                                                  "problems": exc.problems}) from None


def contact_identities(contact: Contact) -> tuple[Identity, ...]:
    return contacts_identities([contact.pk])[contact.pk]


def contacts_identities(contact_ids: list[int]) -> dict[int, tuple[Identity, ...]]:
    """Each contact's identities, oldest first, for many contacts in one query."""
    found: dict[int, list[Identity]] = {contact_id: [] for contact_id in contact_ids}
    rows = (ContactIdentity.objects.filter(contact_id__in=found).order_by("pk")
            .values_list("contact_id", "kind", "value", "scope"))
    for contact_id, kind, value, scope in rows:
        found[contact_id].append(Identity(kind, value, scope))
    return {contact_id: tuple(identities) for contact_id, identities in found.items()}


def check_recipient(provider: Provider, contact: Contact, identities: tuple[Identity, ...] | None = None) -> str:
    """The provider's address for the contact; `identities` when the caller already read them."""
    address = backend_for(provider).recipient_address(
        contact_identities(contact) if identities is None else identities)
    if not address:
        raise SendRefused("invalid_recipient",
                          f"{contact} has no identity that {provider.get_kind_display()} can send to "
                          "(a phone number, or the provider's own contact id)")
    return address


def check_provider_can_send(provider: Provider, message_type: str, *, reply: bool) -> None:
    if not provider.is_active:
        raise SendRefused("provider_inactive", f"provider {provider.name} is inactive")
    provider_class = backend_for(provider)
    if message_type not in provider_class.sendable_types:
        raise SendRefused("unsupported_type", f"{provider.get_kind_display()} cannot send {message_type} messages",
                          details={"supported_types": sorted(provider_class.sendable_types)})
    if reply and not provider_class.supports_reply_context:
        raise SendRefused("unsupported_reply", f"{provider.get_kind_display()} cannot quote the message "
                          "being answered; send without reply_to")

