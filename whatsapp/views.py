"""
The webhook endpoint, one view for every provider: check size and content type, verify, store,
answer 200, and process later. Every refusal is recorded and explained; nothing here answers 5xx
except 503 when the database is unreachable, so that the provider retries.
"""

import logging
import uuid

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict, UnreadablePostError
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from core import metrics
from core.client_address import client_address
from core.crypto import DecryptionError
from core.request_body import is_chunked_without_length
from core.security_headers import UNTRUSTED_FILE_POLICY
from core.storage import ObjectNotFound, StorageError
from whatsapp.models import Media, Provider, WebhookEvent
from whatsapp.providers import backend_for, registered_kinds
from whatsapp.providers.base import WebhookRejected, WebhookRequest
from whatsapp.services.archive import media_content
from whatsapp.services.provider_lookup import webhook_provider
from whatsapp.services.providers import provider_simulated_file
from whatsapp.services.webhook_flood import webhook_rejection_handling
from whatsapp.services.webhooks import webhook_event_record

logger = logging.getLogger(__name__)

# The metrics' short reason codes, by the status a refusal answers with (see docs/architecture.md#receiving).
REJECTION_REASONS = {
    400: "invalid_body",
    401: "signature_missing",
    403: "signature_invalid",
    404: "unknown_provider",
    405: "method_not_allowed",
    411: "length_required",
    413: "too_large",
    415: "unsupported_content_type",
    429: "throttled",
}


def _metric_kind(kind: str, provider: Provider | None) -> str:
    # The URL's kind is whatever the caller wrote: only a kind we know becomes a label value.
    if provider is not None:
        return provider.kind
    return kind if kind in registered_kinds() else "unknown"


def _error(status: int, reason: str) -> JsonResponse:
    return JsonResponse({"error": reason}, status=status)


def _media_type(request: HttpRequest) -> str:
    return request.content_type.split(";")[0].strip().lower() if request.content_type else ""


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return -1


def _webhook_request(request: HttpRequest, body: bytes, *, with_form: bool = True) -> WebhookRequest:
    # Providers sign the URL they called, which behind a proxy is PUBLIC_BASE_URL, not Django's view.
    form = {}
    if with_form and _media_type(request) == "application/x-www-form-urlencoded":
        # Read from the body we read (request.POST sees nothing of a chunked body), as request.POST would.
        try:
            fields = QueryDict(body, encoding=request.encoding)
        except TooManyFieldsSent:
            raise WebhookRejected(400, f"the form has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields"
                                  ) from None
        form = {key: fields.get(key) for key in fields}
    return WebhookRequest(
        method=request.method,
        public_url=settings.PUBLIC_BASE_URL + request.get_full_path(),
        body=body,
        headers={name.lower(): value for name, value in request.headers.items()},
        query={key: request.GET.get(key) for key in request.GET},
        form=form,
        content_type=_media_type(request),
    )


