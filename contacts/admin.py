"""
Contacts in the admin: the contact pages (identities, consent history, mapping, merging), the
unmapped-contacts queue with its suggested users, the consent keywords and history, verification codes,
the users' WhatsApp profile (the phone the auto rule matches), and the GDPR actions on the user list
(export a user's WhatsApp data, erase it) with the exports' downloads; deleting a user unmaps their
contacts, and its confirmation page says so. Every action calls a service, which audits it.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.contrib.admin.views.main import ChangeList
from django.contrib.admin.widgets import AutocompleteSelect
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat, truncatechars
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timezone import localtime

from contacts.models import (
    ConsentEvent,
    ConsentKeyword,
    ConsentSource,
    Contact,
    ContactIdentity,
    ContactUserMapping,
    DataExport,
    UnmappedContact,
    UserProfile,
    VerificationChallenge,
)
from contacts.services.consent import consent_set
from contacts.services.erasure import PREVIEW_LABELS, ErasureBusy, ErasureReport, user_data_erase
from contacts.services.erasure import erasure_preview as erasure_preview_of
from contacts.services.export import (
    DOWNLOAD_BLOCK,
    ExportNotReady,
    data_export_downloadable,
    data_export_open,
    data_export_request,
)
from contacts.services.identities import phone_parse_e164
from contacts.services.mapping import (
    MappingConflict,
    contact_create_user,
    contact_map_to_user,
    contacts_ignore,
    mappings_release_for_user,
    suggestions_for,
    unmapped_contacts,
    user_label,
)
from contacts.services.merge import MergeRefused, contacts_merge
from contacts.services.queue import queue_page_details, with_queue_columns
from contacts.services.verification import VerificationRefused, verification_start
from core.admin.base import AuditedModelAdmin, ReadOnlyModelAdmin, pretty_json
from core.audit import audit_record
from core.storage import ObjectNotFound, StorageError
from whatsapp.admin_filters import ProviderNameFilter
from whatsapp.models import Message
from whatsapp.providers.events import IdentityKind
from whatsapp.services.send_rules import SendRefused

User = get_user_model()

IDENTITIES_SHOWN = 3
# Picking contacts for the map page goes through its URL (?ids=1,2,3): keep that URL a sane length.
MAP_CONTACTS_MAX = 200


def user_link(user):
    return format_html('<a href="{}">{}</a>', reverse("admin:auth_user_change", args=[user.pk]), user_label(user))


def identity_short(identity: ContactIdentity) -> str:
    """A phone or an email speaks for itself; other ids get their kind, and long ones are cut."""
    value = truncatechars(identity.value, 28)
    if identity.kind in (IdentityKind.PHONE, IdentityKind.EMAIL):
        return value
    return f"{identity.kind}: {value}"


# --- contacts ------------------------------------------------------------------------------------

class ContactIdentityInline(admin.TabularInline):
    model = ContactIdentity
    fields = ["kind", "value", "scope", "created_at"]
    readonly_fields = ["created_at"]
    extra = 0


class ConsentEventInline(admin.TabularInline):
    """The consent history: written by consent_set only, so read-only here."""

    model = ConsentEvent
    fields = ["created_at", "previous_state", "state", "source", "detail", "actor", "message"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "consent history"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        # Part of the contact's page: whoever may see the contact sees its history.
        return request.user.has_perm("contacts.view_contact") or super().has_view_permission(request, obj)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor", "message")


class MappedFilter(admin.SimpleListFilter):
    title = "mapping"
    parameter_name = "mapped"

    def lookups(self, request, model_admin):
        return [("yes", "Mapped to a user"), ("no", "Not mapped")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(user_mapping__isnull=self.value() == "no")
        return queryset


class MergeForm(forms.Form):
    survivor = forms.ModelChoiceField(queryset=Contact.objects.none(), widget=forms.RadioSelect, empty_label=None,
                                      label="Keep this contact",
                                      help_text="The others' identities, conversations, messages, mapping and "
                                                "consent history move to it; the others are deleted.")

    def __init__(self, *args, contacts: list[Contact], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["survivor"].queryset = (Contact.objects.filter(pk__in=[contact.pk for contact in contacts])
                                            .prefetch_related("identities").order_by("created_at", "pk"))
        self.fields["survivor"].label_from_instance = lambda contact: _contact_summary(contact)


def _contact_summary(contact: Contact) -> str:
    identities = ", ".join(identity_short(identity) for identity in contact.identities.all())
    return f"{contact} (#{contact.pk}; {identities or 'no identities'}; first seen {date_format(contact.created_at)})"


@admin.register(Contact)
class ContactAdmin(AuditedModelAdmin):
    list_display = ["__str__", "consent", "language", "last_seen_at", "mapped_user", "is_ignored", "created_at"]
    list_filter = ["consent", MappedFilter, "is_ignored", "language"]
    search_fields = ["profile_name", "identities__value"]
    inlines = [ContactIdentityInline, ConsentEventInline]
    date_hierarchy = "created_at"
    fields = ["profile_name", "mapping", "consent", "consent_source", "consent_changed_at", "language", "time_zone",
              "is_ignored", "last_seen_at", "created_at"]
    # Consent changes only through the actions (consent_set keeps the history and the audit entry).
    readonly_fields = ["mapping", "consent", "consent_source", "consent_changed_at", "last_seen_at", "created_at"]
    actions = ["opt_out", "opt_in", "send_verification_code", "merge_contacts", "unignore"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user_mapping__user")

    @admin.display(description="Mapped user", ordering="user_mapping__user__username")
    def mapped_user(self, obj):
        mapping = getattr(obj, "user_mapping", None)
        return user_link(mapping.user) if mapping else "-"

    @admin.display(description="Mapped to")
    def mapping(self, obj):
        mapping = getattr(obj, "user_mapping", None) if obj.pk else None
        if mapping is None:
            if not obj.pk:
                return "-"
            return format_html('Not mapped. <a href="{}">Map to a user…</a>',
                               reverse("admin:contacts_unmappedcontact_map", args=[obj.pk]))
        how = mapping.get_method_display() + (f" ({mapping.rule})" if mapping.rule else "")
        by = f", by {mapping.created_by.get_username()}" if mapping.created_by else ""
        return format_html('{} — {}{}, {}{} · <a href="{}">mapping</a>', user_link(mapping.user), how, by,
                           date_format(localtime(mapping.created_at), "SHORT_DATETIME_FORMAT"),
                           ", verified" if mapping.verified_at else "",
                           reverse("admin:contacts_contactusermapping_change", args=[mapping.pk]))

    def _set_consent(self, request, queryset, state: str, done: str):
        changed = sum(consent_set(contact=contact, state=state, source=ConsentSource.ADMIN,
                                  detail="admin action", actor=request.user) for contact in queryset)
        unchanged = len(queryset) - changed
        note = f" ({unchanged} already were)" if unchanged else ""
        self.message_user(request, f"{changed} contact(s) {done}{note}.")

    @admin.action(description="Opt out (stop messaging them)", permissions=["change"])
    def opt_out(self, request, queryset):
        self._set_consent(request, queryset, Contact.Consent.OPTED_OUT, "opted out")

    @admin.action(description="Opt in", permissions=["change"])
    def opt_in(self, request, queryset):
        self._set_consent(request, queryset, Contact.Consent.OPTED_IN, "opted in")

    @admin.action(description="Send a verification code (to its mapped user's contact)", permissions=["change"])
    def send_verification_code(self, request, queryset):
        for contact in queryset:
            try:
                challenge = verification_start(contact=contact, actor=request.user)
            except (VerificationRefused, SendRefused) as refusal:
                self.message_user(request, f"{contact}: no code sent: {refusal.reason}", messages.ERROR)
            else:
                self.message_user(request, f"{contact}: a code is on its way (message #{challenge.message_id}); "
                                           f"their reply with it verifies the mapping to {challenge.user}.")

    @admin.action(description="Put back in the unmapped queue (unignore)", permissions=["change"])
    def unignore(self, request, queryset):
        count = contacts_ignore(contacts=list(queryset), actor=request.user, ignored=False)
        self.message_user(request, f"{count} contact(s) back in the unmapped queue.")

    def has_merge_permission(self, request):
        # A merge deletes the contacts folded into the survivor.
        return self.has_change_permission(request) and self.has_delete_permission(request)

    @admin.action(description="Merge selected contacts…", permissions=["merge"])
    def merge_contacts(self, request, queryset):
        contacts = list(queryset.prefetch_related("identities").order_by("created_at", "pk"))
        if len(contacts) < 2:
            self.message_user(request, "Select at least two contacts to merge.", messages.WARNING)
            return None
        form = MergeForm(request.POST if "apply" in request.POST else None, contacts=contacts,
                         initial={"survivor": contacts[0].pk})
        if form.is_valid():
            survivor = form.cleaned_data["survivor"]
            others = [contact for contact in contacts if contact.pk != survivor.pk]
            try:
                contacts_merge(survivor=survivor, others=others, actor=request.user)
            except MergeRefused as refusal:
                self.message_user(request, f"Not merged: {refusal}.", messages.ERROR)
                return None
            self.message_user(request, f"Merged {len(others)} contact(s) into {survivor} (#{survivor.pk}).")
            return None
        context = {**self.admin_site.each_context(request), "title": "Merge contacts", "opts": self.model._meta,
                   "form": form, "contacts": contacts, "action": "merge_contacts",
                   "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME}
        return render(request, "admin/contacts/contact/merge.html", context)


@admin.register(ContactIdentity)
class ContactIdentityAdmin(AuditedModelAdmin):
    list_display = ["value", "kind", "scope", "contact", "created_at"]
    list_filter = ["kind"]
    search_fields = ["value", "contact__profile_name"]
    autocomplete_fields = ["contact"]
    list_select_related = ["contact"]


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
        return with_queue_columns(super().get_queryset(request, exclude_parameters))

    def get_results(self, request):
        super().get_results(request)
        self.result_list = list(self.result_list)
        queue_page_details(self.result_list)


class ContactPermissions:
    """The queue is a view of contacts: whoever may see or change contacts may use it (the default
    groups grant permissions on Contact, not on this proxy)."""

    def has_view_permission(self, request, obj=None):
        return (request.user.has_perm("contacts.view_contact") or request.user.has_perm("contacts.change_contact")
                or super().has_view_permission(request, obj))

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("contacts.change_contact") or super().has_change_permission(request, obj)

    def has_add_permission(self, request, obj=None):
        return False  # contacts come from messages

    def has_delete_permission(self, request, obj=None):
        return False  # "Ignore" takes a contact out of the queue; deleting is done on the contact's page


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


class UserAutocomplete(AutocompleteSelect):
    def get_url(self):
        return reverse("admin:contacts_unmappedcontact_user_lookup", current_app=self.admin_site.name)


class UserChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return user_label(obj)


class MapToUserForm(forms.Form):
    suggested_user = forms.TypedChoiceField(coerce=int, required=False, widget=forms.RadioSelect,
                                            label="Suggested users")
    user = UserChoiceField(queryset=User.objects.filter(is_active=True), required=False, label="Or find a user",
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
class UnmappedContactAdmin(ContactPermissions, admin.ModelAdmin):
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
        return unmapped_contacts()

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
        contacts = list(Contact.objects.filter(pk__in=ids).select_related("user_mapping__user")
                        .prefetch_related("identities").order_by("-created_at", "-id"))
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


# --- consent and verification --------------------------------------------------------------------

@admin.register(ConsentKeyword)
class ConsentKeywordAdmin(AuditedModelAdmin):
    list_display = ["keyword", "language", "action", "is_active", "short_confirmation"]
    list_editable = ["action", "is_active"]
    list_filter = ["language", "action", "is_active"]
    search_fields = ["keyword", "confirmation"]

    @admin.display(description="Confirmation")
    def short_confirmation(self, obj):
        return truncatechars(obj.confirmation, 80)


@admin.register(ConsentEvent)
class ConsentEventAdmin(ReadOnlyModelAdmin):
    list_display = ["created_at", "contact", "previous_state", "state", "source", "detail", "actor"]
    list_filter = ["state", "source"]
    search_fields = ["contact__profile_name", "contact__identities__value", "detail"]
    list_select_related = ["contact", "actor"]
    date_hierarchy = "created_at"

    def has_delete_permission(self, request, obj=None):
        return False  # the history stays


@admin.register(VerificationChallenge)
class VerificationChallengeAdmin(ReadOnlyModelAdmin):
    # The code's digest is never shown: it is all an attacker would need to try codes offline.
    list_display = ["created_at", "contact", "user", "provider", "expires_at", "failed_attempts", "verified_at"]
    list_filter = ["provider"]
    search_fields = ["contact__profile_name", "user__username"]
    list_select_related = ["contact", "user", "provider"]
    fields = ["contact", "user", "provider", "message", "created_at", "expires_at", "failed_attempts",
              "verified_at", "created_by"]


# --- users' WhatsApp profile ---------------------------------------------------------------------

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


class UserProfileInline(admin.StackedInline):
    model = UserProfile
    form = UserProfileForm
    can_delete = False
    max_num = 1
    verbose_name = verbose_name_plural = "WhatsApp profile"


@admin.register(UserProfile)
class UserProfileAdmin(AuditedModelAdmin):
    form = UserProfileForm
    list_display = ["user", "phone_number"]
    search_fields = ["user__username", "user__first_name", "user__last_name", "phone_number"]
    autocomplete_fields = ["user"]
    list_select_related = ["user"]
    fields = ["user", "phone_number"]


# --- GDPR: export and erasure of a user's WhatsApp data -------------------------------------------

def erasure_preview(users: list) -> list[dict]:
    """What erasing each user's WhatsApp data removes, counted the way the erasure counts."""
    previews = [(user, erasure_preview_of(user).as_dict()) for user in users]
    return [{"user": user, "counts": [counts[key] for key in PREVIEW_LABELS]} for user, counts in previews]


