"""What the template pages share: how they show a moment, a user, a rate, a refusal, a status and a
template's body, their CSS and scripts, and the safe "next" URL a button returns to."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString
from django.utils.timezone import localtime

from contacts.services.mapping import user_label
from templates_app.models import MessageTemplate
from templates_app.preview import template_preview
from whatsapp.providers.events import TemplateStatus

# How a status looks: only a refusal or a stop looks like a failure; a draft or a wait is neutral.
STATUS_TONES = {
    TemplateStatus.APPROVED: "good", TemplateStatus.INTERNALLY_APPROVED: "good",
    TemplateStatus.IN_REVIEW: "waiting", TemplateStatus.SUBMITTED: "waiting", TemplateStatus.PENDING: "waiting",
    TemplateStatus.IN_APPEAL: "waiting",
    TemplateStatus.REJECTED: "bad", TemplateStatus.INTERNALLY_REJECTED: "bad", TemplateStatus.PAUSED: "bad",
    TemplateStatus.DISABLED: "bad",
}


def when(moment) -> str:
    return date_format(localtime(moment), "SHORT_DATETIME_FORMAT") if moment else ""


def who(user) -> str:
    return user_label(user) if user is not None else ""


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def status_badge(template: MessageTemplate) -> SafeString:
    tone = STATUS_TONES.get(template.status, "neutral")
    return format_html('<span class="tpl-status tpl-status-{}">{}</span>', tone, template.get_status_display())


def refusal_text(exc: Exception) -> str:
    return str(exc).rstrip(".") + "."


def body_text(template: MessageTemplate) -> str:
    """The body with the template's example values filled in, as a reviewer first reads it."""
    return template_preview(template.components, template.examples).body


class TemplateMedia:
    class Media:
        css = {"all": ["templates_app/template_admin.css"]}
        js = ["templates_app/template_form.js", "templates_app/template_preview.js"]


def safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    allowed = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                              require_https=request.is_secure())
    return target if allowed else ""
