from django.apps import AppConfig


class WhatsappConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "whatsapp"
    verbose_name = "WhatsApp"

    def ready(self) -> None:
        # Registration belongs in ready(): these modules need the models loaded.
        from core.access import provider_ids_resolver
        from whatsapp import checks, signals, tasks  # noqa: F401  (system checks, receivers, tasks)
        from whatsapp.providers import provider_settings_check
        from whatsapp.selectors import team_provider_ids

        provider_settings_check()
        provider_ids_resolver(team_provider_ids)
