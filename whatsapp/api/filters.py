"""Filters of the API's lists. A value that cannot mean anything is refused (400), never ignored."""

import django_filters
from django import forms

from contacts.models import Contact, ContactIdentity, ContactUserMapping
from contacts.services.identities import phone_to_e164
from templates_app.models import MessageTemplate
from whatsapp.providers.events import IdentityKind, TemplateStatus

YES_NO = [("true", "true"), ("false", "false")]


class PhoneField(forms.CharField):
    """Any spelling of a phone number, cleaned to E.164 the way inbound phone identities are stored."""

    def clean(self, value):
        value = super().clean(value)
        if not value:
            return value
        e164 = phone_to_e164(value)
        if sum(ch.isdigit() for ch in e164) < 3:
            raise forms.ValidationError(f"{value!r} is not a phone number")
        return e164


class PhoneFilter(django_filters.CharFilter):
    field_class = PhoneField


class ContactFilter(django_filters.FilterSet):
    phone = PhoneFilter(
        method="filter_phone",
        help_text="A phone number in any spelling ('+1 (555) 123-0001', '15551230001'); matched in E.164 against "
                  "the contact's phone identities.")
    name = django_filters.CharFilter(field_name="profile_name", lookup_expr="icontains",
                                     help_text="Part of the profile name, any case.")
    user = django_filters.NumberFilter(field_name="user_mapping__user", help_text="Mapped to this user (an id).")
    mapped = django_filters.ChoiceFilter(choices=YES_NO, method="filter_mapped",
                                         help_text="true: mapped to a user; false: mapped to none.")
    consent = django_filters.ChoiceFilter(choices=Contact.Consent.choices,
                                          help_text="Consent state, e.g. opted_out.")
    ignored = django_filters.ChoiceFilter(choices=YES_NO, method="filter_ignored",
                                          help_text="true: left out of the unmapped queue.")
    last_seen_at__gte = django_filters.IsoDateTimeFilter(field_name="last_seen_at", lookup_expr="gte")
    last_seen_at__lte = django_filters.IsoDateTimeFilter(field_name="last_seen_at", lookup_expr="lte")

    class Meta:
        model = Contact
        fields = ["phone", "name", "user", "mapped", "consent", "ignored"]

    def filter_phone(self, queryset, name, value):
        # A subquery rather than a join: a contact is listed once however many identities match.
        phones = ContactIdentity.objects.filter(kind=IdentityKind.PHONE, value=value)
        return queryset.filter(pk__in=phones.values("contact_id"))

    def filter_mapped(self, queryset, name, value):
        return queryset.filter(user_mapping__isnull=value != "true")

    def filter_ignored(self, queryset, name, value):
        return queryset.filter(is_ignored=value == "true")


class ContactUserMappingFilter(django_filters.FilterSet):
    user = django_filters.NumberFilter(field_name="user", help_text="Mappings to this user (an id).")
    contact = django_filters.NumberFilter(field_name="contact", help_text="The mapping of this contact (an id).")

    class Meta:
        model = ContactUserMapping
        fields = ["user", "contact", "method", "notify_on_ready"]


class ChoiceInFilter(django_filters.BaseInFilter, django_filters.ChoiceFilter):
    """Comma-separated choices, each one checked (an unknown one is a 400, never an empty answer)."""


class MessageTemplateFilter(django_filters.FilterSet):
    status__in = ChoiceInFilter(field_name="status", choices=TemplateStatus.choices,
                                help_text="Any of these statuses, comma-separated, e.g. approved,paused.")
    name__icontains = django_filters.CharFilter(field_name="name", lookup_expr="icontains",
                                                help_text="Part of the name, any case.")
    managed_elsewhere = django_filters.ChoiceFilter(
        choices=YES_NO, method="filter_managed_elsewhere",
        help_text="true: imported from a provider that manages its templates itself (read-only here).")

    class Meta:
        model = MessageTemplate
        fields = ["provider", "status", "language", "category", "name"]

    def filter_managed_elsewhere(self, queryset, name, value):
        return queryset.filter(managed_elsewhere=value == "true")
