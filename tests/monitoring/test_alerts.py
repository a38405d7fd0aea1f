"""Alert rules: each kind opens one incident when its condition holds, tells it once by email and by a signed
webhook, resolves it once the condition stops holding, and keeps /health/ degraded meanwhile. Time is moved by
passing `now` to the evaluation."""

import hashlib
import hmac
import json
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from core.locks import try_session_lock
from core.models import AuditLog
from monitoring.alerts import LOCK_KEY, alerts_evaluate
from monitoring.models import AlertIncident, AlertKind, AlertNotification, AlertRule
from monitoring.services import worker_heartbeat_record
from monitoring.tasks import alerts_evaluate_task
from templates_app.models import MessageTemplate
from tests.conftest import customer, free_port, json_body
from tests.fakes import Reply
from whatsapp.models import Message, Provider, SendAttempt, WebhookEvent
from whatsapp.providers.events import MessageStatus, TemplateStatus
from whatsapp.services.providers import provider_create

pytestmark = pytest.mark.django_db

SECRET = "alert-signing-secret-0123456789"
RECEIVER_PATH = "/alerts"
MINUTE = timedelta(minutes=1)


@pytest.fixture
def receiver(fake):
    """The local server playing the alert webhook's receiver: it accepts every POST."""
    fake.routes[RECEIVER_PATH] = [Reply(204)]
    return fake


@pytest.fixture
def conversation(sandbox_provider):
    return customer(sandbox_provider).conversations.get()


def make_rule(receiver, kind: str, threshold: float, *, name: str = "", **fields) -> AlertRule:
    rule = AlertRule(name=name or f"{kind} rule", kind=kind, threshold=threshold, email_recipients="ops@example.com, "
                     "oncall@example.com", webhook_url=receiver.url + RECEIVER_PATH, **fields)
    rule.webhook_secret = SECRET
    rule.full_clean()
    rule.save()
    return rule


def outbound(conversation, status: str, **times) -> Message:
    return Message.objects.create(provider=conversation.provider, conversation=conversation,
                                  direction=Message.Direction.OUTBOUND, status=status, text="hello", **times)


def sends(conversation, count: int, status: str = MessageStatus.DELIVERED, **times) -> list[Message]:
    return [outbound(conversation, status, **times) for _ in range(count)]


def webhook_event(provider: Provider, status: str, received_at) -> WebhookEvent:
    event = WebhookEvent.objects.create(provider=provider, kind=provider.kind, status=status, body=b"{}")
    WebhookEvent.objects.filter(pk=event.pk).update(received_at=received_at)  # auto_now_add ignores a given time
    return event


def posted(receiver) -> list[dict]:
    """The alert webhooks received, each checked for a valid signature over its exact body."""
    bodies = []
    for request in receiver.hits(RECEIVER_PATH):
        expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request.headers["x-signature-256"], expected)
        body = json.loads(request.body)
        assert request.headers["x-signature-timestamp"] == str(body["timestamp"])
        assert request.headers["content-type"] == "application/json"
        bodies.append(body)
    return bodies


def health(client) -> dict:
    response = client.get("/health/")
    assert response.status_code == 200
    return json_body(response)


# --- each kind, from the rows that make it hold to the rows that make it stop ----------------------------------

@dataclass
class Scenario:
    kind: str
    threshold: float
    fields: dict
    figure: float  # what the incident records
    # When the resolving check runs: soon after the rows changed, or once the window has moved past them.
    resolve_after: timedelta = 2 * MINUTE

    def hold(self, conversation, now) -> None:
        raise NotImplementedError

    def stop(self, conversation, now) -> None:
        raise NotImplementedError


class ErrorRate(Scenario):
    def hold(self, conversation, now):
        sends(conversation, 9, sent_at=now - 5 * MINUTE)
        # Sent, then failed by a status report: one send, counted once.
        outbound(conversation, MessageStatus.FAILED, sent_at=now - 4 * MINUTE, failed_at=now - 3 * MINUTE,
                 error_code="131026")
        outbound(conversation, MessageStatus.FAILED, failed_at=now - 2 * MINUTE, error_code="131000")
        outbound(conversation, MessageStatus.DEAD_LETTER, dead_lettered_at=now - 2 * MINUTE)
        # Outside the window, inbound, or not sent yet: none of these count.
        outbound(conversation, MessageStatus.FAILED, failed_at=now - 20 * MINUTE)
        outbound(conversation, MessageStatus.QUEUED)
        Message.objects.create(provider=conversation.provider, conversation=conversation,
                               direction=Message.Direction.INBOUND, status=MessageStatus.RECEIVED, text="hi")

    def stop(self, conversation, now):
        sends(conversation, 30, sent_at=now + MINUTE)  # 3 failures out of 42 sends: 7.1%


