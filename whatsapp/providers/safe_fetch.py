"""
Downloads of media files named by a provider (or by a link someone gave us), made safe to follow:

- the URL's host, and the host of every redirect, must be one of the provider's own media hosts;
- every address the host resolves to must be public, and the connection goes to an address that passed
  the check (resolved once, here), so a DNS answer that changes between the check and the connection
  cannot reach an internal service. Link-local (cloud metadata services live there), multicast,
  unspecified and reserved addresses are always refused. Loopback and private addresses are allowed only
  for a host the operator configured (`trusted_hosts`: a provider's base URL, which may well be on a
  private network), or for every host when MEDIA_ALLOW_PRIVATE_ADDRESSES is on (development and tests
  only: it would let a link given to the API reach internal services);
- redirects are followed one by one (at most MAX_REDIRECTS), and credentials (an Authorization header,
  Basic auth) go only to the origin of the first URL: a hop to another origin gets none.

A refusal, or a URL that does not parse, raises DownloadRefused, which is never retried: the same answer
would be refused again.
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


# Most specific first: Python counts loopback, link-local, unspecified and reserved (240/4) addresses as
# private too. The third field: refused even for a trusted host or with MEDIA_ALLOW_PRIVATE_ADDRESSES on, as
# no media server of ours lives there (link-local holds the cloud metadata services, 169.254.169.254).
ADDRESS_CHECKS = (("is_unspecified", "an unspecified address", True), ("is_loopback", "a loopback address", False),
                  ("is_link_local", "a link-local address", True), ("is_multicast", "a multicast address", True),
                  ("is_reserved", "a reserved address", True), ("is_private", "a private address", False))
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


def _address_problem(address: IPAddress) -> tuple[str, bool]:
    """Why a download may not connect to `address` ("" for a public address), and whether that holds
    whatever the trust."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return _address_problem(address.ipv4_mapped)
        # 6to4 and Teredo addresses carry an IPv4 address the packet ends up at; Python calls a 6to4 address
        # global whatever it carries (169.254.169.254 as 2002:a9fe:a9fe::), so the carried one is checked.
        carried = address.sixtofour or (address.teredo[1] if address.teredo else None)
        if carried is not None and (found := _address_problem(carried))[0]:
            return found
    elif address in THIS_NETWORK:
        # Connecting to 0.0.0.0 (and, on some systems, the rest of 0/8) reaches this machine.
        return "an unspecified address", True
    for attribute, problem, always in ADDRESS_CHECKS:
        if getattr(address, attribute):
            return problem, always
    return ("", False) if address.is_global else ("not a public address", False)


def address_problem(address: IPAddress, *, private_allowed: bool = False) -> str:
    """Why a download may not connect to `address` ("" for a public address). `private_allowed` lets
    loopback and private addresses through, never link-local, multicast, unspecified or reserved ones."""
    problem, always = _address_problem(address)
    return problem if always or not private_allowed else ""


def checked_addresses(host: str, port: int, *, private_allowed: bool = False) -> list[str]:
    """The addresses `host` resolves to, every one of them checked; raises DownloadRefused when one is not
    public (a name that answers with a private address among public ones is not trusted either).
    `private_allowed` (a host the operator configured, or MEDIA_ALLOW_PRIVATE_ADDRESSES) lets loopback and
    private addresses through."""
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
    for address in resolved:
        if problem := address_problem(address, private_allowed=private_allowed):
            where = f"it resolves to {address}, " if literal is None else ""
            raise DownloadRefused(f"refused to download from {host}: {where}{problem}")
    return [str(address) for address in resolved]


