"""iTwin.js's own binary tile format, iMdl: what ``@itwin/frontend-tiles`` reads in a Mesh Export of type
``IMODEL`` (``reference/imdl-format.md``).

    data = write_imdl(content, offset=origin, tolerance=0.01)

A tile is, little-endian throughout:

1. an 88-byte header: magic ``iMdl``, version (major << 16 | minor), header length, flags
   (``MultiModelFeatureTable``), the content range (tile coordinates), the chord tolerance, element counts
   and the tile's length;
2. the feature table: ``[byteLength, numSubCategories, count]``, then per feature ``[element id lo, hi,
   subcategory index | geometry class << 24]``, the subcategory ids, and per model ``[last feature index,
   model id lo, hi]`` (features grouped by model, ascending);
3. a glTF 1.0 container: the JSON scene (``meshes``, ``nodes.Node_Root``, ``materials`` as display
   params, ``bufferViews``), then the binary, every view on a 4-byte boundary of the file.

Each mesh primitive is a lit surface: a *vertex table* (an RGBA texture of 4 texels a vertex: 16-bit
quantized x, y, z; colour-table index; 24-bit feature index; material-atlas byte; oct-encoded normal; 2
unused bytes, then the colour table, premultiplied RGBA) and 24-bit triangle indices. Opaque and
translucent looks go to separate primitives (iTwin.js draws a vertex table in one pass).

Positions: the content is in iModel coordinates; ``offset`` is subtracted first (the tileset's root
transform adds it back), so the decoder's float32 quantization origin stays small. Quantization spans
the primitive's own range in 16 bits: a vertex moves by at most range / 131,070 per axis (the native
iTwin.js tiles quantize over the whole tile range, coarser still).

Part instances stay instances (``instances``: per instance a 3 x 4 float32 transform relative to a
centre, and a 24-bit feature index) when at least ``MIN_INSTANCES`` of them share the looks of every
piece (iMdl instances share their part's vertex table, colours included); the others, and mirroring
instances, are drawn flat. Lines are not written (nor are they in the GLB tiles).

With ``meshopt`` (the default for IMODEL exports, as for GLB tiles), each vertex table's vertices are
stored meshopt-encoded (vertex codec, 16-byte rows; the colour table raw after them:
``vertices.compressedSize``) and its indices as a meshopt index sequence of 32-bit indices
(``surface.compressedIndexCount``), both in the vertex-cache and fetch order meshoptimizer makes.

The version stamped is the lowest major the content needs: readers gate only on ``major <= their
CurrentImdlVersion.Major`` and read the header's ``emptySubRanges`` from major 2. Plain tiles (lit meshes,
colour tables, multi-model feature tables, the 88-byte header, whose length every reader honours) are
read alike by every core-frontend 4.x and 5.x, so they stamp 1.0 (``IMDL_VERSION``). meshopt-encoded
tables are read from the reader whose major is 36 (core-frontend 5.0.0-dev.112; 4.11.7's is 35 and has no
meshopt), so such tiles stamp 36.0 (``IMDL_MESHOPT_VERSION``): a 4.x frontend refuses them whole rather
than misreading them, and the list's ``tileVersion`` filter leaves them out for it.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import TileWriteError
from .glb import encode_index_sequence, encode_vertex_stream, optimize_fetch, optimize_strip
from .instances import concat_sets, flatten_instances
from .model import F64, TileContent, TriangleSet

MAGIC = 0x6C644D69  # "iMdl"
GLTF_MAGIC = 0x46546C67  # "glTF"
HEADER_LENGTH = 88
FEATURE_TABLE_HEADER = 12
#: (major, minor) stamped in plain and in meshopt-encoded tiles: see the module's docstring.
IMDL_VERSION = (1, 0)
IMDL_MESHOPT_VERSION = (36, 0)
FLAG_CONTAINS_CURVES = 1
FLAG_INCOMPLETE = 4
FLAG_MULTI_MODEL = 16
#: Texels a lit vertex takes in the vertex table.
LIT_RGBA = 4
#: Widest vertex table (a texture): 2048 is the smallest ``MAX_TEXTURE_SIZE`` WebGL 2 allows.
MAX_TEXTURE = 2048
#: Vertices of one primitive: the table's texels (the colour table takes the rest) and the 16-bit
#: colour indices bound it.
MAX_VERTICES = (MAX_TEXTURE * MAX_TEXTURE) // LIT_RGBA - 65536
SURFACE_LIT = 1
MESH_PRIMITIVE = 0
FEATURE_INDEX_UNIFORM = 1
FEATURE_INDEX_NON_UNIFORM = 2

U8 = NDArray[np.uint8]
U32 = NDArray[np.uint32]


@dataclass(frozen=True)
class ImdlTile:
    """A written tile and what its header says."""

    data: bytes
    low: F64  # content range, tile coordinates (iModel coordinates minus the offset)
    high: F64
    primitives: int
    features: int


def write_imdl(
    content: TileContent,
    *,
    offset: F64 | None = None,
    tolerance: float = 0.0,
    incomplete: bool = False,
    meshopt: bool = False,
    position_error: float | None = None,
) -> ImdlTile:
    """The iMdl bytes of ``content``. ``offset`` (3,) is subtracted from every position (default: none);
    ``tolerance`` is the chord tolerance the header reports; ``incomplete`` sets the header's flag for a
    tile that left out elements too small for it; ``meshopt``: vertex tables and indices meshopt-encoded
    (stamped ``IMDL_MESHOPT_VERSION``); ``position_error``: positions may move this much (metres) when
    that is more than the 16-bit grid's half step: a coarser grid, whose small integers meshopt packs
    tighter (the tile is off by its tolerance anyway)."""
    origin = np.zeros(3) if offset is None else np.asarray(offset, np.float64).reshape(3)
    n_features = len(content.features)
    instanced, flat = _instancing(content)
    tris = concat_sets(flat) if flat else TriangleSet.empty()
    too_far = int(tris.feature.max(initial=0)) >= n_features or int(tris.material.max(initial=0)) >= len(
        content.materials
    )
    if len(tris.indices) and too_far:
        raise TileWriteError("a vertex names a feature or material the tile does not have")
    order, words = _feature_table(content)
    # Feature rows as the table orders them (grouped by model).
    remap = np.empty(max(n_features, 1), np.uint32)
    remap[order] = np.arange(len(order), dtype=np.uint32)

    positions = np.asarray(tris.positions, np.float64) - origin
    if len(positions) and not np.isfinite(positions).all():
        raise TileWriteError("a position is not finite")
    writer = _Primitives(np.asarray(content.materials.rgba, np.uint8), meshopt, 2 * (position_error or 0.0))
    if len(tris.indices):
        features = remap[np.asarray(tris.feature, np.int64)]
        writer.add(tris.indices, positions, tris.normals, np.asarray(tris.material, np.int64), features)
    for group in instanced:
        writer.add_instanced(group, origin, remap)
    primitives, materials, binary = writer.primitives, writer.materials, writer.binary
    low, high = writer.low, writer.high
    scene: dict[str, Any] = {
        "bufferViews": binary.views,
        "meshes": {"Mesh_Root": {"primitives": primitives}},
        "nodes": {"Node_Root": "Mesh_Root"},
        "materials": materials,
    }
    if not primitives:
        low = np.full(3, np.finfo(np.float64).max)
        high = -low
    flags = FLAG_MULTI_MODEL | (FLAG_INCOMPLETE if incomplete else 0)
    elements = len(np.unique(np.asarray(content.features.element_ids)[order])) if n_features else 0
    version = IMDL_MESHOPT_VERSION if meshopt else IMDL_VERSION
    data = _assemble(
        words, n_features, content, scene, binary, low, high, tolerance, flags, elements, version
    )
    return ImdlTile(data, low, high, len(primitives), n_features)


# ---------------------------------------------------------------------------------------------------
# features


def _feature_table(content: TileContent) -> tuple[NDArray[np.int64], U32]:
    """The order of the features in the table (grouped by model, ascending model id) and the table's
    words after its 12-byte header."""
    table = content.features
    n = len(table)
    models = np.asarray(table.model_ids, np.uint64)
    order = np.argsort(models, kind="stable").astype(np.int64)
    subcats, sub_index = np.unique(np.asarray(table.subcategory_ids, np.uint64), return_inverse=True)
    if len(subcats) >= 1 << 24:
        raise TileWriteError("a tile has more than 2^24 subcategories")
    classes = np.asarray(table.geometry_classes, np.uint32)
    elements = np.asarray(table.element_ids, np.uint64)[order]
    per_feature = np.empty((n, 3), np.uint32)
    per_feature[:, 0] = (elements & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    per_feature[:, 1] = (elements >> np.uint64(32)).astype(np.uint32)
    per_feature[:, 2] = sub_index.astype(np.uint32)[order] | (classes[order] << np.uint32(24))
    per_sub = np.empty((len(subcats), 2), np.uint32)
    per_sub[:, 0] = (subcats & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    per_sub[:, 1] = (subcats >> np.uint64(32)).astype(np.uint32)
    sorted_models = models[order]
    if n:
        last = np.flatnonzero(np.append(sorted_models[1:] != sorted_models[:-1], True))
    else:
        last = np.zeros(0, np.int64)
    per_model = np.empty((len(last), 3), np.uint32)
    per_model[:, 0] = last.astype(np.uint32)
    per_model[:, 1] = (sorted_models[last] & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    per_model[:, 2] = (sorted_models[last] >> np.uint64(32)).astype(np.uint32)
    words = np.concatenate([per_feature.ravel(), per_sub.ravel(), per_model.ravel()])
    return order, words


# ---------------------------------------------------------------------------------------------------
# primitives


def _split(indices: NDArray[np.int64]) -> list[NDArray[np.int64]]:
    """Triangles in runs whose vertices fit one vertex table (each run takes at most 3 a triangle)."""
    if not len(indices):
        return []
    per_run = MAX_VERTICES // 3
    return [indices[i : i + per_run] for i in range(0, len(indices), per_run)]


class _Binary:
    """The glTF binary: named views, each starting on a 4-byte boundary."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.views: dict[str, dict[str, int]] = {}

    def add(self, name: str, data: bytes) -> str:
        self.views[name] = {"byteOffset": self.size, "byteLength": len(data)}
        pad = -len(data) % 4
        self.chunks.append(data + b"\0" * pad if pad else data)
        self.size += len(data) + pad
        return name


