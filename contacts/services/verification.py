"""
Verifying that a contact is the user it is (or will be) mapped to: a one-time code goes to the
contact on WhatsApp; their reply with the code marks the mapping verified. Optional per provider
(Provider.contact_verification_enabled). The code is sent as text, so it needs the 24-hour window open:
outside it the start is refused with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from contacts.models import Contact, ContactUserMapping, VerificationChallenge
from contacts.services.mapping import contact_map_to_user
from contacts.services.replies import platform_reply, platform_send
from core.audit import audit_record
from whatsapp.models import Conversation, Message

CODE_DIGITS = 6
CODE_LIFETIME = timedelta(minutes=10)
# Wrong codes a challenge takes before it is spent.
MAX_FAILED_ATTEMPTS = 5
CODE_PATTERN = re.compile(rf"\s*(\d{{{CODE_DIGITS}}})\s*")


class VerificationRefused(Exception):
    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "detail": self.reason}


def _digest(challenge_contact_id: int, code: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), f"{challenge_contact_id}:{code}".encode(), hashlib.sha256).hexdigest()


def _verifying_conversation(contact: Contact) -> Conversation:
    """The contact's latest conversation on a provider that verifies contacts."""
    conversation = (Conversation.objects.select_related("provider")
                    .filter(contact=contact, provider__contact_verification_enabled=True, provider__is_active=True)
                    .order_by("-last_message_at", "-id").first())
    if conversation is None:
        raise VerificationRefused("verification_disabled",
                                  f"{contact} has no conversation on a provider with contact verification enabled "
                                  "(Provider: 'Contact verification enabled')")
    return conversation


@transaction.atomic
def verification_start(*, contact: Contact, user: Any = None, actor: Any = None) -> VerificationChallenge:
    """
    Send a fresh one-time code to the contact (earlier open codes stop working). `user` defaults to the
    user the contact is mapped to. Raises VerificationRefused, or SendRefused when the code cannot be sent
    (opted out, outside the 24-hour window...).
    """
    mapping = ContactUserMapping.objects.select_related("user").filter(contact=contact).first()
    user = user or (mapping.user if mapping else None)
    if user is None:
        raise VerificationRefused("no_user", f"{contact} is mapped to no user; name the user to verify it as")
    if mapping is not None and mapping.user_id != user.pk:
        raise VerificationRefused("mapped_elsewhere", f"{contact} is mapped to another user; remove that mapping "
                                  "first")
    conversation = _verifying_conversation(contact)
    now = timezone.now()
    VerificationChallenge.objects.filter(contact=contact, verified_at__isnull=True,
                                         expires_at__gt=now).update(expires_at=now)
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    minutes = int(CODE_LIFETIME.total_seconds() // 60)
    message = platform_send(
        provider=conversation.provider, contact=contact, purpose=Message.Purpose.VERIFICATION, actor=actor,
        text=f"Your verification code is {code}. Reply with this code within {minutes} minutes to confirm that "
             "this WhatsApp account is yours.")
    challenge = VerificationChallenge.objects.create(
        contact=contact, user=user, provider=conversation.provider, code_digest=_digest(contact.pk, code),
        message=message, expires_at=now + CODE_LIFETIME,
        created_by=actor if getattr(actor, "is_authenticated", False) else None)
    audit_record(action="contact.verification_start", obj=contact, actor=actor,
                 after={"user": user.pk, "challenge": challenge.pk, "expires_at": challenge.expires_at.isoformat()})
    return challenge


def verification_check(message: Message) -> VerificationChallenge | None:
    """An inbound message that is exactly a code answers the contact's open challenge: right, the mapping
    becomes verified (and is made if missing); wrong, it counts against the challenge."""
    found = CODE_PATTERN.fullmatch(message.text or "")
    if not found:
        return None
    contact = message.conversation.contact
    challenge = (VerificationChallenge.objects.select_for_update().select_related("user")
                 .filter(contact=contact, verified_at__isnull=True, expires_at__gt=timezone.now())
                 .order_by("-created_at").first())
    if challenge is None:
        return None
    if not hmac.compare_digest(challenge.code_digest, _digest(contact.pk, found.group(1))):
        challenge.failed_attempts += 1
        if challenge.failed_attempts >= MAX_FAILED_ATTEMPTS:
            challenge.expires_at = timezone.now()
        challenge.save(update_fields=["failed_attempts", "expires_at"])
        return None
    challenge.verified_at = timezone.now()
    challenge.save(update_fields=["verified_at"])
    mapping = contact_map_to_user(contact=contact, user=challenge.user, actor=None,
                                  method=ContactUserMapping.Method.VERIFIED, rule="one-time code", replace=True)
    mapping.verified_at = challenge.verified_at
    mapping.save(update_fields=["verified_at"])
    platform_reply(message, purpose=Message.Purpose.VERIFICATION,
                   text="Thank you: this WhatsApp account is now verified.")
    return challenge
