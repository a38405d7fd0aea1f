from django.apps import AppConfig


class WhatsappConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "whatsapp"
    verbose_name = "WhatsApp"

    def ready(self) -> None:
        from whatsapp import checks, signals  # noqa: F401  (registers system checks and signal receivers)
