from django.contrib import admin

from analytics.models import HourlyStats
from core.admin.base import ReadOnlyModelAdmin


@admin.register(HourlyStats)
class HourlyStatsAdmin(ReadOnlyModelAdmin):
    list_display = ["hour", "provider", "received", "sent", "delivered", "read", "failed", "unique_contacts",
                    "error_rate"]
    list_filter = ["provider"]
    date_hierarchy = "hour"
    list_select_related = ["provider"]
