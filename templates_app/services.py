from templates_app.models import MessageTemplate
from whatsapp.models import Provider
from whatsapp.providers.events import TemplateStatusUpdate


def template_status_apply(*, provider: Provider, event: TemplateStatusUpdate) -> int:
    """Record a provider's verdict on a submitted template; returns how many versions it updated."""
    templates = MessageTemplate.objects.filter(provider=provider)
    if event.provider_template_id:
        templates = templates.filter(provider_template_id=event.provider_template_id)
    else:
        templates = templates.filter(name=event.name, language=event.language)
    latest = templates.order_by("-version").first()
    if latest is None:
        return 0
    latest.status = event.status
    if event.reason:
        latest.rejection_reason = event.reason
    latest.save(update_fields=["status", "rejection_reason", "updated_at"])
    return 1
