"""
Alert rules, checked every minute by a beat job. Each rule reads one figure from the platform's own rows (send
failures, webhooks, the queues, templates). When its condition starts holding (and has kept holding for the
rule's `for_minutes`) one incident opens; when it stops holding the incident resolves. The opening and the
resolution are each told once, by email and by a signed webhook POST; a notice that could not go out is
recorded on its row and tried again at the next check, for up to a day. The notices of one check share a
time budget (ALERT_NOTICE_BUDGET_SECONDS), so receivers that do not answer cannot hold the checks up.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count, Exists, Min, OuterRef, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from core.locks import try_session_lock
from monitoring.models import AlertIncident, AlertKind, AlertNotification, AlertRule, webhook_host_problem
from templates_app.models import MessageTemplate
from templates_app.selectors import account_filter
from whatsapp.models import Message, SendAttempt, WebhookEvent
from whatsapp.providers.base import ProviderError
from whatsapp.providers.events import MessageStatus, TemplateStatus
from whatsapp.providers.safe_fetch import ADDRESS_CHECKS, CheckedAddressTransport, DownloadRefused

logger = logging.getLogger(__name__)

LOCK_KEY = ("monitoring", "alerts-evaluate")
# Checks run every minute. After a longer gap (beat or the workers were down) nobody saw whether the condition
# kept holding, so a "for N minutes" streak starts again instead of counting the unwatched time.
STREAK_GAP = timedelta(minutes=5)
# A send of the last few minutes may not have been reported delivered yet: the delivery rate reads the window
# that ends this long ago, so fresh sends do not read as undelivered.
DELIVERY_GRACE = timedelta(minutes=5)
# A notice still failing after this long is given up (its incident stays recorded): a receiver down for a day
# gets no stale notices when it comes back.
NOTIFY_RETRY_FOR = timedelta(hours=24)
# Meta's template quality ratings below green ("unknown" is stored empty).
LOW_QUALITY = ("yellow", "red")
DELIVERED = (MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.PLAYED)
SIGNATURE_HEADER = "X-Signature-256"
TIMESTAMP_HEADER = "X-Signature-Timestamp"
MAX_TEMPLATES_NAMED = 10


@dataclass(frozen=True)
class Reading:
    """What one check of a rule saw: the figure (None when there is too little to judge) and whether the
    condition holds."""

    figure: float | None
    holds: bool
    summary: str


@dataclass
class EvaluationReport:
    skipped: bool = False
    evaluated: int = 0
    opened: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    failed_rules: list[str] = field(default_factory=list)
    notices_sent: int = 0
    notices_failed: int = 0
    # Pending notices this check did not try: the budget ran out, their receiver could not be reached for an
    # earlier notice, or an earlier notice of their incident and channel failed. The next check tries them.
    notices_not_attempted: int = 0

    def summary(self) -> str:
        if self.skipped:
            return "skipped: another evaluation is running"
        text = (f"{self.evaluated} rule(s) checked, {len(self.opened)} incident(s) opened, "
                f"{len(self.resolved)} resolved; {self.notices_sent} notice(s) sent, {self.notices_failed} failed")
        if self.notices_not_attempted:
            text += f", {self.notices_not_attempted} left for the next check"
        if self.failed_rules:
            text += "; could not check: " + ", ".join(self.failed_rules)
        return text


# --- reading the figures -----------------------------------------------------------------------------------

def _scope(rule: AlertRule) -> str:
    return f"provider {rule.provider.name}" if rule.provider_id else "all providers"


def _between(field_name: str, start: datetime, end: datetime) -> Q:
    return Q(**{f"{field_name}__gt": start, f"{field_name}__lte": end})


def _outbound(rule: AlertRule) -> QuerySet[Message]:
    messages = Message.objects.filter(direction=Message.Direction.OUTBOUND)
    return messages.filter(provider_id=rule.provider_id) if rule.provider_id else messages


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2)


def _too_few(sends: int, rule: AlertRule) -> bool:
    # Even with min_sends at 0, an empty window has no rate.
    return sends < max(rule.min_sends, 1)


def _error_rate(rule: AlertRule, now: datetime) -> Reading:
    start = now - timedelta(minutes=rule.window_minutes)
    # A send counts once in the window whether it went out, failed, or both (a status report failing it later).
    failed = (Q(status=MessageStatus.FAILED) & _between("failed_at", start, now)
              | Q(status=MessageStatus.DEAD_LETTER) & _between("dead_lettered_at", start, now))
    counts = _outbound(rule).filter(
        _between("sent_at", start, now) | _between("failed_at", start, now) | _between("dead_lettered_at", start, now)
    ).aggregate(sends=Count("pk"), failed=Count("pk", filter=failed))
    sends, failures = counts["sends"], counts["failed"]
    window = f"the last {rule.window_minutes} min for {_scope(rule)}"
    if _too_few(sends, rule):
        return Reading(None, False, f"{sends} send(s) in {window}: fewer than {rule.min_sends}, no rate to judge.")
    rate = _percent(failures, sends)
    return Reading(rate, rate >= rule.threshold,
                   f"Send error rate {rate:g}% ({failures} of {sends} sends failed) over {window}; "
                   f"threshold {rule.threshold:g}%.")


def _error_code_spike(rule: AlertRule, now: datetime) -> Reading:
    start = now - timedelta(minutes=rule.window_minutes)
    code = rule.error_code.strip()
    # Final failures (refused at send time, or failed later by a status report) are on the message; an error
    # that was retried (a throttling code such as 130429) or that dead-lettered the message is only in the send
    # log. Counting both, and not the log's final failures, counts each failure once.
    final = _outbound(rule).filter(_between("failed_at", start, now), status=MessageStatus.FAILED,
                                   error_code=code).count()
    attempts = SendAttempt.objects.filter(_between("started_at", start, now), error_code=code,
                                          outcome__in=[SendAttempt.Outcome.RETRY, SendAttempt.Outcome.DEAD_LETTER])
    if rule.provider_id:
        attempts = attempts.filter(message__provider_id=rule.provider_id)
    retried = attempts.count()
    total = final + retried
    return Reading(float(total), total >= rule.threshold,
                   f"Error {code}: {total} failure(s) ({final} final, {retried} retried) in the last "
                   f"{rule.window_minutes} min for {_scope(rule)}; threshold {rule.threshold:g}.")


def _webhook_failures(rule: AlertRule, now: datetime) -> Reading:
    start = now - timedelta(minutes=rule.window_minutes)
    Status = WebhookEvent.Status
    events = WebhookEvent.objects.filter(_between("received_at", start, now), status__in=[Status.FAILED,
                                                                                          Status.REJECTED])
    if rule.provider_id:
        events = events.filter(provider_id=rule.provider_id)
    counts = events.aggregate(failed=Count("pk", filter=Q(status=Status.FAILED)),
                              rejected=Count("pk", filter=Q(status=Status.REJECTED)))
    total = counts["failed"] + counts["rejected"]
    return Reading(float(total), total >= rule.threshold,
                   f"{total} webhook request(s) failed or were refused ({counts['failed']} failed processing, "
                   f"{counts['rejected']} rejected) in the last {rule.window_minutes} min for {_scope(rule)}; "
                   f"threshold {rule.threshold:g}.")


def _age_seconds(now: datetime, since: datetime | None) -> int:
    return max(0, int((now - since).total_seconds())) if since else 0


def _queue_backlog(rule: AlertRule, now: datetime) -> Reading:
    # As /health/ reads it: a due message, not one held on purpose (backoff, rate limit, a paused provider).
    messages = Message.objects.filter(status=MessageStatus.QUEUED, next_attempt_at__lte=now,
                                      provider__is_paused=False)
    events = WebhookEvent.objects.filter(status=WebhookEvent.Status.PENDING, received_at__lte=now)
    if rule.provider_id:
        messages = messages.filter(provider_id=rule.provider_id)
        events = events.filter(provider_id=rule.provider_id)
    message_age = _age_seconds(now, messages.aggregate(oldest=Min("next_attempt_at"))["oldest"])
    event_age = _age_seconds(now, events.aggregate(oldest=Min("received_at"))["oldest"])
    age = max(message_age, event_age)
    return Reading(float(age), age >= rule.threshold,
                   f"Oldest due outbound message has waited {message_age} s, oldest pending webhook {event_age} s, "
                   f"for {_scope(rule)}; threshold {rule.threshold:g} s.")


def _delivery_counts(rule: AlertRule, end: datetime) -> tuple[int, int]:
    start = end - timedelta(minutes=rule.window_minutes)
    counts = _outbound(rule).filter(_between("sent_at", start, end)).aggregate(
        sent=Count("pk"), delivered=Count("pk", filter=Q(delivered_at__isnull=False) | Q(status__in=DELIVERED)))
    return counts["sent"], counts["delivered"]


def _window_text(rule: AlertRule) -> str:
    grace = int(DELIVERY_GRACE.total_seconds() // 60)
    return f"messages sent in the {rule.window_minutes} min up to {grace} min ago for {_scope(rule)}"


def _delivery_rate(rule: AlertRule, now: datetime) -> Reading:
    sent, delivered = _delivery_counts(rule, now - DELIVERY_GRACE)
    if _too_few(sent, rule):
        return Reading(None, False, f"{sent} {_window_text(rule)}: fewer than {rule.min_sends}, no rate to judge.")
    rate = _percent(delivered, sent)
    return Reading(rate, rate < rule.threshold,
                   f"Delivery rate {rate:g}% ({delivered} of {sent} delivered) of {_window_text(rule)}; "
                   f"lowest acceptable {rule.threshold:g}%.")


def _delivery_rate_drop(rule: AlertRule, now: datetime) -> Reading:
    sent, delivered = _delivery_counts(rule, now - DELIVERY_GRACE)
    sent_before, delivered_before = _delivery_counts(rule, now - DELIVERY_GRACE - timedelta(days=1))
    if _too_few(min(sent, sent_before), rule):
        return Reading(None, False, f"{sent} {_window_text(rule)}, {sent_before} a day earlier: fewer than "
                                    f"{rule.min_sends} in one of them, no rates to compare.")
    rate, rate_before = _percent(delivered, sent), _percent(delivered_before, sent_before)
    drop = round(rate_before - rate, 2)
    return Reading(drop, drop >= rule.threshold,
                   f"Delivery rate {rate:g}% ({delivered} of {sent}) of {_window_text(rule)}, against "
                   f"{rate_before:g}% ({delivered_before} of {sent_before}) a day earlier: {drop:g} points lower; "
                   f"threshold {rule.threshold:g} points.")


def _template_health(rule: AlertRule, now: datetime) -> Reading:
    newer_approved = MessageTemplate.objects.filter(
        provider_id=OuterRef("provider_id"), name=OuterRef("name"), language=OuterRef("language"),
        version__gt=OuterRef("version"), status=TemplateStatus.APPROVED)
    templates = (MessageTemplate.objects
                 .filter(Q(status__in=[TemplateStatus.PAUSED, TemplateStatus.DISABLED])
                         | Q(status=TemplateStatus.APPROVED, quality__in=LOW_QUALITY))
                 # A version that an approved successor replaced is no longer sent: it needs nobody's attention.
                 .exclude(Exists(newer_approved))
                 .order_by("name", "language", "version"))
    if rule.provider_id:
        templates = templates.filter(account_filter(rule.provider))
    rows = list(templates.values_list("name", "language", "version", "status", "quality")[:MAX_TEMPLATES_NAMED + 1])
    count = templates.count() if len(rows) > MAX_TEMPLATES_NAMED else len(rows)
    named = "; ".join(
        f"{name} [{language}] v{version} " + (status if status != TemplateStatus.APPROVED else f"quality {quality}")
        for name, language, version, status, quality in rows[:MAX_TEMPLATES_NAMED])
    more = f"; and {count - MAX_TEMPLATES_NAMED} more" if count > MAX_TEMPLATES_NAMED else ""
    return Reading(float(count), count >= rule.threshold,
                   f"{count} template(s) of {_scope(rule)} paused, disabled or of low quality"
                   + (f": {named}{more}" if count else "") + f"; threshold {rule.threshold:g}.")


MEASURES = {
    AlertKind.ERROR_RATE: _error_rate,
    AlertKind.ERROR_CODE_SPIKE: _error_code_spike,
    AlertKind.WEBHOOK_FAILURES: _webhook_failures,
    AlertKind.QUEUE_BACKLOG: _queue_backlog,
    AlertKind.DELIVERY_RATE: _delivery_rate,
    AlertKind.DELIVERY_RATE_DROP: _delivery_rate_drop,
    AlertKind.TEMPLATE_HEALTH: _template_health,
}


def alert_rule_read(rule: AlertRule, *, now: datetime | None = None) -> Reading:
    """The rule's figure and whether its condition holds at `now`, without opening or resolving anything."""
    return MEASURES[AlertKind(rule.kind)](rule, now or timezone.now())


