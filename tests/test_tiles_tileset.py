"""3D Tiles tree, levels of detail, tileset.json, .3tz and the tileset checker (``twinbase.tiles``).

A synthetic model stands in for a meshed iModel: thousands of small boxes, hundreds of medium ones, a
few large slabs, smooth pipes (connected meshes that simplify) and a part instanced many times. The
tree/LOD/JSON logic is tested with an opaque encoder (content bytes are a summary); the checker and the
archive with a tiny real GLB encoder of the tests' own (positions, indices, ``_FEATURE_ID_0``,
``EXT_mesh_features`` + ``EXT_structural_metadata``, instances with ``EXT_mesh_gpu_instancing``, and
optionally the feature ids meshopt-compressed).
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import meshoptimizer as mo
import numpy as np
import pytest

from twinbase.tiles.check import check_glb, check_tileset, check_tileset_json
from twinbase.tiles.lod import instance_boxes
from twinbase.tiles.model import FeatureTable, MaterialTable, PartInstances, TileContent, TriangleSet
from twinbase.tiles.threetz import INDEX_NAME, ThreeTzReader, ThreeTzWriter, path_hash
from twinbase.tiles.tiler import (
    BATCHED_TILESET,
    ElementBoxes,
    TilePlan,
    TileResult,
    TilerOptions,
    plan_tileset,
    tile_content,
    tileset_json,
)

# ---------------------------------------------------------------------------------------------------
# A synthetic model


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + c)`` for each pair, without a Python loop."""
    nz = counts > 0
    s = np.asarray(starts, np.int64)[nz]
    c = np.asarray(counts, np.int64)[nz]
    if len(c) == 0:
        return np.zeros(0, np.int64)
    out = np.ones(int(c.sum()), np.int64)
    out[0] = s[0]
    out[np.cumsum(c)[:-1]] = s[1:] - (s[:-1] + c[:-1]) + 1
    return np.cumsum(out)


_BOX_CORNERS = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], np.float64)
_BOX_FACES = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]])
_BOX_NORMALS = np.array([[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1]], np.float32)


