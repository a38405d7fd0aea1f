"""Voice notes and audio files written out, once their media is stored."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from ai.audio import audio_duration_seconds
from ai.client import AiError
from ai.models import Feature
from ai.services.calls import CallScope, transcription_call

# The transcription API decides a file's format by its name's extension: a WhatsApp voice note
# (audio/ogg; codecs=opus) is accepted as name.ogg and refused as .oga or .opus.
# https://platform.openai.com/docs/api-reference/audio/createTranscription
EXTENSIONS = {
    "audio/ogg": "ogg", "audio/opus": "ogg", "audio/mpeg": "mp3", "audio/mp3": "mp3", "audio/mp4": "m4a",
    "audio/m4a": "m4a", "audio/x-m4a": "m4a", "audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav",
    "audio/webm": "webm", "audio/flac": "flac", "video/mp4": "mp4", "video/webm": "webm",
}


@dataclass
class Transcription:
    text: str
    language: str
    duration_seconds: float | None
    model: str
    cost: Decimal
    latency_ms: int


def upload_name(mime_type: str) -> tuple[str, str]:
    """The file name and type to upload, or AiError when the API takes no such format (WhatsApp's AAC and
    AMR voice formats among them)."""
    base = (mime_type or "").split(";")[0].strip().lower()
    extension = EXTENSIONS.get(base)
    if extension is None:
        raise AiError(f"the transcription API does not accept {base or 'files of unknown type'}",
                      code="unsupported_format", retryable=False)
    return f"voice.{extension}", base


def transcribe_audio(content: bytes, *, mime_type: str, scope: CallScope | None = None) -> Transcription:
    """Raises AiError (not retryable for a file too large or of a format the API refuses)."""
    if len(content) > settings.AI_MAX_AUDIO_BYTES:
        raise AiError(f"the file is {len(content) / 1048576:.1f} MB; the transcription API takes at most "
                      f"{settings.AI_MAX_AUDIO_BYTES / 1048576:.0f} MB", code="file_too_large", retryable=False)
    filename, upload_type = upload_name(mime_type)
    result, cost = transcription_call(scope or CallScope(Feature.TRANSCRIPTION), content, filename=filename,
                                      mime_type=upload_type, duration_hint=audio_duration_seconds(content))
    return Transcription(text=result.text, language=_iso_language(result.language),
                         duration_seconds=result.duration_seconds, model=result.model, cost=cost,
                         latency_ms=result.latency_ms)


# whisper-1's verbose answer names the language in English ("spanish"); everything else here uses codes.
_LANGUAGE_NAMES = {
    "english": "en", "spanish": "es", "portuguese": "pt", "german": "de", "french": "fr", "italian": "it",
    "dutch": "nl", "arabic": "ar", "hindi": "hi", "indonesian": "id", "russian": "ru", "turkish": "tr",
    "chinese": "zh", "japanese": "ja", "korean": "ko", "polish": "pl", "ukrainian": "uk", "catalan": "ca",
}


def _iso_language(language: str) -> str:
    language = (language or "").strip().lower()
    return _LANGUAGE_NAMES.get(language, language[:16])
