import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from django.conf import settings
from django.db import transaction
from django.urls import reverse

from contacts.models import ContactIdentity
from core.audit import audit_record
from core.queueing import task_named
from core.storage import ObjectNotFound, StorageError, get_storage
from whatsapp.models import ArchiveBucket, Message, Provider
from whatsapp.providers import backend_class_for, backend_for
from whatsapp.providers.events import IdentityKind, MediaRef, MessageType
from whatsapp.services.archive import archive_write, owner_for_provider
from whatsapp.services.outbound import messages_release_held
from whatsapp.services.webhooks import webhook_events_replay_unrouted

ROW_TARGETS = ("phone_number", "external_id", "business_account_id")


class ProviderConfigError(ValueError):
    pass


def provider_webhook_url(provider: Provider, base_url: str | None = None) -> str:
    """The URL providers call (on PUBLIC_BASE_URL unless another base is given)."""
    url = f"{base_url or settings.PUBLIC_BASE_URL}/webhooks/{provider.kind}/{provider.public_id}/"
    query = backend_for(provider).webhook_query()
    return f"{url}?{urlencode(query)}" if query else url


def mask_secret(value: str) -> str:
    if not value:
        return ""
    return "••••" + value[-4:] if len(value) > 8 else "••••"


def provider_masked_credentials(provider: Provider) -> dict[str, str]:
    return {key: mask_secret(str(value)) for key, value in sorted(provider.credentials.items())}


def provider_apply_options(provider: Provider, options: dict[str, Any]) -> None:
    """Put each option where its kind says it lives; empty values leave the current one alone."""
    provider_class = backend_class_for(provider.kind)
    for option in provider_class.options:
        value = options.get(option.name)
        if value in (None, ""):
            continue
        value = str(value).strip()
        if option.target in ROW_TARGETS:
            setattr(provider, option.target, value)
        elif option.target == "credentials":
            provider.credentials = {**provider.credentials, option.name: value}
        else:
            provider.config = {**provider.config, option.name: value}


def provider_missing_options(provider: Provider) -> list[str]:
    provider_class = backend_class_for(provider.kind)
    return [option.name for option in provider_class.options
            if option.required and not _current_value(provider, option)]


def provider_fill_defaults(provider: Provider) -> None:
    """What a new provider of its kind starts with: option defaults, generated secrets, rate limit."""
    provider_class = backend_class_for(provider.kind)
    for option in provider_class.options:
        if option.default and not _current_value(provider, option):
            provider_apply_options(provider, {option.name: option.default})
        # Secrets that we choose ourselves (not issued by the provider) are generated when none is given.
        if option.generated and not _current_value(provider, option):
            provider.credentials = {**provider.credentials, option.name: secrets.token_urlsafe(32)}
    if provider._state.adding and not provider.rate_limit_per_second:
        provider.rate_limit_per_second = provider_class.default_rate_limit_per_second


def _current_value(provider: Provider, option) -> Any:
    if option.target in ROW_TARGETS:
        return getattr(provider, option.target)
    if option.target == "credentials":
        return provider.credentials.get(option.name)
    return provider.config.get(option.name)


@transaction.atomic
def provider_create(*, kind: str, name: str, options: dict[str, Any], actor: Any = None) -> Provider:
    provider = Provider(kind=kind, name=name)
    provider_apply_options(provider, options)
    provider_fill_defaults(provider)
    missing = provider_missing_options(provider)
    if missing:
        raise ProviderConfigError(f"a {kind} provider needs: {', '.join(missing)}")
    provider.save()
    audit_record(action="provider.create", obj=provider, actor=actor,
                 after={"kind": kind, "name": name, "credentials": sorted(provider.credentials)})
    # Updates that named this number before the provider existed were kept and flagged; apply them now.
    webhook_events_replay_unrouted(provider=provider)
    return provider


def provider_set_paused(*, provider: Provider, paused: bool, actor: Any = None) -> None:
    """A paused provider keeps accepting webhooks but holds outbound messages queued."""
    if provider.is_paused == paused:
        return
    provider.is_paused = paused
    provider.save(update_fields=["is_paused", "updated_at"])
    audit_record(action="provider.pause" if paused else "provider.resume", obj=provider, actor=actor,
                 before={"is_paused": not paused}, after={"is_paused": paused})
    if not paused:

        messages_release_held(provider=provider)


def provider_webhook_post(provider: Provider, body: bytes, headers: dict[str, str],
                          timeout: float = 10) -> httpx.Response:
    """
    POST to the provider's own webhook URL, as a simulator plays the provider's servers. Workers post it,
    so it goes to INTERNAL_BASE_URL, where they reach the web server: the simulators sign the body, not
    the URL, so the signature holds whichever address carries it.
    """
    url = provider_webhook_url(provider, base_url=settings.INTERNAL_BASE_URL)
    response = httpx.post(url, content=body, headers=headers, timeout=timeout)
    response.raise_for_status()
    return response