class ErrorCodeSpike(Scenario):
    def hold(self, conversation, now):
        # Failed later by a status report.
        outbound(conversation, MessageStatus.FAILED, sent_at=now - 4 * MINUTE, failed_at=now - 3 * MINUTE,
                 error_code="131049")
        # Refused at send time: on the message and in the send log, counted once.
        refused = outbound(conversation, MessageStatus.FAILED, failed_at=now - 2 * MINUTE, error_code="131049")
        SendAttempt.objects.create(message=refused, number=1, started_at=now - 2 * MINUTE,
                                   outcome=SendAttempt.Outcome.FAILED, error_code="131049")
        # Retried: only in the send log.
        retried = outbound(conversation, MessageStatus.QUEUED, next_attempt_at=now + MINUTE)
        SendAttempt.objects.create(message=retried, number=1, started_at=now - MINUTE,
                                   outcome=SendAttempt.Outcome.RETRY, error_code="131049")
        # Another code, and the same code before the window.
        outbound(conversation, MessageStatus.FAILED, failed_at=now - MINUTE, error_code="131026")
        outbound(conversation, MessageStatus.FAILED, failed_at=now - 16 * MINUTE, error_code="131049")

    def stop(self, conversation, now):
        pass  # the window moves past them


class WebhookFailures(Scenario):
    def hold(self, conversation, now):
        provider = conversation.provider
        webhook_event(provider, WebhookEvent.Status.FAILED, now - 3 * MINUTE)
        webhook_event(provider, WebhookEvent.Status.FAILED, now - 2 * MINUTE)
        webhook_event(provider, WebhookEvent.Status.REJECTED, now - MINUTE)
        webhook_event(provider, WebhookEvent.Status.PROCESSED, now - MINUTE)
        webhook_event(provider, WebhookEvent.Status.REJECTED, now - 30 * MINUTE)

    def stop(self, conversation, now):
        pass  # the window moves past them


class QueueBacklog(Scenario):
    def hold(self, conversation, now):
        outbound(conversation, MessageStatus.QUEUED, next_attempt_at=now - 15 * MINUTE)
        outbound(conversation, MessageStatus.QUEUED, next_attempt_at=now + MINUTE)  # not due yet
        webhook_event(conversation.provider, WebhookEvent.Status.PENDING, now - 2 * MINUTE)

    def stop(self, conversation, now):
        Message.objects.filter(status=MessageStatus.QUEUED).update(status=MessageStatus.SENT, sent_at=now)
        WebhookEvent.objects.update(status=WebhookEvent.Status.PROCESSED)


class DeliveryRate(Scenario):
    def hold(self, conversation, now):
        sends(conversation, 4, status=MessageStatus.SENT, sent_at=now - 10 * MINUTE)
        sends(conversation, 4, status=MessageStatus.READ, sent_at=now - 10 * MINUTE, delivered_at=now - 9 * MINUTE)
        sends(conversation, 2, status=MessageStatus.DELIVERED, sent_at=now - 12 * MINUTE,
              delivered_at=now - 9 * MINUTE)
        # Too fresh to judge: not counted, delivered or not.
        sends(conversation, 10, status=MessageStatus.SENT, sent_at=now - MINUTE)

    def stop(self, conversation, now):
        Message.objects.filter(status=MessageStatus.SENT).update(status=MessageStatus.DELIVERED, delivered_at=now)


class DeliveryRateDrop(Scenario):
    def hold(self, conversation, now):
        day = timedelta(days=1)
        sends(conversation, 10, status=MessageStatus.DELIVERED, sent_at=now - day - 10 * MINUTE,
              delivered_at=now - day - 9 * MINUTE)
        sends(conversation, 5, status=MessageStatus.DELIVERED, sent_at=now - 10 * MINUTE,
              delivered_at=now - 9 * MINUTE)
        sends(conversation, 5, status=MessageStatus.SENT, sent_at=now - 10 * MINUTE)

    def stop(self, conversation, now):
        Message.objects.filter(status=MessageStatus.SENT).update(status=MessageStatus.DELIVERED, delivered_at=now)


def template(provider, name: str, status: str, quality: str = "", version: int = 1) -> MessageTemplate:
    return MessageTemplate.objects.create(provider=provider, name=name, language="en_US", version=version,
                                          status=status, quality=quality)


class TemplateHealth(Scenario):
    def hold(self, conversation, now):
        provider = conversation.provider
        template(provider, "order_update", TemplateStatus.PAUSED, quality="red")
        template(provider, "welcome", TemplateStatus.APPROVED, quality="yellow")
        template(provider, "receipt", TemplateStatus.APPROVED, quality="green")
        # Replaced by an approved version: no longer sent, no longer anyone's concern.
        template(provider, "promo", TemplateStatus.DISABLED, version=1)
        template(provider, "promo", TemplateStatus.APPROVED, quality="green", version=2)

    def stop(self, conversation, now):
        MessageTemplate.objects.filter(name="order_update").update(status=TemplateStatus.APPROVED, quality="green")
        MessageTemplate.objects.filter(name="welcome").update(quality="green")


