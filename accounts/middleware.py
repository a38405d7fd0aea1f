"""
Two-factor enforcement. A signed-in user who owes a second factor (required of them, or chosen by enrolling) and
whose session has not given it reaches nothing in the admin but the sign-in, sign-out and two-factor pages, and
the session API answers 403. Requests with an API key are the key's business: keys are separate credentials.
"""

from collections.abc import Callable
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from rest_framework.authentication import get_authorization_header

from accounts.services import request_two_factor_state
from core.api.authentication import KEYWORDS

API_PREFIX = "/api/"
TWO_FACTOR_REQUIRED = {
    "code": "two_factor_required",
    "detail": "This sign-in still owes its second factor: give the code in the admin, or use an API key.",
}
ADMIN_NAMESPACES = frozenset({"admin", "accounts"})
# What an unverified user may reach under the admin: signing in and out, and giving the second factor.
OPEN_VIEWS = frozenset({"admin:login", "admin:logout", "accounts:two_factor_verify", "accounts:two_factor_enrol",
                        "accounts:two_factor_enrol_qr"})


def _uses_api_key(request: HttpRequest) -> bool:
    # Only the schemes the key authentication takes: it either accepts the key or refuses the request, and
    # never falls back to the session. Any other header leaves the session in charge, so it is enforced.
    words = get_authorization_header(request).split()
    return bool(words) and words[0].lower() in {keyword.lower().encode() for keyword in KEYWORDS}


class TwoFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        match = request.resolver_match
        in_api = request.path_info.startswith(API_PREFIX)
        in_admin = bool(ADMIN_NAMESPACES.intersection(match.namespaces))
        if not (in_api or in_admin):
            return None  # no user is loaded for webhooks, health checks and the like
        if in_api and _uses_api_key(request):
            return None
        user = request.user
        if not user.is_authenticated or user.is_verified():
            return None
        if in_admin and match.view_name in OPEN_VIEWS:
            return None
        state = request_two_factor_state(request)
        if not state.code_due:
            return None
        if in_api:
            return JsonResponse(TWO_FACTOR_REQUIRED, status=403)
        page = "accounts:two_factor_verify" if state.enrolled else "accounts:two_factor_enrol"
        return redirect(f"{reverse(page)}?{urlencode({'next': request.get_full_path()})}")