# --- opening and resolving ---------------------------------------------------------------------------------

def _channels(rule: AlertRule) -> list[str]:
    channels = []
    if rule.recipients:
        channels.append(AlertNotification.Channel.EMAIL)
    if rule.webhook_url:
        channels.append(AlertNotification.Channel.WEBHOOK)
    return channels


def _queue_notices(incident: AlertIncident, rule: AlertRule, event: str, now: datetime) -> None:
    AlertNotification.objects.bulk_create([
        AlertNotification(incident=incident, event=event, channel=channel, created_at=now)
        for channel in _channels(rule)
    ])


def _resolve(incident: AlertIncident, rule: AlertRule, resolution: str, now: datetime,
             report: EvaluationReport) -> None:
    incident.resolved_at = now
    incident.resolution = resolution
    incident.save(update_fields=["resolved_at", "resolution"])
    _queue_notices(incident, rule, AlertNotification.Event.RESOLVED, now)
    report.resolved.append(incident.pk)
    logger.info("alert resolved", extra={"rule": rule.pk, "incident": incident.pk})


def _evaluate_rule(rule: AlertRule, now: datetime, report: EvaluationReport) -> None:
    # Read before the row lock: the figures may take a moment, and the lock is only for the state change.
    reading = alert_rule_read(rule, now=now)
    with transaction.atomic():
        locked = AlertRule.objects.select_for_update().defer("credentials").get(pk=rule.pk)
        if not locked.enabled:
            return  # disabled meanwhile: the pass over disabled rules resolves what it had open
        incident = AlertIncident.objects.filter(rule=locked, resolved_at__isnull=True).first()
        if reading.holds and incident is None:
            unwatched = locked.last_evaluated_at is None or now - locked.last_evaluated_at > STREAK_GAP
            if locked.holding_since is None or unwatched:
                locked.holding_since = now
            if now - locked.holding_since >= timedelta(minutes=locked.for_minutes):
                incident = AlertIncident.objects.create(rule=locked, opened_at=now, figure=reading.figure,
                                                        summary=reading.summary)
                _queue_notices(incident, locked, AlertNotification.Event.OPENED, now)
                locked.holding_since = None
                report.opened.append(incident.pk)
                logger.warning("alert opened", extra={"rule": locked.pk, "incident": incident.pk,
                                                      "summary": reading.summary})
        elif not reading.holds:
            locked.holding_since = None
            if incident is not None:
                _resolve(incident, locked, reading.summary, now, report)
        locked.last_evaluated_at = now
        locked.last_figure = reading.figure
        locked.save(update_fields=["holding_since", "last_evaluated_at", "last_figure"])
    report.evaluated += 1


