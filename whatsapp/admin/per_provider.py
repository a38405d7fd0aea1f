"""The admin of settings kept once per provider by an app above the core (its AI settings, its assistant
policy): the provider is chosen when the row is made, among the providers that have none yet, and fixed
after that."""


from core.admin.base import ScopedModelAdmin
from whatsapp.models import Provider


class OnePerProviderAdmin(ScopedModelAdmin):
    #: The related name from Provider to the row (e.g. "ai_settings"): providers without one are offered.
    provider_related_name = ""

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("provider").defer("provider__credentials")

    def get_readonly_fields(self, request, obj=None):
        # One row per provider for good: another provider gets a row of its own.
        readonly = list(super().get_readonly_fields(request, obj))
        return [*readonly, "provider"] if obj else readonly

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "provider":
            kwargs["queryset"] = (Provider.objects.filter(**{f"{self.provider_related_name}__isnull": True})
                                  .defer("credentials"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
