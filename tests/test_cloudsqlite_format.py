"""The CloudSqlite container format (src/twinbase/bim/cloudsqlite.py), against its documented layout and
against the iTwin.js native library itself.

Pure tests: golden manifest bytes written out by hand from the layout in the reference
(cloudsqlite-checkpoints.md §2.2, never produced by the composer under test), every truncation and
defect of a manifest, block splitting and naming.

The native test: Azurite (the session fixture) holds two containers of the same real .bim, one written
by twinbase (``write_container``, blobs uploaded as they are), one by the native library's own
``CloudSqlite.uploadDb`` (compat/cloudsqlite-roundtrip.mjs); twinbase's folder is also served as plain
files by a stdlib HTTP server with a made-up token. The native library downloads from all three
(``CloudSqlite.transferDb("download")``, what V2CheckpointManager.downloadCheckpoint runs) and twinbase
parses the native manifest. The direct CloudSqlite API takes the http Azurite endpoint as ``baseUri``
(storageType "azure", a container SAS as the token); only core-backend's checkpoint code forces https.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import http.server
import json
import os
import random
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from conftest import ROOT, SHARED_DATA, Azurite
from support.azurite import AZURITE_ACCOUNT, AZURITE_KEY
from support.node import run_node
from twinbase.bim.cloudsqlite import (
    BLOCK_SIZE,
    ID_BYTES,
    MANIFEST_NAME,
    ContainerFormatError,
    Manifest,
    ManifestDatabase,
    block_count,
    block_id,
    block_name,
    compose_manifest,
    container_size,
    parse_block_name,
    parse_manifest,
    split_file,
    write_container,
)

COMPAT = ROOT / "compat"
SOURCE = SHARED_DATA / "bim" / "proj.ibim"  # 1.2 MB: one 4 MiB block
OTHER = SHARED_DATA / "bim" / "mirukuru.ibim"
SCRIPT_TIMEOUT = 120


def u32(value: int) -> str:
    return f"{value:08x}"


def name_field(name: bytes) -> bytes:
    return name + bytes(128 - len(name))


A, B, C, D, E = (bytes([n]) * 16 for n in (0x11, 0x22, 0x33, 0x44, 0x55))

# Two databases (ids 1 and 3, the largest ever assigned 5), one delete-list entry, 64 KiB blocks.
GOLDEN = Manifest(
    block_size=0x10000,
    databases=(
        ManifestDatabase(id=1, name="a", block_ids=(A, B)),
        ManifestDatabase(id=3, name="bé", block_ids=(C,), version=7),
    ),
    max_db_id=5,
    deletes=((D, 0x0102030405060708),),
)
# header 24 + 2 db headers of 152 = 328; delete list 328..352;
# "a" list 352 (0x160)..384; "bé" 384 (0x180)..400
GOLDEN_BYTES = (
    bytes.fromhex(u32(4) + u32(0x10000) + u32(2) + u32(1) + u32(16) + u32(5))
    + bytes.fromhex(u32(1) + u32(0) + u32(1) + u32(0x160) + u32(2) + u32(0))
    + name_field(b"a")
    + bytes.fromhex(u32(3) + u32(0) + u32(7) + u32(0x180) + u32(1) + u32(0))
    + name_field(b"b\xc3\xa9")
    + D
    + bytes.fromhex("0102030405060708")
    + A
    + B
    + C
)

# The native writer's manifest for proj.ibim (reference §2.2): one 4 MiB block, list at 0xb0.
NATIVE_ID = bytes.fromhex("b6e30478522ba9f7b280c45843c45e52")
NATIVE_EXAMPLE = (
    bytes.fromhex(u32(4) + u32(0x400000) + u32(1) + u32(0) + u32(16) + u32(1))
    + bytes.fromhex(u32(1) + u32(0) + u32(1) + u32(0xB0) + u32(1) + u32(0))
    + name_field(b"proj")
    + NATIVE_ID
)

# A child database (id 2, parent 1): only blocks 1 and 2 differ from the parent, listed as (index, id).
WITH_PARENT = Manifest(
    block_size=0x10000,
    databases=(
        ManifestDatabase(id=1, name="base", block_ids=(A, B)),
        ManifestDatabase(id=2, name="child", block_ids=(A, C, E), version=2, parent_id=1),
    ),
    max_db_id=2,
)
WITH_PARENT_BYTES = (
    bytes.fromhex(u32(4) + u32(0x10000) + u32(2) + u32(0) + u32(16) + u32(2))
    + bytes.fromhex(u32(1) + u32(0) + u32(1) + u32(0x148) + u32(2) + u32(0))
    + name_field(b"base")
    + bytes.fromhex(u32(2) + u32(1) + u32(2) + u32(0x168) + u32(3) + u32(2))
    + name_field(b"child")
    + A
    + B
    + bytes.fromhex(u32(1))
    + C
    + bytes.fromhex(u32(2))
    + E
)


# --- golden bytes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("manifest", "data"),
    [(GOLDEN, GOLDEN_BYTES), (WITH_PARENT, WITH_PARENT_BYTES)],
    ids=["two-databases-delete-list", "parent-delta"],
)
def test_golden_manifest_both_ways(manifest: Manifest, data: bytes) -> None:
    assert compose_manifest(manifest) == data
    parsed = parse_manifest(data)
    assert parsed == manifest
    assert compose_manifest(parsed) == data


def test_the_documented_native_example_round_trips() -> None:
    assert len(NATIVE_EXAMPLE) == 192
    parsed = parse_manifest(NATIVE_EXAMPLE)
    assert parsed == Manifest(
        block_size=BLOCK_SIZE,
        databases=(ManifestDatabase(id=1, name="proj", block_ids=(NATIVE_ID,)),),
        id_bytes=ID_BYTES,
        max_db_id=1,
    )
    assert compose_manifest(parsed) == NATIVE_EXAMPLE
    assert compose_manifest(Manifest(BLOCK_SIZE, parsed.databases)) == NATIVE_EXAMPLE  # max_db_id computed
    assert parsed.database("proj") is parsed.databases[0]
    assert parsed.database("Proj") is None  # names are case-sensitive
    assert container_size(parsed) == BLOCK_SIZE + 192


def test_empty_container_is_the_24_byte_header() -> None:
    empty = bytes.fromhex(u32(4) + u32(BLOCK_SIZE) + u32(0) + u32(0) + u32(16) + u32(0))
    assert compose_manifest(Manifest(BLOCK_SIZE, ())) == empty
    assert parse_manifest(empty) == Manifest(BLOCK_SIZE, ())


def test_deleted_locally_flag_is_the_top_bit_of_the_block_count() -> None:
    data = bytearray(NATIVE_EXAMPLE)
    data[24 + 16] |= 0x80
    parsed = parse_manifest(bytes(data))
    assert parsed.databases[0].deleted_locally
    assert parsed.databases[0].block_ids == (NATIVE_ID,)
    assert compose_manifest(parsed) == bytes(data)


def test_other_block_id_sizes() -> None:
    ids = (bytes(range(24)), bytes(range(1, 25)))
    manifest = Manifest(0x10000, (ManifestDatabase(1, "db", ids),), id_bytes=24)
    data = compose_manifest(manifest)
    assert data[16:20] == bytes.fromhex(u32(24))
    assert len(data) == 24 + 152 + 48
    assert parse_manifest(data) == Manifest(0x10000, manifest.databases, id_bytes=24, max_db_id=1)


# --- defects -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data", [GOLDEN_BYTES, WITH_PARENT_BYTES, NATIVE_EXAMPLE], ids=["golden", "parent", "native"]
)
def test_every_truncated_prefix_is_a_format_error(data: bytes) -> None:
    for n in range(len(data)):
        with pytest.raises(ContainerFormatError):
            parse_manifest(data[:n])


def patched(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + value.to_bytes(4, "big") + data[offset + 4 :]


DB2 = 24 + 152  # the second database header of GOLDEN


def renamed(field: bytes) -> bytes:
    """GOLDEN with another 128-byte name field for its first database."""
    return GOLDEN_BYTES[: 24 + 24] + field + GOLDEN_BYTES[24 + 152 :]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (patched(GOLDEN_BYTES, 0, 3), "bad manifest version at offset 0: 3"),
        (patched(GOLDEN_BYTES, 0, 5), "bad manifest version"),
        (patched(GOLDEN_BYTES, 4, 0), "block size"),
        (patched(GOLDEN_BYTES, 16, 11), "block-id size at offset 16 is 11"),
        (patched(GOLDEN_BYTES, 16, 33), "block-id size at offset 16 is 33"),
        (patched(GOLDEN_BYTES, 8, 3), "manifest truncated"),
        (patched(GOLDEN_BYTES, 12, 9), "manifest truncated"),
        (patched(GOLDEN_BYTES, DB2 + 12, 0x181), "ends at offset 401"),  # list past the end
        (patched(GOLDEN_BYTES, DB2 + 12, 0xFFFFFFF0), "ends at offset"),
        (patched(GOLDEN_BYTES, DB2 + 12, 24), "points into the headers"),
        (patched(GOLDEN_BYTES, DB2 + 16, 2), "ends at offset 416"),  # more blocks than bytes
        (patched(GOLDEN_BYTES, DB2, 1), "id 1 is not above the previous id 1"),
        (patched(GOLDEN_BYTES, 24, 0), "id 0 is not above"),
        (patched(GOLDEN_BYTES, 20, 2), "largest database id 2 at offset 20 is below id 3"),
        (patched(GOLDEN_BYTES, DB2 + 4, 2), "parent id 2 is not an earlier database"),
        (patched(GOLDEN_BYTES, DB2 + 20, 1), "delta entries but no parent"),
        (GOLDEN_BYTES + b"\0", "1 trailing bytes after the last structure (offset 400)"),
        (renamed(b"x" * 128), "no terminating NUL"),
        (renamed(name_field(b"b\xc3\xa9")), "duplicate database name"),
        (renamed(name_field(b"\xff")), "not UTF-8"),
        (renamed(name_field(b"")), "empty database name"),
        (patched(WITH_PARENT_BYTES, len(WITH_PARENT_BYTES) - 20, 3), "names block 3 of 3"),
        (patched(WITH_PARENT_BYTES, len(WITH_PARENT_BYTES) - 20, 1), "block 2 is neither in the parent"),
    ],
)  # fmt: skip
def test_defects_are_format_errors_that_say_what_and_where(data: bytes, message: str) -> None:
    with pytest.raises(ContainerFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_manifest(data)


def test_damaged_manifests_fail_only_with_format_errors() -> None:
    rng = random.Random(18)
    originals = (GOLDEN_BYTES, WITH_PARENT_BYTES, NATIVE_EXAMPLE)
    for _ in range(1000):
        data = bytearray(rng.choice(originals))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            data[at] = rng.choice((0, 1, 0x80, 0xFF, rng.randrange(256)))
        try:
            parsed = parse_manifest(bytes(data))
        except ContainerFormatError:
            continue
        # What parses composes again (not always to the same bytes: the reader ignores what follows a
        # name's NUL, and a list may sit at another valid offset).
        assert parse_manifest(compose_manifest(parsed)) == parsed


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (Manifest(BLOCK_SIZE, (ManifestDatabase(2, "a", ()), ManifestDatabase(1, "b", ()))), "ascending"),
        (Manifest(BLOCK_SIZE, (ManifestDatabase(1, "a", ()), ManifestDatabase(1, "b", ()))), "ascending"),
        (Manifest(BLOCK_SIZE, (ManifestDatabase(0, "a", ()),)), "database id"),
        (Manifest(BLOCK_SIZE, (ManifestDatabase(1, "a", ()), ManifestDatabase(2, "a", ()))), "duplicate"),
        (Manifest(BLOCK_SIZE, (ManifestDatabase(1, "x" * 128, ()),)), "128 UTF-8 bytes; at most 127"),
        (Manifest(BLOCK_SIZE, (ManifestDatabase(1, "é" * 64, ()),)), "128 UTF-8 bytes"),
        (Manifest(BLOCK_SIZE, (ManifestDatabase(1, "", ()),)), "empty"),
        (Manifest(BLOCK_SIZE, (ManifestDatabase(1, "a\0b", ()),)), "NUL"),
        (Manifest(BLOCK_SIZE, (ManifestDatabase(1, "a", (b"short",)),)), "block 0 of 'a' is 5 bytes"),
        (Manifest(BLOCK_SIZE, (ManifestDatabase(1, "a", (), parent_id=2),)), "not an earlier database"),
        (Manifest(BLOCK_SIZE, (ManifestDatabase(3, "a", ()),), max_db_id=2), "below database id 3"),
        (Manifest(BLOCK_SIZE, (), id_bytes=11), "block-id size"),
        (Manifest(0, ()), "block size"),
        (Manifest(BLOCK_SIZE, (), deletes=((A, -1),)), "timestamp"),
    ],
)  # fmt: skip
def test_compose_refuses_what_the_native_reader_would_misread(manifest: Manifest, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        compose_manifest(manifest)
    assert not isinstance(raised.value, ContainerFormatError)  # a caller's mistake, not a bad manifest


def test_a_127_byte_name_is_the_longest() -> None:
    name = "é" * 63 + "x"  # 127 UTF-8 bytes
    data = compose_manifest(Manifest(BLOCK_SIZE, (ManifestDatabase(1, name, (A,)),)))
    assert data[24 + 24 : 24 + 152] == name.encode() + b"\0"
    assert parse_manifest(data).databases[0].name == name


# --- blocks -------------------------------------------------------------------------------------------


def test_block_names() -> None:
    assert block_name(NATIVE_ID) == "B6E30478522BA9F7B280C45843C45E52.bcv"
    assert parse_block_name("B6E30478522BA9F7B280C45843C45E52.bcv") == NATIVE_ID
    hexed = "B6E30478522BA9F7B280C45843C45E52"
    for other in ("manifest.bcv", "bcv_kv.bcv", f"{hexed.lower()}.bcv", f"{hexed[:-2]}.bcv", hexed,
                  f"{hexed}.bcv.tmp", f"X{hexed[1:]}.bcv"):  # fmt: skip
        assert parse_block_name(other) is None, other
    long_id = bytes(range(24))
    assert parse_block_name(block_name(long_id), 24) == long_id


def test_block_ids_are_content_addressed() -> None:
    one, two = bytes(4096), bytes(4095) + b"\1"
    assert block_id(one) == block_id(bytes(4096))
    assert block_id(one) != block_id(two)
    assert len(block_id(one)) == ID_BYTES
    assert len(block_id(one, 24)) == 24
    assert block_id(one) != hashlib.blake2b(one, digest_size=16).digest()  # keyed: an id space of its own
    with pytest.raises(ValueError):
        block_id(one, 8)


def test_split_file(tmp_path: Path) -> None:
    size = 4096
    rng = random.Random(1)
    first, second = rng.randbytes(size), rng.randbytes(size)
    data = first + second + first + b"tail"  # blocks 0 and 2 equal; a 4-byte last block
    path = tmp_path / "file.db"
    path.write_bytes(data)
    blocks = list(split_file(path, size))
    assert len(blocks) == 4 == block_count(len(data), size)
    assert b"".join(block for _, block in blocks) == data + bytes(4 * size - len(data))
    assert all(len(block) == size for _, block in blocks)
    assert blocks[3][1] == b"tail" + bytes(size - 4)
    ids = [bid for bid, _ in blocks]
    assert ids[0] == ids[2]
    assert len({ids[0], ids[1], ids[3]}) == 3
    assert all(bid == block_id(block) for bid, block in blocks)

    exact = tmp_path / "exact.db"
    exact.write_bytes(first + second)
    assert [block for _, block in split_file(exact, size)] == [first, second]  # no extra, empty block

    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    assert list(split_file(empty, size)) == []  # as the native uploader: nothing (it does not add the db)
    assert block_count(0) == 0


def test_write_container(tmp_path: Path) -> None:
    size = 4096
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    a.write_bytes(b"A" * size + b"B" * 10)
    b.write_bytes(b"A" * size + b"C" * 10)
    folder = tmp_path / "container"
    first = write_container(folder, [("a", a)], block_size=size)
    second = write_container(folder, [("b", b)], block_size=size, existing=first)
    assert [(db.id, db.name) for db in second.databases] == [(1, "a"), (2, "b")]
    assert second.max_db_id == 2
    assert parse_manifest((folder / MANIFEST_NAME).read_bytes()) == second
    # The shared first block is stored once.
    blobs = sorted(p.name for p in folder.iterdir())
    assert blobs == sorted([MANIFEST_NAME, *(block_name(bid) for bid in second.block_ids())])
    assert len(blobs) == 1 + 3
    for db, path in ((second.databases[0], a), (second.databases[1], b)):
        joined = b"".join((folder / block_name(bid)).read_bytes() for bid in db.block_ids)
        assert joined[: path.stat().st_size] == path.read_bytes()
    with pytest.raises(ValueError, match="block"):
        write_container(folder, [("c", a)], block_size=2 * size, existing=second)


# --- against the native library ----------------------------------------------------------------------


def container_sas(container: str, *, write: bool) -> str:
    permission = ContainerSasPermissions(
        read=True, add=write, create=write, write=write, delete=write, list=write
    )
    expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    return generate_container_sas(AZURITE_ACCOUNT, container, account_key=AZURITE_KEY,
                                  permission=permission, expiry=expiry)  # fmt: skip


def sqlite_content(path: Path) -> tuple[str, str]:
    """integrity_check and a hash of the full dump, the file opened read-only and immutable."""
    with sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True) as db:
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        digest = hashlib.sha256()
        for line in db.iterdump():
            digest.update(line.encode("utf-8", "surrogatepass") + b"\n")
    db.close()
    return check, digest.hexdigest()


class StaticContainers(http.server.SimpleHTTPRequestHandler):
    """Plain GETs of the files under a folder, the query ignored; every request is recorded."""

    seen: list[tuple[str, str, dict[str, str]]]

    def translate_path(self, path: str) -> str:
        return super().translate_path(urlsplit(path).path)

    def log_message(self, format: str, *args: Any) -> None:
        self.seen.append((self.command, self.path, dict(self.headers)))


@contextlib.contextmanager
def static_server(folder: Path) -> Iterator[tuple[str, list[tuple[str, str, dict[str, str]]]]]:
    seen: list[tuple[str, str, dict[str, str]]] = []
    handler = type("Handler", (StaticContainers,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_native_library_reads_twinbase_containers_and_twinbase_reads_native_ones(
    azurite: Azurite, tmp_path: Path
) -> None:
    from test_compat_imodels import ensure_native_modules
    from test_compat_itwins import _tool

    node = _tool("node")
    ensure_native_modules()
    for path in (SOURCE, OTHER):
        assert path.exists(), f"test data missing: {path} (see ../shared/data/README.md)"
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    long_name = "n" * 127

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    suffix = uuid.uuid4().hex[:12]
    native_name, ours_name = f"csq-native-{suffix}", f"csq-twinbase-{suffix}"
    native, ours = service.create_container(native_name), service.create_container(ours_name)

    # twinbase's container: the same file twice (one stored block), an empty one, a 127-byte name.
    folder = tmp_path / "twinbase-container"
    written = write_container(
        folder, [("proj", SOURCE), ("proj-copy", SOURCE), ("empty", empty), (long_name, OTHER)]
    )
    assert written.databases[0].block_ids == written.databases[1].block_ids
    for blob in sorted(folder.iterdir(), key=lambda p: p.name == MANIFEST_NAME):  # the manifest last
        ours.upload_blob(blob.name, blob.read_bytes())

    # The same folder served as plain files under a path prefix (what a twinbase route would do), with a
    # token that means nothing to Azure: the reader only GETs <baseUri>/<container>/<file>?<token>.
    served = tmp_path / "served"
    (served / "pre" / "fix").mkdir(parents=True)
    shutil.copytree(folder, served / "pre" / "fix" / "served-container")
    token = "tb=opaque&se=2030-01-01T00%3A00%3A00Z"

    out = tmp_path / "downloads"
    base_uri = f"http://127.0.0.1:{azurite.port}/{AZURITE_ACCOUNT}"
    downloads = {
        "native-proj": (native_name, "proj"),
        "ours-proj": (ours_name, "proj"),
        "ours-proj-copy": (ours_name, "proj-copy"),
        "ours-empty": (ours_name, "empty"),
        "ours-long": (ours_name, long_name),
    }
    sas = {
        native_name: container_sas(native_name, write=True),
        ours_name: container_sas(ours_name, write=False),
    }
    with static_server(served) as (static_uri, seen):
        spec = {
            "baseUri": base_uri,
            "work": str(tmp_path / "node"),
            "uploads": [{"container": native_name, "dbName": "proj", "file": str(SOURCE),
                         "accessToken": sas[native_name]}],
            "downloads": [
                *({"container": c, "dbName": db, "file": str(out / f"{key}.bim"), "accessToken": sas[c]}
                  for key, (c, db) in downloads.items()),
                {"container": "served-container", "dbName": "proj", "file": str(out / "served-proj.bim"),
                 "baseUri": f"{static_uri}/pre/fix", "accessToken": f"?{token}"},
            ],
        }  # fmt: skip
        env = {**os.environ, "CLOUDSQLITE_ROUNDTRIP": json.dumps(spec), "NO_PROXY": "127.0.0.1,localhost"}
        proc = run_node(
            node, COMPAT / "cloudsqlite-roundtrip.mjs", cwd=COMPAT, env=env, timeout=SCRIPT_TIMEOUT
        )
    output = f"{proc.stdout}\n{proc.stderr}".strip()
    assert proc.returncode == 0, f"compat/cloudsqlite-roundtrip.mjs exited {proc.returncode}:\n{output}"
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [u["databases"] for u in answer["uploads"]] == [["proj"]]

    # Every download is the source, padded to whole blocks, and SQLite reads it as the source.
    source_bytes = SOURCE.read_bytes()
    source_content = sqlite_content(SOURCE)
    assert source_content[0] == "ok"
    padded = BLOCK_SIZE * block_count(len(source_bytes))
    for key in ("native-proj", "ours-proj", "ours-proj-copy", "served-proj"):
        got = (out / f"{key}.bim").read_bytes()
        assert len(got) == padded, key
        assert got[: len(source_bytes)] == source_bytes, key
        assert not any(got[len(source_bytes) :]), key
    for key in ("native-proj", "ours-proj"):
        assert sqlite_content(out / f"{key}.bim") == source_content, key
    other = (out / "ours-long.bim").read_bytes()
    assert other[: OTHER.stat().st_size] == OTHER.read_bytes()
    assert (out / "ours-empty.bim").read_bytes() == b""  # a database of no blocks: an empty file

    # What the reader asked the plain server: GETs only (a leading "?" of the token dropped), the
    # manifest, then each block once; no Range, no Authorization.
    prefix = "/pre/fix/served-container/"
    proj_blocks = written.databases[0].block_ids
    assert sorted(path for _, path, _ in seen) == sorted(
        f"{prefix}{name}?{token}" for name in (MANIFEST_NAME, *(block_name(b) for b in proj_blocks))
    )
    assert {method for method, _, _ in seen} == {"GET"}
    for _, _, headers in seen:
        assert not {"Range", "Authorization"} & set(headers), headers
        assert headers.get("x-ms-version"), headers

    # The native container, as twinbase reads it.
    blobs = {b.name: b.size for b in native.list_blobs()}
    manifest_bytes = native.download_blob(MANIFEST_NAME).readall()
    manifest = parse_manifest(manifest_bytes)
    assert manifest_bytes[:4] == bytes.fromhex(u32(4))
    assert manifest.block_size == BLOCK_SIZE
    assert manifest.id_bytes == ID_BYTES
    assert manifest.max_db_id == 1
    assert manifest.deletes == ()
    assert [(db.id, db.name, db.version, db.parent_id) for db in manifest.databases] == [(1, "proj", 1, 0)]
    (db,) = manifest.databases
    assert len(db.block_ids) == block_count(len(source_bytes))
    assert len(manifest_bytes) == 24 + 152 + 16 * len(db.block_ids)
    assert compose_manifest(manifest) == manifest_bytes  # twinbase's composer writes the native layout
    block_blobs = {parse_block_name(name) for name in blobs} - {None}
    assert block_blobs == set(db.block_ids)
    assert set(blobs) == {MANIFEST_NAME, "bcv_kv.bcv", *(block_name(b) for b in db.block_ids)}
    # Same bytes in the native blocks as in twinbase's (only the ids differ: the native ones are random).
    ours_blocks = [block for _, block in split_file(SOURCE)]
    native_blocks = [native.download_blob(block_name(b)).readall() for b in db.block_ids]
    assert native_blocks == ours_blocks
    assert db.block_ids != written.databases[0].block_ids