class SimulationRefused(ValueError):
    """What a simulator's phone cannot send as asked, said for the person playing the customer."""


@dataclass(frozen=True)
class SimulatedFile:
    """A file the simulated phone sends: a voice note or an image."""

    data: bytes
    filename: str = ""


@dataclass(frozen=True)
class SimulatedFileKind:
    message_type: str
    mime_type: str
    extension: str
    max_bytes: int

    @property
    def label(self) -> str:
        return "a voice note" if self.message_type == MessageType.AUDIO else "an image"


# What the phone may send, recognised by the file's first bytes (never by its name or the browser's word):
# the formats WhatsApp takes for a voice note or an image, and WhatsApp's own size limits (16 MB for audio,
# 5 MB for an image). https://developers.facebook.com/docs/whatsapp/cloud-api/reference/media#supported-media-types
MB = 1024 * 1024
VOICE_KINDS = {
    "ogg": SimulatedFileKind(MessageType.AUDIO, "audio/ogg", "ogg", 16 * MB),
    "mp3": SimulatedFileKind(MessageType.AUDIO, "audio/mpeg", "mp3", 16 * MB),
    "m4a": SimulatedFileKind(MessageType.AUDIO, "audio/mp4", "m4a", 16 * MB),
    "wav": SimulatedFileKind(MessageType.AUDIO, "audio/wav", "wav", 16 * MB),
}
IMAGE_KINDS = {
    "jpeg": SimulatedFileKind(MessageType.IMAGE, "image/jpeg", "jpg", 5 * MB),
    "png": SimulatedFileKind(MessageType.IMAGE, "image/png", "png", 5 * MB),
    "webp": SimulatedFileKind(MessageType.IMAGE, "image/webp", "webp", 5 * MB),
}
SIMULATED_FILE_FORMATS = "a voice note (ogg/opus, mp3, m4a or wav) or an image (jpeg, png or webp)"
# Where a simulator keeps its phone's files: in the provider's own archive bucket, so that the web server
# that serves them finds them whichever process kept them.
SIMULATED_FILES_FOLDER = "simulated-phone"
SIMULATED_FILE_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")
HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}


