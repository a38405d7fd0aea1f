from django.apps import AppConfig


class TemplatesAppConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "templates_app"
    verbose_name = "Templates"

    def ready(self):
        # Registration belongs in ready(): the modules below need the models loaded.
        from templates_app import tasks  # noqa: F401  (task registration)
        from templates_app.services.sync import template_status_apply
        from whatsapp import hooks

        hooks.template_status_reported.register(template_status_apply)
