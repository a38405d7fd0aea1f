"""
Templates on Meta: what a template submission posts (`POST /<WABA>/message_templates`), what its answer
means, and reading every page of the template list. The calls themselves are the backend's.

https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/overview
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from whatsapp.providers.base import ProviderError, as_dict, as_list, as_text
from whatsapp.providers.events import RemoteTemplate, TemplateDefinition, TemplateStatus, TemplateSubmission
from whatsapp.providers.meta.wire import TEMPLATE_FIELDS, TEMPLATE_MAX_PAGES, TEMPLATE_PAGE_SIZE
from whatsapp.providers.whatsapp_templates import (
    MEDIA_HEADER_FORMATS,
    TEMPLATE_STATUS_MAP,
    header_format,
    remote_template,
    to_whatsapp_components,
)

#: One GET of the template list: (url, query parameters or None when the url carries them) -> the answer.
GetPage = Callable[[str, dict[str, Any] | None], Any]


def check_submittable(template: TemplateDefinition) -> None:
    """Raise ProviderError("template_unsupported") for a template we cannot submit to Meta from here."""
    if header_format(template.components) in MEDIA_HEADER_FORMATS:
        # Meta reviews a media header against a sample uploaded through its Resumable Upload API, which
        # is keyed by the Meta app's id (not among this provider's settings) and gives a handle only for
        # template review. https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/template-media/
        raise ProviderError(
            "templates with an image, video or document header cannot be submitted to Meta from here yet: "
            "Meta needs a sample file uploaded through its Resumable Upload API. Create this template in "
            "WhatsApp Manager instead; the next template sync imports it", code="template_unsupported",
            title="Media header not supported")


def submission_request(template: TemplateDefinition) -> dict[str, Any]:
    """The JSON of a template submission, under the template's remote name."""
    check_submittable(template)
    components = to_whatsapp_components(template.components, template.examples, template.parameter_format)
    return {"name": template.remote_name, "language": template.language, "category": template.category.upper(),
            "parameter_format": template.parameter_format.upper(), "components": components}


def submission_answer(payload: dict[str, Any]) -> TemplateSubmission:
    template_id = as_text(payload.get("id"))
    if not template_id:
        raise ProviderError("Meta accepted the template without giving its id; look it up with a template sync",
                            code="bad_response", title="No template id", raw=payload)
    # Meta answers PENDING, or APPROVED at once for some utility templates.
    status = TEMPLATE_STATUS_MAP.get(as_text(payload.get("status")).upper(), TemplateStatus.PENDING)
    return TemplateSubmission(provider_template_id=template_id, status=status, raw=payload)


def list_all(url: str, get_page: GetPage) -> list[RemoteTemplate]:
    """Every template of the list at `url`, page by page."""
    # Paged by cursors; the last page has no paging.next (its cursors.after may still be set).
    # https://developers.facebook.com/docs/graph-api/results
    base = {"fields": TEMPLATE_FIELDS, "limit": TEMPLATE_PAGE_SIZE}
    params: dict[str, Any] | None = dict(base)
    templates: list[RemoteTemplate] = []
    seen_cursors: set[str] = set()
    for _ in range(TEMPLATE_MAX_PAGES):
        payload = as_dict(get_page(url, params))
        templates += [remote_template(as_dict(item)) for item in as_list(payload.get("data"))]
        paging = as_dict(payload.get("paging"))
        after = as_text(as_dict(paging.get("cursors")).get("after"))
        if not as_text(paging.get("next")) or after in seen_cursors:
            return templates
        if after:
            seen_cursors.add(after)
            params = {**base, "after": after}
        else:
            url, params = as_text(paging["next"]), None
    raise ProviderError(f"Meta's template list has more than {TEMPLATE_MAX_PAGES} pages; stopped reading",
                        code="too_many_pages", title="Template list too long")
