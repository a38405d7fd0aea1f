import csv
import io

from rest_framework.renderers import BaseRenderer

from core.spreadsheet import safe_cell


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
                writer.writerow([safe_cell(row.get(column)) for column in columns])
        return out.getvalue().encode(self.charset)
