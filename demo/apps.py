from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The `seed_demo` command: a sandbox provider, contacts and templates for a first look."""

    name = "demo"
    verbose_name = "Demo data"
