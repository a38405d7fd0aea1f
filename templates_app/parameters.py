"""
A template's parameters and the values a send gives them.

Components follow WhatsApp's template shape (types in any case): HEADER (format TEXT with `text`, or
IMAGE/VIDEO/DOCUMENT/LOCATION), BODY (`text`), FOOTER, BUTTONS (`buttons`: QUICK_REPLY, URL with a
`url` that may end in one variable, COPY_CODE, PHONE_NUMBER...). Parameters are `{{1}}`, `{{2}}`...
(positional) or `{{first_name}}` (named).

Values given with a send:
    {"header": ["Summer"] | {"name": "Summer"} | {"url": "https://.../a.jpg"},
     "body": ["Ana", "123"] | {"1": "Ana"} | {"first_name": "Ana"},
     "buttons": {"1": "order-123"} | [{"index": 1, "value": "order-123"}]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from templates_app.models import MessageTemplate
from whatsapp.providers.whatsapp_templates import MEDIA_HEADER_FORMATS, PARAMETER

# Buttons whose value is sent with each message: a URL's variable suffix, a coupon code, a payload.
BUTTONS_NEEDING_VALUE = {"URL", "COPY_CODE"}
BUTTON_SUB_TYPES = {"URL": "url", "COPY_CODE": "copy_code", "QUICK_REPLY": "quick_reply"}


class TemplateVariablesError(ValueError):
    def __init__(self, missing: list[str], extra: list[str], problems: list[str] | None = None):
        self.missing, self.extra, self.problems = missing, extra, problems or []
        parts = []
        if missing:
            parts.append(f"missing: {', '.join(missing)}")
        if extra:
            parts.append(f"not in the template: {', '.join(extra)}")
        parts += self.problems
        super().__init__("template variables do not match the template (" + "; ".join(parts) + ")")


@dataclass
class TemplateSpec:
    header_format: str = ""
    header_params: list[str] = field(default_factory=list)
    body_params: list[str] = field(default_factory=list)
    body_text: str = ""
    # index -> (button type, whether a value must be given)
    buttons: dict[int, tuple[str, bool]] = field(default_factory=dict)


@dataclass
class BoundTemplate:
    header: list[tuple[str, str]] = field(default_factory=list)
    header_media_url: str = ""
    header_media_kind: str = ""
    body: list[tuple[str, str]] = field(default_factory=list)
    buttons: list[tuple[int, str, str]] = field(default_factory=list)  # (index, sub_type, value)

    def as_variables(self) -> dict[str, Any]:
        """The stored, normalized form of the values (what a message row keeps)."""
        variables: dict[str, Any] = {"body": dict(self.body)}
        if self.header:
            variables["header"] = dict(self.header)
        if self.header_media_url:
            variables["header"] = {"url": self.header_media_url}
        if self.buttons:
            variables["buttons"] = {str(index): value for index, _, value in self.buttons}
        return variables


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def template_spec(template: MessageTemplate) -> TemplateSpec:
    spec = TemplateSpec()
    for component in template.components or []:
        if not isinstance(component, dict):
            continue
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER":
            spec.header_format = str(component.get("format", "TEXT")).upper()
            if spec.header_format == "TEXT":
                spec.header_params = _unique(PARAMETER.findall(str(component.get("text", ""))))
        elif kind == "BODY":
            spec.body_text = str(component.get("text", ""))
            spec.body_params = _unique(PARAMETER.findall(spec.body_text))
        elif kind == "BUTTONS":
            for index, button in enumerate(component.get("buttons") or []):
                button_type = str(button.get("type", "")).upper() if isinstance(button, dict) else ""
                needs = button_type in BUTTONS_NEEDING_VALUE and (
                    button_type != "URL" or bool(PARAMETER.search(str(button.get("url", "")))))
                spec.buttons[index] = (button_type, needs)
    return spec


def _named_values(raw: Any, section: str) -> dict[str, str]:
    if raw in (None, "", [], {}):
        return {}
    if isinstance(raw, list):
        return {str(position): _text(value, section) for position, value in enumerate(raw, start=1)}
    if isinstance(raw, dict):
        return {str(name): _text(value, section) for name, value in raw.items()}
    raise TemplateVariablesError([], [], [f"{section} must be a list or an object"])


def _text(value: Any, section: str) -> str:
    if isinstance(value, dict | list) or value is None:
        raise TemplateVariablesError([], [], [f"{section} values must be text"])
    text = str(value)
    if not text.strip():
        raise TemplateVariablesError([], [], [f"{section} values must not be empty"])
    return text


def _match(section: str, expected: list[str], given: dict[str, str], missing: list, extra: list) -> list:
    missing += [f"{section}.{name}" for name in expected if name not in given]
    extra += [f"{section}.{name}" for name in given if name not in expected]
    return [(name, given[name]) for name in expected if name in given]


def _button_values(raw: Any) -> dict[str, str]:
    if isinstance(raw, list):
        return {str(item.get("index")): _text(item.get("value"), "buttons") for item in raw if isinstance(item, dict)}
    return _named_values(raw, "buttons")


def template_bind(template: MessageTemplate, variables: dict[str, Any] | None) -> BoundTemplate:
    """Check the values against the template: every parameter given, nothing extra. Raises
    TemplateVariablesError naming what is missing or extra."""
    variables = variables or {}
    if not isinstance(variables, dict):
        raise TemplateVariablesError([], [], ["variables must be an object with header, body and buttons"])
    spec = template_spec(template)
    missing: list[str] = []
    extra = [f"{name}" for name in variables if name not in ("header", "body", "buttons")]
    bound = BoundTemplate()
    raw_header = variables.get("header")
    if spec.header_format in MEDIA_HEADER_FORMATS:
        url = raw_header.get("url", "") if isinstance(raw_header, dict) else (raw_header or "")
        if not isinstance(url, str) or not url.startswith("https://"):
            missing.append(f"header.url (an https link to the header's {spec.header_format.lower()})")
        else:
            bound.header_media_url, bound.header_media_kind = url, spec.header_format.lower()
    else:
        bound.header = _match("header", spec.header_params, _named_values(raw_header, "header"), missing, extra)
    bound.body = _match("body", spec.body_params, _named_values(variables.get("body"), "body"), missing, extra)
    given_buttons = _button_values(variables.get("buttons"))
    for index, (button_type, needs_value) in spec.buttons.items():
        value = given_buttons.pop(str(index), None)
        if value is None and needs_value:
            missing.append(f"buttons.{index}")
        elif value is not None:
            sub_type = BUTTON_SUB_TYPES.get(button_type)
            if sub_type is None:
                extra.append(f"buttons.{index}")
            else:
                bound.buttons.append((index, sub_type, value))
    extra += [f"buttons.{index}" for index in given_buttons]
    if missing or extra:
        raise TemplateVariablesError(missing, extra)
    return bound


def template_render(template: MessageTemplate, bound: BoundTemplate) -> str:
    """The body with its values filled in (a preview, and the text kept on the message)."""
    values = dict(bound.body)
    return PARAMETER.sub(lambda match: values.get(match.group(1), match.group(0)), template_spec(template).body_text)
