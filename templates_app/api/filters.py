import django_filters

from core.api.filters import YES_NO, ApiFilterSet, ChoiceInFilter
from templates_app.models import MessageTemplate
from whatsapp.providers.events import TemplateStatus


class MessageTemplateFilter(ApiFilterSet):
    status__in = ChoiceInFilter(field_name="status", choices=TemplateStatus.choices,
                                help_text="Any of these statuses, comma-separated, e.g. approved,paused.")
    name__icontains = django_filters.CharFilter(field_name="name", lookup_expr="icontains",
                                                help_text="Part of the name, any case.")
    managed_elsewhere = django_filters.ChoiceFilter(
        choices=YES_NO, method="filter_managed_elsewhere",
        help_text="true: imported from a provider that manages its templates itself (read-only here).")

    class Meta:
        model = MessageTemplate
        fields = ["provider", "status", "language", "category", "name"]

    def filter_managed_elsewhere(self, queryset, name, value):
        return queryset.filter(managed_elsewhere=value == "true")
