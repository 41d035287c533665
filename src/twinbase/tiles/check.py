"""A tileset checker of our own: the Cesium 3d-tiles-validator does not install here, so CI checks what
our exports must satisfy with this.

``check_tileset(source)`` reads a tileset from a folder (``tileset.json`` in it), a ``.3tz`` archive or a
mapping of paths to bytes, and returns the issues found, each ``(code, path, message)``; an empty list
means clean. What it checks:

- ``tileset.json``: ``asset.version`` "1.1"; ``geometricError`` numbers >= 0 (tileset and tiles); a
  root with ``refine`` "ADD" or "REPLACE"; no ``extensionsRequired`` beyond the ones we accept (none);
  extensions declared in ``extensionsUsed``; the ``BENTLEY_BatchedTileSet`` models table (keys
  ``0x``-hex ids, ``extents.low``/``high`` of 3 numbers, low <= high unless the null range);
- every tile: a ``box`` bounding volume (Bentley clients throw on ``region``), inside its parent's box
  (with the child's ``transform``), ``content.boundingVolume`` inside the tile's, ``geometricError``
  not above the parent's, content URIs that exist, no external tilesets (Bentley clients load none);
- every GLB content: header, chunk layout and alignment, buffer views and accessors inside their data,
  glTF ``extensionsRequired`` within those Cesium reads, ``EXT_mesh_features`` feature ids: no more
  distinct values than ``featureCount`` (the extension's definition: the number of features the
  primitive uses, so ids may exceed it) and every id a row of the property table, as the Cesium
  validator checks (``FEATURE_COUNT_MISMATCH``, ``VALUE_NOT_IN_RANGE``), ``EXT_instance_features``
  likewise, and
  ``EXT_structural_metadata`` property tables: class and properties in the schema, value / string
  offset / array offset buffer view lengths, offsets ascending and ending at the values' length, and
  buffer view offsets aligned to the component size (the validator's ``METADATA_INVALID_ALIGNMENT``).
  Buffer views compressed with ``EXT_meshopt_compression`` are decoded with meshoptimizer first.
- a ``.3tz``: the ``@3dtilesIndex1@`` index lists every entry at its local header.

Codes follow the Cesium validator's names where one exists.
"""

from __future__ import annotations

import json
import math
import posixpath
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import meshoptimizer as mo
import numpy as np
from numpy.typing import NDArray

from .threetz import ThreeTzError, ThreeTzReader, path_hash
from .tiler import BATCHED_TILESET

#: Tileset extensions we may require: we write none.
ALLOWED_TILESET_REQUIRED: frozenset[str] = frozenset()
#: glTF extensions a content may require (all read by CesiumJS).
ALLOWED_GLTF_REQUIRED = frozenset(
    {"EXT_meshopt_compression", "KHR_mesh_quantization", "EXT_mesh_gpu_instancing", "KHR_texture_transform"}
)

#: Slack when testing that one box holds another: 1 mm plus a millionth of the coordinates' size.
CONTAIN_ABS = 1e-3
CONTAIN_REL = 1e-6


@dataclass(frozen=True)
class Issue:
    code: str
    path: str
    message: str


Json = Any
Reader = Callable[[str], "bytes | None"]

