"""The status line at the top of every AI admin page: whether AI is on (and how to turn it on) and the AI
API's circuit."""

from django import template

from ai.selectors import ai_status

register = template.Library()


@register.inclusion_tag("admin/ai/_status.html")
def ai_status_bar():
    return {"ai": ai_status()}
