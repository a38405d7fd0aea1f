from django.db.models import Q

from templates_app.models import MessageTemplate
from whatsapp.models import Provider
from whatsapp.providers.events import TemplateStatus, TemplateStatusUpdate
from whatsapp.services.audit import audit_record


def template_status_apply(*, provider: Provider, event: TemplateStatusUpdate) -> int:
    """
    Record a provider's verdict on a submitted template (status, reason, quality, category) on its
    latest version. Templates belong to a business account, which several numbers may share, so every
    provider of the same kind and account is searched. Returns how many templates it updated.
    """
    templates = MessageTemplate.objects.filter(provider__kind=provider.kind)
    if provider.business_account_id:
        templates = templates.filter(provider__business_account_id=provider.business_account_id)
    else:
        templates = templates.filter(provider=provider)
    by_name = Q(name=event.name, language=event.language) if event.name else Q(pk__in=[])
    by_id = Q(provider_template_id=event.provider_template_id) if event.provider_template_id else Q(pk__in=[])
    latest = templates.filter(by_id).order_by("-version").first() or templates.filter(by_name).order_by(
        "-version").first()
    if latest is None:
        return 0
    before = {"status": latest.status, "quality": latest.quality, "category": latest.category}
    fields = ["updated_at"]
    if event.provider_template_id and not latest.provider_template_id:
        latest.provider_template_id = event.provider_template_id
        fields.append("provider_template_id")
    if event.status and event.status != TemplateStatus.UNKNOWN:
        latest.status = event.status
        fields.append("status")
    if event.reason:
        latest.rejection_reason = event.reason
        fields.append("rejection_reason")
    if event.quality:
        latest.quality = event.quality
        fields.append("quality")
    if event.category in MessageTemplate.Category.values:
        latest.category = event.category
        fields.append("category")
    latest.save(update_fields=fields)
    audit_record(action="template.provider_update", obj=latest, actor_label=f"{provider.kind} webhook",
                 before=before, after={"status": latest.status, "quality": latest.quality,
                                       "category": latest.category, "reason": event.reason})
    return 1
