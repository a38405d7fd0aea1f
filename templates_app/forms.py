"""
The admin's template forms. The authoring form shows a template as an author thinks of it (a header,
a body, a footer, buttons, example values) and composes WhatsApp's component list from those parts; the
rules themselves live in validation.py, whose messages land on the field they are about.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms

from templates_app.models import MessageTemplate
from templates_app.validation import template_errors
from whatsapp.models import Provider
from whatsapp.providers import backend_class_for, registered_kinds
from whatsapp.providers.events import TemplateManagement
from whatsapp.providers.whatsapp_templates import find_component

HEADER_FORMATS = [("", "No header"), ("TEXT", "Text"), ("IMAGE", "Image"), ("VIDEO", "Video"),
                  ("DOCUMENT", "Document"), ("LOCATION", "Location")]

# Where each section of template_errors() is shown; None: above the form.
ERROR_FIELDS = {"header": "header_text", "body": "body_text", "footer": "footer_text", "components": None}

BUTTONS_HELP = (
    'A JSON list of buttons, at most 10: quick replies grouped together, before or after the others. Types: '
    'QUICK_REPLY (a label), URL (a label and a url that may end in {{1}}), PHONE_NUMBER (a label and a '
    'phone_number in E.164) and COPY_CODE. Example: [{"type": "QUICK_REPLY", "text": "Yes"}, '
    '{"type": "URL", "text": "Track", "url": "https://shop.example/track/{{1}}"}, '
    '{"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+15550001111"}]. Leave empty for none.')
EXAMPLES_HELP = (
    'A JSON object with an example value for every parameter: "header" and "body" by parameter name '
    '(or a list, in order, for {{1}}, {{2}}...), "buttons" by the button\'s position in the list counting from 0 '
    '(the end of a URL, or the code a COPY_CODE button copies); a media header takes {"url": "https://..."}. '
    'Example: {"header": {"1": "Summer"}, "body": {"1": "Ana", "2": "1042"}, "buttons": {"1": "1042"}}.')


def authoring_kinds() -> list[str]:
    """The provider kinds whose templates are written here (the others import theirs, or have none)."""
    return [kind for kind in registered_kinds()
            if backend_class_for(kind).template_management == TemplateManagement.SUBMIT]


def _component(components: Any, kind: str) -> dict:
    return find_component(components, kind) or {}


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) if value else ""


def decompose(components: Any) -> dict[str, Any]:
    """The form's initial values for a stored component list."""
    header = _component(components, "HEADER")
    return {
        "header_format": str(header.get("format", "TEXT")).upper() if header else "",
        "header_text": header.get("text", "") if header else "",
        "body_text": _component(components, "BODY").get("text", ""),
        "footer_text": _component(components, "FOOTER").get("text", ""),
        "buttons": _pretty(_component(components, "BUTTONS").get("buttons") or []),
    }


def compose(data: dict[str, Any]) -> list[dict[str, Any]]:
    """WhatsApp's component list (our stored shape) from the form's parts; empty parts are left out."""
    components: list[dict[str, Any]] = []
    header_format = data.get("header_format") or ""
    header_text = data.get("header_text") or ""
    if header_format:
        header: dict[str, Any] = {"type": "HEADER", "format": header_format}
        if header_format == "TEXT" or header_text:
            header["text"] = header_text  # text on a media header is kept, so validation can point at it
        components.append(header)
    components.append({"type": "BODY", "text": data.get("body_text") or ""})
    if data.get("footer_text"):
        components.append({"type": "FOOTER", "text": data["footer_text"]})
    if data.get("buttons"):
        components.append({"type": "BUTTONS", "buttons": data["buttons"]})
    return components


def _json(raw: str, expected: type, example: str) -> Any:
    raw = (raw or "").strip()
    if not raw:
        return expected()
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise forms.ValidationError(f"Not valid JSON: {exc}.") from None
    if not isinstance(value, expected):
        kind = "a list" if expected is list else "an object"
        raise forms.ValidationError(f"Give {kind}, e.g. {example}.")
    return value


