"""
Archive storage behind one interface, with two backends chosen by STORAGE_BACKEND: Google Cloud Storage
(one bucket per owner, lifecycle rules) and a local directory (the default, with the same layout: a
folder per bucket). A location is "<bucket>/<object path>" in both, and is what rows record.

Which bucket an object goes to is decided by whatsapp.services.archive; this module only moves bytes.
Every call either succeeds, raises StorageUnavailable (retry later: network, timeouts, 5xx, 429) or
raises StorageError (a request that will not work as it is).
"""

import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from google.api_core import exceptions as api_errors
from google.auth import exceptions as auth_errors
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption
from requests import exceptions as http_errors

logger = logging.getLogger(__name__)

UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024
# The lifecycle rules move only objects under this prefix to colder classes: a transition is billed per
# object, so only objects large enough to earn it back go there (whatsapp.services.archive decides).
TIERED_PREFIX = "tiered/"


class StorageError(Exception):
    """A storage request that will not succeed as it is."""


class StorageUnavailable(StorageError):
    """The storage cannot be reached or answered with a transient error; try again later."""


class ObjectNotFound(StorageError):
    pass


class BucketNotFound(StorageError):
    pass


@dataclass(frozen=True)
class BucketSpec:
    """How a bucket is made: GCS applies all of it; the local backend only makes the folder."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredObject:
    location: str
    size: int
    content_type: str
    metadata: dict[str, str]


@dataclass(frozen=True)
class BucketInfo:
    name: str
    location: str
    storage_class: str
    labels: dict[str, str]
    uniform_access: bool
    lifecycle_rules: list[dict]


def split_location(location: str) -> tuple[str, str]:
    bucket, _, path = location.partition("/")
    if not bucket or not path:
        raise StorageError(f"{location!r} is not a <bucket>/<path> location")
    return bucket, path


def lifecycle_rules() -> list[tuple[str, int]]:
    """(storage class, age in days) steps from the settings, oldest last; a zero or empty age drops a step."""
    steps = [("NEARLINE", settings.GCS_NEARLINE_AFTER_DAYS), ("COLDLINE", settings.GCS_COLDLINE_AFTER_DAYS),
             ("ARCHIVE", settings.GCS_ARCHIVE_AFTER_DAYS)]
    return [(storage_class, age) for storage_class, age in steps if age]


class ArchiveStorage(Protocol):
    name: str

    def check(self) -> None:
        """Raise when the storage cannot be reached."""

    def create_bucket(self, spec: BucketSpec) -> None:
        """Make the bucket with its rules; a bucket we already have is left as it is."""

    def bucket_info(self, bucket: str) -> BucketInfo:
        """How the bucket is set up; BucketNotFound when there is none."""

    def write(self, bucket: str, path: str, data: bytes, *, content_type: str, metadata: dict[str, str]) -> str:
        """Store bytes; return their location. BucketNotFound when the bucket is gone."""

    def write_file(self, bucket: str, path: str, file: BinaryIO, *, content_type: str,
                   metadata: dict[str, str]) -> str:
        """Like write, from an open file, without holding it all in memory."""

    def read(self, location: str) -> bytes:
        """Bytes back from a location `write` returned; ObjectNotFound when there are none."""

    def read_range(self, location: str, start: int, length: int) -> bytes:
        """`length` bytes from `start` of an object (one ranged request); ObjectNotFound."""

    def open(self, location: str) -> BinaryIO:
        """A readable file of the object, read in chunks (to stream large objects); ObjectNotFound."""

    def copy(self, location: str, bucket: str) -> str:
        """Copy an object to the same path in another bucket; returns the new location."""

    def stat(self, location: str) -> StoredObject:
        """Size, content type and metadata of a stored object; ObjectNotFound when there is none."""

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        """Locations of the bucket's objects under a prefix (empty when the bucket does not exist)."""

    def delete(self, location: str) -> bool:
        """Delete one object; False when it was already gone."""

    def delete_bucket(self, bucket: str) -> int:
        """Delete every object of the bucket and then the bucket; returns how many objects went."""


