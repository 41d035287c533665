"""The local blob store and URL signing, in-process (no server needed)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from twinbase.errors import BlobNotFound
from twinbase.store.blobs import InvalidBlobKey, LocalBlobStore, UrlSigner, check_key


def test_put_stat_read_ranges(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    data = os.urandom(3 * 1024 * 1024 + 17)
    info = store.put("a/b/file.bin", (data[i : i + 65536] for i in range(0, len(data), 65536)))
    assert info.size == len(data)
    assert b"".join(store.open_range("a/b/file.bin")) == data
    assert b"".join(store.open_range("a/b/file.bin", 10, 20)) == data[10:21]
    assert b"".join(store.open_range("a/b/file.bin", len(data) - 5)) == data[-5:]
    assert store.stat("a/b/file.bin").etag == info.etag


def test_put_is_atomic_on_failure(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.put("k.bin", [b"old"])

    def broken() -> object:
        yield b"new-part"
        raise OSError("disk unplugged")

    with pytest.raises(OSError):
        store.put("k.bin", broken())  # type: ignore[arg-type]
    assert b"".join(store.open_range("k.bin")) == b"old"
    assert not list((tmp_path / ".tmp").iterdir())


def test_concurrent_puts_never_mix(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    payloads = [bytes([n]) * 200_000 for n in range(8)]

    def put(p: bytes) -> None:
        store.put("same.bin", (p[i : i + 4096] for i in range(0, len(p), 4096)))

    threads = [threading.Thread(target=put, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b"".join(store.open_range("same.bin")) in payloads


def test_missing_and_delete(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(BlobNotFound):
        store.stat("nope")
    with pytest.raises(BlobNotFound):
        store.open_range("nope")
    store.put("d/x", [b"1"])
    store.put("d/y", [b"2"])
    store.delete("d/x")
    store.delete("d/x")  # idempotent
    with pytest.raises(BlobNotFound):
        store.stat("d/x")
    store.delete_prefix("d")
    with pytest.raises(BlobNotFound):
        store.stat("d/y")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../b", "a//b", "", ".hidden", "a/ b"])
def test_keys_cannot_escape(tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidBlobKey):
        check_key(key)
    store = LocalBlobStore(tmp_path)
    with pytest.raises((InvalidBlobKey, BlobNotFound)):
        store.open_range(key)


def test_signed_urls(tmp_path: Path) -> None:
    signer = UrlSigner.from_file(tmp_path / "k")
    assert UrlSigner.from_file(tmp_path / "k").signature("x", 5) == signer.signature("x", 5)
    query = dict(p.split("=", 1) for p in signer.query("x/y", 60).split("&"))
    assert signer.verify("x/y", query["se"], query["sig"])
    assert not signer.verify("x/z", query["se"], query["sig"])
    assert not signer.verify("x/y", str(int(query["se"]) + 1), query["sig"])
    assert not signer.verify("x/y", query["se"], query["sig"], now=int(query["se"]) + 1)
    assert not signer.verify("x/y", None, None)
    assert signer.url("http://h", "a", 60) != signer.url("http://h", "a", 60)  # every link is fresh


def test_sweep_removes_only_old_leftovers(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    old = tmp_path / ".tmp" / "put-old"
    old.write_bytes(b"x")
    os.utime(old, (1, 1))
    fresh = tmp_path / ".tmp" / "put-fresh"
    fresh.write_bytes(b"y")
    staged = tmp_path / "staging" / "abc" / "def"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"z")
    os.utime(staged, (1, 1))
    store.put("kept", [b"k"])
    assert store.sweep() == 2
    assert not old.exists() and not staged.exists() and fresh.exists()
    assert b"".join(store.open_range("kept")) == b"k"
