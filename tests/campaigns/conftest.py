"""Campaign fixtures: an approved marketing template on the Meta test number and people to send it to."""

from __future__ import annotations

import pytest
from django.utils import timezone

from campaigns.models import Campaign, CampaignVariant, Segment
from contacts.models import Contact
from contacts.services.identities import contact_resolve
from templates_app.models import MessageTemplate
from whatsapp.providers.events import Identity, IdentityKind, TemplateStatus
from whatsapp.services.inbound import conversation_get_or_create
from whatsapp.services.sessions import session_open_or_extend

# Area codes whose zones differ: New York (UTC-5/-4), Los Angeles (UTC-8/-7), São Paulo (UTC-3).
NEW_YORK, LOS_ANGELES, SAO_PAULO = "+1212555", "+1310555", "+5511955"


def person(provider, phone: str, name: str = "Ana", *, in_window: bool = False, **fields) -> Contact:
    contact = contact_resolve(provider=provider, identities=[Identity(IdentityKind.PHONE, phone)], profile_name=name)
    if fields:
        Contact.objects.filter(pk=contact.pk).update(**fields)
        contact.refresh_from_db()
    if in_window:
        session_open_or_extend(conversation=conversation_get_or_create(provider=provider, contact=contact),
                               inbound_at=timezone.now())
    return contact


def people(provider, prefix: str, count: int, start: int = 0, **fields) -> list[Contact]:
    """`count` people whose numbers start with `prefix` (one of the prefixes above)."""
    digits = (14 if prefix.startswith("+55") else 12) - len(prefix)
    return [person(provider, f"{prefix}{n:0{digits}d}", f"Person {n}", **fields) for n in range(start, start + count)]


def approved_template(provider, *, name: str = "spring_sale", category: str = MessageTemplate.Category.MARKETING,
                      body: str = "Hi {{1}}, spring sale: {{2}} off today.") -> MessageTemplate:
    return MessageTemplate.objects.create(
        provider=provider, name=name, language="en_US", category=category, status=TemplateStatus.APPROVED,
        components=[{"type": "BODY", "text": body}], examples={"body": ["Ana", "20%"]},
        provider_template_name=name, provider_template_id=f"tpl-{name}")


def campaign_for(provider, *, template=None, filters=None, variants=None, **fields) -> Campaign:
    segment = Segment.objects.create(name=f"segment {Segment.objects.count() + 1}", filters=filters or {})
    campaign = Campaign.objects.create(name=fields.pop("name", "Spring sale"), provider=provider, segment=segment,
                                       **fields)
    default = [("A", 100, {"body": {"1": "{contact.first_name|there}", "2": "20%"}})]
    for name, split, variables in default if variants is None else variants:
        CampaignVariant.objects.create(campaign=campaign, name=name, split_percent=split,
                                       template=template or approved_template(provider), variables=variables)
    return campaign


@pytest.fixture
def template(meta):
    return approved_template(meta)