_COMPONENT = {
    5120: np.int8,
    5121: np.uint8,
    5122: np.int16,
    5123: np.uint16,
    5125: np.uint32,
    5126: np.float32,
}
_TYPE_COUNT = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_META_SIZE = {
    "INT8": 1,
    "UINT8": 1,
    "INT16": 2,
    "UINT16": 2,
    "INT32": 4,
    "UINT32": 4,
    "INT64": 8,
    "UINT64": 8,
    "FLOAT32": 4,
    "FLOAT64": 8,
}
_META_DTYPE = {"UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64}


def _is_number(v: object) -> TypeGuard[float]:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


# ---------------------------------------------------------------------------------------------------
# Sources


def _relative(uri: str) -> str | None:
    """A content URI as a path inside the tileset, or None when it leaves it (or is absolute)."""
    if "://" in uri or uri.startswith("/"):
        return None
    path = posixpath.normpath(uri.split("?")[0].replace("\\", "/"))
    return None if path.startswith("..") else path


def _folder_reader(root: Path) -> Reader:
    def read(uri: str) -> bytes | None:
        rel = _relative(uri)
        if rel is None:
            return None
        p = (root / rel).resolve()
        if root.resolve() not in p.parents and p != root.resolve():
            return None
        return p.read_bytes() if p.is_file() else None

    return read


def check_tileset(source: str | Path | Mapping[str, bytes]) -> list[Issue]:
    """Check a tileset in a folder, a ``.3tz`` archive, or a mapping of relative paths to bytes."""
    issues: list[Issue] = []
    if isinstance(source, Mapping):
        files = dict(source)

        def read(uri: str) -> bytes | None:
            rel = _relative(uri)
            return None if rel is None else files.get(rel)

        return _check(read, issues)
    path = Path(source)
    if path.is_dir():
        return _check(_folder_reader(path), issues)
    with path.open("rb") as f:
        try:
            reader = ThreeTzReader(f)
        except (ThreeTzError, struct.error, ValueError) as exc:
            return [Issue("3TZ_INVALID", path.name, str(exc))]
        offsets = reader.central_offsets()
        indexed = {digest: off for digest, off in reader.index_entries()}
        if len(indexed) != len(reader.index_entries()):
            issues.append(Issue("3TZ_INDEX", "@3dtilesIndex1@", "duplicate hashes in the index"))
        for name, off in offsets.items():
            if indexed.get(path_hash(name)) != off:
                issues.append(Issue("3TZ_INDEX", name, "not in the index at its local header offset"))

        def read3tz(uri: str) -> bytes | None:
            rel = _relative(uri)
            if rel is None:
                return None
            try:
                return reader.read(rel)
            except KeyError:
                return None
            except ThreeTzError:
                return None

        return _check(read3tz, issues)


def _check(read: Reader, issues: list[Issue]) -> list[Issue]:
    raw = read("tileset.json")
    if raw is None:
        issues.append(Issue("IO_ERROR", "tileset.json", "no tileset.json"))
        return issues
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        issues.append(Issue("JSON_PARSE_ERROR", "tileset.json", str(exc)))
        return issues
    issues.extend(check_tileset_json(doc))
    seen: set[str] = set()
    for uri, where in _content_uris(doc.get("root"), "/root"):
        if uri in seen:
            issues.append(Issue("CONTENT_URI_DUPLICATE", where, f"{uri} is used by two tiles"))
            continue
        seen.add(uri)
        data = read(uri)
        if data is None:
            issues.append(Issue("CONTENT_MISSING", where, f"content {uri} not found"))
        elif uri.lower().endswith(".glb"):
            issues.extend(check_glb(data, uri))
    return issues


def _content_uris(tile: Json, where: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if not isinstance(tile, dict):
        return out
    content = tile.get("content")
    if isinstance(content, dict) and isinstance(content.get("uri"), str):
        out.append((content["uri"], where + "/content"))
    for i, child in enumerate(tile.get("children") or []):
        out.extend(_content_uris(child, f"{where}/children/{i}"))
    return out


def content_uris(doc: Json, *, leaves_only: bool = False) -> list[str]:
    """The content URIs of a ``tileset.json`` document, root first (``leaves_only``: of tiles without
    children, the full-detail ones)."""
    out: list[str] = []

    def walk(tile: Json) -> None:
        if not isinstance(tile, dict):
            return
        content = tile.get("content")
        children = tile.get("children") or []
        if (
            isinstance(content, dict)
            and isinstance(content.get("uri"), str)
            and not (leaves_only and children)
        ):
            out.append(content["uri"])
        for child in children:
            walk(child)

    walk(doc.get("root") if isinstance(doc, dict) else None)
    return out


# ---------------------------------------------------------------------------------------------------
# tileset.json


def check_tileset_json(doc: Json) -> list[Issue]:
    """The checks of ``tileset.json`` alone (no content)."""
    issues: list[Issue] = []
    p = "tileset.json"
    if not isinstance(doc, dict):
        return [Issue("TYPE_MISMATCH", p, "tileset.json is not an object")]
    asset = doc.get("asset")
    if not isinstance(asset, dict) or asset.get("version") != "1.1":
        issues.append(Issue("ASSET_VERSION", f"{p}#/asset", 'asset.version must be "1.1"'))
    ge = doc.get("geometricError")
    if not _is_number(ge) or ge < 0:
        issues.append(Issue("GEOMETRIC_ERROR", f"{p}#/geometricError", "must be a number >= 0"))
    used = doc.get("extensionsUsed", [])
    required = doc.get("extensionsRequired", [])
    if not isinstance(used, list) or not isinstance(required, list):
        issues.append(Issue("TYPE_MISMATCH", f"{p}#/extensionsUsed", "extension lists must be arrays"))
        used, required = [], []
    for name in required:
        if name not in ALLOWED_TILESET_REQUIRED:
            issues.append(Issue("EXTENSION_REQUIRED", f"{p}#/extensionsRequired", f"{name} is required"))
        if name not in used:
            issues.append(Issue("EXTENSION_REQUIRED_BUT_NOT_USED", f"{p}#/extensionsRequired", name))
    exts = doc.get("extensions", {})
    if isinstance(exts, dict):
        for name in exts:
            if name not in used:
                issues.append(Issue("EXTENSION_NOT_DECLARED", f"{p}#/extensions/{name}", name))
        if BATCHED_TILESET in exts:
            issues.extend(_check_models(exts[BATCHED_TILESET], f"{p}#/extensions/{BATCHED_TILESET}"))
    root = doc.get("root")
    if not isinstance(root, dict):
        issues.append(Issue("ROOT_MISSING", f"{p}#/root", "no root tile"))
        return issues
    if root.get("refine") not in ("ADD", "REPLACE"):
        issues.append(Issue("REFINE_MISSING", f"{p}#/root/refine", "the root needs refine ADD or REPLACE"))
    if _is_number(ge) and _is_number(root.get("geometricError")) and root["geometricError"] > ge:
        issues.append(
            Issue("GEOMETRIC_ERROR_INCREASING", f"{p}#/root", "root geometricError above the tileset's")
        )
    _check_tile(root, f"{p}#/root", None, issues)
    return issues


def _check_models(ext: Json, where: str) -> list[Issue]:
    issues: list[Issue] = []
    models = ext.get("models") if isinstance(ext, dict) else None
    if not isinstance(models, dict):
        return [Issue("MODELS_TABLE", where, "models must be an object keyed by model id")]
    for key, value in models.items():
        at = f"{where}/models/{key}"
        if not (isinstance(key, str) and key.startswith("0x") and len(key) > 2):
            issues.append(Issue("MODELS_TABLE", at, "model keys must be 0x-prefixed hex ids"))
        else:
            try:
                int(key, 16)
            except ValueError:
                issues.append(Issue("MODELS_TABLE", at, "model key is not hex"))
        extents = value.get("extents") if isinstance(value, dict) else None
        low = extents.get("low") if isinstance(extents, dict) else None
        high = extents.get("high") if isinstance(extents, dict) else None
        ok = all(isinstance(v, list) and len(v) == 3 and all(_is_number(x) for x in v) for v in (low, high))
        if not ok:
            issues.append(Issue("MODELS_TABLE", at, "extents need low and high of 3 numbers"))
            continue
        assert isinstance(low, list) and isinstance(high, list)
        null = all(lo > hi for lo, hi in zip(low, high, strict=True))
        if not null and any(lo > hi for lo, hi in zip(low, high, strict=True)):
            issues.append(Issue("MODELS_TABLE", at, "extents low above high"))
    return issues


def _box_of(volume: Json) -> NDArray[np.float64] | None:
    if not isinstance(volume, dict):
        return None
    box = volume.get("box")
    if isinstance(box, list) and len(box) == 12 and all(_is_number(v) for v in box):
        return np.asarray(box, np.float64)
    return None


def _box_corners(box: NDArray[np.float64]) -> NDArray[np.float64]:
    c, axes = box[:3], box[3:].reshape(3, 3)
    signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], np.float64)
    return np.asarray(c + signs @ axes, np.float64)