def _boxes_mesh(low: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat-shaded boxes: (n*24, 3) positions, normals, (n*12, 3) indices."""
    n = len(low)
    corners = _BOX_CORNERS[_BOX_FACES.ravel()]  # (24, 3)
    pos = low[:, None, :] + corners[None] * size[:, None, :]
    normals = np.repeat(_BOX_NORMALS, 4, axis=0)
    quad = np.array([[0, 1, 2], [0, 2, 3]])
    local = (np.arange(6)[:, None, None] * 4 + quad[None]).reshape(12, 3)
    idx = local[None] + (np.arange(n) * 24)[:, None, None]
    return pos.reshape(-1, 3), np.tile(normals, (n, 1)), idx.reshape(-1, 3)


def _cylinder(segments: int, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth open unit cylinder along z (radius 1, height 1), shared vertices."""
    th = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    z = np.linspace(0, 1, rows)
    t, zz = np.meshgrid(th, z)
    pos = np.stack([np.cos(t), np.sin(t), zz], -1).reshape(-1, 3)
    nrm = np.stack([np.cos(t), np.sin(t), np.zeros_like(t)], -1).reshape(-1, 3).astype(np.float32)
    i = np.arange(rows - 1)[:, None] * segments
    j = np.arange(segments)[None, :]
    a = (i + j).ravel()
    b = (i + (j + 1) % segments).ravel()
    idx = np.concatenate([np.stack([a, b, b + segments], 1), np.stack([a, b + segments, a + segments], 1)])
    return pos, nrm, idx


@dataclass
class Scene:
    boxes: ElementBoxes
    positions: np.ndarray
    normals: np.ndarray
    indices: np.ndarray  # global vertex numbers
    v_start: np.ndarray
    v_count: np.ndarray
    t_start: np.ndarray
    t_count: np.ndarray
    part: TriangleSet
    inst_element: np.ndarray  # element row of each instance
    inst_transform: np.ndarray
    kind: np.ndarray  # 0 small box, 1 medium, 2 slab, 3 pipe, 4 instance

    def content(self, rows: np.ndarray) -> TileContent:
        """What the glue would mesh for ``rows``: their triangles, one feature per element."""
        rows = np.asarray(rows, np.int64)
        k = len(rows)
        vsel = _ranges(self.v_start[rows], self.v_count[rows])
        tsel = _ranges(self.t_start[rows], self.t_count[rows])
        new_vstart = np.concatenate([[0], np.cumsum(self.v_count[rows])[:-1]]).astype(np.int64)
        elem_v = np.repeat(np.arange(k), self.v_count[rows])
        elem_t = np.repeat(np.arange(k), self.t_count[rows])
        idx = self.indices[tsel] - self.v_start[rows][elem_t][:, None] + new_vstart[elem_t][:, None]
        ids = self.boxes.ids[rows]
        features = FeatureTable(
            element_ids=ids,
            model_ids=self.boxes.model_ids[rows],
            category_ids=np.full(k, 0x17, np.uint64),
            subcategory_ids=np.full(k, 0x18, np.uint64),
            geometry_classes=np.zeros(k, np.uint8),
            class_names=["Generic:PhysicalObject"] * k,
            labels=[None] * k,
        )
        materials = MaterialTable(
            rgba=np.array([[200, 200, 200, 255], [90, 90, 200, 255]], np.uint8),
            render_material_ids=np.zeros(2, np.uint64),
            double_sided=np.zeros(2, bool),
        )
        tris = TriangleSet(
            positions=self.positions[vsel],
            normals=self.normals[vsel],
            indices=idx.astype(np.uint32),
            feature=elem_v.astype(np.uint32),
            material=np.zeros(len(vsel), np.uint32),
        )
        row_of = np.full(len(self.boxes), -1, np.int64)
        row_of[rows] = np.arange(k)
        inst = row_of[self.inst_element] >= 0
        instances = []
        if inst.any():
            instances.append(
                PartInstances(
                    part_id=0x99,
                    part=self.part,
                    transforms=self.inst_transform[inst],
                    feature=row_of[self.inst_element[inst]].astype(np.uint32),
                    materials=np.ones((int(inst.sum()), 1), np.uint32),
                )
            )
        return TileContent(features=features, materials=materials, triangles=tris, instances=instances)


def make_scene(
    n_small: int = 3000,
    n_medium: int = 400,
    n_pipes: int = 12,
    n_instances: int = 200,
    extent: float = 60.0,
    pipe_segments: int = 48,
    pipe_rows: int = 24,
    seed: int = 7,
) -> Scene:
    rng = np.random.default_rng(seed)
    # Boxes: small, medium, and slabs spanning the model (floors).
    small_size = rng.uniform(0.05, 0.4, (n_small, 3))
    medium_size = rng.uniform(0.5, 3.0, (n_medium, 3))
    floors = 4
    slab_size = np.tile([extent, extent, 0.3], (floors, 1))
    box_size = np.concatenate([small_size, medium_size, slab_size])
    box_low = np.concatenate(
        [
            rng.uniform(0, extent - 0.5, (n_small, 3)) * [1, 1, 0.2],
            rng.uniform(0, extent - 3, (n_medium, 3)) * [1, 1, 0.2],
            np.stack([np.zeros(floors), np.zeros(floors), np.arange(floors) * 3.0], 1),
        ]
    )
    n_box = len(box_low)
    bpos, bnrm, bidx = _boxes_mesh(box_low, box_size)
    # Pipes: connected smooth cylinders lying along x.
    cpos, cnrm, cidx = _cylinder(pipe_segments, pipe_rows)
    radius = rng.uniform(0.1, 0.3, n_pipes)
    length = rng.uniform(10, 30, n_pipes)
    start = rng.uniform(0, extent - 30, (n_pipes, 3)) * [1, 1, 0.2]
    # Cylinder axis z -> x: (x, y, z) -> (z * length, y * r, x * r)
    ppos = (
        np.stack(
            [
                cpos[None, :, 2] * length[:, None],
                cpos[None, :, 1] * radius[:, None],
                cpos[None, :, 0] * radius[:, None],
            ],
            -1,
        )
        + start[:, None, :]
    )
    pnrm = np.broadcast_to(np.stack([cnrm[:, 2], cnrm[:, 1], cnrm[:, 0]], -1), ppos.shape)
    pidx = cidx[None] + (np.arange(n_pipes) * len(cpos))[:, None, None]
    pipe_low, pipe_high = ppos.min(axis=1), ppos.max(axis=1)
    # The part: a small smooth cylinder (radius 1, height 1) placed scaled 0.05..0.5.
    qpos, qnrm, qidx = _cylinder(24, 4)
    part = TriangleSet(
        positions=qpos,
        normals=qnrm,
        indices=qidx.astype(np.uint32),
        feature=np.zeros(len(qpos), np.uint32),
        material=np.zeros(len(qpos), np.uint32),
    )
    scale = rng.uniform(0.05, 0.5, n_instances)
    trans = rng.uniform(0, extent - 1, (n_instances, 3)) * [1, 1, 0.2]
    xf = np.tile(np.eye(4), (n_instances, 1, 1))
    xf[:, 0, 0] = xf[:, 1, 1] = xf[:, 2, 2] = scale
    xf[:, :3, 3] = trans
    inst_low = trans + scale[:, None] * np.array([-1, -1, 0])
    inst_high = trans + scale[:, None] * np.array([1, 1, 1])

    n_el = n_box + n_pipes + n_instances
    positions = np.concatenate([bpos, ppos.reshape(-1, 3)])
    normals = np.concatenate([bnrm, pnrm.reshape(-1, 3)]).astype(np.float32)
    indices = np.concatenate([bidx, pidx.reshape(-1, 3) + len(bpos)]).astype(np.int64)
    v_count = np.concatenate([np.full(n_box, 24), np.full(n_pipes, len(cpos)), np.zeros(n_instances)])
    t_count = np.concatenate([np.full(n_box, 12), np.full(n_pipes, len(cidx)), np.zeros(n_instances)])
    v_count = v_count.astype(np.int64)
    t_count = t_count.astype(np.int64)
    v_start = np.concatenate([[0], np.cumsum(v_count)[:-1]]).astype(np.int64)
    t_start = np.concatenate([[0], np.cumsum(t_count)[:-1]]).astype(np.int64)
    low = np.concatenate([box_low, pipe_low, inst_low])
    high = np.concatenate([box_low + box_size, pipe_high, inst_high])
    tris = t_count.copy()
    tris[n_box + n_pipes :] = len(qidx)
    kind = np.concatenate(
        [
            np.zeros(n_small),
            np.ones(n_medium),
            np.full(floors, 2),
            np.full(n_pipes, 3),
            np.full(n_instances, 4),
        ]
    ).astype(np.int64)
    models = np.where(kind == 2, 0x20000000001, 0x20000000002).astype(np.uint64)
    boxes = ElementBoxes(
        ids=(np.arange(n_el) + 0x100).astype(np.uint64),
        low=low,
        high=high,
        model_ids=models,
        triangles=tris,
    )
    return Scene(
        boxes=boxes,
        positions=positions,
        normals=normals,
        indices=indices,
        v_start=v_start,
        v_count=v_count,
        t_start=t_start,
        t_count=t_count,
        part=part,
        inst_element=np.arange(n_box + n_pipes, n_el),
        inst_transform=xf,
        kind=kind,
    )


OPTIONS = TilerOptions(max_tile_triangles=12_000, max_root_triangles=4_000, levels=8)


@pytest.fixture(scope="module")
def scene() -> Scene:
    return make_scene()


@pytest.fixture(scope="module")
def plan(scene: Scene) -> TilePlan:
    return plan_tileset(scene.boxes, OPTIONS)


# ---------------------------------------------------------------------------------------------------
# Encoders


class OpaqueEncoder:
    """Content bytes as a small summary; keeps what it was given for the tests to look at."""

    def __init__(self) -> None:
        self.seen: dict[str, TileContent] = {}

    def __call__(self, content: TileContent, origin: np.ndarray) -> bytes:
        key = f"t{len(self.seen)}"
        self.seen[key] = content
        return json.dumps({"key": key, "origin": [float(v) for v in origin]}).encode()


def _pad(data: bytes, align: int, fill: bytes = b"\0") -> bytes:
    return data + fill * (-len(data) % align)


def tiny_glb(content: TileContent, origin: np.ndarray, *, meshopt: bool = False) -> bytes:
    """A minimal real GLB of ``content`` (the tests' own; the product writer is ``tiles.gltf``)."""
    bin_parts: list[bytes] = []
    views: list[dict[str, Any]] = []
    accessors: list[dict[str, Any]] = []

    def add_view(data: bytes, **extra: Any) -> int:
        offset = sum(len(p) for p in bin_parts)
        bin_parts.append(_pad(data, 8))
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(data), **extra})
        return len(views) - 1

    def add_accessor(arr: np.ndarray, ctype: int, atype: str, **extra: Any) -> int:
        view = add_view(np.ascontiguousarray(arr).tobytes())
        accessors.append(
            {"bufferView": view, "componentType": ctype, "count": len(arr), "type": atype, **extra}
        )
        return len(accessors) - 1

    nf = len(content.features)
    tris = content.triangles
    meshes: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    used = ["EXT_mesh_features", "EXT_structural_metadata"]
    required: list[str] = []
    fallback_len = 0

    def primitive(ts: TriangleSet, pos: np.ndarray, feature: np.ndarray) -> dict[str, Any]:
        nonlocal fallback_len
        p = pos.astype(np.float32)
        pa = add_accessor(p, 5126, "VEC3", min=p.min(0).tolist(), max=p.max(0).tolist())
        na = add_accessor(np.asarray(ts.normals, np.float32), 5126, "VEC3")
        fid = feature.astype(np.float32)
        if meshopt:
            enc = bytes(mo.encode_vertex_buffer(fid.reshape(-1, 1), len(fid), 4))
            offset = sum(len(b) for b in bin_parts)
            bin_parts.append(_pad(enc, 8))
            views.append(
                {
                    "buffer": 1,
                    "byteOffset": fallback_len,
                    "byteLength": len(fid) * 4,
                    "byteStride": 4,
                    "extensions": {
                        "EXT_meshopt_compression": {
                            "buffer": 0,
                            "byteOffset": offset,
                            "byteLength": len(enc),
                            "byteStride": 4,
                            "count": len(fid),
                            "mode": "ATTRIBUTES",
                        }
                    },
                }
            )
            fallback_len += len(fid) * 4
            accessors.append(
                {"bufferView": len(views) - 1, "componentType": 5126, "count": len(fid), "type": "SCALAR"}
            )
            fa = len(accessors) - 1
        else:
            fa = add_accessor(fid, 5126, "SCALAR")
        ia = add_accessor(np.asarray(ts.indices, np.uint32).ravel(), 5125, "SCALAR")
        return {
            "attributes": {"POSITION": pa, "NORMAL": na, "_FEATURE_ID_0": fa},
            "indices": ia,
            "extensions": {
                "EXT_mesh_features": {
                    "featureIds": [{"featureCount": nf, "attribute": 0, "propertyTable": 0}]
                }
            },
        }

    if tris.n_triangles:
        prim = primitive(tris, np.asarray(tris.positions) - origin, np.asarray(tris.feature))
        meshes.append({"primitives": [prim]})
        nodes.append({"mesh": len(meshes) - 1, "translation": [float(v) for v in origin]})
    for inst in content.instances:
        part = inst.part
        prim = primitive(part, np.asarray(part.positions), np.zeros(len(part.positions)))
        del prim["extensions"]
        meshes.append({"primitives": [prim]})
        xf = np.asarray(inst.transforms)
        scale = np.linalg.norm(xf[:, :3, :3], axis=1).astype(np.float32)
        t = (xf[:, :3, 3] - origin).astype(np.float32)
        ta = add_accessor(t, 5126, "VEC3")
        sa = add_accessor(scale, 5126, "VEC3")
        fa = add_accessor(np.asarray(inst.feature, np.float32), 5126, "SCALAR")
        nodes.append(
            {
                "mesh": len(meshes) - 1,
                "translation": [float(v) for v in origin],
                "extensions": {
                    "EXT_mesh_gpu_instancing": {
                        "attributes": {"TRANSLATION": ta, "SCALE": sa, "_FEATURE_ID_0": fa}
                    },
                    "EXT_instance_features": {
                        "featureIds": [{"featureCount": nf, "attribute": 0, "propertyTable": 0}]
                    },
                },
            }
        )
        for name in ("EXT_mesh_gpu_instancing", "EXT_instance_features"):
            if name not in used:
                used.append(name)
        if "EXT_mesh_gpu_instancing" not in required:
            required.append("EXT_mesh_gpu_instancing")
    # Property table: element id (UINT64) and class name (STRING).
    ids_view = add_view(np.asarray(content.features.element_ids, np.uint64).tobytes())
    names = [n.encode() for n in content.features.class_names]
    offsets = np.concatenate([[0], np.cumsum([len(n) for n in names])]).astype(np.uint32)
    names_view = add_view(b"".join(names))
    offsets_view = add_view(offsets.tobytes())
    meta = {
        "schema": {
            "id": "twinbase",
            "classes": {
                "feature": {
                    "properties": {
                        "element": {"type": "SCALAR", "componentType": "UINT64"},
                        "className": {"type": "STRING"},
                    }
                }
            },
        },
        "propertyTables": [
            {
                "class": "feature",
                "count": nf,
                "properties": {
                    "element": {"values": ids_view},
                    "className": {"values": names_view, "stringOffsets": offsets_view},
                },
            }
        ],
    }
    buffers: list[dict[str, Any]] = [{"byteLength": sum(len(p) for p in bin_parts)}]
    if meshopt:
        buffers.append(
            {"byteLength": fallback_len, "extensions": {"EXT_meshopt_compression": {"fallback": True}}}
        )
        used.append("EXT_meshopt_compression")
        required.append("EXT_meshopt_compression")
    doc: dict[str, Any] = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": list(range(len(nodes)))}],
        "nodes": nodes,
        "meshes": meshes,
        "accessors": accessors,
        "bufferViews": views,
        "buffers": buffers,
        "extensionsUsed": used,
        "extensions": {"EXT_structural_metadata": meta},
    }
    if required:
        doc["extensionsRequired"] = required
    return glb_bytes(doc, b"".join(bin_parts))


