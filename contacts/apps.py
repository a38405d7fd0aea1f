from django.apps import AppConfig


class ContactsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "contacts"
    verbose_name = "Contacts"

    def ready(self):
        # Registration belongs in ready(): the modules below need the models loaded.
        from contacts import signals, tasks  # noqa: F401  (user-save receivers; task registration)
        from contacts.services import followups
        from whatsapp import hooks

        hooks.inbound_message_saved.register(followups.inbound_followups)
        hooks.status_failed_reported.register(followups.status_failed_followups)
        hooks.send_failed.register(followups.send_failed_followups)
