"""
Sending, second half: the send task's work for one queued message.

    lock the row -> still ours? (queued) -> provider paused or inactive: hold -> rules again (consent,
    window, template: time has passed since it was queued) -> an earlier message of the conversation
    still pending: wait for it (order) -> per-recipient slot (pair rate) -> circuit breaker -> per-number
    slot (rate) -> mark `sending` and commit -> wait for the slot -> provider call -> record the
    provider's id, or retry with backoff, or fail, or dead-letter.

Exactly-once towards the provider, as far as it can be had: the task is acknowledged late (after this
returns), and the provider's id is committed before that. A task delivered again finds the message
`sent` and does nothing. The one window left is between the provider accepting the call and our commit
of its id (milliseconds, plus the HTTP response's way back): if the worker dies there, the message is
found `sending` with no id, and since the provider may have it, it is NOT sent again; it goes to the
dead-letter view as "outcome unknown" for a person to check, unless the provider's own report (Meta
echoes our reference in biz_opaque_callback_data, Chatwoot its echo_id) settles it first.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from config.correlation import get_correlation_id
from whatsapp.models import Message, SendAttempt
from whatsapp.providers import provider_for
from whatsapp.providers.base import ProviderError
from whatsapp.providers.events import (
    MEDIA_TYPES,
    MessageStatus,
    MessageType,
    OutboundMedia,
    OutboundMessage,
    OutboundTemplate,
    SendResult,
    TemplateButtonParameter,
    TemplateParameter,
)
from whatsapp.services import circuit, rate_limits, send_rules
from whatsapp.services.inbound import orphan_statuses_apply
from whatsapp.services.locks import lock_key
from whatsapp.services.outbound import (
    BROKER_COUNTDOWN_MAX_SECONDS,
    HOLD_CIRCUIT,
    HOLD_INACTIVE,
    HOLD_PAUSED,
    PENDING_STATUSES,
    message_enqueue,
    message_hold,
    message_schedule,
    messages_release_held,
    outbound_media_url,
)
from whatsapp.services.send_rules import SendRefused
from whatsapp.storage import get_storage

logger = logging.getLogger(__name__)

# The longest a worker waits in-process for its number's slot; beyond that it gives the slot back.
NUMBER_SLOT_MAX_WAIT_SECONDS = 1.0
# How soon a message waiting for an earlier one of its conversation looks again.
ORDER_POLL_SECONDS = 0.2
OUTCOME_UNKNOWN = "send_outcome_unknown"


def in_flight_window() -> timedelta:
    """How long a `sending` message may be another worker's live call (its HTTP timeout, twice, and some)."""
    return timedelta(seconds=settings.PROVIDER_HTTP_TIMEOUT_SECONDS * 2 + 5)


def retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, of which a random half is kept
    ("equal jitter", so workers retrying together spread out). A provider's Retry-After is a minimum."""
    ceiling = min(settings.SEND_RETRY_MAX_SECONDS, settings.SEND_RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not security
    return max(delay, retry_after or 0.0)


def message_deliver(message_id: int, *, pair_reserved: bool = False) -> Message:
    """The send task's body. Safe to run twice for one message, and at any time."""
    with transaction.atomic():
        message = (Message.objects.select_for_update(of=("self",))
                   .select_related("provider", "conversation__contact", "template", "reply_to")
                   .filter(pk=message_id).first())
        if message is None or message.direction != Message.Direction.OUTBOUND:
            return message
        if message.status == MessageStatus.SENDING:
            return _interrupted(message)
        if message.status != MessageStatus.QUEUED or not _admit(message, pair_reserved=pair_reserved):
            return message
        attempt = _start_attempt(message)
    try:
        request = outbound_request(message)
    except Exception as exc:
        # Nothing reached the provider (e.g. the stored upload could not be read): try again later. Marked
        # throttled so that the provider's circuit breaker does not count a failure of ours.
        logger.exception("could not prepare the send", extra={"message_id": message.pk})
        return _after_error(message, attempt, ProviderError(f"could not prepare the message: {exc}",
                                                            code="prepare_failed", retryable=True, throttled=True))
    # The number's slot is taken last, just before the call, so that the time between the slot and the
    # provider's clock is only the request's own way there (the limiter's headroom covers that).
    slot = _number_slot(message.provider)
    if not slot.admitted:
        return _back_to_queue(message, attempt, slot.wait)
    if slot.wait > 0:
        time.sleep(slot.wait)
    return _call_provider(message, attempt, request)


def _admit(message: Message, *, pair_reserved: bool) -> bool:
    """Every check before the call but the number's rate. False when the message was held, deferred or
    failed instead (already saved)."""
    provider = message.provider
    if provider.is_paused or not provider.is_active:
        message_hold(message, reason=HOLD_PAUSED if provider.is_paused else HOLD_INACTIVE)
        return False
    try:
        _recheck_rules(message)
    except SendRefused as refusal:
        _fail(message, code=refusal.code, title="refused before sending", detail=refusal.reason)
        return False
    earlier = _earlier_pending(message)
    if earlier is not None:
        message_schedule(message, delay=earlier, reason="waiting for an earlier message of this conversation")
        return False
    provider_class = provider_for(provider)
    pair_interval = (settings.SEND_PAIR_INTERVAL_SECONDS if settings.SEND_PAIR_INTERVAL_SECONDS is not None
                     else provider_class.pair_interval_seconds)
    if pair_interval > 0 and not pair_reserved:
        address = send_rules.check_recipient(provider, message.conversation.contact)
        slot = rate_limits.limiter().reserve(rate_limits.recipient_key(provider.pk, address), pair_interval,
                                             max_wait=86400)
        if slot.wait > 0.05:
            # The slot is ours; the message comes back for it without asking again.
            message_schedule(message, delay=slot.wait, reason="per-recipient pacing (pair rate)",
                             pair_reserved=True)
            return False
    if not circuit.circuit_admits(provider):
        message_hold(message, reason=HOLD_CIRCUIT, until=circuit.circuit_retry_at(provider))
        return False
    return True


def _number_slot(provider) -> rate_limits.Reservation:
    provider_class = provider_for(provider)
    rate = min(provider.rate_limit_per_second or provider_class.default_rate_limit_per_second,
               provider_class.max_rate_limit_per_second)
    return rate_limits.limiter().reserve(rate_limits.number_key(provider.pk), rate_limits.number_slot_interval(rate),
                                         max_wait=NUMBER_SLOT_MAX_WAIT_SECONDS)


def _back_to_queue(message: Message, attempt: SendAttempt, wait: float) -> Message:
    """The number is saturated beyond what a worker waits for in-process: give the attempt back."""
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message.pk)
        SendAttempt.objects.filter(pk=attempt.pk).delete()
        message.status = MessageStatus.QUEUED
        message.attempts -= 1
        message.save(update_fields=["attempts"])
        message_schedule(message, delay=wait, reason="number rate limit", pair_reserved=True)
    return message


def _recheck_rules(message: Message) -> None:
    """Time passed since the message was queued (a hold, a backoff): consent, window and template again."""
    send_rules.check_consent(message.conversation.contact)
    send_rules.check_window(message.conversation, message.message_type)
    if message.message_type == MessageType.TEMPLATE:
        send_rules.check_template(message.template, message.provider, message.template_variables)


def _earlier_pending(message: Message) -> float | None:
    """Seconds to wait when an earlier message of the same conversation is not sent yet (order)."""
    earlier = (Message.objects.filter(conversation_id=message.conversation_id, direction=Message.Direction.OUTBOUND,
                                      status__in=PENDING_STATUSES, pk__lt=message.pk)
               .order_by("-pk").values_list("pk", "next_attempt_at").first())
    if earlier is None:
        return None
    due_in = (earlier[1] - timezone.now()).total_seconds() if earlier[1] else 0
    return min(max(due_in, ORDER_POLL_SECONDS), 30.0)


def _start_attempt(message: Message) -> SendAttempt:
    message.status = MessageStatus.SENDING
    message.attempts += 1
    message.hold_reason = ""
    message.save(update_fields=["status", "attempts", "hold_reason", "updated_at"])
    # Numbered over the message's whole life: a retry from the dead-letter view starts a new count of
    # attempts but keeps the log.
    number = (message.send_attempts.aggregate(last=Max("number"))["last"] or 0) + 1
    return SendAttempt.objects.create(message=message, number=number, started_at=timezone.now(),
                                      correlation_id=get_correlation_id())