def _outside(box: NDArray[np.float64], points: NDArray[np.float64]) -> float:
    """How far (metres) the farthest of ``points`` lies outside ``box`` along its axes."""
    c, axes = box[:3], box[3:].reshape(3, 3)
    lengths = np.linalg.norm(axes, axis=1)
    units = np.zeros((3, 3))
    for i in range(3):
        if lengths[i] > 0:
            units[i] = axes[i] / lengths[i]
    for i in range(3):  # a flat box: its missing axis is normal to the other two
        if lengths[i] == 0:
            n = np.cross(units[(i + 1) % 3], units[(i + 2) % 3])
            if np.linalg.norm(n) > 0:
                units[i] = n / np.linalg.norm(n)
    d = np.abs((points - c) @ units.T) - lengths
    return float(d.max())


def _transform(value: Json) -> NDArray[np.float64] | None:
    if isinstance(value, list) and len(value) == 16 and all(_is_number(v) for v in value):
        return np.asarray(value, np.float64).reshape(4, 4).T  # column-major
    return None


def _check_tile(tile: Json, where: str, parent: dict[str, Any] | None, issues: list[Issue]) -> None:
    if not isinstance(tile, dict):
        issues.append(Issue("TYPE_MISMATCH", where, "a tile must be an object"))
        return
    ge = tile.get("geometricError")
    if not _is_number(ge) or ge < 0:
        issues.append(Issue("GEOMETRIC_ERROR", f"{where}/geometricError", "must be a number >= 0"))
        ge = None
    if "refine" in tile and tile["refine"] not in ("ADD", "REPLACE"):
        issues.append(Issue("REFINE_INVALID", f"{where}/refine", f"refine {tile['refine']!r}"))
    matrix = None
    if "transform" in tile:
        matrix = _transform(tile["transform"])
        if matrix is None:
            issues.append(Issue("TRANSFORM_INVALID", f"{where}/transform", "needs 16 numbers"))
    volume = tile.get("boundingVolume")
    box = _box_of(volume)
    if box is None:
        kind = next(iter(volume), "none") if isinstance(volume, dict) and volume else "none"
        issues.append(Issue("BOUNDING_VOLUME", f"{where}/boundingVolume", f"needs a box (got {kind})"))
    if parent is not None:
        pge = parent.get("geometricError")
        if ge is not None and _is_number(pge) and ge > pge:
            issues.append(
                Issue(
                    "GEOMETRIC_ERROR_INCREASING",
                    f"{where}/geometricError",
                    f"{ge} is above the parent's {pge}",
                )
            )
        pbox = _box_of(parent.get("boundingVolume"))
        if box is not None and pbox is not None:
            corners = _box_corners(box)
            if matrix is not None:
                corners = corners @ matrix[:3, :3].T + matrix[:3, 3]
            slack = CONTAIN_ABS + CONTAIN_REL * float(np.abs(pbox[:3]).max())
            out = _outside(pbox, corners)
            if out > slack:
                issues.append(
                    Issue(
                        "BOUNDING_VOLUMES_INCONSISTENT",
                        f"{where}/boundingVolume",
                        f"the child's box is {out:.6g} m outside its parent's",
                    )
                )
    content = tile.get("content")
    if content is not None:
        if not isinstance(content, dict) or not isinstance(content.get("uri"), str):
            issues.append(Issue("CONTENT_INVALID", f"{where}/content", "content needs a uri"))
        else:
            if content["uri"].lower().split("?")[0].endswith(".json"):
                issues.append(
                    Issue(
                        "EXTERNAL_TILESET", f"{where}/content", "external tilesets are not loaded by iTwin.js"
                    )
                )
            if "boundingVolume" in content:
                cbox = _box_of(content["boundingVolume"])
                if cbox is None:
                    issues.append(Issue("BOUNDING_VOLUME", f"{where}/content/boundingVolume", "needs a box"))
                elif box is not None:
                    slack = CONTAIN_ABS + CONTAIN_REL * float(np.abs(box[:3]).max())
                    out = _outside(box, _box_corners(cbox))
                    if out > slack:
                        issues.append(
                            Issue(
                                "CONTENT_BOUNDING_VOLUME_INCONSISTENT",
                                f"{where}/content/boundingVolume",
                                f"the content box is {out:.6g} m outside the tile's",
                            )
                        )
    children = tile.get("children")
    if children is not None:
        if not isinstance(children, list) or not children:
            issues.append(Issue("CHILDREN_EMPTY", f"{where}/children", "children must be a non-empty array"))
            return
        for i, child in enumerate(children):
            _check_tile(child, f"{where}/children/{i}", tile, issues)


