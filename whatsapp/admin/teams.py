"""Teams (who answers which numbers) and the resolutions of conversations with their satisfaction answers."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Count, Prefetch
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from core.access import sees_everything
from core.admin.base import ADMIN_CSS, AuditedModelAdmin, ReadOnlyModelAdmin, clipped
from core.dates import when
from whatsapp.admin.filters import ProviderNameFilter
from whatsapp.models import Provider, Resolution, Team


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@admin.register(Team)
class TeamAdmin(AuditedModelAdmin):
    list_display = ["name", "member_count", "numbers", "csat_survey"]
    search_fields = ["name", "description", "members__username"]
    fields = ["name", "description", "members", "providers", "csat_survey"]
    filter_horizontal = ["members", "providers"]

    def get_queryset(self, request):
        queryset = (super().get_queryset(request).annotate(member_total=Count("members", distinct=True))
                    .prefetch_related(Prefetch("providers", Provider.objects.only("pk", "name"))))
        # Someone who does not see every team sees the teams they are in.
        return queryset if sees_everything(request.user) else queryset.filter(members=request.user)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "members":  # people who answer conversations: active staff
            kwargs["queryset"] = get_user_model().objects.filter(is_active=True, is_staff=True).order_by("username")
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_search_results(self, request, queryset, search_term):
        results, _ = super().get_search_results(request, queryset, search_term)
        return results.distinct(), False

    @admin.display(description="Members", ordering="member_total")
    def member_count(self, obj):
        return obj.member_total

    @admin.display(description="Numbers")
    def numbers(self, obj):
        names = [provider.name for provider in obj.providers.all()]
        return ", ".join(names) if names else "-"


@admin.register(Resolution)
class ResolutionAdmin(ReadOnlyModelAdmin):
    list_display = ["resolved", "conversation_link", "resolved_by", "first_response", "resolution_time",
                    "survey", "stars", "short_comment"]
    list_filter = ["survey", "rating", ProviderNameFilter, ("resolved_by", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["comment", "conversation__contact__profile_name", "resolved_by__username"]
    date_hierarchy = "resolved_at"
    list_select_related = ["conversation__contact", "conversation__provider", "resolved_by"]
    list_per_page = 50
    fields = ["conversation", "provider", "resolved_by", "opened_at", "resolved_at", "first_response_seconds",
              "resolution_seconds", "survey", "survey_note", "survey_message", "rating", "comment", "answered_at"]

    class Media:
        css = {"all": [ADMIN_CSS]}

    def get_queryset(self, request):
        return super().get_queryset(request).defer("conversation__provider__credentials")

    @admin.display(description="Resolved", ordering="resolved_at")
    def resolved(self, obj):
        return when(obj.resolved_at)

    @admin.display(description="Conversation")
    def conversation_link(self, obj):
        return format_html('<a href="{}">{}</a><br><span class="wa-quiet">{}</span>',
                           reverse("admin:whatsapp_conversation_change", args=[obj.conversation_id]),
                           obj.conversation.contact, obj.conversation.provider.name)

    @admin.display(description="First reply", ordering="first_response_seconds")
    def first_response(self, obj):
        return _duration(obj.first_response_seconds)

    @admin.display(description="Took", ordering="resolution_seconds")
    def resolution_time(self, obj):
        return _duration(obj.resolution_seconds)

    @admin.display(description="Rating", ordering="rating")
    def stars(self, obj):
        if obj.rating is None:
            return "-"
        return format_html('<span title="{} of 5">{}</span>', obj.rating,
                           format_html_join("", "{}", (("★",) for _ in range(obj.rating))))

    @admin.display(description="Comment")
    def short_comment(self, obj):
        return clipped(obj.comment)
