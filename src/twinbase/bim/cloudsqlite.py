"""The CloudSqlite container format (reference cloudsqlite-checkpoints.md §2): blocks and ``manifest.bcv``.

A container is a flat set of blobs: ``manifest.bcv``, the only index, and one blob per block, named by
its block id in upper-case hex plus ``.bcv``. Every database in the container is a list of block ids; byte
``k * block_size`` of a database is byte 0 of its block ``k``. The iTwin.js native library (imodeljs-native,
the CloudSqlite ``bcv`` code) reads such a container over the Azure blob protocol: ``GET manifest.bcv``,
then one ``GET <ID>.bcv`` per block. This module is the file side only: it turns files into blocks and a
manifest and parses manifests back; serving them is the caller's business.

Manifest version 4, all integers unsigned big-endian:

* header, 24 bytes: version (4), block size, database count, delete-list count, block-id size (12..32),
  largest database id ever assigned;
* per database, 152 bytes: id, parent id (0 = none), version, offset of its block list, block count (top
  bit: "deleted locally", a cache state), entry count (parent deltas only), 128-byte NUL-padded UTF-8 name;
* the delete list: per entry a block id and a u64 timestamp (blocks waiting for garbage collection);
* each database's block list at its offset: without a parent, ``count`` ids tightly packed; with one,
  ``entries`` pairs (u32 block index, id) listing only the blocks that differ from the parent.

Block ids: the native writer uses random 16-byte ids (or MD5 + random with 24+ bytes). twinbase derives
them from the content (keyed BLAKE2b): the native cache indexes cached blocks by id across containers, so
an id must never name two different byte strings, and content ids keep that true while letting identical
blocks (e.g. unchanged 4 MiB stretches of successive checkpoints) share one blob.

Strictness: the native parser checks only the version and trusts every offset. ``parse_manifest`` checks
everything it reads (bounds, id order, names, parent references, delta indexes) and also rejects bytes
after the last structure: the native composer never writes any, so trailing bytes mean a damaged or
concatenated blob, not a newer format (which would carry a new version number).
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

BLOCK_SIZE = 4 * 1024 * 1024  # the native default; one backend cache cannot mix block sizes (§2.6)
ID_BYTES = 16
MANIFEST_VERSION = 4
MANIFEST_NAME = "manifest.bcv"
MIN_ID_BYTES = 12
MAX_ID_BYTES = 32
NAME_FIELD_BYTES = 128
MAX_NAME_BYTES = NAME_FIELD_BYTES - 1  # the native reader needs the terminating NUL inside the field
HEADER_BYTES = 24
DB_HEADER_BYTES = 24 + NAME_FIELD_BYTES
DELETED_LOCALLY = 0x8000_0000
U32_MAX = 0xFFFF_FFFF

_HEADER = struct.Struct(">6I")
_DB_HEADER = struct.Struct(f">6I{NAME_FIELD_BYTES}s")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
# A fixed key puts twinbase's ids in a space of their own: the same bytes always get the same id on every
# host and in every release (a changed key would orphan every stored blob), and no other hash of the block
# (the native MD5 prefix, a plain BLAKE2b elsewhere) can coincide with it.
_BLOCK_ID_KEY = b"twinbase/cloudsqlite/block-id/v1"
_BLOCK_NAME = re.compile(r"([0-9A-F]+)\.bcv")


class ContainerFormatError(ValueError):
    """A manifest that does not parse; the message says what is wrong and at which byte offset."""


def block_id(data: bytes, id_bytes: int = ID_BYTES) -> bytes:
    """The content-addressed id of a (padded) block: identical bytes share it, different bytes never do."""
    _check_id_bytes(id_bytes)
    return hashlib.blake2b(data, digest_size=id_bytes, key=_BLOCK_ID_KEY).digest()


def block_name(block_id: bytes) -> str:
    """The blob name of a block, as the native library spells it: upper-case hex + ``.bcv``."""
    return block_id.hex().upper() + ".bcv"


def parse_block_name(name: str, id_bytes: int = ID_BYTES) -> bytes | None:
    """The id in a block's blob name; None for any other name (manifest.bcv, bcv_kv.bcv, other sizes).

    Only the native spelling (upper-case) is accepted, so one block has exactly one name."""
    match = _BLOCK_NAME.fullmatch(name)
    if match is None or len(match.group(1)) != 2 * id_bytes:
        return None
    return bytes.fromhex(match.group(1))


def split_file(path: Path, block_size: int = BLOCK_SIZE) -> Iterator[tuple[bytes, bytes]]:
    """``(id, block)`` for each ``block_size`` slice of the file, the last one zero-padded.

    Padded like the native writer: the reader writes each block at ``k * block_size``, so a downloaded
    copy is ``count * block_size`` bytes long and SQLite ignores the zero tail. One block is held at a
    time. An empty file has no blocks (the native uploader does not even record an empty database)."""
    if block_size <= 0:
        raise ValueError(f"block size must be positive, not {block_size}")
    with open(path, "rb") as f:
        while True:
            block = f.read(block_size)
            if not block:
                return
            if len(block) < block_size:
                # read() returns short only at the end of a regular file; pad what is left.
                block += bytes(block_size - len(block))
            yield block_id(block), block


def block_count(size: int, block_size: int = BLOCK_SIZE) -> int:
    """How many blocks a file of ``size`` bytes takes."""
    return -(-size // block_size)


@dataclass(frozen=True)
class ManifestDatabase:
    """One database of a container: its id (1 or more, unique), name and block ids in file order.

    ``parent_id`` names a database (of lower id) this one was copied from; the manifest then stores only
    the blocks that differ. ``deleted_locally`` is the native cache's flag for a database removed
    locally but not yet uploaded; cloud manifests written by twinbase never set it."""

    id: int
    name: str
    block_ids: tuple[bytes, ...]
    version: int = 1
    parent_id: int = 0
    deleted_locally: bool = False


@dataclass(frozen=True)
class Manifest:
    """A whole ``manifest.bcv``. ``max_db_id`` 0 means "the largest database id" when composing.

    ``deletes`` is the delete list: (block id, timestamp) of blocks no longer used, kept for a while so
    that readers holding an older manifest still find them."""

    block_size: int
    databases: tuple[ManifestDatabase, ...]
    id_bytes: int = ID_BYTES
    max_db_id: int = 0
    deletes: tuple[tuple[bytes, int], ...] = ()

    def database(self, name: str) -> ManifestDatabase | None:
        """The database of that name (names are case-sensitive, as in the native library)."""
        return next((db for db in self.databases if db.name == name), None)

    def block_ids(self) -> frozenset[bytes]:
        """Every block id some database uses: the blobs a container must hold (not the delete list)."""
        return frozenset(b for db in self.databases for b in db.block_ids)


def container_size(manifest: Manifest) -> int:
    """Bytes of the blobs a reader can fetch: the distinct blocks plus the manifest itself."""
    return len(manifest.block_ids()) * manifest.block_size + len(compose_manifest(manifest))


# --- composing -----------------------------------------------------------------------------------------


def compose_manifest(manifest: Manifest) -> bytes:
    """The ``manifest.bcv`` bytes, laid out as the native composer does (headers, delete list, lists).

    Raises ValueError for anything the native reader would misread: ids out of order, duplicate or
    over-long names, block ids of the wrong size, values that do not fit their fields."""
    nid = manifest.id_bytes
    _check_id_bytes(nid)
    _check_u32("block size", manifest.block_size, minimum=1)
    dbs = manifest.databases
    by_id: dict[int, ManifestDatabase] = {}
    names: set[str] = set()
    previous = 0
    for db in dbs:
        _check_u32(f"database id of {db.name!r}", db.id, minimum=1)
        if db.id <= previous:
            raise ValueError(f"database ids must be strictly ascending: {db.id} after {previous}")
        previous = db.id
        if db.name in names:
            raise ValueError(f"duplicate database name {db.name!r}")
        names.add(db.name)
        _encode_name(db.name)
        _check_u32(f"version of {db.name!r}", db.version)
        if len(db.block_ids) >= DELETED_LOCALLY:
            raise ValueError(f"{db.name!r} has too many blocks ({len(db.block_ids)})")
        for index, bid in enumerate(db.block_ids):
            if len(bid) != nid:
                raise ValueError(f"block {index} of {db.name!r} is {len(bid)} bytes, not {nid}")
        if db.parent_id and db.parent_id not in by_id:
            raise ValueError(f"parent {db.parent_id} of {db.name!r} is not an earlier database")
        by_id[db.id] = db
    max_db_id = manifest.max_db_id or previous
    _check_u32("largest database id", max_db_id)
    if max_db_id < previous:
        raise ValueError(f"largest database id {max_db_id} is below database id {previous}")

    out = bytearray(_HEADER.pack(MANIFEST_VERSION, manifest.block_size, len(dbs), len(manifest.deletes),
                                 nid, max_db_id))  # fmt: skip
    out += bytes(DB_HEADER_BYTES * len(dbs))  # filled below, once the list offsets are known
    for bid, timestamp in manifest.deletes:
        if len(bid) != nid:
            raise ValueError(f"delete-list block id is {len(bid)} bytes, not {nid}")
        if not 0 <= timestamp <= 0xFFFF_FFFF_FFFF_FFFF:
            raise ValueError(f"delete-list timestamp {timestamp} does not fit in 64 bits")
        out += bid + _U64.pack(timestamp)
    for i, db in enumerate(dbs):
        offset = len(out)
        entries = 0
        if db.parent_id:
            # A child lists only what differs from its parent, as the native reader expects of any
            # database with a parent id: (index, id) pairs.
            parent = by_id[db.parent_id].block_ids
            for index, bid in enumerate(db.block_ids):
                if index >= len(parent) or parent[index] != bid:
                    out += _U32.pack(index) + bid
                    entries += 1
        else:
            out += b"".join(db.block_ids)
        _check_u32("manifest size", len(out))
        count = len(db.block_ids) | (DELETED_LOCALLY if db.deleted_locally else 0)
        _DB_HEADER.pack_into(out, HEADER_BYTES + i * DB_HEADER_BYTES, db.id, db.parent_id, db.version,
                             offset, count, entries, _encode_name(db.name))  # fmt: skip
    return bytes(out)


def _encode_name(name: str) -> bytes:
    raw = name.encode("utf-8")
    if not raw:
        raise ValueError("a database name cannot be empty")
    if b"\0" in raw:
        raise ValueError(f"database name {name!r} contains NUL")
    if len(raw) > MAX_NAME_BYTES:
        raise ValueError(f"database name {name!r} is {len(raw)} UTF-8 bytes; at most {MAX_NAME_BYTES}")
    return raw


def _check_id_bytes(id_bytes: int) -> None:
    if not MIN_ID_BYTES <= id_bytes <= MAX_ID_BYTES:
        raise ValueError(f"block-id size must be {MIN_ID_BYTES}..{MAX_ID_BYTES} bytes, not {id_bytes}")


def _check_u32(what: str, value: int, minimum: int = 0) -> None:
    if not minimum <= value <= U32_MAX:
        raise ValueError(f"{what} {value} is outside {minimum}..{U32_MAX}")


# --- parsing -------------------------------------------------------------------------------------------


def parse_manifest(data: bytes) -> Manifest:
    """Parse and validate a ``manifest.bcv``; any defect raises ContainerFormatError."""
    size = len(data)
    if size < HEADER_BYTES:
        raise ContainerFormatError(f"manifest truncated: {size} bytes, the header alone is {HEADER_BYTES}")
    version, block_size, n_db, n_delete, nid, max_db_id = _HEADER.unpack_from(data, 0)
    if version != MANIFEST_VERSION:
        raise ContainerFormatError(
            f"bad manifest version at offset 0: {version}, expected {MANIFEST_VERSION}"
        )
    if block_size == 0:
        raise ContainerFormatError("block size at offset 4 is 0")
    if not MIN_ID_BYTES <= nid <= MAX_ID_BYTES:
        raise ContainerFormatError(
            f"block-id size at offset 16 is {nid}, expected {MIN_ID_BYTES}..{MAX_ID_BYTES}"
        )
    delete_at = HEADER_BYTES + DB_HEADER_BYTES * n_db
    lists_at = delete_at + (nid + 8) * n_delete
    if lists_at > size:
        raise ContainerFormatError(
            f"manifest truncated: {n_db} database headers and {n_delete} delete entries end at "
            f"offset {lists_at}, the manifest is {size} bytes"
        )
    deletes = tuple(
        (data[at : at + nid], _U64.unpack_from(data, at + nid)[0])
        for at in range(delete_at, lists_at, nid + 8)
    )

    end = lists_at  # the furthest byte any structure reaches
    databases: list[ManifestDatabase] = []
    by_id: dict[int, ManifestDatabase] = {}
    names: set[str] = set()
    previous = 0
    for i in range(n_db):
        at = HEADER_BYTES + i * DB_HEADER_BYTES
        db_id, parent_id, db_version, offset, raw_count, entries, raw_name = _DB_HEADER.unpack_from(data, at)
        where = f"database header {i} (offset {at})"
        if db_id <= previous:
            raise ContainerFormatError(f"{where}: id {db_id} is not above the previous id {previous}")
        previous = db_id
        name = _decode_name(raw_name, where)
        if name in names:
            raise ContainerFormatError(f"{where}: duplicate database name {name!r}")
        names.add(name)
        count = raw_count & ~DELETED_LOCALLY
        list_bytes = entries * (4 + nid) if parent_id else count * nid
        if list_bytes and offset < lists_at:
            raise ContainerFormatError(
                f"{where}: block list offset {offset} points into the headers (lists start at {lists_at})"
            )
        stop = offset + list_bytes
        if stop > size:
            raise ContainerFormatError(
                f"{where}: its block list ends at offset {stop}, the manifest is {size} bytes"
            )
        if list_bytes:
            end = max(end, stop)
        if parent_id:
            parent = by_id.get(parent_id)
            if parent is None:
                raise ContainerFormatError(f"{where}: parent id {parent_id} is not an earlier database")
            ids = list(parent.block_ids[:count])
            ids += [b""] * (count - len(ids))
            for at_entry in range(offset, stop, 4 + nid):
                (index,) = _U32.unpack_from(data, at_entry)
                if index >= count:
                    raise ContainerFormatError(
                        f"{where}: delta entry at offset {at_entry} names block {index} of {count}"
                    )
                ids[index] = data[at_entry + 4 : at_entry + 4 + nid]
            if b"" in ids:
                raise ContainerFormatError(
                    f"{where}: block {ids.index(b'')} is neither in the parent nor in the delta entries"
                )
        else:
            if entries:
                raise ContainerFormatError(f"{where}: {entries} delta entries but no parent")
            ids = [data[k : k + nid] for k in range(offset, stop, nid)]
        db = ManifestDatabase(
            id=db_id,
            name=name,
            block_ids=tuple(ids),
            version=db_version,
            parent_id=parent_id,
            deleted_locally=bool(raw_count & DELETED_LOCALLY),
        )
        databases.append(db)
        by_id[db_id] = db
    if max_db_id < previous:
        raise ContainerFormatError(f"largest database id {max_db_id} at offset 20 is below id {previous}")
    if size > end:
        raise ContainerFormatError(f"{size - end} trailing bytes after the last structure (offset {end})")
    return Manifest(
        block_size=block_size,
        databases=tuple(databases),
        id_bytes=nid,
        max_db_id=max_db_id,
        deletes=deletes,
    )


def _decode_name(raw: bytes, where: str) -> str:
    nul = raw.find(b"\0")
    if nul < 0:
        raise ContainerFormatError(
            f"{where}: the name has no terminating NUL in its {NAME_FIELD_BYTES} bytes"
        )
    if nul == 0:
        raise ContainerFormatError(f"{where}: empty database name")
    try:
        return raw[:nul].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContainerFormatError(f"{where}: the name is not UTF-8 ({exc.reason})") from None


# --- writing a container -------------------------------------------------------------------------------


def write_container(
    folder: Path,
    databases: Sequence[tuple[str, Path]],
    *,
    block_size: int = BLOCK_SIZE,
    existing: Manifest | None = None,
) -> Manifest:
    """Write the files as databases of a container in ``folder`` (blocks, then ``manifest.bcv``).

    New databases get ids after ``existing``'s (whose databases are kept); a block whose blob is already
    there is not rewritten (same name, same bytes). The manifest is written last, through a temporary
    name and a rename, so a reader never sees a manifest naming blocks that are not there yet."""
    if existing is not None and (existing.block_size, existing.id_bytes) != (block_size, ID_BYTES):
        raise ValueError(
            f"the container has {existing.block_size}-byte blocks and {existing.id_bytes}-byte ids; "
            f"twinbase writes {block_size}-byte blocks and {ID_BYTES}-byte ids"
        )
    folder.mkdir(parents=True, exist_ok=True)
    kept = existing.databases if existing else ()
    next_id = max([existing.max_db_id if existing else 0, *(db.id for db in kept)]) + 1
    added: list[ManifestDatabase] = []
    for name, path in databases:
        ids: list[bytes] = []
        for bid, block in split_file(path, block_size):
            blob = folder / block_name(bid)
            if not blob.exists():
                _write_atomically(blob, [block])
            ids.append(bid)
        added.append(ManifestDatabase(id=next_id, name=name, block_ids=tuple(ids)))
        next_id += 1
    manifest = Manifest(
        block_size=block_size,
        databases=(*kept, *added),
        max_db_id=next_id - 1,
        deletes=existing.deletes if existing else (),
    )
    _write_atomically(folder / MANIFEST_NAME, [compose_manifest(manifest)])
    return manifest


def _write_atomically(path: Path, chunks: Iterable[bytes]) -> None:
    # A temporary name of its own: two writers of the same block (same bytes) must not share one.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
