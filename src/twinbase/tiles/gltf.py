"""One binary glTF 2.0 (GLB) from a ``TileContent``: triangles, looks, per-feature identity, part instances.

What the file holds (the choices, and why):

- **Coordinates.** Positions are written relative to ``origin`` (float64, default the content's box
  centre) so float32 keeps millimetres far from the iModel's origin; the origin goes into the root node's
  translation, a JSON double. With ``y_up`` (glTF's convention, default) the root node also carries a
  rotation of -90° about X, so a point at iModel (x, y, z) lands at glTF (x, z, -y). Positions are stored
  in iModel axes: the rotation lives in the node, not in the vertex data, which keeps the quantization grid
  axis-aligned with the content. The scene is ``root → triangles node, instanced nodes``.
- **Primitives.** The triangles are grouped by their ``MaterialTable`` row: one TRIANGLES primitive per row
  used. Materials are metallic-roughness with the row's colour converted from sRGB bytes to linear
  ``baseColorFactor``, metallic 0 and roughness 0.9 (iTwin.js's default look is a matte plastic),
  ``alphaMode`` BLEND when alpha < 255 and ``doubleSided`` from the table. Texture coordinates are not
  written (the model carries no textures yet).
- **Identity.** Each vertex carries ``_FEATURE_ID_0`` (its ``FeatureTable`` row) under ``EXT_mesh_features``
  pointing at property table 0 of ``EXT_structural_metadata`` (see ``metadata``), which has exactly one row
  per ``FeatureTable`` row, as given. The attribute is UNSIGNED_BYTE up to 256 rows, UNSIGNED_SHORT up to
  65,536, else FLOAT (exact to 2^24, the limit here); the small types sit in 4-byte slots (glTF aligns
  every vertex attribute element to 4 bytes). ``featureCount`` is what the extension defines: the number of
  distinct ids in the attribute (the accessor, which a mesh's primitives share; see **meshopt**) or in
  the instanced node's ids. Material extras carry the ``MaterialTable`` row (and the render material id
  when there is one).
- **Instances.** Each ``PartInstances`` writes its part once (one primitive per piece) and draws it with
  ``EXT_mesh_gpu_instancing`` (TRANSLATION / ROTATION / SCALE) plus ``EXT_instance_features`` for the
  per-instance feature id. Instances whose piece looks differ go to different nodes (a mesh has fixed
  materials); the nodes share the part's vertex data. Transforms that are not T * R * S (shear, mirror,
  collapsed axis) are drawn as plain triangles instead (``GlbStats.flattened_instances``).
- **meshopt.** Positions become uint16 on a uniform grid (``KHR_mesh_quantization``; dequantized by the
  mesh node's translation and scale, or folded into each instance's TRS): 16 bits over the largest
  extent, or with ``position_tolerance`` a step of twice it, which keeps every corner within it (a part's
  grid is finer by its instances' largest scale). Normals are int8 normalized after the ``OCTAHEDRAL`` filter
  (8-bit octahedral codes; see ``quantize``). Each primitive's triangles are put in meshopt's strip-
  friendly vertex-cache order and its vertices in fetch order (the index codec and the vertex deltas
  compress that order best). A mesh's primitives share one set of vertex accessors and draw their own
  ranges of one index stream when uint16 indices reach every vertex (fewer accessors; the index codec's
  "next vertex" runs on across primitives). All vertex, index and instance streams and the property
  table's id columns are stored ``EXT_meshopt_compression``-encoded. With ``position_tolerance`` the
  instance streams are filtered too: translations and scales ``EXPONENTIAL`` (fixed point), rotations
  ``QUATERNION`` (the fewest bits that keep every corner in its share of the tolerance; the part's grid
  gets ``GRID_SHARE`` of it, each stream ``STREAM_SHARE``). Both extensions are then
  required; ``EXT_mesh_gpu_instancing`` is required when used (without it a viewer would draw one instance
  at the origin); the metadata extensions never are. Without meshopt the data is plain float32 / uint32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from twinbase.tiles.errors import TileWriteError
from twinbase.tiles.glb import (
    BYTE,
    FLOAT,
    MESHOPT,
    SHORT,
    UNSIGNED_BYTE,
    UNSIGNED_INT,
    UNSIGNED_SHORT,
    BinBuilder,
    Memo,
    optimize_fetch,
    optimize_strip,
    pack_glb,
)
from twinbase.tiles.instances import concat_sets, flatten_instances
from twinbase.tiles.metadata import structural_metadata
from twinbase.tiles.model import F64, FeatureTable, MaterialTable, PartInstances, TileContent, TriangleSet
from twinbase.tiles.quantize import (
    column_max,
    column_min,
    decode_quaternions,
    exponential_codes,
    normals_to_oct8,
    quantize_positions_top,
    quaternion_codes_by_bits,
    srgb_to_linear,
)
from twinbase.tiles.transforms import Decomposed, decompose, quaternion_to_matrix

I64 = NDArray[np.int64]

ROUGHNESS = 0.9
# -90° about X (x, y, z, w): glTF (x, y, z) = iModel (x, z, -y).
Y_UP_QUATERNION = [-math.sqrt(0.5), 0.0, 0.0, math.sqrt(0.5)]
Y_UP_MATRIX = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
MAX_FEATURES = 2**24  # FLOAT feature ids are exact integers up to here
TRIANGLES = 4
#: With a position tolerance, the share of it an instanced part's grid gets; each of the instances'
#: translation, rotation and scale streams gets ``STREAM_SHARE`` (they add up to the whole tolerance).
GRID_SHARE = 0.7
STREAM_SHARE = 0.1
#: The QUATERNION filter's code widths, tried narrowest first.
QUATERNION_BITS = range(8, 17)

MESH_FEATURES = "EXT_mesh_features"
INSTANCE_FEATURES = "EXT_instance_features"
STRUCTURAL_METADATA = "EXT_structural_metadata"
GPU_INSTANCING = "EXT_mesh_gpu_instancing"
QUANTIZATION = "KHR_mesh_quantization"


@dataclass(frozen=True)
class GlbStats:
    triangles: int  # triangles stored (an instanced part counts once)
    drawn_triangles: int  # triangles drawn (an instanced part counts once per instance)
    vertices: int  # vertices stored
    bytes: int
    features: int  # property-table rows
    instances: int  # instances drawn by EXT_mesh_gpu_instancing
    flattened_instances: int  # instances written as plain triangles (shear, mirror, collapsed axis)
    primitives: int
    materials: int


@dataclass(frozen=True)
class GlbResult:
    data: bytes
    stats: GlbStats


def write_glb(
    content: TileContent,
    *,
    origin: F64 | None = None,
    y_up: bool = True,
    meshopt: bool = True,
    position_tolerance: float | None = None,
) -> bytes:
    """The GLB bytes of ``content`` (see the module doc); ``encode_glb`` also returns statistics.

    ``position_tolerance`` (metres, meshopt only): the largest position error allowed by quantization;
    None keeps 16-bit grids (``step / 2`` error). A tile can pass a fraction of its geometric error."""
    return encode_glb(
        content, origin=origin, y_up=y_up, meshopt=meshopt, position_tolerance=position_tolerance
    ).data


# --------------------------------------------------------------------------------------------------
# input checks


def _arr(value: Any, where: str, shape: tuple[int | None, ...], kind: str) -> np.ndarray:
    a = np.asarray(value)
    if a.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(a.shape, shape, strict=True)
    ):
        raise TileWriteError(
            f"{where}: shape {a.shape}, expected {tuple('n' if s is None else s for s in shape)}"
        )
    if a.dtype.kind not in kind:
        raise TileWriteError(
            f"{where}: dtype {a.dtype} is not {'integer' if kind in ('iu', 'u') else 'numeric'}"
        )
    return a


def _check_range(a: np.ndarray, limit: int, where: str) -> None:
    if not a.size:
        return
    if a.dtype.kind == "u":
        # no negatives to look for, and a type that cannot reach the limit needs no look at all
        if limit >= 1 << (8 * a.dtype.itemsize) or int(a.max()) < limit:
            return
    elif int(a.min()) >= 0 and int(a.max()) < limit:
        return
    raise TileWriteError(f"{where}: values in [{int(a.min())}, {int(a.max())}] outside [0, {limit})")


def _finite(a: np.ndarray) -> bool:
    """Every value finite: a NaN makes the minimum NaN and an infinity is the minimum or the maximum, so
    two reductions answer without the boolean array ``isfinite`` would make."""
    a = np.asarray(a)
    if not a.size or a.dtype.kind in "iub":
        return True
    return bool(np.isfinite(a.min()) and np.isfinite(a.max()))


def _check_set(ts: TriangleSet, where: str, n_features: int | None, n_materials: int) -> None:
    n = len(_arr(ts.positions, f"{where}.positions", (None, 3), "fiu"))
    _arr(ts.normals, f"{where}.normals", (n, 3), "fiu")
    idx = _arr(ts.indices, f"{where}.indices", (None, 3), "iu")
    feature = _arr(ts.feature, f"{where}.feature", (n,), "iu")
    material = _arr(ts.material, f"{where}.material", (n,), "iu")
    _check_range(idx, n, f"{where}.indices")
    if n_features is not None:
        _check_range(feature, n_features, f"{where}.feature")
    _check_range(material, n_materials, f"{where}.material")
    if not (_finite(ts.positions) and _finite(ts.normals)):
        raise TileWriteError(f"{where}: non-finite positions or normals")


def _check(content: TileContent) -> None:
    f: FeatureTable = content.features
    n_f = len(_arr(f.element_ids, "features.element_ids", (None,), "iu"))
    for name in ("element_ids", "model_ids", "category_ids", "subcategory_ids", "geometry_classes"):
        column = _arr(getattr(f, name), f"features.{name}", (n_f,), "iu")
        _check_range(column, 256 if name == "geometry_classes" else 2**64, f"features.{name}")
    if not all(isinstance(v, str) for v in f.class_names) or not all(
        v is None or isinstance(v, str) for v in f.labels
    ):
        raise TileWriteError("features: class names must be strings, labels strings or None")
    if len(f.class_names) != n_f or len(f.labels) != n_f:
        raise TileWriteError(
            f"features: {len(f.class_names)} class names, {len(f.labels)} labels for {n_f} rows"
        )
    if n_f > MAX_FEATURES:
        raise TileWriteError(f"features: {n_f} rows, at most {MAX_FEATURES} per GLB")
    m: MaterialTable = content.materials
    n_m = len(_arr(m.rgba, "materials.rgba", (None, 4), "iu"))
    _check_range(m.rgba, 256, "materials.rgba")
    _arr(m.render_material_ids, "materials.render_material_ids", (n_m,), "iu")
    _arr(m.double_sided, "materials.double_sided", (n_m,), "biu")
    _check_set(content.triangles, "triangles", n_f, n_m)
    for i, pi in enumerate(content.instances):
        where = f"instances[{i}]"
        k = len(_arr(pi.transforms, f"{where}.transforms", (None, 4, 4), "fiu"))
        _arr(pi.feature, f"{where}.feature", (k,), "iu")
        mats = _arr(pi.materials, f"{where}.materials", (k, None), "iu")
        _check_set(pi.part, f"{where}.part", None, mats.shape[1])
        _check_range(pi.feature, n_f, f"{where}.feature")
        _check_range(mats, n_m, f"{where}.materials")
        t = np.asarray(pi.transforms, np.float64)
        if not np.isfinite(t).all():
            raise TileWriteError(f"{where}.transforms: non-finite values")
        if k and np.abs(t[:, 3, :] - [0.0, 0.0, 0.0, 1.0]).max() > 1e-12:
            raise TileWriteError(f"{where}.transforms: not affine (last row must be 0 0 0 1)")


# --------------------------------------------------------------------------------------------------
# triangles grouped into primitives


@dataclass(eq=False)
class _Groups:
    keys: I64  # (g,) the key of each group (material row, or part piece)
    order: I64  # (v,) source vertex of each written vertex; groups contiguous
    indices: NDArray[np.uint32]  # (m, 3) indices local to the group's vertex range
    vstart: I64  # (g + 1,) vertex range of each group
    tstart: I64  # (g + 1,) triangle range of each group


def _small_keys(key: np.ndarray, limit: int) -> np.ndarray:
    """Keys in the narrowest unsigned type: numpy's stable argsort is a radix sort up to 16 bits."""
    dtype = np.uint8 if limit <= 256 else np.uint16 if limit <= 65536 else np.uint32
    return np.asarray(key).astype(dtype, copy=False)