def glb_bytes(doc: dict[str, Any], bin_chunk: bytes) -> bytes:
    js = _pad(json.dumps(doc).encode(), 8, b" ")
    bn = _pad(bin_chunk, 8)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js + struct.pack("<II", len(bn), 0x004E4942) + bn
    return struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body


def split_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    jlen = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20 : 20 + jlen])
    blen = struct.unpack_from("<I", data, 20 + jlen)[0]
    return doc, data[28 + jlen : 28 + jlen + blen]


def build_all(plan: TilePlan, scene: Scene, encode: Any) -> dict[int, TileResult | None]:
    return {
        node.index: tile_content(node, scene.content(node.elements), plan.options, encode)
        for node in plan.nodes
    }


def _walk(tile: dict[str, Any], depth: int = 0) -> list[tuple[dict[str, Any], int]]:
    out = [(tile, depth)]
    for child in tile.get("children", []):
        out.extend(_walk(child, depth + 1))
    return out


# ---------------------------------------------------------------------------------------------------
# Plan


def test_plan_tree_and_levels_of_detail(scene: Scene, plan: TilePlan) -> None:
    nodes = plan.nodes
    assert len(nodes) > 8
    root = nodes[0]
    assert root.parent == -1 and root.level == 0 and root.name == "0-0.glb"
    names = [n.name for n in nodes]
    assert len(set(names)) == len(names)
    per_level: dict[int, list[int]] = {}
    for n in nodes:
        level, index = n.name.removesuffix(".glb").split("-")
        assert int(level) == n.level
        per_level.setdefault(n.level, []).append(int(index))
        assert all(nodes[c].parent == n.index and nodes[c].level == n.level + 1 for c in n.children)
        assert n.leaf == (not n.children)
        if n.parent >= 0:  # tolerance (geometricError) never grows with depth
            assert n.tolerance <= nodes[n.parent].tolerance
    assert all(v == list(range(len(v))) for v in per_level.values())
    leaves = [n for n in nodes if n.leaf]
    inner = [n for n in nodes if not n.leaf]
    # Leaves: the smallest error, every element at full detail in exactly one leaf.
    assert min(n.tolerance for n in nodes) == OPTIONS.leaf_chord_tolerance
    assert all(n.tolerance == OPTIONS.leaf_chord_tolerance for n in leaves)
    assert all(n.tolerance > OPTIONS.leaf_chord_tolerance for n in inner)
    in_leaves = np.concatenate([n.elements for n in leaves])
    assert len(in_leaves) == len(scene.boxes)
    assert np.array_equal(np.sort(in_leaves), np.arange(len(scene.boxes)))
    for n in leaves:
        assert np.array_equal(n.elements, n.subtree)
    # Children partition their parent's elements; empty cells are not children.
    for n in inner:
        parts = [nodes[c].subtree for c in n.children]
        assert all(len(p) for p in parts)
        assert np.array_equal(np.sort(np.concatenate(parts)), np.sort(n.subtree))
    # REPLACE keeps every element: what a tile draws, the child holding it draws too.
    for n in inner:
        for c in n.children:
            child = nodes[c]
            mine = np.intersect1d(n.elements, child.subtree)
            assert np.isin(mine, child.elements).all()
    # Root: only big elements (slabs, pipes, medium boxes), within its budget; the small ones later.
    radii = 0.5 * np.linalg.norm(scene.boxes.high - scene.boxes.low, axis=1)
    kinds = scene.kind[root.elements]
    assert set(np.unique(kinds).tolist()) <= {1, 2, 3}
    assert 2 in kinds  # the slabs
    assert radii[root.elements].min() >= root.tolerance
    assert root.estimated_triangles <= OPTIONS.root_triangles
    assert all(n.estimated_triangles <= OPTIONS.tile_triangles for n in inner)
    # Leaves fit the budget (none is forced by depth here).
    assert all(n.estimated_triangles <= OPTIONS.tile_triangles for n in leaves)
    # Bounds: subtree box holds the drawn box and the children's.
    for n in nodes:
        assert np.all(n.low <= n.content_low + 1e-12) and np.all(n.content_high <= n.high + 1e-12)
        for c in n.children:
            assert np.all(n.low <= nodes[c].low) and np.all(nodes[c].high <= n.high)


