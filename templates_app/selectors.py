"""Read-side queries about templates: which a provider may use, which can be sent, their usage figures."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import OuterRef, Q, QuerySet

from core.models import AuditLog
from core.queries import count_subquery
from templates_app.models import MessageTemplate, TemplateAwaitingReview
from whatsapp.models import Message, Provider
from whatsapp.providers import backend_class_for
from whatsapp.providers.events import MessageStatus, TemplateStatus

# The statuses a template can only have once it was sent to the provider.
AT_PROVIDER = (TemplateStatus.SUBMITTED, TemplateStatus.PENDING, TemplateStatus.APPROVED, TemplateStatus.REJECTED,
               TemplateStatus.PAUSED, TemplateStatus.DISABLED, TemplateStatus.IN_APPEAL, TemplateStatus.SUPERSEDED,
               TemplateStatus.UNKNOWN)
DELIVERED = (MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.PLAYED)
READ = (MessageStatus.READ, MessageStatus.PLAYED)
FAILED = (MessageStatus.FAILED, MessageStatus.DEAD_LETTER)
# The audit log names the model a service saved; the review screen's proxy rows are the same templates.
AUDIT_TYPES = [MessageTemplate._meta.label, TemplateAwaitingReview._meta.label]


def _shares_by_account(provider: Provider) -> bool:
    return bool(provider.business_account_id) and backend_class_for(provider.kind).templates_shared_by_account


def template_account(provider: Provider) -> tuple[str, str]:
    """The key of the template collection a provider uses (for locks and for syncing each collection once)."""
    if _shares_by_account(provider):
        return provider.kind, provider.business_account_id
    return provider.kind, f"provider-{provider.pk}"


def account_filter(provider: Provider, prefix: str = "provider__") -> Q:
    """
    The providers that share templates with `provider`: WhatsApp templates belong to a business account
    (a WABA, a Twilio account), which several numbers may share; a provider without an account id
    shares with nobody.
    """
    if not _shares_by_account(provider):
        return Q(**{f"{prefix}pk": provider.pk})
    return Q(**{f"{prefix}kind": provider.kind, f"{prefix}business_account_id": provider.business_account_id})


def templates_for(provider: Provider) -> QuerySet[MessageTemplate]:
    """Every template (every version) usable from this provider's number."""
    return MessageTemplate.objects.filter(account_filter(provider))


def sendable_template(provider: Provider, name: str, language: str) -> MessageTemplate | None:
    """The approved version of a template by name and language (drafts of later versions are skipped)."""
    return (templates_for(provider).filter(name=name, language=language, status=TemplateStatus.APPROVED)
            .order_by("-version").first())


def versions_of(template: MessageTemplate) -> QuerySet[MessageTemplate]:
    """Every version of the template (same account, name and language), newest first."""
    return (MessageTemplate.objects.filter(account_filter(template.provider), name=template.name,
                                           language=template.language)
            .select_related("created_by", "reviewed_by").order_by("-version"))


def latest_version(template: MessageTemplate) -> MessageTemplate:
    return versions_of(template).first() or template


def awaiting_review() -> QuerySet[MessageTemplate]:
    return MessageTemplate.objects.filter(status=TemplateStatus.IN_REVIEW).select_related(
        "provider", "created_by", "submitted_by").order_by("submitted_at", "pk")


def with_usage(templates: QuerySet[MessageTemplate]) -> QuerySet[MessageTemplate]:
    """Adds sends_count, delivered_count, read_count and failed_count (outbound messages of each template),
    one subquery per figure inside the page's own query."""
    sent = Message.objects.filter(template=OuterRef("pk"), direction=Message.Direction.OUTBOUND)
    return templates.annotate(
        sends_count=count_subquery(sent),
        delivered_count=count_subquery(sent.filter(status__in=DELIVERED)),
        read_count=count_subquery(sent.filter(status__in=READ)),
        failed_count=count_subquery(sent.filter(status__in=FAILED)),
    )


@dataclass(frozen=True)
class TemplateUsage:
    sends: int
    delivered: int
    read: int
    failed: int

    def rate(self, count: int) -> float | None:
        return round(count / self.sends, 4) if self.sends else None

    @property
    def delivered_rate(self) -> float | None:
        return self.rate(self.delivered)

    @property
    def read_rate(self) -> float | None:
        return self.rate(self.read)

    @property
    def failed_rate(self) -> float | None:
        return self.rate(self.failed)

    def as_dict(self) -> dict[str, int | float | None]:
        return {"sends": self.sends, "delivered": self.delivered, "read": self.read, "failed": self.failed,
                "delivered_rate": self.delivered_rate, "read_rate": self.read_rate, "failed_rate": self.failed_rate}


def usage_of(template: MessageTemplate) -> TemplateUsage:
    """The figures of one template: from with_usage's columns when present, else counted now."""
    if not hasattr(template, "sends_count"):
        template = with_usage(MessageTemplate.objects.filter(pk=template.pk)).get()
    return TemplateUsage(template.sends_count, template.delivered_count, template.read_count, template.failed_count)


def approved_templates_for(provider: Provider) -> QuerySet[MessageTemplate]:
    """The approved templates (every approved version) usable from this provider's number."""
    return templates_for(provider).filter(status=TemplateStatus.APPROVED)


def registration_template_choices(provider: Provider) -> QuerySet[MessageTemplate]:
    """The templates a provider's registration reply may use: its number's approved templates, and the one
    already chosen even if it has lost its approval."""
    return MessageTemplate.objects.filter((account_filter(provider) & Q(status=TemplateStatus.APPROVED))
                                          | Q(pk=provider.registration_template_id))


def audit_entries_of(template: MessageTemplate, limit: int) -> list[AuditLog]:
    """The template's newest `limit` audit entries (those of its review-screen proxy included), newest first."""
    return list(AuditLog.objects.filter(object_type__in=AUDIT_TYPES, object_id=str(template.pk))
                .order_by("-created_at", "-id")[:limit])
