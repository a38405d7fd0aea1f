"""The base of the API's list filters. A value that cannot mean anything is refused (400), never ignored.

Every list's filters, declared or generated from `filterset_fields`, are built on ApiFilterSet (ApiFilterBackend
is the project's filter backend), so that a date-time filter anywhere checks its value the same way."""

from datetime import datetime, timedelta

import django_filters
from django import forms
from django.db import models
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend
from django_filters.rest_framework import FilterSet as RestFilterSet

YES_NO = [("true", "true"), ("false", "false")]

# ISO 8601 (and Python) allow a UTC offset up to 23:59; PostgreSQL refuses one of 16 hours or more in a
# timestamp with time zone, which would fail the query (a 500) instead of refusing the value.
MAX_UTC_OFFSET = timedelta(hours=16)


def _offset_text(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    minutes = int(abs(offset).total_seconds()) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


class ApiDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time whose UTC offset the database can store (less than 16 hours either way)."""

    def to_python(self, value) -> datetime | None:
        value = super().to_python(value)
        offset = value.utcoffset() if value is not None else None
        if offset is not None and abs(offset) >= MAX_UTC_OFFSET:
            raise forms.ValidationError(
                f"the UTC offset {_offset_text(offset)} is out of range: it must be between -15:59 and +15:59",
                code="invalid")
        return value


class ApiDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = ApiDateTimeField


class ApiFilterSet(RestFilterSet):
    """The base of every API filter set: date-time fields are filtered with ApiDateTimeFilter."""

    FILTER_DEFAULTS = {**RestFilterSet.FILTER_DEFAULTS, models.DateTimeField: {"filter_class": ApiDateTimeFilter}}


class ApiFilterBackend(DjangoFilterBackend):
    """django-filter's backend, with the filter sets generated from `filterset_fields` built on ApiFilterSet."""

    filterset_base = ApiFilterSet


class ChoiceInFilter(django_filters.BaseInFilter, django_filters.ChoiceFilter):
    """Comma-separated choices, each one checked (an unknown one is a 400, never an empty answer)."""