SCENARIOS = [
    ErrorRate(AlertKind.ERROR_RATE, 10, {"min_sends": 10}, figure=25.0),  # 3 of 12
    ErrorCodeSpike(AlertKind.ERROR_CODE_SPIKE, 3, {"error_code": "131049"}, figure=3, resolve_after=20 * MINUTE),
    WebhookFailures(AlertKind.WEBHOOK_FAILURES, 3, {}, figure=3, resolve_after=20 * MINUTE),
    QueueBacklog(AlertKind.QUEUE_BACKLOG, 600, {}, figure=900),
    DeliveryRate(AlertKind.DELIVERY_RATE, 80, {"min_sends": 10}, figure=60.0),
    DeliveryRateDrop(AlertKind.DELIVERY_RATE_DROP, 20, {"min_sends": 10}, figure=50.0),
    TemplateHealth(AlertKind.TEMPLATE_HEALTH, 1, {}, figure=2),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario.kind for scenario in SCENARIOS])
def test_each_kind_opens_one_incident_and_resolves_it(scenario, conversation, receiver, mailoutbox, client):
    worker_heartbeat_record("celery@test")
    rule = make_rule(receiver, scenario.kind, scenario.threshold, **scenario.fields)
    now = timezone.now()
    scenario.hold(conversation, now)

    report = alerts_evaluate(now=now)
    incident = AlertIncident.objects.get(rule=rule)
    assert report.opened == [incident.pk] and report.notices_sent == 2
    assert (incident.opened_at, incident.resolved_at, incident.figure) == (now, None, scenario.figure)
    assert [mail.subject for mail in mailoutbox] == [f"[alert] {rule.name}"]
    assert mailoutbox[0].to == ["ops@example.com", "oncall@example.com"]
    assert incident.summary in mailoutbox[0].body
    [opened] = posted(receiver)
    assert (opened["event"], opened["id"], opened["rule"]["name"]) == ("opened", f"incident-{incident.pk}-opened",
                                                                       rule.name)
    assert (opened["incident"]["figure"], opened["incident"]["summary"]) == (scenario.figure, incident.summary)

    # Still holding a minute later: the same incident, nothing told again.
    report = alerts_evaluate(now=now + MINUTE)
    assert report.opened == [] and report.notices_sent == 0
    assert AlertIncident.objects.filter(rule=rule).count() == 1
    assert len(mailoutbox) == 1 and len(receiver.hits(RECEIVER_PATH)) == 1

    body = health(client)
    assert "alerts" in body["degraded"] and body["status"] == "degraded"
    assert body["alerts"] == {"status": "degraded", "open": 1, "names": [rule.name]}

    scenario.stop(conversation, now)
    later = now + scenario.resolve_after
    report = alerts_evaluate(now=later)
    incident.refresh_from_db()
    assert report.resolved == [incident.pk] and incident.resolved_at == later and incident.resolution
    assert [mail.subject for mail in mailoutbox] == [f"[alert] {rule.name}", f"[resolved] {rule.name}"]
    assert incident.resolution in mailoutbox[1].body
    resolved = posted(receiver)[1]
    assert (resolved["event"], resolved["incident"]["resolved_at"]) == ("resolved", later.isoformat())
    assert AlertNotification.objects.filter(incident=incident, status=AlertNotification.Status.SENT).count() == 4

    alerts_evaluate(now=later + MINUTE)
    assert AlertIncident.objects.filter(rule=rule).count() == 1
    assert len(mailoutbox) == 2 and len(receiver.hits(RECEIVER_PATH)) == 2
    body = health(client)
    assert "alerts" not in body.get("degraded", []) and body["alerts"] == {"status": "ok", "open": 0, "names": []}


def test_below_the_threshold_nothing_opens(conversation, receiver, mailoutbox):
    rule = make_rule(receiver, AlertKind.ERROR_RATE, 50, min_sends=10)
    now = timezone.now()
    ErrorRate(AlertKind.ERROR_RATE, 50, {}, 0).hold(conversation, now)
    assert alerts_evaluate(now=now).evaluated == 1
    rule.refresh_from_db()
    assert (rule.last_figure, rule.last_evaluated_at) == (25.0, now)
    assert not AlertIncident.objects.exists() and mailoutbox == [] and receiver.requests == []


def test_a_rate_needs_enough_sends(conversation, receiver):
    make_rule(receiver, AlertKind.ERROR_RATE, 10, min_sends=20)
    now = timezone.now()
    outbound(conversation, MessageStatus.FAILED, failed_at=now - MINUTE)  # 1 of 1: 100%, but of one send
    alerts_evaluate(now=now)
    assert not AlertIncident.objects.exists()
    assert AlertRule.objects.get().last_figure is None


