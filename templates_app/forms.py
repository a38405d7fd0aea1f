"""
The admin's template forms. The authoring form shows a template as an author thinks of it (a header,
a body, a footer, a list of buttons, an example value beside each parameter) and composes WhatsApp's
component list and the example values from those parts; the rules themselves live in validation.py, whose
messages land on the field they are about (a button's on the buttons list, with its row marked).
"""

from __future__ import annotations

import re
from typing import Any

from django import forms

from templates_app.models import MessageTemplate
from templates_app.validation import BUTTONS_MAX, template_errors, template_parameters
from whatsapp.models import Provider
from whatsapp.providers import backend_class_for, registered_kinds
from whatsapp.providers.events import TemplateManagement
from whatsapp.providers.whatsapp_templates import MEDIA_HEADER_FORMATS, PARAMETER, find_component, section_examples

HEADER_FORMATS = [("", "No header"), ("TEXT", "Text"), ("IMAGE", "Image"), ("VIDEO", "Video"),
                  ("DOCUMENT", "Document"), ("LOCATION", "Location")]
BUTTON_TYPES = [("QUICK_REPLY", "Quick reply"), ("URL", "Open a link"), ("PHONE_NUMBER", "Call a phone number"),
                ("COPY_CODE", "Copy a code")]
# How a button type reads inside a sentence ("at most 2 link buttons").
BUTTON_TYPE_WORDS = {"QUICK_REPLY": "quick reply", "URL": "link", "PHONE_NUMBER": "call", "COPY_CODE": "copy code"}
BUTTON_ROW_KEYS = ("type", "text", "url", "phone_number", "example")
# Rows shown empty below the buttons, for a browser without JavaScript (with it, "Add a button" reveals them).
EMPTY_BUTTON_ROWS = 3

# Where each section of template_errors() is shown; None: above the form. "examples" is split by the part
# each message is about (see _error_field).
ERROR_FIELDS = {"header": "header_text", "body": "body_text", "footer": "footer_text", "components": None}
BUTTON_MESSAGE = re.compile(r"^button (\d+)(?: \((\w+)\))?")


def authoring_kinds() -> list[str]:
    """The provider kinds whose templates are written here (the others import theirs, or have none)."""
    return [kind for kind in registered_kinds()
            if backend_class_for(kind).template_management == TemplateManagement.SUBMIT]