def _tbgr(rgba: U8) -> NDArray[np.int64]:
    """iTwin.js ColorDef ints (red in the low byte, transparency = 255 - alpha in the high byte)."""
    c = rgba.astype(np.int64)
    return c[:, 0] | (c[:, 1] << 8) | (c[:, 2] << 16) | ((255 - c[:, 3]) << 24)


def _premultiplied(rgba: U8) -> U8:
    """The colour table's entries: RGB scaled by alpha (rounded), all zero when alpha is 0."""
    c = rgba.astype(np.float64)
    out = np.floor(c[:, :3] * (c[:, 3:4] / 255.0) + 0.5)
    return np.concatenate([out, c[:, 3:4]], axis=1).astype(np.uint8)


def oct_encode(normals: NDArray[np.floating]) -> NDArray[np.uint16]:
    """Unit normals (n, 3) to iTwin.js's 16-bit oct-encoded normals (``OctEncodedNormal``)."""
    v = np.asarray(normals, np.float64).reshape(-1, 3)
    total = np.abs(v).sum(axis=1)
    total[total == 0] = 1.0
    x = v[:, 0] / total
    y = v[:, 1] / total
    below = v[:, 2] < 0
    sx = np.where(x >= 0, 1.0, -1.0)
    sy = np.where(y >= 0, 1.0, -1.0)
    fx = np.where(below, (1.0 - np.abs(y)) * sx, x)
    fy = np.where(below, (1.0 - np.abs(x)) * sy, y)
    qx = np.floor(0.5 + (np.clip(fx, -1.0, 1.0) * 0.5 + 0.5) * 255.0).astype(np.uint16)
    qy = np.floor(0.5 + (np.clip(fy, -1.0, 1.0) * 0.5 + 0.5) * 255.0).astype(np.uint16)
    return (qy << np.uint16(8)) | qx  # type: ignore[no-any-return]


