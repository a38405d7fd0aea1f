from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from whatsapp import crypto


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
