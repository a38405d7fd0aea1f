"""Filters of the messaging lists, and the phone filter the contact lists share (core.api.filters is the base)."""

import django_filters
from django import forms
from django_filters.constants import EMPTY_VALUES

from contacts.models import Contact, ContactIdentity
from contacts.phones import phone_to_e164
from core.api.filters import ApiFilterSet
from whatsapp.models import Message
from whatsapp.providers.events import IdentityKind


class PhoneField(forms.CharField):
    """Any spelling of a phone number, cleaned to E.164 the way inbound phone identities are stored."""

    def clean(self, value):
        value = super().clean(value)
        if not value:
            return value
        e164 = phone_to_e164(value)
        if sum(ch.isdigit() for ch in e164) < 3:
            # As a parameter, not in the text: the filter layer %-formats messages, and a "%" typed into the
            # filter would otherwise break the error itself.
            raise forms.ValidationError("%(value)s is not a phone number", params={"value": repr(value)})
        return e164


class PhoneFilter(django_filters.CharFilter):
    """Rows whose contact (field_name: the path to it) has this phone number among its phone identities."""

    field_class = PhoneField

    def filter(self, qs, value):
        if value in EMPTY_VALUES:
            return qs
        # A subquery rather than a join: a row is listed once however many identities match.
        phones = ContactIdentity.objects.filter(kind=IdentityKind.PHONE, value=value)
        return qs.filter(**{f"{self.field_name}__in": phones.values("contact_id")})


class MessageFilter(ApiFilterSet):
    contact = django_filters.ModelChoiceFilter(
        field_name="conversation__contact", queryset=Contact.objects.all(),
        help_text="Messages of this contact's conversations (an id); an unknown id is refused (400).")
    phone = PhoneFilter(
        field_name="conversation__contact",
        help_text="Messages of the contact with this phone number, in any spelling ('+1 (555) 123-0001', "
                  "'15551230001'); matched in E.164 against the contacts' phone identities.")

    class Meta:
        model = Message
        fields = {"provider": ["exact"], "conversation": ["exact"], "direction": ["exact"],
                  "status": ["exact", "in"], "message_type": ["exact"], "lane": ["exact"],
                  "created_at": ["gte", "lte"]}
