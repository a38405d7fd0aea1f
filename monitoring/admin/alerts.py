"""Alert rules and their incidents. The signing secret is written through a field of its own and never shown
again (only its last characters); the evaluation itself is monitoring.alerts'."""

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from core.admin.base import AuditedModelAdmin, ReadOnlyModelAdmin, ReadOnlyTabularInline
from core.dates import when
from monitoring.alerts import alerts_evaluate
from monitoring.models import AlertIncident, AlertNotification, AlertRule
from whatsapp.admin.filters import ProviderNameFilter
from whatsapp.services.providers import mask_secret


class AlertRuleForm(forms.ModelForm):
    # A receiver's address typed without a scheme is taken as https.
    webhook_url = forms.URLField(required=False, max_length=500, assume_scheme="https",
                                 help_text=AlertRule._meta.get_field("webhook_url").help_text)
    webhook_secret = forms.CharField(
        required=False, strip=True, widget=forms.PasswordInput(render_value=False),
        help_text="Keys the HMAC-SHA256 signature of each webhook POST (header X-Signature-256). Leave empty to "
                  "keep the stored one; share it with the receiver only.")
    forget_webhook_secret = forms.BooleanField(required=False, label="Remove the stored signing secret")

    class Meta:
        model = AlertRule
        fields = ["name", "kind", "provider", "threshold", "error_code", "window_minutes", "for_minutes",
                  "min_sends", "enabled", "email_recipients", "webhook_url"]
        widgets = {"email_recipients": forms.Textarea(attrs={"rows": 2})}

    def clean(self):
        cleaned = super().clean()
        # On the row before the model's own validation (which runs next) checks that a webhook has a secret.
        if cleaned.get("forget_webhook_secret"):
            self.instance.webhook_secret = ""
        elif cleaned.get("webhook_secret"):
            self.instance.webhook_secret = cleaned["webhook_secret"]
        return cleaned


class OpenIncidentFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "Open"), ("resolved", "Resolved")]

    def queryset(self, request, queryset):
        if self.value() in ("open", "resolved"):
            return queryset.filter(resolved_at__isnull=self.value() == "open")
        return queryset


@admin.register(AlertRule)
class AlertRuleAdmin(AuditedModelAdmin):
    form = AlertRuleForm
    list_display = ["name", "kind", "provider", "threshold", "window_minutes", "for_minutes", "enabled", "state",
                    "last_figure", "last_evaluated_at"]
    list_filter = ["enabled", "kind", ProviderNameFilter]
    search_fields = ["name", "error_code"]
    readonly_fields = ["stored_secret", "state", "holding_since", "last_evaluated_at", "last_figure", "created_at",
                       "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "provider", "enabled"]}),
        ("Condition", {"fields": ["threshold", "error_code", "window_minutes", "for_minutes", "min_sends"]}),
        ("Notices", {"fields": ["email_recipients", "webhook_url", "webhook_secret", "stored_secret",
                                "forget_webhook_secret"]}),
        ("Last check", {"fields": ["state", "holding_since", "last_evaluated_at", "last_figure", "created_at",
                                   "updated_at"]}),
    ]
    actions = ["evaluate_now"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("provider").defer("provider__credentials")

    @admin.display(description="Stored signing secret")
    def stored_secret(self, obj):
        return (mask_secret(obj.webhook_secret) if obj.pk else "") or "none"

    @admin.display(description="State")
    def state(self, obj):
        if not obj.pk:
            return "-"
        incident = obj.incidents.filter(resolved_at__isnull=True).first()
        if incident is None:
            return "holding, no incident yet" if obj.holding_since else "ok"
        return format_html('<a href="{}">incident open since {}</a>',
                           reverse("admin:monitoring_alertincident_change", args=[incident.pk]),
                           when(incident.opened_at))

    @admin.action(description="Evaluate the selected rules now", permissions=["change"])
    def evaluate_now(self, request, queryset):
        report = alerts_evaluate(rule_ids=list(queryset.values_list("pk", flat=True)))
        if report.skipped:
            self.message_user(request, "An evaluation is running; try again in a moment.", messages.WARNING)
            return
        level = (messages.WARNING if report.failed_rules or report.notices_failed or report.notices_not_attempted
                 else messages.SUCCESS)
        self.message_user(request, report.summary().capitalize() + ".", level)


class AlertNotificationInline(ReadOnlyTabularInline):
    model = AlertNotification
    fields = ["event", "channel", "status", "created_at", "attempts", "last_attempt_at", "sent_at", "last_error"]


@admin.register(AlertIncident)
class AlertIncidentAdmin(ReadOnlyModelAdmin):
    list_display = ["rule", "state", "opened_at", "resolved_at", "figure", "summary", "notices"]
    list_filter = [OpenIncidentFilter, "rule__kind", "rule"]
    search_fields = ["rule__name", "summary"]
    date_hierarchy = "opened_at"
    fields = ["rule", "state", "opened_at", "resolved_at", "figure", "summary", "resolution"]
    readonly_fields = fields
    inlines = [AlertNotificationInline]

    def get_queryset(self, request):
        return (super().get_queryset(request).select_related("rule").defer("rule__credentials")
                .prefetch_related("notifications"))

    @admin.display(description="State", ordering="resolved_at")
    def state(self, obj):
        return "open" if obj.resolved_at is None else "resolved"

    @admin.display(description="Notices")
    def notices(self, obj):
        statuses = [notice.status for notice in obj.notifications.all()]
        if not statuses:
            return "none"
        parts = [f"{statuses.count(status)} {label.lower()}" for status, label in AlertNotification.Status.choices
                 if status in statuses]
        return ", ".join(parts)
