"""
Templates on Twilio are Content (the Content API): our components <-> Twilio's Content types, the
request that creates a Content, a listed Content read back as a template, and reading every page of
ContentAndApprovals.

https://www.twilio.com/docs/content/content-types-overview
"""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import urlsplit

from twilio.rest import Client

from whatsapp.providers.base import ProviderError, as_dict, as_list, as_text
from whatsapp.providers.events import RemoteTemplate, TemplateDefinition, TemplateStatus
from whatsapp.providers.twilio.wire import (
    ACTION_TYPES,
    APPROVAL_STATUS_MAP,
    CONTENT_MAX_PAGES,
    CONTENT_PAGE_SIZE,
    CONTENT_TYPE_ORDER,
    NEVER_SUBMITTED,
    VARIABLE_KEY_MAX,
    content_base_url,
)
from whatsapp.providers.whatsapp_templates import (
    CATEGORIES,
    MEDIA_HEADER_FORMATS,
    PARAMETER,
    example_for,
    find_component,
    header_format,
    parameter_format_of,
    parameter_names,
    section_examples,
    template_buttons,
)


def button_variable_names(text_names: list[str], button_indexes: list[int]) -> dict[int, str]:
    """
    The Content variable of each valued button. Header and body variables share one namespace; a
    positional template numbers its buttons after the highest of them (body {{1}} {{2}} -> a URL button's
    {{3}}), a named one calls them button_<index>. Sending and creating a Content both use this.
    """
    numbers = [int(name) for name in text_names if name.isdigit()]
    positional = len(numbers) == len(text_names)
    return {index: str(max(numbers, default=0) + offset) if positional else f"button_{index}"
            for offset, index in enumerate(sorted(button_indexes), start=1)}


def _unsupported(reason: str) -> ProviderError:
    return ProviderError(f"Twilio cannot carry this template: {reason}", code="template_unsupported",
                         title="Not expressible on Twilio")


def content_request(template: TemplateDefinition, name: str) -> dict[str, Any]:
    """The JSON of POST /v1/Content for a template: friendly_name, language, variables (the examples) and
    one content type. Raises ProviderError("template_unsupported") for what no Content type can carry."""
    components = template.components
    if template.category.lower() == "authentication":
        raise _unsupported("authentication templates have WhatsApp's preset text (whatsapp/authentication); "
                           "create them in Twilio's Content Template Builder")
    fmt = header_format(components)
    if fmt and fmt != "TEXT" and fmt not in MEDIA_HEADER_FORMATS:
        raise _unsupported(f"a {fmt.lower()} header has no Content type")
    header_text = as_text((find_component(components, "HEADER") or {}).get("text")) if fmt == "TEXT" else ""
    body = as_text((find_component(components, "BODY") or {}).get("text"))
    footer = as_text((find_component(components, "FOOTER") or {}).get("text"))
    if not body:
        raise ProviderError("the template has no body text", code="template_invalid", title="No body")
    variables = _text_variables(template, header_text, body)
    buttons = template_buttons(components)
    actions = _actions(buttons, list(variables), variables, section_examples(template.examples, "buttons"))
    media = _media_example(template) if fmt in MEDIA_HEADER_FORMATS else ""
    kinds = {as_text(button.get("type")).upper() for button in buttons}
    content: dict[str, Any] = {"body": body}
    if header_text or footer or (media and actions) or ("QUICK_REPLY" in kinds and len(kinds) > 1):
        # Only whatsapp/card has a text header and a footer, and takes any mix of buttons with media.
        content_type = "whatsapp/card"
        content.update({key: value for key, value in (("header_text", header_text), ("footer", footer)) if value})
        if media:
            content["media"] = [media]
        if actions:
            content["actions"] = actions
    elif media:
        content_type, content["media"] = "twilio/media", [media]
    elif kinds == {"QUICK_REPLY"}:
        content_type, content["actions"] = "twilio/quick-reply", [
            {"title": action["title"], "id": action["id"]} for action in actions]
    elif actions:
        content_type, content["actions"] = "twilio/call-to-action", actions
    else:
        content_type = "twilio/text"
    return {"friendly_name": name, "language": template.language, "variables": variables,
            "types": {content_type: content}}


