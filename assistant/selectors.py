"""Reads of the assistant's data."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F, QuerySet

from assistant.models import AssistantPolicy, AssistantProfile
from contacts.models import ContactUserMapping
from whatsapp.models import Conversation, Provider

SEE_EVERYONE = "assistant.see_everyones_items"


def policy_for(provider: Provider) -> AssistantPolicy:
    """The provider's policy; the defaults (on, minimal) when none was saved."""
    try:
        return provider.assistant_policy
    except AssistantPolicy.DoesNotExist:
        return AssistantPolicy(provider=provider)


def profile_for(user) -> AssistantProfile:
    """The user's preferences, saved with the defaults the first time they are read."""
    profile, _ = AssistantProfile.objects.get_or_create(user=user)
    return profile


def mapped_user(conversation: Conversation):
    """The Django user the conversation's contact is mapped to, or None."""
    mapping = ContactUserMapping.objects.select_related("user").filter(contact_id=conversation.contact_id).first()
    return mapping.user if mapping and mapping.user.is_active else None


def sees_everyone(user: AbstractBaseUser) -> bool:
    """Whether a user may see (and assign) every user's items, not only their own."""
    return bool(user.is_superuser or user.has_perm(SEE_EVERYONE))


def visible_to(user: AbstractBaseUser, queryset: QuerySet) -> QuerySet:
    """An owned model's rows a user may see: their own, or everyone's with the permission."""
    if sees_everyone(user):
        return queryset
    return queryset.filter(owner=user)


def user_conversation(user) -> Conversation | None:
    """Where proactive messages to a user go: the conversation of their mapped contact that spoke last, on a
    number where the assistant is on."""
    contact_ids = ContactUserMapping.objects.filter(user=user).values("contact_id")
    return (Conversation.objects.select_related("provider", "contact")
            .filter(contact_id__in=contact_ids, provider__is_active=True)
            .exclude(provider__assistant_policy__enabled=False)  # the assistant is off on that number
            .order_by(F("last_message_at").desc(nulls_last=True), "-pk").first())