def _resolve_disabled(now: datetime, report: EvaluationReport, rule_ids: list[int] | None) -> None:
    """A disabled rule is not checked any more: its open incident would stay open (and /health/ degraded)."""
    incidents = AlertIncident.objects.filter(resolved_at__isnull=True, rule__enabled=False)
    if rule_ids is not None:
        incidents = incidents.filter(rule_id__in=rule_ids)
    for incident in incidents.select_related("rule").defer("rule__credentials"):
        with transaction.atomic():
            _resolve(incident, incident.rule, "The rule was disabled.", now, report)


# --- notices -----------------------------------------------------------------------------------------------

def webhook_signature(secret: str, body: bytes) -> str:
    """The value of the signature header: HMAC-SHA256 of the exact body bytes, keyed with the rule's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _incident_url(incident: AlertIncident) -> str:
    return settings.PUBLIC_BASE_URL + reverse("admin:monitoring_alertincident_change", args=[incident.pk])


def _when(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def _payload(notice: AlertNotification, rule: AlertRule, timestamp: int) -> dict:
    incident = notice.incident
    return {
        # The same id on every retry of one notice, so a receiver can drop a repeat.
        "id": f"incident-{incident.pk}-{notice.event}",
        "event": notice.event,
        "timestamp": timestamp,
        "rule": {"id": rule.pk, "name": rule.name, "kind": rule.kind, "provider_id": rule.provider_id,
                 "threshold": rule.threshold},
        "incident": {"id": incident.pk, "opened_at": _when(incident.opened_at),
                     "resolved_at": _when(incident.resolved_at), "figure": incident.figure,
                     "summary": incident.summary, "resolution": incident.resolution,
                     "url": _incident_url(incident)},
    }


class NoticeRefused(Exception):
    """The receiver answered, but not with a 2xx."""


class NoLongerConfigured(Exception):
    """The rule no longer has this channel: nothing to retry."""


class DestinationRefused(Exception):
    """The webhook's host is, or resolves to, an address notices are never posted to: link-local (where the
    cloud metadata service answers), unspecified, multicast or reserved, or a metadata service's name."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.category = "refused: " + problem.removeprefix("an ").removeprefix("a ")