def _text_variables(template: TemplateDefinition, header_text: str, body: str) -> dict[str, str]:
    header_names, body_names = parameter_names(header_text), parameter_names(body)
    if clash := [name for name in header_names if name in body_names]:
        # One namespace for the whole Content: the header's {{1}} would be the body's {{1}} too.
        raise _unsupported(f"the header and the body both use {{{{{clash[0]}}}}}; Twilio shares variables "
                           "between them, so number the header's after the body's or use other names")
    if long := [name for name in header_names + body_names if len(name) > VARIABLE_KEY_MAX]:
        raise _unsupported(f"the variable name {long[0]!r} is longer than {VARIABLE_KEY_MAX} characters")
    header_examples = section_examples(template.examples, "header")
    body_examples = section_examples(template.examples, "body")
    variables = {name: example_for(header_examples, name, "header") for name in header_names}
    variables.update({name: example_for(body_examples, name, "body") for name in body_names})
    return variables


def _actions(buttons: list[dict[str, Any]], text_names: list[str], variables: dict[str, str],
             examples: dict[str, str]) -> list[dict[str, Any]]:
    """Buttons as Content actions; a URL's variable and a coupon code become Content variables (added to
    `variables` with their examples), numbered the way sending numbers them."""
    for button in buttons:
        if (kind := as_text(button.get("type")).upper()) not in ACTION_TYPES:
            raise _unsupported(f"{kind.lower() or 'untyped'} buttons have no Content action")
    valued = [index for index, button in enumerate(buttons) if _is_valued(button)]
    names = button_variable_names(text_names, valued)
    actions = []
    for index, button in enumerate(buttons):
        kind, title = as_text(button.get("type")).upper(), as_text(button.get("text"))
        if index in names:
            variables[names[index]] = example_for(examples, str(index), f"button {index}")
        if kind == "QUICK_REPLY":
            # The id comes back as the reply's payload; WhatsApp uses the button's text there too.
            actions.append({"type": kind, "title": title, "id": title})
        elif kind == "URL":
            url = as_text(button.get("url"))
            if index in names:
                url = PARAMETER.sub(lambda _, name=names[index]: "{{" + name + "}}", url, count=1)
            actions.append({"type": kind, "title": title, "url": url})
        elif kind == "PHONE_NUMBER":
            actions.append({"type": kind, "title": title, "phone": as_text(button.get("phone_number"))})
        else:
            actions.append({"type": kind, "title": title or "Copy code", "code": "{{" + names[index] + "}}"})
    return actions


def _is_valued(button: dict[str, Any]) -> bool:
    kind = as_text(button.get("type")).upper()
    return kind == "COPY_CODE" or (kind == "URL" and bool(PARAMETER.search(as_text(button.get("url")))))


def _media_example(template: TemplateDefinition) -> str:
    # Twilio sends the Content's own media; WhatsApp reviews it as the header's sample.
    url = as_text(as_dict(template.examples.get("header")).get("url"))
    if not url.startswith("https://"):
        raise ProviderError("the media header needs an example: a public https link to the file",
                            code="template_invalid", title="Missing media example")
    return url


def remote_content(content: dict[str, Any]) -> RemoteTemplate | None:
    """One entry of ContentAndApprovals as a template, or None when it was never submitted to WhatsApp."""
    approvals = as_dict(content.get("approval_requests"))
    # Seen both flat ({"status": ...}) and per channel ({"whatsapp": {...}}).
    approval = as_dict(approvals.get("whatsapp")) or approvals
    status = as_text(approval.get("status")).lower()
    if status in NEVER_SUBMITTED:
        return None
    variables = {str(name): as_text(value) for name, value in as_dict(content.get("variables")).items()}
    components, examples = canonical_from_types(as_dict(content.get("types")), variables)
    return RemoteTemplate(
        provider_template_id=as_text(content.get("sid")),
        name=as_text(approval.get("name")) or as_text(content.get("friendly_name")),
        language=as_text(content.get("language")).replace("-", "_"),
        status=APPROVAL_STATUS_MAP.get(status, TemplateStatus.UNKNOWN),
        category=CATEGORIES.get(as_text(approval.get("category")).upper(), ""),
        parameter_format=parameter_format_of("", components),
        components=components,
        examples=examples,
        reason=as_text(approval.get("rejection_reason")),
        raw=content,
    )


