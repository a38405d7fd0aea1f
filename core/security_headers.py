"""
Response headers that limit what a page may do in the browser: a content security policy with a fresh
nonce per response, and a permissions policy. Django's SecurityMiddleware sets the others
(Referrer-Policy, Cross-Origin-Opener-Policy, X-Content-Type-Options) from settings.

The policy comes from settings.CSP_DIRECTIVES; the nonce is added to script-src on every response, and is
offered to templates as ``csp_nonce`` (context processor below) for the rare inline script that must stay:
``<script nonce="{{ csp_nonce }}">``.
"""

import secrets
from collections.abc import Callable, Mapping, Sequence

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

ENFORCING_HEADER = "Content-Security-Policy"
REPORT_ONLY_HEADER = "Content-Security-Policy-Report-Only"
PERMISSIONS_HEADER = "Permissions-Policy"
# For a file someone else made (a customer's attachment), opened on its own: no script, no form, no plugin,
# a unique origin (the middleware keeps a response's own policy).
UNTRUSTED_FILE_POLICY = "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'"
# A source is one token: a space or ";" would start another source or another directive.
_SOURCE_BREAKERS = frozenset(" \t\r\n;,")


def new_nonce() -> str:
    # 128 bits or more is what the CSP specification asks of a nonce; base64url is valid nonce syntax.
    return secrets.token_urlsafe(18)


def _checked_sources(directive: str, sources: Sequence[str]) -> list[str]:
    for source in sources:
        if not source or _SOURCE_BREAKERS & set(source):
            raise ImproperlyConfigured(f"CSP source {source!r} of {directive} must be one token without "
                                       "spaces, commas or semicolons")
    return list(sources)


def content_security_policy(directives: Mapping[str, Sequence[str]], *, nonce: str, report_uri: str = "") -> str:
    """The header value: each directive with its sources, the nonce added to script-src."""
    parts = []
    for directive, sources in directives.items():
        sources = _checked_sources(directive, sources)
        if directive == "script-src":
            sources = [*sources, f"'nonce-{nonce}'"]
        parts.append(" ".join([directive, *sources]))
    if report_uri:
        parts.append(f"report-uri {report_uri}")
    return "; ".join(parts)


def permissions_policy(features: Mapping[str, Sequence[str]]) -> str:
    """``camera=(), microphone=(self)``: an empty list denies the feature to every origin."""
    return ", ".join(f"{feature}=({' '.join(allowed)})" for feature, allowed in features.items())


class SecurityHeadersMiddleware:
    """Gives each request a nonce (``request.csp_nonce``) and each response the policy headers. A response
    that already carries its own policy (say, a stricter one for an untrusted file) keeps it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        # Fail at start-up, not on the first page, when a configured source is malformed.
        content_security_policy(settings.CSP_DIRECTIVES, nonce=new_nonce())

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.csp_nonce = new_nonce()
        response = self.get_response(request)
        header = REPORT_ONLY_HEADER if settings.CSP_REPORT_ONLY else ENFORCING_HEADER
        if ENFORCING_HEADER not in response and REPORT_ONLY_HEADER not in response:
            response[header] = content_security_policy(settings.CSP_DIRECTIVES, nonce=request.csp_nonce,
                                                       report_uri=settings.CSP_REPORT_URI)
        if settings.PERMISSIONS_POLICY and PERMISSIONS_HEADER not in response:
            response[PERMISSIONS_HEADER] = permissions_policy(settings.PERMISSIONS_POLICY)
        return response


def csp_nonce(request: HttpRequest) -> dict[str, str]:
    """Template context processor: ``{{ csp_nonce }}`` for an inline ``<script nonce=…>``."""
    return {"csp_nonce": getattr(request, "csp_nonce", "")}
