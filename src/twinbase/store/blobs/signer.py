"""Signed URLs of the local blob store: ``/blobs/{key}?sp=&se=&sig=``.

An HMAC-SHA256 over the key (or a bundle prefix), the expiry and the permission, with a secret kept
in the data dir, so clients fetch and upload without an Authorization header, as they do with the
platform's storage links.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

MIN_SECRET_BYTES = 32


class SigningKeyError(RuntimeError):
    """The URL-signing key file cannot be used (too short, unreadable): the server must not start."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_secret_file(path: Path, size: int = MIN_SECRET_BYTES) -> None:
    """Write a fresh random secret at ``path`` unless one is there: whole, durable, first writer wins.

    A unique temporary name (several worker processes may start at once), fsync of the file, then
    ``link`` (fails if the name exists, unlike rename) and fsync of the folder, so a crash can leave
    neither an empty key file nor a second key that half the processes use.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(size))
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp_name, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)


class UrlSigner:
    """HMAC-SHA256 over a key (or prefix), the expiry and the permission."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise SigningKeyError(
                f"The URL-signing key has {len(secret)} bytes; at least {MIN_SECRET_BYTES} are needed."
            )
        self._secret = secret

    @classmethod
    def from_file(cls, path: Path, *, create: bool = True) -> UrlSigner:
        """The key in ``path``, made there first when missing and ``create`` (else missing is an error)."""
        if create:
            create_secret_file(path)
        try:
            secret = path.read_bytes()
        except OSError as exc:
            raise SigningKeyError(f"The URL-signing key {path} cannot be read: {exc.strerror}.") from exc
        if len(secret) < MIN_SECRET_BYTES:
            raise SigningKeyError(
                f"The URL-signing key {path} has {len(secret)} bytes; at least {MIN_SECRET_BYTES} are "
                "needed. Delete the file to let twinbase create a new one (links signed before stop working)."
            )
        return cls(secret)

    def signature(self, key: str, expires: int, perm: str = "r", scope: str = "b") -> str:
        # ``scope`` b: exactly this key; d: every key under this prefix. Part of the MAC, so a
        # signature for the blob "a/b" is never one for the folder "a/b".
        message = f"{key}\n{expires}\n{perm}" if scope == "b" else f"{key}/\n{expires}\n{perm}\nd"
        mac = hmac.new(self._secret, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def query(self, key: str, lifetime: int, now: float | None = None, perm: str = "r") -> str:
        """``perm`` is ``r`` (GET) or ``w`` (PUT: single upload, blocks, block list)."""
        # A random nonce makes every issued link distinct, as the clients' tests expect.
        expires = int((now or time.time()) + lifetime)
        return f"sp={perm}&se={expires}&sig={self.signature(key, expires, perm)}&sn={secrets.token_hex(4)}"

    def prefix_query(self, prefix: str, lifetime: int, perm: str = "r") -> str:
        """Valid for every key under ``prefix``: ``sr=d`` and ``sdd`` (its depth in segments)."""
        expires = int(time.time() + lifetime)
        depth = len(prefix.split("/"))
        sig = self.signature(prefix, expires, perm, scope="d")
        return f"sp={perm}&se={expires}&sr=d&sdd={depth}&sig={sig}"

    def url(self, base_url: str, key: str, lifetime: int, perm: str = "r") -> str:
        return f"{base_url}/blobs/{quote(key)}?{self.query(key, lifetime, perm=perm)}"

    def verify(
        self,
        key: str,
        expires: str | None,
        sig: str | None,
        now: float | None = None,
        perm: str = "r",
        depth: str | None = None,
    ) -> bool:
        """``depth`` set (a prefix link): the signature covers the first ``depth`` segments of ``key``."""
        # ASCII only: compare_digest refuses non-ASCII text, and a garbage signature is just wrong.
        if not expires or not sig or not sig.isascii() or not expires.isascii() or not expires.isdigit():
            return False
        if int(expires) < (now or time.time()):
            return False
        if depth is None:
            return hmac.compare_digest(self.signature(key, int(expires), perm), sig)
        segments = key.split("/")
        if not depth.isascii() or not depth.isdigit() or not 0 < int(depth) < len(segments):
            return False
        prefix = "/".join(segments[: int(depth)])
        return hmac.compare_digest(self.signature(prefix, int(expires), perm, scope="d"), sig)

    def verify_prefix(self, prefix: str, expires: int, sig: str | None, now: float | None = None) -> bool:
        """A read signature over every key under ``prefix`` (``prefix_query``'s), unexpired."""
        if not sig or not sig.isascii() or expires < (now or time.time()):
            return False
        return hmac.compare_digest(self.signature(prefix, expires, "r", scope="d"), sig)