@method_decorator(csrf_exempt, name="dispatch")
class ProviderWebhookView(View):
    http_method_names = ["get", "post"]
    # A provider, or a proxy in front of us, may send the body in chunks: _read_body reads it.
    reads_chunked_bodies = True

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return super().dispatch(request, *args, **kwargs)
        except DatabaseError:
            logger.exception("database unavailable while receiving a webhook")
            return _error(503, "database unavailable; retry later")
        except DecryptionError:
            # FIELD_ENCRYPTION_KEYS lost the key this provider's secrets were written with: nothing can
            # be verified, so ask the provider to retry rather than accept unverified input.
            logger.exception("provider credentials cannot be decrypted")
            return _error(503, "provider credentials unavailable; retry later")

    def _provider(self, kind: str, public_id: uuid.UUID) -> Provider | None:
        return webhook_provider(kind, public_id)

    def get(self, request: HttpRequest, kind: str, public_id: uuid.UUID) -> HttpResponse:
        provider = self._provider(kind, public_id)
        if provider is None:
            return _error(404, "unknown or inactive provider")
        try:
            answer = backend_for(provider).answer_verification(_webhook_request(request, b""))
        except WebhookRejected as rejected:
            return _error(rejected.status, rejected.reason)
        return HttpResponse(answer.body, status=answer.status, content_type="text/plain")

    def post(self, request: HttpRequest, kind: str, public_id: uuid.UUID) -> HttpResponse:
        provider = self._provider(kind, public_id)
        try:
            body = self._read_body(request)
        except WebhookRejected as rejected:
            return self._reject(request, kind, provider, b"", rejected,
                                body_size=max(_declared_length(request), 0))
        try:
            webhook_request = _webhook_request(request, body)
        except WebhookRejected as rejected:
            return self._reject(request, kind, provider, body, rejected)
        if provider is None:
            return self._reject(request, kind, None, body, WebhookRejected(404, "unknown or inactive provider"))
        handler = backend_for(provider)
        if webhook_request.content_type not in handler.accepted_content_types:
            return self._reject(request, kind, provider, body, WebhookRejected(
                415, f"content type must be {' or '.join(handler.accepted_content_types)}"))
        try:
            handler.verify_webhook(webhook_request)
        except WebhookRejected as rejected:
            return self._reject(request, kind, provider, body, rejected, signature_valid=False)
        try:
            handler.check_body(webhook_request)
        except WebhookRejected as rejected:
            return self._reject(request, kind, provider, body, rejected, signature_valid=True)
        event, created = webhook_event_record(kind=kind, provider=provider, request=webhook_request,
                                              remote_addr=client_address(request), signature_valid=True)
        metrics.webhook_received(provider.kind, provider.pk, duplicate=not created)
        status = "accepted" if created else "duplicate"
        body, content_type = handler.acknowledgement({"status": status, "event": event.pk})
        response = HttpResponse(body, content_type=content_type)
        # The inbox row's id, whatever the body format (Twilio expects TwiML back).
        response["X-Webhook-Event"] = str(event.pk)
        return response

    def _read_body(self, request: HttpRequest) -> bytes:
        limit = settings.WEBHOOK_MAX_BODY_BYTES
        if is_chunked_without_length(request):
            return self._read_chunked(request, limit)
        declared = _declared_length(request)
        if declared < 0:
            raise WebhookRejected(400, "Content-Length is not a number")
        if declared > limit:
            raise WebhookRejected(413, f"body is larger than {limit} bytes")
        try:
            body = request.body
        except RequestDataTooBig:
            raise WebhookRejected(413, f"body is larger than {limit} bytes") from None
        except UnreadablePostError:
            raise WebhookRejected(400, "the body ended before its Content-Length") from None
        if len(body) > limit:
            raise WebhookRejected(413, f"body is larger than {limit} bytes")
        return body

    def _read_chunked(self, request: HttpRequest, limit: int) -> bytes:
        """A body sent in chunks, without a Content-Length (Django alone would read it as empty)."""
        # Only a server that decodes the chunks and ends the stream says so (gunicorn does, with
        # wsgi.input_terminated); from any other the stream would hold the chunk framing or never end.
        if not request.META.get("wsgi.input_terminated"):
            raise WebhookRejected(411, "a Content-Length header is required")
        stream = request.META["wsgi.input"]
        chunks, size = [], 0
        try:
            while chunk := stream.read(min(64 * 1024, limit + 1 - size)):
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise WebhookRejected(413, f"body is larger than {limit} bytes")
        except OSError:  # the client went away mid-body (gunicorn raises its own kinds of OSError)
            raise WebhookRejected(400, "the chunked body could not be read to its end") from None
        return b"".join(chunks)

    def _reject(self, request, kind, provider, body, rejected: WebhookRejected, *, signature_valid=None,
                body_size=None) -> HttpResponse:
        handling = webhook_rejection_handling(provider.pk if provider else None, client_address(request))
        status = rejected.status if handling.retry_after is None else 429
        metrics.webhook_rejected(_metric_kind(kind, provider), provider.pk if provider else None,
                                 REJECTION_REASONS.get(status, "other"))
        if handling.retry_after is not None:
            response = _error(429, f"too many rejected requests from this address; retry in {handling.retry_after} s")
            response["Retry-After"] = str(handling.retry_after)
            return response
        if not handling.record:
            return _error(rejected.status, rejected.reason)  # a flood: counted, not stored row by row
        if body_size is None:
            webhook_request = _webhook_request(request, body, with_form=False)
        else:  # the body was never read (too large): record the request without it
            webhook_request = WebhookRequest(method=request.method, public_url="", body=b"", headers={},
                                             content_type=_media_type(request))
        webhook_event_record(
            kind=kind, provider=provider, request=webhook_request, remote_addr=client_address(request),
            status=WebhookEvent.Status.REJECTED, http_status=rejected.status, reason=rejected.reason,
            signature_valid=signature_valid, body_size=body_size,
        )
        logger.info("webhook rejected", extra={"kind": kind, "http_status": rejected.status,
                                               "reason": rejected.reason})
        return _error(rejected.status, rejected.reason)


def outbound_media(request: HttpRequest, token: str) -> HttpResponse:
    """An uploaded file we send, served to the provider that fetches it by link (Twilio's media_url).
    The token is the credential: 32 random bytes, one per file."""
    media = (Media.objects.filter(public_token=token)
             .only("archive_path", "mime_type", "filename", "pending_content").first())
    if media is None or not token:
        return _error(404, "no such file")
    try:
        data = media_content(media)
    except ObjectNotFound:
        return _error(404, "this file is no longer in storage")
    except StorageError:
        # The provider fetching it retries; the file itself is safe in the archive.
        return _error(503, "the archive storage cannot be reached right now")
    response = HttpResponse(data, content_type=media.mime_type)
    response["Content-Disposition"] = f'inline; filename="{media.filename.replace(chr(34), "")}"'
    response["Content-Security-Policy"] = UNTRUSTED_FILE_POLICY
    response["Cache-Control"] = "private, max-age=3600"
    return response


def simulated_media(request: HttpRequest, public_id: uuid.UUID, token: str) -> HttpResponse:
    """A file a simulator's phone sent, served to the worker that downloads it as a provider's media server
    would. The token is the credential: 32 random bytes, one per file."""
    try:
        found = provider_simulated_file(public_id, token)
    except StorageError:
        # The download is retried; the file itself is safe in the archive.
        return _error(503, "the archive storage cannot be reached right now")
    if found is None:
        return _error(404, "no such file")
    data, mime_type, filename = found
    response = HttpResponse(data, content_type=mime_type or "application/octet-stream")
    response["Content-Disposition"] = f'inline; filename="{filename.replace(chr(34), "")}"'
    response["Content-Security-Policy"] = UNTRUSTED_FILE_POLICY
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=3600"
    return response