def _component(components: Any, kind: str) -> dict:
    return find_component(components, kind) or {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _ordered_names(text: str) -> list[str]:
    """A text's parameters, each once, in the order their examples are given: {{1}}, {{2}}... by number,
    named ones as written."""
    names = list(dict.fromkeys(PARAMETER.findall(text or "")))
    return sorted(names, key=int) if names and all(name.isdigit() for name in names) else names


def _button_examples(examples: Any) -> dict[str, str]:
    """Button examples by index, from {"1": "abc"} or [{"index": 1, "value": "abc"}]."""
    raw = examples.get("buttons") if isinstance(examples, dict) else None
    if isinstance(raw, list):
        return {_text(item.get("index")): _text(item.get("value")) for item in raw if isinstance(item, dict)}
    return {str(key): _text(value) for key, value in raw.items()} if isinstance(raw, dict) else {}


def decompose(components: Any, examples: Any = None) -> dict[str, Any]:
    """The form's initial values for a stored component list and its example values."""
    examples = examples if isinstance(examples, dict) else {}
    header = _component(components, "HEADER")
    header_format = str(header.get("format", "TEXT")).upper() if header else ""
    header_values = examples.get("header")
    if header_format in MEDIA_HEADER_FORMATS:
        header_example = _text(header_values.get("url") if isinstance(header_values, dict) else header_values)
    else:
        values = section_examples(examples, "header")
        names = _ordered_names(_text(header.get("text")))
        header_example = values.get(names[0], "") if names else ""
    button_values = _button_examples(examples)
    buttons = [{"type": _text(button.get("type")).upper(), "text": _text(button.get("text")),
                "url": _text(button.get("url")), "phone_number": _text(button.get("phone_number")),
                "example": button_values.get(str(index), "")}
               for index, button in enumerate(_component(components, "BUTTONS").get("buttons") or [])
               if isinstance(button, dict)]
    return {
        "header_format": header_format,
        "header_text": _text(header.get("text")),
        "header_example": header_example,
        "body_text": _text(_component(components, "BODY").get("text")),
        "body_examples": section_examples(examples, "body"),
        "footer_text": _text(_component(components, "FOOTER").get("text")),
        "buttons": buttons,
    }


def _button(row: dict[str, str]) -> dict[str, Any]:
    """One button in WhatsApp's shape: only the keys its type has."""
    kind = row["type"]
    button: dict[str, Any] = {"type": kind}
    if row["text"] or kind != "COPY_CODE":  # WhatsApp labels a copy-code button itself
        button["text"] = row["text"]
    if kind == "URL" or (kind not in BUTTON_TYPE_WORDS and row["url"]):
        button["url"] = row["url"]
    if kind == "PHONE_NUMBER" or (kind not in BUTTON_TYPE_WORDS and row["phone_number"]):
        button["phone_number"] = row["phone_number"]
    return button


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
        components.append({"type": "BUTTONS", "buttons": [_button(row) for row in data["buttons"]]})
    return components


def compose_examples(data: dict[str, Any], components: list[dict[str, Any]]) -> dict[str, Any]:
    """The example values of the parameters the components have; a value typed for a parameter since removed
    from the text is left out. A parameter without a value is left out too: validation names it."""
    parameters = template_parameters(components)
    examples: dict[str, Any] = {}
    header_example = (data.get("header_example") or "").strip()
    if data.get("header_format") in MEDIA_HEADER_FORMATS:
        if header_example:
            examples["header"] = {"url": header_example}
    elif parameters["header"] and header_example:
        examples["header"] = {parameters["header"][0]: header_example}
    body_values = data.get("body_examples") or {}
    body = {name: body_values[name] for name in parameters["body"] if (body_values.get(name) or "").strip()}
    if body:
        examples["body"] = body
    buttons = {str(index): row["example"] for index, row in enumerate(data.get("buttons") or [])
               if row["example"].strip() and (row["type"] == "COPY_CODE"
                                              or (row["type"] == "URL" and PARAMETER.search(row["url"])))}
    if buttons:
        examples["buttons"] = buttons
    return examples


def _empty(row: dict[str, str]) -> bool:
    return not any(row.get(key, "").strip() for key in BUTTON_ROW_KEYS)


def kept_rows(rows: Any) -> list[dict[str, str]]:
    """The buttons an author means: rows neither left empty nor marked for removal, in their order."""
    return [{key: _text(row.get(key)) for key in BUTTON_ROW_KEYS} for row in rows or []
            if isinstance(row, dict) and not row.get("remove") and not _empty(row)]


class ButtonRowsWidget(forms.Widget):
    """The buttons as a list of rows (what it does, label, link or phone number, example value, remove)
    posted as buttons-<n>-<part>, with empty rows below for new buttons; template_form.js adds rows on demand."""

    template_name = "admin/templates_app/messagetemplate/_button_rows.html"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs)
        # Positions (among the kept rows) of the buttons a validation message is about: marked on the page.
        self.invalid_rows: set[int] = set()

    def __deepcopy__(self, memo: dict[int, Any]) -> ButtonRowsWidget:
        copied = super().__deepcopy__(memo)
        copied.invalid_rows = set()  # each form marks its own rows (a shallow copy would share the set)
        return copied

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[dict[str, Any]]:
        row_type = re.compile(rf"{re.escape(name)}-(\d+)-type")
        indexes = sorted({int(match.group(1)) for key in data if (match := row_type.fullmatch(key))})
        rows: list[dict[str, Any]] = []
        for index in indexes:
            row: dict[str, Any] = {key: data.get(f"{name}-{index}-{key}", "") for key in BUTTON_ROW_KEYS}
            row["remove"] = bool(data.get(f"{name}-{index}-remove"))
            rows.append(row)
        return rows

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return False

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        rows = kept_rows(value)
        padding = max(0, min(EMPTY_BUTTON_ROWS, BUTTONS_MAX - len(rows)))
        choices = list(BUTTON_TYPES)
        # A type this form does not offer (a template imported from the provider): shown as it is, so that
        # saving does not quietly change it; validation says what to do about it.
        for row in rows:
            if row["type"] and row["type"] not in dict(choices):
                choices.append((row["type"], row["type"]))
        context["widget"].update({
            "rows": [{**row, "index": index, "number": index + 1, "empty": index >= len(rows),
                      "invalid": index in self.invalid_rows}
                     for index, row in enumerate(rows + [dict.fromkeys(BUTTON_ROW_KEYS, "")] * padding)],
            "type_choices": choices,
            "max_rows": BUTTONS_MAX,
        })
        return context


class ButtonsField(forms.Field):
    widget = ButtonRowsWidget

    def to_python(self, value: Any) -> list[dict[str, str]]:
        rows = kept_rows(value)
        for row in rows:
            row["type"] = row["type"].strip().upper()
            for key in ("url", "phone_number"):
                row[key] = row[key].strip()
        return rows


class ParameterValuesWidget(forms.Widget):
    """One text box per parameter of a text ({{1}}, {{first_name}}...), posted as <name>-<parameter>;
    template_form.js keeps the boxes in step with the text as the author types it."""

    template_name = "admin/templates_app/messagetemplate/_parameter_values.html"

    def __init__(self, source: str, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs)
        self.source = source  # the field whose text the parameters come from
        self.parameters: list[str] = []

    def value_from_datadict(self, data: Any, files: Any, name: str) -> dict[str, str]:
        prefix = f"{name}-"
        return {key[len(prefix):]: data.get(key, "") for key in data if key.startswith(prefix)}

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return False

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        values = value if isinstance(value, dict) else {}
        context["widget"].update({"source": self.source, "parameters": [
            {"name": parameter, "value": _text(values.get(parameter))} for parameter in self.parameters]})
        return context


