from django.apps import AppConfig

from core.embedded import embedded_dirs_create


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        embedded_dirs_create()
