"""3D Tiles archives (``.3tz``): a ZIP with a ``@3dtilesIndex1@`` index, written as a stream.

The 3D Tiles Archive Format (v1.3/1.4) is a plain ZIP (STORE or DEFLATE here) with rules on top:

- every local file header carries the CRC-32 and both sizes (no data descriptors), so each entry is
  compressed before its header is written: the writer holds one entry at a time, never the archive,
  and the output need not be seekable (a pipe, an upload stream);
- ``tileset.json`` at the root; names never contain ``.3tz``;
- the last entry (last in the central directory), stored uncompressed and without comment, is
  ``@3dtilesIndex1@``: for every other entry, the MD5 of its normalized path (``\\`` -> ``/``, no
  leading ``/``) and the offset of its local file header (u64 little-endian), 24 bytes each, sorted by
  the hash read as two little-endian u64 (the first eight bytes first).

ZIP64 records are written when offsets, sizes or the entry count pass the classic limits.

``ThreeTzReader`` reads an archive the way the format intends: the last central directory entry gives
the index, the index gives a local header by binary search on the path's MD5.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

INDEX_NAME = "@3dtilesIndex1@"

STORE = 0
DEFLATE = 8

_LOCAL_SIG = 0x04034B50
_CENTRAL_SIG = 0x02014B50
_EOCD_SIG = 0x06054B50
_EOCD64_SIG = 0x06064B50
_LOCATOR64_SIG = 0x07064B50
_U32 = 0xFFFFFFFF
_U16 = 0xFFFF
# 1980-01-01 00:00 in DOS time: fixed, so the same tiles give the same bytes.
_DOS_TIME = 0
_DOS_DATE = (0 << 9) | (1 << 5) | 1


def normalize_path(path: str) -> str:
    return path.replace("\\", "/").lstrip("/")


def path_hash(path: str) -> bytes:
    return hashlib.md5(normalize_path(path).encode("utf-8"), usedforsecurity=False).digest()


def _hash_key(digest: bytes) -> tuple[int, int]:
    hi, lo = struct.unpack("<QQ", digest)
    return hi, lo


@dataclass
class _Entry:
    name: bytes
    method: int
    crc: int
    compressed: int
    size: int
    offset: int


class ThreeTzWriter:
    """Write a ``.3tz`` to ``out`` (any writable binary file object), one entry at a time.

    ``add(path, data)`` stores or deflates ``data`` (``compress``: True, False, or None for the
    default: DEFLATE for JSON, STORE otherwise: GLB tiles are meshopt-compressed already and read
    fastest stored); ``close()`` writes the index, the central directory and the end records.
    """

    def __init__(self, out: BinaryIO, *, level: int = 6) -> None:
        self._out = out
        self._pos = 0
        self._level = level
        self._entries: list[_Entry] = []
        self._names: set[str] = set()
        self._closed = False

    def __enter__(self) -> ThreeTzWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._pos += len(data)

    def add(self, path: str, data: bytes, *, compress: bool | None = None) -> None:
        if self._closed:
            raise ValueError("archive closed")
        name = normalize_path(path)
        if not name or name == INDEX_NAME or ".3tz" in name.lower() or ".3dtiles.zip" in name.lower():
            raise ValueError(f"invalid 3tz entry name: {path!r}")
        if name in self._names:
            raise ValueError(f"duplicate 3tz entry: {name!r}")
        self._names.add(name)
        if compress is None:
            compress = name.endswith(".json")
        self._add(name, bytes(data), DEFLATE if compress else STORE)

    def _add(self, name: str, data: bytes, method: int) -> None:
        raw_name = name.encode("utf-8")
        crc = zlib.crc32(data) & _U32
        if method == DEFLATE:
            co = zlib.compressobj(self._level, zlib.DEFLATED, -15)
            payload = co.compress(data) + co.flush()
            if len(payload) >= len(data):  # incompressible: store it
                method, payload = STORE, data
        else:
            payload = data
        offset = self._pos
        zip64 = len(data) >= _U32 or len(payload) >= _U32
        extra = struct.pack("<HHQQ", 1, 16, len(data), len(payload)) if zip64 else b""
        # Bit 11: names are UTF-8.
        header = struct.pack(
            "<IHHHHHIIIHH",
            _LOCAL_SIG,
            45 if zip64 else 20,
            0x0800,
            method,
            _DOS_TIME,
            _DOS_DATE,
            crc,
            _U32 if zip64 else len(payload),
            _U32 if zip64 else len(data),
            len(raw_name),
            len(extra),
        )
        self._write(header + raw_name + extra)
        self._write(payload)
        self._entries.append(_Entry(raw_name, method, crc, len(payload), len(data), offset))

    def close(self) -> None:
        if self._closed:
            return
        entries = sorted(
            ((path_hash(e.name.decode("utf-8")), e.offset) for e in self._entries),
            key=lambda t: _hash_key(t[0]),
        )
        index = b"".join(h + struct.pack("<Q", off) for h, off in entries)
        self._add(INDEX_NAME, index, STORE)
        self._closed = True
        cd_start = self._pos
        for e in self._entries:
            self._write(self._central_record(e))
        cd_size = self._pos - cd_start
        count = len(self._entries)
        if count >= _U16 or cd_start >= _U32 or cd_size >= _U32:
            eocd64_at = self._pos
            self._write(
                struct.pack("<IQHHIIQQQQ", _EOCD64_SIG, 44, 45, 45, 0, 0, count, count, cd_size, cd_start)
            )
            self._write(struct.pack("<IIQI", _LOCATOR64_SIG, 0, eocd64_at, 1))
        self._write(
            struct.pack(
                "<IHHHHIIH",
                _EOCD_SIG,
                0,
                0,
                min(count, _U16),
                min(count, _U16),
                min(cd_size, _U32),
                min(cd_start, _U32),
                0,
            )
        )
        self._out.flush()

    @staticmethod
    def _central_record(e: _Entry) -> bytes:
        fields: list[int] = []
        size, comp, off = e.size, e.compressed, e.offset
        if size >= _U32:
            fields.append(size)
            size = _U32
        if comp >= _U32:
            fields.append(comp)
            comp = _U32
        if off >= _U32:
            fields.append(off)
            off = _U32
        extra = struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields) if fields else b""
        version = 45 if fields else 20
        return (
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                _CENTRAL_SIG,
                version,
                version,
                0x0800,
                e.method,
                _DOS_TIME,
                _DOS_DATE,
                e.crc,
                comp,
                size,
                len(e.name),
                len(extra),
                0,
                0,
                0,
                0,
                off,
            )
            + e.name
            + extra
        )


class ThreeTzError(ValueError):
    pass


class ThreeTzReader:
    """Read a ``.3tz`` from a seekable binary file object through its ``@3dtilesIndex1@`` index."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        f.seek(0, 2)
        self._size = f.tell()
        self._entries, index_offset, index_size = self._read_central_directory()
        try:
            data = self._read_local(index_offset, INDEX_NAME.encode())
        except _NameMismatch:
            raise ThreeTzError("the index entry's local header is not @3dtilesIndex1@") from None
        if len(data) != index_size or len(data) % 24:
            raise ThreeTzError("bad @3dtilesIndex1@ size")
        self._index = [
            (_hash_key(data[i : i + 16]), data[i : i + 16], struct.unpack_from("<Q", data, i + 16)[0])
            for i in range(0, len(data), 24)
        ]
        keys = [k for k, _, _ in self._index]
        if keys != sorted(keys):
            raise ThreeTzError("@3dtilesIndex1@ is not sorted")

    def _read_at(self, offset: int, n: int) -> bytes:
        self._f.seek(offset)
        data = self._f.read(n)
        if len(data) != n:
            raise ThreeTzError("truncated archive")
        return data

    def _read_central_directory(self) -> tuple[list[tuple[str, int]], int, int]:
        tail_len = min(self._size, 65536 + 22)
        tail = self._read_at(self._size - tail_len, tail_len)
        at = tail.rfind(struct.pack("<I", _EOCD_SIG))
        if at < 0:
            raise ThreeTzError("no end of central directory")
        _, _, _, _, count, cd_size, cd_start, _ = struct.unpack_from("<IHHHHIIH", tail, at)
        if count == _U16 or cd_size == _U32 or cd_start == _U32:
            loc_at = at - 20
            sig, _, eocd64_at, _ = struct.unpack_from("<IIQI", tail, loc_at)
            if sig != _LOCATOR64_SIG:
                raise ThreeTzError("missing ZIP64 locator")
            rec = self._read_at(eocd64_at, 56)
            sig, _, _, _, _, _, _, count, cd_size, cd_start = struct.unpack("<IQHHIIQQQQ", rec)
            if sig != _EOCD64_SIG:
                raise ThreeTzError("bad ZIP64 end record")
        cd = self._read_at(cd_start, cd_size)
        names: list[tuple[str, int]] = []
        pos = 0
        last: tuple[str, int, int, int] | None = None
        for _ in range(count):
            (sig,) = struct.unpack_from("<I", cd, pos)
            if sig != _CENTRAL_SIG:
                raise ThreeTzError("bad central directory record")
            fields = struct.unpack_from("<IHHHHHHIIIHHHHHII", cd, pos)
            comp, size = fields[8], fields[9]
            nlen, xlen, clen, off = fields[10], fields[11], fields[12], fields[16]
            name = cd[pos + 46 : pos + 46 + nlen].decode("utf-8")
            extra = cd[pos + 46 + nlen : pos + 46 + nlen + xlen]
            size, comp, off = self._zip64_values(extra, size, comp, off)
            names.append((name, off))
            last = (name, off, size, clen)
            pos += 46 + nlen + xlen + clen
        if last is None or last[0] != INDEX_NAME:
            raise ThreeTzError("the last entry is not @3dtilesIndex1@")
        if last[3]:
            raise ThreeTzError("@3dtilesIndex1@ has a comment")
        return names[:-1], last[1], last[2]

    @staticmethod
    def _zip64_values(extra: bytes, size: int, comp: int, off: int) -> tuple[int, int, int]:
        pos = 0
        while pos + 4 <= len(extra):
            tag, n = struct.unpack_from("<HH", extra, pos)
            if tag == 1:
                vals = list(struct.unpack_from(f"<{n // 8}Q", extra, pos + 4))
                if size == _U32:
                    size = vals.pop(0)
                if comp == _U32:
                    comp = vals.pop(0)
                if off == _U32:
                    off = vals.pop(0)
            pos += 4 + n
        return size, comp, off

    def _read_local(self, offset: int, expect_name: bytes | None) -> bytes:
        head = self._read_at(offset, 30)
        sig, _, flags, method, _, _, crc, comp, size, nlen, xlen = struct.unpack("<IHHHHHIIIHH", head)
        if sig != _LOCAL_SIG:
            raise ThreeTzError(f"no local file header at {offset}")
        if flags & 0x08:
            raise ThreeTzError("entry uses a data descriptor (sizes must be in the local header)")
        name_extra = self._read_at(offset + 30, nlen + xlen)
        name = name_extra[:nlen]
        if expect_name is not None and name != expect_name:
            raise _NameMismatch()
        size, comp, _ = self._zip64_values(name_extra[nlen:], size, comp, 0)
        payload = self._read_at(offset + 30 + nlen + xlen, comp)
        if method == STORE:
            data = payload
        elif method == DEFLATE:
            data = zlib.decompress(payload, -15)
        else:
            raise ThreeTzError(f"unsupported compression method {method}")
        if len(data) != size or (zlib.crc32(data) & _U32) != crc:
            raise ThreeTzError(f"CRC or size mismatch for {name!r}")
        return data

    def index_entries(self) -> list[tuple[bytes, int]]:
        """The index as written: (MD5 of the path, local header offset), in index order."""
        return [(digest, off) for _, digest, off in self._index]

    def names(self) -> list[str]:
        """Entry paths in archive order (the index excluded)."""
        return [name for name, _ in self._entries]

    def central_offsets(self) -> dict[str, int]:
        """Entry path -> local header offset, from the central directory (the index excluded)."""
        return dict(self._entries)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self._find(path) is not None

    def _find(self, path: str) -> bytes | None:
        name = normalize_path(path)
        digest = path_hash(name)
        key = _hash_key(digest)
        lo, hi = 0, len(self._index)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._index[mid][0] < key:
                lo = mid + 1
            else:
                hi = mid
        # Equal hashes sit together: try each (a collision is checked against the header's name).
        while lo < len(self._index) and self._index[lo][0] == key:
            try:
                return self._read_local(self._index[lo][2], name.encode("utf-8"))
            except _NameMismatch:
                lo += 1
        return None

    def read(self, path: str) -> bytes:
        data = self._find(path)
        if data is None:
            raise KeyError(path)
        return data


class _NameMismatch(Exception):
    pass
