import json
from urllib.parse import parse_qsl

import httpx
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils.html import format_html, format_html_join

from whatsapp.admin_base import AuditedModelAdmin, ReadOnlyModelAdmin, pretty_json
from whatsapp.models import (
    ApiToken,
    AuditLog,
    Conversation,
    Media,
    Message,
    MessageStatusEvent,
    Provider,
    Session,
    WebhookEvent,
)
from whatsapp.providers import provider_class_for, provider_for, registered_kinds
from whatsapp.services.api_tokens import api_token_create, api_token_revoke
from whatsapp.services.media import media_retry
from whatsapp.services.providers import (
    ROW_TARGETS,
    provider_apply_options,
    provider_fill_defaults,
    provider_masked_credentials,
    provider_missing_options,
    provider_set_paused,
    provider_simulate_inbound,
    provider_webhook_url,
)
from whatsapp.services.webhooks import webhook_event_replay, webhook_events_replay_unrouted


def _extra_options() -> dict[str, list]:
    """Options kept in credentials or config, by name, with the kinds that use them."""
    found: dict[str, list] = {}
    for kind in registered_kinds():
        for option in provider_class_for(kind).options:
            if option.target not in ROW_TARGETS:
                found.setdefault(option.name, []).append((kind, option))
    return found


def _option_field(option, kinds: str) -> forms.CharField:
    help_text = f"{option.help} ({kinds})."
    if option.secret:
        help_text += " Stored encrypted; leave empty to keep the current value."
        return forms.CharField(required=False, widget=forms.PasswordInput(render_value=False), help_text=help_text)
    return forms.CharField(required=False, help_text=help_text)


class ProviderAdminForm(forms.ModelForm):
    class Meta:
        model = Provider
        fields = ["kind", "name", "is_active", "is_paused", "phone_number", "external_id", "business_account_id",
                  "rate_limit_per_second", "verification_status"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.option_names = list(_extra_options())
        if self.instance.pk:
            for name in self.option_names:
                if name in self.instance.config:
                    self.fields[name].initial = self.instance.config[name]

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind") or self.instance.kind
        if kind:
            self.instance.kind = kind
            for row_field in ROW_TARGETS:
                setattr(self.instance, row_field, cleaned.get(row_field, ""))
            provider_apply_options(self.instance, {name: cleaned.get(name) for name in self.option_names})
            missing = provider_missing_options(self.instance)
            if missing:
                raise forms.ValidationError(f"A {kind} provider needs: {', '.join(missing)}.")
        return cleaned


# Every kind's settings and credentials become declared form fields, so the admin's fieldsets see them.
for _name, _uses in _extra_options().items():
    ProviderAdminForm.declared_fields[_name] = ProviderAdminForm.base_fields[_name] = _option_field(
        _uses[0][1], ", ".join(kind for kind, _ in _uses)
    )


class SimulateInboundForm(forms.Form):
    from_phone = forms.CharField(label="From (phone, E.164)", initial="+15551230009", max_length=20)
    name = forms.CharField(label="Profile name", initial="Test customer", max_length=100, required=False)
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4096)


