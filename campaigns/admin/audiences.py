"""Audiences: segments (filters, with how many match now) and lists imported from CSV (with every refused row)."""

from __future__ import annotations

import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from campaigns.models import AudienceImport, Segment
from campaigns.services.audiences import ImportRefused, audience_import
from campaigns.services.editing import segment_write
from campaigns.services.segments import FILTERS, SegmentInvalid, segment_count, segment_validate
from core.access import scoped
from core.admin.base import ADMIN_CSS, ReadOnlyModelAdmin, ScopedModelAdmin
from whatsapp.admin.filters import ProviderNameFilter
from whatsapp.models import Provider

FIRST_ROWS = 20
FILTER_HELP = "; ".join(f"{name}: {meaning}" for name, meaning in FILTERS.items())


class SegmentForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = ["name", "description", "filters"]
        widgets = {"filters": forms.Textarea(attrs={"rows": 6, "cols": 70})}
        help_texts = {"filters": 'A JSON object, e.g. {"languages": ["pt"], "countries": ["BR"], "consent": '
                                 f'["opted_in"]}}. Filters: {FILTER_HELP}.'}

    def clean_filters(self):
        try:
            return segment_validate(self.cleaned_data["filters"])
        except SegmentInvalid as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(Segment)
class SegmentAdmin(ScopedModelAdmin):
    form = SegmentForm
    list_display = ["name", "description", "filters_text", "updated_at"]
    search_fields = ["name", "description"]
    readonly_fields = ["matches_now"]

    class Media:
        css = {"all": [ADMIN_CSS]}

    @admin.display(description="Filters")
    def filters_text(self, obj):
        return json.dumps(obj.filters, ensure_ascii=False)

    @admin.display(description="Matches now")
    def matches_now(self, obj):
        return f"{segment_count(obj.filters)} contacts" if obj.pk else "— (saved first)"

    def save_model(self, request, obj, form, change):
        saved = segment_write(obj if change else None, form.cleaned_data, actor=request.user)
        obj.pk, obj._state.adding = saved.pk, False


class ImportForm(forms.Form):
    name = forms.CharField(max_length=100)
    provider = forms.ModelChoiceField(Provider.objects.order_by("name"),
                                      help_text="The number the list will be messaged from.")
    file = forms.FileField(help_text="CSV in UTF-8: a phone column, optional name, language, time_zone and opt_in "
                                     "(the proof of consent: where and when they agreed); any other column becomes "
                                     "a value for the messages, {row.<column>}.")
    require_opt_in = forms.BooleanField(required=False, initial=True, label="Every row needs opt-in proof")


@admin.register(AudienceImport)
class AudienceImportAdmin(ReadOnlyModelAdmin):
    list_display = ["name", "status", "provider", "rows_total", "rows_imported", "refused_rows", "created_at"]
    list_filter = ["status", ProviderNameFilter]
    search_fields = ["name", "file_name"]
    fields = ["name", "status", "provider", "file_name", "columns", "rows_total", "rows_imported", "refused",
              "first_rows", "created_by", "created_at"]
    readonly_fields = fields

    class Media:
        css = {"all": [ADMIN_CSS, "campaigns/campaign_admin.css"]}

    def has_add_permission(self, request, obj=None):
        # An import opts people in with its proof: it needs the right to change contacts too.
        return request.user.has_perms(["campaigns.add_audienceimport", "contacts.change_contact"])

    @admin.display(description="Refused rows")
    def refused_rows(self, obj):
        return len(obj.errors) or "—"

    @admin.display(description="Refused rows (nothing was imported)")
    def refused(self, obj):
        if not obj.errors:
            return "—"
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td></tr>",
                                ((error.get("line"), error.get("reason")) for error in obj.errors[:500]))
        more = f" and {len(obj.errors) - 500} more" if len(obj.errors) > 500 else ""
        return format_html('<table class="cmp-errors"><thead><tr><th>Line</th><th>Why</th></tr></thead>'
                           "<tbody>{}</tbody></table>{}", rows, more)

    @admin.display(description="First people")
    def first_rows(self, obj):
        members = list(obj.members.select_related("contact").order_by("line")[:FIRST_ROWS])
        if not members:
            return "—"
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", (
            (member.line, member.contact, json.dumps(member.values, ensure_ascii=False), member.opt_in_proof)
            for member in members))
        return format_html('<table class="cmp-errors"><thead><tr><th>Line</th><th>Contact</th><th>Values</th>'
                           "<th>Opt-in proof</th></tr></thead><tbody>{}</tbody></table>", rows)

    def get_urls(self):
        return [path("add/", self.admin_site.admin_view(self.import_view), name="campaigns_audienceimport_add"),
                *super().get_urls()]

    def import_view(self, request):
        if not self.has_add_permission(request):
            return HttpResponseRedirect(reverse("admin:campaigns_audienceimport_changelist"))
        form = ImportForm(request.POST or None, request.FILES or None)
        form.fields["provider"].queryset = scoped(form.fields["provider"].queryset, request.user)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                if upload.size > settings.CAMPAIGN_IMPORT_MAX_BYTES:
                    raise ImportRefused(f"the file is {upload.size} bytes; the limit is "
                                        f"{settings.CAMPAIGN_IMPORT_MAX_BYTES}")
                audience = audience_import(name=form.cleaned_data["name"], provider=form.cleaned_data["provider"],
                                           data=upload.read(), file_name=upload.name,
                                           require_opt_in=form.cleaned_data["require_opt_in"], actor=request.user)
            except ImportRefused as exc:
                form.add_error("file", str(exc))
            else:
                if audience.status == AudienceImport.Status.IMPORTED:
                    self.message_user(request, f"Imported {audience.rows_imported} people.", messages.SUCCESS)
                else:
                    self.message_user(request, f"Nothing imported: {len(audience.errors)} bad row(s), listed below. "
                                               "Fix them and import the file again.", messages.ERROR)
                return HttpResponseRedirect(reverse("admin:campaigns_audienceimport_change", args=[audience.pk]))
        context = {**self.admin_site.each_context(request), "title": "Import a list of people", "form": form,
                   "opts": self.model._meta, "media": self.media + form.media}
        return TemplateResponse(request, "admin/campaigns/audienceimport/import.html", context)
