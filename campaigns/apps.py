from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        from campaigns import tasks  # noqa: F401 - task registration
        from campaigns.services import reactions, results
        from contacts import hooks as contacts_hooks
        from whatsapp import hooks

        hooks.inbound_message_saved.register(reactions.reply_attribute)
        hooks.status_failed_reported.register(reactions.send_failure_reaction)
        hooks.send_failed.register(reactions.send_failure_reaction)
        contacts_hooks.user_export_sections.register(results.user_sections)
