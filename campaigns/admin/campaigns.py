"""
A campaign's pages: the draft form with its variants; once launched, the same page shows the progress bar and
counts (updated live while it runs), the results per variant with their significance, a preview of what the
first recipients get, and the buttons to launch, pause, resume, cancel and send the winner. Every step goes
through the campaign services, which check what is allowed and write the audit entries.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from campaigns.models import Campaign, CampaignRecipient, CampaignVariant
from campaigns.selectors import contacts_phones
from campaigns.services.content import ContentMissing, RecipientFacts, variant_message
from campaigns.services.control import campaign_cancel, campaign_pause, campaign_resume, campaign_send_winner
from campaigns.services.editing import campaign_write
from campaigns.services.launch import CampaignInvalid, campaign_launch, campaign_problems
from campaigns.services.results import HOLDOUT, campaign_report, recipients_csv_rows
from campaigns.services.scheduling import zone_named
from campaigns.services.segments import segment_contacts
from contacts.models import Contact
from core.access import scoped
from core.admin.base import ADMIN_CSS, ScopedModelAdmin, as_row_id
from core.spreadsheet import csv_lines
from whatsapp.admin.filters import ProviderNameFilter

CONTROL = "campaigns.control_campaign"
PREVIEW_PEOPLE = 5
STATUS_TONES = {Campaign.Status.RUNNING: "good", Campaign.Status.COMPLETED: "good", Campaign.Status.PAUSED: "waiting",
                Campaign.Status.SCHEDULED: "waiting", Campaign.Status.CANCELLED: "bad"}
# The progress bar's parts, in order, with their labels.
BAR_PARTS = (("read", "Read"), ("delivered_only", "Delivered"), ("sent_only", "Sent"), ("queued", "Queued"),
             ("failed", "Failed"), ("skipped", "Skipped"), ("pending", "Waiting"))
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class CampaignForm(forms.ModelForm):
    send_days = forms.MultipleChoiceField(choices=list(enumerate(DAY_NAMES)), widget=forms.CheckboxSelectMultiple,
                                          initial=list(range(7)), help_text="In each person's own time zone.")

    class Meta:
        model = Campaign
        fields = ["name", "provider", "segment", "audience", "start_at", "recurrence", "recurrence_until",
                  "send_window_start", "send_window_end", "send_days", "default_time_zone", "at_best_hour",
                  "holdout_percent", "test_percent", "conversion_keyword", "sms_fallback_provider",
                  "sms_fallback_text", "sms_fallback_after_minutes"]
        widgets = {"sms_fallback_text": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance and self.instance.pk:
            self.initial["send_days"] = list(self.instance.send_days)

    def clean_send_days(self):
        return "".join(sorted(set(self.cleaned_data["send_days"])))

    def clean_default_time_zone(self):
        zone = self.cleaned_data["default_time_zone"].strip()
        if zone and zone_named(zone) is None:
            raise forms.ValidationError(f"{zone!r} is not a time zone (e.g. America/Sao_Paulo)")
        return zone

    def clean(self):
        data = super().clean()
        if data.get("segment") and data.get("audience"):
            raise forms.ValidationError("Choose a segment or an imported list, not both.")
        return data


class VariantForm(forms.ModelForm):
    class Meta:
        model = CampaignVariant
        fields = ["name", "split_percent", "template", "variables", "text"]
        widgets = {"name": forms.TextInput(attrs={"size": 6}),
                   "split_percent": forms.NumberInput(attrs={"style": "width: 4.5em"}),
                   "variables": forms.Textarea(attrs={"rows": 3, "cols": 34}),
                   "text": forms.Textarea(attrs={"rows": 3, "cols": 26})}


class VariantInline(admin.TabularInline):
    model = CampaignVariant
    form = VariantForm
    extra = 0
    min_num = 1
    fields = ["name", "split_percent", "template", "variables", "text"]
    autocomplete_fields = ["template"]

    def has_change_permission(self, request, obj=None):
        return (obj is None or obj.status == Campaign.Status.DRAFT) and super().has_change_permission(request, obj)

    has_add_permission = has_delete_permission = has_change_permission


@admin.register(Campaign)
class CampaignAdmin(ScopedModelAdmin):
    form = CampaignForm
    inlines = [VariantInline]
    list_display = ["name", "status_label", "provider", "audience_name", "progress", "launched_at"]
    list_filter = ["status", ProviderNameFilter]
    search_fields = ["name"]
    actions = ["pause_selected", "resume_selected", "cancel_selected"]
    change_form_template = "admin/campaigns/campaign/change_form.html"
    fieldsets = [
        (None, {"fields": ["name", "provider", ("segment", "audience")]}),
        ("When", {"fields": ["start_at", ("recurrence", "recurrence_until"), ("send_window_start", "send_window_end"),
                             "send_days", "default_time_zone", "at_best_hour"],
                  "description": "Each person gets it at their own local time (their profile's zone, else their "
                                 "phone number's region, else the default here) inside these hours and days."}),
        ("A/B test", {"fields": ["holdout_percent", "test_percent", "conversion_keyword"],
                      "description": "Variants split the test group by their percentages; the holdout gets nothing "
                                     "(the baseline); the rest of the audience waits for the winner."}),
        ("SMS fallback", {"fields": ["sms_fallback_provider", "sms_fallback_text", "sms_fallback_after_minutes"],
                          "classes": ["collapse"]}),
    ]

    class Media:
        css = {"all": [ADMIN_CSS, "campaigns/campaign_admin.css"]}
        js = ["campaigns/campaign_progress.js"]

    def get_queryset(self, request):
        return (super().get_queryset(request).select_related("provider", "segment", "audience")
                .annotate(recipients_count=Count("recipients"),
                          sent_count=Count("recipients", filter=Q(recipients__sent_at__isnull=False))))

    def has_change_permission(self, request, obj=None):
        # A launched campaign is read: its buttons change it, through the services.
        return (obj is None or obj.status == Campaign.Status.DRAFT) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return (obj is None or obj.status == Campaign.Status.DRAFT) and super().has_delete_permission(request, obj)

    # --- the list ---------------------------------------------------------------------------------------

    @admin.display(description="Status", ordering="status")
    def status_label(self, obj):
        return format_html('<span class="cmp-status cmp-status-{}">{}</span>', STATUS_TONES.get(obj.status, "neutral"),
                           obj.get_status_display())

    @admin.display(description="Audience")
    def audience_name(self, obj):
        return obj.segment or obj.audience or "—"

    @admin.display(description="Sent / recipients")
    def progress(self, obj):
        if obj.status == Campaign.Status.DRAFT:
            return "—"
        return f"{obj.sent_count} / {obj.recipients_count}"

    # --- saving drafts through the service (audited) -----------------------------------------------------

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in form.Meta.fields if name in form.cleaned_data}
        saved = campaign_write(obj if change else None, fields, None, actor=request.user)
        obj.pk, obj._state.adding = saved.pk, False

    # --- the page -----------------------------------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        campaign = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if campaign is not None:
            extra.update(self._panels(request, campaign))
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def _panels(self, request, campaign: Campaign) -> dict:
        report = campaign_report(campaign)
        counts = report["counts"]
        variants = report["variants"]
        for row in variants:
            base = row["sent"] if row["name"] != HOLDOUT else row["eligible"]
            row["rates"] = {metric: (row[metric] / base * 100 if base else None)
                            for metric in ("delivered", "read", "replied", "converted", "opted_out")}
        comparisons = [{**c, "rates": f"{c['rate_b'] * 100:.1f}% vs {c['rate_a'] * 100:.1f}%",
                        "difference_text": f"{c['difference'] * 100:+.1f} points ({c['low'] * 100:+.1f} to "
                                           f"{c['high'] * 100:+.1f})"} for c in report["comparisons"]]
        return {
            "campaign": campaign, "report": report, "counts": counts, "bar": _bar(counts), "variants": variants,
            "comparisons": comparisons, "problems": campaign_problems(campaign)
            if campaign.status == Campaign.Status.DRAFT else [],
            "previews": _previews(campaign, request.user),
            "can_control": request.user.has_perm(CONTROL),
            "variant_choices": list(campaign.variants.order_by("name")),
            "progress_url": reverse("admin:campaigns_campaign_progress", args=[campaign.pk]),
            "csv_url": reverse("admin:campaigns_campaign_csv", args=[campaign.pk]),
            "recipients_url": (reverse("admin:campaigns_campaignrecipient_changelist")
                               + f"?campaign__id__exact={campaign.pk}"),
        }

    def get_urls(self):
        def route(suffix, view, name, post_only=True):
            view = require_POST(view) if post_only else view
            return path(f"<int:campaign_id>/{suffix}/", self.admin_site.admin_view(view),
                        name=f"campaigns_campaign_{name}")

        return [
            route("launch", self._step(campaign_launch, "Launched: {} recipients written."), "launch"),
            route("pause", self._step(campaign_pause, "Paused: {} queued messages taken back."), "pause"),
            route("resume", self._step(campaign_resume, "Resumed."), "resume"),
            route("cancel", self._step(campaign_cancel, "Cancelled: {} people will not get it."), "cancel"),
            route("send-winner", self.send_winner_view, "send_winner"),
            route("progress", self.progress_view, "progress", post_only=False),
            route("recipients.csv", self.csv_view, "csv", post_only=False),
            *super().get_urls(),
        ]

    def _step(self, service, done: str):
        def view(request, campaign_id):
            if not request.user.has_perm(CONTROL):
                raise PermissionDenied
            campaign = get_object_or_404(self.get_queryset(request), pk=campaign_id)
            try:
                outcome = service(campaign, actor=request.user)
                self.message_user(request, done.format(outcome), messages.SUCCESS)
            except CampaignInvalid as exc:
                self.message_user(request, f"Not done: {exc}.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign_id]))

        return view

    def send_winner_view(self, request, campaign_id):
        if not request.user.has_perm(CONTROL):
            raise PermissionDenied
        campaign = get_object_or_404(self.get_queryset(request), pk=campaign_id)
        chosen = as_row_id(request.POST.get("variant")) or 0
        variant = CampaignVariant.objects.filter(campaign=campaign, pk=chosen).first()
        if variant is None:
            self.message_user(request, "Choose one of the campaign's variants.", messages.ERROR)
        else:
            try:
                count = campaign_send_winner(campaign, variant, actor=request.user)
                self.message_user(request, f"Variant {variant.name} goes to the other {count} people.",
                                  messages.SUCCESS)
            except CampaignInvalid as exc:
                self.message_user(request, f"Not done: {exc}.", messages.ERROR)
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign_id]))

    def progress_view(self, request, campaign_id):
        if not self.has_view_permission(request):
            raise PermissionDenied
        campaign = get_object_or_404(self.get_queryset(request), pk=campaign_id)
        report = campaign_report(campaign)
        return JsonResponse({"status": campaign.status, "status_label": campaign.get_status_display(),
                             "counts": report["counts"], "bar": _bar(report["counts"])})

    def csv_view(self, request, campaign_id):
        if not self.has_view_permission(request):
            raise PermissionDenied
        campaign = get_object_or_404(self.get_queryset(request), pk=campaign_id)
        response = StreamingHttpResponse(csv_lines(recipients_csv_rows(campaign)),
                                         content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-recipients.csv"'
        return response

    # --- list actions -------------------------------------------------------------------------------------

    def _each(self, request, queryset, service, verb: str):
        if not request.user.has_perm(CONTROL):
            raise PermissionDenied
        done, refused = 0, []
        for campaign in queryset:
            try:
                service(campaign, actor=request.user)
                done += 1
            except CampaignInvalid as exc:
                refused.append(f"{campaign}: {exc}")
        if done:
            self.message_user(request, f"{verb}: {done} campaign(s).", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, f"Not {verb.lower()}: {reason}.", messages.WARNING)

    @admin.action(description="Pause the selected campaigns", permissions=["control"])
    def pause_selected(self, request, queryset):
        self._each(request, queryset, campaign_pause, "Paused")

    @admin.action(description="Resume the selected campaigns", permissions=["control"])
    def resume_selected(self, request, queryset):
        self._each(request, queryset, campaign_resume, "Resumed")

    @admin.action(description="Cancel the selected campaigns", permissions=["control"])
    def cancel_selected(self, request, queryset):
        self._each(request, queryset, campaign_cancel, "Cancelled")

    def has_control_permission(self, request):
        return request.user.has_perm(CONTROL)


def _bar(counts: dict) -> list[dict]:
    total = counts["recipients"] - counts.get("cancelled", 0) or 1
    parts = dict(counts)
    parts["delivered_only"] = counts["delivered"] - counts["read"]
    parts["sent_only"] = counts["sent"] - counts["delivered"]
    return [{"key": key, "label": label, "count": max(parts.get(key, 0), 0),
             "percent": round(max(parts.get(key, 0), 0) / total * 100, 2)} for key, label in BAR_PARTS]


def _previews(campaign: Campaign, user) -> list[dict]:
    """What the first few people get, rendered from their own values (recipients once launched; the audience's
    first people before, of those `user` may see)."""
    people = []
    if campaign.status == Campaign.Status.DRAFT:
        if campaign.audience_id:
            people = [(member.contact, member.values) for member in
                      campaign.audience.members.select_related("contact").order_by("line")[:PREVIEW_PEOPLE]]
        elif campaign.segment_id:
            matching = scoped(segment_contacts(campaign.segment.filters), user)
            people = [(contact, {}) for contact in matching[:PREVIEW_PEOPLE]]
        variants = list(campaign.variants.select_related("template").order_by("name"))
        pairs = [(contact, values, variants[index % len(variants)] if variants else None)
                 for index, (contact, values) in enumerate(people)]
    else:
        pairs = [(recipient.contact, recipient.values, recipient.variant) for recipient in
                 CampaignRecipient.objects.filter(campaign=campaign, variant__isnull=False)
                 .select_related("contact", "variant__template").order_by("pk")[:PREVIEW_PEOPLE]]
    phones = contacts_phones([contact.pk for contact, _values, _variant in pairs])
    previews = []
    for contact, values, variant in pairs:
        facts = RecipientFacts(name=contact.profile_name, phone=phones.get(contact.pk, ""), language=contact.language,
                               time_zone=contact.time_zone, attributes=contact.attributes or {}, row=values or {})
        try:
            text = variant_message(variant, facts).text if variant else "(no variant yet)"
            problem = ""
        except ContentMissing as exc:
            text, problem = "", str(exc)
        previews.append({"contact": contact, "phone": phones.get(contact.pk, ""), "variant": variant,
                         "text": text, "problem": problem, "opted_out": contact.consent == Contact.Consent.OPTED_OUT})
    return previews