def canonical_from_types(types: dict[str, Any], variables: dict[str, str]) -> tuple[list[dict], dict]:
    """The inverse of content_request: the richest Content type as our components and examples."""
    kind = next((name for name in CONTENT_TYPE_ORDER if isinstance(types.get(name), dict)), "")
    fields = as_dict(types.get(kind))
    if kind == "twilio/card":
        # twilio/card names WhatsApp's body its title and the footer its subtitle.
        fields = {**fields, "body": fields.get("title"), "footer": fields.get("subtitle")}
    components: list[dict[str, Any]] = []
    examples: dict[str, Any] = {}

    def known(text: str) -> dict[str, str]:
        return {name: variables[name] for name in parameter_names(text) if name in variables}

    media = as_text(next(iter(as_list(fields.get("media"))), ""))
    if header_text := as_text(fields.get("header_text")):
        components.append({"type": "HEADER", "format": "TEXT", "text": header_text})
        if known(header_text):
            examples["header"] = known(header_text)
    elif media:
        url = PARAMETER.sub(lambda match: variables.get(match.group(1), match.group(0)), media)
        components.append({"type": "HEADER", "format": _media_format(url)})
        examples["header"] = {"url": url}
    if body := as_text(fields.get("body")):
        components.append({"type": "BODY", "text": body})
        if known(body):
            examples["body"] = known(body)
    if footer := as_text(fields.get("footer")):
        components.append({"type": "FOOTER", "text": footer})
    buttons = [_button(as_dict(action), index, variables, examples)
               for index, action in enumerate(as_list(fields.get("actions")))]
    if buttons:
        components.append({"type": "BUTTONS", "buttons": buttons})
    return components, examples


def _button(action: dict[str, Any], index: int, variables: dict[str, str], examples: dict[str, Any]) -> dict:
    kind = as_text(action.get("type")).upper() or "QUICK_REPLY"  # twilio/quick-reply actions carry no type
    title = as_text(action.get("title"))
    value = ""
    if kind == "URL":
        url = as_text(action.get("url"))
        if match := PARAMETER.search(url):
            value = variables.get(match.group(1), "")
            # WhatsApp's URL buttons have one variable, always {{1}}.
            url = url[:match.start()] + "{{1}}" + url[match.end():]
        button = {"type": kind, "text": title, "url": url}
    elif kind == "PHONE_NUMBER":
        button = {"type": kind, "text": title, "phone_number": as_text(action.get("phone"))}
    else:
        button = {"type": kind, "text": title}
        if kind == "COPY_CODE":
            code = as_text(action.get("code"))
            match = PARAMETER.fullmatch(code.strip())
            value = variables.get(match.group(1), "") if match else code
    if value:
        examples.setdefault("buttons", {})[str(index)] = value
    return button


def _media_format(url: str) -> str:
    # WhatsApp tells image, video and document headers apart by the sample's type.
    mime_type = mimetypes.guess_type(urlsplit(url).path)[0] or ""
    return {"image": "IMAGE", "video": "VIDEO"}.get(mime_type.split("/")[0], "DOCUMENT")


def all_contents(client: Client) -> list[dict[str, Any]]:
    """Every page of ContentAndApprovals. Twilio's next_page_url names content.twilio.com; it is re-based
    on TWILIO_CONTENT_BASE_URL so that a proxy or test server also gets the following pages."""
    listing = client.content.v1.content_and_approvals
    page = listing.page(page_size=CONTENT_PAGE_SIZE)
    contents: list[dict[str, Any]] = []
    for _ in range(CONTENT_MAX_PAGES):
        contents += [{"sid": item.sid, "friendly_name": item.friendly_name, "language": item.language,
                      "variables": item.variables, "types": item.types, "approval_requests": item.approval_requests}
                     for item in page]
        if not page.next_page_url:
            return contents
        parts = urlsplit(page.next_page_url)
        page = listing.get_page(f"{content_base_url()}{parts.path}?{parts.query}")
    raise ProviderError(f"Twilio's content list has more than {CONTENT_MAX_PAGES} pages; stopped reading",
                        code="too_many_pages", title="Content list too long")
