import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.utils import timezone

from core.audit import audit_record
from core.models import ApiToken

LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_token_create(*, user: Any, name: str, actor: Any = None) -> tuple[ApiToken, str]:
    """Make a key for `user`; returns the row and the key itself, which is never retrievable again."""
    prefix = secrets.token_hex(4)
    key = f"{prefix}.{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(user=user, name=name, prefix=prefix, digest=_digest(key))
    audit_record(action="api_token.create", obj=token, actor=actor, after={"user": user.pk, "name": name,
                                                                           "prefix": prefix})
    return token, key


def api_token_authenticate(key: str) -> ApiToken | None:
    token = ApiToken.objects.select_related("user").filter(digest=_digest(key), is_active=True).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def api_token_revoke(*, token: ApiToken, actor: Any = None) -> None:
    if not token.is_active:
        return
    token.is_active = False
    token.revoked_at = timezone.now()
    token.save(update_fields=["is_active", "revoked_at"])
    audit_record(action="api_token.revoke", obj=token, actor=actor, before={"is_active": True},
                 after={"is_active": False})