class HostUnresolved(Exception):
    """The webhook's host name did not resolve."""


def _refused_problem(refusal: DownloadRefused) -> str:
    # The address check's refusal ends with its problem ("... it resolves to 169.254.169.254, a link-local
    # address"); only those always refused can occur, as the rule's own host may be private.
    text = str(refusal)
    return next((problem for _, problem, _ in ADDRESS_CHECKS if text.endswith(problem)), "an address not allowed")


def _post_webhook(notice: AlertNotification, rule: AlertRule) -> None:
    # Loaded only here: a secret that no key in FIELD_ENCRYPTION_KEYS opens fails this notice, not the check.
    secret = AlertRule.objects.filter(pk=rule.pk).values_list("credentials", flat=True).get().get("webhook_secret")
    if not rule.webhook_url or not secret:
        raise NoLongerConfigured("the rule has no webhook URL and secret any more")
    url = httpx.URL(rule.webhook_url)
    # A rule saved before its URL was checked, or written around the form.
    if problem := webhook_host_problem(url.host):
        raise DestinationRefused(problem)
    timestamp = int(time.time())
    # The timestamp is in the signed body too, so a receiver can refuse a replayed notice.
    body = json.dumps(_payload(notice, rule, timestamp), separators=(",", ":"), sort_keys=True).encode()
    # The transport resolves the host once, checks every address it answers, and connects to a checked one,
    # so a name that resolves to a link-local address is refused, even one that answers differently between
    # a check and the connection. The rule's host counts as one the operator configured: it may be private or
    # loopback (an internal relay). No proxy from the environment: it would resolve the name itself, unchecked.
    try:
        with httpx.Client(transport=CheckedAddressTransport(trusted_hosts=(url.host,)), trust_env=False,
                          follow_redirects=False, timeout=settings.ALERT_WEBHOOK_TIMEOUT_SECONDS) as client:
            response = client.post(url, content=body, headers={
                "Content-Type": "application/json", "User-Agent": "whatsapp-platform-alerts",
                SIGNATURE_HEADER: webhook_signature(secret, body), TIMESTAMP_HEADER: str(timestamp)})
    except DownloadRefused as exc:
        raise DestinationRefused(_refused_problem(exc)) from exc
    except ProviderError as exc:  # raised by the address check only when the name does not resolve
        raise HostUnresolved(str(exc)) from exc
    if not response.is_success:
        raise NoticeRefused(f"HTTP {response.status_code}")


