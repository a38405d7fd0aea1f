"""Query expressions shared by list pages (admin and API)."""

from django.db.models import Func, IntegerField, QuerySet, Subquery
from django.db.models.functions import Coalesce


class _CountRows(Func):
    """COUNT(*) of a correlated subquery, without the GROUP BY an aggregate would bring."""

    template = "COUNT(*)"
    output_field = IntegerField()


def count_subquery(rows: QuerySet) -> Coalesce:
    """How many rows a correlated queryset (one with an OuterRef) has, as a column of the outer query:
    one page's counts in the page's own query, whatever the page size."""
    return Coalesce(Subquery(rows.order_by().annotate(n=_CountRows()).values("n")[:1]), 0)
