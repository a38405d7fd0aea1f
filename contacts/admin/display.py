"""How the contacts pages show a user, an identity and a contact in a line."""

from django.template.defaultfilters import truncatechars
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.html import format_html

from contacts.models import Contact, ContactIdentity
from contacts.services.mapping import user_label
from whatsapp.providers.events import IdentityKind


def user_link(user):
    return format_html('<a href="{}">{}</a>', reverse("admin:auth_user_change", args=[user.pk]), user_label(user))


def identity_short(identity: ContactIdentity) -> str:
    """A phone or an email speaks for itself; other ids get their kind, and long ones are cut."""
    value = truncatechars(identity.value, 28)
    if identity.kind in (IdentityKind.PHONE, IdentityKind.EMAIL):
        return value
    return f"{identity.kind}: {value}"


def contact_summary(contact: Contact) -> str:
    identities = ", ".join(identity_short(identity) for identity in contact.identities.all())
    return f"{contact} (#{contact.pk}; {identities or 'no identities'}; first seen {date_format(contact.created_at)})"