def _call_provider(message: Message, attempt: SendAttempt, request: OutboundMessage) -> Message:
    provider = message.provider
    log = {"message_id": message.pk, "provider_id": provider.pk, "attempt": attempt.number}
    try:
        result = provider_for(provider).send(request)
    except ProviderError as error:
        logger.warning("send failed", extra={**log, "error_code": error.code, "retryable": error.retryable})
        return _after_error(message, attempt, error)
    except Exception as exc:
        # Not a provider answer we understand: the call may have reached the provider, so the message
        # is not sent again automatically.
        logger.exception("send raised unexpectedly", extra=log)
        return _outcome_unknown(message, attempt, f"{type(exc).__name__}: {exc}")
    logger.info("message sent", extra={**log, "provider_message_id": result.provider_message_id})
    return _after_success(message, attempt, result)


def _after_success(message: Message, attempt: SendAttempt, result: SendResult) -> Message:
    now = timezone.now()
    with transaction.atomic():
        # Status reports that name this id wait for the lock, then find the id recorded.
        lock_key("provider-message", message.provider_id, result.provider_message_id)
        message = Message.objects.select_for_update().select_related("provider").get(pk=message.pk)
        message.provider_message_id = result.provider_message_id
        if message.status in (MessageStatus.SENDING, MessageStatus.DEAD_LETTER):
            message.status = MessageStatus.SENT
            message.sent_at = message.sent_at or now
        message.error_code = message.error_title = message.error_detail = ""
        message.next_attempt_at = None
        message.save(update_fields=["provider_message_id", "status", "sent_at", "error_code", "error_title",
                                    "error_detail", "next_attempt_at", "updated_at"])
        SendAttempt.objects.filter(pk=attempt.pk).update(outcome=SendAttempt.Outcome.SENT, finished_at=now)
        orphan_statuses_apply(message)
        if circuit.circuit_record_success(message.provider):
            messages_release_held(provider=message.provider)
    return message


def _after_error(message: Message, attempt: SendAttempt, error: ProviderError) -> Message:
    now = timezone.now()
    detail = str(error)
    with transaction.atomic():
        message = Message.objects.select_for_update().select_related("provider").get(pk=message.pk)
        if message.status != MessageStatus.SENDING:
            return message  # settled meanwhile (a provider report linked it)
        SendAttempt.objects.filter(pk=attempt.pk).update(finished_at=now)
        message.error_code, message.error_title, message.error_detail = error.code[:32], error.title[:255], detail
        attempt_fields = {"finished_at": now, "error_code": error.code[:32], "error_title": error.title[:255],
                          "error_detail": detail, "http_status": error.http_status}
        if not error.retryable:
            _fail(message, code=error.code, title=error.title, detail=detail)
            SendAttempt.objects.filter(pk=attempt.pk).update(outcome=SendAttempt.Outcome.FAILED, **attempt_fields)
            return message
        circuit_opened = (not error.throttled) and circuit.circuit_record_failure(message.provider, detail)
        if message.attempts >= settings.SEND_MAX_ATTEMPTS:
            _dead_letter(message, f"gave up after {message.attempts} attempts: {detail}")
            SendAttempt.objects.filter(pk=attempt.pk).update(outcome=SendAttempt.Outcome.DEAD_LETTER,
                                                             **attempt_fields)
            return message
        delay = retry_delay(message.attempts, error.retry_after)
        message.status = MessageStatus.QUEUED
        if circuit_opened:
            message.save(update_fields=["status", "error_code", "error_title", "error_detail", "updated_at"])
            message_hold(message, reason=HOLD_CIRCUIT, until=circuit.circuit_retry_at(message.provider))
        else:
            message_schedule(message, delay=delay, reason=f"retry after {error.code or 'error'}")
            message.save(update_fields=["error_code", "error_title", "error_detail"])
        SendAttempt.objects.filter(pk=attempt.pk).update(outcome=SendAttempt.Outcome.RETRY,
                                                         retry_at=message.next_attempt_at, **attempt_fields)
    return message


