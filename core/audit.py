import json
from typing import Any

from django.db import models
from django.forms.models import model_to_dict

from core.correlation import get_correlation_id
from core.models import AuditLog


def audit_snapshot(obj: models.Model) -> dict:
    """The row's fields as JSON, for an entry's before or after; secrets never go into the audit log."""
    data = model_to_dict(obj)
    data.pop("credentials", None)
    return json.loads(json.dumps(data, default=str))


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
