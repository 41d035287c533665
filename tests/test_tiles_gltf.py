"""The GLB writer (issue #14): Khronos-valid files (also after meshopt decoding), round trips of geometry,
feature ids, 64-bit ids and colours, the metadata layout the validator does not check, the byte layout, and
typed errors on bad input.

The synthetic content sits on a half-metre lattice far from the origin (x ~ 5e5, y ~ 4e6) and its instance
transforms keep the lattice (quarter turns, integer scales, a mirror, a shear), so written and expected
triangles can be paired by rounding: both are put in a canonical order (by feature, look, corner keys) and
compared corner by corner within the quantization error.
"""

from __future__ import annotations

import copy
import struct
from dataclasses import replace

import meshoptimizer
import numpy as np
import pytest

from support.gltf_validate import metadata_problems, validate_glbs
from twinbase.tiles.errors import TileWriteError
from twinbase.tiles.glb import pack_glb, unpack_glb
from twinbase.tiles.glb_read import (
    Drawn,
    Glb,
    decode_meshopt,
    read_materials,
    read_property_table,
    read_triangles,
)
from twinbase.tiles.gltf import encode_glb, write_glb
from twinbase.tiles.model import FeatureTable, MaterialTable, PartInstances, TileContent, TriangleSet
from twinbase.tiles.quantize import UNIT_TOLERANCE, normals_to_oct8
from twinbase.tiles.transforms import quaternion_to_matrix

BASE = np.array([5.0e5, 4.0e6, 200.0])
BIG_ID = 2**60 + 12345  # far above 2^53: a JSON double would round it

LOOKS = MaterialTable(
    rgba=np.array(
        [[200, 30, 30, 255], [20, 120, 230, 128], [30, 200, 60, 255], [250, 250, 250, 255], [1, 2, 3, 10]],
        np.uint8,
    ),
    render_material_ids=np.array([0, 0x20000000001, 0, BIG_ID, 0], np.uint64),
    double_sided=np.array([False, False, True, False, True]),
)