@admin.register(Provider)
class ProviderAdmin(AuditedModelAdmin):
    form = ProviderAdminForm
    list_display = ["name", "kind", "phone_number", "is_active", "is_paused", "verification_status",
                    "rate_limit_per_second", "created_at"]
    list_filter = ["kind", "is_active", "is_paused", "verification_status"]
    search_fields = ["name", "phone_number", "external_id", "business_account_id"]
    readonly_fields = ["public_id", "webhook_url", "stored_credentials", "created_at", "updated_at"]
    actions = ["test_connection", "pause", "resume"]
    change_form_template = "admin/whatsapp/provider/change_form.html"

    def save_model(self, request, obj, form, change):
        provider_fill_defaults(obj)  # after the form has written its fields onto the row
        super().save_model(request, obj, form, change)
        # Updates that named this number before the provider existed were kept and flagged; apply them now.
        webhook_events_replay_unrouted(provider=obj)

    def get_urls(self):
        simulate = path("<int:provider_id>/simulate-inbound/", self.admin_site.admin_view(self.simulate_inbound),
                        name="whatsapp_provider_simulate_inbound")
        return [simulate, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        provider = self.get_object(request, object_id)
        extra_context = {**(extra_context or {}),
                         "can_simulate_inbound": bool(provider and provider_for(provider).can_simulate_inbound)}
        return super().change_view(request, object_id, form_url, extra_context)

    def simulate_inbound(self, request, provider_id):
        """The sandbox's phone sends a message: a signed webhook to the provider's own URL, over HTTP."""
        provider = get_object_or_404(Provider, pk=provider_id)
        if not self.has_change_permission(request, provider) or not provider_for(provider).can_simulate_inbound:
            raise PermissionDenied
        form = SimulateInboundForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                provider_simulate_inbound(provider=provider, **form.cleaned_data)
            except httpx.HTTPError as exc:
                self.message_user(request, f"The webhook URL did not accept it: {exc}", messages.ERROR)
            else:
                self.message_user(request, "Sent; it appears in the conversation once the worker processes it.")
                return redirect("admin:whatsapp_provider_change", provider.pk)
        context = {**self.admin_site.each_context(request), "title": f"Simulate an inbound message to {provider}",
                   "form": form, "provider": provider, "opts": self.model._meta}
        return render(request, "admin/whatsapp/provider/simulate_inbound.html", context)

    def get_fieldsets(self, request, obj=None):
        extra = list(_extra_options())
        return [
            (None, {"fields": ["kind", "name", "is_active", "is_paused", "rate_limit_per_second",
                               "verification_status"]}),
            ("Webhook", {"fields": ["webhook_url", "stored_credentials", "public_id", "created_at", "updated_at"]}),
            ("Provider ids", {"fields": ["phone_number", "external_id", "business_account_id"]}),
            ("Settings and credentials", {"fields": extra}),
        ]

    def get_readonly_fields(self, request, obj=None):
        # Another kind would need other credentials: make a new provider instead.
        return [*self.readonly_fields, "kind"] if obj else self.readonly_fields

    @admin.display(description="Webhook URL")
    def webhook_url(self, obj):
        return provider_webhook_url(obj) if obj.pk else "(shown after saving)"

    @admin.display(description="Stored credentials (masked)")
    def stored_credentials(self, obj):
        masked = provider_masked_credentials(obj) if obj.pk else {}
        if not masked:
            return "-"
        return format_html_join("", "<div><code>{}</code>: {}</div>", masked.items())

    @admin.action(description="Test the connection")
    def test_connection(self, request, queryset):
        for provider in queryset:
            result = provider_for(provider).check_connection()
            level = messages.SUCCESS if result.ok else messages.WARNING
            self.message_user(request, f"{provider.name}: {result.detail}", level)

    @admin.action(description="Pause sending")
    def pause(self, request, queryset):
        for provider in queryset:
            provider_set_paused(provider=provider, paused=True, actor=request.user)
        self.message_user(request, f"Paused {queryset.count()} provider(s); their messages stay queued.")

    @admin.action(description="Resume sending")
    def resume(self, request, queryset):
        for provider in queryset:
            provider_set_paused(provider=provider, paused=False, actor=request.user)
        self.message_user(request, f"Resumed {queryset.count()} provider(s).")


class MessageInline(admin.TabularInline):
    model = Message
    fields = ["created_at", "direction", "message_type", "text", "status"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["-created_at"]

    def has_add_permission(self, request, obj=None):
        return False


STATUS_TICKS = {"queued": "🕓", "sending": "🕓", "sent": "✓", "delivered": "✓✓", "read": "✓✓ read",
                "played": "✓✓ played", "failed": "⚠ failed", "received": ""}


@admin.register(Conversation)
class ConversationAdmin(AuditedModelAdmin):
    list_display = ["__str__", "provider", "contact", "last_message_at", "assignee", "message_count"]
    list_filter = ["provider", ("assignee", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["contact__profile_name", "contact__identities__value", "external_conversation_id"]
    autocomplete_fields = ["contact", "assignee"]
    readonly_fields = ["transcript", "created_at", "last_message_at"]
    fieldsets = [
        ("Transcript", {"fields": ["transcript"]}),
        (None, {"fields": ["provider", "contact", "assignee", "external_conversation_id", "last_message_at",
                           "created_at"]}),
        ("Context and summary", {"fields": ["context", "ai_summary"], "classes": ["collapse"]}),
    ]
    list_select_related = ["provider", "contact", "assignee"]

    def get_readonly_fields(self, request, obj=None):
        # A conversation belongs to one provider and one contact for good.
        return [*self.readonly_fields, "provider", "contact"] if obj else self.readonly_fields

    def message_count(self, obj):
        return obj.messages.count()

    @admin.display(description="Transcript")
    def transcript(self, obj):
        if not obj.pk:
            return "-"
        rows = obj.messages.order_by("created_at", "id")[:500]
        bubbles = format_html_join(
            "",
            "<div style='margin:6px 0;display:flex;justify-content:{}'>"
            "<div class='wa-bubble wa-{}' style='max-width:60%;padding:6px 10px;border-radius:8px;"
            "background:{};color:#111'><div>{}</div><small style='color:#555'>{} · {} {}</small></div></div>",
            (
                (
                    "flex-end" if m.direction == "outbound" else "flex-start",
                    m.direction,
                    "#dcf8c6" if m.direction == "outbound" else "#f0f0f0",
                    m.text or f"[{m.message_type}]",
                    m.created_at.strftime("%Y-%m-%d %H:%M"),
                    m.message_type,
                    STATUS_TICKS.get(m.status, m.status),
                )
                for m in rows
            ),
        )
        return format_html("<div class='wa-transcript' style='max-width:50em'>{}</div>", bubbles)


@admin.register(Session)
class SessionAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "conversation", "state", "opened_at", "last_inbound_at", "expires_at", "closed_at"]
    list_filter = ["state"]
    search_fields = ["conversation__contact__profile_name"]
    raw_id_fields = ["conversation"]
    list_select_related = ["conversation__contact", "conversation__provider"]


class StatusEventInline(admin.TabularInline):
    model = MessageStatusEvent
    fields = ["status", "occurred_at", "applied", "error_code", "error_title"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class MediaInline(admin.TabularInline):
    model = Media
    fields = ["mime_type", "filename", "state", "attempts", "archive_path"]
    readonly_fields = fields
    extra = 0


@admin.register(Message)
class MessageAdmin(AuditedModelAdmin):
    # Messages are written by the inbound and send pipelines; admins read them (and may delete them).
    list_display = ["id", "created_at", "direction", "message_type", "short_text", "status", "provider",
                    "conversation"]
    list_filter = ["direction", "status", "message_type", "provider", "processing_status"]
    search_fields = ["text", "provider_message_id", "conversation__contact__profile_name"]
    raw_id_fields = ["conversation", "session", "reply_to", "template", "created_by"]
    readonly_fields = ["provider_message_id", "duplicate_count", "attempts", "created_at", "updated_at",
                       "pretty_content"]
    inlines = [MediaInline, StatusEventInline]
    list_select_related = ["provider", "conversation__contact"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Text")
    def short_text(self, obj):
        return (obj.text or "")[:60]

    @admin.display(description="Content")
    def pretty_content(self, obj):
        return pretty_json(obj.content)


@admin.register(MessageStatusEvent)
class MessageStatusEventAdmin(ReadOnlyModelAdmin):
    list_display = ["provider_message_id", "status", "occurred_at", "applied", "error_code", "provider"]
    list_filter = ["status", "applied", "provider"]
    search_fields = ["provider_message_id"]
    exclude = ["raw"]
    readonly_fields = ["pretty_raw"]

    @admin.display(description="Raw report")
    def pretty_raw(self, obj):
        return pretty_json(obj.raw)


@admin.register(Media)
class MediaAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "message", "mime_type", "state", "attempts", "size_bytes", "last_error", "created_at"]
    list_filter = ["state", "mime_type"]
    search_fields = ["provider_media_id", "sha256", "filename"]
    raw_id_fields = ["message"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    actions = ["retry_download"]

    @admin.action(description="Retry the download now")
    def retry_download(self, request, queryset):
        count = media_retry(queryset.exclude(state=Media.State.FETCHED), actor=request.user)
        self.message_user(request, f"{count} download(s) queued.")


class FlaggedFilter(admin.SimpleListFilter):
    title = "routing"
    parameter_name = "routing"

    def lookups(self, request, model_admin):
        return [("unrouted", "Names a number no provider has"), ("notes", "Has updates we do not act on")]

    def queryset(self, request, queryset):
        if self.value() == "unrouted":
            return queryset.exclude(unrouted_to="")
        if self.value() == "notes":
            return queryset.exclude(notes="")
        return queryset


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "received_at", "kind", "provider", "status", "http_status", "signature_valid",
                    "event_count", "attempts", "rejection_reason", "unrouted_to"]
    list_filter = ["status", "kind", "signature_valid", FlaggedFilter, "http_status", "provider"]
    search_fields = ["correlation_id", "delivery_id", "rejection_reason", "last_error"]
    readonly_fields = [f.name for f in WebhookEvent._meta.fields if f.name != "body"] + ["pretty_body"]
    exclude = ["body"]
    actions = ["replay"]
    date_hierarchy = "received_at"

    @admin.display(description="Body (as received)")
    def pretty_body(self, obj):
        raw = bytes(obj.body or b"")
        try:
            if obj.content_type == "application/x-www-form-urlencoded":
                return pretty_json(dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True)))
            return pretty_json(json.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, ValueError):
            return format_html("<pre style='white-space:pre-wrap'>{}</pre>", raw.decode("utf-8", "replace"))

    @admin.action(description="Replay (process again)")
    def replay(self, request, queryset):
        count = 0
        for event in queryset.exclude(status=WebhookEvent.Status.REJECTED).exclude(provider=None):
            webhook_event_replay(event=event, actor=request.user)
            count += 1
        self.message_user(request, f"{count} event(s) queued for processing.")


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyModelAdmin):
    list_display = ["created_at", "actor_label", "action", "object_type", "object_repr"]
    list_filter = ["action", "object_type"]
    search_fields = ["object_repr", "object_id", "actor_label", "correlation_id"]
    readonly_fields = ["actor", "actor_label", "action", "object_type", "object_id", "object_repr", "pretty_before",
                       "pretty_after", "correlation_id", "created_at"]
    exclude = ["before", "after"]

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Before")
    def pretty_before(self, obj):
        return pretty_json(obj.before)

    @admin.display(description="After")
    def pretty_after(self, obj):
        return pretty_json(obj.after)



class ApiTokenAddForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["user", "name"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Keys are shown once, when made; afterwards only their prefix (the database holds a digest)."""

    list_display = ["name", "prefix", "user", "is_active", "created_at", "last_used_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "prefix", "user__username"]
    autocomplete_fields = ["user"]
    readonly_fields = ["prefix", "is_active", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["user", "name"] if obj is None else ["user", "name", *self.readonly_fields]

    def has_change_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        token, key = api_token_create(user=form.cleaned_data["user"], name=form.cleaned_data["name"],
                                      actor=request.user)
        obj.pk = token.pk
        self.message_user(request, f"API key for {token.user}: {key} (copy it now; it is not shown again).",
                          messages.WARNING)

    def log_addition(self, request, obj, message):
        pass  # api_token_create wrote the audit entry

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        for token in queryset:
            api_token_revoke(token=token, actor=request.user)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")
