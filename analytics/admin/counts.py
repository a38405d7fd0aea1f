from django.contrib import admin

from analytics.models import HourlyCount, TemplateDailyCount
from core.admin.base import ReadOnlyModelAdmin
from whatsapp.admin.filters import ProviderNameFilter


@admin.register(HourlyCount)
class HourlyCountAdmin(ReadOnlyModelAdmin):
    """The squashed rows themselves, for checking a figure by hand; the dashboard reads them for people."""

    list_display = ["hour", "provider", "metric", "count", "total"]
    list_filter = [ProviderNameFilter, "metric"]
    search_fields = ["metric"]
    date_hierarchy = "hour"
    ordering = ["-hour", "metric"]
    list_select_related = ["provider"]


@admin.register(TemplateDailyCount)
class TemplateDailyCountAdmin(ReadOnlyModelAdmin):
    list_display = ["day", "template", "provider", "metric", "count"]
    list_filter = [ProviderNameFilter, "metric"]
    date_hierarchy = "day"
    ordering = ["-day", "template", "metric"]
    list_select_related = ["template", "provider"]