class LocalDirectoryStorage:
    """A folder per bucket under LOCAL_STORAGE_DIR; each object's metadata sits beside it in a sidecar file."""

    name = "local"
    SIDECAR = ".meta.json"

    def __init__(self, root: Path):
        self.root = Path(root)

    def _resolve(self, location: str) -> Path:
        target = (self.root / location).resolve()
        if self.root.resolve() not in target.parents:
            raise StorageError(f"{location!r} escapes the storage directory")
        return target

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f".probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()

    def create_bucket(self, spec: BucketSpec) -> None:
        folder = self._resolve(spec.name + "/x").parent
        folder.mkdir(parents=True, exist_ok=True)
        (folder / self.SIDECAR).write_text(json.dumps({"labels": spec.labels}))

    def bucket_info(self, bucket: str) -> BucketInfo:
        folder = self._resolve(bucket + "/x").parent
        if not folder.is_dir():
            raise BucketNotFound(bucket)
        sidecar = folder / self.SIDECAR
        labels = json.loads(sidecar.read_text()).get("labels", {}) if sidecar.exists() else {}
        return BucketInfo(name=bucket, location="local", storage_class="STANDARD", labels=labels,
                          uniform_access=True, lifecycle_rules=[])

    def write(self, bucket: str, path: str, data: bytes, *, content_type: str, metadata: dict[str, str]) -> str:
        location = f"{bucket}/{path}"
        target = self._resolve(location)
        if not target.parent.is_relative_to(self.root.resolve() / bucket) or not (self.root / bucket).is_dir():
            raise BucketNotFound(bucket)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        temporary.write_bytes(data)
        os.replace(temporary, target)  # readers never see half a file
        target.with_name(target.name + self.SIDECAR).write_text(
            json.dumps({"content_type": content_type, "metadata": metadata}))
        return location

    def write_file(self, bucket: str, path: str, file: BinaryIO, *, content_type: str,
                   metadata: dict[str, str]) -> str:
        location = self.write(bucket, path, b"", content_type=content_type, metadata=metadata)
        target = self._resolve(location)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        with temporary.open("wb") as out:
            shutil.copyfileobj(file, out)
        os.replace(temporary, target)
        return location

    def read(self, location: str) -> bytes:
        with self.open(location) as file:
            return file.read()

    def read_range(self, location: str, start: int, length: int) -> bytes:
        with self.open(location) as file:
            file.seek(start)
            return file.read(length)

    def open(self, location: str) -> BinaryIO:
        try:
            return self._resolve(location).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(location) from None

    def copy(self, location: str, bucket: str) -> str:
        described = self.stat(location)
        _, path = split_location(location)
        with self.open(location) as file:
            return self.write_file(bucket, path, file, content_type=described.content_type,
                                   metadata=described.metadata)

    def stat(self, location: str) -> StoredObject:
        target = self._resolve(location)
        if not target.is_file():
            raise ObjectNotFound(location)
        sidecar = target.with_name(target.name + self.SIDECAR)
        described = json.loads(sidecar.read_text()) if sidecar.exists() else {}
        return StoredObject(location=location, size=target.stat().st_size,
                            content_type=described.get("content_type", ""), metadata=described.get("metadata", {}))

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        folder = self._resolve(bucket + "/x").parent
        if not folder.is_dir():
            return []
        found = []
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).as_posix()
            if path.is_file() and not path.name.endswith(self.SIDECAR) and not path.name.endswith(".part") \
                    and relative.startswith(prefix):
                found.append(f"{bucket}/{relative}")
        return found

    def delete(self, location: str) -> bool:
        target = self._resolve(location)
        target.with_name(target.name + self.SIDECAR).unlink(missing_ok=True)
        try:
            target.unlink()
        except FileNotFoundError:
            return False
        return True

    def delete_bucket(self, bucket: str) -> int:
        folder = self._resolve(bucket + "/x").parent
        count = len(self.list(bucket))
        shutil.rmtree(folder, ignore_errors=True)
        return count


