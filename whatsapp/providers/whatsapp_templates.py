"""
WhatsApp's own template JSON, which Meta's Graph API serves (`/<WABA>/message_templates`) and Chatwoot
keeps as it synced it from Meta (`message_templates` of a WhatsApp inbox), and our canonical form.

The two differ only in where the example values sit. We keep components without examples and the
examples beside them ({"header": {...}, "body": {...}, "buttons": {"<index>": ...}}); WhatsApp puts each
example inside its component: `example.body_text` ([[...]], positional) or `example.body_text_named_params`,
`example.header_text` / `header_text_named_params`, `example.header_handle` for a media header, the
full example URL on a URL button and the code on a COPY_CODE button.
https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/overview
"""

from __future__ import annotations

import copy
import re
from typing import Any

from whatsapp.providers.base import ProviderError, as_dict, as_list, as_text
from whatsapp.providers.events import RemoteTemplate, TemplateStatus

PARAMETER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
MEDIA_HEADER_FORMATS = frozenset({"IMAGE", "VIDEO", "DOCUMENT"})
CATEGORIES = {"MARKETING": "marketing", "UTILITY": "utility", "AUTHENTICATION": "authentication"}

# A template's status as WhatsApp reports it (the status webhook's `event`, a listed template's `status`)
# -> ours. FLAGGED only warns that a pause may follow (the template stays sendable), so it changes nothing.
TEMPLATE_STATUS_MAP = {
    "APPROVED": TemplateStatus.APPROVED,
    "REINSTATED": TemplateStatus.APPROVED,
    "UNARCHIVED": TemplateStatus.APPROVED,
    "PENDING": TemplateStatus.PENDING,
    "REJECTED": TemplateStatus.REJECTED,
    "PAUSED": TemplateStatus.PAUSED,
    "DISABLED": TemplateStatus.DISABLED,
    "ARCHIVED": TemplateStatus.DISABLED,
    "DELETED": TemplateStatus.DISABLED,
    "PENDING_DELETION": TemplateStatus.DISABLED,
    "LIMIT_EXCEEDED": TemplateStatus.DISABLED,
    "LOCKED": TemplateStatus.DISABLED,
    "IN_APPEAL": TemplateStatus.IN_APPEAL,
}


# --- reading canonical components -------------------------------------------------------------
def parameter_names(text: str) -> list[str]:
    """The parameters of a text in order of first appearance, each once ("1", "2" or "first_name")."""
    return list(dict.fromkeys(PARAMETER.findall(text or "")))


def in_order(names: list[str]) -> list[str]:
    """Positional parameters by number (WhatsApp lists their examples in that order), named ones as written."""
    if names and all(name.isdigit() for name in names):
        return sorted(names, key=int)
    return names


def find_component(components: Any, kind: str) -> dict[str, Any] | None:
    """The component of this type (HEADER, BODY, FOOTER, BUTTONS; any case), None when absent or malformed."""
    return next((c for c in as_list(components) if isinstance(c, dict) and as_text(c.get("type")).upper() == kind),
                None)