def test_a_provider_rule_reads_only_that_provider(conversation, receiver):
    other = customer(provider_create(kind="sandbox", name="Other sandbox", options={}), "+16505550000")
    make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600, provider=conversation.provider)
    now = timezone.now()
    outbound(other.conversations.get(), MessageStatus.QUEUED, next_attempt_at=now - 30 * MINUTE)
    alerts_evaluate(now=now)
    assert not AlertIncident.objects.exists()

    outbound(conversation, MessageStatus.QUEUED, next_attempt_at=now - 11 * MINUTE)
    alerts_evaluate(now=now + MINUTE)
    assert AlertIncident.objects.get().figure == 720


# --- "for N minutes" ---------------------------------------------------------------------------------------

def test_an_incident_opens_only_once_the_condition_held_for_the_whole_duration(conversation, receiver, mailoutbox):
    rule = make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600, for_minutes=15)
    start = timezone.now()
    outbound(conversation, MessageStatus.QUEUED, next_attempt_at=start - 11 * MINUTE)
    for minutes in range(0, 15, 5):
        alerts_evaluate(now=start + minutes * MINUTE)
        assert not AlertIncident.objects.exists()
    rule.refresh_from_db()
    assert rule.holding_since == start

    alerts_evaluate(now=start + 15 * MINUTE)
    incident = AlertIncident.objects.get()
    assert incident.opened_at == start + 15 * MINUTE and len(mailoutbox) == 1
    rule.refresh_from_db()
    assert rule.holding_since is None


def test_a_break_in_the_condition_starts_the_duration_again(conversation, receiver):
    rule = make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600, for_minutes=10)
    start = timezone.now()
    message = outbound(conversation, MessageStatus.QUEUED, next_attempt_at=start - 11 * MINUTE)
    alerts_evaluate(now=start)
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENT)
    alerts_evaluate(now=start + 5 * MINUTE)
    rule.refresh_from_db()
    assert rule.holding_since is None

    Message.objects.filter(pk=message.pk).update(status=MessageStatus.QUEUED)
    alerts_evaluate(now=start + 6 * MINUTE)
    alerts_evaluate(now=start + 11 * MINUTE)
    assert not AlertIncident.objects.exists()  # held 5 minutes since it came back, not 10
    alerts_evaluate(now=start + 16 * MINUTE)
    assert AlertIncident.objects.get().opened_at == start + 16 * MINUTE


def test_time_nobody_watched_does_not_count_towards_the_duration(conversation, receiver):
    make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600, for_minutes=10)
    start = timezone.now()
    outbound(conversation, MessageStatus.QUEUED, next_attempt_at=start - 11 * MINUTE)
    alerts_evaluate(now=start)
    alerts_evaluate(now=start + 30 * MINUTE)  # no check for half an hour (beat was down)
    alerts_evaluate(now=start + 35 * MINUTE)
    assert not AlertIncident.objects.exists()
    alerts_evaluate(now=start + 40 * MINUTE)
    assert AlertIncident.objects.get().opened_at == start + 40 * MINUTE


# --- notices -----------------------------------------------------------------------------------------------

def test_a_failed_webhook_is_recorded_and_sent_at_the_next_check(conversation, receiver, mailoutbox):
    receiver.routes[RECEIVER_PATH] = [Reply(503), Reply(503), Reply(200)]
    make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600)
    now = timezone.now()
    message = outbound(conversation, MessageStatus.QUEUED, next_attempt_at=now - 11 * MINUTE)

    report = alerts_evaluate(now=now)
    incident = AlertIncident.objects.get()
    assert (report.notices_sent, report.notices_failed) == (1, 1)
    webhook = incident.notifications.get(channel=AlertNotification.Channel.WEBHOOK)
    assert (webhook.status, webhook.attempts, webhook.last_error) == ("pending", 1, "HTTP 503")

    # Resolved while the opening still fails: the resolution waits behind the opening, on that channel only.
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENT)
    report = alerts_evaluate(now=now + MINUTE)
    assert (report.notices_sent, report.notices_failed, report.notices_not_attempted) == (1, 1, 1)
    assert report.summary().endswith("1 notice(s) sent, 1 failed, 1 left for the next check")
    assert [mail.subject for mail in mailoutbox] == ["[alert] queue_backlog rule", "[resolved] queue_backlog rule"]
    assert incident.notifications.get(channel="webhook", event="resolved").attempts == 0

    report = alerts_evaluate(now=now + 2 * MINUTE)
    assert (report.notices_sent, report.notices_failed) == (2, 0)
    assert [body["event"] for body in posted(receiver)] == ["opened", "opened", "opened", "resolved"]
    webhook.refresh_from_db()
    assert (webhook.status, webhook.attempts, webhook.last_error) == ("sent", 3, "")
    assert len(mailoutbox) == 2


