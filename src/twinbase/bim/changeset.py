"""Changeset files (reference bim-format.md §3): reading, the changeset id, and what each one changes.

A changeset file is a 22-byte header, one LZMA2 dictionary-size byte, then a raw LZMA2 stream. Its
decompressed content is a big-endian u32 prefix length, the prefix (empty, or UTF-8 JSON + NUL with
``ContainsSchemaChanges`` and ``DDL``), then a SQLite session changeset.

Memory: the file is decoded in one streaming pass (compressed input read in chunks, output bounded per
call, a cap on the total) into a ``SpooledTemporaryFile``: changesets up to ``SPOOL_IN_MEMORY`` bytes (nearly
all of them) stay in memory with no disk I/O, larger ones roll over to a temporary file, so a changeset of
hundreds of MB never sits in memory, compressed or decompressed. The id and the change summary then
stream the spooled bytes (SHA-1 in chunks; apsw's streaming changeset iterator).

Every defect of the file raises a ``ChangesetFormatError`` subclass whose message says what is wrong;
foreign errors (lzma, apsw, json) are wrapped here, at the boundary. LZMA2 in a raw stream has no
checksum: a damaged stream may still decode, to other bytes; the changeset id (which hashes those
bytes) is what proves a file is the one its writer meant.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import os
import re
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any

import apsw

from twinbase.bim.identity import BimFormatError

HEADER_SIZE = 22
MAGIC = b"ChangeSetLzma"
FORMAT_VERSION = 0x0010
COMPRESSION_LZMA2 = 2
# The writer (iTwin.js' native library) uses a 16 MiB dictionary. liblzma allocates the whole dictionary
# when decoding starts, so a forged dictionary byte could ask for 4 GiB: cap it at 4x what writers use.
MAX_DICTIONARY_SIZE = 64 << 20
DEFAULT_MAX_UNCOMPRESSED_SIZE = 4 << 30
MAX_PREFIX_SIZE = 64 << 20
SPOOL_IN_MEMORY = 16 << 20
_READ_CHUNK = 1 << 20
_OUTPUT_CHUNK = 1 << 20
_ELEMENT_TABLE = "bis_element"
# bis_Element's columns are Id, ECClassId, ModelId, ... in every profile (2018 to 5.x): ModelId is the third.
_MODEL_COLUMN = 2
_CHANGESET_ID = re.compile(r"[0-9a-fA-F]{40}")
_UINT64 = (1 << 64) - 1


class ChangesetFormatError(BimFormatError):
    """The file is not a changeset twinbase can read; the message says what is wrong with it."""


class ChangesetHeaderError(ChangesetFormatError):
    """The 22-byte header is missing, truncated or not a changeset header."""


class UnsupportedChangesetError(ChangesetFormatError):
    """A well-formed header announcing a format version, compression or dictionary twinbase does not read."""


class ChangesetCompressionError(ChangesetFormatError):
    """The LZMA2 stream is corrupt, truncated, or followed by extra bytes."""


class ChangesetTooLargeError(ChangesetFormatError):
    """The decompressed changeset exceeds the size limit it was read with."""


class ChangesetPrefixError(ChangesetFormatError):
    """The prefix length or the JSON prefix (schema changes, DDL) is invalid."""


class SessionChangesetError(ChangesetFormatError):
    """The SQLite session changeset inside the file is malformed."""


class InvalidChangesetIdError(ValueError):
    """A parent changeset id that is neither empty nor 40 hexadecimal digits."""


@dataclass(frozen=True)
class ChangesetHeader:
    header_size: int
    format_version: int
    compression: int
    dictionary_size: int


@dataclass(frozen=True)
class TableChanges:
    inserts: int = 0
    updates: int = 0
    deletes: int = 0


@dataclass(frozen=True)
class ChangeSummary:
    """Rows changed per table, and the element ids (``bis_Element.Id``, unsigned 64-bit ints) by operation."""

    tables: dict[str, TableChanges]
    elements_inserted: tuple[int, ...]
    elements_updated: tuple[int, ...]
    elements_deleted: tuple[int, ...]
    # The model of each inserted or deleted element (ids unsigned), read from the changeset's own rows:
    # an update carries ModelId only if it changed, and BIS never moves an element to another model.
    element_models: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RowChange:
    table: str
    op: str  # "INSERT", "UPDATE" or "DELETE"
    primary_key: tuple[Any, ...]
    indirect: bool
    model_id: int | None = None  # bis_Element inserts and deletes: the element's ModelId


def hex_id(value: int) -> str:
    """An Id64 the way iTwin.js writes it: ``0x`` and lowercase hex without leading zeros; 0 is ``"0"``."""
    value &= _UINT64
    return f"0x{value:x}" if value else "0"


def dictionary_size(prop: int) -> int:
    """The dictionary size an LZMA2 dictionary property byte (0..40) stands for."""
    if prop > 40:
        raise UnsupportedChangesetError(f"invalid LZMA2 dictionary property {prop} (must be 0..40)")
    if prop == 40:
        return 0xFFFFFFFF
    return (2 | (prop & 1)) << (prop // 2 + 11)


def parse_header(data: bytes) -> ChangesetHeader:
    """The header from the file's first 23 bytes (22-byte header and the LZMA2 dictionary byte)."""
    if len(data) < HEADER_SIZE + 1:
        raise ChangesetHeaderError(
            f"truncated changeset header: {len(data)} bytes, a changeset file starts with {HEADER_SIZE + 1}"
        )
    (size,) = struct.unpack_from("<H", data, 0)
    name = data[2:17]
    if name != MAGIC.ljust(15, b"\0"):
        raise ChangesetHeaderError("not a changeset file: the header does not start with 'ChangeSetLzma'")
    if size != HEADER_SIZE:
        raise ChangesetHeaderError(f"changeset header size is {size}, expected {HEADER_SIZE}")
    version, compression = struct.unpack_from("<HH", data, 18)
    if version != FORMAT_VERSION:
        raise UnsupportedChangesetError(
            f"unsupported changeset format version 0x{version:04x} (twinbase reads 0x{FORMAT_VERSION:04x})"
        )
    if compression != COMPRESSION_LZMA2:
        raise UnsupportedChangesetError(
            f"unsupported changeset compression type {compression} (twinbase reads LZMA2, type 2)"
        )
    dict_size = dictionary_size(data[HEADER_SIZE])
    if dict_size > MAX_DICTIONARY_SIZE:
        raise UnsupportedChangesetError(
            f"LZMA2 dictionary of {dict_size} bytes exceeds the {MAX_DICTIONARY_SIZE}-byte limit"
        )
    return ChangesetHeader(size, version, compression, dict_size)


