"""
Inbound media: each attachment is downloaded by its own task, retried with backoff until the provider
forgets it, and stored through the archive storage. A failed download never touches its message.
"""

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from core.audit import audit_record
from whatsapp import hooks
from whatsapp.models import Media
from whatsapp.providers import backend_for
from whatsapp.providers.base import ProviderError, sha256_matches
from whatsapp.providers.events import MediaRef
from whatsapp.providers.safe_fetch import DownloadRefused
from whatsapp.services.archive import media_store
from whatsapp.services.inbound import media_enqueue

logger = logging.getLogger(__name__)

FIRST_RETRY = timedelta(seconds=30)
UNEXPECTED_ERROR = "unexpected_error"
MAX_RETRY_DELAY = timedelta(hours=6)


def _retry_delay(attempts: int) -> timedelta:
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), MAX_RETRY_DELAY)


def _ref(media: Media) -> MediaRef:
    return MediaRef(provider_media_id=media.provider_media_id, url=media.source_url, mime_type=media.mime_type,
                    sha256=media.sha256, filename=media.filename, caption=media.caption)


def media_download(media_id: int) -> Media | None:
    """
    One download attempt. Retryable trouble (network, 5xx, 429, an expired download URL) leaves the
    row pending with a due time; it is marked expired once the provider no longer keeps the file, and
    failed on a permanent error or after MEDIA_MAX_ATTEMPTS.
    """
    with transaction.atomic():
        media = (Media.objects.select_for_update(skip_locked=True, of=("self",))
                 .select_related("message__provider", "message__conversation").filter(pk=media_id).first())
        if media is None or media.state != Media.State.PENDING:
            return media
        media.attempts += 1
        try:
            # A savepoint: whatever goes wrong inside, the row can still be saved with the attempt counted.
            with transaction.atomic():
                _fetch_and_store(media)
        except ProviderError as exc:
            _record_failure(media, exc)
        except (OperationalError, InterfaceError):
            raise  # the database is out or busy: the row stays due and the requeue job brings it back
        except Exception as exc:
            # A bug, or an answer nobody foresaw. Raised out of here, it would roll the row back to pending
            # with the attempt uncounted, and the requeue job would hand it out again and again; the same
            # download would fail the same way, so it fails for good with the reason (the admin can retry).
            logger.exception("media download raised", extra={"media": media.pk})
            _record_failure(media, ProviderError(f"unexpected error: {type(exc).__name__}: {exc}",
                                                 code=UNEXPECTED_ERROR, retryable=False))
        media.save()
        if media.state == Media.State.FETCHED:
            hooks.media_stored.fire(media=media)
    return media


def _fetch_and_store(media: Media) -> None:
    downloaded = backend_for(media.message.provider).download_media(_ref(media))
    expected = downloaded.sha256 or media.sha256
    if expected and not sha256_matches(downloaded.content, expected):
        raise ProviderError("downloaded file does not match the provider's sha256", code="sha256_mismatch",
                            retryable=True)
    media.mime_type = (media.mime_type or downloaded.mime_type)[:100]
    # Stored now, or kept on the row as waiting for the archive while the storage is out.
    media_store(media, downloaded.content)
    media.size_bytes = len(downloaded.content)
    media.state = Media.State.FETCHED
    media.fetched_at = timezone.now()
    media.next_attempt_at = None
    media.last_error = ""


def _record_failure(media: Media, exc: ProviderError) -> None:
    now = timezone.now()
    media.last_error = f"attempt {media.attempts}: {exc}"[:4000]
    next_attempt = now + _retry_delay(media.attempts)
    if isinstance(exc, DownloadRefused) or exc.code == UNEXPECTED_ERROR:
        # A host or address we will not fetch from (no later attempt would be allowed either), or an error
        # of ours: failed whatever the file's lifetime, so the reason is what the row shows.
        media.state, media.next_attempt_at = Media.State.FAILED, None
    elif media.expires_at and next_attempt >= media.expires_at:
        media.state, media.next_attempt_at = Media.State.EXPIRED, None
    elif not exc.retryable or media.attempts >= settings.MEDIA_MAX_ATTEMPTS:
        media.state, media.next_attempt_at = Media.State.FAILED, None
    else:
        media.next_attempt_at = next_attempt
    logger.warning("media download failed", extra={"media": media.pk, "attempts": media.attempts,
                                                   "state": media.state, "error": str(exc)})


def media_requeue_due(*, limit: int = 500) -> int:
    """Beat job: hand downloads whose backoff has passed back to the workers."""
    now = timezone.now()
    with transaction.atomic():
        due = list(Media.objects.select_for_update(skip_locked=True)
                   .filter(state=Media.State.PENDING, next_attempt_at__lte=now)
                   .order_by("next_attempt_at")[:limit])
        for media in due:
            # Not handed out again before the task had a fair chance to run.
            media.next_attempt_at = now + max(_retry_delay(media.attempts), FIRST_RETRY * 4)
            media.save(update_fields=["next_attempt_at"])
            media_enqueue(media.pk)
    return len(due)


def media_retry(queryset: QuerySet[Media], *, actor: Any = None) -> int:
    """Admin action: try failed or expired downloads again now."""
    count = 0
    with transaction.atomic():
        for media in queryset.select_for_update():
            before = {"state": media.state, "attempts": media.attempts}
            media.state, media.next_attempt_at, media.attempts = Media.State.PENDING, timezone.now(), 0
            media.save(update_fields=["state", "next_attempt_at", "attempts"])
            audit_record(action="media.retry", obj=media, actor=actor, before=before, after={"state": media.state})
            media_enqueue(media.pk)
            count += 1
    return count
