"""
The figures as JSON or CSV (`?format=csv`): GET /api/v1/analytics/<figure>/ with optional `since` and
`until` (dates or ISO 8601 times in the platform's time zone; a date as `until` is the last day included),
`grain` (hour, day, week) and `provider` (an id). Each answer is {"filters": {...}, "rows": [...]}: the
same table the dashboard draws.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import selectors
from analytics.api.renderers import CsvRenderer
from analytics.selectors import READ_WORK_MEM, Figures
from core.api.errors import REFUSAL, ReadableErrors, refuse
from core.api.permissions import requires
from core.locks import read_snapshot

FIGURES = {
    "summary": (lambda f: [f.summary()], "The range's totals and rates, one row."),
    "series": (Figures.series, "One row per hour, day or week: volumes, delivery steps, response times, errors, "
                               "customers who wrote, AI calls and cost."),
    "funnel": (Figures.funnel, "Sent, delivered, read and failed over the range."),
    "errors": (Figures.errors, "Failed messages by the provider's error code, most frequent first."),
    "templates": (Figures.templates, "Per template: sent, delivered, read, replied, failed and opted out "
                                     "(messages queued in the range, by UTC day) with their rates."),
    "intents": (Figures.intents, "Customers' messages by the intent the AI gave them."),
    "sentiments": (Figures.sentiments, "Customers' messages by sentiment."),
    "message-types": (Figures.message_types, "Messages received and sent by type."),
    "satisfaction": (lambda f: selectors.satisfaction(f.filters),
                     "Resolutions by week, team, provider or operator (by=): times, ratings and CSAT."),
    "attention": (lambda f: [{"figure": item.key, "label": item.label, "value": item.value}
                             for item in selectors.attention(provider_ids=f.filters.provider_ids)],
                  "What needs a person now (the range does not apply): unmapped contacts, templates awaiting "
                  "review, dead letters, inbox events given up, open circuits, the oldest queued message's wait "
                  "in seconds."),
}


class FigureTableSerializer(serializers.Serializer):
    filters = serializers.DictField(help_text="The range, grain, provider and time zone the rows are for.")
    rows = serializers.ListField(child=serializers.DictField())


PARAMETERS = [
    OpenApiParameter("since", str, description="First day or time (platform time zone); default: 7 days "
                                               "before until (24 hours with grain=hour)."),
    OpenApiParameter("until", str, description="Last day included (YYYY-MM-DD) or an exclusive end time (ISO "
                                               "8601); default: the end of today (of this hour with grain=hour)."),
    OpenApiParameter("grain", str, enum=list(selectors.GRAINS),
                     description="Bucket size; default: hour for two days or less, else day."),
    OpenApiParameter("provider", int, description="One provider's figures; default: all."),
    OpenApiParameter("by", str, enum=list(selectors.SATISFACTION_GROUPS),
                     description="satisfaction only: group its rows by week (default), team, provider or operator."),
    OpenApiParameter("format", str, enum=["json", "csv"], description="csv: the rows as a CSV download."),
]


class FigureView(ReadableErrors, APIView):
    figure = ""
    permission_classes = [requires("analytics.view_hourlycount")]
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, CsvRenderer]

    def get(self, request):
        try:
            filters = selectors.filters_from(request.query_params, user=request.user)
        except selectors.FilterError as problem:
            return refuse(400, "invalid_filter", str(problem))
        with read_snapshot(work_mem=READ_WORK_MEM):
            rows = FIGURES[self.figure][0](Figures(filters))
        response = Response({"filters": filters.as_dict(), "rows": rows})
        if getattr(request, "accepted_renderer", None) and request.accepted_renderer.format == "csv":
            response["Content-Disposition"] = (f'attachment; filename="{self.figure}-{filters.start:%Y%m%d}-'
                                               f'{filters.end:%Y%m%d}.csv"')
        return response


def figure_view(name: str):
    description = FIGURES[name][1]

    # A function of its own per figure: the schema decorator annotates the function it is given.
    def get(self, request):
        return FigureView.get(self, request)

    get = extend_schema(parameters=PARAMETERS, responses={200: FigureTableSerializer, 400: REFUSAL},
                        summary=description, operation_id=f"analytics_{name.replace('-', '_')}")(get)
    view = type(f"{name.title().replace('-', '')}FigureView", (FigureView,), {"figure": name, "get": get})
    return view.as_view()
