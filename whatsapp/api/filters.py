"""Filters of the API's lists. A value that cannot mean anything is refused (400), never ignored.

Every list's filters, declared or generated from `filterset_fields`, are built on ApiFilterSet (ApiFilterBackend
is the project's filter backend), so that a date-time filter anywhere checks its value the same way."""

from datetime import datetime, timedelta

import django_filters
from django import forms
from django.db import models
from django_filters.constants import EMPTY_VALUES
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend
from django_filters.rest_framework import FilterSet as RestFilterSet

from contacts.models import Contact, ContactIdentity, ContactUserMapping
from contacts.services.identities import phone_to_e164
from templates_app.models import MessageTemplate
from whatsapp.models import Message
from whatsapp.providers.events import IdentityKind, TemplateStatus

YES_NO = [("true", "true"), ("false", "false")]

# ISO 8601 (and Python) allow a UTC offset up to 23:59; PostgreSQL refuses one of 16 hours or more in a
# timestamp with time zone, which would fail the query (a 500) instead of refusing the value.
MAX_UTC_OFFSET = timedelta(hours=16)


def _offset_text(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    minutes = int(abs(offset).total_seconds()) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


class ApiDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time whose UTC offset the database can store (less than 16 hours either way)."""

    def to_python(self, value) -> datetime | None:
        value = super().to_python(value)
        offset = value.utcoffset() if value is not None else None
        if offset is not None and abs(offset) >= MAX_UTC_OFFSET:
            raise forms.ValidationError(
                f"the UTC offset {_offset_text(offset)} is out of range: it must be between -15:59 and +15:59",
                code="invalid")
        return value


class ApiDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = ApiDateTimeField


class ApiFilterSet(RestFilterSet):
    """The base of every API filter set: date-time fields are filtered with ApiDateTimeFilter."""

    FILTER_DEFAULTS = {**RestFilterSet.FILTER_DEFAULTS, models.DateTimeField: {"filter_class": ApiDateTimeFilter}}


class ApiFilterBackend(DjangoFilterBackend):
    """django-filter's backend, with the filter sets generated from `filterset_fields` built on ApiFilterSet."""

    filterset_base = ApiFilterSet


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
    """Rows whose contact (field_name: the path to it) has this phone number among its phone identities."""

    field_class = PhoneField

    def filter(self, qs, value):
        if value in EMPTY_VALUES:
            return qs
        # A subquery rather than a join: a row is listed once however many identities match.
        phones = ContactIdentity.objects.filter(kind=IdentityKind.PHONE, value=value)
        return qs.filter(**{f"{self.field_name}__in": phones.values("contact_id")})


class ContactFilter(ApiFilterSet):
    phone = PhoneFilter(
        field_name="pk",
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
    last_seen_at__gte = ApiDateTimeFilter(field_name="last_seen_at", lookup_expr="gte")
    last_seen_at__lte = ApiDateTimeFilter(field_name="last_seen_at", lookup_expr="lte")

    class Meta:
        model = Contact
        fields = ["phone", "name", "user", "mapped", "consent", "ignored"]

    def filter_mapped(self, queryset, name, value):
        return queryset.filter(user_mapping__isnull=value != "true")

    def filter_ignored(self, queryset, name, value):
        return queryset.filter(is_ignored=value == "true")


class ContactUserMappingFilter(ApiFilterSet):
    user = django_filters.NumberFilter(field_name="user", help_text="Mappings to this user (an id).")
    contact = django_filters.NumberFilter(field_name="contact", help_text="The mapping of this contact (an id).")

    class Meta:
        model = ContactUserMapping
        fields = ["user", "contact", "method", "notify_on_ready"]


class ChoiceInFilter(django_filters.BaseInFilter, django_filters.ChoiceFilter):
    """Comma-separated choices, each one checked (an unknown one is a 400, never an empty answer)."""


class MessageTemplateFilter(ApiFilterSet):
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