def _parent_bytes(parent_id: str) -> bytes:
    if parent_id == "":
        return b"\0" * 20
    if not _CHANGESET_ID.fullmatch(parent_id):
        raise InvalidChangesetIdError(
            f"parent changeset id {parent_id!r} is neither empty nor 40 hexadecimal digits"
        )
    return bytes.fromhex(parent_id)


def changeset_id(parent_id: str, prefix: bytes, changeset: bytes) -> str:
    """SHA-1 of the parent id's 20 bytes (zeros for the first), the prefix as stored, and the changeset."""
    digest = hashlib.sha1(_parent_bytes(parent_id), usedforsecurity=False)
    digest.update(prefix)
    digest.update(changeset)
    return digest.hexdigest()


@dataclass
class ChangesetFile:
    """A decoded changeset file; a context manager that owns the spooled session changeset.

    The readers below (``iter_changeset``, ``stream_input``, ``row_changes``, ``changeset_id``) share the
    spool's position: use one at a time, each to its end.
    """

    header: ChangesetHeader
    prefix: bytes
    contains_schema_changes: bool
    ddl: str
    uncompressed_size: int  # of the session changeset alone, as the iModels API reports it
    summary: ChangeSummary
    _spool: IO[bytes] = field(repr=False, compare=False)

    def __enter__(self) -> ChangesetFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._spool.close()

    def iter_changeset(self, chunk_size: int = _READ_CHUNK) -> Iterator[bytes]:
        """The session changeset's bytes, in chunks."""
        self._spool.seek(0)
        while chunk := self._spool.read(chunk_size):
            yield chunk

    def changeset_bytes(self) -> bytes:
        """The whole session changeset in memory; large ones: ``iter_changeset`` or ``stream_input``."""
        self._spool.seek(0)
        return self._spool.read()

    def stream_input(self) -> Callable[[int], bytes]:
        """The session changeset as apsw's streaming input (``apsw.Changeset.iter``/``apply``)."""
        self._spool.seek(0)
        return self._spool.read

    def changeset_id(self, parent_id: str) -> str:
        digest = hashlib.sha1(_parent_bytes(parent_id), usedforsecurity=False)
        digest.update(self.prefix)
        for chunk in self.iter_changeset():
            digest.update(chunk)
        return digest.hexdigest()

    def row_changes(self) -> Iterator[RowChange]:
        """Every changed row: table, operation, primary key values (old values for updates and deletes)."""
        return _iter_rows(self.stream_input())