def _cube() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A unit cube: 24 corners (flat normals), 12 counter-clockwise triangles."""
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    faces = [
        ((0, 2, 6, 4), (0, 0, -1)),
        ((1, 5, 7, 3), (0, 0, 1)),
        ((0, 4, 5, 1), (0, -1, 0)),
        ((2, 3, 7, 6), (0, 1, 0)),
        ((0, 1, 3, 2), (-1, 0, 0)),
        ((4, 6, 7, 5), (1, 0, 0)),
    ]
    pos, nrm, tri = [], [], []
    for quad, normal in faces:
        b = len(pos)
        pos += [corners[i] for i in quad]
        nrm += [normal] * 4
        tri += [(b, b + 1, b + 2), (b, b + 2, b + 3)]
    return np.array(pos), np.array(nrm, np.float32), np.array(tri, np.uint32)


def _quad() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    return pos, np.tile(np.array([0, 0, 1], np.float32), (4, 1)), np.array([[0, 1, 2], [0, 2, 3]], np.uint32)


def _pieces(n: int, shape: str, looks: np.ndarray, features: np.ndarray) -> TriangleSet:
    """``n`` copies of a unit cube or quad on a 2 m grid (one feature and one look each)."""
    pos, nrm, tri = _cube() if shape == "cube" else _quad()
    v = len(pos)
    cols = 250
    offset = (
        np.stack([np.arange(n) % cols * 2.0, np.arange(n) // cols * 2.0, np.arange(n) % 3 * 0.5], 1) + BASE
    )
    return TriangleSet(
        (pos[None] + offset[:, None]).reshape(-1, 3),
        np.tile(nrm, (n, 1)),
        (tri[None] + (np.arange(n) * v)[:, None, None]).reshape(-1, 3).astype(np.uint32),
        np.repeat(features.astype(np.uint32), v),
        np.repeat(looks.astype(np.uint32), v),
    )


def _features(n: int) -> FeatureTable:
    i = np.arange(n, dtype=np.uint64)
    return FeatureTable(
        element_ids=np.uint64(BIG_ID) + i * np.uint64(7),
        model_ids=np.full(n, 2**55 + 3, np.uint64),
        category_ids=np.uint64(0x30000000000) + i % np.uint64(5),
        subcategory_ids=np.uint64(0x30000000010) + i % np.uint64(5),
        geometry_classes=(np.arange(n) % 4).astype(np.uint8),
        class_names=[("Generic:PhysicalObject" if k % 3 else "BisCore:Ünïcode → Class") for k in range(n)],
        labels=[None if k % 4 == 1 else f"piece {k}" for k in range(n)],
    )


def _part() -> TriangleSet:
    """A cube part with two pieces (bottom half of its faces piece 0, the rest piece 1)."""
    pos, nrm, tri = _cube()
    return TriangleSet(pos, nrm, tri, np.zeros(24, np.uint32), (np.arange(24) >= 12).astype(np.uint32))


def _lattice_transforms(k: int, at: np.ndarray) -> tuple[np.ndarray, int]:
    """``k`` transforms that keep the half-metre lattice: quarter turns, integer scales, translations; the
    5th is a mirror and the 7th a shear (not T*R*S). Returns them and the count of non-decomposable ones."""
    turns = [
        np.eye(3),
        np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], float),
        np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float),
        np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], float),
    ]
    t = np.tile(np.eye(4), (k, 1, 1))
    for i in range(k):
        t[i, :3, :3] = turns[i % 4] @ np.diag([1 + i % 2, 1, 1 + i % 3])
        t[i, :3, 3] = at + np.array([3.0 * i, 0.5 * i, 1.0])
    bad = 0
    if k > 4:
        t[4, :3, :3] = t[4, :3, :3] @ np.diag([1.0, -1.0, 1.0])
        bad += 1
    if k > 6:
        t[6, 0, 1] += 1.0
        bad += 1
    return t, bad


def _content(
    n_boxes: int = 60, n_features: int | None = None, shape: str = "cube", parts: int = 9
) -> TileContent:
    n_features = n_features or n_boxes + 3  # a few rows no triangle names: the table is written as given
    looks = np.arange(n_boxes) % len(LOOKS)
    feats = (np.arange(n_boxes) * 7919) % n_features  # scattered, so wide tables use ids past 65535
    instances = []
    if parts:
        t, _ = _lattice_transforms(parts, BASE + np.array([0.0, -20.0, 0.0]))
        rows = np.array([[0, 1], [0, 1], [2, 4], [0, 1], [3, 3], [2, 4], [1, 0], [0, 1], [4, 2]] * 4)[:parts]
        inst_feats = (n_features - 1 - np.arange(parts) * 3) % n_features
        instances.append(
            PartInstances(0x2000000004D, _part(), t, inst_feats.astype(np.uint32), rows.astype(np.uint32))
        )
    return TileContent(_features(n_features), LOOKS, _pieces(n_boxes, shape, looks, feats), instances)


# --------------------------------------------------------------------------------------------------
# the expected drawing, and pairing written triangles with it


def _expected(content: TileContent) -> Drawn:
    ts = content.triangles
    idx = ts.indices.astype(np.int64)
    pos = [ts.positions[idx]]
    nrm = [ts.normals.astype(np.float64)[idx]]
    feat = [ts.feature.astype(np.int64)[idx]]
    look = [ts.material.astype(np.int64)[idx[:, 0]]]
    for pi in content.instances:
        pidx = pi.part.indices.astype(np.int64)
        for k in range(pi.count):
            m = pi.transforms[k]
            p = pi.part.positions @ m[:3, :3].T + m[:3, 3]
            inv_t = np.linalg.inv(m[:3, :3]).T
            n = pi.part.normals.astype(np.float64) @ inv_t.T
            n /= np.linalg.norm(n, axis=1, keepdims=True)
            tri = pidx[:, ::-1] if np.linalg.det(m[:3, :3]) < 0 else pidx
            pos.append(p[tri])
            nrm.append(n[tri])
            feat.append(np.full(tri.shape, int(pi.feature[k])))
            look.append(pi.materials[k].astype(np.int64)[pi.part.material.astype(np.int64)[tri[:, 0]]])
    m_ = np.concatenate(look)
    return Drawn(np.concatenate(pos), np.concatenate(nrm), np.concatenate(feat), m_, np.zeros(len(m_), bool))


def _canonical(d: Drawn, looks: np.ndarray | None, grid: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corner order turned (winding kept) so the smallest corner comes first, then triangles sorted; the
    sort keys use positions rounded to ``grid``, coarser than any quantization error."""
    key = np.rint(d.positions / grid).astype(np.int64)  # (m, 3, 3)
    rel = key - (key.reshape(-1, 3).min(axis=0) if len(key) else 0)
    flat = (rel[:, :, 0] << 42) | (rel[:, :, 1] << 21) | rel[:, :, 2]  # lexicographic corner rank
    first = np.argmin(flat, axis=1)
    roll = (np.arange(3)[None, :] + first[:, None]) % 3
    rows = np.arange(len(key))[:, None]
    key, pos, nrm = key[rows, roll], d.positions[rows, roll], d.normals[rows, roll]
    feat = d.feature[rows, roll]
    look = looks[d.material] if looks is not None else d.material
    order = np.lexsort([*key.reshape(len(key), -1).T[::-1], look, feat[:, 0]])
    sort_keys = np.column_stack([feat[:, 0], look, key.reshape(len(key), -1)])[order]
    return sort_keys, pos[order], np.concatenate([nrm[order], feat[order][:, :, None]], axis=2)