def _send_email(notice: AlertNotification, rule: AlertRule) -> None:
    recipients = rule.recipients
    if not recipients:
        raise NoLongerConfigured("the rule has no email recipients any more")
    incident = notice.incident
    resolved = notice.event == AlertNotification.Event.RESOLVED
    lines = [incident.summary, "",
             f"Rule: {rule.name} ({rule.get_kind_display()}), {_scope(rule)}",
             f"Opened: {_when(incident.opened_at)}"]
    if resolved:
        lines += [f"Resolved: {_when(incident.resolved_at)}", incident.resolution]
    lines += ["", f"Incident: {_incident_url(incident)}"]
    subject = f"[{'resolved' if resolved else 'alert'}] {rule.name}"
    send_mail(subject, "\n".join(lines), None, recipients, fail_silently=False)


SENDERS = {AlertNotification.Channel.EMAIL: _send_email, AlertNotification.Channel.WEBHOOK: _post_webhook}


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def failure_category(exc: Exception) -> str:
    """Why a notice failed, in a few fixed words for the incident's page. The exception's own text, which may
    name internal hosts and ports or quote a mail server, goes to the log only."""
    if isinstance(exc, NoticeRefused | NoLongerConfigured):
        return str(exc)
    if isinstance(exc, DestinationRefused):
        return exc.category
    if isinstance(exc, HostUnresolved):
        return "could not resolve host"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return "mail server refused the login"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "mail server refused the recipients"
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return "mail server refused the sender"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return "mail server disconnected"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"mail server answered {exc.smtp_code}"
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return "not a usable http(s) URL"
    causes = list(_causes(exc))
    for kinds, category in ((httpx.TimeoutException | TimeoutError, "timed out"),
                            (ConnectionRefusedError, "connection refused"),
                            (socket.gaierror, "could not resolve host"),
                            (ssl.SSLCertVerificationError, "TLS certificate not trusted"),
                            (ssl.SSLError, "TLS error"),
                            (httpx.TransportError | OSError, "connection failed")):
        if any(isinstance(cause, kinds) for cause in causes):
            return category
    return f"unexpected error ({type(exc).__name__})"


