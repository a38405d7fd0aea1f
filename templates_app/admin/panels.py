"""
The panels of a template's change page: the notice on what saving does, the workflow's facts and the
buttons of the steps that apply, the usage figures, the history of versions with a diff, and a read-only
template's content laid out as its parts (header, body, footer, buttons) with their example values.
"""

from __future__ import annotations

from typing import Any

from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from templates_app.admin.common import percent, when, who
from templates_app.forms import BUTTON_TYPES, HEADER_FORMATS, decompose
from templates_app.models import MessageTemplate
from templates_app.selectors import latest_version, usage_of, versions_of
from templates_app.services.versions import template_diff
from templates_app.services.workflow import (
    EDITABLE_IN_PLACE,
    REVIEW_PERMISSION,
    refused_by_provider,
    review_version,
    template_authors,
)
from whatsapp.providers.events import TemplateStatus
from whatsapp.providers.whatsapp_templates import MEDIA_HEADER_FORMATS, PARAMETER

DIFF_CSS = {" ": "tpl-diff-same", "-": "tpl-diff-del", "+": "tpl-diff-add"}


def edit_notice(template: MessageTemplate, mode: str, editable: bool) -> str:
    if mode == "new_version" and editable:
        return (f"This version is {template.get_status_display().lower()} at the provider. Saving does not "
                f"change it: your edit becomes version {template.version + 1}, a draft"
                + (f", and version {template.version} stays sendable until version {template.version + 1} "
                   "is approved." if template.status == TemplateStatus.APPROVED else "."))
    if mode == "in_place" and template.status == TemplateStatus.INTERNALLY_REJECTED and editable:
        return "Rejected internally: saving your changes makes it a draft again; then submit it for review."
    if template.managed_elsewhere:
        return (f"Managed in {template.provider.name}'s own tool and imported by the template sync: read-only "
                "here; its status follows the provider's.")
    if not mode:
        latest = latest_version(template)
        if latest.pk != template.pk:
            return (f"Version {latest.version} of this template exists "
                    f"({latest.get_status_display().lower()}): edit that one.")
        return (f"{template.get_status_display()}: read-only while it is being reviewed or is at the provider; "
                "editing becomes possible once the provider has decided.")
    return ""


def workflow_facts(template: MessageTemplate) -> list[tuple[str, str]]:
    facts = [
        ("Status", template.get_status_display()),
        ("Version", str(template.version)),
        ("Author", who(template.created_by)),
        ("Submitted for review", " ".join(filter(None, [who(template.submitted_by),
                                                         when(template.submitted_at)]))),
        ("Reviewed", " ".join(filter(None, [who(template.reviewed_by), when(template.reviewed_at)]))),
        ("Reviewer's note", template.review_note),
        ("Sent to the provider", when(template.sent_to_provider_at)),
        ("Submission error", template.submission_error),
        ("Provider's template id", template.provider_template_id),
        ("Provider's reason", template.rejection_reason),
        ("Provider's recommendation", template.provider_recommendation),
        ("Quality", template.quality),
        ("Approved by the provider", when(template.approved_at)),
        ("Last synced", when(template.synced_at)),
    ]
    return [(label, value) for label, value in facts if value]


def workflow_buttons(request, template: MessageTemplate, *, may_author: bool) -> list[dict[str, str]]:
    """The steps that apply to this template and this user (the services still check each one);
    `may_author`: whether the user may write templates."""
    status, user = template.status, request.user
    url = lambda name: reverse(f"admin:templates_app_messagetemplate_{name}", args=[template.pk])  # noqa: E731
    buttons = []
    author = may_author and not template.managed_elsewhere
    if author and status in EDITABLE_IN_PLACE:
        buttons.append({"label": "Submit for review", "url": url("submit_for_review"), "name": "submit"})
    if author and status == TemplateStatus.IN_REVIEW:
        buttons.append({"label": "Withdraw from review", "url": url("withdraw"), "name": "withdraw"})
    if author and refused_by_provider(template):
        buttons.append({"label": "Back to draft, to fix it", "url": url("withdraw"), "name": "withdraw"})
    if status == TemplateStatus.IN_REVIEW and user.has_perm(REVIEW_PERMISSION) and (
            user.pk not in template_authors(template)):
        # The version the reviewer is looking at: a template submitted again since is refused.
        seen = "?" + urlencode({"seen": review_version(template)})
        buttons.append({"label": "Approve", "url": url("approve") + seen, "name": "approve", "style": "default"})
        buttons.append({"label": "Reject…", "url": url("reject") + seen, "name": "reject", "method": "get"})
    if status == TemplateStatus.INTERNALLY_APPROVED and (author or user.has_perm(REVIEW_PERMISSION)):
        buttons.append({"label": f"Submit to {template.provider.name} again", "url": url("resubmit"),
                        "name": "resubmit"})
    return buttons


def usage_panel(template: MessageTemplate) -> dict[str, Any]:
    usage = usage_of(template)
    return {"sends": usage.sends, "delivered": usage.delivered, "read": usage.read, "failed": usage.failed,
            "delivered_rate": percent(usage.delivered_rate), "read_rate": percent(usage.read_rate),
            "failed_rate": percent(usage.failed_rate)}


