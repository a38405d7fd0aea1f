import ipaddress
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models

from core.access import ProviderPath
from core.fields import EncryptedJSONField
from whatsapp.providers.safe_fetch import address_problem


class WorkerHeartbeat(models.Model):
    """When a Celery worker last ran the heartbeat job that beat enqueues: one fresh row proves that beat
    schedules, the broker delivers and a worker consumes. Kept in the database, the one store every process
    of every setup shares (the cache is per process without Redis)."""

    name = models.CharField(max_length=64, unique=True, help_text="What beats: the worker pool.")
    hostname = models.CharField(max_length=255, blank=True, help_text="The worker that ran it last.")
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} seen {self.seen_at:%Y-%m-%d %H:%M:%S} ({self.hostname})"


class AlertKind(models.TextChoices):
    ERROR_RATE = "error_rate", "Send error rate at or above a percentage"
    ERROR_CODE_SPIKE = "error_code_spike", "Spike of one error code"
    WEBHOOK_FAILURES = "webhook_failures", "Failed or rejected webhooks"
    QUEUE_BACKLOG = "queue_backlog", "Queue backlog older than a number of seconds"
    DELIVERY_RATE = "delivery_rate", "Delivery rate below a percentage"
    DELIVERY_RATE_DROP = "delivery_rate_drop", "Delivery rate dropped against the same window a day earlier"
    TEMPLATE_HEALTH = "template_health", "Template paused, disabled or of low quality"


# Kinds whose figure is a share of sends: they need the window to hold enough sends to mean anything.
RATE_KINDS = (AlertKind.ERROR_RATE, AlertKind.DELIVERY_RATE, AlertKind.DELIVERY_RATE_DROP)
# Kinds read over a time window; the others look at the present state.
WINDOWED_KINDS = (*RATE_KINDS, AlertKind.ERROR_CODE_SPIKE, AlertKind.WEBHOOK_FAILURES)


def _recipient_list(text: str) -> list[str]:
    return [address for address in (part.strip() for part in text.replace(";", ",").replace("\n", ",").split(","))
            if address]


# Names under which cloud platforms serve an instance's metadata, its access tokens among it. They resolve to
# a link-local address only inside the cloud, so the name itself is refused too.
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data",
                            "instance-data.ec2.internal"})


def webhook_host_problem(host: str) -> str:
    """Why alert notices may not go to `host` (a URL's host: a name, or an address), judged from the host
    alone; "" when they may. Link-local, unspecified, multicast and reserved addresses and the metadata
    names are refused; loopback and private addresses are allowed, as an internal alert relay is a normal
    receiver. A name's addresses are checked when a notice is sent (monitoring.alerts)."""
    host = host.strip().rstrip(".").lower()
    if host in METADATA_HOSTS:
        return "a cloud metadata service"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return ""
    return address_problem(address, private_allowed=True)


