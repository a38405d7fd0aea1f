"""The AI ledger (one row per call made, failed or skipped) and the usage page: calls, tokens, cost and
latency per day and feature."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import urlencode
from django.utils.text import Truncator

from ai.admin.common import admin_link, usd, when
from ai.models import AiCall
from ai.selectors import ai_usage, provider_choices
from core.admin.base import ReadOnlyModelAdmin
from whatsapp.admin.filters import ProviderNameFilter


@admin.register(AiCall)
class AiCallAdmin(ReadOnlyModelAdmin):
    list_display = ["called_at", "feature", "provider_name", "status", "model", "input_tokens", "output_tokens",
                    "cost_usd", "latency", "short_reason"]
    list_filter = ["feature", "status", ProviderNameFilter, ("created_at", admin.DateFieldListFilter)]
    search_fields = ["model", "reason"]
    date_hierarchy = "created_at"
    fieldsets = [
        (None, {"fields": ["called_at", "feature", "status", "reason", "attempt", "provider_name", "message_link",
                           "conversation_link"]}),
        ("Usage", {"fields": ["model", "prompt_version", "input_tokens", "output_tokens", "audio_seconds",
                              "cost_usd", "latency"]}),
    ]
    readonly_fields = ["called_at", "provider_name", "message_link", "conversation_link", "cost_usd", "latency"]

    def has_delete_permission(self, request, obj=None):
        return False  # the ledger is what the daily budget counts

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("provider").defer("provider__credentials")

    def get_urls(self):
        usage = path("usage/", self.admin_site.admin_view(self.usage_view), name="ai_aicall_usage")
        return [usage, *super().get_urls()]

    def usage_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        chosen = request.GET.get("provider", "")
        provider_id = int(chosen) if chosen.isdigit() else None
        report = ai_usage(provider_id=provider_id, user=request.user)
        time_zone = ZoneInfo(report.time_zone)
        ledger = reverse("admin:ai_aicall_changelist")

        def calls_url(day, feature="") -> str:
            start = datetime.combine(day, time.min, tzinfo=time_zone)
            params = {"created_at__gte": start.isoformat(), "created_at__lt": (start + timedelta(days=1)).isoformat()}
            if feature:
                params["feature__exact"] = feature
            if provider_id is not None:
                params["provider"] = provider_id
            return f"{ledger}?{urlencode(params)}"

        rows, previous_day = [], None
        for row in report.rows:
            rows.append({"row": row, "first_of_day": row.day != previous_day, "day_url": calls_url(row.day),
                         "calls_url": calls_url(row.day, row.feature), "models": sorted(row.models)})
            previous_day = row.day
        context = {
            **self.admin_site.each_context(request), "title": "AI usage and cost", "opts": self.model._meta,
            "report": report, "rows": rows, "providers": provider_choices(request.user), "provider_id": provider_id,
            "unpriced": set(report.unpriced_models),
        }
        return TemplateResponse(request, "admin/ai/aicall/usage.html", context)

    @admin.display(description="Time", ordering="created_at")
    def called_at(self, obj):
        return when(obj.created_at) or "-"

    @admin.display(description="Provider", ordering="provider__name")
    def provider_name(self, obj):
        return obj.provider.name if obj.provider_id else "-"

    @admin.display(description="Cost (USD)", ordering="cost")
    def cost_usd(self, obj):
        return usd(obj.cost, 6)

    @admin.display(description="Latency", ordering="latency_ms")
    def latency(self, obj):
        return f"{obj.latency_ms} ms" if obj.status != AiCall.Status.SKIPPED else "-"

    @admin.display(description="Reason")
    def short_reason(self, obj):
        return Truncator(obj.reason).chars(80)

    @admin.display(description="Message")
    def message_link(self, obj):
        return admin_link(obj.message) if obj.message_id else "-"

    @admin.display(description="Conversation")
    def conversation_link(self, obj):
        return admin_link(obj.conversation) if obj.conversation_id else "-"
