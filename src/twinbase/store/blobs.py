"""The blob store: a narrow interface, a local-folder implementation, and signed URLs.

``BlobStore`` has four verbs (put a stream, open a byte range as a stream, delete, stat). The local
store writes atomically (temporary file in the same folder, fsync, rename) and never holds a whole
file in memory. Signed URLs carry an HMAC over the blob key and the expiry, so clients fetch them
without an Authorization header, as they do with the platform's storage links.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import quote

from twinbase.errors import BlobNotFound

CHUNK = 1024 * 1024
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*(/[A-Za-z0-9][A-Za-z0-9._\-]*)*$")


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


class BlobStore(Protocol):
    """Where file bytes live. Keys are relative paths such as ``itwins/<id>/image-large.png``."""

    def put(self, key: str, chunks: Iterable[bytes]) -> BlobInfo:
        """Store the stream under ``key`` atomically; readers see the old bytes or the new, never a mix."""
        ...

    def writer(self, key: str) -> BlobWriter:
        """An incremental, atomic writer for ``key`` (for request bodies that arrive chunk by chunk)."""
        ...

    def stat(self, key: str) -> BlobInfo:
        """Size and ETag of the blob; raises ``BlobNotFound``."""
        ...

    def open_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = CHUNK
    ) -> Iterator[bytes]:
        """Stream bytes ``start..end`` (inclusive, like HTTP ranges); raises ``BlobNotFound``."""
        ...

    def delete(self, key: str) -> None:
        """Remove the blob; missing blobs are ignored."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every blob under a folder-like prefix."""
        ...


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / ".tmp"
        self._tmp.mkdir(exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def sweep(self, max_age_seconds: float = 24 * 3600) -> int:
        """Delete temporary files and staged blocks left by uploads that died (a killed process).

        Only old ones: another worker process may be writing a fresh one right now.
        """
        cutoff = time.time() - max_age_seconds
        removed = 0
        for folder in (self._tmp, self.root / "staging"):
            if not folder.is_dir():
                continue
            for path in folder.rglob("*"):
                with contextlib.suppress(OSError):
                    if path.is_file() and path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
        return removed

    def put(self, key: str, chunks: Iterable[bytes]) -> BlobInfo:
        writer = self.writer(key)
        try:
            for chunk in chunks:
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        return writer.commit()

    def writer(self, key: str) -> LocalBlobWriter:
        return LocalBlobWriter(self, key)

    def put_file(self, key: str, source: BinaryIO) -> BlobInfo:
        return self.put(key, iter(lambda: source.read(CHUNK), b""))

    def stat(self, key: str) -> BlobInfo:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError, InvalidBlobKey) as exc:
            raise BlobNotFound() from exc
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        return BlobInfo(key=key, size=st.st_size, etag=etag, modified=st.st_mtime)

    def open_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = CHUNK
    ) -> Iterator[bytes]:
        try:
            fh = open(self._path(key), "rb")  # noqa: SIM115 - closed by the generator
        except (FileNotFoundError, IsADirectoryError, InvalidBlobKey) as exc:
            raise BlobNotFound() from exc
        return _read_range(fh, start, end, chunk_size)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError, InvalidBlobKey):
            self._path(key).unlink()

    def delete_prefix(self, prefix: str) -> None:
        import shutil

        path = self._path(prefix.rstrip("/"))
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            self.delete(prefix)


class BlobWriter(Protocol):
    """Bytes go to a temporary file; ``commit`` makes them the blob, ``abort`` forgets them."""

    size: int

    def write(self, data: bytes) -> None: ...

    def commit(self) -> BlobInfo: ...

    def abort(self) -> None: ...


class LocalBlobWriter:
    def __init__(self, store: LocalBlobStore, key: str) -> None:
        self.store = store
        self.key = key
        self.path = store._path(key)
        fd, self._tmp_name = tempfile.mkstemp(dir=store._tmp, prefix="put-")
        self._out: BinaryIO | None = os.fdopen(fd, "wb")
        self.size = 0

    def write(self, data: bytes) -> None:
        assert self._out is not None, "writer already finished"
        self._out.write(data)
        self.size += len(data)

    def commit(self) -> BlobInfo:
        assert self._out is not None, "writer already finished"
        out, self._out = self._out, None
        try:
            out.flush()
            os.fsync(out.fileno())  # the bytes are on disk before the name points at them
            out.close()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp_name, self.path)
        except BaseException:
            out.close()
            with contextlib.suppress(OSError):
                os.unlink(self._tmp_name)
            raise
        return self.store.stat(self.key)

    def abort(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        with contextlib.suppress(OSError):
            os.unlink(self._tmp_name)

    def __del__(self) -> None:  # a writer dropped without commit must not leave a temp file
        self.abort()


def _read_range(fh: BinaryIO, start: int, end: int | None, chunk_size: int = CHUNK) -> Iterator[bytes]:
    with fh:
        fh.seek(start)
        remaining = None if end is None else end - start + 1
        while remaining is None or remaining > 0:
            chunk = fh.read(chunk_size if remaining is None else min(chunk_size, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


class UrlSigner:
    """HMAC-SHA256 over ``key`` and the expiry time, with a secret kept in the data dir."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @classmethod
    def from_file(cls, path: Path) -> UrlSigner:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(secrets.token_bytes(32))
            os.chmod(tmp, 0o600)
            with contextlib.suppress(FileExistsError):  # first writer wins when several workers start
                os.link(tmp, path)
            tmp.unlink(missing_ok=True)
        return cls(path.read_bytes())

    def signature(self, key: str, expires: int, perm: str = "r") -> str:
        mac = hmac.new(self._secret, f"{key}\n{expires}\n{perm}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def query(self, key: str, lifetime: int, now: float | None = None, perm: str = "r") -> str:
        """``perm`` is ``r`` (GET) or ``w`` (PUT: single upload, blocks, block list)."""
        # A random nonce makes every issued link distinct, as the clients' tests expect.
        expires = int((now or time.time()) + lifetime)
        return f"sp={perm}&se={expires}&sig={self.signature(key, expires, perm)}&sn={secrets.token_hex(4)}"

    def url(self, base_url: str, key: str, lifetime: int, perm: str = "r") -> str:
        return f"{base_url}/blobs/{quote(key)}?{self.query(key, lifetime, perm=perm)}"

    def verify(
        self, key: str, expires: str | None, sig: str | None, now: float | None = None, perm: str = "r"
    ) -> bool:
        if not expires or not sig or not expires.isdigit():
            return False
        if int(expires) < (now or time.time()):
            return False
        # compare_digest refuses non-ASCII str: compare bytes (a garbage signature is just wrong).
        return hmac.compare_digest(self.signature(key, int(expires), perm).encode(), sig.encode())
