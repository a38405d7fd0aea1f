import django_filters

from contacts.models import Contact, ContactUserMapping
from core.api.filters import YES_NO, ApiDateTimeFilter, ApiFilterSet
from whatsapp.api.filters import PhoneFilter


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
