"""The inbox: every webhook request received, its processing and retries, its body, and replaying it."""

import json
from urllib.parse import parse_qsl

from django.contrib import admin
from django.utils.html import format_html

from core.admin.base import ADMIN_CSS, clipped, pretty_json
from core.dates import when
from core.storage import ObjectNotFound, StorageError
from whatsapp.admin.archive import ArchivedRowAdmin
from whatsapp.models import WebhookEvent
from whatsapp.services.archive import ARCHIVE_FIELDS
from whatsapp.services.archive_bundles import webhook_body
from whatsapp.services.webhooks import webhook_event_replay


class FlaggedFilter(admin.SimpleListFilter):
    title = "routing"
    parameter_name = "routing"

    def lookups(self, request, model_admin):
        return [("unrouted", "Names a number no provider has"), ("notes", "Has updates we do not act on"),
                ("invalid", "Has updates that cannot be stored")]

    def queryset(self, request, queryset):
        if self.value() == "unrouted":
            return queryset.exclude(unrouted_to="")
        if self.value() == "notes":
            return queryset.exclude(notes="")
        if self.value() == "invalid":
            return queryset.exclude(invalid_updates=[])
        return queryset


class OutcomeFilter(admin.SimpleListFilter):
    """Failed events the workers still retry, apart from those given up (a person must look, then replay)."""

    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return [("retrying", "Failed, will retry"), ("gave_up", "Failed, gave up")]

    def queryset(self, request, queryset):
        failed = queryset.filter(status=WebhookEvent.Status.FAILED)
        if self.value() == "retrying":
            return failed.filter(next_attempt_at__isnull=False)
        if self.value() == "gave_up":
            return failed.filter(next_attempt_at__isnull=True)
        return queryset


WEBHOOK_REQUEST_FIELDS = ["content_type", "body_size", "headers", "delivery_id", "duplicate_count",
                          "remote_addr", "correlation_id"]
WEBHOOK_ARCHIVE_FIELDS = [*ARCHIVE_FIELDS, "archive_bundle", "archive_offset", "archive_length", "body_pruned_at",
                          "message_ids", "contacts"]


def _body_html(raw: bytes, content_type: str):
    try:
        if content_type == "application/x-www-form-urlencoded":
            return pretty_json(dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True)))
        return pretty_json(json.loads(raw.decode("utf-8")))
    except (UnicodeDecodeError, ValueError):
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", raw.decode("utf-8", "replace"))


@admin.register(WebhookEvent)
class WebhookEventAdmin(ArchivedRowAdmin):
    # The columns that say what became of a request, in a 1400 px window; the rest is on its page.
    list_display = ["id", "received_at", "source", "outcome", "archive", "problem"]
    list_filter = ["status", OutcomeFilter, "kind", "signature_valid", FlaggedFilter, "archive_status", "http_status",
                   "provider"]
    search_fields = ["correlation_id", "delivery_id", "rejection_reason", "last_error", "message_ids"]
    readonly_fields = [f.name for f in WebhookEvent._meta.fields if f.name != "body"] + ["pretty_body"]
    fieldsets = [
        (None, {"fields": [f.name for f in WebhookEvent._meta.fields
                           if f.name not in ("id", "body", *WEBHOOK_REQUEST_FIELDS, *WEBHOOK_ARCHIVE_FIELDS)]}),
        ("Request", {"fields": WEBHOOK_REQUEST_FIELDS}),
        ("Archive", {"fields": WEBHOOK_ARCHIVE_FIELDS}),
        ("Body", {"fields": ["pretty_body"]}),
    ]
    exclude = ["body"]
    actions = ["replay", "archive_now"]
    date_hierarchy = "received_at"
    list_select_related = ["provider"]
    list_deferred = ("body",)

    class Media:
        css = {"all": [ADMIN_CSS]}

    @admin.display(description="From", ordering="provider__name")
    def source(self, obj):
        return clipped(obj.provider.name if obj.provider else f"{obj.kind} (no provider)", width="12em")

    @admin.display(description="Outcome", ordering="status")
    def outcome(self, obj):
        outcome = f"{obj.get_status_display()} ({obj.http_status})"
        if obj.status == WebhookEvent.Status.FAILED:
            tries = f"{obj.attempts} tr{'y' if obj.attempts == 1 else 'ies'}"
            retry = f"next {self.next_attempt(obj)}" if obj.next_attempt_at else "gave up"
            outcome = f"{outcome}, {tries}, {retry}"
        return clipped(outcome, width="20em")

    @admin.display(description="Problem")
    def problem(self, obj):
        unrouted = f"Names {obj.unrouted_to}, which no provider has" if obj.unrouted_to else ""
        return clipped(obj.rejection_reason or obj.last_error or unrouted, width="18em")

    @admin.display(description="Next attempt", ordering="next_attempt_at")
    def next_attempt(self, obj):
        if obj.status == WebhookEvent.Status.FAILED and obj.next_attempt_at is None:
            return "gave up"
        if obj.status not in (WebhookEvent.Status.PENDING, WebhookEvent.Status.FAILED) or obj.next_attempt_at is None:
            return "-"
        return when(obj.next_attempt_at)

    @admin.display(description="Body (as received)")
    def pretty_body(self, obj):
        pruned = when(obj.body_pruned_at)
        try:
            raw = webhook_body(obj)
        except ObjectNotFound:
            return format_html("<p class='errornote'>The body left the database on {} (retention), and the archive "
                               "does not have it at {}.</p>", pruned, obj.archive_path or "(no path)")
        except StorageError as exc:
            return format_html("<p class='errornote'>The body left the database on {} (retention) and is kept in "
                               "the archive at {}, but the archive storage cannot be reached right now ({}). Reload "
                               "the page to try again.</p>", pruned, obj.archive_path, exc)
        body = _body_html(raw, obj.content_type)
        if obj.body_pruned_at is None:
            return body
        return format_html("<p class='help'>Read from the archive at {}: the database kept it until {} "
                           "(retention).</p>{}", obj.archive_path, pruned, body)

    @admin.action(description="Replay (process again)")
    def replay(self, request, queryset):
        count = 0
        for event in queryset.exclude(status=WebhookEvent.Status.REJECTED).exclude(provider=None):
            webhook_event_replay(event=event, actor=request.user)
            count += 1
        self.message_user(request, f"{count} event(s) queued for processing.")
