import json
import uuid
from datetime import timedelta
from urllib.parse import parse_qsl

import phonenumbers
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import Exists, OuterRef, Prefetch, Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat, linebreaksbr
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.http import content_disposition_header
from django.utils.safestring import mark_safe
from django.utils.text import Truncator
from django.views.decorators.http import require_POST
from kombu.exceptions import OperationalError as KombuOperationalError

from contacts.models import ContactUserMapping
from contacts.services.identities import phone_to_e164
from core.admin.base import AuditedModelAdmin, ReadOnlyModelAdmin, pretty_json
from core.audit import audit_record
from core.queries import count_subquery
from core.storage import ObjectNotFound, StorageError
from templates_app.models import MessageTemplate
from templates_app.parameters import TemplateVariablesError, template_bind, template_render
from templates_app.selectors import account_filter, templates_for
from whatsapp.models import (
    ArchiveBucket,
    ArchiveStatus,
    CircuitState,
    Conversation,
    DeadLetter,
    Media,
    Message,
    MessageStatusEvent,
    Provider,
    SendAttempt,
    Session,
    StorageDeletion,
    UnknownContactPolicy,
    WebhookEvent,
)
from whatsapp.providers import provider_class_for, provider_for, registered_kinds
from whatsapp.providers.events import MEDIA_TYPES, MessageStatus, MessageType, TemplateStatus
from whatsapp.services.archive import ARCHIVE_FIELDS, archive_backlog, archive_retry_now, media_content, webhook_body
from whatsapp.services.circuit import circuit_reset
from whatsapp.services.media import media_retry
from whatsapp.services.outbound import SendRequest, message_discard, message_retry, message_send, request_fingerprint
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
from whatsapp.services.send_rules import SendRefused
from whatsapp.services.sessions import session_current
from whatsapp.services.webhooks import webhook_event_replay, webhook_events_replay_unrouted

CONTACT_POLICY_FIELDS = ["unknown_contact_policy", "registration_template", "registration_text",
                         "contact_verification_enabled"]


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
                  "rate_limit_per_second", "verification_status", *CONTACT_POLICY_FIELDS]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.option_names = list(_extra_options())
        if self.instance.pk:
            for name in self.option_names:
                if name in self.instance.config:
                    self.fields[name].initial = self.instance.config[name]
        if "registration_template" in self.fields:  # absent when the user may only view the provider
            self._limit_registration_templates(self.fields["registration_template"])
        if "unknown_contact_policy" in self.fields:
            # A form that leaves the policy out (an older script, a partial POST) keeps the stored one.
            self.fields["unknown_contact_policy"].required = False

    def _limit_registration_templates(self, field):
        if not self.instance.pk:
            field.queryset = MessageTemplate.objects.none()
            field.help_text = "Save the provider first; then choose one of its approved templates."
            return
        # This number's approved templates, and the one already chosen even if it has lost its approval.
        field.queryset = MessageTemplate.objects.filter(
            (account_filter(self.instance) & Q(status=TemplateStatus.APPROVED))
            | Q(pk=self.instance.registration_template_id))
        field.help_text = ("One of this number's approved templates, without parameters; sent before the text "
                           "when set.")
        # A template added from here would be a draft of no number: templates are made and approved elsewhere.
        for permission in ("can_add_related", "can_change_related", "can_delete_related"):
            if hasattr(field.widget, permission):
                setattr(field.widget, permission, False)

    def clean_unknown_contact_policy(self):
        return self.cleaned_data.get("unknown_contact_policy") or self.instance.unknown_contact_policy

    def clean(self):
        cleaned = super().clean()
        self._check_registration_reply(cleaned)
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

    def _check_registration_reply(self, cleaned: dict) -> None:
        """A registration reply must have something to send without values to fill in."""
        template = cleaned.get("registration_template")
        text = (cleaned.get("registration_text") or "").strip()
        if template is not None:
            try:
                template_bind(template, None)
            except TemplateVariablesError as exc:
                needs = ", ".join(exc.missing) or str(exc)
                self.add_error("registration_template", f"{template} needs values ({needs}); a registration reply "
                                                        "has none to give: choose a template without parameters.")
                return
        if cleaned.get("unknown_contact_policy") != UnknownContactPolicy.REGISTRATION_REPLY:
            return
        usable = template is not None and template.status == TemplateStatus.APPROVED
        if not usable and not text:
            reason = (f"{template} is not approved ({template.get_status_display().lower()})" if template
                      else "there is no template and no text")
            self.add_error("unknown_contact_policy", f"A registration reply needs an approved template or a text: "
                                                     f"{reason}. Choose a template or write the text below.")


# Every kind's settings and credentials become declared form fields, so the admin's fieldsets see them.
for _name, _uses in _extra_options().items():
    ProviderAdminForm.declared_fields[_name] = ProviderAdminForm.base_fields[_name] = _option_field(
        _uses[0][1], ", ".join(kind for kind, _ in _uses)
    )


class SimulateInboundForm(forms.Form):
    from_phone = forms.CharField(label="From (phone, E.164)", initial="+15551230009", max_length=20)
    name = forms.CharField(label="Profile name", initial="Test customer", max_length=100, required=False)
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4096)