# ---------------------------------------------------------------------------------------------------
# GLB


class _Glb:
    """A parsed GLB: JSON and the buffers' bytes (meshopt-compressed views decoded on demand)."""

    def __init__(self, doc: dict[str, Any], bin_chunk: bytes | None) -> None:
        self.doc = doc
        self.bin = bin_chunk
        self._views: dict[int, bytes] = {}

    def buffer(self, index: int) -> bytes | None:
        buffers = self.doc.get("buffers", [])
        if not (0 <= index < len(buffers)):
            return None
        b = buffers[index]
        if index == 0 and "uri" not in b and self.bin is not None:
            return self.bin
        return None  # external or a meshopt fallback buffer with no bytes

    def view(self, index: int) -> bytes:
        """The bytes of buffer view ``index`` (decoded when meshopt-compressed)."""
        if index in self._views:
            return self._views[index]
        bv = self.doc["bufferViews"][index]
        ext = (bv.get("extensions") or {}).get("EXT_meshopt_compression")
        if ext is not None:
            data = _meshopt_decode(ext, self.buffer(int(ext["buffer"])))
        else:
            buf = self.buffer(int(bv.get("buffer", 0)))
            if buf is None:
                raise ValueError(f"buffer view {index} has no data")
            off = int(bv.get("byteOffset", 0))
            data = buf[off : off + int(bv["byteLength"])]
        self._views[index] = data
        return data

    def accessor(self, index: int) -> NDArray[Any]:
        acc = self.doc["accessors"][index]
        dtype = np.dtype(_COMPONENT[int(acc["componentType"])])
        ncomp = _TYPE_COUNT[acc["type"]]
        count = int(acc["count"])
        if "bufferView" not in acc:
            return np.zeros((count, ncomp), dtype)
        bv = self.doc["bufferViews"][int(acc["bufferView"])]
        raw = self.view(int(acc["bufferView"]))
        esize = dtype.itemsize * ncomp
        stride = int(bv.get("byteStride", esize))
        start = int(acc.get("byteOffset", 0))
        need = stride * count
        chunk = raw[start : start + need]
        if len(chunk) < need:
            chunk = chunk + bytes(need - len(chunk))
        rows = np.frombuffer(chunk, np.uint8).reshape(count, stride)[:, :esize]
        return np.ascontiguousarray(rows).view(dtype).reshape(count, ncomp)


