"""
The provider backend interface (the django-anymail shape): one module or package per provider implements
it, the registry in `whatsapp.providers` maps a kind to its backend class, and everything else talks to
providers only through these methods and the normalized dataclasses in `events.py`.

A provider's own settings (its API's base URL, say) are declared in its package as ProviderSetting, read
when used: the Django setting of that name when one is set (tests override it), else the environment
variable of the same name, else the declared default.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import environ
import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from whatsapp.providers.bodies import BodyUndecodable, json_body_decode

# Re-exported: the interface's body decoding, importable from here as before it had a module of its own.
from whatsapp.providers.bodies import form_body_decode as form_body_decode
from whatsapp.providers.bodies import storable_text as storable_text
from whatsapp.providers.events import (
    ConnectionCheck,
    DownloadedMedia,
    Identity,
    InvalidUpdate,
    MediaRef,
    NormalizedEvent,
    OutboundMessage,
    RemoteTemplate,
    SendResult,
    StoredWebhook,
    TemplateDefinition,
    TemplateManagement,
    TemplateSubmission,
)

if TYPE_CHECKING:
    from whatsapp.models import Provider as ProviderRow


class WebhookRejected(Exception):
    """The request is refused; `status` is the HTTP code to answer and `reason` is shown to the caller."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ProviderError(Exception):
    """
    A provider call failed. `code` is the provider's error code (or ours: "network", "timeout",
    "http_<status>"), `title` its short name, the message a readable reason. `retryable` tells the send
    pipeline whether to try again, `retry_after` (seconds) when the provider said when, and `throttled`
    that the provider pushed back on our rate (it does not count against the provider's health).
    """

    def __init__(self, message: str, *, code: str = "", retryable: bool = False, raw: Any = None,
                 title: str = "", retry_after: float | None = None, http_status: int | None = None,
                 throttled: bool = False):
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.raw = raw
        self.title = title
        self.retry_after = retry_after
        self.http_status = http_status
        self.throttled = throttled


