"""The GLB container and the binary-chunk builder the writer fills.

Layout rules kept here (glTF 2.0 §4.4 and ``EXT_structural_metadata``'s 8-byte rule): the JSON chunk is
padded with spaces and the BIN chunk with zeros; the JSON is padded so the BIN chunk's data starts at a file
offset that is a multiple of 8, and every buffer view starts at a multiple of 8 inside the buffer, so 64-bit
columns can be read in place. ``buffers[0].byteLength`` is the padded BIN length.

With ``meshopt``, vertex and index streams are stored ``EXT_meshopt_compression``-encoded in the BIN chunk;
their buffer views point at a second, data-less "fallback" buffer (spec: index 1 or above in a GLB, marked
``fallback``) that only gives the decoded layout, which is why the extension is then required.
"""

from __future__ import annotations

import ctypes
import functools
import json
import struct
from typing import Any, Generic, TypeVar

import meshoptimizer
import numpy as np
from numpy.typing import NDArray

GLB_MAGIC = 0x46546C67  # "glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
ARRAY_BUFFER = 34962
ELEMENT_ARRAY_BUFFER = 34963

BYTE, UNSIGNED_BYTE, SHORT, UNSIGNED_SHORT, UNSIGNED_INT, FLOAT = 5120, 5121, 5122, 5123, 5125, 5126

MESHOPT = "EXT_meshopt_compression"

V = TypeVar("V")


def _pad(n: int, align: int) -> int:
    return (align - n % align) % align


def pack_glb(document: dict[str, Any], binary: bytes) -> bytes:
    # check_circular off: the writer's documents are trees, and the check's bookkeeping on every container
    # was a tenth of the encoding's time; the text is the same.
    text = json.dumps(
        document, separators=(",", ":"), allow_nan=False, ensure_ascii=False, check_circular=False
    ).encode("utf-8")
    # 12-byte header + 8-byte chunk header + JSON + 8-byte chunk header: BIN data lands on a multiple of 8
    # when the padded JSON length is 4 mod 8 (it stays a multiple of 4, as glTF requires).
    text += b" " * ((4 - len(text) % 8) % 8)
    binary = binary + b"\0" * _pad(len(binary), 8)
    parts = [struct.pack("<III", GLB_MAGIC, 2, 0), struct.pack("<II", len(text), CHUNK_JSON), text]
    if binary:
        parts += [struct.pack("<II", len(binary), CHUNK_BIN), binary]
    out = b"".join(parts)
    return out[:8] + struct.pack("<I", len(out)) + out[12:]


class GlbError(ValueError):
    """Bytes that are not a well-formed GLB."""


def unpack_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    if len(data) < 20:
        raise GlbError("shorter than a GLB header")
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC or version != 2 or length != len(data):
        raise GlbError(
            f"bad header (magic {magic:#x}, version {version}, length {length}, {len(data)} bytes)"
        )
    offset = 12
    chunks: list[tuple[int, bytes]] = []
    while offset < length:
        size, kind = struct.unpack_from("<II", data, offset)
        if size % 4 or offset + 8 + size > length:
            raise GlbError(f"chunk at {offset} has a bad length {size}")
        chunks.append((kind, data[offset + 8 : offset + 8 + size]))
        offset += 8 + size
    if not chunks or chunks[0][0] != CHUNK_JSON:
        raise GlbError("the first chunk is not JSON")
    binary = chunks[1][1] if len(chunks) > 1 and chunks[1][0] == CHUNK_BIN else b""
    return json.loads(chunks[0][1].decode("utf-8")), binary