class ParameterValuesField(forms.Field):
    def to_python(self, value: Any) -> dict[str, str]:
        return {str(name): _text(text) for name, text in value.items()} if isinstance(value, dict) else {}


class TemplateForm(forms.ModelForm):
    header_format = forms.ChoiceField(choices=HEADER_FORMATS, required=False, label="Header")
    header_text = forms.CharField(required=False, strip=False, label="Header text",
                                  help_text="Up to 60 characters, at most one parameter. Only for a Text header.")
    header_example = forms.CharField(
        required=False, label="Header example",
        help_text="For a text header with a parameter: what it reads as in the example. For an image, video or "
                  "document header: a link (https://…) to an example file.")
    body_text = forms.CharField(required=False, strip=False, label="Body",
                                widget=forms.Textarea(attrs={"rows": 6, "cols": 60}),
                                help_text="Up to 1024 characters. Parameters: {{1}}, {{2}}... or {{first_name}}, "
                                          "never at the very start or end, never two side by side.")
    body_examples = ParameterValuesField(
        required=False, label="Body examples", widget=ParameterValuesWidget(source="body_text"),
        help_text="An example value for each parameter of the body: WhatsApp reviews the template with them, "
                  "and the preview shows them.")
    footer_text = forms.CharField(required=False, strip=False, label="Footer",
                                  help_text="Up to 60 characters, no parameters.")
    buttons = ButtonsField(
        required=False, label="Buttons",
        help_text=f"At most {BUTTONS_MAX}: quick replies together, before or after the others; at most 2 links, "
                  "1 phone number and 1 copy code. A link may end in {{1}}: give what {{1}} becomes as its "
                  "example. A copy-code button's example is the code.")

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
            self.initial.update(decompose(self.instance.components, self.instance.examples))
        body = (self.data.get(self.add_prefix("body_text"), "") if self.is_bound
                else self.initial.get("body_text", ""))
        self.fields["body_examples"].widget.parameters = _ordered_names(_text(body))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        cleaned["components"] = compose(cleaned)
        cleaned["examples"] = compose_examples(cleaned, cleaned["components"])
        # A field Django already refused (e.g. an empty name) keeps that one message.
        refused = set(self.errors)
        errors = template_errors(**self.authored_values(cleaned))
        self._attach({section: [message for message in messages
                                if self._error_field(section, message) not in refused]
                      for section, messages in errors.items()})
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

    @staticmethod
    def _error_field(section: str, message: str) -> str | None:
        if section == "buttons":
            return "buttons"
        if section == "examples":
            # The example values sit beside what they are for: the header's, the body's, each button's.
            words = message.split(" ", 3)
            if words[0] == "body":
                return "body_examples"
            if words[0] in ("button", "buttons"):
                return "buttons"
            return "header_example" if "header" in words[:3] else None
        return ERROR_FIELDS.get(section, section)

    def _attach(self, errors: dict[str, list[str]]) -> None:
        for section, messages in (errors or {}).items():
            for message in messages:
                field = self._error_field(section, message)
                on_form = field in self.fields
                if on_form and field == "buttons" and (match := BUTTON_MESSAGE.match(message)):
                    self.fields["buttons"].widget.invalid_rows.add(int(match.group(1)))
                self.add_error(field if on_form else None, self._sentence(section, field, message, on_form))

    def _sentence(self, section: str, field: str | None, message: str, on_form: bool) -> str:
        """validation.py's messages are clauses ("must be one of ...", "the body ends with ..."): make each a
        sentence, naming its field where the message does not or where it is shown above the form. Buttons
        are numbered from 1 and named by what they do, as the form shows them."""
        if field == "buttons":
            message = self._button_words(message)
        message = message.replace(" in header.url", "")
        label = str(self.fields[field].label or field) if on_form and field else section.replace("_", " ")
        if message.startswith(("is ", "must ")) or (not on_form and field is not None):
            message = f"{label.capitalize()}: {message}" if not on_form else f"{label} {message}"
        return message[:1].upper() + message[1:]

    @staticmethod
    def _button_words(message: str) -> str:
        def numbered(match: re.Match[str]) -> str:
            kind = match.group(2)
            return f"button {int(match.group(1)) + 1}" + (f" ({BUTTON_TYPE_WORDS.get(kind, kind)})" if kind else "")

        if re.match(r"^button \d+ has unknown type ''", message):
            return BUTTON_MESSAGE.sub(numbered, message).split(" has ")[0] + (
                ": choose what it does (quick reply, link, call or copy code)")
        message = BUTTON_MESSAGE.sub(numbered, message)
        message = re.sub(r"for button (\d+)", lambda m: f"for button {int(m.group(1)) + 1}", message)
        message = message.replace("phone_number", "phone number")
        return re.sub(r"\b(QUICK_REPLY|URL|PHONE_NUMBER|COPY_CODE)\b",
                      lambda m: BUTTON_TYPE_WORDS[m.group(1)], message)


class RejectForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 70}), label="Reason",
        error_messages={"required": "Give the author a reason: a rejection without one cannot be acted on."},
        help_text="Shown to the template's author on the template's page, so they can fix it.")