def _meshopt_decode(ext: dict[str, Any], buf: bytes | None) -> bytes:
    if buf is None:
        raise ValueError("meshopt source buffer has no data")
    off = int(ext.get("byteOffset", 0))
    src = buf[off : off + int(ext["byteLength"])]
    count, stride = int(ext["count"]), int(ext["byteStride"])
    mode = ext.get("mode")
    if mode == "ATTRIBUTES":
        out = mo.decode_vertex_buffer(count, stride, src, dtype=np.dtype(f"V{stride}"))
        data = np.frombuffer(out.tobytes(), np.uint8)
        flt = ext.get("filter", "NONE")
        if flt == "OCTAHEDRAL":
            data = mo.decode_filter_oct(data.copy(), count, stride)
        elif flt == "QUATERNION":
            data = mo.decode_filter_quat(data.copy(), count, stride)
        elif flt == "EXPONENTIAL":
            data = mo.decode_filter_exp(data.copy(), count, stride)
        return bytes(np.asarray(data, np.uint8).tobytes())
    if mode in ("TRIANGLES", "INDICES"):
        decode = mo.decode_index_buffer if mode == "TRIANGLES" else mo.decode_index_sequence
        idx = decode(count, stride, src)
        return bytes(idx.astype(np.uint16 if stride == 2 else np.uint32).tobytes())
    raise ValueError(f"unknown meshopt mode {mode!r}")


