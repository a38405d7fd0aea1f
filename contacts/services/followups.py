"""
What a new inbound message, or a failed send, may ask of the contact side. In this order: a consent
keyword (STOP, START...), a verification code, and for a contact mapped to no user, the provider's
unknown-contact policy. Runs inside the transaction that stores the message.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from contacts.models import Contact, ContactUserMapping
from contacts.services.consent import consent_from_keyword, consent_from_provider_error
from contacts.services.replies import platform_reply
from contacts.services.verification import verification_check
from core.locks import lock_key
from templates_app.models import MessageTemplate
from templates_app.selectors import sendable_template
from whatsapp.models import Message, UnknownContactPolicy
from whatsapp.providers.events import TemplateStatus

logger = logging.getLogger(__name__)

REGISTRATION_REPLY_INTERVAL = timedelta(hours=24)


def inbound_followups(message: Message) -> None:
    if consent_from_keyword(message) is not None:
        return
    if verification_check(message) is not None:
        return
    registration_reply_if_unknown(message)


def status_failed_followups(message: Message) -> None:
    consent_from_provider_error(message, message.error_code)


def send_failed_followups(message: Message, error_code: str) -> None:
    consent_from_provider_error(message, error_code)


def registration_reply_if_unknown(message: Message) -> Message | None:
    """
    The provider's policy for a contact mapped to no user: store only, or reply with the registration
    message (the approved template when one is set, else the text), at most once per contact per 24 hours.
    """
    provider = message.provider
    if provider.unknown_contact_policy != UnknownContactPolicy.REGISTRATION_REPLY:
        return None
    contact = message.conversation.contact
    if contact.consent == Contact.Consent.OPTED_OUT or ContactUserMapping.objects.filter(contact=contact).exists():
        return None
    # Two messages from one new contact processed at once must not both reply.
    lock_key("registration-reply", contact.pk)
    recent = Message.objects.filter(conversation__contact=contact, purpose=Message.Purpose.REGISTRATION,
                                    created_at__gte=timezone.now() - REGISTRATION_REPLY_INTERVAL)
    if recent.exists():
        return None
    template = _registration_template(provider)
    if template is None and not provider.registration_text.strip():
        logger.warning("registration reply policy without a template or a text; nothing sent",
                       extra={"provider_id": provider.pk})
        return None
    return platform_reply(message, purpose=Message.Purpose.REGISTRATION, text=provider.registration_text,
                          template=template)


def _registration_template(provider) -> MessageTemplate | None:
    chosen = provider.registration_template
    if chosen is None:
        return None
    # The chosen template's approved version: a newer approved version supersedes the one chosen.
    template = sendable_template(provider, chosen.name, chosen.language) or chosen
    if template.status != TemplateStatus.APPROVED:
        # A template that lost its approval (paused, disabled): fall back to the text, inside the window.
        logger.warning("registration template is not approved; the text is used",
                       extra={"provider_id": provider.pk, "template_id": template.pk})
        return None
    return template
