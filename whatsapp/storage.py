"""
Archive storage behind one interface. The local-directory backend is the default; the GCS backend
(one bucket per user, lifecycle rules) arrives with the storage issue.
"""

import uuid
from pathlib import Path
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class ArchiveStorage(Protocol):
    name: str

    def check(self) -> None:
        """Raise when the storage cannot be written."""

    def write(self, container: str, path: str, data: bytes, metadata: dict[str, str]) -> str:
        """Store bytes; return where they went."""

    def read(self, location: str) -> bytes:
        """Bytes back from where `write` said they went."""


class LocalDirectoryStorage:
    name = "local"

    def __init__(self, root: Path):
        self.root = Path(root)

    def _resolve(self, location: str) -> Path:
        target = (self.root / location).resolve()
        if self.root.resolve() not in target.parents:
            raise ValueError(f"{location!r} escapes the storage directory")
        return target

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f".probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()

    def write(self, container: str, path: str, data: bytes, metadata: dict[str, str]) -> str:
        location = f"{container}/{path}"
        target = self._resolve(location)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return location

    def read(self, location: str) -> bytes:
        return self._resolve(location).read_bytes()


def get_storage() -> ArchiveStorage:
    if settings.STORAGE_BACKEND == "local":
        return LocalDirectoryStorage(settings.LOCAL_STORAGE_DIR)
    raise ImproperlyConfigured(
        f"STORAGE_BACKEND={settings.STORAGE_BACKEND!r} is not available yet; only 'local' is (GCS comes with "
        "the storage issue)"
    )