def check_glb(data: bytes, where: str = "content.glb") -> list[Issue]:
    """Header, chunks, buffers and the feature-id / property-table checks of one GLB."""
    issues: list[Issue] = []
    if len(data) < 20:
        return [Issue("GLB_INVALID", where, "too short for a GLB")]
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != 0x46546C67:
        return [Issue("GLB_INVALID", where, "bad magic (not glTF)")]
    if version != 2:
        issues.append(Issue("GLB_INVALID", where, f"GLB version {version}"))
    if length != len(data):
        issues.append(Issue("GLB_LENGTH", where, f"header length {length}, file {len(data)}"))
    jlen, jtype = struct.unpack_from("<II", data, 12)
    if jtype != 0x4E4F534A:
        return [*issues, Issue("GLB_INVALID", where, "first chunk is not JSON")]
    if jlen % 4:
        issues.append(Issue("GLB_CHUNK_ALIGNMENT", where, "JSON chunk length not a multiple of 4"))
    try:
        doc = json.loads(data[20 : 20 + jlen])
    except ValueError as exc:
        return [*issues, Issue("JSON_PARSE_ERROR", where, str(exc))]
    bin_chunk: bytes | None = None
    pos = 20 + jlen
    if pos + 8 <= len(data):
        blen, btype = struct.unpack_from("<II", data, pos)
        if btype != 0x004E4942:
            issues.append(Issue("GLB_INVALID", where, "second chunk is not BIN"))
        elif pos + 8 + blen > len(data):
            issues.append(Issue("GLB_LENGTH", where, "BIN chunk runs past the end"))
        else:
            if blen % 4:
                issues.append(Issue("GLB_CHUNK_ALIGNMENT", where, "BIN chunk length not a multiple of 4"))
            bin_chunk = data[pos + 8 : pos + 8 + blen]
    if not isinstance(doc, dict):
        return [*issues, Issue("TYPE_MISMATCH", where, "glTF JSON is not an object")]
    glb = _Glb(doc, bin_chunk)
    try:
        _check_gltf(glb, where, issues)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        issues.append(Issue("GLTF_INVALID", where, f"{type(exc).__name__}: {exc}"))
    return issues


def _check_gltf(glb: _Glb, where: str, issues: list[Issue]) -> None:
    doc = glb.doc
    used = doc.get("extensionsUsed", [])
    for name in doc.get("extensionsRequired", []):
        if name not in ALLOWED_GLTF_REQUIRED:
            issues.append(Issue("EXTENSION_REQUIRED", f"{where}#/extensionsRequired", f"{name} is required"))
        if name not in used:
            issues.append(Issue("EXTENSION_REQUIRED_BUT_NOT_USED", f"{where}#/extensionsRequired", name))
    buffers = doc.get("buffers", [])
    if (
        buffers
        and glb.bin is not None
        and "uri" not in buffers[0]
        and buffers[0]["byteLength"] > len(glb.bin)
    ):
        issues.append(Issue("BUFFER_LENGTH", f"{where}#/buffers/0", "byteLength beyond the BIN chunk"))
    for i, bv in enumerate(doc.get("bufferViews", [])):
        buf = glb.buffer(int(bv.get("buffer", 0)))
        if buf is not None and int(bv.get("byteOffset", 0)) + int(bv["byteLength"]) > len(buf):
            issues.append(Issue("BUFFER_VIEW_TOO_LONG", f"{where}#/bufferViews/{i}", "past its buffer"))
        ext = (bv.get("extensions") or {}).get("EXT_meshopt_compression")
        if ext is not None:
            src = glb.buffer(int(ext["buffer"]))
            if src is None or int(ext.get("byteOffset", 0)) + int(ext["byteLength"]) > len(src):
                issues.append(
                    Issue("BUFFER_VIEW_TOO_LONG", f"{where}#/bufferViews/{i}", "meshopt data missing")
                )
                continue
            try:
                glb.view(i)
            except (RuntimeError, ValueError) as exc:
                issues.append(Issue("MESHOPT_DECODE", f"{where}#/bufferViews/{i}", str(exc)))
    views = doc.get("bufferViews", [])
    for i, acc in enumerate(doc.get("accessors", [])):
        if "bufferView" not in acc:
            continue
        bv = views[int(acc["bufferView"])]
        esize = np.dtype(_COMPONENT[int(acc["componentType"])]).itemsize * _TYPE_COUNT[acc["type"]]
        stride = int(bv.get("byteStride", esize))
        end = int(acc.get("byteOffset", 0)) + stride * (int(acc["count"]) - 1) + esize
        if end > int(bv["byteLength"]):
            issues.append(Issue("ACCESSOR_TOO_LONG", f"{where}#/accessors/{i}", "past its buffer view"))
    meta = (doc.get("extensions") or {}).get("EXT_structural_metadata")
    table_counts: list[int] = []
    if meta is not None:
        table_counts = _check_metadata(glb, meta, f"{where}#/extensions/EXT_structural_metadata", issues)
    for m, mesh in enumerate(doc.get("meshes", [])):
        for p, prim in enumerate(mesh.get("primitives", [])):
            ext = (prim.get("extensions") or {}).get("EXT_mesh_features")
            if ext is None:
                continue
            at = f"{where}#/meshes/{m}/primitives/{p}/extensions/EXT_mesh_features"
            vertex_count = int(doc["accessors"][prim["attributes"]["POSITION"]]["count"])

            def ids_of(n: int, prim: dict[str, Any] = prim) -> NDArray[Any] | None:
                acc = prim["attributes"].get(f"_FEATURE_ID_{n}")
                return None if acc is None else glb.accessor(int(acc))

            _check_feature_ids(ext, ids_of, vertex_count, table_counts, at, issues)
    for n, node in enumerate(doc.get("nodes", [])):
        ext = (node.get("extensions") or {}).get("EXT_instance_features")
        if ext is None:
            continue
        at = f"{where}#/nodes/{n}/extensions/EXT_instance_features"
        inst = (node.get("extensions") or {}).get("EXT_mesh_gpu_instancing")
        if inst is None:
            issues.append(
                Issue("INSTANCE_FEATURES", at, "EXT_instance_features without EXT_mesh_gpu_instancing")
            )
            continue
        attrs = inst.get("attributes", {})
        count = int(doc["accessors"][next(iter(attrs.values()))]["count"]) if attrs else 0

        def inst_ids(k: int, attrs: dict[str, Any] = attrs) -> NDArray[Any] | None:
            acc = attrs.get(f"_FEATURE_ID_{k}")
            return None if acc is None else glb.accessor(int(acc))

        _check_feature_ids(ext, inst_ids, count, table_counts, at, issues)