class TestSendForm(forms.Form):
    to_phone = forms.CharField(
        label="To (phone, E.164)", max_length=32,
        help_text="WhatsApp only delivers a free-form text to a number that wrote to this business in the last "
                  "24 hours; any other number needs an approved template (send one from its conversation).")
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4096,
                           initial="Test message from the admin.")

    def clean_to_phone(self):
        phone = phone_to_e164(self.cleaned_data["to_phone"])
        try:
            possible = phonenumbers.is_possible_number(phonenumbers.parse(phone))
        except phonenumbers.NumberParseException:
            possible = False
        if not possible:
            raise forms.ValidationError("Enter a phone number with its country code, e.g. +15551230001.")
        return phone


@transaction.atomic
def _send_test_text(*, provider: Provider, actor, to_phone: str, text: str) -> Message:
    request = SendRequest(provider=provider, contact=None, to_phone=to_phone, message_type=MessageType.TEXT,
                          text=text, lane=Message.Lane.REPLY, actor=actor)
    return message_send(request)[0]


def _refusal_text(refusal: SendRefused) -> str:
    text = f"Not sent ({refusal.code}): {refusal.reason}."
    templates = refusal.details.get("approved_templates")
    if templates:
        names = ", ".join(f"{template['name']} [{template['language']}]" for template in templates)
        text += f" Approved templates: {names}."
    return text


@admin.register(Provider)
class ProviderAdmin(AuditedModelAdmin):
    form = ProviderAdminForm
    list_display = ["name", "kind", "phone_number", "is_active", "is_paused", "circuit_state", "verification_status",
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
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        provider = self.get_object(request, object_id)
        extra_context = {**(extra_context or {}),
                         "can_simulate_inbound": bool(provider and provider_for(provider).can_simulate_inbound),
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
        if not provider_for(provider).can_simulate_inbound:
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
                message = _send_test_text(provider=provider, actor=request.user, **form.cleaned_data)
            except SendRefused as refusal:
                self.message_user(request, _refusal_text(refusal), messages.ERROR)
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
        result = provider_for(provider).check_connection()
        audit_record(action="provider.test_connection", obj=provider, actor=request.user,
                     after={"ok": result.ok, "detail": result.detail})
        level = messages.SUCCESS if result.ok else messages.WARNING
        self.message_user(request, f"{provider.name}: {result.detail}", level)

    def get_fieldsets(self, request, obj=None):
        extra = list(_extra_options())
        fieldsets = [
            (None, {"fields": ["kind", "name", "is_active", "is_paused", "rate_limit_per_second",
                               "verification_status"]}),
            ("Webhook", {"fields": ["webhook_url", "stored_credentials", "public_id", "created_at", "updated_at"]}),
            ("Provider ids", {"fields": ["phone_number", "external_id", "business_account_id"]}),
            ("Settings and credentials", {"fields": extra}),
            ("Contacts", {"fields": CONTACT_POLICY_FIELDS,
                          "description": "What a message from a contact mapped to no user gets, and whether "
                                         "contacts can be verified with a one-time code."}),
        ]
        if obj is not None:
            fieldsets.insert(1, ("Sending", {"fields": ["circuit_state", "circuit_failures", "circuit_opened_at",
                                                        "circuit_retry_at", "circuit_last_error"]}))
        return fieldsets

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


class ConversationSendForm(forms.Form):
    kind = forms.ChoiceField(choices=[(MessageType.TEXT, "Text (only while the 24-hour window is open)"),
                                      (MessageType.TEMPLATE, "Approved template")],
                             initial=MessageType.TEXT, widget=forms.RadioSelect)
    text = forms.CharField(required=False, max_length=4096, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))
    template = forms.ModelChoiceField(queryset=MessageTemplate.objects.none(), required=False,
                                      help_text="This number's approved templates.")
    variables = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
                                help_text='The template\'s values as JSON, e.g. {"body": ["Ana", "123"]}.')
    # A fresh key per form shown: a double click or a resubmitted page queues the message once.
    send_key = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args, provider: Provider, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["template"].queryset = templates_for(provider).filter(status=TemplateStatus.APPROVED)
        self.fields["send_key"].initial = uuid.uuid4().hex

    def clean_variables(self):
        raw = self.cleaned_data["variables"].strip()
        try:
            variables = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
        if not isinstance(variables, dict):
            raise forms.ValidationError('Give an object, e.g. {"body": ["Ana", "123"]}.')
        return variables

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        if kind == MessageType.TEXT and not (cleaned.get("text") or "").strip():
            self.add_error("text", "Write the text to send.")
        if kind == MessageType.TEMPLATE and not cleaned.get("template") and "template" not in self.errors:
            self.add_error("template", "Choose an approved template.")
        return cleaned


def _send_preview(data: dict) -> dict:
    """What the customer would read, or why the template's values do not fit; nothing is sent."""
    if data["kind"] == MessageType.TEXT:
        return {"text": data["text"]}
    try:
        bound = template_bind(data["template"], data["variables"])
    except TemplateVariablesError as exc:
        return {"error": str(exc)}
    return {"text": template_render(data["template"], bound)}


def _conversation_send_request(conversation: Conversation, data: dict, actor) -> SendRequest:
    is_template = data["kind"] == MessageType.TEMPLATE
    template = data["template"] if is_template else None
    variables = data["variables"] if is_template else None
    text = "" if is_template else data["text"]
    fingerprint = request_fingerprint({"kind": data["kind"], "text": text, "template": template,
                                       "variables": variables})
    key = f"admin:{conversation.pk}:{data['send_key']}" if data["send_key"] else ""
    return SendRequest(provider=conversation.provider, contact=conversation.contact, message_type=data["kind"],
                       text=text, template=template, template_variables=variables, idempotency_key=key,
                       fingerprint=fingerprint, actor=actor)