def oct_decode(codes: NDArray[np.uint16]) -> NDArray[np.float64]:
    """The unit normals 16-bit oct codes stand for (as the shader decodes them)."""
    c = np.asarray(codes, np.uint16)
    x = (c & 0xFF).astype(np.float64) / 255.0 * 2.0 - 1.0
    y = (c >> 8).astype(np.float64) / 255.0 * 2.0 - 1.0
    z = 1.0 - np.abs(x) - np.abs(y)
    below = z < 0
    fx = np.where(below, (1.0 - np.abs(y)) * np.where(x >= 0, 1.0, -1.0), x)
    fy = np.where(below, (1.0 - np.abs(x)) * np.where(y >= 0, 1.0, -1.0), y)
    v = np.stack([fx, fy, z], axis=1)
    return v / np.linalg.norm(v, axis=1, keepdims=True)  # type: ignore[no-any-return]


def table_dimensions(vertices: int, colors: int) -> tuple[int, int]:
    """Width and height of a vertex table of ``vertices`` lit vertices and ``colors`` colour entries (as
    core-frontend's ``computeDimensions``: one row when it fits, else roughly square with whole
    vertices per row)."""
    texels = vertices * LIT_RGBA + colors
    if texels <= MAX_TEXTURE:
        return texels, 1
    width = math.ceil(math.sqrt(texels))
    width += -width % LIT_RGBA
    return width, math.ceil(texels / width)