def test_plan_small_models_and_options() -> None:
    # Everything fits the root: one leaf tile at full detail.
    small = make_scene(n_small=50, n_medium=5, n_pipes=1, n_instances=3)
    one = plan_tileset(small.boxes, TilerOptions())
    assert len(one.nodes) == 1 and one.nodes[0].leaf and len(one.nodes[0].elements) == len(small.boxes)
    # No elements: a root with nothing to draw.
    empty = ElementBoxes(
        ids=np.zeros(0, np.uint64),
        low=np.zeros((0, 3)),
        high=np.zeros((0, 3)),
        model_ids=np.zeros(0, np.uint64),
    )
    p = plan_tileset(empty)
    doc = tileset_json(p, {})
    assert check_tileset_json(doc) == []
    assert "content" not in doc["root"] and "children" not in doc["root"]
    # levels caps the depth; options derive triangle budgets from bytes.
    scene = make_scene(n_small=800, n_medium=50, n_pipes=2, n_instances=20)
    capped = plan_tileset(scene.boxes, TilerOptions(max_tile_triangles=500, max_root_triangles=200, levels=3))
    assert max(n.level for n in capped.nodes) == 2
    assert TilerOptions(max_tile_bytes=1_000_000, bytes_per_triangle=10).tile_triangles == 100_000
    assert TilerOptions().root_triangles == 256_000 // 14
    assert TilerOptions(max_root_bytes=256_000, bytes_per_triangle=8).root_triangles == 32_000


