"""Cells for CSV files people open in spreadsheets."""

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

# A cell a spreadsheet would read as a formula (https://owasp.org/www-community/attacks/CSV_Injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """The value as a cell: None empty, text that a spreadsheet would run as a formula quoted (numbers kept)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return "" if value is None else value


def csv_lines(rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    """Rows as CSV text, a line at a time (for a streamed download)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow([safe_cell(value) for value in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