# --- the conversation page: the transcript as a chat ---------------------------------------------------

CHAT_MESSAGE_LIMIT = 500
# How much earlier than its target a reaction may have been stored (webhooks processed out of order).
REACTION_ORDER_MARGIN = timedelta(hours=1)

# An outbound message's status as the sender sees it: (mark, words). The page colours read marks blue.
STATUS_MARKS = {
    MessageStatus.QUEUED: ("🕓", "queued"),
    MessageStatus.SENDING: ("🕓", "sending"),
    MessageStatus.SENT: ("✓", "sent"),
    MessageStatus.DELIVERED: ("✓✓", "delivered"),
    MessageStatus.READ: ("✓✓", "read"),
    MessageStatus.PLAYED: ("✓✓", "played"),
    MessageStatus.FAILED: ("⚠", "failed"),
    MessageStatus.DEAD_LETTER: ("⚠", "dead letter"),
}


def _reverse_or_none(name: str, *args) -> str | None:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def _user_admin_url(user) -> str | None:
    opts = user._meta
    return _reverse_or_none(f"admin:{opts.app_label}_{opts.model_name}_change", user.pk)


# Only what a bubble shows: a message row is wide (content, template values, AI results...).
CHAT_MESSAGE_FIELDS = ["id", "direction", "message_type", "text", "content", "provider_message_id", "status",
                       "queued_at", "sent_at", "delivered_at", "read_at", "played_at", "failed_at", "received_at",
                       "error_code", "error_title", "purpose", "transcript", "created_at", "reply_to"]
QUOTED_MESSAGE_FIELDS = ["reply_to__id", "reply_to__direction", "reply_to__message_type", "reply_to__text"]
CHAT_MEDIA_FIELDS = ["id", "message_id", "filename", "mime_type", "state", "archive_path", "size_bytes", "last_error"]


def _chat_messages(conversation: Conversation) -> tuple[list[Message], bool]:
    """The newest CHAT_MESSAGE_LIMIT messages (reactions aside: they show on their target), oldest first,
    and whether older ones exist. One query for the rows and their quoted messages, one for their media."""
    newest_first = list(
        Message.objects.filter(conversation_id=conversation.pk).exclude(message_type=MessageType.REACTION)
        .select_related("reply_to").only(*CHAT_MESSAGE_FIELDS, *QUOTED_MESSAGE_FIELDS)
        .prefetch_related(Prefetch("media", queryset=Media.objects.only(*CHAT_MEDIA_FIELDS).order_by("id")))
        .order_by("-created_at", "-id")[:CHAT_MESSAGE_LIMIT + 1]
    )
    return newest_first[:CHAT_MESSAGE_LIMIT][::-1], len(newest_first) > CHAT_MESSAGE_LIMIT


def _reactions_query(conversation: Conversation, shown: list[Message], older_hidden: bool):
    """
    One query for the reactions the page shows: those made since shortly before the oldest shown message.
    A reaction comes after its target (ours need the target to exist; the customer's are linked to a
    target already stored), so this finds every reaction to a shown message; the margin covers webhooks
    processed out of order. The rows are read by (conversation, created_at), the message table's index.
    """
    reactions = Message.objects.filter(conversation_id=conversation.pk, message_type=MessageType.REACTION)
    if older_hidden and shown:
        reactions = reactions.filter(created_at__gte=shown[0].created_at - REACTION_ORDER_MARGIN)
    # Not conversation.messages: the related manager would read each row's deferred conversation_id.
    return (reactions.only("id", "direction", "text", "content", "reply_to_id", "created_at", "received_at")
            .order_by("created_at", "id"))


def _reaction_target(reaction: Message, by_id: dict, by_provider_id: dict) -> Message | None:
    content = reaction.content if isinstance(reaction.content, dict) else {}
    for message_id in (reaction.reply_to_id, content.get("target_message")):
        if isinstance(message_id, int) and message_id in by_id:
            return by_id[message_id]
    for key in ("target", "quoted_message_id"):
        if isinstance(content.get(key), str) and content[key] in by_provider_id:
            return by_provider_id[content[key]]
    return None


def _reaction_emoji(reaction: Message) -> str:
    content = reaction.content if isinstance(reaction.content, dict) else {}
    return str(content.get("emoji") or reaction.text or "")


def _attach_reactions(shown: list[Message], reactions, notes_since=None) -> list[Message]:
    """Put each side's latest reaction on the message it reacts to (a later one replaces it, an empty
    emoji removes it); return the reactions, made since `notes_since`, whose target is not on the page."""
    by_id = {message.pk: message for message in shown}
    by_provider_id = {message.provider_message_id: message for message in shown if message.provider_message_id}
    latest: dict[int, dict[str, Message]] = {}
    unplaced = []
    for reaction in reactions:
        target = _reaction_target(reaction, by_id, by_provider_id)
        if target is not None:
            latest.setdefault(target.pk, {})[reaction.direction] = reaction
        elif _reaction_emoji(reaction) and (notes_since is None or reaction.created_at >= notes_since):
            unplaced.append(reaction)
    for message in shown:
        message.chat_reactions = [
            {"emoji": _reaction_emoji(reaction), "by": "customer" if side == Message.Direction.INBOUND else "us",
             "at": reaction.created_at}
            for side, reaction in sorted(latest.get(message.pk, {}).items()) if _reaction_emoji(reaction)
        ]
    return unplaced