def _iter_rows(source: Callable[[int], bytes]) -> Iterator[RowChange]:
    try:
        for change in apsw.Changeset.iter(source):
            values = change.new if change.op == "INSERT" else change.old
            if values is None:
                raise SessionChangesetError(f"session changeset is malformed: {change.op} without values")
            key = tuple(values[i] for i in sorted(change.pk_columns))
            model_id = None
            if (
                change.op != "UPDATE"
                and change.name.lower() == _ELEMENT_TABLE
                and len(values) > _MODEL_COLUMN
            ):
                model = values[_MODEL_COLUMN]
                model_id = model & _UINT64 if type(model) is int else None
            yield RowChange(change.name, change.op, key, change.indirect, model_id)
    except apsw.Error as exc:
        raise SessionChangesetError(f"session changeset is malformed: {exc}") from exc


def _summarize(source: Callable[[int], bytes]) -> ChangeSummary:
    counts: dict[str, list[int]] = {}
    elements: dict[str, list[int]] = {"INSERT": [], "UPDATE": [], "DELETE": []}
    slot = {"INSERT": 0, "UPDATE": 1, "DELETE": 2}
    models: dict[int, int] = {}
    for row in _iter_rows(source):
        counts.setdefault(row.table, [0, 0, 0])[slot[row.op]] += 1
        if row.table.lower() == _ELEMENT_TABLE:
            if len(row.primary_key) != 1 or type(row.primary_key[0]) is not int:
                raise SessionChangesetError(
                    f"session changeset is malformed: a bis_Element {row.op} whose primary key "
                    f"{row.primary_key!r} is not one integer Id"
                )
            element_id = row.primary_key[0] & _UINT64
            elements[row.op].append(element_id)
            if row.model_id is not None:
                models[element_id] = row.model_id
    return ChangeSummary(
        tables={name: TableChanges(*counts[name]) for name in sorted(counts)},
        elements_inserted=tuple(sorted(elements["INSERT"])),
        elements_updated=tuple(sorted(elements["UPDATE"])),
        elements_deleted=tuple(sorted(elements["DELETE"])),
        element_models=models,
    )


