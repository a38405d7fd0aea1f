from django.apps import AppConfig

from core.embedded import embedded_dirs_create


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from core import checks  # noqa: F401  (registers the system checks)

        embedded_dirs_create()
