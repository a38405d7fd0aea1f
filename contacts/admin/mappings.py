"""
Mapping contacts to users: the mappings, and the unmapped-contacts queue with its suggested users and
its map page (map one contact or several to a user, create a user from a contact, ignore a contact).
"""

from django.contrib import admin, messages
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.template.defaultfilters import truncatechars
from django.urls import path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timezone import localtime

from contacts.admin.display import identity_short
from contacts.admin.forms import MapToUserForm
from contacts.models import Contact, ContactUserMapping, UnmappedContact
from contacts.selectors import contacts_to_map
from contacts.services.mapping import (
    MappingConflict,
    contact_create_user,
    contact_map_to_user,
    contacts_ignore,
    suggestions_for,
    unmapped_contacts,
    user_label,
)
from contacts.services.queue import queue_page_details, with_queue_columns
from core.access import can_see, scoped
from core.admin.base import AuditedModelAdmin, ScopedModelAdmin
from whatsapp.admin.filters import ProviderNameFilter
from whatsapp.models import Message

IDENTITIES_SHOWN = 3
# Picking contacts for the map page goes through its URL (?ids=1,2,3): keep that URL a sane length.
MAP_CONTACTS_MAX = 200


@admin.register(ContactUserMapping)
class ContactUserMappingAdmin(AuditedModelAdmin):
    list_display = ["contact", "user", "method", "rule", "created_by", "notify_on_ready", "created_at"]
    list_filter = ["method", "notify_on_ready"]
    search_fields = ["contact__profile_name", "user__username", "user__email"]
    autocomplete_fields = ["contact", "user", "created_by"]
    list_select_related = ["contact", "user", "created_by"]


# --- the unmapped-contacts queue -----------------------------------------------------------------

class ProviderFilter(ProviderNameFilter):
    """By the provider of the contact's conversations (one conversation per provider and contact: the join
    never repeats a contact)."""

    provider_field = "conversations__provider_id"


class UnmappedChangeList(ChangeList):
    """
    A page of the queue in a fixed number of queries whatever its size: message counts and the last
    message's id come as subqueries of the page's own query; identities, conversations' providers, the
    last messages and the suggested users are each read once for the whole page.
    """

    def get_queryset(self, request, exclude_parameters=None):
        return with_queue_columns(super().get_queryset(request, exclude_parameters), user=request.user)

    def get_results(self, request):
        super().get_results(request)
        self.result_list = list(self.result_list)
        queue_page_details(self.result_list, user=request.user)


class ContactPermissions:
    """The queue is a view of contacts: whoever may see or change contacts may use it (the default
    groups grant permissions on Contact, not on this proxy)."""

    def has_view_permission(self, request, obj=None):
        allowed = request.user.has_perm("contacts.view_contact") or request.user.has_perm("contacts.change_contact")
        return (allowed or super().has_view_permission(request, obj)) and _visible(request, obj)

    def has_change_permission(self, request, obj=None):
        allowed = request.user.has_perm("contacts.change_contact")
        return (allowed or super().has_change_permission(request, obj)) and _visible(request, obj)

    def has_add_permission(self, request, obj=None):
        return False  # contacts come from messages

    def has_delete_permission(self, request, obj=None):
        return False  # "Ignore" takes a contact out of the queue; deleting is done on the contact's page


def _visible(request, obj) -> bool:
    return obj is None or can_see(request.user, obj)


class MappingUserLookup(AutocompleteJsonView):
    """
    The user search box of the map page. Django's own autocomplete asks for permission to view users,
    which operators do not have; here, whoever may map contacts may look users up by name, and only for
    the mapping's user field.
    """

    def process_request(self, request):
        term, model_admin, source_field, to_field_name = super().process_request(request)
        if source_field != ContactUserMapping._meta.get_field("user"):
            raise PermissionDenied
        return term, model_admin, source_field, to_field_name

    def has_perm(self, request, obj=None):
        return request.user.has_perm("contacts.change_contact") or super().has_perm(request, obj)

    def serialize_result(self, obj, to_field_name):
        return {"id": str(getattr(obj, to_field_name)), "text": user_label(obj)}