class TemplateForm(forms.ModelForm):
    header_format = forms.ChoiceField(choices=HEADER_FORMATS, required=False, label="Header")
    header_text = forms.CharField(required=False, strip=False, label="Header text",
                                  help_text="Up to 60 characters, at most one parameter. Only for a Text header.")
    body_text = forms.CharField(required=False, strip=False, label="Body",
                                widget=forms.Textarea(attrs={"rows": 6, "cols": 60}),
                                help_text="Up to 1024 characters. Parameters: {{1}}, {{2}}... or {{first_name}}, "
                                          "never at the very start or end, never two side by side.")
    footer_text = forms.CharField(required=False, strip=False, label="Footer",
                                  help_text="Up to 60 characters, no parameters.")
    buttons = forms.CharField(required=False, label="Buttons", help_text=BUTTONS_HELP,
                              widget=forms.Textarea(attrs={"rows": 5, "cols": 60, "spellcheck": "false"}))
    examples = forms.CharField(required=False, label="Example values", help_text=EXAMPLES_HELP,
                               widget=forms.Textarea(attrs={"rows": 4, "cols": 60, "spellcheck": "false"}))

    # Set by the admin on a second pass, when the service refused what this form accepted (e.g. a name
    # another number of the same business account already uses): {section: [message, ...]}.
    service_errors: dict[str, list[str]] = {}

    class Meta:
        model = MessageTemplate
        fields = ["provider", "name", "language", "category", "parameter_format"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "provider" in self.fields:
            self.fields["provider"].queryset = Provider.objects.filter(kind__in=authoring_kinds(), is_active=True)
            self.fields["provider"].help_text = ("The number whose business account holds the template. Chatwoot "
                                                 "inboxes keep their own templates: they are imported by the sync.")
        if self.instance.pk:
            self.initial.update(decompose(self.instance.components))
            self.initial["examples"] = _pretty(self.instance.examples)

    def clean_buttons(self) -> list:
        return _json(self.cleaned_data.get("buttons", ""), list, '[{"type": "QUICK_REPLY", "text": "Yes"}]')

    def clean_examples(self) -> dict:
        return _json(self.cleaned_data.get("examples", ""), dict, '{"body": {"1": "Ana"}}')

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not any(name in self.errors for name in ("buttons", "examples")):
            cleaned["components"] = compose(cleaned)
            # A field Django already refused (e.g. an empty name) keeps that one message.
            refused = set(self.errors)
            errors = template_errors(**self.authored_values(cleaned))
            self._attach({section: messages for section, messages in errors.items()
                          if ERROR_FIELDS.get(section, section) not in refused})
        self._attach(self.service_errors)
        return cleaned

    def validate_unique(self) -> None:
        # Names are unique per business account, across numbers: the workflow service checks that, with
        # a message that says so. The model's narrower (provider, ..., version) check would only repeat it.
        pass

    def authored_values(self, cleaned: dict[str, Any] | None = None) -> dict[str, Any]:
        """The workflow service's authored fields; name and language come from the row when not on the form."""
        cleaned = self.cleaned_data if cleaned is None else cleaned
        values = {name: cleaned.get(name, getattr(self.instance, name))
                  for name in ("name", "language", "category", "parameter_format")}
        return {**values, "components": cleaned.get("components", []), "examples": cleaned.get("examples", {})}

    def changes(self) -> dict[str, Any]:
        """What the author may change on this form (name and language are not on it for a next version)."""
        values = self.authored_values()
        return {name: value for name, value in values.items()
                if name in self.fields or name in ("components", "examples")}

    def _attach(self, errors: dict[str, list[str]]) -> None:
        for section, messages in (errors or {}).items():
            field = ERROR_FIELDS.get(section, section)
            on_form = field in self.fields
            for message in messages:
                self.add_error(field if on_form else None, self._sentence(section, message, on_form))

    def _sentence(self, section: str, message: str, on_form: bool) -> str:
        """validation.py's messages are clauses ("must be one of ...", "the body ends with ..."): make each a
        sentence, naming its field where the message does not or where it is shown above the form."""
        field = ERROR_FIELDS.get(section, section)
        label = str(self.fields[field].label or field) if on_form else section.replace("_", " ")
        if message.startswith(("is ", "must ")) or (not on_form and field is not None):
            message = f"{label.capitalize()}: {message}" if not on_form else f"{label} {message}"
        return message[:1].upper() + message[1:]


class RejectForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 70}), label="Reason",
        error_messages={"required": "Give the author a reason: a rejection without one cannot be acted on."},
        help_text="Shown to the template's author on the template's page, so they can fix it.")
