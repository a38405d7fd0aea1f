"""What changed between two versions of a template, section by section, as a reviewer reads it."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from templates_app.models import MessageTemplate
from whatsapp.providers.whatsapp_templates import find_component

BUTTON_WORDS = {"QUICK_REPLY": "quick reply", "URL": "link", "PHONE_NUMBER": "call", "COPY_CODE": "copy code"}


@dataclass(frozen=True)
class SectionDiff:
    section: str
    # (" " | "-" | "+", line) pairs: unchanged, only in the older version, only in the newer one.
    lines: list[tuple[str, str]]

    @property
    def changed(self) -> bool:
        return any(marker != " " for marker, _ in self.lines)


def _component(template: MessageTemplate, kind: str) -> dict:
    return find_component(template.components, kind) or {}


def _header(template: MessageTemplate) -> str:
    header = _component(template, "HEADER")
    if not header:
        return ""
    header_format = str(header.get("format", "TEXT")).upper()
    return str(header.get("text", "")) if header_format == "TEXT" else f"[{header_format.lower()}]"


def _buttons(template: MessageTemplate) -> str:
    lines = []
    for button in _component(template, "BUTTONS").get("buttons") or []:
        if isinstance(button, dict):
            detail = button.get("url") or button.get("phone_number") or ""
            kind = str(button.get("type", "")).upper()
            lines.append(" ".join(filter(None, [f"{BUTTON_WORDS.get(kind, kind)}:", f"“{button.get('text') or ''}”",
                                                str(detail)])))
    return "\n".join(lines)


def _examples(template: MessageTemplate) -> str:
    """One line per example value, as the author typed it: "body {{1}}: Ana", "button 2: 1042"."""
    examples = template.examples if isinstance(template.examples, dict) else {}
    lines = []
    for section in ("header", "body"):
        raw = examples.get(section)
        values = ({str(position): value for position, value in enumerate(raw, start=1)} if isinstance(raw, list)
                  else raw if isinstance(raw, dict) else {})
        lines += [f"{section} " + ("link" if name == "url" else "{{" + str(name) + "}}") + f": {value}"
                  for name, value in values.items()]
    buttons = examples.get("buttons")
    if isinstance(buttons, dict):
        lines += [f"button {int(index) + 1 if str(index).isdigit() else index}: {value}"
                  for index, value in buttons.items()]
    return "\n".join(lines)


def _sections(template: MessageTemplate) -> dict[str, str]:
    return {
        "category": template.get_category_display(),
        "parameter format": template.get_parameter_format_display(),
        "header": _header(template),
        "body": str(_component(template, "BODY").get("text", "")),
        "footer": str(_component(template, "FOOTER").get("text", "")),
        "buttons": _buttons(template),
        "examples": _examples(template),
    }


def template_diff(older: MessageTemplate, newer: MessageTemplate) -> list[SectionDiff]:
    """Every section of the two versions, line by line; `changed` tells which differ."""
    before, after = _sections(older), _sections(newer)
    diffs = []
    for section in before:
        lines = []
        for line in difflib.ndiff(before[section].splitlines(), after[section].splitlines()):
            if line[:1] in (" ", "-", "+"):
                lines.append((line[0], line[2:]))
        diffs.append(SectionDiff(section, lines))
    return diffs
