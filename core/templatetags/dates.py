"""``{% load dates %}``: ``{{ value|when }}`` and ``{{ value|when:"seconds" }}``, the admin's date format."""

from django import template

from core import dates

register = template.Library()


@register.filter(expects_localtime=False)
def when(value, precision: str = "") -> str:
    return dates.when(value, seconds=precision == "seconds")
