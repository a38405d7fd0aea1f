"""A template as the customer's phone shows it, with example (or real) values filled in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from whatsapp.providers.whatsapp_templates import PARAMETER


@dataclass(frozen=True)
class PreviewButton:
    kind: str  # QUICK_REPLY, URL, PHONE_NUMBER, COPY_CODE
    label: str
    detail: str = ""  # the filled-in URL, the phone number, the code


@dataclass(frozen=True)
class TemplatePreview:
    header_text: str = ""
    header_media: str = ""  # image, video, document or location: shown as a placeholder
    body: str = ""
    footer: str = ""
    buttons: list[PreviewButton] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"header_text": self.header_text, "header_media": self.header_media, "body": self.body,
                "footer": self.footer,
                "buttons": [{"type": b.kind, "label": b.label, "detail": b.detail} for b in self.buttons]}


def _values(raw: Any) -> dict[str, str]:
    if isinstance(raw, list):
        return {str(position): str(value) for position, value in enumerate(raw, start=1)}
    if isinstance(raw, dict):
        return {str(name): str(value) for name, value in raw.items()}
    return {}


def _fill(text: Any, values: dict[str, str]) -> str:
    # A parameter without a value stays visible as {{name}}, so the preview shows what is missing.
    return PARAMETER.sub(lambda match: values.get(match.group(1), match.group(0)), str(text or ""))


def template_preview(components: Any, values: Any) -> TemplatePreview:
    """`values` in the examples' shape: {"header": ..., "body": ..., "buttons": {index: value}}."""
    values = values if isinstance(values, dict) else {}
    preview: dict[str, Any] = {"buttons": []}
    button_values = _values(values.get("buttons"))
    for component in components if isinstance(components, list) else []:
        if not isinstance(component, dict):
            continue
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER":
            header_format = str(component.get("format", "TEXT")).upper()
            if header_format == "TEXT":
                preview["header_text"] = _fill(component.get("text"), _values(values.get("header")))
            else:
                preview["header_media"] = header_format.lower()
        elif kind in ("BODY", "FOOTER"):
            preview[kind.lower()] = _fill(component.get("text"), _values(values.get("body")) if kind == "BODY" else {})
        elif kind == "BUTTONS":
            preview["buttons"] = [_button(index, button, button_values)
                                  for index, button in enumerate(component.get("buttons") or [])
                                  if isinstance(button, dict)]
    return TemplatePreview(**preview)


def _button(index: int, button: dict[str, Any], values: dict[str, str]) -> PreviewButton:
    kind = str(button.get("type", "")).upper()
    value = values.get(str(index), "")
    detail = {"URL": lambda: PARAMETER.sub(lambda _: value or _.group(0), str(button.get("url", ""))),
              "PHONE_NUMBER": lambda: str(button.get("phone_number", "")),
              "COPY_CODE": lambda: value}.get(kind, lambda: "")()
    return PreviewButton(kind, str(button.get("text", "")), detail)