def _parse_prefix(prefix: bytes) -> tuple[bool, str]:
    if not prefix:
        return False, ""
    text = prefix[:-1] if prefix.endswith(b"\0") else prefix
    try:
        parsed = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ChangesetPrefixError(f"changeset prefix is not UTF-8 JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ChangesetPrefixError("changeset prefix is JSON but not an object")
    schema = parsed.get("ContainsSchemaChanges", False)
    ddl = parsed.get("DDL", "")
    if not isinstance(schema, bool) or not isinstance(ddl, str):
        raise ChangesetPrefixError(
            "changeset prefix has a non-boolean ContainsSchemaChanges or a non-string DDL"
        )
    return schema, ddl


class _Splitter:
    """Takes decompressed bytes and routes them: the 4-byte prefix length, the prefix, then the spool."""

    def __init__(self, spool: IO[bytes], max_size: int) -> None:
        self.spool = spool
        self.max_size = max_size
        self.total = 0
        self.head = bytearray()
        self.prefix_len: int | None = None
        self.prefix = bytearray()
        self.changeset_size = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        if self.total > self.max_size:
            raise ChangesetTooLargeError(f"the decompressed changeset exceeds the {self.max_size}-byte limit")
        view = memoryview(data)
        if self.prefix_len is None:
            take = 4 - len(self.head)
            self.head += view[:take]
            view = view[take:]
            if len(self.head) < 4:
                return
            (self.prefix_len,) = struct.unpack(">I", self.head)
            if self.prefix_len > MAX_PREFIX_SIZE:
                raise ChangesetPrefixError(
                    f"changeset prefix length {self.prefix_len} exceeds the {MAX_PREFIX_SIZE}-byte limit"
                )
        if len(self.prefix) < self.prefix_len:
            take = self.prefix_len - len(self.prefix)
            self.prefix += view[:take]
            view = view[take:]
        if view:
            self.spool.write(view)
            self.changeset_size += len(view)

    def finish(self) -> None:
        if self.prefix_len is None:
            raise ChangesetPrefixError(
                f"the decompressed changeset has {self.total} bytes, too short for its 4-byte prefix length"
            )
        if len(self.prefix) < self.prefix_len:
            raise ChangesetPrefixError(
                f"changeset prefix length {self.prefix_len} exceeds the {len(self.prefix)} bytes after it"
            )


def _decode(source: IO[bytes], header: ChangesetHeader, splitter: _Splitter) -> None:
    decoder = lzma.LZMADecompressor(
        lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "dict_size": header.dictionary_size}]
    )
    try:
        while not decoder.eof:
            if decoder.needs_input:
                chunk = source.read(_READ_CHUNK)
                if not chunk:
                    raise ChangesetCompressionError(
                        "the LZMA2 stream is truncated: the file ends before the stream's end marker"
                    )
            else:
                chunk = b""
            # Bounded output per call: a small file that expands enormously is stopped at the cap.
            splitter.feed(decoder.decompress(chunk, _OUTPUT_CHUNK))
    except lzma.LZMAError as exc:
        raise ChangesetCompressionError(f"the LZMA2 stream is corrupt: {exc}") from exc
    extra = len(decoder.unused_data) + len(source.read(1))
    if extra:
        raise ChangesetCompressionError("unexpected bytes after the end of the LZMA2 stream")


def read_changeset(
    path: str | os.PathLike[str] | IO[bytes],
    *,
    max_uncompressed_size: int = DEFAULT_MAX_UNCOMPRESSED_SIZE,
    spool_dir: str | os.PathLike[str] | None = None,
) -> ChangesetFile:
    """Decode and check a whole changeset file: header, LZMA2 stream, prefix and session changeset.

    ``path`` is a file name or a binary stream read to its end (e.g. a blob being downloaded). The result
    owns a spooled copy of the session changeset: use it as a context manager (or ``close``).
    """
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (returned inside ChangesetFile)
        max_size=SPOOL_IN_MEMORY, dir=None if spool_dir is None else os.fspath(spool_dir)
    )
    try:
        with contextlib.ExitStack() as stack:
            source = (
                path if not isinstance(path, str | os.PathLike) else stack.enter_context(open(path, "rb"))
            )
            header = parse_header(source.read(HEADER_SIZE + 1))
            splitter = _Splitter(spool, max_uncompressed_size)
            _decode(source, header, splitter)
        splitter.finish()
        prefix = bytes(splitter.prefix)
        schema, ddl = _parse_prefix(prefix)
        spool.seek(0)
        if spool.read(1) not in (b"", b"T"):
            raise SessionChangesetError(
                "session changeset is malformed: it does not start with a changeset table record ('T')"
            )
        spool.seek(0)
        summary = _summarize(spool.read)
    except BaseException:
        spool.close()
        raise
    return ChangesetFile(header, prefix, schema, ddl, splitter.changeset_size, summary, spool)


def compute_id(path: str | os.PathLike[str], parent_id: str) -> str:
    """The id of the changeset file at ``path`` whose parent is ``parent_id`` (``""`` for the first)."""
    _parent_bytes(parent_id)
    with read_changeset(path) as changeset:
        return changeset.changeset_id(parent_id)