def _assert_same_drawing(data: bytes, content: TileContent, tol: float, ntol: float) -> None:
    got = read_triangles(data)
    want = _expected(content)
    assert len(got.positions) == len(want.positions)
    looks = np.array([m.extras["row"] for m in read_materials(Glb.parse(decode_meshopt(data)))], np.int64)
    # corners of one triangle share the feature (the writer never mixes features within a triangle here)
    k_got, p_got, nf_got = _canonical(got, looks, 0.5)
    k_want, p_want, nf_want = _canonical(want, None, 0.5)
    np.testing.assert_array_equal(k_got, k_want)
    assert np.abs(p_got - p_want).max() <= tol
    assert np.abs(nf_got[..., :3] - nf_want[..., :3]).max() <= ntol
    np.testing.assert_array_equal(nf_got[..., 3], nf_want[..., 3])


def _check_file(data: bytes, content: TileContent, meshopt: bool) -> None:
    """Everything but the validator (run once per test for all files)."""
    assert metadata_problems(data) == []
    glb = Glb.parse(decode_meshopt(data))
    table = read_property_table(glb)
    f = content.features
    for name, col in (("element", "element_ids"), ("model", "model_ids"), ("category", "category_ids")):
        assert table[name].dtype == np.uint64
        np.testing.assert_array_equal(table[name], getattr(f, col))
    np.testing.assert_array_equal(table["subcategory"], f.subcategory_ids)
    np.testing.assert_array_equal(table["geometryClass"], f.geometry_classes)
    assert table["className"] == f.class_names
    assert table["label"] == f.labels
    assert [int(x) for x in table["element"][:2]] == [BIG_ID, BIG_ID + 7]
    # colours: sRGB bytes → linear factor → sRGB bytes
    for m in read_materials(glb):
        row = m.extras["row"]
        np.testing.assert_array_equal(m.rgba, LOOKS.rgba[row])
        assert m.double_sided == bool(LOOKS.double_sided[row])
        assert m.blend == (LOOKS.rgba[row, 3] < 255)
        # written only when the look has one
        assert m.extras.get("renderMaterialId", "0x0") == f"0x{int(LOOKS.render_material_ids[row]):x}"
    extent = np.ptp(np.concatenate([content.triangles.positions.reshape(-1, 3)]), axis=0).max() + 60
    tol = extent / 65535 if meshopt else 1e-5
    _assert_same_drawing(data, content, tol, 0.02 if meshopt else 1e-6)
    required = glb.json.get("extensionsRequired", [])
    raw = Glb.parse(data).json
    if meshopt:
        assert {"EXT_meshopt_compression", "KHR_mesh_quantization"} <= set(raw["extensionsRequired"])
    else:
        assert "EXT_meshopt_compression" not in raw.get("extensionsUsed", [])
        assert "KHR_mesh_quantization" not in raw.get("extensionsUsed", [])
    assert "EXT_structural_metadata" not in required and "EXT_mesh_features" not in required


def _assert_valid(files: dict[str, bytes]) -> None:
    reports = validate_glbs(files)
    assert set(reports) >= set(files)
    for name, r in reports.items():
        assert r.errors == 0, (name, r.codes(0))
        assert r.warnings == 0, (name, r.codes(1))


# --------------------------------------------------------------------------------------------------
# tests


