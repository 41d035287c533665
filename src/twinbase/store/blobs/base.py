"""The ``BlobStore`` seam: what the engine and the pipelines may ask of any place that keeps file bytes.

Two implementations: ``local.LocalBlobStore`` (a folder; links are HMAC-signed URLs served by
``api.blobs``) and ``azure.AzureBlobStore`` (Azure Blob Storage; links are SAS URLs, so file bytes
go between the clients and the blob service without passing through Python). Every verb is
synchronous: callers on the event loop run them in a worker thread.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

CHUNK = 1024 * 1024
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*(/[A-Za-z0-9][A-Za-z0-9._\-]*)*$")

Perm = Literal["r", "w"]
"""``r``: GET (ranged); ``w``: upload (single PUT, blocks, block list). Never both."""


class InvalidBlobKey(ValueError):
    """A blob key must be relative path segments of letters, digits, '.', '_' and '-'."""


def check_key(key: str) -> str:
    if not _KEY_RE.match(key) or ".." in key.split("/"):
        raise InvalidBlobKey(key)
    return key


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    etag: str
    modified: float


@dataclass(frozen=True)
class PrefixLink:
    """One signed query valid for every file under a folder: ``<base>/<relative path>?<query>``.

    A 3D Tiles tileset is a root file naming many others by relative path; the client resolves
    those against the root's URL and keeps the query, so one link serves the whole tree.
    """

    base: str
    query: str

    def url(self, relative_path: str) -> str:
        return f"{self.base}/{relative_path}?{self.query}"


@dataclass(frozen=True)
class CloudContainer:
    """A bundle as the blob service itself serves it to CloudSqlite readers:
    ``https://<account>.blob.core.windows.net/<container>/<file>?<sas>`` (read-only ``sas``)."""

    account: str
    container: str
    sas: str


class BlobWriter(Protocol):
    """An incremental, atomic write: nothing is visible under the key until ``commit``."""

    size: int

    def write(self, data: bytes) -> None: ...

    def commit(self) -> BlobInfo: ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    """Where file bytes live. Keys come from ``store.blobs.keys`` (the one module that spells them)."""

    def put(self, key: str, chunks: Iterable[bytes]) -> BlobInfo:
        """Store the stream under ``key`` atomically; readers see the old bytes or the new, never a mix."""
        ...

    def writer(self, key: str) -> BlobWriter:
        """An incremental, atomic writer for ``key`` (for bodies that arrive chunk by chunk)."""
        ...

    def upload_from(self, key: str, path: Path) -> BlobInfo:
        """Store a local file under ``key`` atomically (the backend's fastest path for whole files)."""
        ...

    def stat(self, key: str) -> BlobInfo:
        """Size and ETag of the blob; raises ``BlobNotFound``."""
        ...

    def open_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = CHUNK
    ) -> Iterator[bytes]:
        """Stream bytes ``start..end`` (inclusive, like HTTP ranges); raises ``BlobNotFound``."""
        ...

    def download_to(self, key: str, path: Path) -> BlobInfo:
        """Write the blob into a local file (SQLite opens only local files); raises ``BlobNotFound``."""
        ...

    def compose(self, key: str, block_keys: Sequence[str]) -> BlobInfo:
        """Make ``key`` the concatenation of the blobs ``block_keys`` (in order), copying each byte once.

        Raises ``BlobNotFound`` when a block is missing; the blocks themselves stay.
        """
        ...

    def copy(self, src: str, dst: str) -> BlobInfo:
        """Make ``dst`` a copy of ``src`` without the bytes passing through this process where the
        backend allows it (Azure: a server-side copy). Raises ``BlobNotFound`` when ``src`` is missing."""
        ...

    def promote(self, src: str, dst: str) -> BlobInfo:
        """Move ``src`` to ``dst``. Afterwards no write through a link of ``src`` can change ``dst``.

        ``dst`` appears whole or not at all. Raises ``BlobNotFound`` when ``src`` is missing.
        """
        ...

    def delete(self, key: str) -> None:
        """Remove the blob; missing blobs are ignored."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every blob under a folder-like prefix."""
        ...

    def presign(self, key: str, perm: Perm, lifetime: int, base_url: str) -> str:
        """A URL that reads (``r``) or uploads (``w``) this one key without an Authorization header.

        ``base_url`` is twinbase's own public base; backends with their own endpoint ignore it.
        """
        ...

    def presign_prefix(self, prefix: str, perm: Perm, lifetime: int, base_url: str) -> PrefixLink:
        """One link for every file under ``prefix``, which must be a bundle (``keys.bundle``)."""
        ...

    def cloud_container(self, prefix: str, lifetime: int) -> CloudContainer | None:
        """Where the blob service serves the bundle ``prefix`` to CloudSqlite readers by itself; None
        when it does not (the local folder: twinbase serves it, ``api.containers``)."""
        ...


def sha256_of(store: BlobStore, key: str) -> str:
    """Hex SHA-256 of the blob's bytes, read as a stream."""
    digest = hashlib.sha256()
    for chunk in store.open_range(key, chunk_size=4 * CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


class _ChunkStream(io.RawIOBase):
    """A readable raw stream over a blob's chunk iterator; ``tap`` sees every chunk once, in order."""

    def __init__(self, chunks: Iterator[bytes], tap: Callable[[bytes], object] | None) -> None:
        self._chunks = chunks
        self._tap = tap
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            if self._tap is not None:
                self._tap(chunk)
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def open_reader(
    store: BlobStore, key: str, *, tap: Callable[[bytes], object] | None = None
) -> io.BufferedReader:
    """The blob as a buffered binary stream (``read(n)`` returns ``n`` bytes until the end), read
    lazily from ``open_range``; ``tap`` (e.g. a digest's ``update``) sees every byte once."""
    return io.BufferedReader(_ChunkStream(store.open_range(key, chunk_size=CHUNK), tap), CHUNK)


def write_all(writer: BlobWriter, chunks: Iterable[bytes]) -> BlobInfo:
    """``BlobStore.put`` for every backend: stream ``chunks`` into ``writer``, commit, or abort on
    any failure so that nothing half-written becomes the blob."""
    try:
        for chunk in chunks:
            writer.write(chunk)
    except BaseException:
        writer.abort()
        raise
    return writer.commit()