# ---------------------------------------------------------------------------------------------------
# Content and tileset.json


def test_contents_and_tileset_json(scene: Scene, plan: TilePlan) -> None:
    enc = OpaqueEncoder()
    results = build_all(plan, scene, enc)
    nodes = plan.nodes
    for n in nodes:
        res = results[n.index]
        assert res is not None  # every planned tile draws something here
        assert res.name == n.name
        if n.leaf:  # full detail: nothing dropped
            assert res.triangles == res.input_triangles
        else:
            assert res.triangles <= res.input_triangles
        assert res.error >= n.tolerance
    # Coarse tiles: pipes simplified, instanced parts kept as instances (small ones dropped).
    root_res = results[0]
    assert root_res is not None and root_res.triangles < root_res.input_triangles
    inner_inst = [c for c in enc.seen.values() if c.instances]
    assert inner_inst and all(isinstance(i, PartInstances) for c in inner_inst for i in c.instances)
    coarse_parts = [
        c.instances[0].part.n_triangles for c in enc.seen.values() if c.instances and len(c.features) < 5000
    ]
    assert min(coarse_parts) <= scene.part.n_triangles
    # Feature rows are subset to what is drawn.
    for c in enc.seen.values():
        if c.triangles.n_triangles:
            assert int(c.triangles.feature.max()) < len(c.features)

    # Drop one leaf's result: it and any branch left empty vanish from the JSON.
    leaf = next(n for n in nodes if n.leaf and n.parent > 0)
    results[leaf.index] = None
    transform = np.eye(4)
    transform[:3, 3] = [4.0e6, 3.0e5, 4.6e6]
    extents = plan.model_extents()
    extents[0x20000000009] = None  # a model without geometry: the null range
    doc = tileset_json(plan, results, root_transform=transform, model_extents=extents)
    assert check_tileset_json(doc) == []
    root = doc["root"]
    assert doc["asset"]["version"] == "1.1" and root["refine"] == "REPLACE"
    assert root["transform"][12:15] == [4.0e6, 3.0e5, 4.6e6]  # column-major: translation last
    uris = [t["content"]["uri"] for t, _ in _walk(root) if "content" in t]
    assert leaf.name not in uris
    assert len(uris) == len(nodes) - 1
    models = doc["extensions"][BATCHED_TILESET]["models"]
    assert set(models) == {"0x20000000001", "0x20000000002", "0x20000000009"}
    assert models["0x20000000009"]["extents"]["low"][0] > 1e300
    slab = scene.kind == 2
    assert models["0x20000000001"]["extents"]["low"] == scene.boxes.low[slab].min(axis=0).tolist()
    assert doc["extensionsUsed"] == [BATCHED_TILESET] and "extensionsRequired" not in doc
    # Geometric error: the leaves' smallest, non-increasing downwards; tight boxes hold children.
    tiles = _walk(root)
    leaf_errors = [t["geometricError"] for t, _ in tiles if "children" not in t]
    assert max(leaf_errors) <= min(t["geometricError"] for t, _ in tiles)
    assert doc["geometricError"] >= root["geometricError"]
    # Not geolocated: no transform.
    plain = tileset_json(plan, results)
    assert "transform" not in plain["root"]
    # The root box is tight: the scene's content box, padded by a millimetre.
    box = np.asarray(root["boundingVolume"]["box"])
    lo = scene.boxes.low.min(axis=0)
    hi = scene.boxes.high.max(axis=0)
    assert np.allclose(box[:3], 0.5 * (lo + hi), atol=0.05)
    assert np.allclose(np.diag(box[3:].reshape(3, 3)), 0.5 * (hi - lo) + 1e-3, atol=0.05)