def template_buttons(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [as_dict(button) for button in as_list((find_component(components, "BUTTONS") or {}).get("buttons"))]


def header_format(components: list[dict[str, Any]]) -> str:
    header = find_component(components, "HEADER")
    return as_text(header.get("format") or "TEXT").upper() if header is not None else ""


def section_examples(examples: dict[str, Any], section: str) -> dict[str, str]:
    """One section of the canonical examples as name -> value (a list counts as positional 1, 2...)."""
    raw = examples.get(section)
    if isinstance(raw, list):
        return {str(position): as_text(value) for position, value in enumerate(raw, start=1)}
    return {str(name): as_text(value) for name, value in as_dict(raw).items()}


def example_for(examples: dict[str, str], name: str, where: str) -> str:
    value = examples.get(name, "")
    if not value.strip():
        # WhatsApp reviews every parameter with an example and refuses a template without one.
        raise ProviderError(f"the {where} parameter {{{{{name}}}}} has no example value", code="template_invalid",
                            title="Missing example")
    return value


def filled_url(url: str, value: str) -> str:
    """A URL button's template with its variable replaced by a value (the example WhatsApp reviews)."""
    return PARAMETER.sub(lambda _: value, url, count=1)


def url_variable_part(url: str, full_example: str) -> str:
    """The part of a full example URL that stands for the button's variable (the inverse of filled_url)."""
    match = PARAMETER.search(url)
    if not match:
        return ""
    prefix, suffix = url[:match.start()], url[match.end():]
    if full_example.startswith(prefix) and full_example.endswith(suffix):
        return full_example[len(prefix):len(full_example) - len(suffix)]
    return full_example


# --- canonical -> WhatsApp ------------------------------------------------------------------
def to_whatsapp_components(components: list[dict[str, Any]], examples: dict[str, Any],
                           parameter_format: str) -> list[dict[str, Any]]:
    """Our components and examples as WhatsApp's template components (for Meta's create and edit calls).
    Raises ProviderError("template_invalid") when a parameter has no example."""
    named = parameter_format == "named"
    result = []
    for component in components:
        if not isinstance(component, dict):
            continue
        wire = copy.deepcopy(component)
        wire.pop("example", None)
        kind = as_text(wire.get("type")).upper()
        wire["type"] = kind
        if kind == "HEADER":
            wire["format"] = as_text(wire.get("format") or "TEXT").upper()
            if wire["format"] == "TEXT":
                _add_text_example(wire, "header", section_examples(examples, "header"), named)
        elif kind == "BODY":
            _add_text_example(wire, "body", section_examples(examples, "body"), named)
        elif kind == "BUTTONS":
            wire["buttons"] = [_wire_button(as_dict(button), index, section_examples(examples, "buttons"))
                               for index, button in enumerate(as_list(wire.get("buttons")))]
        result.append(wire)
    return result


def _add_text_example(wire: dict[str, Any], section: str, examples: dict[str, str], named: bool) -> None:
    names = in_order(parameter_names(as_text(wire.get("text"))))
    if not names:
        return
    values = [example_for(examples, name, section) for name in names]
    if named:
        wire["example"] = {f"{section}_text_named_params": [
            {"param_name": name, "example": value} for name, value in zip(names, values, strict=True)]}
    elif section == "body":
        # The body's examples are a list of rows; WhatsApp reads the first.
        wire["example"] = {"body_text": [values]}
    else:
        wire["example"] = {"header_text": values}


def _wire_button(button: dict[str, Any], index: int, examples: dict[str, str]) -> dict[str, Any]:
    wire = {key: value for key, value in button.items() if key != "example"}
    kind = as_text(wire.get("type")).upper()
    wire["type"] = kind
    if kind == "URL" and PARAMETER.search(as_text(wire.get("url"))):
        wire["example"] = [filled_url(as_text(wire["url"]), example_for(examples, str(index), f"button {index}"))]
    elif kind == "COPY_CODE":
        # The copy-code button's label is WhatsApp's own and cannot be set; its example is the code.
        # https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/marketing-templates/coupon-templates
        wire.pop("text", None)
        wire["example"] = example_for(examples, str(index), f"button {index}")
    return wire


# --- WhatsApp -> canonical ------------------------------------------------------------------
def from_whatsapp_components(wire_components: Any) -> tuple[list[dict], dict]:
    """WhatsApp's components (examples inside) as our components and examples."""
    components: list[dict[str, Any]] = []
    examples: dict[str, Any] = {}
    for wire in as_list(wire_components):
        wire = as_dict(wire)
        component = {key: value for key, value in wire.items() if key != "example"}
        kind = as_text(component.get("type")).upper()
        component["type"] = kind
        example = as_dict(wire.get("example"))
        if kind == "HEADER":
            component["format"] = as_text(component.get("format") or "TEXT").upper()
            if component["format"] in MEDIA_HEADER_FORMATS:
                handle = next(iter(as_list(example.get("header_handle"))), "")
                if handle:
                    examples["header"] = {"url": as_text(handle)}
            elif component["format"] == "TEXT":
                _read_text_example(examples, "header", as_text(component.get("text")), example)
        elif kind == "BODY":
            _read_text_example(examples, "body", as_text(component.get("text")), example)
        elif kind == "BUTTONS":
            component["buttons"] = [_read_button(as_dict(button), index, examples)
                                    for index, button in enumerate(as_list(component.get("buttons")))]
        components.append(component)
    return components, examples


def _read_text_example(examples: dict[str, Any], section: str, text: str, example: dict[str, Any]) -> None:
    named = as_list(example.get(f"{section}_text_named_params"))
    if named:
        values = {as_text(as_dict(item).get("param_name")): as_text(as_dict(item).get("example")) for item in named}
        examples[section] = {name: value for name, value in values.items() if name}
        return
    raw = as_list(example.get(f"{section}_text"))
    if section == "body" and raw and isinstance(raw[0], list):
        raw = raw[0]
    names = in_order(parameter_names(text))
    if names and raw:
        examples[section] = {name: as_text(value) for name, value in zip(names, raw, strict=False)}


def _read_button(button: dict[str, Any], index: int, examples: dict[str, Any]) -> dict[str, Any]:
    result = {key: value for key, value in button.items() if key != "example"}
    kind = as_text(result.get("type")).upper()
    result["type"] = kind
    raw = button.get("example")
    value = as_text(next(iter(raw), "") if isinstance(raw, list) else raw)
    if value and kind == "URL":
        value = url_variable_part(as_text(result.get("url")), value)
    if value and kind in ("URL", "COPY_CODE"):
        examples.setdefault("buttons", {})[str(index)] = value
    return result


def parameter_format_of(value: Any, components: list[dict[str, Any]]) -> str:
    declared = as_text(value).lower()
    if declared in ("named", "positional"):
        return declared
    texts = [as_text(c.get("text")) for c in components if as_text(c.get("type")) in ("HEADER", "BODY")]
    names = [name for text in texts for name in parameter_names(text)]
    return "named" if any(not name.isdigit() for name in names) else "positional"


def remote_template(item: dict[str, Any]) -> RemoteTemplate:
    """One template as WhatsApp lists it (Meta's message_templates, or Chatwoot's copy of it)."""
    components, examples = from_whatsapp_components(item.get("components"))
    reason = as_text(item.get("rejected_reason"))
    quality = as_text(as_dict(item.get("quality_score")).get("score")).lower()
    return RemoteTemplate(
        provider_template_id=as_text(item.get("id")),
        name=as_text(item.get("name")),
        # WhatsApp writes both en-US and en_US.
        language=as_text(item.get("language")).replace("-", "_"),
        status=TEMPLATE_STATUS_MAP.get(as_text(item.get("status")).upper(), TemplateStatus.UNKNOWN),
        category=CATEGORIES.get(as_text(item.get("category")).upper(), ""),
        parameter_format=parameter_format_of(item.get("parameter_format"), components),
        components=components,
        examples=examples,
        reason="" if reason.upper() == "NONE" else reason,
        quality="" if quality == "unknown" else quality,
        raw=item,
    )