#: Groupings of small triangle sets by their inputs' bytes (an instanced part's repeat in tile after tile).
_GROUPS: Memo[_Groups] = Memo(256)
#: Octahedral normal codes by the normals' bytes.
_OCT: Memo[NDArray[np.int8]] = Memo(256)


def _normal_codes(normals: np.ndarray) -> NDArray[np.int8]:
    v = np.ascontiguousarray(normals, np.float32)
    key = v.tobytes() if v.nbytes <= Memo.MAX_KEY_BYTES else b""
    found = _OCT.get(key) if key else None
    if found is not None:
        return found
    codes = normals_to_oct8(v)
    codes.flags.writeable = False
    return _OCT.put(key, codes) if key else codes


def _group(indices: np.ndarray, key: np.ndarray, n: int, optimize: bool, where: str) -> _Groups:
    """``_grouped``, memoized for small inputs (the result's arrays are then read-only)."""
    idx = np.ascontiguousarray(indices)
    k = np.ascontiguousarray(key)
    memo = b""
    if idx.nbytes + k.nbytes <= Memo.MAX_KEY_BYTES:
        head = f"{n}:{int(optimize)}:{idx.dtype.str}:{idx.shape}:{k.dtype.str}:".encode()
        memo = head + idx.tobytes() + k.tobytes()
        found = _GROUPS.get(memo)
        if found is not None:
            return found
    groups = _grouped(idx, k, n, optimize, where)
    if memo:
        for a in (groups.keys, groups.order, groups.indices, groups.vstart, groups.tstart):
            a.flags.writeable = False
        _GROUPS.put(memo, groups)
    return groups