def test_a_mail_server_down_fails_only_the_email(conversation, receiver, mailoutbox, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600)
    now = timezone.now()
    outbound(conversation, MessageStatus.QUEUED, next_attempt_at=now - 11 * MINUTE)
    report = alerts_evaluate(now=now)
    assert (report.notices_sent, report.notices_failed) == (1, 1)
    email = AlertNotification.objects.get(channel="email")
    assert (email.status, email.last_error) == ("pending", "connection refused")

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    report = alerts_evaluate(now=now + MINUTE)
    assert (report.notices_sent, report.notices_failed) == (1, 0)
    assert len(mailoutbox) == 1 and len(receiver.hits(RECEIVER_PATH)) == 1


def test_an_unreachable_receiver_does_not_stop_the_job(conversation, receiver, mailoutbox, settings):
    settings.ALERT_WEBHOOK_TIMEOUT_SECONDS = 0.2
    receiver.routes[RECEIVER_PATH] = [Reply(200, delay=1)]
    make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600)
    now = timezone.now()
    outbound(conversation, MessageStatus.QUEUED, next_attempt_at=now - 11 * MINUTE)
    report = alerts_evaluate(now=now)
    assert report.opened and (report.notices_sent, report.notices_failed) == (1, 1)
    assert AlertNotification.objects.get(channel="webhook").last_error == "timed out"


def test_a_notice_failing_for_a_day_is_given_up(conversation, receiver, mailoutbox):
    receiver.routes[RECEIVER_PATH] = [Reply(500)]
    make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600)
    now = timezone.now()
    outbound(conversation, MessageStatus.QUEUED, next_attempt_at=now - 11 * MINUTE)
    alerts_evaluate(now=now)
    alerts_evaluate(now=now + timedelta(hours=25))
    webhook = AlertNotification.objects.get(channel="webhook")
    assert (webhook.status, webhook.attempts) == ("gave_up", 1)


def test_disabling_a_rule_resolves_its_incident(conversation, receiver, mailoutbox, client):
    rule = make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600)
    now = timezone.now()
    outbound(conversation, MessageStatus.QUEUED, next_attempt_at=now - 11 * MINUTE)
    alerts_evaluate(now=now)
    AlertRule.objects.filter(pk=rule.pk).update(enabled=False)
    report = alerts_evaluate(now=now + MINUTE)
    incident = AlertIncident.objects.get()
    assert report.resolved == [incident.pk] and incident.resolution == "The rule was disabled."
    assert [body["event"] for body in posted(receiver)] == ["opened", "resolved"]
    assert health(client)["alerts"]["open"] == 0


def test_a_rule_without_channels_still_opens_incidents(conversation, receiver, mailoutbox):
    rule = make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600)
    AlertRule.objects.filter(pk=rule.pk).update(email_recipients="", webhook_url="")
    now = timezone.now()
    outbound(conversation, MessageStatus.QUEUED, next_attempt_at=now - 11 * MINUTE)
    alerts_evaluate(now=now)
    assert AlertIncident.objects.exists() and not AlertNotification.objects.exists()
    assert mailoutbox == [] and receiver.requests == []


# --- the job ---------------------------------------------------------------------------------------------

@contextmanager
def evaluation_running_elsewhere():
    """Another connection (another worker's evaluation) holds the evaluation lock."""
    held, release = threading.Event(), threading.Event()

    def hold():
        try:
            with try_session_lock(*LOCK_KEY) as locked:
                assert locked
                held.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(10), "the other connection did not take the lock"
        yield
    finally:
        release.set()
        thread.join(10)


def test_two_evaluations_never_overlap(conversation, receiver, mailoutbox):
    make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600)
    outbound(conversation, MessageStatus.QUEUED, next_attempt_at=timezone.now() - 11 * MINUTE)
    with evaluation_running_elsewhere():
        report = alerts_evaluate()
        assert report.skipped and report.summary() == "skipped: another evaluation is running"
        assert not AlertIncident.objects.exists() and mailoutbox == []
    assert alerts_evaluate().opened


def test_the_beat_job_evaluates_every_minute(conversation, receiver):
    entry = settings.CELERY_BEAT_SCHEDULE["evaluate-alerts"]
    assert (entry["task"], entry["schedule"]) == ("monitoring.tasks.alerts_evaluate_task", 60.0)
    make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600)
    outbound(conversation, MessageStatus.QUEUED, next_attempt_at=timezone.now() - 11 * MINUTE)
    assert alerts_evaluate_task.apply().get().startswith("1 rule(s) checked, 1 incident(s) opened")


def test_one_rule_failing_does_not_stop_the_others(conversation, receiver):
    broken = make_rule(receiver, AlertKind.ERROR_CODE_SPIKE, 1, error_code="131049")
    make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600)
    outbound(conversation, MessageStatus.QUEUED, next_attempt_at=timezone.now() - 11 * MINUTE)
    # A kind this version does not know (a row written by a newer one, say).
    AlertRule.objects.filter(pk=broken.pk).update(kind="unknown_kind")
    report = alerts_evaluate()
    assert report.failed_rules == [broken.name] and len(report.opened) == 1