def test_empty_children_dropped() -> None:
    scene = make_scene(n_small=600, n_medium=40, n_pipes=2, n_instances=30)
    p = plan_tileset(scene.boxes, TilerOptions(max_tile_triangles=1500, max_root_triangles=600, levels=6))
    enc = OpaqueEncoder()
    results = build_all(p, scene, enc)
    # Empty a whole branch: a child of the root and everything under it.
    branch = p.nodes[0].children[0]
    stack = [branch]
    while stack:
        i = stack.pop()
        results[i] = None
        stack.extend(p.nodes[i].children)
    doc = tileset_json(p, results)
    assert check_tileset_json(doc) == []
    assert len(doc["root"].get("children", [])) == len(p.nodes[0].children) - 1
    for t, _ in _walk(doc["root"]):
        assert "content" in t or t.get("children")


def test_lod_reduction_keeps_instances_and_leaves(scene: Scene, plan: TilePlan) -> None:
    # An inner tile given all of its cell's elements (not only the plan's choice): what is smaller than
    # its tolerance goes, connected meshes are simplified, instances stay instances.
    inner = next(n for n in plan.nodes if not n.leaf and n.parent >= 0)
    tol = 0.3  # coarser than the plan's, so that every kind of piece meets it
    node = dataclasses.replace(inner, tolerance=tol)
    content = scene.content(node.subtree)
    enc = OpaqueEncoder()
    res = tile_content(node, content, plan.options, enc)
    assert res is not None
    got = next(iter(enc.seen.values()))
    assert res.triangles == got.triangles.n_triangles + sum(
        i.part.n_triangles * i.count for i in got.instances
    )
    assert res.triangles < res.input_triangles
    kept_ids = set(got.features.element_ids.tolist())
    radii = 0.5 * np.linalg.norm(scene.boxes.high - scene.boxes.low, axis=1)
    rows = node.subtree
    small = rows[(scene.kind[rows] <= 1) & (radii[rows] < tol)]
    big = rows[(scene.kind[rows] <= 2) & (radii[rows] >= 1.2 * tol)]
    assert len(small) and len(big)
    assert not (kept_ids & set(scene.boxes.ids[small].tolist()))  # boxes below the tolerance pruned
    assert set(scene.boxes.ids[big].tolist()) <= kept_ids  # boxes above it kept (boxes never simplify)
    pipes = rows[scene.kind[rows] == 3]
    if len(pipes):  # pipes simplified: fewer triangles than they came with
        pipe_in = int(scene.t_count[pipes].sum())
        pipe_rows = np.flatnonzero(np.isin(got.features.element_ids, scene.boxes.ids[pipes]))
        pipe_out = int(np.isin(got.triangles.feature[got.triangles.indices[:, 0]], pipe_rows).sum())
        assert pipe_out < pipe_in / 2
    # Instances stay instances; the ones smaller than the tolerance are gone.
    assert got.instances and isinstance(got.instances[0], PartInstances)
    inst = got.instances[0]
    assert 0 < inst.count < content.instances[0].count
    full = PartInstances(inst.part_id, scene.part, inst.transforms, inst.feature, inst.materials)
    boxes = instance_boxes(full)
    assert boxes is not None
    assert np.all(0.5 * np.linalg.norm(boxes[1] - boxes[0], axis=1) >= tol)
    assert inst.part.n_triangles < scene.part.n_triangles  # the part simplified once, kept instanced
    assert int(inst.feature.max()) < len(got.features)
    # A leaf keeps everything exactly.
    leaf = next(n for n in plan.nodes if n.leaf)
    leaf_content = scene.content(leaf.elements)
    enc2 = OpaqueEncoder()
    res2 = tile_content(leaf, leaf_content, plan.options, enc2)
    assert res2 is not None
    out = next(iter(enc2.seen.values()))
    assert out is leaf_content
    assert res2.triangles == res2.input_triangles
    origin = np.asarray(json.loads(res2.data)["origin"])
    assert np.allclose(origin, 0.5 * (res2.low + res2.high))


# ---------------------------------------------------------------------------------------------------
# Real GLB contents, checker, .3tz


@pytest.fixture(scope="module")
def small_tileset() -> tuple[TilePlan, dict[int, TileResult | None], dict[str, Any], dict[str, bytes]]:
    scene = make_scene(n_small=600, n_medium=60, n_pipes=3, n_instances=40)
    p = plan_tileset(scene.boxes, TilerOptions(max_tile_triangles=2500, max_root_triangles=1000, levels=6))
    results: dict[int, TileResult | None] = {}
    for i, node in enumerate(p.nodes):

        def encode(c: TileContent, o: np.ndarray, meshopt: bool = i % 2 == 1) -> bytes:
            return tiny_glb(c, o, meshopt=meshopt)

        results[node.index] = tile_content(node, scene.content(node.elements), p.options, encode)
    doc = tileset_json(p, results)
    files = {"tileset.json": json.dumps(doc).encode()}
    files.update({r.name: r.data for r in results.values() if r is not None})
    return p, results, doc, files


