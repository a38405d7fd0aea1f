"""The address of the client that made a request, seen through the proxies the deployment trusts."""

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest


@lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(network, strict=False) for network in spec)


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        # A zone id ("fe80::1%eth0") names the sender's interface, not the client: dropped.
        return ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None


def _from_trusted_proxy(remote: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
    return remote is not None and any(remote in network
                                      for network in _networks(tuple(settings.TRUSTED_PROXY_NETWORKS)))


def client_address(request: HttpRequest) -> str | None:
    """
    REMOTE_ADDR; or, with `TRUSTED_PROXY_COUNT` = n > 0 and the request coming from one of
    `TRUSTED_PROXY_NETWORKS`, the n-th address from the right of X-Forwarded-For: each trusted proxy appends
    the address it received the request from, so the entries to the left of those are whatever the client
    chose to send and are never believed. A request straight from anywhere else is its own peer.
    """
    remote = _address(request.META.get("REMOTE_ADDR"))
    hops = settings.TRUSTED_PROXY_COUNT
    if hops > 0 and _from_trusted_proxy(remote):
        forwarded = [part for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            candidate = _address(forwarded[-hops])
            if candidate is not None:
                return str(candidate)
    return str(remote) if remote is not None else None


def rate_limit_subject(address: str | None) -> str:
    """What per-address limits count: the address, or for IPv6 its /64 (one subscriber's usual share, which a
    client can walk through address by address)."""
    parsed = _address(address)
    if parsed is None:
        return "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)
