"""The address of the client that made a request, seen through the proxies the deployment trusts."""

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str | None:
    """
    REMOTE_ADDR, or with `TRUSTED_PROXY_COUNT` = n > 0 the n-th address from the right of X-Forwarded-For:
    each trusted proxy appends the address it received the request from, so the entries to the left of
    those are whatever the client chose to send and are never believed.
    """
    remote = request.META.get("REMOTE_ADDR") or None
    hops = settings.TRUSTED_PROXY_COUNT
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < hops:
        return remote  # not through the expected proxies: the direct peer is all we know
    candidate = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote
