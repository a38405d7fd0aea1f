import secrets
from typing import Any
from urllib.parse import urlencode

import httpx
from django.conf import settings
from django.db import transaction

from core.audit import audit_record
from core.queueing import task_named
from whatsapp.models import Provider
from whatsapp.providers import backend_class_for, backend_for
from whatsapp.services.outbound import messages_release_held
from whatsapp.services.webhooks import webhook_events_replay_unrouted

ROW_TARGETS = ("phone_number", "external_id", "business_account_id")


class ProviderConfigError(ValueError):
    pass


def provider_webhook_url(provider: Provider, base_url: str | None = None) -> str:
    """The URL providers call (on PUBLIC_BASE_URL unless another base is given)."""
    url = f"{base_url or settings.PUBLIC_BASE_URL}/webhooks/{provider.kind}/{provider.public_id}/"
    query = backend_for(provider).webhook_query()
    return f"{url}?{urlencode(query)}" if query else url


def mask_secret(value: str) -> str:
    if not value:
        return ""
    return "••••" + value[-4:] if len(value) > 8 else "••••"


def provider_masked_credentials(provider: Provider) -> dict[str, str]:
    return {key: mask_secret(str(value)) for key, value in sorted(provider.credentials.items())}


def provider_apply_options(provider: Provider, options: dict[str, Any]) -> None:
    """Put each option where its kind says it lives; empty values leave the current one alone."""
    provider_class = backend_class_for(provider.kind)
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
    provider_class = backend_class_for(provider.kind)
    return [option.name for option in provider_class.options
            if option.required and not _current_value(provider, option)]


def provider_fill_defaults(provider: Provider) -> None:
    """What a new provider of its kind starts with: option defaults, generated secrets, rate limit."""
    provider_class = backend_class_for(provider.kind)
    for option in provider_class.options:
        if option.default and not _current_value(provider, option):
            provider_apply_options(provider, {option.name: option.default})
        # Secrets that we choose ourselves (not issued by the provider) are generated when none is given.
        if option.generated and not _current_value(provider, option):
            provider.credentials = {**provider.credentials, option.name: secrets.token_urlsafe(32)}
    if provider._state.adding and not provider.rate_limit_per_second:
        provider.rate_limit_per_second = provider_class.default_rate_limit_per_second


def _current_value(provider: Provider, option) -> Any:
    if option.target in ROW_TARGETS:
        return getattr(provider, option.target)
    if option.target == "credentials":
        return provider.credentials.get(option.name)
    return provider.config.get(option.name)


@transaction.atomic
def provider_create(*, kind: str, name: str, options: dict[str, Any], actor: Any = None) -> Provider:
    provider = Provider(kind=kind, name=name)
    provider_apply_options(provider, options)
    provider_fill_defaults(provider)
    missing = provider_missing_options(provider)
    if missing:
        raise ProviderConfigError(f"a {kind} provider needs: {', '.join(missing)}")
    provider.save()
    audit_record(action="provider.create", obj=provider, actor=actor,
                 after={"kind": kind, "name": name, "credentials": sorted(provider.credentials)})
    # Updates that named this number before the provider existed were kept and flagged; apply them now.
    webhook_events_replay_unrouted(provider=provider)
    return provider


def provider_set_paused(*, provider: Provider, paused: bool, actor: Any = None) -> None:
    """A paused provider keeps accepting webhooks but holds outbound messages queued."""
    if provider.is_paused == paused:
        return
    provider.is_paused = paused
    provider.save(update_fields=["is_paused", "updated_at"])
    audit_record(action="provider.pause" if paused else "provider.resume", obj=provider, actor=actor,
                 before={"is_paused": not paused}, after={"is_paused": paused})
    if not paused:

        messages_release_held(provider=provider)


def provider_webhook_post(provider: Provider, body: bytes, headers: dict[str, str],
                          timeout: float = 10) -> httpx.Response:
    """
    POST to the provider's own webhook URL, as a simulator plays the provider's servers. Workers post it,
    so it goes to INTERNAL_BASE_URL, where they reach the web server: the simulators sign the body, not
    the URL, so the signature holds whichever address carries it.
    """
    url = provider_webhook_url(provider, base_url=settings.INTERNAL_BASE_URL)
    response = httpx.post(url, content=body, headers=headers, timeout=timeout)
    response.raise_for_status()
    return response


def provider_simulate_inbound(*, provider: Provider, from_phone: str, name: str, text: str) -> None:
    """
    A simulator's phone sends a text: a signed webhook posted to the provider's own URL over HTTP, so it
    takes exactly the path a real provider's webhook takes. A worker posts it once the caller's transaction
    commits: a web request posting to its own server would depend on that server answering a second
    request while it serves the first. Raises the broker's error when the task cannot be handed over
    (outside a transaction; inside one, at its commit).
    """
    # Signed here, once: a retried post carries the same message id, so the inbox keeps one message.
    body, headers = backend_for(provider).simulated_inbound(from_phone=from_phone, name=name, text=text)
    simulate = task_named("whatsapp.tasks.simulate_inbound_task")
    transaction.on_commit(lambda: simulate.delay(provider.pk, body.decode(), headers))


def provider_simulated_webhook_post(provider_id: int, body: str, headers: dict[str, str]) -> int:
    """Post a simulated webhook (see provider_simulate_inbound); returns the stored inbox event's id."""
    provider = Provider.objects.get(pk=provider_id)
    return int(provider_webhook_post(provider, body.encode(), headers).json()["event"])
