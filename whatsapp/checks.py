from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from core import crypto
from whatsapp.services.archive import prefix_problems


@register(Tags.security, deploy=True)
def check_field_encryption_keys(app_configs, **kwargs):
    if not settings.FIELD_ENCRYPTION_KEYS:
        return [Warning(
            "FIELD_ENCRYPTION_KEYS is not set: credentials are encrypted with a key derived from SECRET_KEY.",
            hint="Set FIELD_ENCRYPTION_KEYS to one or more Fernet keys (the first one encrypts).",
            id="whatsapp.W001",
        )]
    try:
        crypto.get_fernet()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="whatsapp.E001")]
    return []


@register(Tags.security, deploy=True)
def check_public_base_url(app_configs, **kwargs):
    if not settings.PUBLIC_BASE_URL.startswith("https://"):
        return [Warning(
            "PUBLIC_BASE_URL is not https: providers require HTTPS webhook URLs.",
            hint="Set PUBLIC_BASE_URL to the externally visible https:// address.",
            id="whatsapp.W002",
        )]
    return []


@register()
def check_storage_settings(app_configs, **kwargs):
    if settings.STORAGE_BACKEND not in ("local", "gcs"):
        return [Error(f"STORAGE_BACKEND={settings.STORAGE_BACKEND!r} is not a storage backend.",
                      hint="Use 'local' or 'gcs'.", id="whatsapp.E002")]
    if settings.STORAGE_BACKEND != "gcs":
        return []
    return [Error(problem, hint="Bucket names are <prefix>-u-<hash>; choose a prefix that fits GCS's rules.",
                  id="whatsapp.E003") for problem in prefix_problems(settings.GCS_BUCKET_PREFIX)]
