"""
An audit entry's before and after values as one table a person reads: a row per field, the changed ones
first and marked, the unchanged ones folded away. Nested values (a provider's config, a template's
components) are spread into one row per leaf (a config's base URL gets a row of its own), and lists and
values are written as text, not as Python or JSON literals.
"""

from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

NOT_SET = object()
PATH_SEPARATOR = " › "


def flatten(value: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """{"config": {"base_url": "x"}} -> {("config", "base_url"): "x"}; an empty dict stays a value."""
    if isinstance(value, dict) and value:
        leaves: dict[tuple[str, ...], Any] = {}
        for key, item in value.items():
            leaves.update(flatten(item, (*path, str(key))))
        return leaves
    return {path: value}


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return "; ".join(f"{key}: {_scalar(item)}" for key, item in value.items())
    if isinstance(value, list):
        return ", ".join(_scalar(item) for item in value)
    return "" if value is None else str(value)


def _quiet(text: str) -> SafeString:
    return format_html('<span class="audit-empty">{}</span>', text)


def readable(value: Any) -> SafeString:
    """One value as HTML text: empty values say so, a list of records gets a line per record."""
    if value is NOT_SET:
        return _quiet("not set")
    if _is_empty(value):
        return _quiet("empty")
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        return format_html_join("", "<div>{}</div>", ((_scalar(item),) for item in value))
    return format_html("{}", _scalar(value))


def _label(path: tuple[str, ...]) -> str:
    return PATH_SEPARATOR.join(part.replace("_", " ") for part in path) or "value"


def _table(head: list[str], rows: list[list], css_class: str = "audit-changes") -> SafeString:
    header = format_html_join("", '<th scope="col">{}</th>', ((title,) for title in head))
    body = format_html_join("", '<tr class="{}"><th scope="row">{}</th>{}</tr>', (
        (row_class, label, format_html_join("", "<td>{}</td>", ((cell,) for cell in cells)))
        for row_class, label, cells in rows
    ))
    return format_html('<table class="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', css_class,
                       header, body)


def values_table(values: dict | None, *, title: str = "Value") -> SafeString:
    """A JSON value (a message's content, an audit entry's one side) as a table with a row per field."""
    leaves = flatten(values) if values else {}
    if not leaves:
        return _quiet("empty")
    return _table(["Field", title], [("", _label(path), [readable(value)]) for path, value in leaves.items()])


def audit_changes_html(before: dict | None, after: dict | None) -> SafeString:
    """The table of an audit entry: before/after side by side, or the one side a creation or deletion has."""
    if not before and not after:
        return format_html('<p class="audit-empty">{}</p>', "No values were recorded with this entry.")
    if not before or not after:
        if after:
            return values_table(after, title="After")  # a row made, or an event with only an outcome
        return values_table(before, title="Before")  # a row removed
    before, after = flatten(before), flatten(after)
    paths = list(dict.fromkeys([*after, *before]))  # the row's own field order, then fields it lost
    changed, unchanged = [], []
    for path in paths:
        old, new = before.get(path, NOT_SET), after.get(path, NOT_SET)
        if (old == {} and new is NOT_SET) or (new == {} and old is NOT_SET):
            continue  # an empty dict on one side, its fields on the other: the fields' rows say it
        if old == new:
            unchanged.append(("", _label(path), [readable(old), readable(new)]))
        else:
            changed.append(("audit-changed", _label(path), [readable(old), readable(new)]))
    parts = [_table(["Field", "Before", "After"], changed) if changed
             else format_html('<p class="audit-empty">{}</p>', "No field changed.")]
    if unchanged:
        parts.append(format_html(
            '<details class="audit-unchanged"><summary>{} unchanged field{}</summary>{}</details>',
            len(unchanged), "" if len(unchanged) == 1 else "s", _table(["Field", "Before", "After"], unchanged)))
    return format_html_join("", "{}", ((part,) for part in parts))