def _grouped(indices: np.ndarray, key: np.ndarray, n: int, optimize: bool, where: str) -> _Groups:
    """Split indexed triangles by a per-vertex key. Only referenced vertices are kept; with ``optimize``
    each group's triangles go in vertex-cache order and its vertices in first-use order (meshopt)."""
    idx = np.asarray(indices)
    key = np.asarray(key)
    # (np.take and bincount instead of fancy indexing and scatters: the same values, several times faster)
    if np.can_cast(idx.dtype, np.intp):
        used = np.bincount(idx.reshape(-1), minlength=n).astype(bool, copy=False)
    else:
        used = np.zeros(n, bool)
        used[idx.reshape(-1)] = True
    lo = int(key.min()) if len(key) else 0
    limit = int(key.max()) + 1 if len(key) else 1
    if len(idx) and lo == limit - 1:
        # One key (an instanced part's single piece, a one-look tile): no sorting, and when every vertex
        # is referenced (the usual case) the indices are already the group's.
        keys = np.array([lo], np.int64)
        if np.count_nonzero(used) == n:
            order = np.arange(n, dtype=np.int64)
            local = idx.astype(np.uint32)  # a copy: reordered below
        else:
            order = np.flatnonzero(used).astype(np.int64)
            local_of = np.zeros(n, np.uint32)
            local_of[order] = np.arange(len(order), dtype=np.uint32)
            local = local_of.take(idx)
        vstart = np.array([0, len(order)], np.int64)
        tstart = np.array([0, len(idx)], np.int64)
    else:
        key = _small_keys(key, limit)
        corner_keys = key.take(idx)
        tkey = corner_keys[:, 0]
        if len(idx) and ((corner_keys[:, 1] != tkey) | (corner_keys[:, 2] != tkey)).any():
            raise TileWriteError(f"{where}: a triangle's vertices name different materials")
        kept = np.flatnonzero(used)
        order = kept[np.argsort(key[kept], kind="stable")].astype(np.int64)
        tcount_all = np.bincount(tkey, minlength=limit)
        keys = np.flatnonzero(tcount_all)
        vcounts = np.bincount(key[kept], minlength=limit)[keys].astype(np.int64)
        vstart = np.zeros(len(keys) + 1, np.int64)
        np.cumsum(vcounts, out=vstart[1:])
        tstart = np.zeros(len(keys) + 1, np.int64)
        np.cumsum(tcount_all[keys], out=tstart[1:])
        # Each vertex's index inside its own group, so one gather gives group-local triangles.
        local_of = np.zeros(n, np.uint32)
        local_of[order] = np.arange(len(order), dtype=np.int64) - np.repeat(vstart[:-1], vcounts)
        local = local_of.take(idx.take(np.argsort(tkey, kind="stable"), axis=0))
    if optimize:
        for g in range(len(keys)):
            vs, ve, ts, te = int(vstart[g]), int(vstart[g + 1]), int(tstart[g]), int(tstart[g + 1])
            nv = ve - vs
            # The strip-friendly order: consecutive triangles share edges more often than in the
            # cache-optimal order, which the index codec and the vertex deltas compress better.
            cache = optimize_strip(local[ts:te], nv)
            # Vertices in first-use order: meshopt moves the group's source vertex numbers (as 8-byte
            # "vertices") and renumbers the indices in place, in one pass.
            order[vs:ve] = optimize_fetch(cache, order[vs:ve])
            local[ts:te] = cache.reshape(-1, 3)
    return _Groups(keys.astype(np.int64), order, local, vstart, tstart)


