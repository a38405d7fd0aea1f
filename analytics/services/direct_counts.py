"""
Every figure counted straight from the rows it describes, with the ORM (so on PostgreSQL and SQLite
alike). A rebuild writes these counts in place of the squashed ones; the check compares the two. The
definitions mirror the triggers' (migration 0004) row for row: a difference is a bug or a row changed
outside the platform, and `analytics_check` names where.

Each query yields rows of the same shape: provider_id, template_id, period, metric, count, total.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import CharField, Count, DecimalField, Exists, F, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Cast, Coalesce, Concat, TruncDay, TruncHour

from ai.models import AiCall
from analytics.models import ContactHour, TemplateReply
from contacts.models import ConsentEvent, Contact
from whatsapp.models import Conversation, Message, MessageStatus, Session

INBOUND, OUTBOUND = Message.Direction.INBOUND, Message.Direction.OUTBOUND
# Kept equal to the triggers' windows.
TEMPLATE_REPLY_WINDOW = timedelta(hours=24)
TEMPLATE_OPT_OUT_WINDOW = timedelta(days=7)
_MONEY = DecimalField(max_digits=20, decimal_places=6)
_ZERO = Value(Decimal("0"), output_field=_MONEY)


@dataclass(frozen=True)
class CountQuery:
    """One family of figures: `rows` is a queryset of dicts with the columns of a count row."""

    name: str
    rows: QuerySet
    per_template: bool = False


def _metric(prefix: str, field: str | None = None):
    if field is None:
        return Value(prefix, output_field=CharField())
    return Concat(Value(prefix), field, output_field=CharField())


def _hourly(queryset: QuerySet, at: str, metric, *, provider: str = "provider_id", total=None) -> QuerySet:
    """Group `queryset` by provider, the UTC hour of `at` and `metric`, counting rows (and summing `total`)."""
    return (queryset.annotate(p=F(provider), t=Value(None, output_field=CharField()),
                              period=TruncHour(at, tzinfo=UTC), metric=metric)
            .values("p", "t", "period", "metric")
            .annotate(count=Count("pk"), total=Coalesce(Sum(total), _ZERO, output_field=_MONEY) if total is not None
                      else _ZERO)
            .order_by())


def hourly_queries(start: datetime, end: datetime) -> list[CountQuery]:
    """The per-provider hourly figures of [start, end)."""
    messages = Message.objects.all()
    inbound = messages.filter(direction=INBOUND).annotate(at=Coalesce("received_at", "created_at"))
    inbound = inbound.filter(at__gte=start, at__lt=end)
    outbound = messages.filter(direction=OUTBOUND)
    failed = outbound.filter(status=MessageStatus.FAILED).annotate(at=Coalesce("failed_at", "created_at"))
    return [
        CountQuery("received", _hourly(inbound, "at", _metric("received:", "message_type"))),
        CountQuery("intents", _hourly(inbound.exclude(intent=""), "at", _metric("intent:", "intent"))),
        CountQuery("sentiments", _hourly(inbound.exclude(sentiment=""), "at", _metric("sentiment:", "sentiment"))),
        CountQuery("sent", _hourly(outbound.filter(sent_at__gte=start, sent_at__lt=end), "sent_at",
                                   _metric("sent:", "message_type"))),
        CountQuery("delivered", _hourly(outbound.filter(delivered_at__gte=start, delivered_at__lt=end),
                                        "delivered_at", _metric("delivered"))),
        CountQuery("read", _hourly(outbound.filter(read_at__gte=start, read_at__lt=end), "read_at",
                                   _metric("read"))),
        CountQuery("failed", _hourly(failed.filter(at__gte=start, at__lt=end), "at",
                                     _metric("failed:", "error_code"))),
        CountQuery("dead_letter", _hourly(messages.filter(dead_lettered_at__gte=start, dead_lettered_at__lt=end),
                                          "dead_lettered_at", _metric("dead_letter"))),
        CountQuery("reply_time", _hourly(
            messages.filter(response_seconds__isnull=False, created_at__gte=start, created_at__lt=end),
            "created_at", _metric("reply_time"), total=Cast("response_seconds", _MONEY))),
        CountQuery("first_response", _hourly(
            messages.filter(first_response=True, created_at__gte=start, created_at__lt=end),
            "created_at", _metric("first_response"),
            total=Cast(Coalesce("response_seconds", Value(0.0)), _MONEY))),
        CountQuery("contacts", _hourly(ContactHour.objects.filter(hour__gte=start, hour__lt=end), "hour",
                                       _metric("contacts"))),
        CountQuery("new_contacts", _hourly(Conversation.objects.filter(created_at__gte=start, created_at__lt=end),
                                           "created_at", _metric("new_contacts"))),
        CountQuery("conversations_opened", _hourly(
            Session.objects.filter(opened_at__gte=start, opened_at__lt=end), "opened_at",
            _metric("conversations_opened"), provider="conversation__provider_id")),
        CountQuery("opt_outs", _hourly(
            ConsentEvent.objects.filter(state=Contact.Consent.OPTED_OUT, created_at__gte=start, created_at__lt=end),
            "created_at", _metric("opt_outs"), provider="message__provider_id")),
        CountQuery("ai_calls", _hourly(
            AiCall.objects.exclude(status=AiCall.Status.SKIPPED).filter(created_at__gte=start, created_at__lt=end),
            "created_at", _metric("ai_calls:", "feature"), total="cost")),
    ]


def _daily(queryset: QuerySet, metric: str, *, message: str = "") -> QuerySet:
    """Group template messages (or rows pointing at one through `message`) by template, provider and day."""
    return (queryset.annotate(p=F(f"{message}provider_id"), t=F(f"{message}template_id"),
                              period=TruncDay(f"{message}created_at", tzinfo=UTC), metric=_metric(metric))
            .values("p", "t", "period", "metric")
            .annotate(count=Count("pk"), total=_ZERO)
            .order_by())


def template_queries(start: datetime, end: datetime) -> list[CountQuery]:
    """The per-template daily figures of the messages queued in [start, end)."""
    cohort = Message.objects.filter(direction=OUTBOUND, template__isnull=False, created_at__gte=start,
                                    created_at__lt=end)
    replied = TemplateReply.objects.filter(message__created_at__gte=start, message__created_at__lt=end)
    return [
        CountQuery("template_sent", _daily(cohort.filter(sent_at__isnull=False), "sent"), per_template=True),
        CountQuery("template_delivered", _daily(cohort.filter(delivered_at__isnull=False), "delivered"),
                   per_template=True),
        CountQuery("template_read", _daily(cohort.filter(read_at__isnull=False), "read"), per_template=True),
        CountQuery("template_failed", _daily(cohort.filter(status=MessageStatus.FAILED), "failed"),
                   per_template=True),
        CountQuery("template_replied", _daily(replied, "replied", message="message__"), per_template=True),
    ]


def template_opt_outs(start: datetime, end: datetime) -> Iterator[dict]:
    """Opt-outs charged to the latest template message sent to the contact in the week before; rows for
    the messages queued in [start, end). Counted in Python: several opt-outs may fall on one message."""
    latest = (Message.objects.filter(conversation__contact_id=OuterRef("contact_id"), direction=OUTBOUND,
                                     template__isnull=False, created_at__lte=OuterRef("created_at"),
                                     created_at__gt=OuterRef("created_at") - TEMPLATE_OPT_OUT_WINDOW)
              .order_by("-created_at").values("pk")[:1])
    charged = (ConsentEvent.objects.filter(state=Contact.Consent.OPTED_OUT, created_at__gte=start,
                                           created_at__lt=end + TEMPLATE_OPT_OUT_WINDOW)
               .annotate(charged=Subquery(latest)).exclude(charged=None).values_list("charged", flat=True))
    per_message: dict[int, int] = {}
    for message_id in charged:
        per_message[message_id] = per_message.get(message_id, 0) + 1
    sums: dict[tuple, int] = {}
    rows = (Message.objects.filter(pk__in=list(per_message), created_at__gte=start, created_at__lt=end)
            .annotate(day=TruncDay("created_at", tzinfo=UTC)).values_list("pk", "provider_id", "template_id", "day"))
    for message_id, provider_id, template_id, day in rows:
        key = (provider_id, template_id, day)
        sums[key] = sums.get(key, 0) + per_message[message_id]
    for (provider_id, template_id, day), count in sums.items():
        yield {"p": provider_id, "t": template_id, "period": day, "metric": "opted_out", "count": count,
               "total": Decimal("0")}


def template_replies(start: datetime, end: datetime) -> dict[int, datetime]:
    """{template message id: first reply time} for the template messages queued in [start, end): each
    customer message credits the latest template message sent in its conversation in the day before it.

    Worked forward from the template messages (a customer message answers template T when it comes after T,
    within the day, and before the conversation's next template message), in one pass over each
    conversation: a lookup per customer message would cost seconds at a million messages."""
    sent_templates = (Message.objects.filter(direction=OUTBOUND, template__isnull=False, sent_at__isnull=False,
                                             created_at__gte=start, created_at__lt=end + TEMPLATE_REPLY_WINDOW)
                      .order_by("conversation_id", "created_at", "pk"))
    by_conversation: dict[int, list[tuple[datetime, int]]] = {}
    for conversation_id, created_at, pk in sent_templates.values_list("conversation_id", "created_at", "pk"):
        by_conversation.setdefault(conversation_id, []).append((created_at, pk))
    inbound = (Message.objects.filter(direction=INBOUND, conversation_id__in=sent_templates.values("conversation_id"),
                                      created_at__gte=start, created_at__lt=end + 2 * TEMPLATE_REPLY_WINDOW)
               .order_by("conversation_id", "created_at").values_list("conversation_id", "created_at"))
    first_reply: dict[int, datetime] = {}
    position: dict[int, int] = {}
    for conversation_id, at in inbound:
        templates = by_conversation.get(conversation_id, [])
        index = position.get(conversation_id, -1)
        # The latest template message at or before this customer message (messages come oldest first).
        while index + 1 < len(templates) and templates[index + 1][0] <= at:
            index += 1
        position[conversation_id] = index
        if index >= 0:
            created_at, pk = templates[index]
            if at - created_at < TEMPLATE_REPLY_WINDOW and start <= created_at < end:
                first_reply.setdefault(pk, at)
    return first_reply


def template_reply_counts(replies: dict[int, datetime]) -> Iterator[dict]:
    """The `replied` rows of these credited template messages."""
    sums: dict[tuple, int] = {}
    rows = (Message.objects.filter(pk__in=list(replies)).annotate(day=TruncDay("created_at", tzinfo=UTC))
            .values_list("provider_id", "template_id", "day"))
    for key in rows:
        sums[key] = sums.get(key, 0) + 1
    for (provider_id, template_id, day), count in sums.items():
        yield {"p": provider_id, "t": template_id, "period": day, "metric": "replied", "count": count,
               "total": Decimal("0")}


def contact_hours(start: datetime, end: datetime) -> QuerySet:
    """The distinct (provider, hour, conversation) of the customers who wrote in [start, end) that have no
    row yet."""
    known = ContactHour.objects.filter(hour=OuterRef("h"), provider_id=OuterRef("provider_id"),
                                      conversation_id=OuterRef("conversation_id"))
    return (Message.objects.filter(direction=INBOUND).annotate(at=Coalesce("received_at", "created_at"))
            .filter(at__gte=start, at__lt=end)
            .annotate(h=TruncHour("at", tzinfo=UTC)).exclude(Exists(known))
            .values("provider_id", "h", "conversation_id").distinct().order_by())


def stale_contact_hours(start: datetime, end: datetime) -> QuerySet:
    """Rows of [start, end) whose customer message is gone (erased, or moved by a contact merge)."""
    wrote = (Message.objects.filter(direction=INBOUND, provider_id=OuterRef("provider_id"),
                                    conversation_id=OuterRef("conversation_id"))
             .annotate(h=TruncHour(Coalesce("received_at", "created_at"), tzinfo=UTC)).filter(h=OuterRef("hour")))
    return ContactHour.objects.filter(hour__gte=start, hour__lt=end).exclude(Exists(wrote))


def distinct_writers(start: datetime, end: datetime) -> QuerySet:
    """Customers who wrote, per provider and hour, counted from the messages themselves (for the check)."""
    return (Message.objects.filter(direction=INBOUND).annotate(at=Coalesce("received_at", "created_at"))
            .filter(at__gte=start, at__lt=end)
            .annotate(p=F("provider_id"), period=TruncHour("at", tzinfo=UTC))
            .values("p", "period").annotate(count=Count("conversation_id", distinct=True)).order_by())


