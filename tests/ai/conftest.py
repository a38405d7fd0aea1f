"""The AI tests' shared parts: a local server speaking OpenAI's wire format, and the settings that point
the platform at it."""

import pytest

from ai import guards, taxonomy
from tests.fake_openai import FakeOpenAI


@pytest.fixture(scope="module")
def openai_server():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fake_openai(openai_server, settings):
    """The module's fake OpenAI, emptied, with AI on and pointed at it: a priced chat model, whisper-1 for
    transcription, quick timeouts and a circuit that opens after three failures."""
    openai_server.reset()
    settings.OPENAI_API_KEY = "sk-test-key"
    settings.OPENAI_BASE_URL = openai_server.url
    settings.OPENAI_MODEL = "gpt-4.1-mini"
    settings.OPENAI_TRANSCRIPTION_MODEL = "whisper-1"
    settings.AI_TIMEOUT_SECONDS = 2.0
    settings.AI_CIRCUIT_THRESHOLD = 3
    return openai_server


@pytest.fixture(autouse=True)
def read_fresh():
    """Workers keep the taxonomy and a closed circuit for a few seconds; each test starts from its own
    database."""
    taxonomy._cache, guards._closed_seen_at = None, 0.0
    yield
    taxonomy._cache, guards._closed_seen_at = None, 0.0