def history_panel(request, template: MessageTemplate) -> dict[str, Any]:
    versions = list(versions_of(template))
    older = [version for version in versions if version.version < template.version]
    chosen = request.GET.get("diff", "")
    other = next((v for v in versions if chosen.isdigit() and v.version == int(chosen)), None)
    other = other if other is not None and other.pk != template.pk else (older[0] if older else None)
    sections = []
    if other is not None:
        first, second = (other, template) if other.version < template.version else (template, other)
        sections = [{"section": section.section,
                     "lines": [(DIFF_CSS.get(marker, ""), marker, text) for marker, text in section.lines]}
                    for section in template_diff(first, second) if section.changed]
    return {"versions": versions, "diff_with": other, "diff_sections": sections,
            "diff_older": min(other.version, template.version) if other else None,
            "diff_newer": max(other.version, template.version) if other else None}


BUTTON_KINDS = dict(BUTTON_TYPES)
HEADER_KINDS = dict(HEADER_FORMATS)
KNOWN_PARTS = ("HEADER", "BODY", "FOOTER", "BUTTONS")
AUDIT_FIELD_WORDS = {"by_version": "by version", "provider_template_id": "provider's template id"}


def _tag(name: str) -> str:
    return "{{" + name + "}}"


def _values_for(text: str, values: dict[str, str]) -> list[tuple[str, str]]:
    return [(_tag(name), values.get(name, "")) for name in dict.fromkeys(PARAMETER.findall(text))]


def _button_detail(row: dict[str, str]) -> str:
    return {"URL": row["url"], "PHONE_NUMBER": row["phone_number"]}.get(row["type"], "")


def content_parts(components: Any, examples: Any) -> dict[str, Any]:
    """A template's parts as the author wrote them, each parameter with its example value ("" when missing)."""
    parts = decompose(components, examples)
    header_format, header_text = parts["header_format"], parts["header_text"]
    header: dict[str, Any] | None = None
    if header_format in MEDIA_HEADER_FORMATS:
        header = {"format": HEADER_KINDS[header_format], "text": header_text, "values": [],
                  "media_example": parts["header_example"]}
    elif header_format:
        first = PARAMETER.findall(header_text)[:1]
        header = {"format": HEADER_KINDS.get(header_format, header_format.title()), "text": header_text,
                  "values": _values_for(header_text, dict.fromkeys(first, parts["header_example"])),
                  "media_example": ""}
    buttons = [{"number": index + 1, "type": row["type"],
                "kind": BUTTON_KINDS.get(row["type"], row["type"].replace("_", " ").title()),
                "label": row["text"] or ("Copy code" if row["type"] == "COPY_CODE" else ""),
                "detail": _button_detail(row), "example": row["example"]}
               for index, row in enumerate(parts["buttons"])]
    listed = components if isinstance(components, list) else []
    # Parts this page does not lay out (e.g. a carousel imported from the provider): named, so none is hidden.
    others = [str(component.get("type", "")).replace("_", " ").capitalize() or "Unnamed part"
              for component in listed
              if isinstance(component, dict) and str(component.get("type", "")).upper() not in KNOWN_PARTS]
    return {"header": header, "body": parts["body_text"],
            "body_values": _values_for(parts["body_text"], parts["body_examples"]),
            "footer": parts["footer_text"], "buttons": buttons, "others": others}


def content_panel(template: MessageTemplate) -> SafeString:
    return render_to_string("admin/templates_app/messagetemplate/_content.html",
                            {"content": content_parts(template.components, template.examples)})


def examples_panel(template: MessageTemplate) -> SafeString:
    content = content_parts(template.components, template.examples)
    rows = [("Header", tag, value, True) for tag, value in (content["header"] or {}).get("values", [])]
    if content["header"] and content["header"]["media_example"]:
        rows.append(("Header", f"the example {content['header']['format'].lower()}",
                     content["header"]["media_example"], False))
    rows += [("Body", tag, value, True) for tag, value in content["body_values"]]
    rows += [(f"Button {button['number']}", "the code" if button["type"] == "COPY_CODE" else "the end of the link",
              button["example"], False) for button in content["buttons"] if button["example"]]
    return render_to_string("admin/templates_app/messagetemplate/_examples.html", {"rows": rows})


def _audit_value(key: str, value: Any) -> str:
    if key == "status" and value in TemplateStatus.values:
        return str(TemplateStatus(value).label).lower()
    return str(value)


def audit_details(values: dict[str, Any] | None) -> str:
    """An audit entry's before/after as words: "status: draft, version: 1"."""
    return ", ".join(f"{AUDIT_FIELD_WORDS.get(key, key.replace('_', ' '))}: {_audit_value(key, value)}"
                     for key, value in (values or {}).items() if value not in (None, "", [], {}))


def audit_action(action: str) -> str:
    """"template.submitted_for_review" -> "submitted for review"."""
    return action.removeprefix("template.").replace("_", " ").replace(".", " ")
