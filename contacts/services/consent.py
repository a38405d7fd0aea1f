"""
Consent: whether a contact may be messaged. It changes by a keyword from the contact (STOP, START and
their translations, see ConsentKeyword), by a provider error that means the person blocked us or is not
on WhatsApp, or by a person in the admin or the API. Each change is kept in the contact's consent
history and audited; every send checks it (send_rules.check_consent).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from django.db import transaction
from django.utils import timezone

from contacts.models import ConsentEvent, ConsentKeyword, ConsentSource, Contact
from contacts.services.replies import platform_reply
from core.audit import audit_record
from whatsapp.models import Message
from whatsapp.providers import backend_for

logger = logging.getLogger(__name__)

# Keywords are short: longer texts are never looked up (no query for ordinary messages).
KEYWORD_TEXT_MAX = 40
# How long a process may go on using the keywords it read (another process's change reaches it in this time).
KEYWORD_WORDS_SECONDS = 5.0
ACTION_STATE = {ConsentKeyword.Action.OPT_OUT: Contact.Consent.OPTED_OUT,
                ConsentKeyword.Action.OPT_IN: Contact.Consent.OPTED_IN}


@transaction.atomic
def consent_set(*, contact: Contact, state: str, source: str, detail: str = "", actor: Any = None,
                message: Message | None = None) -> bool:
    """Change a contact's consent; False (and nothing recorded) when it already was that."""
    locked = Contact.objects.select_for_update().get(pk=contact.pk)
    if locked.consent == state:
        return False
    previous = locked.consent
    now = timezone.now()
    Contact.objects.filter(pk=contact.pk).update(consent=state, consent_changed_at=now, consent_source=source)
    contact.consent, contact.consent_changed_at, contact.consent_source = state, now, source
    user = actor if getattr(actor, "is_authenticated", False) else None
    ConsentEvent.objects.create(contact=contact, state=state, previous_state=previous, source=source,
                                detail=detail[:255], actor=user, message=message)
    audit_record(action="contact.consent", obj=contact, actor=actor,
                 actor_label="" if user else ConsentSource(source).label.lower(),
                 before={"consent": previous}, after={"consent": state, "source": source, "detail": detail[:255]})
    logger.info("consent changed", extra={"contact_id": contact.pk, "consent": state, "source": source})
    return True


class _KeywordWords:
    """The active keywords' words, kept by each process for KEYWORD_WORDS_SECONDS so that an ordinary short
    message costs no query; a keyword saved or deleted here is seen at once (contacts/signals.py)."""

    def __init__(self) -> None:
        self._words: frozenset[str] = frozenset()
        self._read_at = float("-inf")

    def may_be_keyword(self, normalized: str) -> bool:
        if time.monotonic() - self._read_at > KEYWORD_WORDS_SECONDS:
            self._words = frozenset(ConsentKeyword.objects.filter(is_active=True).values_list("keyword", flat=True))
            self._read_at = time.monotonic()
        return normalized in self._words

    def forget(self) -> None:
        self._read_at = float("-inf")


keyword_words = _KeywordWords()


def keyword_match(text: str, language: str = "") -> ConsentKeyword | None:
    """The active keyword a whole message amounts to; the contact's language wins when a word is in several."""
    if not text or len(text) > KEYWORD_TEXT_MAX:
        return None
    normalized = ConsentKeyword.normalize(text)
    if not keyword_words.may_be_keyword(normalized):
        return None
    matches = list(ConsentKeyword.objects.filter(keyword=normalized, is_active=True).order_by("language"))
    # "pt", "pt_BR", "pt-BR" and "PT" all prefer the Portuguese keyword.
    base_language = re.split(r"[-_]", language)[0].lower()
    preferred = [keyword for keyword in matches if base_language and keyword.language.lower() == base_language]
    return (preferred or matches or [None])[0]


def consent_from_keyword(message: Message) -> ConsentKeyword | None:
    """
    An inbound message that is a consent keyword changes the contact's consent, and the contact gets
    one confirmation in the keyword's language (only when the state changed: STOP twice confirms once).
    """
    contact = message.conversation.contact
    keyword = keyword_match(message.text, contact.language)
    if keyword is None:
        return None
    changed = consent_set(contact=contact, state=ACTION_STATE[keyword.action], source=ConsentSource.KEYWORD,
                          detail=f"{keyword.keyword} ({keyword.language})", message=message)
    if changed and keyword.confirmation.strip():
        platform_reply(message, text=keyword.confirmation, purpose=Message.Purpose.CONSENT_CONFIRMATION)
    return keyword


def consent_from_provider_error(message: Message, error_code: str) -> bool:
    """A send failed with an error meaning the person blocked us or is not on WhatsApp: opted out."""
    reason = backend_for(message.provider).consent_error_codes.get(error_code)
    if not reason:
        return False
    return consent_set(contact=message.conversation.contact, state=Contact.Consent.OPTED_OUT,
                       source=ConsentSource.PROVIDER_ERROR, detail=f"{error_code}: {reason}", message=message)