def _check_feature_ids(
    ext: dict[str, Any],
    ids_of: Callable[[int], NDArray[Any] | None],
    implicit_count: int,
    table_counts: list[int],
    at: str,
    issues: list[Issue],
) -> None:
    for k, fid in enumerate(ext.get("featureIds", [])):
        here = f"{at}/featureIds/{k}"
        count = fid.get("featureCount")
        if not isinstance(count, int) or count < 1:
            issues.append(Issue("FEATURE_COUNT", here, "featureCount must be an integer >= 1"))
            continue
        null = fid.get("nullFeatureId")
        if "attribute" in fid:
            ids = ids_of(int(fid["attribute"]))
            if ids is None:
                issues.append(Issue("FEATURE_ID_ATTRIBUTE", here, f"no _FEATURE_ID_{fid['attribute']}"))
                continue
            values = ids.ravel().astype(np.float64)
            if len(values) and np.any(values != np.floor(values)):
                issues.append(Issue("FEATURE_ID_VALUE", here, "feature ids are not integers"))
        elif "texture" in fid:
            continue  # feature id textures: we write none
        else:
            values = np.arange(implicit_count, dtype=np.float64)
        if null is not None:
            values = values[values != null]
        distinct = np.unique(values)
        if len(distinct) > count:
            issues.append(
                Issue(
                    "FEATURE_COUNT_MISMATCH",
                    here,
                    f"{len(distinct)} distinct feature ids, featureCount {count}",
                )
            )
        table = fid.get("propertyTable")
        if table is not None and not (isinstance(table, int) and 0 <= table < len(table_counts)):
            issues.append(Issue("PROPERTY_TABLE_INDEX", here, f"no property table {table}"))
        elif table is not None and len(distinct):
            rows = table_counts[table]
            if distinct[0] < 0 or distinct[-1] >= rows:
                issues.append(
                    Issue(
                        "VALUE_NOT_IN_RANGE",
                        here,
                        f"feature ids in [{distinct[0]:g}, {distinct[-1]:g}], property table {table} "
                        f"has {rows} rows",
                    )
                )


def _check_metadata(glb: _Glb, meta: dict[str, Any], at: str, issues: list[Issue]) -> list[int]:
    """Check the property tables; returns each table's count (0 when invalid)."""
    classes = ((meta.get("schema") or {}).get("classes")) or {}
    views = glb.doc.get("bufferViews", [])
    counts: list[int] = []
    for t, table in enumerate(meta.get("propertyTables", [])):
        here = f"{at}/propertyTables/{t}"
        count = table.get("count")
        if not isinstance(count, int) or count < 1:
            issues.append(Issue("PROPERTY_TABLE_COUNT", here, "count must be an integer >= 1"))
            counts.append(0)
            continue
        counts.append(count)
        cls = classes.get(table.get("class"))
        if not isinstance(cls, dict):
            issues.append(Issue("CLASS_NOT_FOUND", here, f"class {table.get('class')!r} not in the schema"))
            continue
        cprops = cls.get("properties", {})
        for name, prop in (table.get("properties") or {}).items():
            ph = f"{here}/properties/{name}"
            definition = cprops.get(name)
            if definition is None:
                issues.append(Issue("PROPERTY_NOT_FOUND", ph, f"{name} is not a property of the class"))
                continue
            _check_property(glb, views, definition, prop, count, ph, issues)
    return counts


