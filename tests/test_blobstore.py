"""The blob stores behind the ``BlobStore`` seam, in-process: the local folder, and Azure Blob Storage
on Azurite (``store`` runs each test on both). URL signing and its key file, prefix (bundle) links."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from azure.storage.blob import BlobProperties, ContentSettings

from conftest import Azurite, Server, running_server
from twinbase.errors import BlobNotFound
from twinbase.store.blobs import (
    BlobStore,
    InvalidBlobKey,
    LocalBlobStore,
    SigningKeyError,
    UrlSigner,
    check_key,
    keys,
    open_reader,
    sha256_of,
)
from twinbase.store.blobs.azure import AzureBlobStore


def azure_store(azurite: Azurite) -> AzureBlobStore:
    return AzureBlobStore.from_connection_string(azurite.connection_string, f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["local", "azure"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs", UrlSigner.from_file(tmp_path / "k"))
    else:
        yield azure_store(request.getfixturevalue("azurite"))


def read(store: BlobStore, key: str) -> bytes:
    return b"".join(store.open_range(key))


def test_seam_put_stat_ranges_compose_promote_download(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(9 * 1024 * 1024 + 17)  # more than one Azure block
    info = store.put("a/b/file.bin", (data[i : i + 65536] for i in range(0, len(data), 65536)))
    assert info.size == len(data) and store.stat("a/b/file.bin").etag == info.etag
    assert read(store, "a/b/file.bin") == data
    assert b"".join(store.open_range("a/b/file.bin", 10, 20)) == data[10:21]
    assert b"".join(store.open_range("a/b/file.bin", len(data) - 5)) == data[-5:]
    assert sha256_of(store, "a/b/file.bin") == hashlib.sha256(data).hexdigest()
    # compose: the parts in the order given, once each; the parts stay
    store.put("parts/1", [b"abc"])
    store.put("parts/2", [b"def"])
    assert store.compose("whole", ["parts/2", "parts/1", "parts/2"]).size == 9
    assert read(store, "whole") == b"defabcdef" and read(store, "parts/1") == b"abc"
    with pytest.raises(BlobNotFound):
        store.compose("whole2", ["parts/1", "parts/missing"])
    # download_to: a local file with the same bytes; upload_from: back again
    target = tmp_path / "copy.bin"
    assert store.download_to("a/b/file.bin", target).size == len(data)
    assert target.read_bytes() == data
    assert store.upload_from("c/from-file.bin", target).size == len(data)
    # a file of several blocks (Azure stages them in parallel), with a short last one
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2 * 8 * 1024 * 1024 + 12345))
    assert store.upload_from("c/big.bin", big).size == big.stat().st_size
    assert read(store, "c/big.bin") == big.read_bytes()
    # promote: moved, the source is gone (as far as stat and reads go)
    store.put("uploads/x/y.cs", [b"staged"])
    assert store.promote("uploads/x/y.cs", "x/y.cs").size == 6
    assert read(store, "x/y.cs") == b"staged"
    with pytest.raises(BlobNotFound):
        store.stat("uploads/x/y.cs")
    with pytest.raises(BlobNotFound):
        store.promote("uploads/x/none.cs", "x/none.cs")
    # copy: the same bytes under a second key; replacing or deleting the source leaves the copy
    assert store.copy("x/y.cs", "copies/y.cs").size == 6
    store.put("x/y.cs", [b"replaced"])
    assert read(store, "copies/y.cs") == b"staged" and read(store, "x/y.cs") == b"replaced"
    store.delete("x/y.cs")
    assert read(store, "copies/y.cs") == b"staged"
    with pytest.raises(BlobNotFound):
        store.copy("x/none.cs", "copies/none.cs")


def test_put_is_atomic_on_failure(store: BlobStore) -> None:
    store.put("k.bin", [b"old"])

    def broken() -> Iterator[bytes]:
        yield b"new-part" * 2_000_000  # past one Azure block: staged, never committed
        raise OSError("disk unplugged")

    with pytest.raises(OSError):
        store.put("k.bin", broken())
    assert read(store, "k.bin") == b"old"
    if isinstance(store, LocalBlobStore):
        assert not list((store.root / ".tmp").iterdir())


def test_missing_and_delete(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        store.stat("nope")
    with pytest.raises(BlobNotFound):
        b"".join(store.open_range("nope"))
    store.put("d/x", [b"1"])
    store.put("d/y", [b"2"])
    store.put("dz", [b"3"])
    store.delete("d/x")
    store.delete("d/x")  # idempotent
    with pytest.raises(BlobNotFound):
        store.stat("d/x")
    store.delete_prefix("d")
    with pytest.raises(BlobNotFound):
        store.stat("d/y")
    assert read(store, "dz") == b"3"  # a prefix is a folder, not a string prefix


def test_local_put_stat_read_ranges(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    data = os.urandom(3 * 1024 * 1024 + 17)
    info = store.put("a/b/file.bin", (data[i : i + 65536] for i in range(0, len(data), 65536)))
    assert info.size == len(data)
    assert b"".join(store.open_range("a/b/file.bin")) == data
    assert b"".join(store.open_range("a/b/file.bin", 10, 20)) == data[10:21]
    assert b"".join(store.open_range("a/b/file.bin", len(data) - 5)) == data[-5:]
    assert store.stat("a/b/file.bin").etag == info.etag


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


# ------------------------------------------------------------------------------- signing key file


def test_signing_key_is_created_whole_and_durably(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[bool] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    path = tmp_path / "keys" / "url-signing.key"
    UrlSigner.from_file(path)
    assert len(path.read_bytes()) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert synced == [False, True]  # the file, then its folder
    assert os.listdir(path.parent) == ["url-signing.key"]  # no temporary file left


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "url-signing.key"
    signatures: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        signatures.append(UrlSigner.from_file(path).signature("x", 5))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(signatures) == 8 and len(set(signatures)) == 1
    assert os.listdir(path.parent) == ["url-signing.key"]


@pytest.mark.parametrize("content", [b"", b"short"])
def test_a_short_signing_key_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "url-signing.key"
    path.write_bytes(content)
    with pytest.raises(SigningKeyError, match="at least 32"):
        UrlSigner.from_file(path)
    assert path.read_bytes() == content  # never silently replaced: links signed with it would break


def test_serve_refuses_an_empty_signing_key(tmp_path_factory: pytest.TempPathFactory) -> None:
    ctx = running_server("sqlite", tmp_path_factory)
    key_file = ctx.tmp / "data" / "keys" / "url-signing.key"
    key_file.parent.mkdir(parents=True)
    key_file.write_bytes(b"")
    with pytest.raises(RuntimeError, match=r"URL-signing key .* has 0 bytes; at least 32"):
        ctx.__enter__()
    ctx.__exit__(None, None, None)


def test_local_commit_fsyncs_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalBlobStore(tmp_path)
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    store.put("a/b/c.bin", [b"data"])
    assert synced == ["file", "dir"]
    synced.clear()
    store.promote("a/b/c.bin", "a/d.bin")
    assert synced == ["dir"]


# ------------------------------------------------------------------------------------ bundle links


def _bundle_files(store: BlobStore) -> tuple[str, dict[str, bytes]]:
    bundle = keys.bundle(uuid.uuid4().hex)
    files = {"tileset.json": b'{"root": {}}', "tiles/0/0.b3dm": os.urandom(3000), "tiles/1.b3dm": b"one"}
    for rel, data in files.items():
        store.put(f"{bundle}/{rel}", [data])
    return bundle, files


def _check_prefix_link(store: BlobStore, base_url: str) -> None:
    bundle, files = _bundle_files(store)
    link = store.presign_prefix(bundle, "r", 600, base_url)
    with httpx.Client() as c:
        for rel, data in files.items():
            resp = c.get(link.url(rel))
            assert resp.status_code == 200 and resp.content == data, (rel, resp.text)
        # The same query is worth nothing outside the bundle, nor for writing.
        other, _ = _bundle_files(store)
        outside = f"{link.base.rsplit('/', 1)[0]}/{other.rsplit('/', 1)[1]}/tileset.json?{link.query}"
        assert c.get(outside).status_code in (403, 404)
        put = c.put(link.url("tileset.json"), content=b"x", headers={"x-ms-blob-type": "BlockBlob"})
        assert put.status_code in (403, 404)
        assert c.get(link.url("tileset.json")).content == files["tileset.json"]
    with pytest.raises(ValueError):
        store.presign_prefix("imodels", "r", 600, base_url)
    store.delete_prefix(bundle)
    with pytest.raises(BlobNotFound):
        store.stat(f"{bundle}/tileset.json")


def test_prefix_link_local(server: Server) -> None:
    # In-process writes into the running server's blob folder; the server serves the link.
    signer = UrlSigner.from_file(server.data_dir / "keys" / "url-signing.key")
    _check_prefix_link(LocalBlobStore(server.data_dir / "blobs", signer), server.base_url)


def test_prefix_link_azure(azurite: Azurite) -> None:
    _check_prefix_link(azure_store(azurite), "")


# ------------------------------------------------------------------------ Azure: tiles stored gzip


def _stored(store: AzureBlobStore, key: str) -> tuple[bytes, BlobProperties]:
    """The blob as the blob service keeps it: stored bytes (never inflated) and its properties."""
    blob = store.service.get_blob_client(*store._locate(key))
    return blob.download_blob(decompress=False).readall(), blob.get_blob_properties()


def _check_reads(store: AzureBlobStore, key: str, data: bytes, tmp_path: Path) -> None:
    """Every read of the seam answers the decoded bytes; ``stat`` the decoded size."""
    assert store.stat(key).size == len(data)
    assert read(store, key) == data
    assert b"".join(store.open_range(key, 10, 20)) == data[10:21]
    assert b"".join(store.open_range(key, len(data) - 5)) == data[-5:]
    assert b"".join(store.open_range(key, len(data) - 5, len(data) + 100)) == data[-5:]
    assert b"".join(store.open_range(key, len(data) + 10)) == b""
    assert sha256_of(store, key) == hashlib.sha256(data).hexdigest()
    with open_reader(store, key) as stream:
        assert stream.read(7) == data[:7] and stream.read() == data[7:]
    target = tmp_path / "downloaded"
    assert store.download_to(key, target).size == len(data)
    assert target.read_bytes() == data


def test_azure_bundle_tiles_and_tilesets_are_stored_gzip(azurite: Azurite, tmp_path: Path) -> None:
    store = azure_store(azurite)
    bundle = keys.bundle(uuid.uuid4().hex)
    tileset = json.dumps(
        {"root": {"children": [{"content": {"uri": f"{i}.glb"}} for i in range(2000)]}}
    ).encode()
    # Compressible like a meshopt tile, and more than one 8 MB block and one 8 MB download chunk
    # once stored (half of it random), so the staged blocks and the SDK's chunked GET both run.
    tile = b"".join(os.urandom(64) + bytes(64) for _ in range(160_000))
    files = {"tileset.json": tileset, "tiles/0-1.glb": tile, "empty.glb": b""}
    for rel, data in files.items():
        info = store.put(f"{bundle}/{rel}", (data[i : i + 100_000] for i in range(0, len(data), 100_000)))
        assert info.size == len(data), rel
    for rel, data in files.items():
        key = f"{bundle}/{rel}"
        stored, props = _stored(store, key)
        settings = props.content_settings
        assert settings.content_encoding == "gzip", rel
        assert settings.content_type == keys.content_type(key) and "immutable" in (
            settings.cache_control or ""
        )
        assert gzip.decompress(stored) == data
        assert props.metadata == {"decodedsize": str(len(data))}
        if data:
            assert props.size == len(stored) < len(data), rel
            _check_reads(store, key, data, tmp_path)
        else:
            assert store.stat(key).size == 0 and read(store, key) == b""
    assert len(_stored(store, f"{bundle}/tiles/0-1.glb")[0]) > 8 * 1024 * 1024

    # Through the bundle's SAS: sent as stored (Content-Encoding: gzip), decoded by the client.
    link = store.presign_prefix(bundle, "r", 600, "")
    with httpx.Client(timeout=60) as c:
        for rel, data in files.items():
            resp = c.get(link.url(rel), headers={"Accept-Encoding": "gzip"})
            assert resp.status_code == 200 and resp.headers["content-encoding"] == "gzip", rel
            assert resp.content == data and resp.num_bytes_downloaded == len(
                _stored(store, f"{bundle}/{rel}")[0]
            )

    # Everything else is stored as it is: an archive read with ranges, a file outside any bundle.
    plain = {f"{bundle}/tileset.3tz": tileset, "itwin-exports/x.json": tileset, f"{bundle}/a.png": tile[:999]}
    for key, data in plain.items():
        store.put(key, [data])
        stored, props = _stored(store, key)
        assert props.content_settings.content_encoding is None and stored == data, key
        assert not props.metadata and store.stat(key).size == len(data)
        assert b"".join(store.open_range(key, 3, 9)) == data[3:10]

    # Other ways in: a local file, a composition.
    source = tmp_path / "tileset.json"
    source.write_bytes(tileset)
    assert store.upload_from(f"{bundle}/uploaded.json", source).size == len(tileset)
    assert _stored(store, f"{bundle}/uploaded.json")[1].content_settings.content_encoding == "gzip"
    assert read(store, f"{bundle}/uploaded.json") == tileset
    store.put("parts/1", [b"abc"])
    assert (
        store.compose(f"{bundle}/composed.json", ["parts/1", f"{bundle}/tileset.json"]).size
        == len(tileset) + 3
    )
    assert _stored(store, f"{bundle}/composed.json")[1].content_settings.content_encoding == "gzip"
    assert read(store, f"{bundle}/composed.json") == b"abc" + tileset
    assert store.compose("whole.json", [f"{bundle}/tileset.json", "parts/1"]).size == len(tileset) + 3
    stored, props = _stored(store, "whole.json")
    assert props.content_settings.content_encoding is None and stored == tileset + b"abc"


def test_azure_copies_keep_the_encoding(azurite: Azurite, tmp_path: Path) -> None:
    store = azure_store(azurite)
    old, new = keys.bundle(uuid.uuid4().hex), keys.bundle(uuid.uuid4().hex)
    tile = b"glTF" + bytes(50_000) + os.urandom(5_000)
    store.put(f"{old}/1-0.glb", [tile])
    # Server-side, into another bundle (another container), under another name: still encoded, with
    # its decoded size, and read decoded.
    assert store.copy(f"{old}/1-0.glb", f"{new}/2-7.glb").size == len(tile)
    stored, props = _stored(store, f"{new}/2-7.glb")
    assert props.content_settings.content_encoding == "gzip" and props.metadata == {
        "decodedsize": str(len(tile))
    }
    assert props.content_settings.content_type == "model/gltf-binary"
    assert stored == _stored(store, f"{old}/1-0.glb")[0]  # the same stored bytes: nothing re-encoded
    _check_reads(store, f"{new}/2-7.glb", tile, tmp_path)
    # Out of a bundle: decoded on the way, stored plain.
    assert store.copy(f"{old}/1-0.glb", "kept/tile.glb").size == len(tile)
    stored, props = _stored(store, "kept/tile.glb")
    assert stored == tile and props.content_settings.content_encoding is None

    # A tile stored plain under a bundle name (written before tiles were encoded): read as it is, and
    # encoded when copied into a bundle.
    legacy = f"{old}/legacy.glb"
    store.service.get_blob_client(*store._locate(legacy)).upload_blob(tile)
    _check_reads(store, legacy, tile, tmp_path)
    assert store.copy(legacy, f"{new}/legacy.glb").size == len(tile)
    stored, props = _stored(store, f"{new}/legacy.glb")
    assert props.content_settings.content_encoding == "gzip" and gzip.decompress(stored) == tile
    _check_reads(store, f"{new}/legacy.glb", tile, tmp_path)
    with pytest.raises(BlobNotFound):
        store.copy(f"{old}/none.glb", f"{new}/none.glb")

    # Encoded by another writer, without the decoded size: stat counts it.
    foreign = f"{old}/foreign.json"
    store.service.get_blob_client(*store._locate(foreign)).upload_blob(
        gzip.compress(tile), content_settings=ContentSettings(content_encoding="gzip")
    )
    assert store.stat(foreign).size == len(tile) and read(store, foreign) == tile
    assert store.copy(foreign, f"{new}/foreign.json").size == len(tile)