def webhook_url_problem(url: str) -> str:
    """Why alert notices may not go to `url`, naming its host ("" when they may)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""  # not a URL: the field's own validation says so
    problem = webhook_host_problem(host)
    return f"{host} is {problem}" if problem else ""


class AlertRule(models.Model):
    """A condition over the platform's own rows, evaluated every minute: while it holds, one incident is open."""
    team_scope = ProviderPath("provider", shared_when_empty=True)


    name = models.CharField(max_length=100, unique=True,
                            help_text="Shown on the public /health/ page while an incident is open: no secrets or "
                                      "customer names.")
    kind = models.CharField(max_length=24, choices=AlertKind.choices)
    provider = models.ForeignKey(
        "whatsapp.Provider", null=True, blank=True, on_delete=models.CASCADE, related_name="alert_rules",
        help_text="Only this provider's messages, webhooks and templates; empty: all providers together.")
    threshold = models.FloatField(
        help_text="Error rate: the failed share of sends in percent (e.g. 5). Error code spike, webhook failures: "
                  "a count. Queue backlog: seconds. Delivery rate: the lowest acceptable delivered share in percent "
                  "(e.g. 85). Delivery rate drop: percentage points below the same window a day earlier (e.g. 15). "
                  "Templates: how many templates need attention (usually 1). The condition holds at or above the "
                  "threshold, except the delivery rate, which holds below it.")
    error_code = models.CharField(max_length=32, blank=True,
                                  help_text="Error code spike only: the provider's code, e.g. 131049 or 130429.")
    window_minutes = models.PositiveIntegerField(
        default=15, help_text="Rates and counts are read over the last this many minutes (not used by the queue "
                              "backlog and template kinds).")
    for_minutes = models.PositiveIntegerField(
        default=0, help_text="How long the condition must keep holding, checked every minute, before an incident "
                             "opens (e.g. 15 for 'error rate above 5% for 15 minutes'); 0 opens at the first check "
                             "that sees it.")
    min_sends = models.PositiveIntegerField(
        default=20, help_text="Rate kinds only: a window with fewer sends than this gives no rate, so one failure "
                              "out of two sends does not read as 50%. The drop kind needs it in both windows.")
    enabled = models.BooleanField(default=True,
                                  help_text="Disabling a rule resolves its open incident (with a notice).")
    email_recipients = models.TextField(blank=True, help_text="Comma-separated addresses told when an incident "
                                                              "opens and when it resolves.")
    webhook_url = models.URLField(max_length=500, blank=True,
                                  help_text="Receives a signed JSON POST when an incident opens and when it resolves.")
    # Named like the providers' field so that the admin's audit snapshots leave it out.
    credentials = EncryptedJSONField(help_text="The webhook signing secret, encrypted at rest.")
    # Written by the evaluation.
    holding_since = models.DateTimeField(null=True, blank=True,
                                         help_text="When the condition started holding, while no incident is open.")
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    last_figure = models.FloatField(null=True, blank=True, help_text="The figure read by the last check.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def webhook_secret(self) -> str:
        return str(self.credentials.get("webhook_secret") or "")

    @webhook_secret.setter
    def webhook_secret(self, value: str) -> None:
        self.credentials = {**self.credentials, "webhook_secret": value} if value else {
            key: item for key, item in self.credentials.items() if key != "webhook_secret"}

    @property
    def recipients(self) -> list[str]:
        return _recipient_list(self.email_recipients)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        for address in self.recipients:
            try:
                validate_email(address)
            except ValidationError:
                errors["email_recipients"] = f"{address!r} is not an email address."
        if self.webhook_url and (problem := webhook_url_problem(self.webhook_url)):
            errors["webhook_url"] = (f"Alert notices are not sent there: {problem}. Such an address reaches the "
                                     f"machine's or its cloud's own services (the metadata service among them), "
                                     f"not an alert receiver; a private or loopback address, such as an internal "
                                     f"relay, is fine.")
        elif self.webhook_url and not self.webhook_secret:
            errors["webhook_url"] = "A webhook needs a signing secret, so that its receiver can check the sender."
        if self.kind == AlertKind.ERROR_CODE_SPIKE and not self.error_code.strip():
            errors["error_code"] = "Name the error code whose spike this rule watches."
        if self.threshold is not None:
            if self.threshold < 0:
                errors["threshold"] = "The threshold cannot be negative."
            elif self.kind in RATE_KINDS and self.threshold > 100:
                errors["threshold"] = "A rate is a percentage: at most 100."
            elif self.kind in (AlertKind.ERROR_CODE_SPIKE, AlertKind.WEBHOOK_FAILURES,
                               AlertKind.TEMPLATE_HEALTH) and self.threshold < 1:
                errors["threshold"] = "A count threshold is at least 1 (0 would always hold)."
        if self.kind in WINDOWED_KINDS and not self.window_minutes:
            errors["window_minutes"] = "This kind is read over a window of at least one minute."
        if errors:
            raise ValidationError(errors)


class AlertIncident(models.Model):
    """One stretch of time during which a rule's condition held: opened once, resolved once."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="incidents")
    opened_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    figure = models.FloatField(help_text="The figure that opened it, in the rule's unit.")
    summary = models.TextField(help_text="What held when it opened.")
    resolution = models.TextField(blank=True, help_text="What the check read when it resolved.")

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            # Once per incident: two evaluations can never both open one for the same rule.
            models.UniqueConstraint(fields=["rule"], condition=models.Q(resolved_at__isnull=True),
                                    name="alert_incident_one_open_per_rule"),
        ]
        indexes = [models.Index(fields=["rule", "-opened_at"], name="alert_incident_rule_idx")]

    def __str__(self) -> str:
        state = "open" if self.resolved_at is None else "resolved"
        return f"{self.rule} ({state} since {self.opened_at:%Y-%m-%d %H:%M})"


class AlertNotification(models.Model):
    """One notice of an incident (its opening or its resolution) on one channel; retried until it is sent."""

    class Event(models.TextChoices):
        OPENED = "opened", "Opened"
        RESOLVED = "resolved", "Resolved"

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        GAVE_UP = "gave_up", "Given up"

    incident = models.ForeignKey(AlertIncident, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=10, choices=Event.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, help_text="Why the last attempt failed.")

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "event", "channel"], name="alert_notification_unique"),
        ]
        indexes = [models.Index(fields=["created_at"], condition=models.Q(status="pending"),
                                name="alert_notification_pending_idx")]

    def __str__(self) -> str:
        return f"{self.get_event_display()} by {self.get_channel_display().lower()}: {self.get_status_display()}"
