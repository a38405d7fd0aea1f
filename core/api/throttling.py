"""
API rate limits, counted in the shared cache so that every web process sees the same counts.

Each request falls in one bucket (read, write, send or bulk) and counts against its API key and, separately,
against the key's user (so a user's keys share the user's allowance); a signed-in session counts against the
user; an anonymous request against its client address. The tightest count answers the RateLimit-* headers.
"""

import logging

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import BaseThrottle

from core.client_address import client_address, rate_limit_subject
from core.models import ApiScope, ApiToken
from core.rate_limits import Rate, Verdict, configured_rate_problems, hit, hit_all, parse_rate, peek

logger = logging.getLogger(__name__)

BUCKET_FOR_SCOPE = {ApiScope.READ: "read", ApiScope.SEND: "send", ApiScope.MANAGE: "write"}
ANY_SCOPE = "any"


def required_scope(request, view) -> str:
    """The key scope a request needs: the view's own word for its action, else read for a safe method and
    manage for any other."""
    declared = getattr(view, "action_scopes", {}).get(getattr(view, "action", None))
    declared = declared or getattr(view, "required_scope", None)
    if declared:
        return declared
    return ApiScope.READ if request.method in SAFE_METHODS else ApiScope.MANAGE


def rate_bucket(request, view) -> str:
    if getattr(view, "action", None) in getattr(view, "bulk_actions", ()) or getattr(view, "is_bulk", False):
        return "bulk"
    scope = required_scope(request, view)
    return BUCKET_FOR_SCOPE.get(scope, "read")


def _rate(bucket: str) -> Rate | None:
    return parse_rate(settings.API_RATE_LIMITS.get(bucket, ""))


def _note(request, verdict: Verdict, rate: Rate) -> None:
    """Kept on the Django request for RateLimitHeadersMiddleware."""
    request._request.rate_limit = (verdict, rate)


class ApiRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        bucket = rate_bucket(request, view)
        rate = _rate(bucket)
        if rate is None:
            return True
        token = request.auth if isinstance(request.auth, ApiToken) else None
        if token is not None:
            names = [f"api:{bucket}:key:{token.pk}", f"api:{bucket}:user:{token.user_id}"]
        elif request.user and request.user.is_authenticated:
            names = [f"api:{bucket}:user:{request.user.pk}"]
        else:
            names = [f"api:{bucket}:ip:{rate_limit_subject(client_address(request._request))}"]
        verdict = hit_all(names, rate)
        _note(request, verdict, rate)
        self.retry_after = verdict.retry_after
        if verdict.refused:
            logger.info("API request over its rate limit", extra={
                "bucket": bucket, "api_key_prefix": token.prefix if token else None,
                "user_id": request.user.pk if request.user.is_authenticated else None,
                "remote_addr": client_address(request._request), "retry_after": verdict.retry_after})
        return verdict.allowed

    def wait(self) -> float | None:
        return self.retry_after or None


class AnonymousRateLimit(BaseAuthentication):
    """Last in the authentication classes: reached only by requests no other class recognised, and counts
    them per client address before any permission check answers (which throttles alone would come after)."""

    def authenticate(self, request):
        rate = _rate("anonymous")
        if rate is not None:
            verdict = hit(f"api:anonymous:ip:{rate_limit_subject(client_address(request._request))}", rate)
            _note(request, verdict, rate)
            if verdict.refused:
                logger.info("anonymous API request over its rate limit",
                            extra={"remote_addr": client_address(request._request)})
                raise exceptions.Throttled(wait=verdict.retry_after)
        return None


def _key_failure_rate() -> Rate | None:
    return parse_rate(settings.API_KEY_FAILURE_RATE)


def refuse_if_guessing_keys(address: str | None) -> None:
    """A client address that sent too many unknown keys gets 429 for its next unknown ones."""
    rate = _key_failure_rate()
    if rate is not None and peek(f"api:key-failures:{rate_limit_subject(address)}", rate):
        logger.info("API key refused unchecked: too many invalid keys from this address",
                    extra={"remote_addr": address})
        raise exceptions.Throttled(wait=rate.period, detail="Too many requests with an invalid API key.")


def record_key_failure(address: str | None) -> None:
    rate = _key_failure_rate()
    if rate is not None:
        hit(f"api:key-failures:{rate_limit_subject(address)}", rate, count_refused=True)


class RateLimitHeadersMiddleware:
    """RateLimit-Limit, -Remaining, -Reset and -Policy on every API answer that was counted (the IETF
    draft's names; Reset is in seconds)."""

    def __init__(self, get_response):
        self.get_response = get_response
        # A mistyped rate stops start-up here, rather than failing every request it would count.
        problems = configured_rate_problems()
        if problems:
            raise ImproperlyConfigured("; ".join(problems))

    def __call__(self, request):
        response = self.get_response(request)
        counted = getattr(request, "rate_limit", None)
        if counted is not None:
            verdict, rate = counted
            response["RateLimit-Limit"] = str(verdict.limit)
            response["RateLimit-Remaining"] = str(verdict.remaining)
            response["RateLimit-Reset"] = str(verdict.reset_seconds)
            response["RateLimit-Policy"] = f"{rate.limit};w={rate.period}"
        return response
