"""
Template validation against WhatsApp's authoring rules: every rule has a template that passes and one that
breaks it, and the message lands on the field the author has to fix and says what was found. Malformed
input never raises.
"""

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from templates_app.validation import (
    FIELDS,
    TemplateInvalid,
    check_template,
    template_errors,
    template_parameters,
)


def header_text(text: Any) -> dict:
    return {"type": "HEADER", "format": "TEXT", "text": text}


def header_media(header_format: str) -> dict:
    return {"type": "HEADER", "format": header_format}


def body(text: Any) -> dict:
    return {"type": "BODY", "text": text}


def footer(text: Any) -> dict:
    return {"type": "FOOTER", "text": text}


def buttons(*items: Any) -> dict:
    return {"type": "BUTTONS", "buttons": list(items)}


def quick(text: Any = "Yes") -> dict:
    return {"type": "QUICK_REPLY", "text": text}


def link(url: Any = "https://shop.example/track/{{1}}", text: str = "Track") -> dict:
    return {"type": "URL", "text": text, "url": url}


def phone(number: Any = "+15550001111") -> dict:
    return {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": number}


def copy_code(**extra: Any) -> dict:
    return {"type": "COPY_CODE", "text": "Copy code", **extra}


def examples_for(components: Any) -> dict:
    """An example for every parameter the components have (for tests about other rules)."""
    parameters = template_parameters(components)
    examples: dict[str, Any] = {"body": {name: f"value {name}" for name in parameters["body"]},
                                "buttons": {str(index): "order-123" for index in parameters["buttons"]}}
    if parameters["header"]:
        examples["header"] = dict.fromkeys(parameters["header"], "Summer")
    for component in components if isinstance(components, list) else []:
        if not isinstance(component, dict):
            continue
        if str(component.get("format")).upper() in ("IMAGE", "VIDEO", "DOCUMENT"):
            examples["header"] = {"url": "https://cdn.example/banner.jpg"}
        for index, button in enumerate(component.get("buttons") or []):
            if isinstance(button, dict) and button.get("type") == "COPY_CODE":
                examples["buttons"][str(index)] = "SAVE10"
    return examples


def template(**changes: Any) -> dict:
    """A complete valid positional marketing template (text header, body, footer, all four button kinds);
    header/body/footer/buttons replace a component (None drops it), other keys replace a field. Examples are
    made up for every parameter unless given."""
    parts: dict[str, Any] = {
        "header": header_text("Our {{1}} sale is on"),
        "body": body("Hi {{1}}, your order {{2}} has shipped."),
        "footer": footer("Reply STOP to opt out"),
        "buttons": buttons(quick("Yes"), quick("No"), link(), phone(), copy_code()),
    }
    fields: dict[str, Any] = {"name": "order_update", "language": "en_US", "category": "marketing",
                              "parameter_format": "positional"}
    for key, value in changes.items():
        (parts if key in parts else fields)[key] = value
    fields.setdefault("components", [part for part in parts.values() if part is not None])
    fields.setdefault("examples", examples_for(fields["components"]))
    return fields


def assert_rule(changes: dict, field: str | None, fragment: str, also: tuple[str, ...] = ()) -> None:
    """Valid (field None), or that field in error with a message containing the fragment, and no other field
    but those in `also`."""
    errors = template_errors(**template(**changes))
    if field is None:
        assert errors == {}
        return
    assert sorted(errors) == sorted([field, *also]), errors
    assert any(fragment in message for message in errors[field]), errors[field]


def test_complete_template_with_every_component_and_button_kind_is_valid():
    fields = template()
    assert fields["examples"] == {"header": {"1": "Summer"}, "body": {"1": "value 1", "2": "value 2"},
                                  "buttons": {"2": "order-123", "4": "SAVE10"}}
    assert template_errors(**fields) == {}


def test_named_template_is_valid():
    fields = template(parameter_format="named", header=header_text("News for {{city}}"),
                      body=body("Hi {{first_name}}, order {{order_id}} is ready, {{first_name_2}}."),
                      examples={"header": {"city": "Lisbon"},
                                "body": {"first_name": "Ana", "order_id": "A-1", "first_name_2": "again"},
                                "buttons": {"2": "order-123", "4": "SAVE10"}})
    assert template_errors(**fields) == {}


@pytest.mark.parametrize(("name", "field", "fragment"), [
    pytest.param("order_update_2", None, "", id="good"),
    pytest.param("a" * 512, None, "", id="good-512"),
    pytest.param("Order Update", "name", "only lowercase letters, digits and underscores, found 'Order Update'",
                 id="uppercase-and-space"),
    pytest.param("order-update", "name", "only lowercase letters", id="dash"),
    pytest.param("", "name", "the name is required", id="empty"),
    pytest.param("a" * 513, "name", "at most 512 characters, found 513", id="too-long"),
    pytest.param(12, "name", "must be text, found a number", id="not-text"),
])
def test_name(name, field, fragment):
    assert_rule({"name": name}, field, fragment)


@pytest.mark.parametrize(("language", "field"), [
    ("en", None), ("en_US", None), ("pt_BR", None), ("es_MX", None), ("fil", None),
    ("EN", "language"), ("en-US", "language"), ("en_us", "language"), ("english", "language"), (None, "language"),
])
def test_language(language, field):
    assert_rule({"language": language}, field, "use a language code like en, en_US, pt_BR or es_MX, found")


@pytest.mark.parametrize(("key", "value", "field", "fragment"), [
    ("category", "utility", None, ""),
    ("category", "authentication", None, ""),
    ("category", "promo", "category", "must be one of marketing, utility, authentication, found 'promo'"),
    ("category", "MARKETING", "category", "found 'MARKETING'"),
    ("parameter_format", "positional", None, ""),
    ("parameter_format", "numbered", "parameter_format", "must be one of positional, named, found 'numbered'"),
])
def test_category_and_parameter_format_choices(key, value, field, fragment):
    assert_rule({key: value}, field, fragment)


@pytest.mark.parametrize(("components", "field", "fragment"), [
    pytest.param([{"type": "header", "format": "text", "text": "Sale"}, {"type": "body", "text": "Hi there {{1}}."}],
                 None, "", id="types-in-any-case"),
    pytest.param({"type": "BODY", "text": "Hi"}, "components", "must be a list of HEADER, BODY, FOOTER and BUTTONS "
                 "objects, found an object", id="not-a-list"),
    pytest.param(None, "components", "found nothing", id="none"),
    pytest.param([body("Hi there"), "FOOTER"], "components", "component 1 must be an object, found text",
                 id="component-not-object"),
    pytest.param([body("Hi there"), {"type": "CAROUSEL"}], "components",
                 "component 1 has unknown type 'CAROUSEL'; expected HEADER, BODY, FOOTER or BUTTONS", id="unknown"),
    pytest.param([body("Hi there"), {"text": "x"}], "components", "unknown type 'None'", id="no-type"),
    pytest.param([body("Hi there"), body("Again")], "components", "component 1 is a second BODY; a template has "
                 "at most one", id="twice"),
])
def test_components_structure(components, field, fragment):
    assert_rule({"components": components}, field, fragment)


@pytest.mark.parametrize(("component", "field", "fragment"), [
    pytest.param(body("b" * 1024), None, "", id="good-1024"),
    pytest.param(None, "body", "the body is required", id="missing"),
    pytest.param(body("   "), "body", "the body text is required", id="blank"),
    pytest.param(body(5), "body", "the body text must be text, found a number", id="not-text"),
    pytest.param(body("b" * 1025), "body", "the body text is at most 1024 characters, found 1025", id="too-long"),
])
def test_body_text(component, field, fragment):
    assert_rule({"body": component}, field, fragment)


@pytest.mark.parametrize(("component", "field", "fragment"), [
    pytest.param(header_text("h" * 60), None, "", id="good-60"),
    pytest.param(header_media("IMAGE"), None, "", id="good-image"),
    pytest.param(header_media("video"), None, "", id="good-video"),
    pytest.param(header_media("DOCUMENT"), None, "", id="good-document"),
    pytest.param(header_media("LOCATION"), None, "", id="good-location"),
    pytest.param(header_text("h" * 61), "header", "the header text is at most 60 characters, found 61",
                 id="too-long"),
    pytest.param(header_text("{{1}} and {{2}} sale"), "header", "at most 1 parameter, found 2: {{1}}, {{2}}",
                 id="two-parameters"),
    pytest.param(header_media("GIF"), "header", "must be one of TEXT, IMAGE, VIDEO, DOCUMENT, LOCATION, "
                 "found 'GIF'", id="unknown-format"),
    pytest.param({"type": "HEADER", "format": "IMAGE", "text": "Sale"}, "header",
                 "the IMAGE header has no text; remove it or use the TEXT format", id="text-on-image"),
    pytest.param(header_text(""), "header", "a TEXT header needs text", id="empty-text"),
    pytest.param(header_text(["Sale"]), "header", "the header text must be text, found a list", id="not-text"),
])
def test_header(component, field, fragment):
    assert_rule({"header": component}, field, fragment)


@pytest.mark.parametrize(("component", "field", "fragment"), [
    pytest.param(footer("f" * 60), None, "", id="good-60"),
    pytest.param(footer("f" * 61), "footer", "the footer text is at most 60 characters, found 61", id="too-long"),
    pytest.param(footer("Sent to {{1}}"), "footer", "the footer cannot have parameters, found {{1}}",
                 id="parameter"),
    pytest.param(footer(""), "footer", "the footer text is empty", id="empty"),
    pytest.param(footer({"text": "x"}), "footer", "must be text, found an object", id="not-text"),
])
def test_footer(component, field, fragment):
    assert_rule({"footer": component}, field, fragment)


@pytest.mark.parametrize(("component", "field", "fragment"), [
    pytest.param(buttons(*[quick(f"Option {n}") for n in range(10)]), None, "", id="good-10"),
    pytest.param(buttons(*[quick(f"Option {n}") for n in range(11)]), "buttons",
                 "at most 10 buttons, found 11", id="eleven"),
    pytest.param(buttons(quick("q" * 25)), None, "", id="label-25"),
    pytest.param(buttons(quick("q" * 26)), "buttons", "button 0 (QUICK_REPLY): the label is at most 25 "
                 "characters, found 26", id="label-26"),
    pytest.param(buttons(quick("")), "buttons", "button 0 (QUICK_REPLY): needs a label of 1 to 25 characters, "
                 "found empty text", id="label-empty"),
    pytest.param(buttons(quick(None)), "buttons", "needs a label of 1 to 25 characters, found nothing",
                 id="label-missing"),
    pytest.param(buttons(quick("Hi {{1}}")), "buttons", "a button label cannot have parameters",
                 id="label-parameter"),
    pytest.param(buttons({"type": "OTP", "text": "Code"}), "buttons", "button 0 has unknown type 'OTP'; expected "
                 "QUICK_REPLY, URL, PHONE_NUMBER, COPY_CODE", id="unknown-type"),
    pytest.param(buttons("Yes"), "buttons", "button 0 must be an object, found text", id="not-object"),
    pytest.param({"type": "BUTTONS", "buttons": []}, "buttons", "needs a list of buttons, found a list (empty)",
                 id="empty-list"),
    pytest.param({"type": "BUTTONS", "buttons": "Yes"}, "buttons", "needs a list of buttons, found text",
                 id="not-list"),
    pytest.param(buttons(link(), link("https://a.example/b")), None, "", id="two-urls"),
    pytest.param(buttons(link(), link("https://a.example/b"), link("https://a.example/c")), "buttons",
                 "at most 2 URL buttons, found 3", id="three-urls"),
    pytest.param(buttons(phone(), phone()), "buttons", "at most 1 PHONE_NUMBER button, found 2", id="two-phones"),
])
def test_buttons_count_type_and_label(component, field, fragment):
    assert_rule({"buttons": component}, field, fragment)


def test_at_most_one_copy_code_button():
    errors = template_errors(**template(buttons=buttons(copy_code(), copy_code())))
    assert errors == {"buttons": ["a template has at most 1 COPY_CODE button, found 2"]}


def test_copy_code_label_may_be_left_out():
    assert template_errors(**template(buttons=buttons({"type": "COPY_CODE"}))) == {}


@pytest.mark.parametrize(("kinds", "field"), [
    pytest.param((quick, quick, link, phone), None, id="quick-replies-first"),
    pytest.param((link, phone, quick, quick), None, id="quick-replies-last"),
    pytest.param((quick, link, quick), "buttons", id="quick-replies-split"),
    pytest.param((link, quick, phone), "buttons", id="call-to-action-split"),
])
def test_quick_replies_are_grouped(kinds, field):
    assert_rule({"buttons": buttons(*[make() for make in kinds])}, field,
                "quick reply buttons must be grouped together, all before or all after the other buttons; found ")


@pytest.mark.parametrize(("url", "field", "fragment"), [
    pytest.param("https://shop.example/track/{{1}}", None, "", id="https-variable-at-end"),
    pytest.param("http://shop.example/help", None, "", id="http-no-variable"),
    pytest.param("https://shop.example/" + "p" * 1979, None, "", id="2000-characters"),
    pytest.param("https://shop.example/" + "p" * 1980, "buttons", "the url is at most 2000 characters, found 2001",
                 id="2001-characters"),
    pytest.param("ftp://shop.example/x", "buttons", "the url must start with https:// (or http://), found "
                 "'ftp://shop.example/x'", id="scheme"),
    pytest.param("https://shop.example/{{1}}/x", "buttons", "the url's parameter {{1}} must be at the very end",
                 id="variable-in-middle"),
    pytest.param("https://shop.example/{{1}}/{{2}}", "buttons", "the url may have at most 1 parameter, found 2",
                 id="two-variables"),
    pytest.param("https://shop.example/t/{{2}}", "buttons", "the url's parameter must be written {{1}}, "
                 "found {{2}}", id="not-numbered-1"),
    pytest.param("https://{{1}}", "buttons", "the url needs a host before any parameter", id="no-host"),
    pytest.param("https://shop.example/t/{{1}", "buttons", "has '{{' or '}}' that is not a parameter",
                 id="broken-braces"),
    pytest.param("", "buttons", "button 0 (URL): needs a url, found empty text", id="missing"),
])
def test_url_button(url, field, fragment):
    assert_rule({"buttons": buttons(link(url))}, field, fragment)


@pytest.mark.parametrize(("number", "field", "fragment"), [
    pytest.param("+15550001111", None, "", id="e164"),
    pytest.param("+351912345678", None, "", id="e164-portugal"),
    pytest.param("15550001111", "buttons", "must be + then country code and number, digits only", id="no-plus"),
    pytest.param("+1 555 000 1111", "buttons", "found '+1 555 000 1111'", id="spaces"),
    pytest.param("+" + "1" * 20, "buttons", "the phone number is at most 20 characters, found 21", id="too-long"),
    pytest.param(None, "buttons", "button 0 (PHONE_NUMBER): needs a phone_number, found nothing", id="missing"),
])
def test_phone_number_button(number, field, fragment):
    assert_rule({"buttons": buttons(phone(number))}, field, fragment)


@pytest.mark.parametrize(("text", "field", "fragment"), [
    pytest.param("Hi {{1}}, order {{2}} for {{3}} is ready.", None, "", id="numbered-from-1"),
    pytest.param("Hi {{2}}, order {{1}} is ready.", None, "", id="any-order"),
    pytest.param("Hi {{1}}, {{1}} again.", None, "", id="repeated"),
    pytest.param("Hi {{1}}, order {{3}} is ready.", "body", "must be numbered from {{1}} without gaps, found "
                 "{{1}}, {{3}}", id="gap"),
    pytest.param("Hi {{2}}, order {{3}} is ready.", "body", "found {{2}}, {{3}}", id="starts-at-2"),
    pytest.param("Hi {{0}}, order {{1}} is ready.", "body", "{{0}} is not a valid number", id="zero"),
    pytest.param("Hi {{01}}, there.", "body", "{{01}} is not a valid number", id="leading-zero"),
    pytest.param("Hi {{ 1 }}, there.", "body", "write {{ 1 }} without spaces, as {{1}}", id="spaces"),
    pytest.param("Hi {{name, there.", "body", "has '{{' or '}}' that is not a parameter", id="unclosed"),
])
def test_positional_parameters(text, field, fragment):
    assert_rule({"body": body(text)}, field, fragment)


def test_one_section_mixing_positional_and_named():
    # The named one also contradicts the positional parameter format.
    assert_rule({"body": body("Hi {{1}}, order {{order}} is ready.")}, "body",
                "mixes positional ({{1}}) and named ({{order}}) parameters; use one kind", also=("parameter_format",))


@pytest.mark.parametrize(("text", "field", "fragment"), [
    pytest.param("Hi {{first_name}}, order {{order_2}} is ready.", None, "", id="good"),
    pytest.param("Hi {{FirstName}}, there.", "body", "{{FirstName}} is not a valid name: use lowercase letters, "
                 "digits and underscores, starting with a letter", id="uppercase"),
    pytest.param("Hi {{1st}}, there.", "body", "{{1st}} is not a valid name", id="starts-with-digit"),
    pytest.param("Hi {{_name}}, there.", "body", "{{_name}} is not a valid name", id="starts-with-underscore"),
    pytest.param("Hi {{name}}, {{name}} again.", "body", "{{name}} is used 2 times; a named parameter may appear "
                 "only once", id="repeated"),
])
def test_named_parameters(text, field, fragment):
    assert_rule({"parameter_format": "named", "header": None, "body": body(text)}, field, fragment)


@pytest.mark.parametrize(("changes", "fragment"), [
    pytest.param({"parameter_format": "named"}, "is named but the text uses positional parameters: {{1}}, {{2}}",
                 id="named-declared-positional-used"),
    pytest.param({"body": body("Hi {{first_name}}, welcome.")}, "is positional but the text uses named "
                 "parameters: {{first_name}}", id="positional-declared-named-used"),
    pytest.param({"parameter_format": "named", "header": header_text("Our {{1}} sale"),
                  "body": body("Hi {{first_name}}, welcome.")}, "uses positional parameters: {{1}}",
                 id="mixed-across-sections"),
])
def test_parameter_format_matches_the_text(changes, fragment):
    assert_rule(changes, "parameter_format", fragment)


def test_url_variable_is_numbered_in_named_templates_too():
    fields = template(parameter_format="named", header=None, body=body("Hi {{first_name}}, track it below."))
    assert template_errors(**fields) == {}
    assert template_parameters(fields["components"])["buttons"] == {2: ["1"]}


@pytest.mark.parametrize(("text", "field", "fragment"), [
    pytest.param("Hi {{1}}, order {{2}} shipped.", None, "", id="text-between"),
    pytest.param("Hi {{1}}.", None, "", id="punctuation-after-last"),
    pytest.param("Hi {{1}},{{2}} shipped.", None, "", id="comma-between"),
    pytest.param("Hi {{1}}{{2}} shipped.", "body", "parameters {{1}} and {{2}} are next to each other; put text "
                 "between them", id="touching"),
    pytest.param("Hi {{1}} \n {{2}} shipped.", "body", "{{1}} and {{2}} are next to each other", id="whitespace"),
    pytest.param("{{1}}, your order shipped.", "body", "the body starts with the parameter {{1}}; start it with "
                 "text", id="starts"),
    pytest.param("  {{1}}, your order shipped.", "body", "starts with the parameter {{1}}",
                 id="starts-after-whitespace"),
    pytest.param("Your order shipped, {{1}}", "body", "the body ends with the parameter {{1}}; end it with text",
                 id="ends"),
    pytest.param("Your order shipped, {{1}}\n ", "body", "ends with the parameter {{1}}",
                 id="ends-before-whitespace"),
])
def test_body_parameter_placement(text, field, fragment):
    assert_rule({"body": body(text)}, field, fragment)


EXAMPLE_BUTTONS = {"2": "order-123", "4": "SAVE10"}


@pytest.mark.parametrize(("examples", "field", "fragment"), [
    pytest.param({"header": ["Summer"], "body": ["Ana", "A-1"], "buttons": EXAMPLE_BUTTONS}, None, "",
                 id="lists-for-positional"),
    pytest.param({"header": {"1": "Summer"}, "body": {"1": "Ana", "2": 123}, "buttons": EXAMPLE_BUTTONS}, None, "",
                 id="number-value"),
    pytest.param({"header": {"1": "Summer"}, "body": {"1": "Ana", "2": "A-1"},
                  "buttons": [{"index": 2, "value": "order-123"}, {"index": 4, "value": "SAVE10"}]}, None, "",
                 id="buttons-as-list"),
    pytest.param({"header": {"1": "Summer"}, "body": {"1": "Ana"}, "buttons": EXAMPLE_BUTTONS}, "examples",
                 "body parameter {{2}} needs an example value", id="missing-body"),
    pytest.param({"body": {"1": "Ana", "2": "A-1"}, "buttons": EXAMPLE_BUTTONS}, "examples",
                 "header parameter {{1}} needs an example value", id="missing-header"),
    pytest.param({"header": {"1": "Summer"}, "body": {"1": "Ana", "2": "  "}, "buttons": EXAMPLE_BUTTONS},
                 "examples", "body parameter {{2}} needs a non-empty example value", id="blank"),
    pytest.param({"header": {"1": "Summer"}, "body": {"1": "Ana", "2": {"x": 1}}, "buttons": EXAMPLE_BUTTONS},
                 "examples", "body parameter {{2}} needs text as its example, found an object", id="not-text"),
    pytest.param({"header": {"1": "Summer"}, "body": {"1": "Ana", "2": "A-1", "3": "extra"},
                  "buttons": EXAMPLE_BUTTONS}, "examples",
                 "body has an example for {{3}}, which the body does not have", id="extra-parameter"),
    pytest.param({"header": {"1": "Summer"}, "body": "Ana", "buttons": EXAMPLE_BUTTONS}, "examples",
                 "body examples must be an object (or a list for positional parameters), found text",
                 id="body-not-object"),
    pytest.param({"header": {"1": "Summer"}, "body": ["Ana", "A-1"], "buttons": {"4": "SAVE10"}}, "examples",
                 "button 2 (URL) needs an example value (the url's variable part)", id="missing-url-variable"),
    pytest.param({"header": {"1": "Summer"}, "body": ["Ana", "A-1"], "buttons": {"2": "order-123"}}, "examples",
                 "button 4 (COPY_CODE) needs an example value (the code to copy)", id="missing-code"),
    pytest.param({"header": {"1": "Summer"}, "body": ["Ana", "A-1"], "buttons": {**EXAMPLE_BUTTONS, "4": "C" * 15}},
                 None, "", id="code-15"),
    pytest.param({"header": {"1": "Summer"}, "body": ["Ana", "A-1"], "buttons": {**EXAMPLE_BUTTONS, "4": "C" * 16}},
                 "examples", "button 4 (COPY_CODE): the example code is at most 15 characters, found 16",
                 id="code-16"),
    pytest.param({"header": {"1": "Summer"}, "body": ["Ana", "A-1"], "buttons": {**EXAMPLE_BUTTONS, "0": "yes"}},
                 "examples", "buttons has an example for button 0, which takes no value", id="quick-reply-value"),
    pytest.param({"header": {"1": "Summer"}, "body": ["Ana", "A-1"], "buttons": ["order-123"]}, "examples",
                 "buttons examples must be an object keyed by button index, found a list", id="buttons-bad-list"),
    pytest.param({"header": {"1": "Summer"}, "body": ["Ana", "A-1"], "buttons": EXAMPLE_BUTTONS, "footer": {}},
                 "examples", "unknown section 'footer'; use header, body or buttons", id="unknown-section"),
    pytest.param(["Ana", "A-1"], "examples", "examples must be an object with header, body and buttons, found a "
                 "list", id="not-object"),
])
def test_examples(examples, field, fragment):
    assert_rule({"examples": examples}, field, fragment)


@pytest.mark.parametrize(("examples", "field", "fragment"), [
    pytest.param({"header": {"url": "https://cdn.example/banner.jpg"}}, None, "", id="https"),
    pytest.param({"header": "https://cdn.example/banner.jpg"}, None, "", id="plain-link"),
    pytest.param({}, "examples", "the IMAGE header needs an example https link in header.url, found nothing",
                 id="missing"),
    pytest.param({"header": {"url": "http://cdn.example/banner.jpg"}}, "examples",
                 "needs an example https link in header.url, found 'http://cdn.example/banner.jpg'", id="http"),
    pytest.param({"header": {"url": "https://cdn.example/a.jpg", "1": "x"}}, "examples",
                 "header has values for 1, which the IMAGE header does not have; give only url", id="extra"),
])
def test_media_header_example(examples, field, fragment):
    changes = {"header": header_media("IMAGE"), "body": body("Hello there, welcome."), "buttons": None,
               "examples": examples}
    assert_rule(changes, field, fragment)


def test_examples_may_be_empty_when_there_are_no_parameters():
    fields = template(header=header_media("LOCATION"), body=body("Hello there."), buttons=buttons(quick()))
    for empty in (None, {}, ""):
        assert template_errors(**{**fields, "examples": empty}) == {}


def test_every_problem_is_reported_at_once_keyed_in_display_order():
    errors = template_errors(name="Bad Name", language="english", category="promo", parameter_format="x",
                             components=[body("{{1}}{{3}}"), "junk", header_text("h" * 70),
                                         buttons(link("ftp://x"), quick(""))],
                             examples={"body": {"9": "x"}})
    assert list(errors) == ["name", "language", "category", "parameter_format", "header", "body", "buttons",
                            "examples", "components"]
    assert list(errors) == [field for field in FIELDS if field in errors]
    assert all(isinstance(message, str) and message for messages in errors.values() for message in messages)


def test_template_invalid_carries_the_errors_and_reads_well():
    fields = template(name="Bad Name", footer=footer("f" * 61))
    with pytest.raises(TemplateInvalid) as raised:
        check_template(**fields)
    assert raised.value.errors == template_errors(**fields)
    assert isinstance(raised.value, ValueError)
    assert str(raised.value) == ("name: the name may use only lowercase letters, digits and underscores, found "
                                 "'Bad Name'; footer: the footer text is at most 60 characters, found 61")
    check_template(**template())  # a valid template raises nothing


def test_template_parameters_per_section():
    components = [header_text("Our {{1}} sale"), body("Hi {{2}}, {{1}} and {{2}} again; {{10}}."),
                  buttons(quick(), link(), link("https://a.example/static"), copy_code())]
    assert template_parameters(components) == {"header": ["1"], "body": ["1", "2", "10"], "buttons": {1: ["1"]}}
    named = [body("Hi {{name}}, {{order}} and {{name}}.")]
    assert template_parameters(named) == {"header": [], "body": ["name", "order"], "buttons": {}}
    assert template_parameters([header_media("IMAGE"), body("Hi.")])["header"] == []


@pytest.mark.parametrize("components", [None, "text", 5, {"type": "BODY"}, [None, 3, "x"],
                                        [{"type": "BUTTONS", "buttons": "x"}], [{"type": "BODY", "text": 7}]])
def test_template_parameters_tolerates_malformed_components(components):
    assert template_parameters(components) == {"header": [], "body": [], "buttons": {}}


@pytest.mark.parametrize(("components", "examples"), [
    ([{"type": "BODY", "text": None}], None),
    ([{"type": "HEADER", "format": None, "text": 3}, {"type": "BODY", "text": "Hi"}], {"header": 5}),
    ([{"type": "HEADER", "format": ["IMAGE"]}, {"type": 4}], {"header": {"url": 7}}),
    ([{"type": "BUTTONS", "buttons": [None, {"type": None}, {"type": "URL", "url": 5, "text": 3},
                                      {"type": "PHONE_NUMBER", "phone_number": []}]}], {"buttons": {"x": None}}),
    ([body("Hi {{1}} there")], {"body": [None, [], {}], "buttons": [{"index": None}]}),
    ([body("Hi {{1}} there")], 42),
])
def test_malformed_input_gives_errors_not_exceptions(components, examples):
    errors = template_errors(name=None, language=3, category=[], parameter_format={}, components=components,
                             examples=examples)
    assert set(errors) <= set(FIELDS)
    assert {"name", "language", "category", "parameter_format"} <= set(errors)


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                         st.sampled_from(["HEADER", "body", "BUTTONS", "FOOTER", "URL", "QUICK_REPLY", "COPY_CODE",
                                          "PHONE_NUMBER", "IMAGE", "TEXT", "{{1}}", "{{a}}", "https://x/{{1}}"]),
                         st.text(max_size=8))
json_keys = st.sampled_from(["type", "format", "text", "buttons", "url", "phone_number", "header", "body",
                             "buttons", "1", "2", "url", "index", "value"])
json_values = st.recursive(json_scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(json_keys, children, max_size=5)), max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(components=json_values, examples=json_values)
def test_any_json_gives_a_dict_of_messages(components, examples):
    errors = template_errors(name="n", language="en", category="utility", parameter_format="positional",
                             components=components, examples=examples)
    assert set(errors) <= set(FIELDS)
    assert all(isinstance(message, str) for messages in errors.values() for message in messages)
    template_parameters(components)