@pytest.mark.parametrize("meshopt", [False, True], ids=["plain", "meshopt"])
def test_boxes_looks_and_instances_round_trip(meshopt: bool) -> None:
    content = _content()
    result = encode_glb(content, meshopt=meshopt)
    s = result.stats
    assert (s.flattened_instances, s.instances, s.features) == (2, 7, 63)
    assert s.drawn_triangles == 60 * 12 + 9 * 12
    assert s.triangles == 60 * 12 + 2 * 12 + 12
    assert s.bytes == len(result.data)
    assert s.materials == len(LOOKS)
    _check_file(result.data, content, meshopt)
    doc = Glb.parse(result.data).json
    # one primitive per look used by the plain triangles; instanced nodes split by their looks' rows
    assert len(doc["meshes"][0]["primitives"]) == len(LOOKS)
    inst_nodes = [n for n in doc["nodes"] if "EXT_mesh_gpu_instancing" in n.get("extensions", {})]
    # decomposable instances' rows: [0,1] 4 times, [2,4] twice, [4,2]; the mirrored [3,3] and the
    # sheared [1,0] are drawn flat
    assert len(inst_nodes) == 3
    assert all("EXT_instance_features" in n["extensions"] for n in inst_nodes)
    _assert_valid({"boxes": result.data})


@pytest.mark.parametrize("meshopt", [False, True], ids=["plain", "meshopt"])
def test_wide_feature_ids(meshopt: bool) -> None:
    """70,000 rows: ids past 65535, so feature ids (per vertex and per instance) are FLOAT."""
    content = _content(n_boxes=30_000, n_features=70_000, shape="quad", parts=9)
    data = write_glb(content, meshopt=meshopt)
    doc = Glb.parse(decode_meshopt(data)).json
    prim = doc["meshes"][0]["primitives"][0]
    assert doc["accessors"][prim["attributes"]["_FEATURE_ID_0"]]["componentType"] == 5126
    assert int(content.triangles.feature.max()) > 65535
    _check_file(data, content, meshopt)
    _assert_valid({"wide": data})


def test_feature_id_types_follow_the_table_size() -> None:
    types = {}
    for n in (200, 256, 257, 65536, 65537):
        content = _content(n_boxes=40, n_features=n, parts=0)
        doc = Glb.parse(decode_meshopt(write_glb(content))).json
        prim = doc["meshes"][0]["primitives"][0]
        types[n] = doc["accessors"][prim["attributes"]["_FEATURE_ID_0"]]["componentType"]
        assert (
            doc["bufferViews"][doc["accessors"][prim["attributes"]["_FEATURE_ID_0"]]["bufferView"]][
                "byteStride"
            ]
            == 4
        )
    assert types == {200: 5121, 256: 5121, 257: 5123, 65536: 5123, 65537: 5126}