# --- rules in the admin ------------------------------------------------------------------------------------

def test_a_rule_is_made_in_the_admin_with_its_secret_encrypted_and_out_of_the_audit(admin_client_logged, receiver,
                                                                                      sandbox_provider):
    form = {"name": "Meta error rate", "kind": AlertKind.ERROR_RATE, "provider": sandbox_provider.pk,
            "threshold": "5", "error_code": "", "window_minutes": "15", "for_minutes": "15", "min_sends": "20",
            "enabled": "on", "email_recipients": "ops@example.com", "webhook_url": receiver.url + RECEIVER_PATH,
            "webhook_secret": ""}
    response = admin_client_logged.post("/admin/monitoring/alertrule/add/", form)
    assert response.status_code == 200 and "needs a signing secret" in response.content.decode()

    response = admin_client_logged.post("/admin/monitoring/alertrule/add/", {**form, "webhook_secret": SECRET})
    assert response.status_code == 302, response.content.decode()
    rule = AlertRule.objects.get()
    assert rule.webhook_secret == SECRET
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM monitoring_alertrule WHERE id = %s", [rule.pk])
        assert SECRET not in cursor.fetchone()[0]
    entry = AuditLog.objects.get(action="admin.add", object_type="monitoring.AlertRule")
    assert SECRET not in json.dumps(entry.after) and entry.after["name"] == "Meta error rate"

    # Saved again without a secret: the stored one stays.
    response = admin_client_logged.post(f"/admin/monitoring/alertrule/{rule.pk}/change/", {**form, "threshold": "7"})
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.threshold, rule.webhook_secret) == (7, SECRET)
    page = admin_client_logged.get(f"/admin/monitoring/alertrule/{rule.pk}/change/").content.decode()
    assert SECRET not in page and "••••" + SECRET[-4:] in page


def test_a_rule_is_checked_for_what_its_kind_needs(receiver):
    rule = AlertRule(name="spike", kind=AlertKind.ERROR_CODE_SPIKE, threshold=0, email_recipients="not-an-address")
    with pytest.raises(ValidationError) as refused:
        rule.full_clean()
    errors = refused.value.message_dict
    assert set(errors) == {"error_code", "threshold", "email_recipients"}
    rule = AlertRule(name="rate", kind=AlertKind.ERROR_RATE, threshold=150)
    with pytest.raises(ValidationError) as refused:
        rule.full_clean()
    assert set(refused.value.message_dict) == {"threshold"}


def test_evaluate_now_and_the_incident_list(admin_client_logged, conversation, receiver, mailoutbox):
    rule = make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600)
    outbound(conversation, MessageStatus.QUEUED, next_attempt_at=timezone.now() - 11 * MINUTE)
    response = admin_client_logged.post("/admin/monitoring/alertrule/",
                                        {"action": "evaluate_now", "_selected_action": [rule.pk]}, follow=True)
    assert "1 rule(s) checked, 1 incident(s) opened" in response.content.decode()
    assert len(mailoutbox) == 1

    page = admin_client_logged.get("/admin/monitoring/alertincident/?state=open").content.decode()
    assert rule.name in page and "Oldest due outbound message has waited" in page and "2 sent" in page
    incident = AlertIncident.objects.get()
    page = admin_client_logged.get(f"/admin/monitoring/alertincident/{incident.pk}/change/").content.decode()
    assert "Webhook" in page and "Email" in page
    assert admin_client_logged.get("/admin/monitoring/alertincident/add/").status_code == 403


# --- where webhooks may go ---------------------------------------------------------------------------------

REFUSED_URLS = {
    "http://169.254.169.254/latest/meta-data/": "169.254.169.254 is a link-local address",
    "https://[fe80::1]/alerts": "fe80::1 is a link-local address",
    "http://[::ffff:169.254.169.254]/": "::ffff:169.254.169.254 is a link-local address",
    "http://0.0.0.0:8080/alerts": "0.0.0.0 is an unspecified address",
    "http://[::]/alerts": ":: is an unspecified address",
    "http://metadata.google.internal/computeMetadata/v1/": "metadata.google.internal is a cloud metadata service",
}


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_a_webhook_to_a_link_local_or_unspecified_address_is_refused_when_saved(url):
    rule = AlertRule(name="refused", kind=AlertKind.QUEUE_BACKLOG, threshold=600, webhook_url=url)
    rule.webhook_secret = SECRET
    with pytest.raises(ValidationError) as refused:
        rule.full_clean()
    assert REFUSED_URLS[url] in refused.value.message_dict["webhook_url"][0]


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/alerts", "http://10.1.2.3/alerts", "http://[::1]/alerts",
                                 "http://192.168.0.10:8080/hook", "https://alerts.example.com/hook"])
