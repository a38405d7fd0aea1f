"""The forms of the contacts pages: merging contacts, mapping contacts to a user, a user's WhatsApp profile."""

from django import forms
from django.contrib.admin.widgets import AutocompleteSelect
from django.urls import reverse

from contacts.admin.display import contact_summary
from contacts.models import Contact, ContactUserMapping, UserProfile
from contacts.phones import phone_parse_e164
from contacts.selectors import active_users, contacts_by_pk_oldest_first
from contacts.services.mapping import user_label


class MergeForm(forms.Form):
    survivor = forms.ModelChoiceField(queryset=Contact.objects.none(), widget=forms.RadioSelect, empty_label=None,
                                      label="Keep this contact",
                                      help_text="The others' identities, conversations, messages, mapping and "
                                                "consent history move to it; the others are deleted.")

    def __init__(self, *args, contacts: list[Contact], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["survivor"].queryset = contacts_by_pk_oldest_first(contact.pk for contact in contacts)
        self.fields["survivor"].label_from_instance = lambda contact: contact_summary(contact)


class UserAutocomplete(AutocompleteSelect):
    def get_url(self):
        return reverse("admin:contacts_unmappedcontact_user_lookup", current_app=self.admin_site.name)


class UserChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return user_label(obj)


class MapToUserForm(forms.Form):
    suggested_user = forms.TypedChoiceField(coerce=int, required=False, widget=forms.RadioSelect,
                                            label="Suggested users")
    user = UserChoiceField(queryset=active_users(), required=False, label="Or find a user",
                           help_text="Search by username, name or email. A user chosen here wins over a suggestion.")
    notify_on_ready = forms.BooleanField(required=False, label="Notify on ready",
                                         help_text="The mapping's notify-on-ready preference: message the user on "
                                                   "WhatsApp when what they wait for is ready.")

    def __init__(self, *args, suggested_users: list, admin_site, **kwargs):
        super().__init__(*args, **kwargs)
        self.suggested_users = {user.pk: user for user in suggested_users}
        self.fields["suggested_user"].choices = [(user.pk, user_label(user)) for user in suggested_users]
        if not suggested_users:
            del self.fields["suggested_user"]
        self.fields["user"].widget = UserAutocomplete(ContactUserMapping._meta.get_field("user"), admin_site)
        self.fields["user"].widget.choices = self.fields["user"].choices

    def clean(self):
        cleaned = super().clean()
        chosen = cleaned.get("user") or self.suggested_users.get(cleaned.get("suggested_user"))
        if chosen is None and not self.errors:
            raise forms.ValidationError("Choose one of the suggested users, or find a user by name.")
        cleaned["chosen_user"] = chosen
        return cleaned


class UserProfileForm(forms.ModelForm):
    class Meta:
        model = UserProfile
        fields = ["phone_number"]

    def clean_phone_number(self):
        raw = self.cleaned_data["phone_number"].strip()
        if not raw:
            return ""
        try:
            return phone_parse_e164(raw)
        except ValueError as exc:
            raise forms.ValidationError(f"{exc}. Enter it with its country code, e.g. +15551230001.") from None