def test_arbitrary_rotations_decompose_into_instances() -> None:
    """Instances turned by arbitrary angles with non-uniform scales round-trip through quaternions; with a
    position tolerance the instance streams are filtered (QUATERNION rotations, EXPONENTIAL translations and
    scales) and every corner still stays within the tolerance."""
    rng = np.random.default_rng(7)
    k = 12
    q = rng.normal(size=(k, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    t = np.tile(np.eye(4), (k, 1, 1))
    t[:, :3, :3] = quaternion_to_matrix(q) * rng.uniform(0.5, 3.0, size=(k, 1, 3))
    t[:, :3, 3] = BASE + rng.uniform(-50, 50, size=(k, 3))
    part = _part()
    content = TileContent(
        _features(k),
        LOOKS,
        TriangleSet.empty(),
        [PartInstances(9, part, t, np.arange(k, dtype=np.uint32), np.tile([1, 2], (k, 1)).astype(np.uint32))],
    )
    files = {}
    for meshopt, tolerance in ((False, None), (True, None), (True, 0.004)):
        result = encode_glb(content, meshopt=meshopt, position_tolerance=tolerance)
        assert (result.stats.instances, result.stats.flattened_instances) == (k, 0)
        filters = {
            v["extensions"]["EXT_meshopt_compression"].get("filter")
            for v in Glb.parse(result.data).json["bufferViews"]
            if "extensions" in v
        }
        assert ({"QUATERNION", "EXPONENTIAL"} <= filters) == (tolerance is not None)
        got = read_triangles(result.data)
        assert got.instanced.all()
        want = _expected(content)
        # one feature per instance: pair triangles within a feature by nearest centroid (meshopt reorders
        # triangles for the vertex cache), then corners as cyclic sets (its triangle codec may turn them)
        g = got.positions[np.argsort(got.feature[:, 0], kind="stable")].reshape(k, 12, 3, 3)
        w = want.positions[np.argsort(want.feature[:, 0], kind="stable")].reshape(k, 12, 3, 3)
        dist = np.linalg.norm(g.mean(axis=2)[:, :, None] - w.mean(axis=2)[:, None, :], axis=3)
        g = np.take_along_axis(g, np.argmin(dist, axis=1)[:, :, None, None], axis=1)
        best = np.min([np.abs(np.roll(g, r, axis=2) - w).max(axis=(2, 3)) for r in range(3)], axis=0)
        assert best.max() <= (tolerance or (3e-4 if meshopt else 1e-4)), best.max()
        if tolerance is not None:
            assert best.max() > tolerance / 4  # the grid and streams do use the room they are given
        assert metadata_problems(result.data) == []
        files[f"rot{int(meshopt)}{'-tol' if tolerance else ''}"] = result.data
    _assert_valid(files)


def test_position_tolerance_coarsens_the_grid_within_it() -> None:
    """``position_tolerance`` makes the grid step (the node scale) twice the tolerance, every drawn corner
    stays within it (instances' grids shrink by their scale), and the file gets smaller."""
    content = _content()
    fine = write_glb(content)
    tolerance = 0.02
    coarse = write_glb(content, position_tolerance=tolerance)
    assert len(coarse) < len(fine)
    _assert_same_drawing(coarse, content, tolerance + 1e-4, 0.02)
    doc = Glb.parse(decode_meshopt(coarse)).json
    node = next(n for n in doc["nodes"] if n.get("name") == "triangles")
    assert node["scale"][0] == pytest.approx(2 * tolerance)
    glb = Glb.parse(decode_meshopt(coarse))
    top = max(int(glb.accessor(p["attributes"]["POSITION"]).max()) for p in doc["meshes"][0]["primitives"])
    assert top == 2975  # the 119 m extent in 4 cm steps (16 bits would be 65535)
    assert metadata_problems(coarse) == []
    _assert_valid({"coarse": coarse})


def test_octahedral_normals_decode_to_unit_length() -> None:
    """Every direction's code decodes (as a meshopt decoder does) to a unit int8 normal the validator
    accepts, near the direction."""
    rng = np.random.default_rng(3)
    v = rng.normal(size=(100_000, 3))
    v = np.concatenate([v, np.eye(3), -np.eye(3), [[1, 1, 0], [0, -1, -1], [3, -4, 0], [0, 3, -4]]])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    codes = normals_to_oct8(v)
    assert codes.dtype == np.int8 and codes.shape == (len(v), 4)
    assert (codes[:, 2] == 127).all() and (codes[:, 3] == 0).all()
    decoded = meshoptimizer.decode_filter_oct(codes, len(codes), 4)[:, :3] / 127.0
    length = np.linalg.norm(decoded, axis=1)
    assert np.abs(length - 1).max() <= UNIT_TOLERANCE
    assert np.abs(decoded - v).max() <= 0.02
    np.testing.assert_array_equal(decoded[-10:-4] * 127, np.concatenate([np.eye(3), -np.eye(3)]) * 127)


def test_y_up_and_origin() -> None:
    content = _content(n_boxes=10, parts=0)
    origin = BASE + np.array([1.0, 2.0, 3.0])
    for y_up in (True, False):
        data = write_glb(content, origin=origin, y_up=y_up, meshopt=False)
        root = Glb.parse(data).json["nodes"][0]
        if y_up:
            assert root["rotation"] == pytest.approx([-(0.5**0.5), 0, 0, 0.5**0.5])
            assert root["translation"] == pytest.approx([origin[0], origin[2], -origin[1]])
        else:
            assert "rotation" not in root
            assert root["translation"] == pytest.approx(origin.tolist())
        _assert_same_drawing_plain(data, content, y_up)
    # a point at iModel (x, y, z) lands at glTF (x, z, -y)
    data = write_glb(content, origin=np.zeros(3), meshopt=False)
    glb = Glb.parse(data)
    acc = glb.json["meshes"][0]["primitives"][0]["attributes"]["POSITION"]
    raw = glb.accessor_float(acc)  # stored in iModel axes; the root rotation turns them
    q = np.asarray(glb.json["nodes"][0]["rotation"])[None]
    world = raw @ quaternion_to_matrix(q)[0].T
    np.testing.assert_allclose(world, raw[:, [0, 2, 1]] * [1, 1, -1], atol=1e-6)


def _assert_same_drawing_plain(data: bytes, content: TileContent, y_up: bool) -> None:
    got = read_triangles(data, y_up=y_up)
    want = _expected(content)
    looks = np.array([m.extras["row"] for m in read_materials(Glb.parse(data))], np.int64)
    k_got, p_got, _ = _canonical(got, looks, 0.5)
    k_want, p_want, _ = _canonical(want, None, 0.5)
    np.testing.assert_array_equal(k_got, k_want)
    assert np.abs(p_got - p_want).max() < 1e-5


def test_glb_byte_layout() -> None:
    for meshopt in (False, True):
        data = write_glb(_content(n_boxes=20), meshopt=meshopt)
        magic, version, length = struct.unpack_from("<III", data, 0)
        assert (magic, version, length) == (0x46546C67, 2, len(data))
        json_len, json_type = struct.unpack_from("<II", data, 12)
        assert json_type == 0x4E4F534A and json_len % 4 == 0
        text = data[20 : 20 + json_len]
        assert text.rstrip(b" ").endswith(b"}") and set(text[len(text.rstrip(b" ")) :]) <= {0x20}
        bin_at = 20 + json_len
        bin_len, bin_type = struct.unpack_from("<II", data, bin_at)
        assert bin_type == 0x004E4942 and bin_len % 8 == 0
        assert (bin_at + 8) % 8 == 0  # BIN data starts 8-aligned in the file (64-bit columns in place)
        assert bin_at + 8 + bin_len == len(data)
        doc, binary = Glb.parse(data).json, data[bin_at + 8 :]
        assert doc["buffers"][0]["byteLength"] == bin_len
        ends = [0]
        for view in doc["bufferViews"]:
            ext = view.get("extensions", {}).get("EXT_meshopt_compression")
            where = ext if ext else view
            assert where.get("byteOffset", 0) % 8 == 0
            ends.append(where.get("byteOffset", 0) + where["byteLength"])
            if ext:
                assert view["buffer"] == 1 and ext["buffer"] == 0
                assert view["byteLength"] == ext["count"] * ext["byteStride"]
                assert binary[ext.get("byteOffset", 0)] in (0xA0, 0xE1)  # vertex codec v0, index codec v1
        assert set(binary[max(ends) :]) <= {0}
        if meshopt:
            assert doc["buffers"][1]["extensions"]["EXT_meshopt_compression"]["fallback"] is True
            assert "uri" not in doc["buffers"][1]
        else:
            assert len(doc["buffers"]) == 1


def test_empty_content_is_a_valid_glb() -> None:
    empty = TileContent(_features(0), LOOKS, TriangleSet.empty())
    only_table = TileContent(_features(3), LOOKS, TriangleSet.empty())
    files = {"empty": write_glb(empty), "table": write_glb(only_table)}
    assert read_triangles(files["empty"]).positions.shape == (0, 3, 3)
    assert read_property_table(Glb.parse(decode_meshopt(files["table"])))["element"].tolist() == [
        BIG_ID,
        BIG_ID + 7,
        BIG_ID + 14,
    ]
    _assert_valid(files)


def test_all_labels_missing_leaves_the_column_out() -> None:
    content = _content(n_boxes=5, parts=0)
    f = replace(content.features, labels=[None] * len(content.features))
    glb = Glb.parse(write_glb(replace(content, features=f)))
    assert "label" not in glb.json["extensions"]["EXT_structural_metadata"]["propertyTables"][0]["properties"]


def _bad(content: TileContent, **changes: object) -> TileContent:
    return replace(content, triangles=replace(content.triangles, **changes))


def test_bad_input_raises_typed_errors() -> None:
    good = _content(n_boxes=4, parts=3)
    ts = good.triangles
    cases = {
        "normals length": _bad(good, normals=ts.normals[:-1]),
        "feature length": _bad(good, feature=ts.feature[:-1]),
        "index past vertices": _bad(good, indices=np.where(ts.indices == 0, len(ts.positions), ts.indices)),
        "indices not (m, 3)": _bad(good, indices=ts.indices.reshape(-1)),
        "float indices": _bad(good, indices=ts.indices.astype(np.float64)),
        "feature past table": _bad(good, feature=ts.feature + len(good.features)),
        "material past table": _bad(good, material=ts.material + len(LOOKS)),
        "triangle spans looks": _bad(good, material=np.arange(len(ts.positions), dtype=np.uint32) % 2),
        "nan position": _bad(
            good, positions=np.where(np.arange(len(ts.positions))[:, None] == 3, np.nan, ts.positions)
        ),
        "labels length": replace(good, features=replace(good.features, labels=good.features.labels[:-1])),
        "ids length": replace(good, features=replace(good.features, model_ids=good.features.model_ids[:-1])),
        "rgba shape": replace(good, materials=replace(LOOKS, rgba=LOOKS.rgba[:, :3])),
        "geometry class past UINT8": replace(
            good, features=replace(good.features, geometry_classes=np.full(len(good.features), 300))
        ),
        "negative id": replace(
            good, features=replace(good.features, element_ids=-good.features.element_ids.astype(np.int64))
        ),
        "label not a string": replace(
            good,
            features=replace(good.features, labels=[3] * len(good.features)),  # type: ignore[list-item]
        ),
    }
    pi = good.instances[0]
    projective = pi.transforms.copy()
    projective[0, 3, 0] = 1.0
    cases["projective transform"] = replace(good, instances=[replace(pi, transforms=projective)])
    cases["instance feature length"] = replace(good, instances=[replace(pi, feature=pi.feature[:-1])])
    cases["instance look past table"] = replace(
        good, instances=[replace(pi, materials=pi.materials + len(LOOKS))]
    )
    cases["part piece past looks row"] = replace(good, instances=[replace(pi, materials=pi.materials[:, :1])])
    for name, content in cases.items():
        with pytest.raises(TileWriteError):
            write_glb(content)
        assert name
    with pytest.raises(TileWriteError):
        write_glb(good, origin=np.array([np.inf, 0, 0]))


def test_checkers_catch_broken_files() -> None:
    """The validator and the metadata check are not vacuous: a wrong POSITION max, a featureCount that
    lies and a misaligned UINT64 column are all reported."""
    doc, binary = unpack_glb(write_glb(_content(n_boxes=6, parts=0), meshopt=False))
    bad_max = copy.deepcopy(doc)
    bad_max["accessors"][bad_max["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]["max"][0] += 1.0
    bad_count = copy.deepcopy(doc)
    prim = bad_count["meshes"][0]["primitives"][0]
    prim["extensions"]["EXT_mesh_features"]["featureIds"][0]["featureCount"] += 1
    misaligned = copy.deepcopy(doc)
    table = misaligned["extensions"]["EXT_structural_metadata"]["propertyTables"][0]
    element = table["properties"]["element"]
    misaligned["bufferViews"][element["values"]]["byteOffset"] += 4
    misaligned["bufferViews"][element["values"]]["byteLength"] -= 8
    reports = validate_glbs({"bad_max": pack_glb(bad_max, binary)})
    assert "ACCESSOR_MAX_MISMATCH" in {m["code"] for m in reports["bad_max"].messages if m["severity"] == 0}
    assert any("featureCount" in p for p in metadata_problems(pack_glb(bad_count, binary)))
    problems = metadata_problems(pack_glb(misaligned, binary))
    assert any("not 8-aligned" in p for p in problems) and any("bytes for" in p for p in problems)


# --------------------------------------------------------------------------------------------------
# the writer's shortcuts give what the plain computations give


def test_quaternion_width_search_matches_the_svd_of_every_instance() -> None:
    """``_first_within`` (Frobenius bounds, an SVD only for undecided rows) picks the level the spectral
    norm of every row picks, also when the largest move sits right at the limit."""
    from twinbase.tiles.gltf import _first_within

    rng = np.random.default_rng(11)
    for trial in range(200):
        levels, k = 9, int(rng.integers(1, 40))
        d = rng.normal(size=(levels, k, 3, 3)) * (0.5 ** np.arange(levels))[:, None, None, None]
        radius = rng.uniform(0.1, 10.0, k)
        moved = np.linalg.norm(d, ord=2, axis=(2, 3)) * radius  # (levels, k)
        # shares from far below to far above, and exactly some level's largest move
        shares = [float(moved[int(rng.integers(levels))].max()), float(rng.uniform(0, moved.max()))]
        shares.append(float(np.nextafter(shares[0], 0.0)))
        for share in shares:
            passing = [lvl for lvl in range(levels) if float(moved[lvl].max()) <= share]
            assert _first_within(d, radius, share) == (passing[0] if passing else levels - 1), (trial, share)


def test_distinct_rows_match_numpy_unique() -> None:
    from twinbase.tiles.gltf import _distinct_rows

    rng = np.random.default_rng(5)
    for base, width in ((5, 1), (5, 3), (300, 4), (2**40, 2)):  # the last overflows: numpy's own unique
        for count in (1, 50, 500):  # a few rows (Python's sort) and many (numpy's)
            rows = rng.integers(0, min(base, 7), (count, width)).astype(np.int64)
            rows[::7] = base - 1
            want, which = np.unique(rows, axis=0, return_inverse=True)
            got, got_which = _distinct_rows(rows, base)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(got_which, which.reshape(-1))


def test_octahedral_table_is_the_decoder() -> None:
    """The 255 x 255 table ``normals_to_oct8`` checks codes with is what meshopt's decoder gives."""
    from twinbase.tiles.quantize import _oct_decoded, _oct_rows, _oct_table

    table, off = _oct_table()
    rng = np.random.default_rng(2)
    xy = rng.integers(-127, 128, (5000, 2)).astype(np.int8)
    codes = np.zeros((len(xy), 4), np.int8)
    codes[:, :2], codes[:, 2] = xy, 127
    decoded = _oct_decoded(codes)
    np.testing.assert_array_equal(table[_oct_rows(xy)], decoded)
    length = np.sqrt((decoded * decoded).sum(axis=1))
    np.testing.assert_array_equal(off[_oct_rows(xy)], np.abs(length - 1) > UNIT_TOLERANCE)


def test_grid_top_is_the_largest_code() -> None:
    from twinbase.tiles.quantize import quantize_positions, quantize_positions_top

    rng = np.random.default_rng(8)
    p = rng.uniform(-50, 50, (1000, 3)) + BASE
    for tolerance in (None, 0.001, 0.37):
        q, lo, step, top = quantize_positions_top(p.copy(), tolerance, scratch=True)
        q0, lo0, step0 = quantize_positions(p, tolerance)
        np.testing.assert_array_equal(q, q0)
        assert step == step0 and (lo == lo0).all()
        np.testing.assert_array_equal(top, q[:, :3].max(axis=0))
        assert (q[:, :3].min(axis=0) == 0).all()


def test_meshopt_calls_match_the_package() -> None:
    """The direct library calls give the package wrappers' results."""
    from twinbase.tiles.glb import _encode_index_buffer, _encode_vertex_buffer, optimize_fetch, optimize_strip

    pos, _, tri = _cube()
    big = np.concatenate([tri + 24 * i for i in range(30)]).astype(np.uint32).reshape(-1)
    n = 24 * 30
    want = np.empty_like(big)
    meshoptimizer.optimize_vertex_cache_strip(want, big, len(big), n)
    got = optimize_strip(big, n)
    np.testing.assert_array_equal(got, want)
    remap = np.empty(n, np.uint32)
    meshoptimizer.optimize_vertex_fetch_remap(remap, got, len(got), n)
    vertices = np.arange(n, dtype=np.int64) * 10
    renumbered = got.copy()
    moved = optimize_fetch(renumbered, vertices)
    np.testing.assert_array_equal(renumbered, remap[got])
    np.testing.assert_array_equal(moved[remap], vertices)
    rows = (np.tile(pos, (30, 1)) * 1000).astype(np.uint16)
    rows = np.concatenate([rows, np.zeros((n, 1), np.uint16)], axis=1).view(np.uint8).reshape(n, 8)
    meshoptimizer.encode_vertex_version(0)
    assert _encode_vertex_buffer(rows, n, 8) == meshoptimizer.encode_vertex_buffer(rows, n, 8)
    meshoptimizer.encode_index_version(1)
    packaged = meshoptimizer.encode_index_buffer(renumbered, len(renumbered), n)
    assert _encode_index_buffer(renumbered, n) == packaged


def test_memoized_parts_write_the_same_bytes() -> None:
    """A part met again (the memo of groupings, normal codes and encoded streams) writes the bytes it wrote
    the first time; a part of the same size with other geometry is not mistaken for it."""
    import twinbase.tiles.glb as glb_module
    import twinbase.tiles.gltf as gltf_module

    content = _content()
    first = write_glb(content, position_tolerance=0.01)
    assert write_glb(content, position_tolerance=0.01) == first
    for memo in (glb_module._ENCODED, gltf_module._GROUPS, gltf_module._OCT):
        memo._values.clear()
    assert write_glb(content, position_tolerance=0.01) == first
    other = copy.deepcopy(content)
    part = other.instances[0].part
    flipped = replace(part, indices=part.indices[:, ::-1].copy(), normals=-part.normals)
    other.instances[0] = replace(other.instances[0], part=flipped)
    warm = write_glb(other, position_tolerance=0.01)
    for memo in (glb_module._ENCODED, gltf_module._GROUPS, gltf_module._OCT):
        memo._values.clear()
    assert write_glb(other, position_tolerance=0.01) == warm != first
    groups = gltf_module._group(part.indices, part.material, len(part.positions), True, "part")
    assert not groups.order.flags.writeable  # a memoized grouping cannot be changed by a caller