class Memo(Generic[V]):
    """A bounded memo of a pure function of small byte strings (oldest entries dropped first).

    A worker writes tile after tile with the same instanced parts in them (a few part geometries drawn in
    hundreds of tiles): their grouping, normal codes and encoded streams repeat exactly, and recomputing
    them was most of an instanced part's cost. Keys are the inputs' bytes, so a hit is the same input."""

    #: Inputs above this many bytes are not memoized: their own work dwarfs the lookup; they rarely repeat.
    MAX_KEY_BYTES = 1 << 14

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._values: dict[bytes, V] = {}

    def get(self, key: bytes) -> V | None:
        return self._values.get(key)

    def put(self, key: bytes, value: V) -> V:
        if len(key) <= self.MAX_KEY_BYTES:
            if len(self._values) >= self.entries:
                del self._values[next(iter(self._values))]
            self._values[key] = value
        return value


class _Native:
    """The meshoptimizer library the ``meshoptimizer`` package ships, called straight through ctypes with
    plain addresses: the package's wrappers convert every pointer (``data_as``), validate, zero the output
    buffer and copy it out, which cost a fifth of the codec's own time on a tile's many small streams."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(meshoptimizer._loader.lib._name)  # the same library, our own function objects
        p, n = ctypes.c_void_p, ctypes.c_size_t

        def fn(name: str, args: list[Any], result: Any) -> Any:
            f = getattr(lib, name)
            f.argtypes, f.restype = args, result
            return f

        self.vertex_version = fn("meshopt_encodeVertexVersion", [ctypes.c_int], None)
        self.index_version = fn("meshopt_encodeIndexVersion", [ctypes.c_int], None)
        self.vertex_bound = fn("meshopt_encodeVertexBufferBound", [n, n], n)
        self.encode_vertex = fn("meshopt_encodeVertexBuffer", [p, n, p, n, n], n)
        self.index_bound = fn("meshopt_encodeIndexBufferBound", [n, n], n)
        self.encode_index = fn("meshopt_encodeIndexBuffer", [p, n, p, n], n)
        self.sequence_bound = fn("meshopt_encodeIndexSequenceBound", [n, n], n)
        self.encode_sequence = fn("meshopt_encodeIndexSequence", [p, n, p, n], n)
        self.strip = fn("meshopt_optimizeVertexCacheStrip", [p, p, n, n], None)
        self.fetch = fn("meshopt_optimizeVertexFetch", [p, p, n, p, n, n], n)


@functools.cache
def _native() -> _Native:
    return _Native()


def optimize_strip(indices: np.ndarray, vertex_count: int) -> NDArray[np.uint32]:
    """meshopt's strip-friendly vertex-cache order of (contiguous uint32) triangle ``indices``."""
    src = np.ascontiguousarray(indices, np.uint32).reshape(-1)
    out = np.empty_like(src)
    _native().strip(out.ctypes.data, src.ctypes.data, len(src), vertex_count)
    return out


def optimize_fetch(indices: NDArray[np.uint32], vertices: np.ndarray) -> np.ndarray:
    """meshopt's vertex fetch order: ``vertices`` (one row per vertex, every one referenced) in first-use
    order, and ``indices`` (contiguous uint32, changed in place) renumbered to match."""
    src = np.ascontiguousarray(vertices)
    out = np.empty_like(src)
    if not indices.flags.c_contiguous or indices.dtype != np.uint32:
        raise ValueError("optimize_fetch renumbers contiguous uint32 indices in place")
    row = src.strides[0] if src.ndim else 0
    _native().fetch(out.ctypes.data, indices.ctypes.data, indices.size, src.ctypes.data, len(src), row)
    return out


def _encode_vertex_buffer(rows: np.ndarray, count: int, stride: int) -> bytes:
    if stride <= 0 or stride > 256 or stride % 4:
        raise ValueError(f"meshopt vertex codec: element size {stride} is not a multiple of 4 up to 256")
    lib = _native()
    lib.vertex_version(0)  # EXT_meshopt_compression knows only version 0 (0xa0)
    bound = lib.vertex_bound(count, stride)
    out = np.empty(bound, np.uint8)
    size = lib.encode_vertex(out.ctypes.data, bound, rows.ctypes.data, count, stride)
    if size == 0:
        raise RuntimeError("meshopt vertex codec failed")
    return out[:size].tobytes()