def _view_ok(views: list[Any], index: object, ph: str, issues: list[Issue]) -> int | None:
    if not (isinstance(index, int) and 0 <= index < len(views)):
        issues.append(Issue("BUFFER_VIEW_INDEX", ph, f"no buffer view {index}"))
        return None
    return index


def _aligned(views: list[Any], index: int, size: int, ph: str, what: str, issues: list[Issue]) -> None:
    off = int(views[index].get("byteOffset", 0))
    if off % size:
        issues.append(
            Issue(
                "METADATA_INVALID_ALIGNMENT",
                ph,
                f"{what} buffer view {index} at byteOffset {off}, not a multiple of {size}",
            )
        )


def _offsets(
    glb: _Glb, views: list[Any], index: int, n: int, otype: str, ph: str, what: str, issues: list[Issue]
) -> NDArray[np.uint64] | None:
    size = _META_SIZE.get(otype, 4)
    _aligned(views, index, size, ph, what, issues)
    raw = glb.view(index)
    if len(raw) != (n + 1) * size:
        issues.append(
            Issue("METADATA_INVALID_LENGTH", ph, f"{what}: {len(raw)} bytes for {n + 1} {otype} offsets")
        )
        return None
    offs = np.frombuffer(raw, _META_DTYPE.get(otype, np.uint32)).astype(np.uint64)
    if np.any(offs[1:] < offs[:-1]):
        issues.append(Issue("METADATA_INVALID_OFFSETS", ph, f"{what} are not ascending"))
        return None
    return offs


def _check_property(
    glb: _Glb,
    views: list[Any],
    definition: dict[str, Any],
    prop: dict[str, Any],
    count: int,
    ph: str,
    issues: list[Issue],
) -> None:
    values = _view_ok(views, prop.get("values"), ph, issues)
    if values is None:
        return
    ptype = definition.get("type", "")
    is_array = bool(definition.get("array", False))
    fixed = definition.get("count") if is_array else 1
    if ptype == "STRING":
        size = 1
    elif ptype == "BOOLEAN":
        size = 0
    elif ptype == "ENUM":
        size = _META_SIZE.get(definition.get("enumValueType", "UINT16"), 2)
    else:
        size = _META_SIZE.get(definition.get("componentType", ""), 0) * _TYPE_COUNT.get(ptype, 0)
        if size == 0:
            issues.append(Issue("PROPERTY_TYPE", ph, f"unknown type {ptype!r}"))
            return
        _aligned(views, values, _META_SIZE[definition["componentType"]], ph, "values", issues)
    if ptype in ("ENUM",):
        _aligned(views, values, size, ph, "values", issues)
    values_len = len(glb.view(values))
    elements = count
    if is_array and fixed is None:  # variable-length arrays: arrayOffsets count the elements
        a_index = _view_ok(views, prop.get("arrayOffsets"), ph, issues)
        if a_index is None:
            return
        a_type = prop.get("arrayOffsetType", "UINT32")
        offs = _offsets(glb, views, a_index, count, a_type, ph, "arrayOffsets", issues)
        if offs is None:
            return
        # Array offsets count elements (string offsets for strings, bits for booleans), not bytes.
        elements = int(offs[-1])
    elif is_array:
        elements = count * int(fixed or 0)
    if ptype == "STRING":
        s_index = _view_ok(views, prop.get("stringOffsets"), ph, issues)
        if s_index is None:
            return
        s_type = prop.get("stringOffsetType", "UINT32")
        offs = _offsets(glb, views, s_index, elements, s_type, ph, "stringOffsets", issues)
        if offs is not None and int(offs[-1]) != values_len:
            issues.append(
                Issue(
                    "METADATA_INVALID_LENGTH",
                    ph,
                    f"string offsets end at {int(offs[-1])}, values have {values_len} bytes",
                )
            )
        return
    expected = (elements + 7) // 8 if ptype == "BOOLEAN" else elements * size
    if values_len != expected:
        issues.append(
            Issue(
                "METADATA_INVALID_LENGTH",
                ph,
                f"values have {values_len} bytes, {elements} values need {expected}",
            )
        )
