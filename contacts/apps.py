from django.apps import AppConfig


class ContactsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "contacts"
    verbose_name = "Contacts"

    def ready(self):
        from contacts import signals  # noqa: F401  (connects the auto-mapping rules to user saves)