def _safe_link(url) -> str:
    # Only web links become hrefs: a stored "javascript:" URL must never be clickable.
    return url if isinstance(url, str) and url.startswith(("https://", "http://")) else ""


def _joined(parts) -> str:
    return mark_safe("".join(parts))  # noqa: S308 - every part was built by format_html, which escaped it


def _chat_error(message: Message) -> str:
    if not (message.error_code or message.error_title):
        return ""
    error = " ".join(filter(None, [message.error_code and f"({message.error_code})", message.error_title]))
    if message.status == MessageStatus.FAILED:
        return f"Failed {error}"
    if message.status == MessageStatus.DEAD_LETTER:
        return f"Dead letter {error}: retry or discard it in the dead letters"
    if message.status in (MessageStatus.QUEUED, MessageStatus.SENDING):
        return f"Last attempt failed {error}; it will be retried"
    return ""  # an earlier failure, since overtaken by a successful send


class ChatRenderer:
    """
    The rows of the chat, one line of HTML per message, built with format_html (every text escaped).
    Python rather than a template loop: for 500 messages a template costs about ten times as much.
    """

    def __init__(self, conversation: Conversation):
        self.conversation = conversation
        self.message_url = reverse("admin:whatsapp_message_changelist")
        self.time_zone = timezone.get_current_timezone()

    def when(self, moment) -> str:
        return moment.astimezone(self.time_zone).strftime("%Y-%m-%d %H:%M") if moment else ""

    def row(self, message: Message) -> str:
        if message.message_type == MessageType.REACTION:
            return self.reaction_note(message)
        return self.bubble(message)

    def bubble(self, message: Message) -> str:
        outbound = message.direction == Message.Direction.OUTBOUND
        parts = [format_html('<div class="wa-purpose">{}</div>', message.get_purpose_display())
                 if message.purpose else "", self.quote(message)]
        media = self.media(message)
        if message.text:
            parts.append(format_html('<div class="wa-text">{}</div>', linebreaksbr(message.text, autoescape=True)))
        elif not media:
            parts.append(format_html('<div class="wa-text">[{}]</div>', message.get_message_type_display()))
        parts += media
        if message.transcript:
            parts.append(format_html('<div class="wa-ai-transcript">Transcript: {}</div>', message.transcript))
        parts.append(self.reactions(message))
        parts.append(self.meta(message, outbound))
        error = _chat_error(message) if outbound else ""
        if error:
            parts.append(format_html('<div class="wa-error">{}</div>', error))
        return format_html('<div class="wa-row wa-{}" id="message-{}"><div class="wa-bubble wa-{}">{}</div></div>\n',
                           message.direction, message.pk, message.direction, _joined(parts))

    def quote(self, message: Message) -> str:
        quoted = message.reply_to
        if quoted is not None:
            who = "You" if quoted.direction == Message.Direction.OUTBOUND else "Customer"
            text = Truncator(quoted.text or quoted.get_message_type_display()).chars(120)
            return format_html('<a class="wa-quote" href="#message-{}">{}: {}</a>', quoted.pk, who, text)
        if isinstance(message.content, dict) and message.content.get("quoted_message_id"):
            return format_html('<div class="wa-quote">{}</div>', "Reply to a message not stored here")
        return ""

    def media(self, message: Message) -> list[str]:
        """A link to each stored file of the message (served by media_view), or why there is none yet."""
        parts = []
        for media in message.media.all():
            label = media.filename or media.mime_type or "file"
            if media.state == Media.State.FETCHED:
                url = reverse("admin:whatsapp_conversation_media", args=[self.conversation.pk, media.pk])
                size = f" ({filesizeformat(media.size_bytes)})" if media.size_bytes else ""
                parts.append(format_html('<div class="wa-media">📎 <a href="{}">{}</a>{}</div>', url, label, size))
            else:
                problem = f": {Truncator(media.last_error).chars(120)}" if media.last_error else ""
                parts.append(format_html('<div class="wa-media">📎 {} <em>({}{})</em></div>', label,
                                         media.get_state_display().lower(), problem))
        if not parts and message.message_type in MEDIA_TYPES:
            # Sent by link rather than uploaded: the provider fetched it from there.
            link = _safe_link((message.content or {}).get("url"))
            if link:
                parts.append(format_html('<div class="wa-media">📎 <a href="{}" rel="noopener noreferrer" '
                                         'target="_blank">{}</a></div>', link, link))
        return parts

    def reactions(self, message: Message) -> str:
        if not message.chat_reactions:
            return ""
        badges = (format_html('<span class="wa-reaction" title="reaction from {}, {}">{}</span>', reaction["by"],
                              self.when(reaction["at"]), reaction["emoji"]) for reaction in message.chat_reactions)
        return format_html('<div class="wa-reactions">{}</div>', _joined(badges))

    def meta(self, message: Message, outbound: bool) -> str:
        at = message.created_at if outbound or not message.received_at else message.received_at
        kind = message.message_type
        if kind == MessageType.TEMPLATE and isinstance(message.content, dict) and message.content.get("template"):
            kind = f"template {message.content['template']}"
        return format_html('<div class="wa-meta"><a href="{}{}/change/">#{}</a> · {} · {}{}</div>', self.message_url,
                           message.pk, message.pk, self.when(at), kind, self.status(message) if outbound else "")

    def status(self, message: Message) -> str:
        mark, words = STATUS_MARKS.get(message.status, ("", message.status))
        steps = [("queued", message.queued_at), ("sent", message.sent_at), ("delivered", message.delivered_at),
                 ("read", message.read_at), ("played", message.played_at), ("failed", message.failed_at)]
        history = ", ".join(f"{step} {self.when(moment)}" for step, moment in steps if moment)
        return format_html(' · <span class="wa-status wa-status-{}" title="{}">{} {}</span>', message.status,
                           history, mark, words)

    def reaction_note(self, reaction: Message) -> str:
        who = "we reacted" if reaction.direction == Message.Direction.OUTBOUND else "the customer reacted"
        return format_html('<div class="wa-row wa-note"><span class="wa-reaction-note">{} {} to a message not '
                           'shown here · {}</span></div>\n', _reaction_emoji(reaction), who,
                           self.when(reaction.created_at))