class GoogleCloudStorage:
    """google-cloud-storage with short timeouts and no client-side retries: the archive tasks retry with
    their own backoff, and a worker must not sit two minutes in the library's retry loop while GCS is down."""

    name = "gcs"

    def __init__(self, client):
        self.client = client
        self.timeout = settings.GCS_TIMEOUT_SECONDS

    def _call(self, what: str, function, *args, missing: StorageError | None = None, **kwargs):
        """Call the library; its failures become ours. `missing` is raised instead on a 404."""
        try:
            return function(*args, **kwargs)
        except (http_errors.RequestException, auth_errors.GoogleAuthError, DataCorruption) as exc:
            # Network trouble, a broken download, or credentials that could not be refreshed (the metadata
            # server or the token endpoint): all pass, so all are tried again later.
            raise StorageUnavailable(f"{what}: {type(exc).__name__}") from exc
        except api_errors.NotFound as exc:
            if missing is not None:
                raise missing from exc
            raise StorageError(f"{what}: HTTP 404 {exc.message}") from exc
        except api_errors.GoogleAPICallError as exc:
            # 408 has no class of its own in google.api_core (it arrives as a plain GoogleAPICallError).
            transient = isinstance(exc, api_errors.TooManyRequests | api_errors.ServerError) or exc.code == 408
            raise (StorageUnavailable if transient else StorageError)(
                f"{what}: HTTP {exc.code} {exc.message}") from exc

    def check(self) -> None:
        # The cheapest authenticated round trip: it proves the endpoint answers and the credentials work.
        self._call("list buckets", lambda: next(iter(self.client.list_buckets(
            max_results=1, timeout=min(self.timeout, 3), retry=None)), None))

    def create_bucket(self, spec: BucketSpec) -> None:
        bucket = self.client.bucket(spec.name)
        self._configure(bucket, spec)
        try:
            created = self._call(f"create bucket {spec.name}", self.client.create_bucket, bucket,
                                 location=settings.GCS_LOCATION, timeout=self.timeout, retry=None)
        except StorageError as exc:
            if not isinstance(exc.__cause__, api_errors.Conflict):
                raise
            created = self._existing(spec.name)
        if self._needs_patch(created, spec):
            # Real GCS applies everything at creation; an emulator or a bucket made elsewhere may not have.
            self._configure(created, spec)
            self._call(f"configure bucket {spec.name}", created.patch, timeout=self.timeout, retry=None)

    def _existing(self, name: str):
        """A 409 on create: ours when we can read it (another worker made it first); a name another
        project holds cannot be read, and needs a different GCS_BUCKET_PREFIX."""
        try:
            return self._call(f"get bucket {name}", self.client.get_bucket, name, timeout=self.timeout, retry=None)
        except StorageUnavailable:
            raise
        except StorageError as exc:
            raise StorageError(f"bucket name {name} is taken by another project; set another GCS_BUCKET_PREFIX "
                               f"({exc})") from exc

    @staticmethod
    def _configure(bucket, spec: BucketSpec) -> None:
        bucket.storage_class = settings.GCS_STORAGE_CLASS
        bucket.labels = dict(spec.labels)
        bucket.iam_configuration.uniform_bucket_level_access_enabled = True
        bucket.iam_configuration.public_access_prevention = "enforced"
        bucket.clear_lifecycle_rules()
        for storage_class, age in lifecycle_rules():
            bucket.add_lifecycle_set_storage_class_rule(storage_class, age=age, matches_prefix=[TIERED_PREFIX])
        bucket.soft_delete_policy.retention_duration_seconds = settings.GCS_SOFT_DELETE_SECONDS

    @staticmethod
    def _needs_patch(bucket, spec: BucketSpec) -> bool:
        wanted = [{"action": {"type": "SetStorageClass", "storageClass": storage_class},
                   "condition": {"age": age, "matchesPrefix": [TIERED_PREFIX]}}
                  for storage_class, age in lifecycle_rules()]
        return ([dict(rule) for rule in bucket.lifecycle_rules] != wanted or bucket.labels != spec.labels
                or not bucket.iam_configuration.uniform_bucket_level_access_enabled)

    def bucket_info(self, bucket: str) -> BucketInfo:
        found = self._call(f"get bucket {bucket}", self.client.get_bucket, bucket, missing=BucketNotFound(bucket),
                           timeout=self.timeout, retry=None)
        return BucketInfo(name=found.name, location=found.location or "", storage_class=found.storage_class or "",
                          labels=dict(found.labels or {}),
                          uniform_access=bool(found.iam_configuration.uniform_bucket_level_access_enabled),
                          lifecycle_rules=[dict(rule) for rule in found.lifecycle_rules])

    def write(self, bucket: str, path: str, data: bytes, *, content_type: str, metadata: dict[str, str]) -> str:
        blob = self.client.bucket(bucket).blob(path)
        blob.metadata = metadata
        self._call(f"upload {bucket}/{path}", blob.upload_from_string, data, content_type=content_type or None,
                   missing=BucketNotFound(bucket), timeout=self.timeout, retry=None)
        return f"{bucket}/{path}"

    def write_file(self, bucket: str, path: str, file: BinaryIO, *, content_type: str,
                   metadata: dict[str, str]) -> str:

        start = file.tell()
        size = file.seek(0, os.SEEK_END) - start
        file.seek(start)
        # One request up to 8 MiB (multipart); larger files go resumable, in 8 MiB chunks.
        chunk_size = UPLOAD_CHUNK_BYTES if size > UPLOAD_CHUNK_BYTES else None
        blob = self.client.bucket(bucket).blob(path, chunk_size=chunk_size)
        blob.metadata = metadata
        self._call(f"upload {bucket}/{path}", blob.upload_from_file, file, size=size,
                   content_type=content_type or None, missing=BucketNotFound(bucket), timeout=self.timeout, retry=None)
        return f"{bucket}/{path}"

    def open(self, location: str) -> BinaryIO:
        bucket, path = split_location(location)
        blob = self._call(f"stat {location}", self.client.bucket(bucket).get_blob, path, timeout=self.timeout,
                          retry=None)
        if blob is None:
            raise ObjectNotFound(location)
        # Reads 8 MiB ranges as it goes; pinned to the generation seen above.
        return _GuardedReader(self, location, blob.open("rb", chunk_size=UPLOAD_CHUNK_BYTES, timeout=self.timeout,
                                                         retry=None))

    def copy(self, location: str, bucket: str) -> str:
        source_bucket, path = split_location(location)
        source = self.client.bucket(source_bucket)
        self._call(f"copy {location} to {bucket}", source.copy_blob, source.blob(path), self.client.bucket(bucket),
                   path, missing=ObjectNotFound(location), timeout=self.timeout, retry=None)
        return f"{bucket}/{path}"

    def read(self, location: str) -> bytes:
        bucket, path = split_location(location)
        return self._call(f"download {location}", self.client.bucket(bucket).blob(path).download_as_bytes,
                          missing=ObjectNotFound(location), timeout=self.timeout, retry=None)

    def read_range(self, location: str, start: int, length: int) -> bytes:
        bucket, path = split_location(location)
        if length <= 0:
            return b""
        # `end` is inclusive in the library, as in an HTTP Range header.
        return self._call(f"download {location} [{start}:{start + length}]",
                          self.client.bucket(bucket).blob(path).download_as_bytes, start=start,
                          end=start + length - 1, missing=ObjectNotFound(location), timeout=self.timeout, retry=None)

    def stat(self, location: str) -> StoredObject:
        bucket, path = split_location(location)
        blob = self._call(f"stat {location}", self.client.bucket(bucket).get_blob, path, timeout=self.timeout,
                          retry=None)
        if blob is None:
            raise ObjectNotFound(location)
        return StoredObject(location=location, size=blob.size or 0, content_type=blob.content_type or "",
                            metadata=dict(blob.metadata or {}))

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        try:
            return self._call(f"list {bucket}", lambda: [
                f"{bucket}/{blob.name}" for blob in self.client.list_blobs(
                    bucket, prefix=prefix or None, timeout=self.timeout, retry=None)], missing=BucketNotFound(bucket))
        except BucketNotFound:
            return []

    def delete(self, location: str) -> bool:
        bucket, path = split_location(location)
        try:
            self._call(f"delete {location}", self.client.bucket(bucket).blob(path).delete,
                       missing=ObjectNotFound(location), timeout=self.timeout, retry=None)
        except ObjectNotFound:
            return False
        return True

    def delete_bucket(self, bucket: str) -> int:

        count = 0
        for location in self.list(bucket):
            count += self.delete(location)
        with contextlib.suppress(BucketNotFound):  # gone already
            self._call(f"delete bucket {bucket}", self.client.bucket(bucket).delete, missing=BucketNotFound(bucket),
                       timeout=self.timeout, retry=None)
        return count