def _encode_index_buffer(flat: NDArray[np.uint32], vertex_count: int) -> bytes:
    if len(flat) % 3:
        raise ValueError(f"meshopt index codec: {len(flat)} indices is not whole triangles")
    lib = _native()
    lib.index_version(1)
    bound = lib.index_bound(len(flat), vertex_count)
    out = np.empty(bound, np.uint8)
    size = lib.encode_index(out.ctypes.data, bound, flat.ctypes.data, len(flat))
    if size == 0:
        raise RuntimeError("meshopt index codec failed")
    return out[:size].tobytes()


def encode_vertex_stream(rows: np.ndarray, count: int, stride: int) -> bytes:
    """meshopt's vertex codec (version 0, which every decoder reads) of ``count`` rows of ``stride``
    bytes."""
    return _encode_vertex_buffer(np.ascontiguousarray(rows), count, stride)


def encode_index_sequence(flat: NDArray[np.uint32], vertex_count: int) -> bytes:
    """meshopt's index-sequence codec (version 1) of uint32 ``flat`` indices."""
    lib = _native()
    lib.index_version(1)
    src = np.ascontiguousarray(flat, np.uint32)
    bound = lib.sequence_bound(len(src), max(vertex_count, 1))
    out = np.empty(bound, np.uint8)
    size = lib.encode_sequence(out.ctypes.data, bound, src.ctypes.data, len(src))
    if size == 0:
        raise RuntimeError("meshopt index sequence codec failed")
    return out[:size].tobytes()


#: Encoded meshopt streams by their mode, layout and raw bytes.
_ENCODED: Memo[bytes] = Memo(512)


def _encode_vertices(rows: np.ndarray, count: int, stride: int) -> bytes:
    key = b"v%d:" % stride + rows.tobytes() if rows.nbytes <= Memo.MAX_KEY_BYTES else b""
    found = _ENCODED.get(key) if key else None
    if found is not None:
        return found
    encoded = _encode_vertex_buffer(np.ascontiguousarray(rows), count, stride)
    return _ENCODED.put(key, encoded) if key else encoded


def _encode_indices(flat: np.ndarray, vertex_count: int) -> bytes:
    # The index codec's output does not depend on the vertex count (only its size bound does).
    key = b"i:" + flat.tobytes() if flat.nbytes <= Memo.MAX_KEY_BYTES else b""
    found = _ENCODED.get(key) if key else None
    if found is not None:
        return found
    encoded = _encode_index_buffer(np.ascontiguousarray(flat, np.uint32), max(vertex_count, 1))
    return _ENCODED.put(key, encoded) if key else encoded