#: Fewest instances of a part (with the same looks) drawn instanced; fewer are drawn flat.
MIN_INSTANCES = 2


@dataclass(eq=False)
class _Instanced:
    """Instances of one part with the same looks: ``part`` (part coordinates, ``material`` already the
    look rows), ``transforms`` (k, 4, 4) world from part, ``feature`` (k,) feature rows."""

    part: TriangleSet
    transforms: F64
    feature: U32


def _instancing(content: TileContent) -> tuple[list[_Instanced], list[TriangleSet]]:
    """The part instances iMdl draws instanced, and everything else as plain triangles. An iMdl instance
    has one colour set (its part's vertex table's): instances are grouped by the looks of their pieces,
    and a group of fewer than ``MIN_INSTANCES`` is drawn flat, as are mirroring instances (their
    triangles would turn inside out)."""
    flat = [content.triangles] if len(content.triangles.indices) else []
    groups: list[_Instanced] = []
    for pi in content.instances:
        if not pi.count or not len(pi.part.indices):
            continue
        transforms = np.asarray(pi.transforms, np.float64)
        mirrored = np.linalg.det(transforms[:, :3, :3]) < 0
        rows = np.asarray(pi.materials, np.int64).reshape(pi.count, -1)
        keep = np.flatnonzero(~mirrored)
        loose = [np.flatnonzero(mirrored)]
        if len(keep):
            distinct, which = np.unique(rows[keep], axis=0, return_inverse=True)
            which = which.reshape(-1)
            for g in range(len(distinct)):
                members = keep[which == g]
                if len(members) < MIN_INSTANCES:
                    loose.append(members)
                    continue
                part = pi.part
                looks = distinct[g][np.asarray(part.material, np.int64)].astype(np.uint32)
                groups.append(
                    _Instanced(
                        TriangleSet(part.positions, part.normals, part.indices, part.feature, looks),
                        transforms[members],
                        np.asarray(pi.feature, np.uint32)[members],
                    )
                )
        chosen = np.concatenate(loose)
        if len(chosen):
            flat.append(flatten_instances(pi, np.sort(chosen)))
    return groups, flat


