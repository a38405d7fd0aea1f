"""The answer to a sign-in refused by the lockout (django-axes calls it, as AXES_LOCKOUT_CALLABLE)."""

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

LOCKOUT_STATUS = 429


def lockout_response(request: HttpRequest, original_response: HttpResponse | None = None,
                     credentials: dict | None = None) -> HttpResponse:
    """The same page whatever name was typed, whether it exists or not, and the name is not shown: the answer
    says nothing about which accounts exist."""
    context = {**admin.site.each_context(request), "title": "Sign-in locked",
               "minutes": settings.LOGIN_LOCKOUT_MINUTES}
    response = TemplateResponse(request, "accounts/locked_out.html", context, status=LOCKOUT_STATUS)
    return response.render()