def _suggested_users(contacts: list[Contact], suggestions: dict) -> list:
    """Every user suggested for any of the contacts, each once, in the order they were ranked."""
    users = {}
    for contact in contacts:
        for suggestion in suggestions.get(contact.pk, []):
            users.setdefault(suggestion.user.pk, suggestion.user)
    return list(users.values())


def _ids_from(raw: str) -> list[int]:
    return list(dict.fromkeys(int(part) for part in raw.split(",") if part.strip().isdigit()))[:MAP_CONTACTS_MAX]


@admin.register(UnmappedContact)
class UnmappedContactAdmin(ContactPermissions, ScopedModelAdmin):
    list_display = ["name", "map_link", "identities_list", "providers", "message_total", "last_message_preview",
                    "suggested_users", "created_at"]
    list_display_links = None
    list_filter = [ProviderFilter]
    search_fields = ["profile_name", "identities__value"]
    ordering = ["-created_at", "-id"]
    sortable_by = ["created_at"]
    actions = ["map_to_user", "create_user", "ignore"]
    # The queue's size is counted once per page; a second count of the unfiltered queue adds nothing.
    show_full_result_count = False

    def get_queryset(self, request):
        return scoped(unmapped_contacts(), request.user)

    def get_changelist(self, request, **kwargs):
        return UnmappedChangeList

    def get_urls(self):
        return [
            path("map/", self.admin_site.admin_view(self.map_view), name="contacts_unmappedcontact_map_several"),
            path("<int:contact_id>/map/", self.admin_site.admin_view(self.map_view),
                 name="contacts_unmappedcontact_map"),
            path("users/lookup/", self.admin_site.admin_view(MappingUserLookup.as_view(admin_site=self.admin_site)),
                 name="contacts_unmappedcontact_user_lookup"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        title = "Unmapped contacts: map each to one of your users, create a user, or ignore it"
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return redirect("admin:contacts_contact_change", object_id)

    # --- columns ---

    @admin.display(description="Name", ordering="profile_name")
    def name(self, obj):
        return format_html('<a href="{}">{}</a>', reverse("admin:contacts_contact_change", args=[obj.pk]), obj)

    @admin.display(description="Identities")
    def identities_list(self, obj):
        identities = list(obj.identities.all())
        shown = ", ".join(identity_short(identity) for identity in identities[:IDENTITIES_SHOWN])
        more = len(identities) - IDENTITIES_SHOWN
        return f"{shown} (+{more} more)" if more > 0 else shown or "-"

    @admin.display(description="Provider")
    def providers(self, obj):
        return ", ".join(sorted({conversation.provider.name for conversation in obj.conversations.all()})) or "-"

    @admin.display(description="Messages")
    def message_total(self, obj):
        return obj.message_count

    @admin.display(description="Last message")
    def last_message_preview(self, obj):
        message = obj.last_message
        if message is None:
            return "-"
        arrow = "→" if message.direction == Message.Direction.OUTBOUND else "←"
        text = truncatechars(message.text, 60) if message.text else f"[{message.message_type}]"
        return format_html("{} {}<br><small>{}</small>", arrow, text,
                           date_format(localtime(message.created_at), "SHORT_DATETIME_FORMAT"))

    @admin.display(description="Suggested users")
    def suggested_users(self, obj):
        if not obj.suggestions:
            return "-"
        map_url = reverse("admin:contacts_unmappedcontact_map", args=[obj.pk])
        return format_html_join(
            mark_safe("<br>"), '<a class="wa-suggestion" href="{}?user={}">{}</a> <small>({})</small>',
            ((map_url, suggestion.user.pk, user_label(suggestion.user), ", ".join(suggestion.reasons))
             for suggestion in obj.suggestions))

    @admin.display(description="")
    def map_link(self, obj):
        return format_html('<a class="wa-map-link" href="{}">Map…</a>',
                           reverse("admin:contacts_unmappedcontact_map", args=[obj.pk]))

    # --- actions ---

    @admin.action(description="Map to a user…", permissions=["change"])
    def map_to_user(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True)[:MAP_CONTACTS_MAX + 1])
        if len(ids) > MAP_CONTACTS_MAX:
            self.message_user(request, f"Only the first {MAP_CONTACTS_MAX} of the selected contacts are mapped at "
                                       "once.", messages.WARNING)
        listed = ",".join(str(pk) for pk in ids[:MAP_CONTACTS_MAX])
        return HttpResponseRedirect(f"{reverse('admin:contacts_unmappedcontact_map_several')}?ids={listed}")

    @admin.action(description="Create a user from the contact", permissions=["change"])
    def create_user(self, request, queryset):
        for contact in queryset:
            try:
                mapping = contact_create_user(contact=contact, actor=request.user)
            except MappingConflict as conflict:
                self.message_user(request, str(conflict), messages.ERROR)
            else:
                self.message_user(request, f"Created user {user_label(mapping.user)} and mapped {contact} to it.")

    @admin.action(description="Ignore (leave the queue)", permissions=["change"])
    def ignore(self, request, queryset):
        count = contacts_ignore(contacts=list(queryset), actor=request.user)
        self.message_user(request, f"{count} contact(s) left the queue; \"Unignore\" on the contacts page "
                                   "puts them back.")

    # --- the map page ---

    def map_view(self, request, contact_id=None):
        """Map one contact (its row's link) or several (the action) to one user."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        ids = [contact_id] if contact_id else _ids_from(request.GET.get("ids", ""))
        contacts = contacts_to_map(ids, user=request.user)
        if not contacts:
            self.message_user(request, "None of those contacts exists any more.", messages.WARNING)
            return redirect("admin:contacts_unmappedcontact_changelist")
        suggestions = suggestions_for(contacts)
        suggested = _suggested_users(contacts, suggestions)
        form = MapToUserForm(request.POST if request.method == "POST" else None, suggested_users=suggested,
                             admin_site=self.admin_site, initial=self._preselected(request, suggested))
        if request.method == "POST" and form.is_valid() and self._map(request, contacts, form.cleaned_data):
            return redirect("admin:contacts_unmappedcontact_changelist")
        rows = [(contact, suggestions.get(contact.pk, [])) for contact in contacts]
        title = f"Map {contacts[0]} to a user" if len(contacts) == 1 else f"Map {len(contacts)} contacts to a user"
        context = {**self.admin_site.each_context(request), "title": title, "opts": self.model._meta,
                   "form": form, "rows": rows, "media": self.media + form.media}
        return render(request, "admin/contacts/unmappedcontact/map.html", context)

    @staticmethod
    def _preselected(request, suggested: list) -> dict:
        """A suggestion's link names its user: tick it, or put it in the search box if it is not one."""
        user_id = request.GET.get("user", "")
        if not user_id.isdigit():
            return {}
        return {"suggested_user": int(user_id)} if int(user_id) in {u.pk for u in suggested} else {"user": user_id}

    def _map(self, request, contacts: list[Contact], data: dict) -> bool:
        user, mapped = data["chosen_user"], 0
        for contact in contacts:
            try:
                contact_map_to_user(contact=contact, user=user, actor=request.user,
                                    notify_on_ready=data["notify_on_ready"])
            except MappingConflict as conflict:
                self.message_user(request, str(conflict), messages.ERROR)
            else:
                mapped += 1
        if mapped:
            self.message_user(request, f"Mapped {mapped} contact(s) to {user_label(user)}.", messages.SUCCESS)
        return bool(mapped)
