"""A voice note from its webhook to its transcript and the classification that read it, with real
workers (the default queue and the AI queue) and the fake OpenAI server."""

import hashlib
import struct
import time
import wave
from pathlib import Path

import pytest

from ai.audio import audio_duration_seconds
from ai.models import AiCall, MessageInsight
from tests.conftest import fixture_bytes, start_worker, stop_worker, wait_until
from tests.fakes import FakeServer, Reply
from tests.signing import make_meta, post_meta
from whatsapp.models import Message


def ogg_opus(seconds: float) -> bytes:
    """A minimal Ogg Opus file: its identification header page and a last page whose granule position
    gives the length (48 kHz granules after a 312-sample pre-skip)."""
    def page(granule: int, payload: bytes, flags: int) -> bytes:
        header = b"OggS" + struct.pack("<BBqIIIB", 0, flags, granule, 7, 0, 0, 1) + bytes([len(payload)])
        return header + payload
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, 312, 48000, 0, 0)
    return page(0, head, 2) + page(0, b"\x00" * 200, 0) + page(312 + int(seconds * 48000), b"\x00" * 100, 4)


def serve_voice_note(graph: FakeServer, audio: bytes) -> None:
    """The fake Graph API serves the voice note of the meta fixture audio_voice.json (its media id)."""
    graph.routes["/v25.0/1410000000000102"] = [Reply.json({
        "url": f"{graph.url}/attachments/voice-1", "mime_type": "audio/ogg; codecs=opus",
        "sha256": hashlib.sha256(audio).hexdigest(), "id": "1410000000000102"})]
    graph.routes["/attachments/voice-1"] = [Reply(200, audio, {"Content-Type": "audio/ogg"})]


def test_a_recordings_length_is_read_from_its_container():
    # Token-billed transcription models do not say how long the audio was; the file does.
    assert audio_duration_seconds(ogg_opus(3.5)) == pytest.approx(3.5, abs=0.01)
    wav = (Path(__file__).resolve().parents[2] / "bench" / "ai_eval" / "clips").glob("*.wav")
    first = next(iter(sorted(wav)))
    with wave.open(str(first)) as reader:
        expected = reader.getnframes() / reader.getframerate()
    assert audio_duration_seconds(first.read_bytes()) == pytest.approx(expected, abs=0.01)
    assert audio_duration_seconds(b"not audio") is None


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_voice_note_is_transcribed_then_classified_from_its_transcript(client, worker_env, fake_openai, tmp_path):
    audio = ogg_opus(3.5)
    fake_openai.add_transcript(audio, "Hola, quiero pedir dos cajas de azulejos azules para el viernes", 3.5)
    fake_openai.script("chat", {"intent": "request", "sentiment": "positive", "sentiment_score": 0.4,
                                "language": "es", "urgency": "normal",
                                "fields": {"dates": ["viernes"], "amounts": [], "items": ["azulejos azules"]}})
    with FakeServer() as graph:
        serve_voice_note(graph, audio)
        env = {**worker_env, "META_GRAPH_BASE_URL": graph.url, "META_GRAPH_API_VERSION": "v25.0",
               "OPENAI_API_KEY": "sk-test-key", "OPENAI_BASE_URL": fake_openai.url,
               "OPENAI_MODEL": "gpt-4.1-mini", "OPENAI_TRANSCRIPTION_MODEL": "whisper-1"}
        workers = [start_worker(env, tmp_path / "worker.log", "voice"),
                   start_worker(env, tmp_path / "ai-worker.log", "voice-ai", queues="ai")]
        try:
            provider = make_meta()
            body = fixture_bytes("meta", "audio_voice.json").replace(b'"1793000003"', f'"{int(time.time())}"'.encode())
            assert post_meta(client, provider, body).status_code == 200
            message = wait_until(lambda: Message.objects.filter(ai_processed_at__isnull=False).first(), 60,
                                 message="the voice note to be transcribed and classified")
        finally:
            for worker in workers:
                stop_worker(worker)

    insight = MessageInsight.objects.get(message=message)
    assert message.transcript.startswith("Hola, quiero pedir dos cajas")
    assert (message.intent, message.sentiment, message.language) == ("request", "positive", "es")
    assert (insight.transcription_status, insight.transcription_model) == ("done", "whisper-1")
    assert insight.audio_seconds == pytest.approx(3.5, abs=0.1) and insight.transcription_cost > 0
    upload = fake_openai.transcription_requests[0]
    assert (upload.file.filename, upload["model"], upload["temperature"]) == ("voice.ogg", "whisper-1", "0")
    # The classification read the transcript, and came after it.
    assert "quiero pedir dos cajas" in fake_openai.chat_requests[0]["messages"][-1]["content"]
    calls = list(AiCall.objects.order_by("pk").values_list("feature", "status"))
    assert calls == [("transcription", "ok"), ("classification", "ok")]
