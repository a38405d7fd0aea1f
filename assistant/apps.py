from django.apps import AppConfig


class AssistantConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "assistant"
    verbose_name = "Assistant"

    def ready(self):
        # Registration belongs in ready(): the modules below need the models loaded.
        from ai import hooks as ai_hooks
        from assistant import tasks  # noqa: F401  (task registration)
        from assistant.services import export, handoff, intake
        from contacts import hooks as contacts_hooks
        from whatsapp import hooks

        hooks.inbound_message_saved.register(intake.on_inbound_message)
        ai_hooks.message_understood.register(intake.on_message_understood)
        hooks.human_reply_recorded.register(handoff.on_human_reply)
        contacts_hooks.user_export_sections.register(export.user_sections)