def conversation_chat(conversation: Conversation) -> dict:
    """The chat above the form, in a fixed number of queries whatever the conversation's length."""
    shown, older_hidden = _chat_messages(conversation)
    notes_since = shown[0].created_at if older_hidden and shown else None
    unplaced = _attach_reactions(shown, _reactions_query(conversation, shown, older_hidden), notes_since)
    timeline = sorted([*shown, *unplaced], key=lambda message: (message.created_at, message.pk))
    renderer = ChatRenderer(conversation)
    message_url = renderer.message_url
    return {"rows": _joined(renderer.row(item) for item in timeline), "empty": not timeline,
            "older_hidden": older_hidden, "limit": CHAT_MESSAGE_LIMIT,
            "all_messages_url": f"{message_url}?conversation__id__exact={conversation.pk}"}


def conversation_contact_card(contact) -> dict:
    """The contact's identities, consent and mapping, for the top of the conversation page."""
    identities = list(contact.identities.order_by("kind", "value"))
    # Usually joined already (ConversationAdmin.get_queryset); a missing one raises an AttributeError subclass.
    mapping = getattr(contact, "user_mapping", None)
    card = {"contact": contact, "identities": identities, "mapping": mapping,
            "contact_url": _reverse_or_none("admin:contacts_contact_change", contact.pk)}
    if mapping is not None:
        card["user_url"] = _user_admin_url(mapping.user)
    else:
        # The queue where it can be mapped; the contact's own page if the queue is not there.
        card["unmapped_url"] = _reverse_or_none("admin:contacts_unmappedcontact_changelist") or card["contact_url"]
    return card


class MappedUserFilter(admin.SimpleListFilter):
    """Conversations of one mapped user. The sidebar lists a few mapped users; any other is reached by
    ?mapped_user=<user id> (the user's link on a conversation page) or by searching their username."""

    title = "mapped user"
    parameter_name = "mapped_user"
    listed_users = 30

    def lookups(self, request, model_admin):
        # EXISTS rather than a join and DISTINCT: the first users by name, without reading every mapping.
        users = (get_user_model().objects.filter(Exists(ContactUserMapping.objects.filter(user=OuterRef("pk"))))
                 .order_by(get_user_model().USERNAME_FIELD)[:self.listed_users])
        choices = [("none", "Not mapped"), ("any", "Mapped to any user")]
        choices += [(str(user.pk), str(user)) for user in users]
        chosen = self.value()
        if chosen and chosen.isdigit() and chosen not in {value for value, _ in choices}:
            user = get_user_model().objects.filter(pk=int(chosen)).first()
            if user is not None:
                choices.append((chosen, str(user)))
        return choices

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        # (NOT) EXISTS: a LEFT JOIN ... IS NULL cannot become an anti-join here, because the list also joins
        # the mapping to show its user, and PostgreSQL then misjudges the rows (300 ms on 100,000 contacts).
        mapped = Exists(ContactUserMapping.objects.filter(contact_id=OuterRef("contact_id")))
        if value == "none":
            return queryset.filter(~mapped)
        if value == "any":
            return queryset.filter(mapped)
        if not value.isdigit():
            raise IncorrectLookupParameters(f"mapped_user must be a user id, 'any' or 'none', not {value!r}")
        return queryset.filter(contact__user_mapping__user_id=int(value))