class _Primitives:
    """The tile's mesh primitives, their display params and the binary they share."""

    def __init__(self, rgba: U8, meshopt: bool, min_step: float) -> None:
        self.rgba = rgba
        self.min_step = min_step
        self.translucent = rgba[:, 3] < 255 if len(rgba) else np.zeros(0, bool)
        self.meshopt = meshopt
        self.binary = _Binary()
        self.primitives: list[dict[str, Any]] = []
        self.materials: dict[str, Any] = {}
        self.low = np.full(3, np.inf)
        self.high = np.full(3, -np.inf)

    def add(
        self,
        indices: NDArray[np.uint32],
        positions: F64,
        normals: NDArray[np.float32],
        looks: NDArray[np.int64],
        features: U32 | None,
        instances: dict[str, Any] | None = None,
    ) -> None:
        """Triangles ``indices`` over per-vertex arrays (``features`` None: instanced, the instances
        carry them); opaque and translucent looks in separate primitives, each split to fit a vertex
        table."""
        tri = np.asarray(indices, np.int64).reshape(-1, 3)
        if not len(tri):
            return
        translucent = self.translucent[looks[tri[:, 0]]]
        for wanted in (False, True):
            for run in _split(tri[translucent == wanted]):
                self._one(run, positions, normals, looks, features, instances)

    def add_instanced(self, group: _Instanced, origin: F64, remap: U32) -> None:
        k = len(group.transforms)
        translations = group.transforms[:, :3, 3] - origin
        center = 0.5 * (translations.min(axis=0) + translations.max(axis=0))
        rows = np.empty((k, 3, 4), np.float32)
        rows[:, :, :3] = group.transforms[:, :3, :3]
        rows[:, :, 3] = translations - center
        ids = remap[np.asarray(group.feature, np.int64)].astype("<u4").view(np.uint8).reshape(k, 4)[:, :3]
        key = f"{len(self.primitives)}"
        instances = {
            "count": k,
            "transformCenter": [float(v) for v in center],
            "featureIds": self.binary.add(f"bvInstanceFeatures{key}", ids.tobytes()),
            "transforms": self.binary.add(f"bvInstanceTransforms{key}", rows.astype("<f4").tobytes()),
        }
        part = group.part
        positions = np.asarray(part.positions, np.float64)
        self.add(part.indices, positions, part.normals, np.asarray(part.material, np.int64), None, instances)
        # The instances' boxes bound what they draw in the tile (the corners of the part's box moved).
        low, high = positions.min(axis=0), positions.max(axis=0)
        corners = np.array(
            [[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])]
        )
        placed = np.einsum("kij,cj->kci", group.transforms[:, :3, :3], corners) + translations[:, None, :]
        self.low = np.minimum(self.low, placed.reshape(-1, 3).min(axis=0))
        self.high = np.maximum(self.high, placed.reshape(-1, 3).max(axis=0))

    def _one(
        self,
        triangles: NDArray[np.int64],
        positions: F64,
        normals: NDArray[np.float32],
        all_looks: NDArray[np.int64],
        all_features: U32 | None,
        instances: dict[str, Any] | None,
    ) -> None:
        binary = self.binary
        key = f"{len(self.primitives)}"
        used, local_ids = np.unique(triangles.ravel(), return_inverse=True)
        count = len(used)
        local: U32 = np.ascontiguousarray(local_ids, np.uint32)
        if self.meshopt:
            # Vertex-cache order, then vertices in first-use order: what meshopt's codecs compress best.
            local = optimize_strip(local, count)
            used = optimize_fetch(local, used)
        pos = positions[used]
        low = pos.min(axis=0)
        high = pos.max(axis=0)
        if instances is None:
            self.low = np.minimum(self.low, low)
            self.high = np.maximum(self.high, high)
        # The grid: 65,535 steps over the range, or steps of ``min_step`` over a range grown to 65,535 of
        # them (the reader rebuilds the scale from decodedMin/decodedMax, so either is read exactly).
        step = np.maximum((high - low) / 65535.0, self.min_step)
        top = np.where(step > 0, low + step * 65535.0, high)
        scale = np.where(step > 0, 1.0 / np.where(step > 0, step, 1.0), 0.0)
        q = np.floor(np.clip(0.5 + (pos - low) * scale, 0.0, 65535.0)).astype(np.uint16)

        distinct, color_index = np.unique(all_looks[used], return_inverse=True)
        colors = self.rgba[distinct]
        uniform = len(distinct) == 1
        n_colors = 0 if uniform else len(distinct)
        width, height = table_dimensions(count, n_colors)
        table = np.zeros(width * height * 4, np.uint8)
        vertex = table[: count * 16].reshape(count, 16)
        vertex[:, 0:6] = q.view(np.uint8).reshape(count, 6)
        if not uniform:
            vertex[:, 6:8] = color_index.astype("<u2").view(np.uint8).reshape(count, 2)
        if all_features is not None:
            features = all_features[used].astype("<u4")
            vertex[:, 8:11] = features.view(np.uint8).reshape(count, 4)[:, :3]
        encoded_normals = oct_encode(np.asarray(normals)[used]).astype("<u2")
        vertex[:, 12:14] = encoded_normals.view(np.uint8).reshape(count, 2)
        palette = _premultiplied(colors).ravel() if n_colors else np.zeros(0, np.uint8)
        table[count * 16 : count * 16 + len(palette)] = palette
        first = int(_tbgr(colors[:1])[0])
        material = f"Material{key}"
        self.materials[material] = {
            "type": 0,
            "fillColor": first,
            "lineColor": first,
            "lineWidth": 1,
            "linePixels": 0,
            "fillFlags": 0,
            "ignoreLighting": False,
        }
        surface: dict[str, Any] = {"type": SURFACE_LIT}
        vertices: dict[str, Any] = {}
        if self.meshopt:
            packed = encode_vertex_stream(vertex, count, 16)
            vertices["bufferView"] = binary.add(f"bvVertex{key}", packed + palette.tobytes())
            vertices["compressedSize"] = len(packed)
            surface["indices"] = binary.add(f"bvIndices{key}", encode_index_sequence(local, count))
            surface["compressedIndexCount"] = len(local)
        else:
            vertices["bufferView"] = binary.add(f"bvVertex{key}", table.tobytes())
            index_bytes = local.astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3]
            surface["indices"] = binary.add(f"bvIndices{key}", index_bytes.tobytes())
        vertices.update(
            {
                "count": count,
                "numRgbaPerVertex": LIT_RGBA,
                "numColors": n_colors,
                "width": width,
                "height": height,
                "hasTranslucency": bool((colors[:, 3] < 255).any()),
                "params": {"decodedMin": [float(v) for v in low], "decodedMax": [float(v) for v in top]},
            }
        )
        if all_features is None:
            # The instances carry the features: each vertex names none of its own.
            vertices.update({"featureIndexType": FEATURE_INDEX_UNIFORM, "featureID": 0})
        else:
            vertices["featureIndexType"] = FEATURE_INDEX_NON_UNIFORM
        if uniform:
            vertices["uniformColor"] = first
        primitive: dict[str, Any] = {
            "type": MESH_PRIMITIVE,
            "material": material,
            "isPlanar": False,
            "surface": surface,
            "vertices": vertices,
        }
        if instances is not None:
            primitive["instances"] = instances
        self.primitives.append(primitive)


