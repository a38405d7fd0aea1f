"""
The contact pages: identities, consent history, the mapping to a user; opting in and out, sending a
verification code, merging contacts, putting an ignored contact back in the unmapped queue.
"""

from django.contrib import admin, messages
from django.shortcuts import render
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timezone import localtime

from contacts.admin.display import user_link
from contacts.admin.forms import MergeForm
from contacts.models import ConsentEvent, ConsentSource, Contact, ContactIdentity
from contacts.selectors import oldest_first_with_identities
from contacts.services.consent import consent_set
from contacts.services.mapping import contacts_ignore
from contacts.services.merge import MergeRefused, contacts_merge
from contacts.services.verification import VerificationRefused, verification_start
from core.admin.base import AuditedModelAdmin
from whatsapp.services.send_rules import SendRefused


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
        contacts = list(oldest_first_with_identities(queryset))
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
