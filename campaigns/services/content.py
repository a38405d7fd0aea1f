"""
A variant's message for one recipient: placeholders filled from the contact and their CSV row.

    {contact.first_name}   {contact.name}   {contact.phone}   {contact.language}
    {contact.attributes.<key>}   {row.<column>}   and a default after "|": {contact.first_name|there}

A template's values are given per parameter in the shape of a send's variables ({"body": {"1": "..."}});
free text is one string. A placeholder with no value and no default leaves the recipient out (skipped, with
the reason), never a message with a hole in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from templates_app.parameters import TemplateVariablesError, template_bind, template_render
from whatsapp.providers.events import MessageType

PLACEHOLDER = re.compile(r"\{\s*(contact|row)\.([^{}|]+?)\s*(?:\|([^{}]*))?\}")
CONTACT_FIELDS = ("first_name", "name", "phone", "language", "time_zone")


class ContentMissing(ValueError):
    """A recipient's message cannot be made (a value missing, the template refusing the values)."""


@dataclass
class RecipientFacts:
    name: str = ""
    phone: str = ""
    language: str = ""
    time_zone: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    row: dict[str, Any] = field(default_factory=dict)

    def value(self, source: str, key: str) -> str:
        if source == "row":
            found = self.row.get(key)
        elif key.startswith("attributes."):
            found = self.attributes.get(key.removeprefix("attributes."))
        elif key == "first_name":
            found = self.name.split()[0] if self.name.split() else ""
        elif key in CONTACT_FIELDS:
            found = getattr(self, key)
        else:
            raise ContentMissing(f"{{contact.{key}}} is not a contact field (known: {', '.join(CONTACT_FIELDS)}, "
                                 "attributes.<key>)")
        return "" if found is None else str(found).strip()


def fill(text: str, facts: RecipientFacts) -> str:
    def one(match: re.Match) -> str:
        source, key, default = match.group(1), match.group(2).strip(), match.group(3)
        value = facts.value(source, key)
        if value:
            return value
        if default is not None and default.strip():
            return default.strip()
        raise ContentMissing(f"no value for {{{source}.{key}}}")

    return PLACEHOLDER.sub(one, text)


def _filled_values(values: Any, facts: RecipientFacts) -> Any:
    if isinstance(values, dict):
        return {name: _filled_values(value, facts) for name, value in values.items()}
    if isinstance(values, list):
        return [_filled_values(value, facts) for value in values]
    return fill(values, facts) if isinstance(values, str) else values


@dataclass
class RecipientMessage:
    message_type: str
    text: str
    template_variables: dict[str, Any] = field(default_factory=dict)


def variant_message(variant, facts: RecipientFacts) -> RecipientMessage:
    """The variant's message for this recipient; raises ContentMissing saying what is missing."""
    if variant.template_id is None:
        text = fill(variant.text, facts).strip()
        if not text:
            raise ContentMissing("the message would be empty")
        return RecipientMessage(MessageType.TEXT, text)
    try:
        bound = template_bind(variant.template, _filled_values(variant.variables or {}, facts))
    except TemplateVariablesError as exc:
        raise ContentMissing(str(exc)) from None
    return RecipientMessage(MessageType.TEMPLATE, template_render(variant.template, bound), bound.as_variables())