@admin.register(Conversation)
class ConversationAdmin(AuditedModelAdmin):
    list_display = ["__str__", "provider", "contact", "mapped_user", "last_message_at", "assignee", "message_count"]
    list_filter = ["provider", MappedUserFilter, ("assignee", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["contact__profile_name", "contact__identities__value", "external_conversation_id",
                     "contact__user_mapping__user__username"]
    autocomplete_fields = ["contact", "assignee"]
    readonly_fields = ["created_at", "last_message_at"]
    fieldsets = [
        (None, {"fields": ["provider", "contact", "assignee", "external_conversation_id", "last_message_at",
                           "created_at"]}),
        ("Context and summary", {"fields": ["context", "ai_summary"], "classes": ["collapse"]}),
    ]
    list_select_related = ["provider", "contact", "assignee", "contact__user_mapping__user"]
    change_form_template = "admin/whatsapp/conversation/change_form.html"

    def get_queryset(self, request):
        # The list and the conversation page both show these. (The changelist skips list_select_related
        # once the queryset has a select_related, so it is all named here.)
        return (super().get_queryset(request).select_related(*self.list_select_related)
                .annotate(message_total=count_subquery(Message.objects.filter(conversation=OuterRef("pk")))))

    def get_urls(self):
        send = path("<int:conversation_id>/send/", self.admin_site.admin_view(self.send_view),
                    name="whatsapp_conversation_send")
        media = path("<int:conversation_id>/media/<int:media_id>/", self.admin_site.admin_view(self.media_view),
                     name="whatsapp_conversation_media")
        return [send, media, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        conversation = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if conversation is not None and self.has_view_or_change_permission(request, conversation):
            extra_context.update(chat=conversation_chat(conversation),
                                 contact_card=conversation_contact_card(conversation.contact),
                                 message_total=conversation.message_total)
        if conversation is not None and self.has_change_permission(request, conversation):
            extra_context.update(self._send_context(conversation,
                                                    ConversationSendForm(provider=conversation.provider)))
        return super().change_view(request, object_id, form_url, extra_context)

    def media_view(self, request, conversation_id, media_id):
        """A stored file of one of this conversation's messages, for whoever may see the conversation."""
        if not (self.has_view_or_change_permission(request)
                and (request.user.has_perm("whatsapp.view_media") or request.user.has_perm("whatsapp.change_media"))):
            raise PermissionDenied
        media = get_object_or_404(Media.objects.only("archive_path", "mime_type", "filename", "state",
                                                     "pending_content"),
                                  pk=media_id, message__conversation_id=conversation_id)
        if media.state != Media.State.FETCHED:
            raise Http404("This file has not been downloaded.")
        try:
            data = media_content(media)
        except ObjectNotFound:
            raise Http404("This file is no longer in storage.") from None
        except StorageError:
            return HttpResponse("The archive storage cannot be reached right now; try again shortly.",
                                status=503, content_type="text/plain")
        mime_type = media.mime_type or "application/octet-stream"
        response = HttpResponse(data, content_type=mime_type)
        # A customer's file is untrusted: only plain media open in the browser (never SVG, which runs
        # scripts); everything else downloads.
        inline = mime_type.split("/")[0] in ("image", "audio", "video") and "svg" not in mime_type
        response["Content-Disposition"] = content_disposition_header(not inline,
                                                                     media.filename or f"media-{media.pk}")
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "private, no-store"
        return response

    def _send_context(self, conversation, form, preview=None) -> dict:
        return {"conversation": conversation, "send_form": form, "preview": preview,
                "window": session_current(conversation)}

    def send_view(self, request, conversation_id):
        """The conversation page's send form posts here: Preview shows the text, Send queues it."""
        conversation = get_object_or_404(Conversation.objects.select_related("provider", "contact"),
                                         pk=conversation_id)
        if not self.has_change_permission(request, conversation):
            raise PermissionDenied
        form = ConversationSendForm(request.POST or None, provider=conversation.provider)
        preview = None
        if request.method == "POST" and form.is_valid():
            if "_preview" in request.POST:
                preview = _send_preview(form.cleaned_data)
            elif self._send(request, conversation, form.cleaned_data):
                return redirect("admin:whatsapp_conversation_change", conversation.pk)
        context = {**self.admin_site.each_context(request), "title": f"Send a message to {conversation.contact}",
                   "opts": self.model._meta, **self._send_context(conversation, form, preview)}
        return render(request, "admin/whatsapp/conversation/send.html", context)

    def _send(self, request, conversation, data) -> bool:
        try:
            message, created = message_send(_conversation_send_request(conversation, data, request.user))
        except SendRefused as refusal:
            self.message_user(request, _refusal_text(refusal), messages.ERROR)
            return False
        self.message_user(request, f"Message #{message.pk} queued." if created
                          else f"Message #{message.pk} was already queued by this form; not sent twice.")
        return True

    def get_readonly_fields(self, request, obj=None):
        # A conversation belongs to one provider and one contact for good.
        return [*self.readonly_fields, "provider", "contact"] if obj else self.readonly_fields

    @admin.display(description="Mapped user", ordering="contact__user_mapping__user__username")
    def mapped_user(self, obj):
        mapping = getattr(obj.contact, "user_mapping", None)
        return mapping.user if mapping is not None else "-"

    @admin.display(description="Messages", ordering="message_total")
    def message_count(self, obj):
        return obj.message_total


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


class MessageViewPermission:
    """Send attempts and dead letters are views of messages: whoever may see messages may see them
    (the default groups grant permissions on Message, not on these models)."""

    def has_view_permission(self, request, obj=None):
        return (request.user.has_perm("whatsapp.view_message") or request.user.has_perm("whatsapp.change_message")
                or super().has_view_permission(request, obj))


class SendAttemptInline(MessageViewPermission, admin.TabularInline):
    model = SendAttempt
    fields = ["number", "started_at", "finished_at", "outcome", "error_code", "error_title", "error_detail",
              "http_status", "retry_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "send attempts (the send log)"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.display(description="Text")
def short_text(obj):
    return (obj.text or "")[:60]


@admin.register(Message)
class MessageAdmin(AuditedModelAdmin):
    # Messages are written by the inbound and send pipelines; admins read them (and may delete them).
    list_display = ["id", "created_at", "direction", "message_type", short_text, "status", "provider",
                    "conversation"]
    list_filter = ["direction", "status", "lane", "message_type", "provider", "processing_status"]
    search_fields = ["text", "provider_message_id", "conversation__contact__profile_name"]
    raw_id_fields = ["conversation", "session", "reply_to", "template", "created_by"]
    readonly_fields = ["provider_message_id", "duplicate_count", "attempts", "lane", "next_attempt_at", "hold_reason",
                       "error_title", "dead_lettered_at", "created_at", "updated_at", "pretty_content"]
    inlines = [MediaInline, StatusEventInline, SendAttemptInline]
    list_select_related = ["provider", "conversation__contact"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Content")
    def pretty_content(self, obj):
        return pretty_json(obj.content)


@admin.register(DeadLetter)
class DeadLetterAdmin(MessageViewPermission, ReadOnlyModelAdmin):
    """Outbound messages whose retries ran out or whose outcome is unknown: a person retries or discards."""

    list_display = ["id", "dead_lettered_at", "provider", "contact", "message_type", short_text, "error_code",
                    "error_title", "attempts"]
    list_filter = ["provider", "error_code"]
    search_fields = ["text", "conversation__contact__profile_name", "provider_message_id"]
    list_select_related = ["provider", "conversation__contact"]
    ordering = ["-dead_lettered_at", "-pk"]
    fieldsets = [
        ("Why it stopped", {"fields": ["error_code", "error_title", "error_detail", "attempts", "dead_lettered_at"]}),
        ("Message", {"fields": ["provider", "conversation", "message_type", "text", "pretty_content", "lane",
                                "created_by", "queued_at", "created_at"]}),
    ]
    readonly_fields = ["pretty_content"]
    inlines = [SendAttemptInline]
    actions = ["retry", "discard"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(direction=Message.Direction.OUTBOUND,
                                                    status=MessageStatus.DEAD_LETTER)

    def has_delete_permission(self, request, obj=None):
        return False  # discard instead: the message stays, failed, with an audit entry

    def has_resend_permission(self, request):
        return request.user.has_perm("whatsapp.change_message")

    @admin.display(description="Contact", ordering="conversation__contact__profile_name")
    def contact(self, obj):
        return obj.conversation.contact

    @admin.display(description="Content")
    def pretty_content(self, obj):
        return pretty_json(obj.content)

    @admin.action(description="Retry now", permissions=["resend"])
    def retry(self, request, queryset):
        total = len(queryset)
        queued = sum(message_retry(message=message, actor=request.user) for message in queryset)
        self.message_user(request, f"{queued} of {total} message(s) queued again.")

    @admin.action(description="Discard (mark failed)", permissions=["resend"])
    def discard(self, request, queryset):
        total = len(queryset)
        discarded = sum(message_discard(message=message, actor=request.user) for message in queryset)
        self.message_user(request, f"{discarded} of {total} message(s) discarded.")


@admin.register(SendAttempt)
class SendAttemptAdmin(MessageViewPermission, ReadOnlyModelAdmin):
    list_display = ["message", "number", "outcome", "error_code", "started_at"]
    list_filter = ["outcome"]
    search_fields = ["error_code", "error_title", "correlation_id"]
    raw_id_fields = ["message"]
    list_select_related = ["message"]
    date_hierarchy = "started_at"


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


# --- The archive ---------------------------------------------------------------------------------


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def archive_backlog_note() -> str:
    """One line for the lists of archived rows: what waits for the archive storage, if anything."""
    backlog = archive_backlog()
    parts = []
    if backlog["pending_archive"]:
        parts.append(f"{backlog['pending_archive']} waiting for the archive (webhook bodies and media; the oldest "
                     f"for {_duration(backlog['oldest_pending_seconds'])})")
    if backlog["pending_deletions"]:
        parts.append(f"{backlog['pending_deletions']} storage deletion(s) not yet confirmed")
    return "; ".join(parts)


class LeanChangeList(ChangeList):
    """A list page that leaves the model's `list_deferred` columns (raw bytes) in the database."""

    def get_queryset(self, request, exclude_parameters=None):
        return super().get_queryset(request, exclude_parameters).defer(*self.model_admin.list_deferred)


class ArchivedRowAdmin(ReadOnlyModelAdmin):
    """Rows whose bytes go to the archive storage (media, webhook bodies): their archive state in the list,
    a filter on it, the "Archive now" action and a note on what waits."""

    list_deferred: tuple[str, ...] = ()

    def get_changelist(self, request, **kwargs):
        return LeanChangeList

    def changelist_view(self, request, extra_context=None):
        extra_context = dict(extra_context or {})
        if request.method == "GET":
            extra_context.setdefault("subtitle", archive_backlog_note() or None)
        return super().changelist_view(request, extra_context)

    @admin.display(description="Archive", ordering="archive_status")
    def archive(self, obj):
        label = obj.get_archive_status_display()
        if obj.archive_status != ArchiveStatus.PENDING:
            return label
        return format_html('<span title="{}">{} ({} attempt(s))</span>', obj.archive_error, label,
                           obj.archive_attempts)

    def has_archive_permission(self, request):
        # The change permission of the model (ReadOnlyModelAdmin refuses changes through forms).
        opts = self.model._meta
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(description="Archive now (rows waiting for the archive)", permissions=["archive"])
    def archive_now(self, request, queryset):
        selected = queryset.count()
        queued = archive_retry_now(queryset, actor=request.user)
        note = "" if queued == selected else (f" The other {selected - queued} were not waiting (archived already, "
                                              "or not due for the archive).")
        level = messages.SUCCESS if queued else messages.WARNING
        self.message_user(request, f"{queued} of {selected} selected row(s) handed to a worker to archive now.{note}",
                          level)


@admin.register(Media)
class MediaAdmin(ArchivedRowAdmin):
    list_display = ["id", "message", "mime_type", "state", "attempts", "size_bytes", "archive", "last_error",
                    "created_at"]
    list_filter = ["state", "archive_status", "mime_type"]
    search_fields = ["provider_media_id", "sha256", "filename", "archive_path"]
    raw_id_fields = ["message"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    actions = ["retry_download", "archive_now"]
    list_select_related = ["message"]
    list_deferred = ("pending_content",)
    fieldsets = [
        (None, {"fields": ["message", "provider_media_id", "source_url", "mime_type", "filename", "caption",
                           "sha256", "size_bytes", "public_token", "created_at"]}),
        ("Download", {"fields": ["state", "attempts", "last_error", "expires_at", "next_attempt_at",
                                 "fetched_at"]}),
        ("Archive", {"fields": [*ARCHIVE_FIELDS, "waiting_bytes"]}),
    ]
    readonly_fields = ["created_at", "waiting_bytes"]

    @admin.display(description="Held in the database")
    def waiting_bytes(self, obj):
        if obj.pending_content is None:
            return "-"
        return f"{filesizeformat(len(obj.pending_content))}, until the archive storage takes the file"

    @admin.action(description="Retry the download now")
    def retry_download(self, request, queryset):
        count = media_retry(queryset.exclude(state=Media.State.FETCHED), actor=request.user)
        self.message_user(request, f"{count} download(s) queued.")


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
WEBHOOK_ARCHIVE_FIELDS = [*ARCHIVE_FIELDS, "body_pruned_at", "message_ids", "contacts"]


def _body_html(raw: bytes, content_type: str):
    try:
        if content_type == "application/x-www-form-urlencoded":
            return pretty_json(dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True)))
        return pretty_json(json.loads(raw.decode("utf-8")))
    except (UnicodeDecodeError, ValueError):
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", raw.decode("utf-8", "replace"))


@admin.register(WebhookEvent)
class WebhookEventAdmin(ArchivedRowAdmin):
    list_display = ["id", "received_at", "kind", "provider", "status", "http_status", "signature_valid",
                    "event_count", "attempts", "next_attempt", "archive", "rejection_reason", "unrouted_to"]
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

    @admin.display(description="Next attempt", ordering="next_attempt_at")
    def next_attempt(self, obj):
        if obj.status == WebhookEvent.Status.FAILED and obj.next_attempt_at is None:
            return "gave up"
        if obj.status not in (WebhookEvent.Status.PENDING, WebhookEvent.Status.FAILED) or obj.next_attempt_at is None:
            return "-"
        return date_format(timezone.localtime(obj.next_attempt_at), "DATETIME_FORMAT")

    @admin.display(description="Body (as received)")
    def pretty_body(self, obj):
        pruned = (date_format(timezone.localtime(obj.body_pruned_at), "DATETIME_FORMAT")
                  if obj.body_pruned_at else "")
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


@admin.register(ArchiveBucket)
class ArchiveBucketAdmin(ReadOnlyModelAdmin):
    """The buckets made in the archive storage: one per user, one per provider for unmapped contacts. The
    rows are the existence cache; an erasure removes a user's bucket and its row."""

    list_display = ["name", "owner", "backend", "created_at"]
    list_filter = ["backend"]
    search_fields = ["name", "user__username", "user__email", "provider__name"]
    list_select_related = ["user", "provider"]
    fields = ["name", "backend", "owner_key", "user", "provider", "created_at"]
    readonly_fields = ["created_at"]
    date_hierarchy = "created_at"

    def has_delete_permission(self, request, obj=None):
        return False  # the bucket stays in the storage; forgetting it here would only hide it

    @admin.display(description="Owner", ordering="owner_key")
    def owner(self, obj):
        if obj.user_id:
            return format_html("user {}", obj.user)
        if obj.provider_id:
            return format_html("provider {} (contacts mapped to no user)", obj.provider.name)
        return f"{obj.owner_key} (gone)"


@admin.register(StorageDeletion)
class StorageDeletionAdmin(ReadOnlyModelAdmin):
    """Objects and buckets that must leave the archive storage (erasures, expired exports); a row goes
    once the storage confirms the deletion."""

    list_display = ["target", "name", "reason", "attempts", "next_attempt_at", "short_error", "created_at"]
    list_filter = ["target", "backend"]
    search_fields = ["name", "reason"]
    fields = ["target", "name", "backend", "reason", "attempts", "next_attempt_at", "last_error", "created_at"]
    readonly_fields = ["created_at"]

    def has_delete_permission(self, request, obj=None):
        return False  # a deletion leaves once the storage confirms it, never by being forgotten

    @admin.display(description="Last error")
    def short_error(self, obj):
        return Truncator(obj.last_error).chars(100) or "-"
