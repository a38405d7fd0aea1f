from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"
    verbose_name = "Sign-in security"

    def ready(self) -> None:
        from accounts import signals  # noqa: F401  (lockout audit; clearing a name's failures after sign-in)
