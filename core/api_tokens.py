import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from core.audit import audit_record
from core.models import ApiScope, ApiToken

LAST_USED_RESOLUTION = timedelta(minutes=1)
ALL_SCOPES = tuple(ApiScope.values)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _clean_scopes(scopes: Iterable[str]) -> list[str]:
    scopes = set(scopes)
    unknown = scopes - set(ALL_SCOPES)
    if unknown:
        raise ValueError(f"unknown scope(s): {', '.join(sorted(unknown))}; the scopes are {', '.join(ALL_SCOPES)}")
    return [scope for scope in ALL_SCOPES if scope in scopes]


def default_expiry() -> datetime | None:
    days = settings.API_KEY_DEFAULT_LIFETIME_DAYS
    return timezone.now() + timedelta(days=days) if days > 0 else None


def _check_actor_may_give_keys_to(actor: Any, user: Any) -> None:
    """A key acts as its user: only a superuser hands out a key that acts as a superuser."""
    if actor is not None and getattr(user, "is_superuser", False) and not getattr(actor, "is_superuser", False):
        raise PermissionDenied("only a superuser can make or rotate a superuser's API key")


def api_token_create(*, user: Any, name: str, scopes: Iterable[str] = ALL_SCOPES,
                     expires_at: datetime | str | None = "default", actor: Any = None) -> tuple[ApiToken, str]:
    """Make a key for `user`; returns the row and the key itself, which is never retrievable again.
    `expires_at` "default" takes API_KEY_DEFAULT_LIFETIME_DAYS from now; None never expires."""
    _check_actor_may_give_keys_to(actor, user)
    prefix = secrets.token_hex(4)
    key = f"{prefix}.{secrets.token_urlsafe(32)}"
    expiry = default_expiry() if expires_at == "default" else expires_at
    token = ApiToken.objects.create(user=user, name=name, prefix=prefix, digest=_digest(key),
                                    scopes=_clean_scopes(scopes), expires_at=expiry)
    audit_record(action="api_token.create", obj=token, actor=actor, after=_shown(token))
    return token, key


def _shown(token: ApiToken) -> dict:
    return {"user": token.user_id, "name": token.name, "prefix": token.prefix, "scopes": token.scopes,
            "expires_at": token.expires_at.isoformat() if token.expires_at else None}


def api_token_authenticate(key: str, *, address: str | None = None) -> ApiToken | None:
    """The active, unexpired key with this value, its last use noted (at most once a minute per key)."""
    token = ApiToken.objects.select_related("user").filter(digest=_digest(key), is_active=True).first()
    now = timezone.now()
    if token is None or not token.user.is_active or (token.expires_at and token.expires_at <= now):
        return None
    stale = token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION
    if stale or token.last_used_from != address:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_from=address)
    return token


def api_token_state(token: ApiToken) -> str:
    """In plain words: whether the key works now, and until when."""
    now = timezone.now()
    if not token.is_active:
        return "revoked"
    if token.expires_at and token.expires_at <= now:
        return "expired"
    until = f" until {timezone.localtime(token.expires_at):%Y-%m-%d %H:%M}" if token.expires_at else ""
    if token.replaced_by_id:
        return f"rotated, works{until}"
    return f"active{until}" if until else "active, never expires"


def api_token_exists(key: str) -> bool:
    """Whether this key was ever made (active or not)."""
    return ApiToken.objects.filter(digest=_digest(key)).exists()


def api_token_revoke(*, token: ApiToken, actor: Any = None) -> None:
    if not token.is_active:
        return
    token.is_active = False
    token.revoked_at = timezone.now()
    token.save(update_fields=["is_active", "revoked_at"])
    audit_record(action="api_token.revoke", obj=token, actor=actor, before={"is_active": True},
                 after={"is_active": False})


def api_token_rotate(*, token: ApiToken, actor: Any = None) -> tuple[ApiToken, str]:
    """
    A new key with the same owner, name and scopes; the old one stays valid for API_KEY_ROTATION_GRACE_HOURS
    (or until its own earlier expiry) so that clients can switch without an outage. The new key's lifetime
    starts afresh.
    """
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().get(pk=token.pk)
        if not token.is_active or token.replaced_by_id or (token.expires_at and token.expires_at <= timezone.now()):
            raise ValueError("only an active, unexpired key that was not rotated already can be rotated")
        new_token, key = api_token_create(user=token.user, name=token.name, scopes=token.scopes, actor=actor)
        grace_end = timezone.now() + timedelta(hours=settings.API_KEY_ROTATION_GRACE_HOURS)
        before = _shown(token)
        token.expires_at = min(token.expires_at, grace_end) if token.expires_at else grace_end
        token.replaced_by = new_token
        token.save(update_fields=["expires_at", "replaced_by"])
        audit_record(action="api_token.rotate", obj=token, actor=actor, before=before,
                     after={**_shown(token), "replaced_by": new_token.prefix})
    return new_token, key