def test_glb_tileset_checks_clean(small_tileset: Any, tmp_path: Path) -> None:
    _, _, _, files = small_tileset
    assert len(files) > 5
    assert any(b"EXT_meshopt_compression" in d for d in files.values())
    assert check_tileset(files) == []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert check_tileset(tmp_path) == []


def test_3tz_round_trip(small_tileset: Any, tmp_path: Path) -> None:
    _, _, _, files = small_tileset
    out = tmp_path / "model.3tz"
    with out.open("wb") as f, ThreeTzWriter(f) as w:
        for name, data in files.items():
            w.add(name, data)
    with out.open("rb") as f:
        r = ThreeTzReader(f)
        assert sorted(r.names()) == sorted(files)
        for name, data in files.items():
            assert r.read(name) == data
            assert r.read("/" + name) == data  # leading slash normalized
        assert "missing.glb" not in r
        keys = [struct.unpack("<QQ", d) for d, _ in r.index_entries()]
        assert keys == sorted(keys)
        offsets = r.central_offsets()
        assert {d: o for d, o in r.index_entries()} == {path_hash(n): o for n, o in offsets.items()}
    # A plain ZIP too: the index last, stored, sizes in the local headers; JSON deflated.
    with zipfile.ZipFile(out) as z:
        assert z.testzip() is None
        infos = z.infolist()
        assert infos[-1].filename == INDEX_NAME and infos[-1].compress_type == zipfile.ZIP_STORED
        assert z.getinfo("tileset.json").compress_type == zipfile.ZIP_DEFLATED
        assert all(i.flag_bits & 0x08 == 0 for i in infos)
        assert z.read("tileset.json") == files["tileset.json"]
    assert check_tileset(out) == []

    # Written to a non-seekable stream, the bytes are the same.
    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.chunks: list[bytes] = []

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self.chunks.append(bytes(b))
            return len(b)

    pipe = Pipe()
    with ThreeTzWriter(pipe) as w:  # type: ignore[arg-type]
        for name, data in files.items():
            w.add(name, data)
    assert b"".join(pipe.chunks) == out.read_bytes()
    # A broken index is reported.
    raw = bytearray(out.read_bytes())
    at = raw.rfind(INDEX_NAME.encode(), 0, raw.rfind(INDEX_NAME.encode()))  # the local header's name
    data_at = at + len(INDEX_NAME)
    raw[data_at + 16 : data_at + 24] = struct.pack("<Q", 999_999)  # first entry's offset
    bad = tmp_path / "bad.3tz"
    bad.write_bytes(bytes(raw))
    codes = {i.code for i in check_tileset(bad)}
    assert "3TZ_INDEX" in codes or "3TZ_INVALID" in codes or "CONTENT_MISSING" in codes


def _codes(issues: list[Any]) -> set[str]:
    return {i.code for i in issues}


def test_checker_catches_faults(small_tileset: Any) -> None:
    _, _, doc, files = small_tileset

    def with_doc(d: dict[str, Any]) -> dict[str, bytes]:
        return {**files, "tileset.json": json.dumps(d).encode()}

    def copy() -> dict[str, Any]:
        return json.loads(json.dumps(doc))

    # Child outside its parent.
    d = copy()
    child = d["root"]["children"][0]
    child["boundingVolume"]["box"][0] += 1000.0
    issues = check_tileset(with_doc(d))
    assert "BOUNDING_VOLUMES_INCONSISTENT" in _codes(issues)
    assert any(i.path.endswith("/root/children/0/boundingVolume") for i in issues)
    # Content volume outside its tile.
    d = copy()
    d["root"]["content"]["boundingVolume"]["box"][2] -= 500.0
    assert "CONTENT_BOUNDING_VOLUME_INCONSISTENT" in _codes(check_tileset(with_doc(d)))
    # Increasing geometric error.
    d = copy()
    d["root"]["children"][0]["geometricError"] = d["root"]["geometricError"] * 2 + 1
    assert "GEOMETRIC_ERROR_INCREASING" in _codes(check_tileset(with_doc(d)))
    d = copy()
    d["root"]["geometricError"] = -1
    assert "GEOMETRIC_ERROR" in _codes(check_tileset(with_doc(d)))
    # Version, required extensions, models table, missing content, regions, refine.
    d = copy()
    d["asset"]["version"] = "1.0"
    d["extensionsRequired"] = ["3DTILES_content_gltf"]
    d["extensions"][BATCHED_TILESET]["models"] = {"123": {"extents": {"low": [0, 0], "high": [1, 1, 1]}}}
    d["root"]["children"][0]["content"]["uri"] = "nowhere.glb"
    d["root"]["children"][-1]["boundingVolume"] = {"region": [0, 0, 1, 1, 0, 1]}
    del d["root"]["refine"]
    codes = _codes(check_tileset(with_doc(d)))
    assert {
        "ASSET_VERSION",
        "EXTENSION_REQUIRED",
        "MODELS_TABLE",
        "CONTENT_MISSING",
        "BOUNDING_VOLUME",
        "REFINE_MISSING",
    } <= codes
    # A child with a transform is compared in its parent's frame.
    d = copy()
    c0 = d["root"]["children"][0]
    shift = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, -1000, 1]
    c0["transform"] = shift
    assert "BOUNDING_VOLUMES_INCONSISTENT" in _codes(check_tileset_json(d))
    c0["boundingVolume"]["box"][2] += 1000.0
    for t, _ in _walk(c0)[1:]:
        t["boundingVolume"]["box"][2] += 1000.0
        if "content" in t:
            t["content"]["boundingVolume"]["box"][2] += 1000.0
    if "content" in c0:
        c0["content"]["boundingVolume"]["box"][2] += 1000.0
    assert check_tileset_json(d) == []


