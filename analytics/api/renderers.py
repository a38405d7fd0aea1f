import csv
import io
from typing import Any

from rest_framework.renderers import BaseRenderer

# A cell a spreadsheet would read as a formula (https://owasp.org/www-community/attacks/CSV_Injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return "" if value is None else value


class CsvRenderer(BaseRenderer):
    """The `rows` of an answer as CSV, one column per key of the first row (a refusal: code and detail)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        rows = data.get("rows") if isinstance(data, dict) and "rows" in data else [data]
        out = io.StringIO()
        if rows:
            columns = list(rows[0])
            writer = csv.writer(out)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_cell(row.get(column)) for column in columns])
        return out.getvalue().encode(self.charset)