class CheckedAddressTransport(httpx.BaseTransport):
    """
    Resolves each request's host itself, checks every address, and connects to a checked one (the host
    name still goes in the Host header and, for TLS, in SNI and the certificate check). One connection
    pool per host name, so a TLS connection verified for one name never carries a request for another.
    A host among `trusted_hosts` may be at a loopback or private address.
    """

    def __init__(self, trusted_hosts: tuple[str, ...] = ()) -> None:
        self._pools: dict[str, httpx.HTTPTransport] = {}
        self._trusted_hosts = trusted_hosts

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        pool = self._pools.setdefault(host, httpx.HTTPTransport())
        private_allowed = settings.MEDIA_ALLOW_PRIVATE_ADDRESSES or host_allowed(host, self._trusted_hosts)
        last_error: httpx.ConnectError | httpx.ConnectTimeout | None = None
        for address in checked_addresses(host, port, private_allowed=private_allowed):
            pinned = httpx.Request(request.method, request.url.copy_with(host=address), headers=request.headers,
                                   stream=request.stream, extensions={**request.extensions, "sni_hostname": host})
            try:
                return pool.handle_request(pinned)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing was sent: the next address of the name may answer (e.g. IPv4 after an IPv6 address
                # without a route, which may time out rather than fail).
                last_error = exc
        raise last_error or httpx.ConnectError(f"no address to connect to for {host}", request=request)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _parse_url(url: str, base: httpx.URL | None = None) -> httpx.URL:
    """`url` (a redirect's Location, relative to `base`) parsed; DownloadRefused when it does not parse."""
    try:
        return base.join(url) if base is not None else httpx.URL(url)
    except httpx.InvalidURL as exc:
        via = f" (redirected from {base.host})" if base is not None else ""
        raise DownloadRefused(f"refused to download {url[:200]}{via}: not a valid URL ({exc})") from exc


def _check_location(response: httpx.Response) -> None:
    # httpx parses a redirect's Location before send() returns, and reports one that does not parse as a
    # protocol error (retried as network trouble): parsed here first, it is refused like any invalid URL.
    if response.status_code in REDIRECT_STATUSES and (location := response.headers.get("location")):
        _parse_url(location, response.request.url)


def _check_url(url: httpx.URL, allowed_hosts: tuple[str, ...] | None, source: str, redirected_from: str) -> None:
    via = f" (redirected from {redirected_from})" if redirected_from else ""
    if url.scheme not in ("http", "https") or not url.host:
        raise DownloadRefused(f"refused to download {str(url)[:200]}{via}: only http and https URLs are fetched")
    if allowed_hosts is not None and not host_allowed(url.host, allowed_hosts):
        raise DownloadRefused(f"refused to download from {url.host}{via}: not one of {source}'s media hosts "
                              f"({', '.join(allowed_hosts)})")


def fetch_media(url: str, *, allowed_hosts: Iterable[str] | None, source: str, mime_type: str = "",
                headers: dict[str, str] | None = None, auth: Any = None,
                trusted_hosts: Iterable[str] = ()) -> DownloadedMedia:
    """
    GET a media file from `source` (the provider's label, for messages). `allowed_hosts` are the only
    hosts fetched from (None: any host, for a link a user gave; addresses are checked all the same).
    `trusted_hosts` are hosts the operator configured (a provider's base URL), which may be at a loopback
    or private address; they count only with `allowed_hosts`, never for a link a user gave.
    `headers` and `auth` are the credentials, sent only to the first URL's origin. Files over
    MEDIA_MAX_BYTES are refused. Raises ProviderError, retryable for network trouble, timeouts, 429 and
    5xx, or DownloadRefused. `mime_type` is what the provider declared; the response's Content-Type is
    used only without one.
    """
    hosts = tuple(dict.fromkeys(allowed_hosts)) if allowed_hosts is not None else None
    trusted = tuple(host for host in trusted_hosts if host) if hosts is not None else ()
    target = _parse_url(url)
    credentials_origin = _origin(target)
    redirected_from = ""
    try:
        with httpx.Client(transport=CheckedAddressTransport(trusted), timeout=settings.PROVIDER_HTTP_TIMEOUT_SECONDS,
                          trust_env=False, follow_redirects=False,
                          event_hooks={"response": [_check_location]}) as client:
            for _ in range(MAX_REDIRECTS + 1):
                _check_url(target, hosts, source, redirected_from)
                same_origin = _origin(target) == credentials_origin
                request = client.build_request("GET", target, headers=headers if same_origin else None)
                response = client.send(request, auth=auth if same_origin else None, stream=True)
                try:
                    location = response.headers.get("location")
                    if response.status_code in REDIRECT_STATUSES and location:
                        redirected_from, target = target.host, _parse_url(location, target)
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
