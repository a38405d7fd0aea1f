"""
A recording's length, read from its container without decoding it: WhatsApp voice notes are Ogg Opus and
the transcription models that bill by token do not say how long the audio was.
"""

from __future__ import annotations

import struct

OPUS_GRANULE_RATE = 48_000  # Opus always counts granules at 48 kHz (RFC 7845, section 4)


def audio_duration_seconds(content: bytes) -> float | None:
    """None when the length cannot be read (another container, a truncated or odd file)."""
    try:
        if content[:4] == b"OggS":
            return _ogg_duration(content)
        if content[:4] == b"RIFF" and content[8:12] == b"WAVE":
            return _wav_duration(content)
    except struct.error:
        return None
    return None


def _ogg_duration(content: bytes) -> float | None:
    last_page = content.rfind(b"OggS")
    if last_page < 0 or len(content) < last_page + 14:
        return None
    granule = struct.unpack_from("<q", content, last_page + 6)[0]
    if granule <= 0:
        return None
    if b"OpusHead" in content[:200]:
        pre_skip = struct.unpack_from("<H", content, content.find(b"OpusHead") + 10)[0]
        return max(granule - pre_skip, 0) / OPUS_GRANULE_RATE
    vorbis = content.find(b"\x01vorbis")
    if vorbis >= 0 and len(content) >= vorbis + 16:
        rate = struct.unpack_from("<I", content, vorbis + 12)[0]
        return granule / rate if rate else None
    return None


def _wav_duration(content: bytes) -> float | None:
    position, byte_rate = 12, 0
    while position + 8 <= len(content):
        chunk, size = content[position:position + 4], struct.unpack_from("<I", content, position + 4)[0]
        if chunk == b"fmt " and position + 16 <= len(content):
            byte_rate = struct.unpack_from("<I", content, position + 16)[0]
        elif chunk == b"data":
            return size / byte_rate if byte_rate else None
        position += 8 + size + (size & 1)
    return None