def test_checker_catches_bad_glb_metadata(small_tileset: Any) -> None:
    _, results, _, files = small_tileset
    name = next(r.name for r in results.values() if r is not None and r.instances and r.features > 3)
    glb = files[name]
    assert check_glb(glb, name) == []
    doc, bin_chunk = split_glb(glb)

    def faulty(change: Any) -> set[str]:
        d = json.loads(json.dumps(doc))
        change(d)
        return _codes(check_glb(glb_bytes(d, bin_chunk), name))

    meta = "EXT_structural_metadata"

    def fewer_rows(d: dict[str, Any]) -> None:
        d["extensions"][meta]["propertyTables"][0]["count"] -= 2

    codes = faulty(fewer_rows)
    assert "METADATA_INVALID_LENGTH" in codes and "VALUE_NOT_IN_RANGE" in codes

    def misaligned(d: dict[str, Any]) -> None:
        view = d["extensions"][meta]["propertyTables"][0]["properties"]["element"]["values"]
        d["bufferViews"][view]["byteOffset"] += 4
        d["bufferViews"][view]["byteLength"] -= 8

    assert {"METADATA_INVALID_ALIGNMENT", "METADATA_INVALID_LENGTH"} <= faulty(misaligned)

    def offsets_past(d: dict[str, Any]) -> None:
        view = d["extensions"][meta]["propertyTables"][0]["properties"]["className"]["values"]
        d["bufferViews"][view]["byteLength"] -= 3

    assert "METADATA_INVALID_LENGTH" in faulty(offsets_past)

    def feature_count(d: dict[str, Any]) -> None:
        fid = d["meshes"][0]["primitives"][0]["extensions"]["EXT_mesh_features"]["featureIds"][0]
        fid["featureCount"] = 1

    assert "FEATURE_COUNT_MISMATCH" in faulty(feature_count)

    def instance_count(d: dict[str, Any]) -> None:
        for node in d["nodes"]:
            ext = node.get("extensions", {}).get("EXT_instance_features")
            if ext:
                ext["featureIds"][0]["featureCount"] = 1

    assert "FEATURE_COUNT_MISMATCH" in faulty(instance_count)

    def unknown_required(d: dict[str, Any]) -> None:
        d["extensionsRequired"] = [*d.get("extensionsRequired", []), "KHR_draco_mesh_compression"]

    assert "EXTENSION_REQUIRED" in faulty(unknown_required)
    # Broken bytes: header length, truncated BIN.
    assert "GLB_LENGTH" in _codes(check_glb(glb + b"\0\0\0\0", name))
    assert _codes(check_glb(b"junk" * 10, name)) == {"GLB_INVALID"}
    # A meshopt-compressed tile whose compressed feature ids are corrupted.
    mname = next(
        r.name for r in results.values() if r is not None and b"EXT_meshopt_compression" in files[r.name]
    )
    mdoc, mbin = split_glb(files[mname])
    view = next(v for v in mdoc["bufferViews"] if "extensions" in v)["extensions"]["EXT_meshopt_compression"]
    broken = bytearray(mbin)
    broken[view["byteOffset"] : view["byteOffset"] + view["byteLength"]] = bytes(view["byteLength"])
    assert _codes(check_glb(glb_bytes(mdoc, bytes(broken)), mname)) & {
        "MESHOPT_DECODE",
        "VALUE_NOT_IN_RANGE",
        "FEATURE_COUNT_MISMATCH",
    }


def test_plan_speed_on_many_elements() -> None:
    """Planning is array work: 100k element boxes in well under a second or two."""
    rng = np.random.default_rng(1)
    k = 100_000
    low = rng.uniform(0, 500, (k, 3)) * [1, 1, 0.1]
    size = rng.lognormal(-1.0, 1.0, (k, 3))
    boxes = ElementBoxes(
        ids=np.arange(k, dtype=np.uint64) + 1,
        low=low,
        high=low + size,
        model_ids=np.full(k, 0x20, np.uint64),
        triangles=rng.integers(12, 400, k),
    )
    t0 = time.perf_counter()
    p = plan_tileset(boxes)
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0
    assert sum(len(n.elements) for n in p.nodes if n.leaf) == k


def test_3tz_zip64_records(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The ZIP64 paths (offsets, sizes and entry counts past the classic limits), exercised by lowering
    the limits: writer and reader agree on where everything is."""
    from twinbase.tiles import threetz

    monkeypatch.setattr(threetz, "_U32", 200)
    monkeypatch.setattr(threetz, "_U16", 3)
    files = {f"{i}-0.glb": bytes([i]) * (50 + 40 * i) for i in range(6)}
    files["tileset.json"] = b'{"asset": {"version": "1.1"}}' * 10
    out = tmp_path / "z64.3tz"
    with out.open("wb") as f, ThreeTzWriter(f) as w:
        for name, data in files.items():
            w.add(name, data)
    with out.open("rb") as f:
        r = ThreeTzReader(f)
        assert sorted(r.names()) == sorted(files)
        for name, data in files.items():
            assert r.read(name) == data