def _distinct_rows(rows: I64, base: int) -> tuple[I64, I64]:
    """``np.unique(rows, axis=0, return_inverse=True)`` of (k, p) ``rows`` of values in ``[0, base)``: the
    distinct rows in lexicographic order and each row's index among them. A row read as a base-``base``
    number sorts the same, and numpy's unique of one integer column is many times faster than of rows."""
    p = rows.shape[1]
    if p == 0 or base**p >= 2**62:
        looks, which = np.unique(rows, axis=0, return_inverse=True)
        return looks, which.reshape(-1)
    number = rows[:, 0].copy()
    for j in range(1, p):
        number *= base
        number += rows[:, j]
    if len(number) <= 64:
        # a part's few instances in a tile: Python's set and sort beat np.unique's setup
        numbers = number.tolist()
        firsts: dict[int, int] = {}
        for i, v in enumerate(numbers):
            firsts.setdefault(v, i)
        distinct = sorted(firsts)
        rank = {v: r for r, v in enumerate(distinct)}
        return rows[[firsts[v] for v in distinct]], np.array([rank[v] for v in numbers], np.int64)
    _, first, which = np.unique(number, return_index=True, return_inverse=True)
    return rows[first], which.reshape(-1)


def _feature_id_type(n_features: int) -> int:
    if n_features <= 256:
        return UNSIGNED_BYTE
    if n_features <= 65536:
        return UNSIGNED_SHORT
    return FLOAT


def _feature_id_elements(ids: np.ndarray, component_type: int) -> np.ndarray:
    """One 4-byte slot per id: little-endian uint32 holds a u8 / u16 in its first bytes."""
    if component_type == FLOAT:
        return np.asarray(ids, np.float32)
    return np.asarray(ids, "<u4")