class _GuardedReader(io.RawIOBase):
    """A GCS object opened for reading whose later reads fail the way every other call does (an outage
    half way through is StorageUnavailable, not a library exception)."""

    def __init__(self, storage: GoogleCloudStorage, location: str, reader):
        self._storage, self._location, self._reader = storage, location, reader

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._storage._call(f"read {self._location}", self._reader.read, len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        return self._storage._call(f"read {self._location}", self._reader.read, size)

    def close(self) -> None:
        self._reader.close()
        super().close()


def gcs_client():
    options = {"api_endpoint": settings.GCS_ENDPOINT} if settings.GCS_ENDPOINT else None
    if settings.GCS_ENDPOINT or os.environ.get("STORAGE_EMULATOR_HOST"):
        # An emulator takes no credentials.
        return storage.Client(project=settings.GCS_PROJECT or "local", credentials=AnonymousCredentials(),
                              client_options=options)
    if settings.GCS_CREDENTIALS_FILE:
        return storage.Client.from_service_account_json(settings.GCS_CREDENTIALS_FILE, project=settings.GCS_PROJECT)
    return storage.Client(project=settings.GCS_PROJECT or None)


@functools.lru_cache(maxsize=4)
def _gcs(endpoint: str, emulator: str, project: str, credentials_file: str, timeout: float) -> GoogleCloudStorage:
    # One client per process and configuration: it holds the HTTP connection pool and the credentials.
    return GoogleCloudStorage(gcs_client())


def get_storage() -> ArchiveStorage:
    if settings.STORAGE_BACKEND == "local":
        return LocalDirectoryStorage(settings.LOCAL_STORAGE_DIR)
    if settings.STORAGE_BACKEND == "gcs":
        return _gcs(settings.GCS_ENDPOINT, os.environ.get("STORAGE_EMULATOR_HOST", ""), settings.GCS_PROJECT,
                    settings.GCS_CREDENTIALS_FILE, settings.GCS_TIMEOUT_SECONDS)
    raise ImproperlyConfigured(f"STORAGE_BACKEND={settings.STORAGE_BACKEND!r}: use 'local' or 'gcs'")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
