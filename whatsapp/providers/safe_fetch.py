"""
Downloads of media files named by a provider (or by a link someone gave us), made safe to follow:

- the URL's host, and the host of every redirect, must be one of the provider's own media hosts;
- every address the host resolves to must be public (not loopback, private, link-local, multicast,
  reserved or unspecified) unless MEDIA_ALLOW_PRIVATE_ADDRESSES is on, and the connection goes to an
  address that passed the check (resolved once, here), so a DNS answer that changes between the check
  and the connection cannot reach an internal service;
- redirects are followed one by one (at most MAX_REDIRECTS), and credentials (an Authorization header,
  Basic auth) go only to the origin of the first URL: a hop to another origin gets none.

A refusal raises DownloadRefused, which is never retried: the same answer would be refused again.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpx
from django.conf import settings

from whatsapp.providers.base import ProviderError, is_retryable_status
from whatsapp.providers.events import DownloadedMedia

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DOWNLOAD_REFUSED = "download_refused"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DownloadRefused(ProviderError):
    """A download we will not make (a host outside the allow-list, a private address): never retried."""

    def __init__(self, message: str):
        super().__init__(message, code=DOWNLOAD_REFUSED, title="Download refused", retryable=False)


def host_allowed(host: str, allowed_hosts: Iterable[str]) -> bool:
    """Whether `host` is one of `allowed_hosts`; an entry "*.example.com" covers every subdomain of example.com."""
    host = host.lower().rstrip(".")
    for pattern in allowed_hosts:
        pattern = pattern.lower().rstrip(".")
        if (pattern.startswith("*.") and host.endswith(pattern[1:])) or host == pattern:
            return True
    return False


def address_problem(address: IPAddress) -> str:
    """Why a download may not connect to `address` ("" for a public address)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    # Most specific first: Python counts loopback, link-local, unspecified and reserved (240/4) addresses as
    # private too.
    checks = (("is_unspecified", "an unspecified address"), ("is_loopback", "a loopback address"),
              ("is_link_local", "a link-local address"), ("is_multicast", "a multicast address"),
              ("is_reserved", "a reserved address"), ("is_private", "a private address"))
    for attribute, problem in checks:
        if getattr(address, attribute):
            return problem
    return "" if address.is_global else "not a public address"


def checked_addresses(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, every one of them checked; raises DownloadRefused when one is not
    public (a name that answers with a private address among public ones is not trusted either)."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        resolved = [literal]
    else:
        try:
            answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise ProviderError(f"could not resolve {host}: {exc}", code="network", retryable=True) from exc
        resolved = list(dict.fromkeys(ipaddress.ip_address(str(answer[4][0]).split("%")[0]) for answer in answers))
    if not settings.MEDIA_ALLOW_PRIVATE_ADDRESSES:
        for address in resolved:
            if problem := address_problem(address):
                where = f"it resolves to {address}, " if literal is None else ""
                raise DownloadRefused(f"refused to download from {host}: {where}{problem}")
    return [str(address) for address in resolved]


class CheckedAddressTransport(httpx.BaseTransport):
    """
    Resolves each request's host itself, checks every address, and connects to a checked one (the host
    name still goes in the Host header and, for TLS, in SNI and the certificate check). One connection
    pool per host name, so a TLS connection verified for one name never carries a request for another.
    """

    def __init__(self) -> None:
        self._pools: dict[str, httpx.HTTPTransport] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        pool = self._pools.setdefault(host, httpx.HTTPTransport())
        last_error: httpx.ConnectError | None = None
        for address in checked_addresses(host, port):
            pinned = httpx.Request(request.method, request.url.copy_with(host=address), headers=request.headers,
                                   stream=request.stream, extensions={**request.extensions, "sni_hostname": host})
            try:
                return pool.handle_request(pinned)
            except httpx.ConnectError as exc:
                # Nothing was sent: the next address of the name may answer (e.g. IPv4 after IPv6).
                last_error = exc
        raise last_error or httpx.ConnectError(f"no address to connect to for {host}", request=request)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _check_url(url: httpx.URL, allowed_hosts: tuple[str, ...] | None, source: str, redirected_from: str) -> None:
    via = f" (redirected from {redirected_from})" if redirected_from else ""
    if url.scheme not in ("http", "https") or not url.host:
        raise DownloadRefused(f"refused to download {str(url)[:200]}{via}: only http and https URLs are fetched")
    if allowed_hosts is not None and not host_allowed(url.host, allowed_hosts):
        raise DownloadRefused(f"refused to download from {url.host}{via}: not one of {source}'s media hosts "
                              f"({', '.join(allowed_hosts)})")


def fetch_media(url: str, *, allowed_hosts: Iterable[str] | None, source: str, mime_type: str = "",
                headers: dict[str, str] | None = None, auth: Any = None) -> DownloadedMedia:
    """
    GET a media file from `source` (the provider's label, for messages). `allowed_hosts` are the only
    hosts fetched from (None: any host, for a link a user gave; addresses are checked all the same).
    `headers` and `auth` are the credentials, sent only to the first URL's origin. Files over
    MEDIA_MAX_BYTES are refused. Raises ProviderError, retryable for network trouble, timeouts, 429 and
    5xx, or DownloadRefused. `mime_type` is what the provider declared; the response's Content-Type is
    used only without one.
    """
    hosts = tuple(dict.fromkeys(allowed_hosts)) if allowed_hosts is not None else None
    target = httpx.URL(url)
    credentials_origin = _origin(target)
    redirected_from = ""
    try:
        with httpx.Client(transport=CheckedAddressTransport(), timeout=settings.PROVIDER_HTTP_TIMEOUT_SECONDS,
                          trust_env=False, follow_redirects=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                _check_url(target, hosts, source, redirected_from)
                same_origin = _origin(target) == credentials_origin
                request = client.build_request("GET", target, headers=headers if same_origin else None)
                response = client.send(request, auth=auth if same_origin else None, stream=True)
                try:
                    location = response.headers.get("location")
                    if response.status_code in REDIRECT_STATUSES and location:
                        redirected_from, target = target.host, target.join(location)
                        continue
                    return _read_body(response, mime_type)
                finally:
                    response.close()
    except httpx.HTTPError as exc:
        raise ProviderError(f"media download failed: {type(exc).__name__}: {exc}", code="network",
                            retryable=True) from exc
    raise ProviderError(f"media download redirected more than {MAX_REDIRECTS} times", code="too_many_redirects")


def _read_body(response: httpx.Response, mime_type: str) -> DownloadedMedia:
    # A 3xx that names no Location has no file in it either.
    if response.status_code >= 300:
        raise ProviderError(f"media download answered HTTP {response.status_code}",
                            code=f"http_{response.status_code}",
                            retryable=is_retryable_status(response.status_code))
    limit = settings.MEDIA_MAX_BYTES
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise ProviderError(f"media is larger than {limit} bytes", code="too_large")
        chunks.append(chunk)
    return DownloadedMedia(content=b"".join(chunks), mime_type=mime_type or response.headers.get("content-type", ""))