def _erasure_summary(user, report: ErasureReport) -> str:
    counts = report.as_dict()
    return (f"Erased the WhatsApp data of {user_label(user)}: {counts['contacts']} contact(s), "
            f"{counts['conversations']} conversation(s), {counts['messages']} message(s), {counts['media']} media "
            f"file(s), {counts['webhook_events']} webhook event(s), {counts['exports']} export(s). The archive "
            f"storage deletes {counts['buckets']} bucket(s) and {counts['objects_elsewhere']} object(s) kept in "
            "other buckets; deletions it cannot do now are retried (see Storage deletions).")


def mapped_contact_count(users) -> int:
    """How many contacts deleting these users sends back to the unmapped queue."""
    return ContactUserMapping.objects.filter(user__in=users).count()


class UserAdmin(DjangoUserAdmin):
    inlines = [*DjangoUserAdmin.inlines, UserProfileInline]
    actions = ["delete_selected", "export_whatsapp_data", "erase_whatsapp_data"]

    # Deleting a user never erases: their contacts go back to the unmapped queue with their messages (see
    # mappings_release_for_user). Both delete confirmations say so; the release is done here first so that
    # the audit trail names who deleted (the pre_delete receiver then finds nothing left to release).
    def render_delete_form(self, request, context):
        context["mapped_contacts"] = mapped_contact_count([context["object"]])
        return super().render_delete_form(request, context)

    @admin.action(permissions=["delete"], description=django_delete_selected.short_description)
    def delete_selected(self, request, queryset):
        response = django_delete_selected(self, request, queryset)
        if isinstance(response, TemplateResponse):  # the confirmation page, not the deletion's redirect
            response.context_data["mapped_contacts"] = mapped_contact_count(queryset)
        return response

    def delete_model(self, request, obj):
        with transaction.atomic():
            mappings_release_for_user(obj, actor=request.user)
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for user in queryset.order_by("pk"):
                mappings_release_for_user(user, actor=request.user)
            super().delete_queryset(request, queryset)

    def get_inline_instances(self, request, obj=None):
        # The add page is Django's two-step one (name and password first); the profile comes after.
        return super().get_inline_instances(request, obj) if obj is not None else []

    def has_export_whatsapp_data_permission(self, request):
        return request.user.has_perm("contacts.add_dataexport")

    def has_erase_whatsapp_data_permission(self, request):
        return request.user.has_perm("contacts.erase_user_data")

    @admin.action(description="Export WhatsApp data (GDPR)", permissions=["export_whatsapp_data"])
    def export_whatsapp_data(self, request, queryset):
        for user in queryset.order_by("username"):
            export = data_export_request(user=user, actor=request.user)
            self.message_user(request, format_html(
                'Export of {}\'s WhatsApp data requested (<a href="{}">export {}</a>); it can be downloaded from '
                "Data exports once it is ready.", user_label(user),
                reverse("admin:contacts_dataexport_change", args=[export.pk]), export.pk))

    @admin.action(description="Erase WhatsApp data (GDPR)…", permissions=["erase_whatsapp_data"])
    def erase_whatsapp_data(self, request, queryset):
        users = list(queryset.order_by("username"))
        if request.POST.get("confirm") == "yes":
            for user in users:
                try:
                    report = user_data_erase(user=user, actor=request.user)
                except ErasureBusy as exc:
                    self.message_user(request, f"{user_label(user)}: nothing erased, {exc}.", messages.ERROR)
                    continue
                self.message_user(request, _erasure_summary(user, report), messages.SUCCESS)
            return None
        context = {**self.admin_site.each_context(request), "title": "Erase WhatsApp data: are you sure?",
                   "opts": self.model._meta, "rows": erasure_preview(users),
                   "columns": list(PREVIEW_LABELS.values()), "action": "erase_whatsapp_data",
                   "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME}
        return render(request, "admin/auth/user/erase_whatsapp_data.html", context)


admin.site.unregister(User)
admin.site.register(User, UserAdmin)


@admin.register(DataExport)
class DataExportAdmin(ReadOnlyModelAdmin):
    """GDPR exports: zips built by a worker and kept in the archive storage until they expire. Requested
    from the user list's "Export WhatsApp data" action."""

    list_display = ["id", "user", "status", "size", "created_at", "expires_at", "download"]
    list_filter = ["status"]
    search_fields = ["user__username", "user__email", "user__first_name", "user__last_name"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
    fields = ["user", "requested_by", "status", "download", "size", "sha256", "pretty_counts", "created_at",
              "finished_at", "expires_at", "attempts", "next_attempt_at", "error", "location"]
    readonly_fields = ["download", "size", "pretty_counts", "created_at"]

    # A deleted export's zip leaves the storage by the post_delete receiver in contacts.signals, whatever
    # deleted the row; here the deletion is only audited, in the same transaction.
    def delete_model(self, request, obj):
        with transaction.atomic():
            self._audit_deletions(request, [obj])
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            self._audit_deletions(request, list(queryset))
            super().delete_queryset(request, queryset)

    @staticmethod
    def _audit_deletions(request, exports: list[DataExport]) -> None:
        for export in exports:
            audit_record(action="data_export.delete", obj=export, actor=request.user,
                         before={"user": export.user_id, "status": export.status, "location": export.location})

    def get_urls(self):
        download = path("<int:export_id>/download/", self.admin_site.admin_view(self.download_view),
                        name="contacts_dataexport_download")
        return [download, *super().get_urls()]

    @admin.display(description="Size", ordering="size_bytes")
    def size(self, obj):
        return filesizeformat(obj.size_bytes) if obj.size_bytes is not None else "-"

    @admin.display(description="Download")
    def download(self, obj):
        if not obj.pk or not data_export_downloadable(obj):
            return "-"
        return format_html('<a href="{}">Download the zip</a>',
                           reverse("admin:contacts_dataexport_download", args=[obj.pk]))

    @admin.display(description="What it holds")
    def pretty_counts(self, obj):
        return pretty_json(obj.counts)

    def download_view(self, request, export_id):
        """The zip, for whoever may see exports; 404 once it is gone or before it is ready."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        export = get_object_or_404(DataExport.objects.select_related("user"), pk=export_id)
        try:
            zip_file = data_export_open(export)
        except ExportNotReady:
            raise Http404("This export is not ready, or has expired.") from None
        except ObjectNotFound:
            raise Http404("This export is no longer in the storage.") from None
        except StorageError as exc:
            return HttpResponse(f"The archive storage could not give the zip right now ({exc}); try again shortly.",
                                status=503, content_type="text/plain")
        audit_record(action="data_export.download", obj=export, actor=request.user)
        # Streamed as the storage gives it (the response closes the file once sent).
        filename = f"whatsapp-data-{export.user.get_username()}-{export.created_at:%Y%m%d}-{export.pk}.zip"
        response = FileResponse(zip_file, as_attachment=True, filename=filename, content_type="application/zip")
        response.block_size = DOWNLOAD_BLOCK
        if export.size_bytes is not None:
            response["Content-Length"] = str(export.size_bytes)
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "private, no-store"
        return response
