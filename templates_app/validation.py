"""
A message template checked against WhatsApp's published authoring rules, before it goes to review or to a
provider, so that an author sees every problem at once on the field it belongs to instead of a rejection
a day later.

Limits follow Meta's template components reference
(https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/components) and its
templates overview (https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/overview).
Pure functions: no database, never raises on malformed input (every oddity becomes a message).

Choices where the published rules leave room:
- A parameter at the start or end of the body: only whitespace around the body is ignored, so "Hi {{1}}."
  is accepted (the full stop is text) while "Hi {{1}}" is not.
- `{{ 1 }}` (spaces inside the braces) and stray `{{` / `}}` are reported: providers do not read them as
  parameters, although our own send path would.
- A URL button's variable is the URL's suffix and is always written `{{1}}`, in named templates too; it
  therefore does not count for the parameter format.
- A COPY_CODE button's label is fixed by WhatsApp, so its `text` may be left out (when given, the usual
  1-25 characters apply).
- Button numbers in messages are their indexes in the BUTTONS list, counting from 0, the same keys
  `examples["buttons"]` uses.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any, TypedDict
from urllib.parse import urlsplit

from templates_app.models import MessageTemplate
from whatsapp.providers.whatsapp_templates import MEDIA_HEADER_FORMATS, PARAMETER

FIELDS = ("name", "language", "category", "parameter_format", "header", "body", "footer", "buttons", "examples",
          "components")

NAME_MAX = 512
HEADER_MAX = 60
BODY_MAX = 1024
FOOTER_MAX = 60
BUTTONS_MAX = 10
BUTTON_TEXT_MAX = 25
URL_MAX = 2000
PHONE_MAX = 20
COPY_CODE_MAX = 15
BUTTON_TYPE_LIMITS = {"URL": 2, "PHONE_NUMBER": 1, "COPY_CODE": 1}

COMPONENT_TYPES = ("HEADER", "BODY", "FOOTER", "BUTTONS")
HEADER_FORMATS = ("TEXT", "IMAGE", "VIDEO", "DOCUMENT", "LOCATION")
BUTTON_TYPES = ("QUICK_REPLY", "URL", "PHONE_NUMBER", "COPY_CODE")
EXAMPLE_SECTIONS = ("header", "body", "buttons")

NAME_PATTERN = re.compile(r"[a-z0-9_]+")
LANGUAGE_PATTERN = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")
NAMED_PARAMETER = re.compile(r"[a-z][a-z0-9_]*")
POSITIONAL_PARAMETER = re.compile(r"[1-9][0-9]*")
E164 = re.compile(r"\+[1-9][0-9]{6,14}")  # E.164: "+", country code and number, 15 digits at most


class TemplateParameters(TypedDict):
    header: list[str]
    body: list[str]
    buttons: dict[int, list[str]]


class TemplateInvalid(ValueError):
    """A template that breaks the rules; `.errors` is template_errors()' answer."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, messages in errors.items()
                                   for message in messages))


class _Errors:
    def __init__(self) -> None:
        self.by_field: dict[str, list[str]] = {}

    def add(self, field: str, message: str) -> None:
        self.by_field.setdefault(field, []).append(message)

    def result(self) -> dict[str, list[str]]:
        return {field: self.by_field[field] for field in FIELDS if field in self.by_field}


# -- public API ---------------------------------------------------------------------------------------------


def template_errors(*, name: str, language: str, category: str, parameter_format: str,
                    components: Any, examples: Any) -> dict[str, list[str]]:
    """Every rule the template breaks, as readable messages keyed by the field they belong to:
    "name", "language", "category", "parameter_format", "header", "body", "footer", "buttons",
    "examples", "components" (for structure problems). Empty when valid."""
    errors = _Errors()
    _check_name(name, errors)
    _check_language(language, errors)
    _check_choice("category", category, MessageTemplate.Category.values, errors)
    _check_choice("parameter_format", parameter_format, MessageTemplate.ParameterFormat.values, errors)
    parts = _components(components, errors)
    if parts is not None:
        _check_header(parts.get("HEADER"), errors)
        _check_body(parts.get("BODY"), errors)
        _check_footer(parts.get("FOOTER"), errors)
        _check_buttons(parts.get("BUTTONS"), errors)
        _check_parameter_format(parameter_format, parts, errors)
        _check_examples(examples, parts, errors)
    return errors.result()