def simulated_file_kind(data: bytes) -> SimulatedFileKind | None:
    """What a file is, by its first bytes; None for anything the phone does not send."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return IMAGE_KINDS["jpeg"]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return IMAGE_KINDS["png"]
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return IMAGE_KINDS["webp"]
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return VOICE_KINDS["wav"]
    if head.startswith(b"OggS"):
        return VOICE_KINDS["ogg"]
    # An MPEG-4 file, unless its brand says it is a picture (HEIC, AVIF), which the phone does not send.
    if head[4:8] == b"ftyp" and head[8:12] not in HEIF_BRANDS:
        return VOICE_KINDS["m4a"]
    # An ID3 tag, or straight into an MPEG audio frame (11 sync bits).
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return VOICE_KINDS["mp3"]
    return None


def simulated_file_problem(file: SimulatedFile) -> str:
    """Why the phone cannot send this file ("" when it can)."""
    if not file.data:
        return "The file is empty."
    kind = simulated_file_kind(file.data)
    if kind is None:
        return f"The phone sends {SIMULATED_FILE_FORMATS}; this file is none of them."
    if len(file.data) > kind.max_bytes:
        return f"WhatsApp takes {kind.label} of at most {kind.max_bytes // MB} MB; this one is larger."
    return ""


def provider_simulated_file_keep(provider: Provider, file: SimulatedFile) -> MediaRef:
    """
    Keep a file the simulated phone sends, as a provider keeps a customer's upload, and say where it is
    fetched from: a URL of our own server under an unguessable token, reached by the workers at
    INTERNAL_BASE_URL (see provider_simulated_file). Raises SimulationRefused.
    """
    problem = simulated_file_problem(file)
    if problem:
        raise SimulationRefused(problem)
    kind = simulated_file_kind(file.data)
    token = secrets.token_urlsafe(32)
    sha256 = hashlib.sha256(file.data).hexdigest()
    stem = "voice-note" if kind.message_type == MessageType.AUDIO else "image"
    filename = (file.filename or f"{stem}.{kind.extension}").replace("/", "_")[:200]
    try:
        archive_write(owner_for_provider(provider.pk), f"{SIMULATED_FILES_FOLDER}/{token}", file.data,
                      content_type=kind.mime_type, metadata={"filename": filename, "sha256": sha256})
    except StorageError as exc:
        raise SimulationRefused(f"The archive storage cannot keep the file right now ({exc}); try again.") from exc
    path = reverse("simulated-media", args=[provider.public_id, token])
    return MediaRef(provider_media_id=token, url=f"{settings.INTERNAL_BASE_URL}{path}", mime_type=kind.mime_type,
                    sha256=sha256, filename=filename, size_bytes=len(file.data))


def provider_simulated_file(public_id: uuid.UUID, token: str) -> tuple[bytes, str, str] | None:
    """A file a simulator's phone sent: (bytes, mime type, file name), or None when there is none. Raises
    StorageUnavailable while the storage is out (the download is retried)."""
    provider = Provider.objects.filter(public_id=public_id, is_active=True).first()
    if provider is None or not backend_for(provider).can_simulate_inbound or not SIMULATED_FILE_TOKEN.fullmatch(token):
        return None
    storage = get_storage()
    bucket = (ArchiveBucket.objects.filter(backend=storage.name, owner_key=owner_for_provider(provider.pk).key)
              .values_list("name", flat=True).first())
    if bucket is None:
        return None
    location = f"{bucket}/{SIMULATED_FILES_FOLDER}/{token}"
    try:
        described = storage.stat(location)
        data = storage.read(location)
    except ObjectNotFound:
        return None
    return data, described.content_type, described.metadata.get("filename", "")


def _offered_choice(answered: Message, choice_id: str) -> dict[str, str] | None:
    """The reply button or list row of our interactive message with this id, as an interactive reply's
    content; None when the message offers no such choice."""
    content = answered.content if isinstance(answered.content, dict) else {}
    for button in content.get("buttons") or []:
        if isinstance(button, dict) and str(button.get("id")) == choice_id:
            return {"kind": "button_reply", "id": choice_id, "title": str(button.get("title", ""))}
    for section in content.get("sections") or []:
        for row in (section.get("rows") or []) if isinstance(section, dict) else []:
            if isinstance(row, dict) and str(row.get("id")) == choice_id:
                reply = {"kind": "list_reply", "id": choice_id, "title": str(row.get("title", ""))}
                return {**reply, "description": str(row["description"])} if row.get("description") else reply
    return None


def _tap(provider: Provider, from_phone: str, answered: Message, choice_id: str) -> dict[str, str]:
    if (answered.provider_id != provider.pk or answered.direction != Message.Direction.OUTBOUND
            or answered.message_type != MessageType.INTERACTIVE):
        raise SimulationRefused("Only a button or list row of an interactive message this number sent can be tapped.")
    if not ContactIdentity.objects.filter(contact__conversations=answered.conversation_id, kind=IdentityKind.PHONE,
                                          value=from_phone).exists():
        raise SimulationRefused(f"That message was sent to another number than {from_phone}.")
    if not answered.provider_message_id:
        raise SimulationRefused("That message has not reached the phone yet.")
    choice = _offered_choice(answered, choice_id)
    if choice is None:
        raise SimulationRefused("That message offers no such button or list row.")
    return choice


def provider_simulate_inbound(*, provider: Provider, from_phone: str, name: str = "", text: str = "",
                              file: SimulatedFile | None = None, answered: Message | None = None,
                              choice_id: str = "") -> str:
    """
    A simulator's phone sends a message: a text; a voice note or an image (`file`, which the simulator
    keeps and serves for the download; `text` is an image's caption); or a tap on a reply button or list
    row (`choice_id`) of our interactive message `answered`, which the reply quotes. It goes as a signed
    webhook posted to the provider's own URL over HTTP, so it takes exactly the path a real provider's
    webhook takes. A worker posts it once the caller's transaction commits: a web request posting to its
    own server would depend on that server answering a second request while it serves the first.

    Returns the message's id at the provider. Raises SimulationRefused for a message the phone cannot send,
    and the broker's error when the task cannot be handed over (outside a transaction; inside one, at its
    commit).
    """
    backend = backend_for(provider)
    if not backend.can_simulate_inbound:
        raise SimulationRefused(f"{backend.label} has no simulated phone.")
    media, content, reply_to = None, None, ""
    text = text.strip()
    if answered is not None:
        message_type, content = MessageType.INTERACTIVE_REPLY, _tap(provider, from_phone, answered, choice_id)
        text, reply_to = content["title"], answered.provider_message_id
    elif file is not None:
        kind = simulated_file_kind(file.data)
        if kind is not None and kind.message_type == MessageType.AUDIO and text:
            raise SimulationRefused("A voice note has no caption: send the text on its own.")
        media = provider_simulated_file_keep(provider, file)
        message_type = kind.message_type
    elif text:
        message_type = MessageType.TEXT
    else:
        raise SimulationRefused("Type a message, or attach a voice note or an image.")
    # Signed here, once: a retried post carries the same message id, so the inbox keeps one message.
    body, headers, message_id = backend.simulated_inbound(
        from_phone=from_phone, name=name, message_type=message_type, text=text, media=media, content=content,
        reply_to_provider_message_id=reply_to)
    simulate = task_named("whatsapp.tasks.simulate_inbound_task")
    transaction.on_commit(lambda: simulate.delay(provider.pk, body.decode(), headers))
    return message_id


def provider_simulated_webhook_post(provider_id: int, body: str, headers: dict[str, str]) -> int:
    """Post a simulated webhook (see provider_simulate_inbound); returns the stored inbox event's id."""
    provider = Provider.objects.get(pk=provider_id)
    return int(provider_webhook_post(provider, body.encode(), headers).json()["event"])
