"""List filters that other apps' admin pages share."""

from django.contrib import admin

from core.access import scoped
from core.admin.base import as_row_id
from whatsapp.models import Provider


class ProviderNameFilter(admin.SimpleListFilter):
    """
    By provider, reading providers' names only: their credentials are encrypted, and decrypting them for
    every choice of a filter would be wasted work. `provider_field` is the lookup path to the provider's
    id from the listed model.
    """

    title = "provider"
    parameter_name = "provider"
    provider_field = "provider_id"

    def lookups(self, request, model_admin):
        providers = scoped(Provider.objects.order_by("name"), request.user)
        return [(str(pk), name) for pk, name in providers.values_list("pk", "name")]

    def queryset(self, request, queryset):
        if as_row_id(self.value()) is not None:
            return queryset.filter(**{self.provider_field: as_row_id(self.value())})
        return queryset