def test_private_and_loopback_receivers_are_allowed(url):
    rule = AlertRule(name="internal relay", kind=AlertKind.QUEUE_BACKLOG, threshold=600, webhook_url=url)
    rule.webhook_secret = SECRET
    rule.full_clean()


def test_the_admin_form_says_why_a_webhook_address_is_refused(admin_client_logged):
    form = {"name": "Queue", "kind": AlertKind.QUEUE_BACKLOG, "provider": "", "threshold": "600", "error_code": "",
            "window_minutes": "15", "for_minutes": "0", "min_sends": "20", "enabled": "on", "email_recipients": "",
            "webhook_url": "169.254.169.254/latest/meta-data/", "webhook_secret": SECRET}
    response = admin_client_logged.post("/admin/monitoring/alertrule/add/", form)
    page = response.content.decode()
    assert response.status_code == 200 and not AlertRule.objects.exists()
    assert "169.254.169.254 is a link-local address" in page and "internal relay" in page


@pytest.fixture
def resolving(monkeypatch):
    """Names of our own, answered as a test says: `answers[name]` is the list of addresses each lookup of it
    returns in turn (the last one repeats). Lookups of other hosts go to the system's resolver."""
    answers: dict[str, list[str]] = {}
    lookups: list[str] = []
    system = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return system(host, port, *args, **kwargs)
        lookups.append(host)
        address = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port or 80))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers, lookups


def rule_with_webhook(receiver, conversation, url: str, **fields) -> AlertRule:
    """A holding rule whose webhook is `url`, written past the form's checks (as an older rule could be)."""
    rule = make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600, **fields)
    AlertRule.objects.filter(pk=rule.pk).update(webhook_url=url)
    if not Message.objects.filter(status=MessageStatus.QUEUED).exists():
        outbound(conversation, MessageStatus.QUEUED, next_attempt_at=timezone.now() - 11 * MINUTE)
    return rule


@pytest.mark.parametrize(("url", "category"), [
    ("http://169.254.169.254/latest/meta-data/", "refused: link-local address"),
    ("http://[::]:8080/alerts", "refused: unspecified address"),
    ("http://metadata.google.internal/computeMetadata/v1/", "refused: cloud metadata service"),
])
def test_a_webhook_to_a_refused_address_is_not_sent(conversation, receiver, mailoutbox, url, category):
    rule_with_webhook(receiver, conversation, url)
    report = alerts_evaluate()
    assert (report.notices_sent, report.notices_failed) == (1, 1)
    webhook = AlertNotification.objects.get(channel="webhook")
    # Kept for the next check: a rule corrected meanwhile sends it.
    assert (webhook.status, webhook.attempts, webhook.last_error) == ("pending", 1, category)


def test_a_name_that_resolves_to_a_link_local_address_is_refused_when_sent(conversation, receiver, mailoutbox,
                                                                            resolving):
    answers, lookups = resolving
    answers["alerts.example.test"] = ["169.254.169.254"]
    rule_with_webhook(receiver, conversation, f"http://alerts.example.test:{receiver.port}{RECEIVER_PATH}")
    alerts_evaluate()
    webhook = AlertNotification.objects.get(channel="webhook")
    assert (webhook.status, webhook.last_error) == ("pending", "refused: link-local address")
    assert lookups == ["alerts.example.test"] and receiver.hits(RECEIVER_PATH) == []


def test_the_webhook_goes_to_the_address_that_was_checked(conversation, receiver, mailoutbox, resolving):
    # A name that answers a harmless address to the check and a link-local one afterwards: the connection
    # goes to the address checked, without asking again.
    answers, lookups = resolving
    answers["relay.example.test"] = ["127.0.0.1", "169.254.169.254"]
    rule_with_webhook(receiver, conversation, f"http://relay.example.test:{receiver.port}{RECEIVER_PATH}")
    report = alerts_evaluate()
    assert (report.notices_sent, report.notices_failed) == (2, 0)
    assert lookups == ["relay.example.test"]
    (request,) = receiver.hits(RECEIVER_PATH)
    assert request.headers["host"] == f"relay.example.test:{receiver.port}"
    assert posted(receiver)[0]["event"] == "opened"


