"""The local-folder blob store: atomic writes (temporary file, fsync, rename, fsync of the folder),
ranged reads as streams, never a whole file in memory. Links are HMAC-signed URLs to ``api.blobs``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from twinbase.errors import BlobNotFound
from twinbase.store.blobs import keys
from twinbase.store.blobs.base import (
    CHUNK,
    BlobInfo,
    CloudContainer,
    InvalidBlobKey,
    Perm,
    PrefixLink,
    check_key,
    write_all,
)
from twinbase.store.blobs.signer import UrlSigner

COPY_CHUNK = 8 * CHUNK


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable: without it a crash can bring back the old name."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobStore:
    def __init__(self, root: Path, signer: UrlSigner | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / ".tmp"
        self._tmp.mkdir(exist_ok=True)
        self._signer = signer

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def sweep(self, max_age_seconds: float = 24 * 3600) -> int:
        """Delete temporary files and staged blocks left by uploads that died (a killed process).

        Only old ones: another worker process may be writing a fresh one right now.
        """
        cutoff = time.time() - max_age_seconds
        removed = 0
        for folder in (self._tmp, self.root / keys.BLOCKS):
            if not folder.is_dir():
                continue
            for path in folder.rglob("*"):
                with contextlib.suppress(OSError):
                    if path.is_file() and path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
        return removed

    # ------------------------------------------------------------------------------------ writes

    def put(self, key: str, chunks: Iterable[bytes]) -> BlobInfo:
        return write_all(self.writer(key), chunks)

    def writer(self, key: str) -> LocalBlobWriter:
        return LocalBlobWriter(self, key)

    def upload_from(self, key: str, path: Path) -> BlobInfo:
        with open(path, "rb") as source:
            return self.put(key, iter(lambda: source.read(COPY_CHUNK), b""))

    def compose(self, key: str, block_keys: Sequence[str]) -> BlobInfo:
        paths = [self._existing(k) for k in block_keys]
        writer = self.writer(key)
        try:
            out = writer.file
            for path in paths:
                with open(path, "rb") as block:
                    shutil.copyfileobj(block, out, COPY_CHUNK)
                writer.size = out.tell()
        except BaseException:
            writer.abort()
            raise
        return writer.commit()

    def copy(self, src: str, dst: str) -> BlobInfo:
        # A hard link: blobs are only ever replaced by a rename, never written in place, so two
        # names of one file cannot see each other's later writes. A copy where links do not work.
        source, target = self._existing(src), self._path(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = self._tmp / f"copy-{secrets.token_hex(8)}"  # os.link refuses to overwrite
        try:
            os.link(source, staged)
        except OSError:
            with open(source, "rb") as fh:
                return self.put(dst, iter(lambda: fh.read(COPY_CHUNK), b""))
        try:
            os.replace(staged, target)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        fsync_dir(target.parent)
        return self.stat(dst)

    def promote(self, src: str, dst: str) -> BlobInfo:
        source, target = self._existing(src), self._path(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        # One rename: ``dst`` is the file ``src`` was at this instant. A PUT through the upload link
        # that commits later renames a *new* file onto ``src``; it never touches ``dst``.
        os.replace(source, target)
        fsync_dir(target.parent)
        return self.stat(dst)

    # ------------------------------------------------------------------------------------- reads

    def _existing(self, key: str) -> Path:
        path = self._path_or_missing(key)
        if not path.is_file():
            raise BlobNotFound()
        return path

    def _path_or_missing(self, key: str) -> Path:
        try:
            return self._path(key)
        except InvalidBlobKey as exc:
            raise BlobNotFound() from exc

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
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, InvalidBlobKey) as exc:
            raise BlobNotFound() from exc
        return _read_range(fh, start, end, chunk_size)

    def download_to(self, key: str, path: Path) -> BlobInfo:
        info = self.stat(key)
        shutil.copyfile(self._existing(key), path)  # the kernel copies (sendfile/copy_file_range)
        return info

    # ----------------------------------------------------------------------------------- deletes

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, InvalidBlobKey):
            self._path(key).unlink()

    def delete_prefix(self, prefix: str) -> None:
        try:
            path = self._path(prefix.rstrip("/"))
        except InvalidBlobKey:
            return
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            self.delete(prefix)

    # ------------------------------------------------------------------------------------- links

    def _signing(self) -> UrlSigner:
        if self._signer is None:
            raise RuntimeError("this LocalBlobStore was built without a URL signer")
        return self._signer

    def presign(self, key: str, perm: Perm, lifetime: int, base_url: str) -> str:
        return self._signing().url(base_url, check_key(key), lifetime, perm=perm)

    def presign_prefix(self, prefix: str, perm: Perm, lifetime: int, base_url: str) -> PrefixLink:
        prefix = prefix.rstrip("/")
        found = keys.split_bundle(prefix)
        if found is None or found[1]:
            raise ValueError(f"prefix links are for bundles only, not {prefix!r}")
        query = self._signing().prefix_query(prefix, lifetime, perm=perm)
        return PrefixLink(base=f"{base_url}/blobs/{quote(prefix)}", query=query)

    def cloud_container(self, prefix: str, lifetime: int) -> CloudContainer | None:
        return None  # no blob service: twinbase serves the container (api.containers)


class LocalBlobWriter:
    """Bytes go to a temporary file; ``commit`` makes them the blob, ``abort`` forgets them."""

    def __init__(self, store: LocalBlobStore, key: str) -> None:
        self.store = store
        self.key = key
        self.path = store._path(key)
        fd, self._tmp_name = tempfile.mkstemp(dir=store._tmp, prefix="put-")
        self._out: BinaryIO | None = os.fdopen(fd, "wb")
        self.size = 0

    @property
    def file(self) -> BinaryIO:
        assert self._out is not None, "writer already finished"
        return self._out

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.size += len(data)

    def commit(self) -> BlobInfo:
        out = self.file
        self._out = None
        try:
            out.flush()
            os.fsync(out.fileno())  # the bytes are on disk before the name points at them
            out.close()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp_name, self.path)
            fsync_dir(self.path.parent)  # ... and the name survives a crash
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