def retry_after_seconds(value: str | None) -> float | None:
    """An HTTP Retry-After header in seconds (only the delta-seconds form; dates are ignored)."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds <= 86400 else None


@dataclass(frozen=True)
class ProviderOption:
    """
    One setting a provider of this kind needs. `target` says where it lives on the Provider row:
    "credentials" (encrypted), "config" (plain JSON), or one of the row's own columns
    ("phone_number", "external_id", "business_account_id").
    """

    name: str
    help: str
    target: str = "config"
    required: bool = False
    secret: bool = False
    default: str = ""
    #: A secret we choose ourselves (not issued by the provider): generated when none is given.
    generated: bool = False

    @property
    def cli_flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class WebhookRequest:
    """A webhook call reduced to what verification and parsing need (no Django request object)."""

    method: str
    public_url: str
    body: bytes
    headers: dict[str, str]
    query: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)
    content_type: str = ""

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass(frozen=True)
class VerificationAnswer:
    """The answer to a provider's GET handshake (Meta's hub.challenge)."""

    status: int
    body: str


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def hmac_sha256_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, "sha256").hexdigest()


# --- a provider's own settings -------------------------------------------------------------
T = TypeVar("T")
_UNSET = object()
# Read the way config/settings.py reads its own variables (django-environ's casts, $VAR references).
_environment = environ.Env()


def provider_setting(name: str, default: T, cast: Callable[[str], T] = str) -> T:
    """
    One provider-specific setting, read when used: the Django setting `name` when one is set (it wins, so
    tests and a deployment's own settings module can override it), else the environment variable of the
    same name passed through `cast`, else `default`. A value the cast refuses is ImproperlyConfigured.
    """
    value = getattr(settings, name, _UNSET)
    if value is not _UNSET:
        return value
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return _environment.get_value(name, cast=cast)
    except ValueError as exc:
        raise ImproperlyConfigured(f"the environment variable {name}={raw!r} is not valid: {exc}") from exc


def base_url(value: str) -> str:
    """The cast of a base URL setting: without its trailing slash, so paths are appended with one."""
    return value.rstrip("/")


@dataclass(frozen=True)
class ProviderSetting(Generic[T]):
    """A setting a provider package declares with its default; call it for the current value."""

    name: str
    default: T
    cast: Callable[[str], T] = str
    help: str = ""

    def __call__(self) -> T:
        return provider_setting(self.name, self.default, self.cast)


def http_client(**kwargs: Any) -> httpx.Client:
    """The HTTP client every provider module uses for its REST calls (timeouts from settings)."""
    return httpx.Client(timeout=settings.PROVIDER_HTTP_TIMEOUT_SECONDS, **kwargs)


_pooled_clients: dict[int, httpx.Client] = {}


def pooled_http_client() -> httpx.Client:
    """
    One long-lived client per process, for the send path: it keeps connections to the provider open
    between messages instead of a new TCP (and TLS) handshake per send. Callers pass the timeout per
    request. Keyed by process id, because Celery's prefork children must not share a parent's sockets.
    """
    pid = os.getpid()
    client = _pooled_clients.get(pid)
    if client is None:
        # As many kept-alive connections as the sender has call threads: a connection opened per call would
        # put its handshake between the call's rate slot and the provider.
        connections = max(20, settings.SEND_BATCH_CONCURRENCY)
        client = _pooled_clients[pid] = httpx.Client(limits=httpx.Limits(
            max_connections=max(100, connections), max_keepalive_connections=connections))
    return client


def is_retryable_status(status: int) -> bool:
    return status in (408, 425, 429) or status >= 500


def url_host(url: str) -> str:
    """The host name of a configured base URL ("" when it has none)."""
    return httpx.URL(url).host if url else ""


# Payloads are parsed defensively: a field of an unexpected type reads as empty, never raises.
def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_text(value: Any) -> str:
    return "" if value is None else str(value)


def response_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {}


def sha256_matches(content: bytes, expected: str) -> bool:
    """Providers give a file's SHA-256 as hex (Meta's media endpoint) or base64 (some webhooks)."""
    digest = hashlib.sha256(content).digest()
    expected = expected.strip()
    if len(expected) == 64:
        return hmac.compare_digest(digest.hex(), expected.lower())
    return hmac.compare_digest(base64.b64encode(digest).decode(), expected)


def parse_each(items: Iterable[Any], parse: Callable[[Any], NormalizedEvent | list[NormalizedEvent]]
               ) -> list[NormalizedEvent]:
    """
    Parse a body's updates one by one (Meta carries up to 1000 in one request): an update the parser
    cannot read becomes an InvalidUpdate with the reason, and the others are parsed all the same.
    """
    events: list[NormalizedEvent] = []
    for item in items:
        try:
            parsed = parse(item)
        except Exception as exc:  # noqa: BLE001 - recorded on the webhook event, never retried
            events.append(InvalidUpdate(f"unreadable update: {type(exc).__name__}: {exc}",
                                        raw=item if isinstance(item, dict) else {"value": item}))
            continue
        events.extend(parsed if isinstance(parsed, list) else [parsed])
    return events


class ProviderBackend:
    """What a provider does (receiving, sending, templates) for one `whatsapp.models.Provider` row."""

    #: The value stored in Provider.kind and named in webhook URLs.
    kind: ClassVar[str]
    #: The provider's name in messages and errors ("Meta Cloud API refused...").
    label: ClassVar[str]
    #: The kind's name in forms and lists (the choices of Provider.kind).
    display_label: ClassVar[str]
    #: The provider's own settings (environment variables), read through these when used.
    own_settings: ClassVar[tuple[ProviderSetting[Any], ...]] = ()
    options: ClassVar[tuple[ProviderOption, ...]] = ()
    accepted_content_types: ClassVar[tuple[str, ...]] = ("application/json",)
    #: Header names stored with each webhook event (lower case); signatures are kept for audits.
    stored_headers: ClassVar[tuple[str, ...]] = ()
    #: Messages per second a new provider of this kind starts with.
    default_rate_limit_per_second: ClassVar[int] = 10
    #: Whether the admin offers "simulate an inbound message" (only a local simulator can).
    can_simulate_inbound: ClassVar[bool] = False
    #: Whether a button or list reply arrives as the chosen title only (Chatwoot drops the id), so it is
    #: matched against the choices we last offered.
    button_replies_by_title: ClassVar[bool] = False
    #: How long the provider keeps an inbound media file downloadable; None when it gives no limit.
    media_lifetime: ClassVar[timedelta | None] = None
    #: The hosts inbound media is downloaded from, redirects included ("*.example.com" covers subdomains);
    #: media_download_hosts adds the hosts of configured base URLs. No other host is ever fetched from.
    media_hosts: ClassVar[tuple[str, ...]] = ()
    #: The message types `send` can carry (our MessageType values); others are refused before sending.
    sendable_types: ClassVar[frozenset[str]] = frozenset()
    #: Whether a message can quote the message it answers.
    supports_reply_context: ClassVar[bool] = False
    #: The least time between two messages to one recipient (WhatsApp's pair rate: about one every 6 s).
    pair_interval_seconds: ClassVar[float] = 0.0
    #: The highest rate_limit_per_second the provider allows a number.
    max_rate_limit_per_second: ClassVar[int] = 1000
    #: Whether `send` only talks to the provider over HTTP (no database, no transaction hooks), so that a
    #: batch's calls may run on threads at once; False keeps them one after another on the caller's thread.
    sends_on_threads: ClassVar[bool] = True
    #: Send error codes meaning the person blocked us or is not on WhatsApp, with a readable reason: the
    #: contact is opted out (no further sends) until someone opts them back in.
    consent_error_codes: ClassVar[dict[str, str]] = {}
    #: Send error codes meaning WhatsApp held a marketing message back under its per-person cap for marketing
    #: from all businesses: not an opt-out; the person is left alone for a while instead of being retried.
    marketing_cap_error_codes: ClassVar[frozenset[str]] = frozenset()
    #: Send error codes meaning the number cannot get WhatsApp messages (not on WhatsApp, inactive): where the
    #: business allows it, the message may go by SMS instead.
    not_on_whatsapp_error_codes: ClassVar[frozenset[str]] = frozenset()
    #: Whether `send_sms` can send a plain SMS (a campaign's fallback for people WhatsApp cannot reach).
    sends_sms: ClassVar[bool] = False
    #: Whether the provider's own inbox keeps a conversation state (open, pending, snoozed, resolved) that ours
    #: follows and is pushed to (conversation_state_push).
    keeps_conversation_state: ClassVar[bool] = False
    #: Whether templates are created here and submitted to this provider, only imported from it, or neither.
    template_management: ClassVar[str] = TemplateManagement.NONE
    #: Whether the provider's business account id names a WhatsApp business account whose templates every
    #: number of the account shares (a Chatwoot account holds inboxes with templates of their own).
    templates_shared_by_account: ClassVar[bool] = True
    #: Whether list_templates returns the templates the provider holds (the sandbox holds none, so a sync
    #: does not report its templates as missing).
    lists_templates: ClassVar[bool] = True

    def __init__(self, provider: ProviderRow):
        self.provider = provider

    # --- receiving -------------------------------------------------------------------------
    def answer_verification(self, request: WebhookRequest) -> VerificationAnswer:
        """A GET on the webhook URL. Providers without a handshake refuse it."""
        raise WebhookRejected(405, f"{self.label} webhooks accept POST only")

    def verify_webhook(self, request: WebhookRequest) -> None:
        """Raise WebhookRejected (401 missing, 403 wrong) unless the request is authentic."""
        raise NotImplementedError

    def check_body(self, request: WebhookRequest) -> None:
        """Raise WebhookRejected(400) when the body cannot be parsed at all (parsed once, then checked)."""
        try:
            payload = json_body_decode(request.body)
        except BodyUndecodable as exc:
            raise WebhookRejected(400, str(exc)) from exc
        self.check_payload(payload)

    def check_payload(self, payload: Any) -> None:
        """Raise WebhookRejected(400) when a parsed JSON body is not shaped like this provider's webhooks."""

    def delivery_id(self, request: WebhookRequest) -> str:
        """The provider's id for this delivery when it sends one (for dedup of redeliveries)."""
        return ""

    def acknowledgement(self, receipt: dict[str, Any]) -> tuple[str, str]:
        """The body and content type of the 200 that acknowledges a stored webhook."""
        return json.dumps(receipt), "application/json"

    def may_route_to(self, other: ProviderRow) -> bool:
        """
        Whether an update this provider's webhook received may be applied to `other` (the provider the
        update names). Only providers behind the same signing secret may: otherwise whoever holds one
        tenant's secret could write into another tenant's provider.
        """
        return False

    def webhook_query(self) -> dict[str, str]:
        """Query parameters the provider must call our webhook URL with (a URL token, where used)."""
        return {}

    def parse_webhook(self, stored: StoredWebhook) -> list[NormalizedEvent]:
        raise NotImplementedError

    def download_media(self, media: MediaRef) -> DownloadedMedia:
        """Fetch one inbound attachment. Raises ProviderError (retryable or not)."""
        raise ProviderError(f"{self.label} has no media to download", code="not_supported")

    def media_download_hosts(self) -> tuple[str, ...]:
        """Every host a media download of this provider may fetch from: its own media hosts and the hosts
        of the base URLs it is configured with (a proxy, a self-hosted installation, a test server)."""
        return self.media_hosts

    # --- sending ---------------------------------------------------------------------------
    def recipient_address(self, to: tuple[Identity, ...]) -> str:
        """The address this provider sends to, chosen among a contact's identities; "" when none fits."""
        raise NotImplementedError

    def send(self, message: OutboundMessage) -> SendResult:
        """Hand one message to the provider. Raises ProviderError (retryable or not)."""
        raise NotImplementedError

    def send_sms(self, to_phone: str, text: str) -> SendResult:
        """Send a plain SMS (providers with `sends_sms`). Raises ProviderError."""
        raise ProviderError(f"{self.label} cannot send SMS", code="sms_unsupported", title="No SMS")

    def conversation_state_push(self, conversation_ref: str, state: str, snoozed_until: datetime | None) -> None:
        """Set the state of the provider's own conversation (providers that keep_conversation_state). Raises
        ProviderError."""
        raise ProviderError(f"{self.label} keeps no conversation state", code="state_unsupported",
                            title="No conversation state")

    def check_connection(self) -> ConnectionCheck:
        raise NotImplementedError

    # --- templates -------------------------------------------------------------------------
    def submit_template(self, template: TemplateDefinition) -> TemplateSubmission:
        """Create the template at the provider under `template.remote_name` and ask for WhatsApp's
        approval. Raises ProviderError; code "template_unsupported" when the provider cannot express it."""
        raise ProviderError(f"{self.label} does not take template submissions", code="not_supported")

    def template_problems(self, template: TemplateDefinition) -> dict[str, list[str]]:
        """What this provider cannot take in a template that passes WhatsApp's rules, by field ("header",
        "components"...), checked without calling the provider: the author sees it before the review."""
        return {}

    def list_templates(self) -> list[RemoteTemplate]:
        """Every template the provider holds for this account, with its current status (all pages)."""
        raise ProviderError(f"{self.label} does not list templates", code="not_supported")

    def simulated_inbound(self, *, from_phone: str, name: str, message_type: str = "text", text: str = "",
                          media: MediaRef | None = None, content: dict[str, Any] | None = None,
                          reply_to_provider_message_id: str = "") -> tuple[bytes, dict[str, str], str]:
        """
        Body and headers of a signed webhook carrying one inbound message, and the message's id in it (local
        simulators only). Said in our vocabulary: a text; a voice note (audio) or an image (`text` is its
        caption) whose file `media` names, with the URL it is fetched from; an interactive reply (`content`
        {"kind": "button_reply" or "list_reply", "id", "title"}) quoting the message it answers. ValueError
        for a message the simulator cannot send.
        """
        raise NotImplementedError(f"{self.label} cannot simulate inbound messages")

    # --- helpers ---------------------------------------------------------------------------
    #: The credential whose value is cut out of any error text (the API token of REST providers).
    redacted_credential: ClassVar[str] = ""

    def redact(self, text: str) -> str:
        secret = self.credential(self.redacted_credential) if self.redacted_credential else ""
        return text.replace(secret, f"[{self.redacted_credential.replace('_', ' ')}]") if secret else text

    def rest_headers(self) -> dict[str, str]:
        """The headers that authenticate a REST call (a bearer token, an API token header)."""
        return {}

    def answered_error(self, response: httpx.Response, action: str) -> ProviderError:
        """A REST call's non-2xx answer, classified (retryable, throttled) in the provider's own terms."""
        raise NotImplementedError

    def rest_call(self, client: httpx.Client, method: str, url: str, *, action: str, **kwargs: Any) -> httpx.Response:
        """One call to the provider's REST API; anything but a 2xx raises a classified ProviderError, and
        no error text carries the token."""
        try:
            response = client.request(method, url, headers=self.rest_headers(),
                                      timeout=settings.PROVIDER_HTTP_TIMEOUT_SECONDS, **kwargs)
        except httpx.TimeoutException as exc:
            raise ProviderError(f"{self.label} did not answer {action} within {settings.PROVIDER_HTTP_TIMEOUT_SECONDS}"
                                f" s ({type(exc).__name__})", code="timeout", title="Timeout", retryable=True) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(self.redact(f"could not reach {self.label} for {action}: {type(exc).__name__}: {exc}"),
                                code="network", title="Network error", retryable=True) from exc
        if not 200 <= response.status_code < 300:
            raise self.answered_error(response, action)
        return response

    def credential(self, name: str) -> str:
        return str(self.provider.credentials.get(name, ""))

    def config_value(self, name: str) -> str:
        return str(self.provider.config.get(name, ""))

    @classmethod
    def option(cls, name: str) -> ProviderOption:
        for option in cls.options:
            if option.name == name:
                return option
        raise KeyError(name)