def check_template(**fields: Any) -> None:
    """template_errors() that raises TemplateInvalid when anything is wrong."""
    errors = template_errors(**fields)
    if errors:
        raise TemplateInvalid(errors)


def template_parameters(components: Any) -> TemplateParameters:
    """The parameter names each section uses, without braces and without repeats:
    {"header": ["1"], "body": ["1", "2"], "buttons": {1: ["1"]}}. Positional names come in numeric order
    (the order examples are submitted in), named ones in order of first use. "buttons" maps the index of each
    URL button whose URL ends in a variable to that variable; a COPY_CODE button has no parameter in its
    text but still needs an example code under examples["buttons"][index]. Malformed parts are skipped."""
    parts = _components(components, _Errors()) or {}
    header = parts.get("HEADER") or {}
    header_names = _ordered(_names(_text(header))) if _header_format(header) == "TEXT" else []
    buttons: dict[int, list[str]] = {}
    for index, button in enumerate(_button_list(parts.get("BUTTONS"))):
        if isinstance(button, dict) and _upper(button.get("type")) == "URL":
            names = _ordered(_names(_string(button.get("url"))))
            if names:
                buttons[index] = names
    return {"header": header_names, "body": _ordered(_names(_text(parts.get("BODY") or {}))), "buttons": buttons}


# -- small helpers ------------------------------------------------------------------------------------------


def _tag(name: str) -> str:
    return "{{" + name + "}}"


def _tags(names: list[str]) -> str:
    return ", ".join(_tag(name) for name in names)