def _fail(message: Message, *, code: str, title: str, detail: str) -> None:
    message.status = MessageStatus.FAILED
    message.failed_at = timezone.now()
    message.error_code, message.error_title, message.error_detail = code[:32], title[:255], detail
    message.next_attempt_at = None
    message.hold_reason = ""
    message.save(update_fields=["status", "failed_at", "error_code", "error_title", "error_detail",
                                "next_attempt_at", "hold_reason", "updated_at"])


def _dead_letter(message: Message, detail: str) -> None:
    message.status = MessageStatus.DEAD_LETTER
    message.dead_lettered_at = timezone.now()
    message.error_detail = detail
    message.next_attempt_at = None
    message.save(update_fields=["status", "dead_lettered_at", "error_code", "error_title", "error_detail",
                                "next_attempt_at", "updated_at"])


def _outcome_unknown(message: Message, attempt: SendAttempt | None, detail: str) -> Message:
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message.pk)
        if message.status != MessageStatus.SENDING:
            return message
        message.error_code, message.error_title = OUTCOME_UNKNOWN, "send outcome unknown"
        _dead_letter(message, "the send was interrupted after it may have reached the provider, so it was not "
                              f"sent again; check with the provider, then retry or discard ({detail})")
        attempts = SendAttempt.objects.filter(message=message, outcome=SendAttempt.Outcome.SENDING)
        attempts.update(outcome=SendAttempt.Outcome.UNKNOWN, finished_at=timezone.now(), error_code=OUTCOME_UNKNOWN,
                        error_detail=detail)
    return message


def _interrupted(message: Message) -> Message:
    """A task found its message `sending`: another worker's live call, or one whose worker died."""
    last = message.send_attempts.order_by("-number").first()
    if last is not None and last.started_at > timezone.now() - in_flight_window():
        # Possibly still another worker's live call: look again once no call could still be running.
        remaining = (last.started_at + in_flight_window() - timezone.now()).total_seconds()
        message_enqueue(message, countdown=min(remaining + 1, BROKER_COUNTDOWN_MAX_SECONDS))
        return message
    logger.warning("send interrupted; outcome unknown", extra={"message_id": message.pk})
    return _outcome_unknown(message, last, "the worker stopped during the provider call")


# --- from a message row to the provider's request -------------------------------------------------

def _template_request(message: Message) -> OutboundTemplate:
    template = message.template
    bound = send_rules.check_template(template, message.provider, message.template_variables)
    header_media = (OutboundMedia(kind=bound.header_media_kind, url=bound.header_media_url)
                    if bound.header_media_url else None)
    return OutboundTemplate(
        name=template.name, language=template.language, category=template.category,
        provider_template_id=template.provider_template_id,
        named_parameters=template.parameter_format == template.ParameterFormat.NAMED,
        header=tuple(TemplateParameter(name, value) for name, value in bound.header), header_media=header_media,
        body=tuple(TemplateParameter(name, value) for name, value in bound.body),
        buttons=tuple(TemplateButtonParameter(index, sub_type, value) for index, sub_type, value in bound.buttons),
        rendered_text=message.text,
    )


def _media_request(message: Message) -> OutboundMedia:
    content = message.content
    upload = message.media.filter(public_token__isnull=False).first()
    data = get_storage().read(upload.archive_path) if upload else None
    url = outbound_media_url(upload) if upload else content.get("url", "")
    return OutboundMedia(kind=message.message_type, url=url, data=data, filename=content.get("filename", ""),
                         mime_type=content.get("mime_type", ""),
                         caption=content.get("caption", ""))


def outbound_request(message: Message) -> OutboundMessage:
    conversation = message.conversation
    return OutboundMessage(
        to=send_rules.contact_identities(conversation.contact), message_type=message.message_type,
        text=message.text, content=message.content,
        reply_to_provider_message_id=(message.reply_to.provider_message_id or "") if message.reply_to else "",
        client_reference=str(message.pk),
        media=_media_request(message) if message.message_type in MEDIA_TYPES else None,
        template=_template_request(message) if message.message_type == MessageType.TEMPLATE else None,
        conversation_ref=conversation.external_conversation_id,
        status_callback_url=_status_callback_url(message),
    )


def _status_callback_url(message: Message) -> str:
    from whatsapp.services.providers import provider_webhook_url

    return provider_webhook_url(message.provider)

