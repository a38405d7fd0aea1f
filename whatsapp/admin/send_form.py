"""
The conversation page's send box: a text (typed, or a saved reply), a file with the text as its caption, or
an approved template whose values are form fields of their own (one per parameter of its header, body and
buttons, with the template's example as a hint). What it sends is decided by what was filled in: a
template if one is chosen, else the file, else the text. Also what turns the form into a send request.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat

from core.admin.base import as_row_id
from templates_app.models import MessageTemplate
from templates_app.parameters import TemplateVariablesError, template_bind, template_render, template_spec
from templates_app.preview import template_preview
from templates_app.selectors import approved_templates_for
from whatsapp.models import Conversation, Provider, SavedReply
from whatsapp.providers.events import MessageType
from whatsapp.services.outbound import MediaInput, SendRequest, request_fingerprint
from whatsapp.services.send_rules import TEXT_MAX

# How an uploaded file is sent: the types WhatsApp plays or shows inline, each up to its kind's size
# (https://developers.facebook.com/docs/whatsapp/cloud-api/reference/media#supported-media-types); any
# other file, or a larger one, goes as a document, which the customer downloads.
INLINE_MEDIA = {
    MessageType.IMAGE: ({"image/jpeg", "image/png"}, 5 * 1024 * 1024),
    MessageType.VIDEO: ({"video/mp4", "video/3gpp"}, 16 * 1024 * 1024),
    MessageType.AUDIO: ({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}, 16 * 1024 * 1024),
}


def saved_replies_for(provider: Provider):
    """The saved replies offered on this number's conversations: its own and those of every number."""
    return SavedReply.objects.filter(provider__isnull=True) | SavedReply.objects.filter(provider=provider)


def _example(examples: Any, section: str, name: str) -> str:
    values = examples.get(section) if isinstance(examples, dict) else None
    if isinstance(values, list) and name.isdigit() and 0 < int(name) <= len(values):
        return str(values[int(name) - 1])
    if isinstance(values, dict):
        return str(values.get(name, ""))
    return ""


def template_value_fields(template: MessageTemplate) -> dict[str, forms.Field]:
    """One form field per value the template needs, named header__<name>, header_url, body__<name> and
    button__<index>, labelled as the author wrote the parameter."""
    spec = template_spec(template)
    examples = template.examples or {}
    fields: dict[str, forms.Field] = {}

    def text_field(label: str, example: str) -> forms.CharField:
        attrs = {"placeholder": example} if example else {}
        return forms.CharField(label=label, max_length=1024, widget=forms.TextInput(attrs={"size": 40, **attrs}),
                               help_text=f"For example: {example}" if example else "")

    if spec.header_format in ("IMAGE", "VIDEO", "DOCUMENT"):
        fields["header_url"] = forms.URLField(label=f"Header {spec.header_format.lower()} (https link)",
                                              widget=forms.URLInput(attrs={"size": 40}))
    for name in spec.header_params:
        fields[f"header__{name}"] = text_field(f"Header {{{{{name}}}}}", _example(examples, "header", name))
    for name in spec.body_params:
        fields[f"body__{name}"] = text_field(f"Body {{{{{name}}}}}", _example(examples, "body", name))
    for index, (button_type, needs_value) in spec.buttons.items():
        if needs_value:
            kind = "link's end" if button_type == "URL" else "code"
            fields[f"button__{index}"] = text_field(f"Button {index + 1} {kind}", _example(examples, "buttons",
                                                                                            str(index)))
    return fields


def template_values(template: MessageTemplate, data: dict) -> dict[str, Any]:
    """The values of the template's fields in the shape a send takes: {"header", "body", "buttons"}."""
    variables: dict[str, Any] = {"body": {}}
    for name in template_value_fields(template):
        value = data.get(name)
        if value in (None, ""):
            continue
        if name == "header_url":
            variables["header"] = {"url": value}
        elif name.startswith("button__"):
            variables.setdefault("buttons", {})[name.removeprefix("button__")] = value
        else:
            section, _, parameter = name.partition("__")
            variables.setdefault(section, {})[parameter] = value
    return variables


class SavedReplySelect(forms.Select):
    """Each option carries its reply's text, which the page's script copies into the message box."""

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        reply = getattr(value, "instance", None)
        if reply is not None:
            option["attrs"]["data-text"] = reply.text
        return option