def _described(value: Any) -> str:
    """How a JSON value reads in a message: its kind, the way an admin user thinks of it."""
    if value is None:
        return "nothing"
    if value == "":
        return "empty text"
    if isinstance(value, bool):
        return "true/false"
    kinds = {dict: "an object", list: "a list", str: "text", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _upper(value: Any) -> str:
    return value.upper() if isinstance(value, str) else ""


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _text(component: dict) -> str:
    return _string(component.get("text"))


def _names(text: str) -> list[str]:
    """Parameter names in order of appearance, repeats kept."""
    return [match.group(1) for match in PARAMETER.finditer(text)]


def _ordered(names: list[str]) -> list[str]:
    unique = list(dict.fromkeys(names))
    return sorted(unique, key=lambda name: int(name) if name.isdigit() else 0)  # stable: named keep their order


def _header_format(header: dict) -> str:
    return _upper(header.get("format", "TEXT"))


def _button_list(component: dict | None) -> list:
    buttons = (component or {}).get("buttons")
    return buttons if isinstance(buttons, list) else []


def _component_text(component: dict, field: str) -> tuple[str | None, str | None]:
    """(text, problem): the component's text ("" when absent), or a problem when it is not text."""
    text = component.get("text", "")
    if text is None:
        return "", None
    if not isinstance(text, str):
        return None, f"the {field} text must be text, found {_described(text)}"
    return text, None


def _check_length(field: str, what: str, text: str, limit: int, errors: _Errors) -> None:
    if len(text) > limit:
        errors.add(field, f"{what} is at most {limit} characters, found {len(text)}")


# -- name, language, choices --------------------------------------------------------------------------------


def _check_name(name: Any, errors: _Errors) -> None:
    if not isinstance(name, str):
        errors.add("name", f"the name must be text, found {_described(name)}")
    elif not name:
        errors.add("name", "the name is required")
    elif len(name) > NAME_MAX:
        errors.add("name", f"the name is at most {NAME_MAX} characters, found {len(name)}")
    elif not NAME_PATTERN.fullmatch(name):
        errors.add("name", f"the name may use only lowercase letters, digits and underscores, found {_short(name)}")


def _check_language(language: Any, errors: _Errors) -> None:
    if not isinstance(language, str) or not LANGUAGE_PATTERN.fullmatch(language):
        found = _short(language) if isinstance(language, str) else _described(language)
        errors.add("language", f"use a language code like en, en_US, pt_BR or es_MX, found {found}")


def _check_choice(field: str, value: Any, allowed: list[str], errors: _Errors) -> None:
    if value not in allowed:
        found = _short(value) if isinstance(value, str) else _described(value)
        errors.add(field, f"must be one of {', '.join(allowed)}, found {found}")


# -- components ---------------------------------------------------------------------------------------------


def _components(components: Any, errors: _Errors) -> dict[str, dict] | None:
    """The first component of each type; structure problems go to "components"."""
    if not isinstance(components, list):
        errors.add("components", "components must be a list of HEADER, BODY, FOOTER and BUTTONS objects, "
                                 f"found {_described(components)}")
        return None
    parts: dict[str, dict] = {}
    for position, component in enumerate(components):
        if not isinstance(component, dict):
            errors.add("components", f"component {position} must be an object, found {_described(component)}")
            continue
        kind = _upper(component.get("type"))
        if kind not in COMPONENT_TYPES:
            errors.add("components", f"component {position} has unknown type {_short(str(component.get('type')))}; "
                                     "expected HEADER, BODY, FOOTER or BUTTONS")
        elif kind in parts:
            errors.add("components", f"component {position} is a second {kind}; a template has at most one")
        else:
            parts[kind] = component
    return parts


def _check_header(header: dict | None, errors: _Errors) -> None:
    if header is None:
        return
    header_format = _header_format(header)
    if header_format not in HEADER_FORMATS:
        errors.add("header", f"the header format must be one of {', '.join(HEADER_FORMATS)}, "
                             f"found {_short(str(header.get('format')))}")
    elif header_format != "TEXT":
        if header.get("text"):
            errors.add("header", f"the {header_format} header has no text; remove it or use the TEXT format")
    else:
        _check_text_header(header, errors)


def _check_text_header(header: dict, errors: _Errors) -> None:
    text, problem = _component_text(header, "header")
    if text is None:
        errors.add("header", str(problem))
        return
    if not text.strip():
        errors.add("header", "a TEXT header needs text (or remove the header)")
    _check_length("header", "the header text", text, HEADER_MAX, errors)
    names = _names(text)
    if len(names) > 1:
        errors.add("header", f"the header may have at most 1 parameter, found {len(names)}: {_tags(names)}")
    for message in _parameter_problems(text):
        errors.add("header", message)


def _check_body(body: dict | None, errors: _Errors) -> None:
    if body is None:
        errors.add("body", "the body is required")
        return
    text, problem = _component_text(body, "body")
    if text is None:
        errors.add("body", str(problem))
        return
    if not text.strip():
        errors.add("body", "the body text is required")
        return
    _check_length("body", "the body text", text, BODY_MAX, errors)
    for message in _parameter_problems(text) + _placement_problems(text):
        errors.add("body", message)


def _check_footer(footer: dict | None, errors: _Errors) -> None:
    if footer is None:
        return
    text, problem = _component_text(footer, "footer")
    if text is None:
        errors.add("footer", str(problem))
        return
    if not text.strip():
        errors.add("footer", "the footer text is empty (remove the footer instead)")
    _check_length("footer", "the footer text", text, FOOTER_MAX, errors)
    names = _names(text)
    if names:
        errors.add("footer", f"the footer cannot have parameters, found {_tags(names)}")


# -- parameters ---------------------------------------------------------------------------------------------


def _parameter_problems(text: str) -> list[str]:
    """Syntax, then numbering (positional) or naming (named) of one section's parameters."""
    problems = _syntax_problems(text)
    names = _names(text)
    positional = [name for name in names if name.isdigit()]
    named = [name for name in names if not name.isdigit()]
    if positional and named:
        return [*problems, f"mixes positional ({_tag(positional[0])}) and named ({_tag(named[0])}) parameters; "
                           "use one kind"]
    return problems + (_numbering_problems(positional) if positional else _naming_problems(named))


def _syntax_problems(text: str) -> list[str]:
    problems = [f"write {match.group(0)} without spaces, as {_tag(match.group(1))}"
                for match in PARAMETER.finditer(text) if match.group(0) != _tag(match.group(1))]
    rest = PARAMETER.sub("", text)
    if "{{" in rest or "}}" in rest:
        problems.append("has '{{' or '}}' that is not a parameter; parameters look like {{1}} or {{first_name}}")
    return problems


def _numbering_problems(names: list[str]) -> list[str]:
    problems = [f"{_tag(name)} is not a valid number; positional parameters are {{{{1}}}}, {{{{2}}}}, ..."
                for name in dict.fromkeys(names) if not POSITIONAL_PARAMETER.fullmatch(name)]
    numbers = sorted({int(name) for name in names})
    if numbers != list(range(1, len(numbers) + 1)):
        found = _tags([str(number) for number in numbers])
        problems.append(f"positional parameters must be numbered from {{{{1}}}} without gaps, found {found}")
    return problems


def _naming_problems(names: list[str]) -> list[str]:
    unique = list(dict.fromkeys(names))
    problems = [f"{_tag(name)} is not a valid name: use lowercase letters, digits and underscores, starting with "
                "a letter" for name in unique if not NAMED_PARAMETER.fullmatch(name)]
    problems += [f"{_tag(name)} is used {names.count(name)} times; a named parameter may appear only once"
                 for name in unique if names.count(name) > 1]
    return problems


def _placement_problems(body: str) -> list[str]:
    """WhatsApp rejects a body that starts or ends with a parameter or has two parameters side by side."""
    matches = list(PARAMETER.finditer(body))
    problems = [f"parameters {first.group(0)} and {second.group(0)} are next to each other; put text between them"
                for first, second in pairwise(matches)
                if not body[first.end():second.start()].strip()]
    stripped = body.strip()
    if (match := PARAMETER.match(stripped)) is not None:
        problems.append(f"the body starts with the parameter {match.group(0)}; start it with text")
    last = list(PARAMETER.finditer(stripped))[-1:]
    if last and last[0].end() == len(stripped):
        problems.append(f"the body ends with the parameter {last[0].group(0)}; end it with text")
    return problems


def _check_parameter_format(parameter_format: Any, parts: dict[str, dict], errors: _Errors) -> None:
    if parameter_format not in MessageTemplate.ParameterFormat.values:
        return
    header = parts.get("HEADER") or {}
    names = (_names(_text(header)) if _header_format(header) == "TEXT" else []) + _names(_text(parts.get("BODY", {})))
    wanted_positional = parameter_format == MessageTemplate.ParameterFormat.POSITIONAL
    wrong = list(dict.fromkeys(name for name in names if name.isdigit() != wanted_positional))
    if wrong:
        other = "named" if wanted_positional else "positional"
        errors.add("parameter_format", f"is {parameter_format} but the text uses {other} parameters: {_tags(wrong)}; "
                                       "change the parameter format or the text")


# -- buttons ------------------------------------------------------------------------------------------------


def _check_buttons(component: dict | None, errors: _Errors) -> None:
    if component is None:
        return
    buttons = component.get("buttons")
    if not isinstance(buttons, list) or not buttons:
        errors.add("buttons", f"the BUTTONS component needs a list of buttons, found {_described(buttons)}"
                              + (" (empty)" if buttons == [] else ""))
        return
    if len(buttons) > BUTTONS_MAX:
        errors.add("buttons", f"a template has at most {BUTTONS_MAX} buttons, found {len(buttons)}")
    kinds = [_check_button(index, button, errors) for index, button in enumerate(buttons)]
    for kind, limit in BUTTON_TYPE_LIMITS.items():
        if kinds.count(kind) > limit:
            errors.add("buttons", f"a template has at most {limit} {kind} button{'s' if limit > 1 else ''}, "
                                  f"found {kinds.count(kind)}")
    _check_grouping([kind for kind in kinds if kind], errors)


def _check_button(index: int, button: Any, errors: _Errors) -> str | None:
    """Checks one button; its type when known."""
    if not isinstance(button, dict):
        errors.add("buttons", f"button {index} must be an object, found {_described(button)}")
        return None
    kind = _upper(button.get("type"))
    if kind not in BUTTON_TYPES:
        errors.add("buttons", f"button {index} has unknown type {_short(str(button.get('type')))}; expected "
                              f"{', '.join(BUTTON_TYPES)}")
        return None
    label = f"button {index} ({kind})"
    for message in _label_problems(kind, button.get("text")):
        errors.add("buttons", f"{label}: {message}")
    check = {"URL": _url_problems, "PHONE_NUMBER": _phone_problems}.get(kind)
    for message in check(button) if check else []:
        errors.add("buttons", f"{label}: {message}")
    return kind


def _label_problems(kind: str, text: Any) -> list[str]:
    if text is None and kind == "COPY_CODE":
        return []  # WhatsApp shows its own "Copy code" label
    if not isinstance(text, str) or not text.strip():
        return [f"needs a label of 1 to {BUTTON_TEXT_MAX} characters, found {_described(text)}"]
    problems = [] if len(text) <= BUTTON_TEXT_MAX else [
        f"the label is at most {BUTTON_TEXT_MAX} characters, found {len(text)}"]
    if PARAMETER.search(text):
        problems.append("a button label cannot have parameters")
    return problems


def _url_problems(button: dict) -> list[str]:
    url = button.get("url")
    if not isinstance(url, str) or not url:
        return [f"needs a url, found {_described(url)}"]
    problems = [] if len(url) <= URL_MAX else [f"the url is at most {URL_MAX} characters, found {len(url)}"]
    if not url.startswith(("https://", "http://")):
        problems.append(f"the url must start with https:// (or http://), found {_short(url)}")
    elif not urlsplit(PARAMETER.sub("", url)).netloc:
        problems.append(f"the url needs a host before any parameter, found {_short(url)}")
    matches = list(PARAMETER.finditer(url))
    if len(matches) > 1:
        problems.append(f"the url may have at most 1 parameter, found {len(matches)}")
    elif matches and matches[0].end() != len(url):
        problems.append(f"the url's parameter {matches[0].group(0)} must be at the very end of the url")
    elif matches and matches[0].group(0) != "{{1}}":
        problems.append(f"the url's parameter must be written {{{{1}}}}, found {matches[0].group(0)}")
    if "{{" in PARAMETER.sub("", url) or "}}" in PARAMETER.sub("", url):
        problems.append("the url has '{{' or '}}' that is not a parameter; write {{1}}")
    return problems


def _phone_problems(button: dict) -> list[str]:
    phone = button.get("phone_number")
    if not isinstance(phone, str) or not phone:
        return [f"needs a phone_number, found {_described(phone)}"]
    if len(phone) > PHONE_MAX:
        return [f"the phone number is at most {PHONE_MAX} characters, found {len(phone)}"]
    if not E164.fullmatch(phone):
        return [f"the phone number must be + then country code and number, digits only (e.g. +15550001111), "
                f"found {_short(phone)}"]
    return []


def _check_grouping(kinds: list[str], errors: _Errors) -> None:
    """Quick replies form one block before or after the call-to-action buttons, never split by them."""
    flags = [kind == "QUICK_REPLY" for kind in kinds]
    runs = 1 + sum(1 for first, second in pairwise(flags) if first != second) if flags else 0
    if runs > 2:
        order = ", ".join(kinds)
        errors.add("buttons", "quick reply buttons must be grouped together, all before or all after the other "
                              f"buttons; found {order}")


# -- examples -----------------------------------------------------------------------------------------------


def _check_examples(examples: Any, parts: dict[str, dict], errors: _Errors) -> None:
    examples = {} if examples in (None, "") else examples
    if not isinstance(examples, dict):
        errors.add("examples", f"examples must be an object with header, body and buttons, found "
                               f"{_described(examples)}")
        return
    for key in examples:
        if key not in EXAMPLE_SECTIONS:
            errors.add("examples", f"unknown section {_short(str(key))}; use header, body or buttons")
    parameters = template_parameters(list(parts.values()))
    _check_header_example(parts.get("HEADER"), parameters["header"], examples.get("header"), errors)
    _check_values("body", parameters["body"], examples.get("body"), errors)
    _check_button_examples(_button_list(parts.get("BUTTONS")), examples.get("buttons"), errors)


def _check_header_example(header: dict | None, names: list[str], raw: Any, errors: _Errors) -> None:
    header_format = _header_format(header) if header else ""
    if header_format not in MEDIA_HEADER_FORMATS:
        _check_values("header", names, raw, errors)
        return
    url = raw.get("url") if isinstance(raw, dict) else raw
    if not isinstance(url, str) or not url.startswith("https://"):
        found = _short(url) if isinstance(url, str) else _described(url)
        errors.add("examples", f"the {header_format} header needs an example https link in header.url, found {found}")
    extra = [key for key in raw if key != "url"] if isinstance(raw, dict) else []
    if extra:
        errors.add("examples", f"header has values for {', '.join(map(str, extra))}, which the {header_format} "
                               "header does not have; give only url")


def _as_values(raw: Any) -> dict[str, Any] | None:
    """Named values; a list gives positional values {{1}}, {{2}}... in order; None when malformed."""
    if raw in (None, ""):
        return {}
    if isinstance(raw, list):
        return {str(position): value for position, value in enumerate(raw, start=1)}
    if isinstance(raw, dict):
        return {str(key): value for key, value in raw.items()}
    return None


def _value_problem(value: Any) -> str | None:
    if value is None:
        return "needs an example value"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return f"needs text as its example, found {_described(value)}"
    if not str(value).strip():
        return "needs a non-empty example value"
    return None


def _check_values(section: str, names: list[str], raw: Any, errors: _Errors) -> None:
    values = _as_values(raw)
    if values is None:
        errors.add("examples", f"{section} examples must be an object (or a list for positional parameters), "
                               f"found {_described(raw)}")
        return
    for name in names:
        if problem := _value_problem(values.get(name)):
            errors.add("examples", f"{section} parameter {_tag(name)} {problem}")
    for name in values:
        if name not in names:
            errors.add("examples", f"{section} has an example for {_tag(name)}, which the {section} does not have")


def _button_values(raw: Any) -> dict[str, Any] | None:
    """Button examples keyed by button index: {"1": "abc"} or [{"index": 1, "value": "abc"}]."""
    if isinstance(raw, list) and all(isinstance(item, dict) for item in raw):
        return {str(item.get("index")): item.get("value") for item in raw}
    if isinstance(raw, list):
        return None
    return _as_values(raw)


def _check_button_examples(buttons: list, raw: Any, errors: _Errors) -> None:
    values = _button_values(raw)
    if values is None:
        errors.add("examples", f"buttons examples must be an object keyed by button index, found {_described(raw)}")
        return
    needed = {str(index): kind for index, kind in _buttons_needing_example(buttons).items()}
    for index, kind in needed.items():
        value = values.get(index)
        what = "the url's variable part" if kind == "URL" else "the code to copy"
        if problem := _value_problem(value):
            errors.add("examples", f"button {index} ({kind}) {problem} ({what})")
        elif kind == "COPY_CODE" and len(str(value)) > COPY_CODE_MAX:
            errors.add("examples", f"button {index} (COPY_CODE): the example code is at most {COPY_CODE_MAX} "
                                   f"characters, found {len(str(value))}")
    for index in values:
        if index not in needed:
            errors.add("examples", f"buttons has an example for button {index}, which takes no value "
                                   "(only URL buttons with {{1}} and COPY_CODE buttons do)")


def _buttons_needing_example(buttons: list) -> dict[int, str]:
    needing: dict[int, str] = {}
    for index, button in enumerate(buttons):
        kind = _upper(button.get("type")) if isinstance(button, dict) else ""
        if kind == "COPY_CODE" or (kind == "URL" and PARAMETER.search(_string(button.get("url")))):
            needing[index] = kind
    return needing
