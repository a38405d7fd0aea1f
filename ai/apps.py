from django.apps import AppConfig


class AiConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "ai"
    verbose_name = "AI"

    def ready(self):
        # Registration belongs in ready(): the modules below need the models loaded.
        from ai import tasks  # noqa: F401  (task registration)
        from ai.services import pipeline
        from whatsapp import hooks

        hooks.inbound_message_saved.register(pipeline.on_inbound_message)
        hooks.media_stored.register(pipeline.on_media_stored)