def _unreachable(exc: Exception) -> bool:
    """Whether the receiver (or the mail server) was not reached at all, rather than answering no: its next
    notice would most likely wait just as long."""
    if isinstance(exc, smtplib.SMTPConnectError | smtplib.SMTPServerDisconnected):
        return True
    if isinstance(exc, smtplib.SMTPException | httpx.UnsupportedProtocol):
        return False  # the server answered, or nothing was tried
    return isinstance(exc, httpx.TransportError | HostUnresolved | OSError)


SENT, FAILED, UNREACHABLE = "sent", "failed", "unreachable"


def _deliver(notice: AlertNotification, now: datetime) -> str:
    """One attempt at a notice, recorded on its row: SENT, FAILED (it waits for the next check, or was given
    up), or UNREACHABLE (failed without reaching the receiver)."""
    rule = notice.incident.rule
    notice.attempts += 1
    notice.last_attempt_at = now
    outcome = SENT
    try:
        SENDERS[notice.channel](notice, rule)
    except NoLongerConfigured as exc:
        notice.status, notice.last_error = AlertNotification.Status.GAVE_UP, str(exc)
        outcome = FAILED
    except Exception as exc:  # noqa: BLE001 - any failure of a mail server or a receiver is recorded and retried
        notice.last_error = failure_category(exc)
        outcome = UNREACHABLE if _unreachable(exc) else FAILED
        logger.warning("alert notice failed", extra={"notice": notice.pk, "channel": notice.channel,
                                                     "error": notice.last_error,
                                                     "detail": f"{type(exc).__name__}: {exc}"[:1000]})
    else:
        notice.status, notice.sent_at, notice.last_error = AlertNotification.Status.SENT, now, ""
    notice.save(update_fields=["status", "attempts", "last_attempt_at", "sent_at", "last_error"])
    return outcome


def _receiver(notice: AlertNotification) -> str:
    """Where a notice goes, as far as reaching it goes: the webhook URL's host and port, or the mail server
    (one for every rule)."""
    if notice.channel == AlertNotification.Channel.WEBHOOK:
        return "webhook " + urlsplit(notice.incident.rule.webhook_url).netloc.lower()
    return "email"


