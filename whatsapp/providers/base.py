"""
The provider interface (the django-anymail shape): one module per provider implements it, the
registry in `whatsapp.providers` maps a kind to its class, and everything else talks to providers
only through these methods and the normalized dataclasses in `events.py`.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from whatsapp.providers.events import ConnectionCheck, NormalizedEvent, OutboundMessage, SendResult

if TYPE_CHECKING:
    from whatsapp.models import Provider as ProviderRow


class WebhookRejected(Exception):
    """The request is refused; `status` is the HTTP code to answer and `reason` is shown to the caller."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ProviderError(Exception):
    """A provider call failed. `retryable` tells the send pipeline whether to try again."""

    def __init__(self, message: str, *, code: str = "", retryable: bool = False, raw: Any = None):
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.raw = raw


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


def clean_json_bytes(body: bytes) -> Any:
    """
    Parse a JSON body for storage in a JSON column. PostgreSQL's jsonb refuses the NUL character
    (\\u0000) in text, so NULs are removed (and lone surrogates replaced) in every string after parsing.
    """
    return _clean_strings(json.loads(body.decode("utf-8")))


def _clean_strings(value: Any) -> Any:
    if isinstance(value, str):
        # Also replace lone surrogates (valid in JSON escapes, invalid in UTF-8 and in the database).
        return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_clean_strings(item) for item in value]
    if isinstance(value, dict):
        return {_clean_strings(key): _clean_strings(item) for key, item in value.items()}
    return value


class BaseProvider:
    kind: ClassVar[str]
    label: ClassVar[str]
    options: ClassVar[tuple[ProviderOption, ...]] = ()
    accepted_content_types: ClassVar[tuple[str, ...]] = ("application/json",)
    #: Header names stored with each webhook event (lower case); signatures are kept for audits.
    stored_headers: ClassVar[tuple[str, ...]] = ()
    #: Messages per second a new provider of this kind starts with.
    default_rate_limit_per_second: ClassVar[int] = 10
    #: Whether the admin offers "simulate an inbound message" (only a local simulator can).
    can_simulate_inbound: ClassVar[bool] = False

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
        """Raise WebhookRejected(400) when the body cannot be parsed at all."""
        try:
            clean_json_bytes(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WebhookRejected(400, f"body is not valid JSON: {exc}") from exc

    def delivery_id(self, request: WebhookRequest) -> str:
        """The provider's id for this delivery when it sends one (for dedup of redeliveries)."""
        return ""

    def parse_webhook(self, body: bytes, headers: dict[str, str], content_type: str) -> list[NormalizedEvent]:
        raise NotImplementedError

    # --- sending ---------------------------------------------------------------------------
    def send(self, message: OutboundMessage) -> SendResult:
        raise NotImplementedError

    def check_connection(self) -> ConnectionCheck:
        raise NotImplementedError

    def simulated_inbound(self, *, from_phone: str, name: str, text: str) -> tuple[bytes, dict[str, str]]:
        """Body and headers of a signed webhook carrying one inbound text (local simulators only)."""
        raise NotImplementedError(f"{self.label} cannot simulate inbound messages")

    # --- helpers ---------------------------------------------------------------------------
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