class ConversationSendForm(forms.Form):
    text = forms.CharField(required=False, max_length=TEXT_MAX, label="Message",
                           widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Write a reply…"}))
    saved_reply = forms.ModelChoiceField(queryset=SavedReply.objects.none(), required=False, label="Saved reply",
                                         empty_label="Insert a saved reply…", widget=SavedReplySelect)
    file = forms.FileField(required=False, label="Attach a file",
                           help_text="Sent as an image, video, audio or document; the message is its caption.")
    template = forms.ModelChoiceField(queryset=MessageTemplate.objects.none(), required=False,
                                      label="Or send a template", empty_label="No template (send the message)")
    # A fresh key per form shown: a double click or a resubmitted page queues the message once.
    send_key = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args, provider: Provider, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["template"].queryset = approved_templates_for(provider)
        self.fields["saved_reply"].queryset = saved_replies_for(provider)
        self.fields["send_key"].initial = uuid.uuid4().hex
        self.chosen_template = self._chosen_template()
        self.template_body = ""
        if self.chosen_template is not None:
            self.fields.update(template_value_fields(self.chosen_template))
            self.template_body = template_spec(self.chosen_template).body_text

    def _chosen_template(self) -> MessageTemplate | None:
        """The template picked in the submitted (or initial) data, so that its value fields are part of the
        form; None when none or an unknown one is picked (the field's own validation says so)."""
        raw = self.data.get(self.add_prefix("template")) if self.is_bound else self.initial.get("template")
        if isinstance(raw, MessageTemplate):
            return raw
        pk = as_row_id(raw)
        return self.fields["template"].queryset.filter(pk=pk).first() if pk is not None else None

    @property
    def value_fields(self) -> list:
        """The bound fields of the chosen template's values, in the template's order."""
        return [self[name] for name in self.fields if name.startswith(("header_url", "header__", "body__",
                                                                         "button__"))]

    def clean_file(self):
        upload = self.cleaned_data.get("file")
        limit = settings.OUTBOUND_MEDIA_MAX_BYTES
        if upload is not None and upload.size > limit:
            raise forms.ValidationError(f"The file is {filesizeformat(upload.size)}; files up to "
                                        f"{filesizeformat(limit)} can be sent from here.")
        return upload

    def clean(self):
        cleaned = super().clean()
        template = cleaned.get("template")
        if template is not None:
            cleaned["kind"] = MessageType.TEMPLATE
            cleaned["variables"] = template_values(template, cleaned)
            return cleaned
        saved = cleaned.get("saved_reply")
        if not (cleaned.get("text") or "").strip() and saved is not None:
            # Without the page's script a picked saved reply is not copied into the box: send it as it is.
            cleaned["text"] = saved.text
        if cleaned.get("file") is not None:
            cleaned["kind"] = "media"
        elif (cleaned.get("text") or "").strip():
            cleaned["kind"] = MessageType.TEXT
        elif not self.errors:
            raise forms.ValidationError("Write a message, attach a file or choose a template.")
        return cleaned


def send_preview(data: dict) -> dict:
    """What the customer would read, or why the template's values do not fit; nothing is sent."""
    if data["kind"] != MessageType.TEMPLATE:
        return {"text": data["text"], "file": data.get("file").name if data.get("file") else ""}
    try:
        bound = template_bind(data["template"], data["variables"])
    except TemplateVariablesError as exc:
        return {"error": str(exc)}
    shown = template_preview(data["template"].components, data["variables"])
    return {"text": template_render(data["template"], bound), "template": shown}


def _media(upload) -> tuple[str, MediaInput]:
    mime_type = (getattr(upload, "content_type", "") or "application/octet-stream").split(";")[0].strip().lower()
    kind = next((kind for kind, (types, largest) in INLINE_MEDIA.items()
                 if mime_type in types and upload.size <= largest), MessageType.DOCUMENT)
    upload.seek(0)
    return kind, MediaInput(data=upload.read(), filename=upload.name, mime_type=mime_type)


def conversation_send_request(conversation: Conversation, data: dict, actor) -> SendRequest:
    kind, text, media = data["kind"], data.get("text") or "", None
    template = data["template"] if kind == MessageType.TEMPLATE else None
    variables = data["variables"] if template is not None else None
    if template is not None:
        text = ""
    if kind == "media":
        kind, media = _media(data["file"])
        media.caption, text = text, ""
    fingerprint = request_fingerprint({"kind": kind, "text": text, "template": template, "variables": variables,
                                       "file": hashlib.sha256(media.data).hexdigest() if media else "",
                                       "caption": media.caption if media else ""})
    # The form's one-time key with what it carries: the same form sent twice (a double click, a reload)
    # queues one message; sent again with other content (Back, edit, Send) it is a new message.
    key = f"admin:{conversation.pk}:{data['send_key']}:{fingerprint[:16]}" if data.get("send_key") else ""
    return SendRequest(provider=conversation.provider, contact=conversation.contact, message_type=kind,
                       text=text, media=media, template=template, template_variables=variables,
                       idempotency_key=key, fingerprint=fingerprint, actor=actor)
