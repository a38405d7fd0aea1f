import secrets
from typing import Any

from django.conf import settings
from django.db import transaction

from whatsapp.models import Provider
from whatsapp.providers import provider_class_for
from whatsapp.services.audit import audit_record

ROW_TARGETS = ("phone_number", "external_id", "business_account_id")


class ProviderConfigError(ValueError):
    pass


def provider_webhook_url(provider: Provider) -> str:
    return f"{settings.PUBLIC_BASE_URL}/webhooks/{provider.kind}/{provider.public_id}/"


def mask_secret(value: str) -> str:
    if not value:
        return ""
    return "••••" + value[-4:] if len(value) > 8 else "••••"


def provider_masked_credentials(provider: Provider) -> dict[str, str]:
    return {key: mask_secret(str(value)) for key, value in sorted(provider.credentials.items())}


def provider_apply_options(provider: Provider, options: dict[str, Any]) -> None:
    """Put each option where its kind says it lives; empty values leave the current one alone."""
    provider_class = provider_class_for(provider.kind)
    for option in provider_class.options:
        value = options.get(option.name)
        if value in (None, ""):
            continue
        value = str(value).strip()
        if option.target in ROW_TARGETS:
            setattr(provider, option.target, value)
        elif option.target == "credentials":
            provider.credentials = {**provider.credentials, option.name: value}
        else:
            provider.config = {**provider.config, option.name: value}


def provider_missing_options(provider: Provider) -> list[str]:
    provider_class = provider_class_for(provider.kind)
    missing = []
    for option in provider_class.options:
        if not option.required:
            continue
        if option.target in ROW_TARGETS:
            present = getattr(provider, option.target)
        elif option.target == "credentials":
            present = provider.credentials.get(option.name)
        else:
            present = provider.config.get(option.name)
        if not present:
            missing.append(option.name)
    return missing


@transaction.atomic
def provider_create(*, kind: str, name: str, options: dict[str, Any], actor: Any = None) -> Provider:
    provider_class = provider_class_for(kind)
    provider = Provider(kind=kind, name=name, rate_limit_per_second=provider_class.default_rate_limit_per_second)
    defaults = {option.name: option.default for option in provider_class.options if option.default}
    provider_apply_options(provider, {**defaults, **options})
    # Secrets that we choose ourselves (not issued by the provider) are generated when none is given.
    for option in provider_class.options:
        if option.generated and not options.get(option.name):
            provider.credentials = {**provider.credentials, option.name: secrets.token_urlsafe(32)}
    missing = provider_missing_options(provider)
    if missing:
        raise ProviderConfigError(f"a {kind} provider needs: {', '.join(missing)}")
    provider.save()
    audit_record(action="provider.create", obj=provider, actor=actor,
                 after={"kind": kind, "name": name, "credentials": sorted(provider.credentials)})
    return provider


def provider_set_paused(*, provider: Provider, paused: bool, actor: Any = None) -> None:
    """A paused provider keeps accepting webhooks but holds outbound messages queued."""
    if provider.is_paused == paused:
        return
    provider.is_paused = paused
    provider.save(update_fields=["is_paused", "updated_at"])
    audit_record(action="provider.pause" if paused else "provider.resume", obj=provider, actor=actor,
                 before={"is_paused": not paused}, after={"is_paused": paused})
