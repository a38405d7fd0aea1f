"""Filters of the messaging lists, and the phone filter the contact lists share (core.api.filters is the base)."""

from datetime import timedelta

import django_filters
from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q
from django_filters.constants import EMPTY_VALUES
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework.filters import OrderingFilter

from contacts.models import Contact, ContactIdentity
from contacts.phones import phone_to_e164
from core.api.filters import YES_NO, ApiFilterSet
from whatsapp.models import Conversation, Label, Message, Provider, SavedReply
from whatsapp.providers.events import IdentityKind
from whatsapp.selectors import INBOX_ORDER, conversations_labelled, conversations_window


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


# --- the inbox: conversations and saved replies ----------------------------------------------------

ME = "me"


class AssigneeField(forms.ModelChoiceField):
    """A user id, or "me" for the caller (resolved by the filter, which knows the request)."""

    def clean(self, value):
        if isinstance(value, str) and value.strip().lower() == ME:
            return ME
        return super().clean(value)


@extend_schema_field(OpenApiTypes.STR)
class AssigneeFilter(django_filters.ModelChoiceFilter):
    field_class = AssigneeField

    def filter(self, qs, value):
        if value == ME:
            return qs.filter(assignee=self.parent.request.user.pk)
        return super().filter(qs, value)


class LabelNameField(forms.CharField):
    """A label's name in any case; a name no label has is refused."""

    def clean(self, value):
        value = super().clean(value)
        if not value:
            return None
        label = Label.objects.filter(name=value).first() or Label.objects.filter(name__iexact=value).first()
        if label is None:
            raise forms.ValidationError("no label is named %(value)s", params={"value": repr(value)})
        return label


@extend_schema_field(OpenApiTypes.STR)
class LabelFilter(django_filters.Filter):
    field_class = LabelNameField

    def filter(self, qs, value):
        return qs if value is None else conversations_labelled(qs, value.pk)


WINDOW_STATES = [("open", "open"), ("closing", "closing"), ("closed", "closed")]


class ConversationFilter(ApiFilterSet):
    assignee = AssigneeFilter(
        queryset=get_user_model().objects.all(),
        help_text='Assigned to this user (an id), or "me": to the caller. `assignee__isnull=true`: to nobody.')
    needs_reply = django_filters.ChoiceFilter(
        choices=YES_NO, method="filter_needs_reply",
        help_text="true: the customer's latest messages wait for a reply from a person; false: they do not.")
    label = LabelFilter(help_text="Carries the label with this name (any case); an unknown name is refused (400).")
    window = django_filters.ChoiceFilter(
        choices=WINDOW_STATES, method="filter_window",
        help_text="The 24-hour window: open; closing (open, ending within INBOX_WINDOW_CLOSING_MINUTES, "
                  "2 hours by default); closed.")

    class Meta:
        model = Conversation
        fields = {"provider": ["exact"], "contact": ["exact"], "assignee": ["isnull"], "status": ["exact"],
                  "contact__user_mapping__user": ["exact"], "last_message_at": ["gte", "lte"]}

    def filter_needs_reply(self, queryset, name, value):
        return queryset.filter(awaiting_reply_since__isnull=value != "true")

    def filter_window(self, queryset, name, value):
        closing = timedelta(minutes=settings.INBOX_WINDOW_CLOSING_MINUTES)
        return conversations_window(queryset, value, closing)


WAITING = "waiting"


class InboxOrderingFilter(OrderingFilter):
    """DRF's ordering, plus `waiting`: the inbox's order (what waits longest for a reply first, then the most
    recent)."""

    def remove_invalid_fields(self, queryset, fields, view, request):
        valid = super().remove_invalid_fields(queryset, fields, view, request)
        return [term for term in valid if term != f"-{WAITING}"]  # one direction only

    def filter_queryset(self, request, queryset, view):
        ordering = self.get_ordering(request, queryset, view)
        if not ordering:
            return queryset
        terms = []
        for term in ordering:
            terms.extend(INBOX_ORDER if term == WAITING else [term])
        return queryset.order_by(*terms)


class SavedReplyFilter(ApiFilterSet):
    provider = django_filters.ModelChoiceFilter(
        queryset=Provider.objects.all(), method="filter_provider",
        help_text="The replies offered on this number (an id): its own and the ones for every number.")
    for_every_number = django_filters.ChoiceFilter(
        choices=YES_NO, method="filter_for_every_number",
        help_text="true: only the replies offered on every number; false: only those of one number.")

    class Meta:
        model = SavedReply
        fields = ["provider", "for_every_number"]

    def filter_provider(self, queryset, name, value):
        return queryset.filter(Q(provider=value) | Q(provider__isnull=True))

    def filter_for_every_number(self, queryset, name, value):
        return queryset.filter(provider__isnull=value == "true")