# ---------------------------------------------------------------------------------------------------
# the file


def _assemble(
    words: U32,
    n_features: int,
    content: TileContent,
    scene: dict[str, Any],
    binary: _Binary,
    low: F64,
    high: F64,
    tolerance: float,
    flags: int,
    elements: int,
    version: tuple[int, int],
) -> bytes:
    n_subcats = len(np.unique(np.asarray(content.features.subcategory_ids, np.uint64)))
    table = (
        struct.pack("<3I", FEATURE_TABLE_HEADER + 4 * len(words), n_subcats, n_features)
        + words.astype("<u4").tobytes()
    )
    text = json.dumps(scene, separators=(",", ":")).encode()
    # The JSON is padded with spaces so the binary (and every view in it) starts on a 4-byte boundary of
    # the file: the header and the feature table are whole words, and so is the 20-byte glTF header.
    text += b" " * (-len(text) % 4)
    body = b"".join(binary.chunks)
    gltf_length = 20 + len(text) + len(body)
    total = HEADER_LENGTH + len(table) + gltf_length
    major, minor = version
    header = struct.pack(
        "<4I6ddIIII",
        MAGIC,
        (major << 16) | minor,
        HEADER_LENGTH,
        flags,
        *[float(v) for v in low],
        *[float(v) for v in high],
        float(tolerance),
        elements,
        0,
        total,
        0,
    )
    assert len(header) == HEADER_LENGTH
    gltf = struct.pack("<5I", GLTF_MAGIC, 1, gltf_length, len(text), 0)
    return header + table + gltf + text + body