def test_the_incident_page_names_each_failure_in_a_few_words(admin_client_logged, conversation, receiver,
                                                               mailoutbox, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    rule_with_webhook(receiver, conversation, receiver.url + "/nobody-here")
    alerts_evaluate()
    incident = AlertIncident.objects.get()
    assert dict(incident.notifications.values_list("channel", "last_error")) == {
        "email": "connection refused", "webhook": "HTTP 404"}
    page = admin_client_logged.get(f"/admin/monitoring/alertincident/{incident.pk}/change/").content.decode()
    assert "connection refused" in page and "HTTP 404" in page
    assert "Errno" not in page and "NoticeRefused" not in page and "ConnectionRefusedError" not in page


# --- the time notices may take -------------------------------------------------------------------------------

def test_notices_left_over_by_the_budget_wait_for_the_next_check(conversation, receiver, mailoutbox, settings):
    settings.ALERT_NOTICE_BUDGET_SECONDS = 0
    make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600)
    now = timezone.now()
    outbound(conversation, MessageStatus.QUEUED, next_attempt_at=now - 11 * MINUTE)
    report = alerts_evaluate(now=now)
    assert report.opened and (report.notices_sent, report.notices_failed, report.notices_not_attempted) == (0, 0, 2)
    assert report.summary().endswith("0 notice(s) sent, 0 failed, 2 left for the next check")
    assert set(AlertNotification.objects.values_list("status", "attempts", "last_error")) == {("pending", 0, "")}

    settings.ALERT_NOTICE_BUDGET_SECONDS = 20
    report = alerts_evaluate(now=now + MINUTE)
    assert (report.notices_sent, report.notices_failed, report.notices_not_attempted) == (2, 0, 0)
    assert len(mailoutbox) == 1 and len(posted(receiver)) == 1


def test_a_receiver_that_does_not_answer_is_tried_once_per_check(conversation, receiver, mailoutbox, settings):
    settings.ALERT_WEBHOOK_TIMEOUT_SECONDS = 0.3
    receiver.routes[RECEIVER_PATH] = [Reply(200, delay=2)]
    first = make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600, name="backlog")
    second = make_rule(receiver, AlertKind.QUEUE_BACKLOG, 300, name="long backlog")
    now = timezone.now()
    outbound(conversation, MessageStatus.QUEUED, next_attempt_at=now - 11 * MINUTE)
    report = alerts_evaluate(now=now)
    assert len(report.opened) == 2
    # Both emails go; the webhook is tried for the first rule's notice only, the second waits untried.
    assert (report.notices_sent, report.notices_failed, report.notices_not_attempted) == (2, 1, 1)
    webhooks = {notice.incident.rule_id: notice for notice in AlertNotification.objects.filter(channel="webhook")}
    assert (webhooks[first.pk].attempts, webhooks[first.pk].last_error) == (1, "timed out")
    assert (webhooks[second.pk].status, webhooks[second.pk].attempts) == ("pending", 0)
    assert len(mailoutbox) == 2


def test_notices_never_tried_go_before_those_that_keep_failing(conversation, receiver, mailoutbox, settings):
    settings.ALERT_WEBHOOK_TIMEOUT_SECONDS = 0.3
    settings.ALERT_NOTICE_BUDGET_SECONDS = 0.1
    receiver.routes[RECEIVER_PATH] = [Reply(200, delay=2)]
    by_webhook = make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600, name="by webhook")
    by_email = make_rule(receiver, AlertKind.QUEUE_BACKLOG, 300, name="by email")
    AlertRule.objects.filter(pk=by_webhook.pk).update(email_recipients="")
    AlertRule.objects.filter(pk=by_email.pk).update(webhook_url="")
    now = timezone.now()
    outbound(conversation, MessageStatus.QUEUED, next_attempt_at=now - 11 * MINUTE)

    # The slow webhook uses the whole budget: the email is left for the next check...
    report = alerts_evaluate(now=now)
    assert (report.notices_sent, report.notices_failed, report.notices_not_attempted) == (0, 1, 1)
    assert mailoutbox == []
    # ... which tries it first, before the webhook that failed.
    report = alerts_evaluate(now=now + MINUTE)
    assert report.notices_sent == 1 and len(mailoutbox) == 1
    assert AlertNotification.objects.get(channel="email", incident__rule=by_email).attempts == 1


def test_evaluate_now_sends_only_the_selected_rules_notices(admin_client_logged, conversation, receiver,
                                                            mailoutbox, settings):
    settings.ALERT_NOTICE_BUDGET_SECONDS = 0
    chosen = make_rule(receiver, AlertKind.QUEUE_BACKLOG, 600, name="chosen")
    other = make_rule(receiver, AlertKind.QUEUE_BACKLOG, 300, name="other")
    outbound(conversation, MessageStatus.QUEUED, next_attempt_at=timezone.now() - 11 * MINUTE)
    alerts_evaluate()
    assert AlertNotification.objects.filter(status="pending", attempts=0).count() == 4

    settings.ALERT_NOTICE_BUDGET_SECONDS = 20
    response = admin_client_logged.post("/admin/monitoring/alertrule/",
                                        {"action": "evaluate_now", "_selected_action": [chosen.pk]}, follow=True)
    assert "2 notice(s) sent, 0 failed" in response.content.decode()
    assert [mail.subject for mail in mailoutbox] == ["[alert] chosen"]
    assert [body["rule"]["name"] for body in posted(receiver)] == ["chosen"]
    assert set(AlertNotification.objects.filter(incident__rule=other).values_list("status", "attempts")) == {
        ("pending", 0)}