class BinBuilder:
    """Buffer views and accessors over one BIN chunk (plus the meshopt fallback buffer's layout)."""

    def __init__(self, meshopt: bool) -> None:
        self.meshopt = meshopt
        self._parts: list[bytes] = []
        self._size = 0
        self._fallback_size = 0
        self.buffer_views: list[dict[str, Any]] = []
        self.accessors: list[dict[str, Any]] = []
        self.compressed_views = 0

    def _put(self, data: bytes) -> int:
        pad = _pad(self._size, 8)
        if pad:
            self._parts.append(b"\0" * pad)
            self._size += pad
        offset = self._size
        self._parts.append(data)
        self._size += len(data)
        return offset

    def plain_view(self, data: bytes, *, stride: int | None = None, target: int | None = None) -> int:
        view: dict[str, Any] = {"buffer": 0, "byteOffset": self._put(data), "byteLength": len(data)}
        if stride is not None:
            view["byteStride"] = stride
        if target is not None:
            view["target"] = target
        self.buffer_views.append(view)
        return len(self.buffer_views) - 1

    def attribute_view(self, elements: np.ndarray, *, vertex: bool, filter: str | None = None) -> int:
        """``elements``: one row per element, a multiple of 4 bytes. The view always states ``byteStride``
        (u8 / u16 ids sit in 4-byte slots); ``vertex`` views (mesh attributes) also get ``target``.
        ``filter`` (meshopt only, e.g. ``OCTAHEDRAL``) names how ``elements`` were pre-encoded: the
        decoder undoes it after the codec."""
        rows = np.ascontiguousarray(elements).view(np.uint8).reshape(len(elements), -1)
        count, stride = rows.shape
        target = ARRAY_BUFFER if vertex else None
        if not self.meshopt or count == 0:
            if filter is not None:
                raise ValueError("a meshopt filter needs meshopt compression")
            return self.plain_view(rows.tobytes(), stride=stride, target=target)
        encoded = _encode_vertices(rows, count, stride)
        return self._compressed(encoded, count, stride, "ATTRIBUTES", stride, target, filter)

    def column_view(self, rows: np.ndarray) -> int:
        """A property-table column (``rows``: one row per value, a multiple of 4 bytes each): meshopt
        vertex-codec encoded like an attribute stream (sorted or repeating ids leave small deltas), but
        without ``byteStride`` or ``target`` on the view, which only vertex data may state. Plain without
        meshopt."""
        raw = np.ascontiguousarray(rows).view(np.uint8).reshape(len(rows), -1)
        count, stride = raw.shape
        if not self.meshopt or count == 0:
            return self.plain_view(raw.tobytes())
        encoded = _encode_vertices(raw, count, stride)
        return self._compressed(encoded, count, stride, "ATTRIBUTES", None, None)

    def index_view(self, indices: np.ndarray, vertex_count: int, index_size: int) -> int:
        flat = np.ascontiguousarray(indices, np.uint32).reshape(-1)
        if not self.meshopt or len(flat) == 0:
            dtype = "<u2" if index_size == 2 else "<u4"
            return self.plain_view(flat.astype(dtype).tobytes(), target=ELEMENT_ARRAY_BUFFER)
        encoded = _encode_indices(flat, vertex_count)
        return self._compressed(encoded, len(flat), index_size, "TRIANGLES", None, ELEMENT_ARRAY_BUFFER)

    def _compressed(
        self,
        encoded: bytes,
        count: int,
        stride: int,
        mode: str,
        view_stride: int | None,
        target: int | None,
        filter: str | None = None,
    ) -> int:
        length = count * stride
        fallback_offset = self._fallback_size + _pad(self._fallback_size, 8)
        self._fallback_size = fallback_offset + length
        ext: dict[str, Any] = {"buffer": 0, "byteOffset": self._put(encoded), "byteLength": len(encoded)}
        ext |= {"byteStride": stride, "count": count, "mode": mode}
        if filter is not None:
            ext["filter"] = filter
        view: dict[str, Any] = {"buffer": 1, "byteOffset": fallback_offset, "byteLength": length}
        if view_stride is not None:
            view["byteStride"] = view_stride
        if target is not None:
            view["target"] = target
        view["extensions"] = {MESHOPT: ext}
        self.buffer_views.append(view)
        self.compressed_views += 1
        return len(self.buffer_views) - 1

    def accessor(
        self,
        view: int,
        component_type: int,
        count: int,
        type_: str,
        *,
        byte_offset: int = 0,
        normalized: bool = False,
        lo: list[float] | None = None,
        hi: list[float] | None = None,
    ) -> int:
        acc: dict[str, Any] = {"bufferView": view, "componentType": component_type}
        acc |= {"count": count, "type": type_}
        if byte_offset:
            acc["byteOffset"] = byte_offset
        if normalized:
            acc["normalized"] = True
        if lo is not None and hi is not None:
            acc["min"], acc["max"] = lo, hi
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def buffers(self) -> list[dict[str, Any]]:
        if self._size == 0:
            return []  # a buffer needs byteLength >= 1; an empty tile has no binary data at all
        out: list[dict[str, Any]] = [{"byteLength": self._size + _pad(self._size, 8)}]
        if self.compressed_views:
            out.append({"byteLength": self._fallback_size, "extensions": {MESHOPT: {"fallback": True}}})
        return out

    def binary(self) -> bytes:
        return b"".join(self._parts)
