from typing import Any

from django.db import models

from core.correlation import get_correlation_id
from core.models import AuditLog


def audit_record(
    *,
    action: str,
    obj: models.Model,
    actor: Any = None,
    actor_label: str = "",
    before: dict | None = None,
    after: dict | None = None,
) -> AuditLog:
    user = actor if getattr(actor, "is_authenticated", False) else None
    return AuditLog.objects.create(
        actor=user,
        actor_label=actor_label or (user.get_username() if user else "system"),
        action=action,
        object_type=obj._meta.label,
        object_id=str(obj.pk),
        object_repr=str(obj)[:255],
        before=before or {},
        after=after or {},
        correlation_id=get_correlation_id(),
    )