def _deliver_pending(now: datetime, report: EvaluationReport, rule_ids: list[int] | None) -> None:
    pending = (AlertNotification.objects.filter(status=AlertNotification.Status.PENDING)
               .select_related("incident__rule__provider")
               .defer("incident__rule__credentials", "incident__rule__provider__credentials")
               .order_by("created_at", "pk"))
    if rule_ids is not None:
        pending = pending.filter(incident__rule_id__in=rule_ids)
    # Per incident and channel the notices go in order: the resolution only after the opening, so while the
    # opening keeps failing the resolution waits behind it.
    queues: dict[tuple[int, str], list[AlertNotification]] = {}
    for notice in pending:
        if now - notice.created_at > NOTIFY_RETRY_FOR:
            notice.status = AlertNotification.Status.GAVE_UP
            notice.save(update_fields=["status"])
            continue
        queues.setdefault((notice.incident_id, notice.channel), []).append(notice)
    # Notices never tried go first, then those tried longest ago: what the budget leaves over is what was
    # tried most recently, so receivers that keep failing cannot keep the others from ever being tried.
    ordered = sorted(queues.values(), key=lambda queue: (queue[0].last_attempt_at is not None,
                                                          queue[0].last_attempt_at or queue[0].created_at,
                                                          queue[0].created_at, queue[0].pk))
    # This runs under the evaluation lock, before the next check may start: a receiver that does not answer
    # costs up to its timeout per attempt. The budget bounds the wait (past it by one attempt at most), and a
    # receiver not reached once is not tried again in this check.
    deadline = time.monotonic() + settings.ALERT_NOTICE_BUDGET_SECONDS
    unreachable: set[str] = set()
    for queue in ordered:
        for position, notice in enumerate(queue):
            receiver = _receiver(notice)
            if receiver in unreachable or time.monotonic() >= deadline:
                report.notices_not_attempted += len(queue) - position
                break
            outcome = _deliver(notice, now)
            if outcome == SENT:
                report.notices_sent += 1
                continue
            report.notices_failed += 1
            report.notices_not_attempted += len(queue) - position - 1
            if outcome == UNREACHABLE:
                unreachable.add(receiver)
            break


# --- the job -----------------------------------------------------------------------------------------------

def alerts_evaluate(*, now: datetime | None = None, rule_ids: list[int] | None = None) -> EvaluationReport:
    """
    Check every enabled rule (or only `rule_ids`), open and resolve incidents, and send the notices due
    (including earlier ones that failed; with `rule_ids`, only those rules' notices) within
    ALERT_NOTICE_BUDGET_SECONDS. One evaluation at a time (a session-level advisory lock, so no
    database transaction stays open while mail servers and webhooks are called): a second one returns at once,
    marked skipped. Never raises for one rule or one notice: each is logged and the others go on.
    """
    now = now or timezone.now()
    report = EvaluationReport()
    with try_session_lock(*LOCK_KEY) as locked:
        if not locked:
            report.skipped = True
            return report
        rules = (AlertRule.objects.filter(enabled=True).select_related("provider")
                 .defer("credentials", "provider__credentials").order_by("pk"))
        if rule_ids is not None:
            rules = rules.filter(pk__in=rule_ids)
        for rule in rules:
            try:
                _evaluate_rule(rule, now, report)
            except Exception:  # one rule that cannot be read must not stop the others (logged with its traceback)
                logger.exception("alert rule could not be checked", extra={"rule": rule.pk})
                report.failed_rules.append(rule.name)
        _resolve_disabled(now, report, rule_ids)
        _deliver_pending(now, report, rule_ids)
    if (report.opened or report.resolved or report.failed_rules or report.notices_failed
            or report.notices_not_attempted):
        logger.info("alerts evaluated", extra={"summary": report.summary()})
    return report


def open_incidents_overview() -> dict:
    """For /health/: how many incidents are open, and their rules' names (which the rule's help text says are
    public)."""
    names = list(AlertIncident.objects.filter(resolved_at__isnull=True).order_by("opened_at")
                 .values_list("rule__name", flat=True))
    return {"status": "degraded" if names else "ok", "open": len(names), "names": names}
