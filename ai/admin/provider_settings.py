"""AI settings per provider: the features, the rollout, the daily budget (with what was spent today) and the
redaction of personal data; and the setup guide the AI pages link to."""

from django.conf import settings
from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import path, reverse

from ai.admin.common import usd
from ai.guards import spent_today
from ai.models import ProviderAiSettings
from ai.selectors import providers_without_ai_settings
from core.admin.base import AuditedModelAdmin
from whatsapp.admin.per_provider import OnePerProviderAdmin

GUIDE_PATH = settings.BASE_DIR / "docs" / "ai.md"


def _flag(field: str, title: str):
    """A list column showing one on/off setting under a short title."""
    @admin.display(description=title, boolean=True, ordering=field)
    def column(self, obj):
        return getattr(obj, field)
    return column


@admin.register(ProviderAiSettings)
class ProviderAiSettingsAdmin(OnePerProviderAdmin, AuditedModelAdmin):
    provider_related_name = "ai_settings"
    list_display = ["provider_name", "transcription", "classification", "suggestions", "summaries", "rollout", "budget",
                    "spent", "redaction", "updated_at"]
    list_display_links = ["provider_name"]
    list_filter = ["transcription_enabled", "classification_enabled", "suggestions_enabled", "summaries_enabled",
                   "redact_pii"]
    search_fields = ["provider__name"]
    readonly_fields = ["spent", "updated_at"]
    fieldsets = [
        (None, {"fields": ["provider"]}),
        ("Features", {"fields": ["transcription_enabled", "classification_enabled", "suggestions_enabled",
                                 "summaries_enabled"]}),
        ("Who and how much", {"fields": ["rollout_percent", "daily_budget", "spent"]}),
        ("Privacy", {"fields": ["redact_pii"]}),
        (None, {"fields": ["updated_at"]}),
    ]

    def get_urls(self):
        guide = path("guide/", self.admin_site.admin_view(self.guide_view), name="ai_setup_guide")
        return [guide, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        add_url = reverse("admin:ai_provideraisettings_add")
        defaults = [{"name": name, "add_url": f"{add_url}?provider={pk}"}
                    for pk, name in providers_without_ai_settings()]
        context = {"title": "AI settings per provider", "providers_on_defaults": defaults}
        return super().changelist_view(request, {**context, **(extra_context or {})})

    def guide_view(self, request):
        """docs/ai.md, as shipped with this installation."""
        text = GUIDE_PATH.read_text(encoding="utf-8") if GUIDE_PATH.is_file() else ""
        context = {**self.admin_site.each_context(request), "title": "Setting up AI", "opts": self.model._meta,
                   "guide": text, "guide_path": "docs/ai.md"}
        return TemplateResponse(request, "admin/ai/guide.html", context)

    @admin.display(description="Provider", ordering="provider__name")
    def provider_name(self, obj):
        return obj.provider.name

    # Short column titles: the list is wide.
    transcription = _flag("transcription_enabled", "Transcription")
    classification = _flag("classification_enabled", "Classification")
    suggestions = _flag("suggestions_enabled", "Suggestions")
    summaries = _flag("summaries_enabled", "Summaries")
    redaction = _flag("redact_pii", "Redaction")

    @admin.display(description="Rollout", ordering="rollout_percent")
    def rollout(self, obj):
        return f"{obj.rollout_percent}%"

    @admin.display(description="Daily budget (USD)", ordering="daily_budget")
    def budget(self, obj):
        return usd(obj.daily_budget, 2) if obj.daily_budget is not None else "no limit"

    @admin.display(description="Spent today (USD)")
    def spent(self, obj):
        if obj.provider_id is None:
            return "-"
        # A handful of providers: one sum each, the same the budget check makes.
        return usd(spent_today(obj.provider))
