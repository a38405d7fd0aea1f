"""A provider's page (settings, credentials, the circuit) and its buttons: test the connection, pause and
resume sending, close the circuit, send a test message, simulate an inbound message and open the phone
(sandbox; the phone's pages are in sandbox_phone.py)."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils.html import format_html_join
from django.views.decorators.http import require_POST
from kombu.exceptions import OperationalError as KombuOperationalError

from core.admin.base import AuditedModelAdmin
from core.audit import audit_record
from whatsapp.admin.forms import (
    CONTACT_POLICY_FIELDS,
    ProviderAdminForm,
    SimulateInboundForm,
    TestSendForm,
    extra_options,
    kind_fields,
    refusal_text,
    send_test_text,
)
from whatsapp.admin.sandbox_phone import may_use_phone, sandbox_phone_urls
from whatsapp.models import CircuitState, Provider
from whatsapp.providers import backend_for
from whatsapp.services.circuit import circuit_reset
from whatsapp.services.providers import (
    ROW_TARGETS,
    provider_fill_defaults,
    provider_masked_credentials,
    provider_set_paused,
    provider_simulate_inbound,
    provider_webhook_url,
)
from whatsapp.services.send_rules import SendRefused
from whatsapp.services.webhooks import webhook_events_replay_unrouted


@admin.register(Provider)
class ProviderAdmin(AuditedModelAdmin):
    form = ProviderAdminForm
    list_display = ["name", "kind", "phone_number", "state", "circuit_state", "verification_status",
                    "rate_limit_per_second", "created_at"]
    list_filter = ["kind", "is_active", "is_paused", "circuit_state", "verification_status"]
    search_fields = ["name", "phone_number", "external_id", "business_account_id"]
    readonly_fields = ["public_id", "webhook_url", "stored_credentials", "created_at", "updated_at",
                       "circuit_state", "circuit_failures", "circuit_opened_at", "circuit_retry_at",
                       "circuit_last_error"]
    actions = ["test_connection", "pause", "resume"]
    change_form_template = "admin/whatsapp/provider/change_form.html"

    def save_model(self, request, obj, form, change):
        provider_fill_defaults(obj)  # after the form has written its fields onto the row
        super().save_model(request, obj, form, change)
        # Updates that named this number before the provider existed were kept and flagged; apply them now.
        webhook_events_replay_unrouted(provider=obj)

    def get_urls(self):
        def route(suffix, view, name, post_only=True, **kwargs):
            # Anything that changes state is POST-only (and CSRF-checked by admin_view).
            view = require_POST(view) if post_only else view
            return path(f"<int:provider_id>/{suffix}/", self.admin_site.admin_view(view), kwargs,
                        name=f"whatsapp_provider_{name}")

        return [
            route("simulate-inbound", self.simulate_inbound, "simulate_inbound", post_only=False),
            route("test-send", self.test_send_view, "test_send", post_only=False),
            route("test-connection", self.test_connection_view, "test_connection"),
            route("pause", self.set_paused_view, "pause", paused=True),
            route("resume", self.set_paused_view, "resume", paused=False),
            route("reset-circuit", self.reset_circuit_view, "reset_circuit"),
            *sandbox_phone_urls(self),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        provider = self.get_object(request, object_id)
        can_simulate = bool(provider and backend_for(provider).can_simulate_inbound)
        extra_context = {**(extra_context or {}),
                         "can_simulate_inbound": can_simulate,
                         "can_use_phone": can_simulate and may_use_phone(request, provider),
                         "circuit_closed": bool(provider and provider.circuit_state == CircuitState.CLOSED
                                                and not provider.circuit_failures)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _provider_to_change(self, request, provider_id) -> Provider:
        provider = get_object_or_404(Provider, pk=provider_id)
        if not self.has_change_permission(request, provider):
            raise PermissionDenied
        return provider

    def _back_to(self, provider):
        return redirect("admin:whatsapp_provider_change", provider.pk)

    def _page(self, request, template, title, **context):
        context = {**self.admin_site.each_context(request), "title": title, "opts": self.model._meta, **context}
        return render(request, template, context)

    def simulate_inbound(self, request, provider_id):
        """The sandbox's phone sends a message: a worker posts a signed webhook to the provider's own URL, over
        HTTP (never this request: it would depend on its own server answering a second request, see
        provider_simulate_inbound)."""
        provider = self._provider_to_change(request, provider_id)
        if not backend_for(provider).can_simulate_inbound:
            raise PermissionDenied
        form = SimulateInboundForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                provider_simulate_inbound(provider=provider, **form.cleaned_data)
            except KombuOperationalError as exc:
                self.message_user(request, f"Not sent: the task queue cannot be reached ({exc}).", messages.ERROR)
            else:
                self.message_user(request, "The simulated message was queued for sending to the webhook; it "
                                           "appears in the conversation in a moment.")
                return self._back_to(provider)
        return self._page(request, "admin/whatsapp/provider/simulate_inbound.html",
                          f"Simulate an inbound message to {provider}", form=form, provider=provider)

    def test_send_view(self, request, provider_id):
        """A text to one number through the real send pipeline (rules, queue, worker, provider)."""
        provider = self._provider_to_change(request, provider_id)
        form = TestSendForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                message = send_test_text(provider=provider, actor=request.user, **form.cleaned_data)
            except SendRefused as refusal:
                self.message_user(request, refusal_text(refusal), messages.ERROR)
            else:
                self.message_user(request, f"Test message #{message.pk} queued; its status shows here.")
                return redirect("admin:whatsapp_message_change", message.pk)
        return self._page(request, "admin/whatsapp/provider/test_send.html", f"Send a test message from {provider}",
                          form=form, provider=provider)

    def test_connection_view(self, request, provider_id):
        provider = self._provider_to_change(request, provider_id)
        self._report_connection(request, provider)
        return self._back_to(provider)

    def set_paused_view(self, request, provider_id, paused: bool):
        provider = self._provider_to_change(request, provider_id)
        provider_set_paused(provider=provider, paused=paused, actor=request.user)  # audits; resuming releases
        self.message_user(request, "Sending paused: new messages stay queued until you resume." if paused
                          else "Sending resumed: held messages were handed back to the workers.")
        return self._back_to(provider)

    def reset_circuit_view(self, request, provider_id):
        provider = self._provider_to_change(request, provider_id)
        circuit_reset(provider, actor=request.user)  # audits and releases the messages it held
        self.message_user(request, "Circuit closed; the messages it held were handed back to the workers.")
        return self._back_to(provider)

    def _report_connection(self, request, provider):
        result = backend_for(provider).check_connection()
        audit_record(action="provider.test_connection", obj=provider, actor=request.user,
                     after={"ok": result.ok, "detail": result.detail})
        level = messages.SUCCESS if result.ok else messages.WARNING
        self.message_user(request, f"{provider.name}: {result.detail}", level)

    def get_fieldsets(self, request, obj=None):
        # An existing provider shows its own kind's ids and credentials; the add page shows every kind's,
        # each saying which kinds use it, and provider_form.js keeps those of the kind picked.
        kind = kind_fields().get(obj.kind) if obj is not None else None
        ids = [name for name in ROW_TARGETS if kind is None or name in kind]
        options = [name for name in extra_options() if kind is None or name in kind]
        if kind is not None:  # in the kind's own order
            ids.sort(key=list(kind).index)
            options.sort(key=list(kind).index)
        kind_label = obj.get_kind_display() if obj is not None else ""
        fieldsets = [
            (None, {"fields": ["kind", "name", "is_active", "is_paused", "rate_limit_per_second",
                               "verification_status"]}),
            ("Webhook", {"fields": ["webhook_url", "stored_credentials", "public_id", "created_at", "updated_at"]}),
            (f"{kind_label} ids" if kind_label else "Provider ids", {"fields": ids, "classes": ["provider-kind-ids"]}),
            (f"{kind_label} settings and credentials" if kind_label else "Settings and credentials",
             {"fields": options, "classes": ["provider-kind-options"],
              "description": "" if kind_label else "Each field says which kinds use it: fill in those of the "
                                                   "kind chosen above."}),
            ("Contacts", {"fields": CONTACT_POLICY_FIELDS,
                          "description": "What a message from a contact mapped to no user gets, and whether "
                                         "contacts can be verified with a one-time code."}),
        ]
        if obj is None:
            fieldsets.pop(1)  # the webhook's address and secrets exist once the provider is saved
        else:
            fieldsets.insert(1, ("Sending", {"fields": ["circuit_state", "circuit_failures", "circuit_opened_at",
                                                        "circuit_retry_at", "circuit_last_error"]}))
        return [fieldset for fieldset in fieldsets if fieldset[1]["fields"]]

    def add_view(self, request, form_url="", extra_context=None):
        # What provider_form.js needs to keep the chosen kind's fields: each kind's fields and their meaning.
        extra_context = {**(extra_context or {}), "provider_kind_fields": kind_fields()}
        return super().add_view(request, form_url, extra_context)

    def get_readonly_fields(self, request, obj=None):
        # Another kind would need other credentials: make a new provider instead.
        return [*self.readonly_fields, "kind"] if obj else self.readonly_fields

    @admin.display(description="State", ordering="is_active")
    def state(self, obj):
        # In words: a green tick on "paused" or a red cross on "not paused" reads as good or bad news.
        if not obj.is_active:
            return "Inactive (webhooks refused)"
        return "Paused (sends held)" if obj.is_paused else "Active"

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
            self._report_connection(request, provider)

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