def _distinct_per_group(ids: np.ndarray, starts: I64, n_features: int) -> I64:
    """Number of distinct ids in each contiguous group (``featureCount``)."""
    g = len(starts) - 1
    group = np.repeat(np.arange(g, dtype=np.int64), np.diff(starts))
    pairs = group * n_features + np.asarray(ids, np.int64)
    if g * n_features <= 1 << 25:
        # a mark per (group, id) is linear; the sort below is not
        marks = np.zeros(g * n_features, bool)
        marks[pairs] = True
        counts: I64 = np.count_nonzero(marks.reshape(g, n_features), axis=1).astype(np.int64)
        return counts
    return np.bincount(np.unique(pairs) // n_features, minlength=g).astype(np.int64)


@dataclass(eq=False)
class _Streams:
    attributes: list[dict[str, int]]  # per group
    indices: list[int]  # index accessor per group
    offset: F64  # dequantization: position = offset + step * stored
    step: float
    shared: bool  # every primitive reads the same vertex accessors (the whole vertex range)
    top: F64  # (3,) the largest stored coordinate on each axis (0 when not quantized)


def _write_streams(
    b: BinBuilder,
    positions: F64,
    normals: np.ndarray,
    groups: _Groups,
    fid: np.ndarray | None,
    fid_type: int,
    quantize: bool,
    tolerance: float | None = None,
) -> _Streams:
    g = len(groups.keys)
    starts = groups.vstart[:-1]
    counts = np.diff(groups.vstart)
    top = np.zeros(3)
    grid_max = None
    if quantize:
        # both callers hand over a fresh copy of the positions (gathered in vertex order)
        q, offset, step, grid_max = quantize_positions_top(positions, tolerance, scratch=True)
        top = grid_max.astype(np.float64)
        pos_view, pos_type, pos_stride, vals = b.attribute_view(q, vertex=True), UNSIGNED_SHORT, 8, q[:, :3]
        nrm_view = b.attribute_view(_normal_codes(normals), vertex=True, filter="OCTAHEDRAL")
        nrm_type, nrm_stride = BYTE, 4
    else:
        offset, step = np.zeros(3), 1.0
        vals = positions.astype(np.float32)
        pos_view, pos_type, pos_stride = b.attribute_view(vals, vertex=True), FLOAT, 12
        nrm32 = np.asarray(normals, np.float32)
        nrm_view, nrm_type, nrm_stride = b.attribute_view(nrm32, vertex=True), FLOAT, 12
    fid_view = b.attribute_view(_feature_id_elements(fid, fid_type), vertex=True) if fid is not None else -1
    total = len(groups.order)
    # One set of vertex accessors for all the mesh's primitives (each primitive draws its own index range
    # of them) when one index type holds every vertex: fewer accessors in the JSON, and one index stream
    # whose "next vertex" runs on across the groups, which the index codec likes. Else per-group accessors
    # with group-local uint16 indices where they fit.
    shared = not quantize or total <= 65535
    if shared:
        index_size = 2 if quantize else 4
        indices = groups.indices.copy()
        for i in range(1, g):
            indices[groups.tstart[i] : groups.tstart[i + 1]] += np.uint32(starts[i])
        max_vertices = total
        spans = [(0, total)] if g else []
    else:
        indices = groups.indices
        max_vertices = int(counts.max()) if g else 0
        # 65535 is UNSIGNED_SHORT's primitive-restart value, which glTF forbids as an index.
        index_size = 2 if max_vertices <= 65535 else 4
        spans = [(int(starts[i]), int(counts[i])) for i in range(g)]
    idx_view = b.index_view(indices, max_vertices, index_size)
    vertex_accessors: list[dict[str, int]] = []
    for vs, nv in spans:
        lo: list[float]
        hi: list[float]
        if grid_max is not None and nv == total:
            # the whole grid: its codes run from 0 to the largest (see quantize_positions_top); ints, as
            # the codes' JSON bounds were written
            lo, hi = [0, 0, 0], grid_max.tolist()
        else:
            lo = column_min(vals[vs : vs + nv]).tolist()
            hi = column_max(vals[vs : vs + nv]).tolist()
        attrs = {
            "POSITION": b.accessor(pos_view, pos_type, nv, "VEC3", byte_offset=vs * pos_stride, lo=lo, hi=hi),
            "NORMAL": b.accessor(
                nrm_view, nrm_type, nv, "VEC3", byte_offset=vs * nrm_stride, normalized=quantize
            ),
        }
        if fid is not None:
            attrs["_FEATURE_ID_0"] = b.accessor(fid_view, fid_type, nv, "SCALAR", byte_offset=vs * 4)
        vertex_accessors.append(attrs)
    attributes = [vertex_accessors[0 if shared else i] for i in range(g)]
    itype = UNSIGNED_SHORT if index_size == 2 else UNSIGNED_INT
    index_accessors = [
        b.accessor(
            idx_view,
            itype,
            int(groups.tstart[i + 1] - groups.tstart[i]) * 3,
            "SCALAR",
            byte_offset=int(groups.tstart[i]) * 3 * index_size,
        )
        for i in range(g)
    ]
    return _Streams(attributes, index_accessors, offset, step, shared, top)


# --------------------------------------------------------------------------------------------------
# instances


#: Relative margin around the Frobenius bounds in ``_moves_within``: far above the few ulps by which the
#: computed Frobenius and spectral norms can stray from the exact ones.
_BOUND_SLACK = 1e-9


def _first_within(d: F64, radius: F64, share: float) -> int:
    """The first level ``l`` of (levels, k, 3, 3) ``d`` with ``max_k |d_lk|_2 * radius_k <= share``, as
    ``np.linalg.norm(ord=2)`` decides it (else the last level).

    The spectral norm is an SVD per matrix, once the writer's most expensive step on instanced tiles; the
    Frobenius norm bounds it on both sides (``|d|_2 <= |d|_F <= sqrt(3) |d|_2``), so the SVD runs only
    on the rows those bounds leave undecided, and the answer is the one the SVD of every row gives."""
    reach = np.sqrt(np.einsum("lkij,lkij->lk", d, d)) * radius
    beyond = (reach > math.sqrt(3.0) * share * (1.0 + _BOUND_SLACK)).any(axis=1)
    undecided = reach > share * (1.0 - _BOUND_SLACK)
    for level in range(len(d)):
        if beyond[level]:
            continue
        rows = undecided[level]
        if not rows.any():
            return level
        moved = np.linalg.norm(d[level][rows], ord=2, axis=(1, 2))
        if float((moved * radius[rows]).max()) <= share:
            return level
    return len(d) - 1


def _instance_streams(
    b: BinBuilder, t: F64, q: F64, s: F64, top: F64, budget: float | None
) -> tuple[int, int, int, int]:
    """The TRANSLATION, ROTATION and SCALE views of all instances (and ROTATION's component type).

    Without an error ``budget``: float32. With one (metres), each stream may move a drawn corner by
    ``STREAM_SHARE * budget`` at most (the part's grid has the rest): translations and scales as
    ``EXPONENTIAL`` fixed point (a scale's error moves a corner by it times the corner's grid coordinate,
    at most ``top``), rotations as ``QUATERNION`` codes of the fewest bits whose decoded rotation moves
    no corner (at most ``|S top|`` from the instance's origin) further, checked by decoding."""
    if budget is None:
        views = [b.attribute_view(a.astype(np.float32), vertex=False) for a in (t, q, s)]
        return views[0], views[1], FLOAT, views[2]
    share = STREAM_SHARE * budget
    t_view = b.attribute_view(
        exponential_codes(t, np.full(3, share / math.sqrt(3.0))), vertex=False, filter="EXPONENTIAL"
    )
    # per axis: |dS_j| * top_j <= share / sqrt(3), for every instance
    reach = top.max(axis=0) if len(top) else np.zeros(3)
    s_error = share / math.sqrt(3.0) / np.maximum(reach, 1.0)
    s_view = b.attribute_view(exponential_codes(s, s_error), vertex=False, filter="EXPONENTIAL")
    radius = np.linalg.norm(s * top, axis=1)
    # Every width at once (a tile's instances are few, the calls per width were the cost), the first
    # that keeps the corners in place taken.
    every = quaternion_codes_by_bits(q, QUATERNION_BITS)
    codes = every[0]
    if len(q):
        decoded = quaternion_to_matrix(decode_quaternions(every.reshape(-1, 4)))
        decoded = decoded.reshape(*every.shape[:2], 3, 3)
        codes = every[_first_within(decoded - quaternion_to_matrix(q), radius, share)]
    r_view = b.attribute_view(codes, vertex=False, filter="QUATERNION")
    return t_view, r_view, SHORT, s_view


# --------------------------------------------------------------------------------------------------
# the writer


#: ``baseColorFactor`` by sRGBA bytes: a tile's materials are a few colours met again in tile after tile.
_COLOURS: dict[tuple[int, ...], list[float]] = {}


def _base_color(rgba: tuple[int, ...]) -> list[float]:
    found = _COLOURS.get(rgba)
    if found is None:
        linear = srgb_to_linear(np.asarray(rgba[:3], np.int64) / 255.0)
        # Six decimals keep every sRGB byte apart (neighbouring bytes differ by 3e-4 in linear at the
        # dark end); the row is in the extras, so no name repeats it.
        found = [*(round(float(c), 6) for c in linear), round(float(rgba[3]) / 255.0, 6)]
        if len(_COLOURS) >= 1 << 16:
            _COLOURS.clear()
        _COLOURS[rgba] = found
    return list(found)


class _Materials:
    def __init__(self, table: MaterialTable) -> None:
        self.table = table
        self.index: dict[int, int] = {}
        self.json: list[dict[str, Any]] = []

    def __call__(self, row: int) -> int:
        found = self.index.get(row)
        if found is not None:
            return found
        rgba = np.asarray(self.table.rgba[row], np.int64)
        rm = int(self.table.render_material_ids[row])
        mat: dict[str, Any] = {
            "pbrMetallicRoughness": {
                "baseColorFactor": _base_color(tuple(rgba.tolist())),
                "metallicFactor": 0.0,
                "roughnessFactor": ROUGHNESS,
            },
            "extras": {"row": row},
        }
        if rm:
            # Ids are strings: JSON numbers would round ids above 2^53.
            mat["extras"]["renderMaterialId"] = f"0x{rm:x}"
        if rgba[3] < 255:
            mat["alphaMode"] = "BLEND"
        if bool(self.table.double_sided[row]):
            mat["doubleSided"] = True
        self.json.append(mat)
        self.index[row] = len(self.json) - 1
        return self.index[row]


def _feature_ids_ext(count: int) -> dict[str, Any]:
    return {"featureIds": [{"featureCount": count, "attribute": 0, "propertyTable": 0}]}


def encode_glb(
    content: TileContent,
    *,
    origin: F64 | None = None,
    y_up: bool = True,
    meshopt: bool = True,
    position_tolerance: float | None = None,
) -> GlbResult:
    """The GLB of ``content`` and its statistics. Raises ``TileWriteError`` (before writing anything) when
    the content breaks the model's contract."""
    _check(content)
    n_features = len(content.features)
    fid_type = _feature_id_type(n_features)

    # Which instances the GPU draws and which become plain triangles.
    flat: list[TriangleSet] = [content.triangles]
    instanced: list[tuple[PartInstances, np.ndarray, Decomposed]] = []
    n_flat = 0
    live = [pi for pi in content.instances if pi.count and pi.part.n_triangles]
    # One decomposition of every instance in the tile, cut per part: its rows are independent, and a
    # tile's many small parts each paid numpy's per-call overhead many times over the arithmetic.
    every_dec = (
        decompose(np.concatenate([np.asarray(pi.transforms, np.float64) for pi in live])) if live else None
    )
    end = 0
    for pi in live:
        assert every_dec is not None
        start, end = end, end + pi.count
        dec = Decomposed(
            every_dec.translation[start:end],
            every_dec.rotation[start:end],
            every_dec.quaternion[start:end],
            every_dec.scale[start:end],
            every_dec.ok[start:end],
        )
        bad = np.flatnonzero(~dec.ok)
        if len(bad):
            flat.append(flatten_instances(pi, bad))
            n_flat += len(bad)
        if len(bad) < pi.count:
            instanced.append((pi, np.flatnonzero(dec.ok), dec))
    tris = concat_sets(flat)

    if origin is None:
        pts = [np.asarray(tris.positions, np.float64)] + [dec.translation[ok] for _, ok, dec in instanced]
        every = np.concatenate(pts)
        o = (column_min(every) + column_max(every)) / 2 if len(every) else np.zeros(3)
    else:
        o = np.asarray(origin, np.float64).reshape(3)
        if not np.isfinite(o).all():
            raise TileWriteError("origin: non-finite")

    b = BinBuilder(meshopt)
    materials = _Materials(content.materials)
    meshes: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = [{"name": "root"}]
    children: list[int] = []
    used_features = used_instance_features = False
    n_tris = n_drawn = n_verts = n_prims = n_instances = 0

    # The plain triangles: one primitive per material row.
    if tris.n_triangles:
        groups = _group(tris.indices, tris.material, len(tris.positions), meshopt, "triangles")
        pos = np.asarray(tris.positions, np.float64).take(groups.order, axis=0)
        pos -= o
        fid = np.asarray(tris.feature).take(groups.order)
        nrm = np.asarray(tris.normals).take(groups.order, axis=0)
        streams = _write_streams(b, pos, nrm, groups, fid, fid_type, meshopt, position_tolerance)
        # featureCount counts the distinct ids of the attribute (the accessor), which all primitives share
        # when the streams are shared.
        spans = groups.vstart[[0, -1]] if streams.shared else groups.vstart
        distinct = np.resize(_distinct_per_group(fid, spans, n_features), len(groups.keys))
        prims = []
        for g, row in enumerate(groups.keys.tolist()):
            prim: dict[str, Any] = {
                "attributes": streams.attributes[g],
                "indices": streams.indices[g],
                "material": materials(row),
                "mode": TRIANGLES,
                "extensions": {MESH_FEATURES: _feature_ids_ext(int(distinct[g]))},
            }
            prims.append(prim)
        used_features = True
        meshes.append({"primitives": prims})  # the node carries the name
        node: dict[str, Any] = {"name": "triangles", "mesh": len(meshes) - 1}
        if meshopt:
            node["translation"] = streams.offset.tolist()
            node["scale"] = [streams.step] * 3
        nodes.append(node)
        children.append(len(nodes) - 1)
        n_tris += tris.n_triangles
        n_drawn += tris.n_triangles
        n_verts += len(groups.order)
        n_prims += len(prims)

    # Instanced parts: the part once, one node per distinct row of piece looks.
    inst_t: list[F64] = []
    inst_r: list[F64] = []
    inst_s: list[F64] = []
    inst_f: list[np.ndarray] = []
    inst_top: list[F64] = []
    inst_nodes: list[tuple[int, int, int]] = []  # node index, first instance, count
    for pi, ok, dec in instanced:
        part = pi.part
        where = f"part 0x{pi.part_id:x}"
        groups = _group(part.indices, part.material, len(part.positions), meshopt, where)
        pos = np.asarray(part.positions, np.float64)[groups.order]
        rot, scale = dec.rotation[ok], dec.scale[ok]
        # An instance scales the part's grid error by its largest scale factor; the grid gets its share of
        # the error, the instance streams the rest (see _instance_streams).
        part_tolerance = None
        if position_tolerance is not None and len(ok):
            part_tolerance = position_tolerance * GRID_SHARE / max(float(np.abs(scale).max()), 1e-300)
        streams = _write_streams(
            b, pos, np.asarray(part.normals)[groups.order], groups, None, fid_type, meshopt, part_tolerance
        )
        # node * T R S * (offset + step q) = node * T' R S' q with T' = T + R (S offset), S' = S step.
        translation = dec.translation[ok] - o + np.einsum("kij,kj->ki", rot, scale * streams.offset)
        scale = scale * streams.step
        rows = np.asarray(pi.materials, np.int64)[ok]
        looks, which = _distinct_rows(rows, len(content.materials.rgba))
        by_look = np.argsort(which, kind="stable")
        counts = np.bincount(which, minlength=len(looks))
        first = sum(len(x) for x in inst_t)
        inst_t.append(translation[by_look])
        inst_r.append(dec.quaternion[ok][by_look])
        inst_s.append(scale[by_look])
        inst_f.append(np.asarray(pi.feature, np.int64)[ok][by_look])
        inst_top.append(np.broadcast_to(streams.top, (len(ok), 3)))
        start = first
        for li, look in enumerate(looks.tolist()):
            prims = [
                {
                    "attributes": streams.attributes[g],
                    "indices": streams.indices[g],
                    "material": materials(look[piece]),
                    "mode": TRIANGLES,
                }
                for g, piece in enumerate(groups.keys.tolist())
            ]
            meshes.append({"primitives": prims})
            nodes.append({"name": f"{where} look {li}", "mesh": len(meshes) - 1})
            children.append(len(nodes) - 1)
            inst_nodes.append((len(nodes) - 1, start, int(counts[li])))
            start += int(counts[li])
            n_prims += len(prims)
        n_tris += part.n_triangles
        n_drawn += part.n_triangles * len(ok)
        n_verts += len(groups.order)
        n_instances += len(ok)

    if inst_nodes:
        f_all = np.concatenate(inst_f)
        budget = position_tolerance if meshopt and position_tolerance is not None else None
        t_view, r_view, r_type, s_view = _instance_streams(
            b,
            np.concatenate(inst_t),
            np.concatenate(inst_r),
            np.concatenate(inst_s),
            np.concatenate(inst_top),
            budget,
        )
        f_view = b.attribute_view(_feature_id_elements(f_all, fid_type), vertex=False)
        starts = np.array([s for _, s, _ in inst_nodes] + [len(f_all)], np.int64)
        distinct = _distinct_per_group(f_all, starts, n_features)
        for i, (node_index, s, c) in enumerate(inst_nodes):
            attrs = {
                "TRANSLATION": b.accessor(t_view, FLOAT, c, "VEC3", byte_offset=s * 12),
                "ROTATION": b.accessor(
                    r_view,
                    r_type,
                    c,
                    "VEC4",
                    byte_offset=s * (16 if r_type == FLOAT else 8),
                    normalized=r_type != FLOAT,
                ),
                "SCALE": b.accessor(s_view, FLOAT, c, "VEC3", byte_offset=s * 12),
                "_FEATURE_ID_0": b.accessor(f_view, fid_type, c, "SCALAR", byte_offset=s * 4),
            }
            nodes[node_index]["extensions"] = {
                GPU_INSTANCING: {"attributes": attrs},
                INSTANCE_FEATURES: _feature_ids_ext(int(distinct[i])),
            }
        used_instance_features = True

    extensions: dict[str, Any] = {}
    if n_features:
        extensions[STRUCTURAL_METADATA] = structural_metadata(content.features, b.plain_view, b.column_view)

    root = nodes[0]
    if y_up:
        root["rotation"] = Y_UP_QUATERNION
    if o.any():
        root["translation"] = ((Y_UP_MATRIX @ o) if y_up else o).tolist()
    if children:
        root["children"] = children

    used: list[str] = []
    required: list[str] = []
    if b.compressed_views:
        used.append(MESHOPT)
        required.append(MESHOPT)
    if meshopt and meshes:
        used.append(QUANTIZATION)
        required.append(QUANTIZATION)
    if inst_nodes:
        used.append(GPU_INSTANCING)
        required.append(GPU_INSTANCING)
    if used_features:
        used.append(MESH_FEATURES)
    if used_instance_features:
        used.append(INSTANCE_FEATURES)
    if extensions:
        used.append(STRUCTURAL_METADATA)

    doc: dict[str, Any] = {"asset": {"version": "2.0", "generator": "twinbase"}}
    if used:
        doc["extensionsUsed"] = used
    if required:
        doc["extensionsRequired"] = required
    if extensions:
        doc["extensions"] = extensions
    doc["scene"] = 0
    doc["scenes"] = [{"nodes": [0]}]
    doc["nodes"] = nodes
    if meshes:
        doc["meshes"] = meshes
    if materials.json:
        doc["materials"] = materials.json
    if b.accessors:
        doc["accessors"] = b.accessors
    if b.buffer_views:
        doc["bufferViews"] = b.buffer_views
    buffers = b.buffers()
    if buffers:
        doc["buffers"] = buffers
    data = pack_glb(doc, b.binary())
    stats = GlbStats(
        triangles=n_tris,
        drawn_triangles=n_drawn,
        vertices=n_verts,
        bytes=len(data),
        features=n_features,
        instances=n_instances,
        flattened_instances=n_flat,
        primitives=n_prims,
        materials=len(materials.json),
    )
    return GlbResult(data, stats)
