"""GeometryStream decoding (``twinbase.bim.geometry``) on real iModels and against iTwin.js itself.

- Every GeometryStream of every file in ``../shared/data/bim`` (3D and 2D elements, GeometryParts found
  through ``ec_PropertyMap``) decodes, with no unknown opcode, to the primitive counts listed here; the
  ranges recomputed from the decoded geometry (and from part ranges placed by the part instance
  transforms) equal the elements' stored BBox columns.
- ``compat/make-geometry-kinds.mjs`` makes an iModel with the real iTwin.js backend holding every kind the
  shared files lack; each decoded parameter is compared with the JSON iTwin.js reports for the same
  element (``getElementProps({ wantGeometry: true })``) within 1e-9.
- Hand-assembled bytes, every truncated prefix and bit flips: a bad stream raises a
  ``GeometryStreamError`` and nothing else.

Node.js and the compat packages are required for the iTwin.js comparison: without them it fails, it never
skips.
"""

from __future__ import annotations

import base64
import json
import math
import random
import sqlite3
import struct
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cramjam
import numpy as np
import pytest

from test_compat_imodels import ensure_native_modules
from test_compat_itwins import COMPAT, _tool
from twinbase.bim.geometry import (
    GeometryCompressionError,
    GeometryFlatBufferError,
    GeometryHeaderError,
    GeometryOpcodeError,
    GeometryStreamError,
    OpCode,
    decode_geometry_stream,
    decode_opcode_stream,
    decompress,
)
from twinbase.bim.geometry.bgfb import read_bgfb
from twinbase.bim.geometry.extents import geometry_range, transformed_range, union
from twinbase.bim.geometry.types import (
    AkimaCurve,
    Arc,
    AreaFill,
    AreaPattern,
    BasicSymbology,
    Box,
    BRep,
    BSplineCurve,
    BSplineSurface,
    Cone,
    CurveVector,
    CurveVectorType,
    DecodedStream,
    FillDisplay,
    GeometryClass,
    GeometryGroup,
    GradientMode,
    Header,
    Image,
    InterpolationCurve,
    LinearSweep,
    LineSegment,
    LineString,
    Material,
    PartInstance,
    PointString,
    Polyface,
    RotationalSweep,
    RuledSweep,
    Sphere,
    SubGraphicRange,
    TextString,
    TorusPipe,
    UnsupportedGeometry,
    ypr_matrix,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "bim"
FILES = sorted(p for p in SHARED.rglob("*") if p.suffix in (".bim", ".ibim"))
TOL = 1e-9


# ---------------------------------------------------------------------------------------------------
# reading the streams of a file
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    table: str  # "3d", "2d" or "part"
    element_id: int
    blob: bytes
    bbox: tuple[np.ndarray, np.ndarray] | None  # element-local range (2D: z = 0)


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?immutable=1", uri=True)


def _property_columns(db: sqlite3.Connection, schema: str, cls: str) -> dict[str, tuple[str, str]]:
    """Where each property of a class is stored, through the ECDb mapping tables (bim-format.md §2.3)."""
    rows = db.execute(
        """SELECT pp.AccessString, t.Name, col.Name FROM ec_PropertyMap pm
           JOIN ec_Class c ON c.Id = pm.ClassId JOIN ec_Schema s ON s.Id = c.SchemaId
           JOIN ec_PropertyPath pp ON pp.Id = pm.PropertyPathId
           JOIN ec_Column col ON col.Id = pm.ColumnId JOIN ec_Table t ON t.Id = col.TableId
           WHERE s.Name = ? AND c.Name = ?""",
        (schema, cls),
    )
    return {access: (table, column) for access, table, column in rows}


def read_streams(path: Path) -> list[Stream]:
    db = _connect(path)
    try:
        out = []
        for eid, blob, *bb in db.execute(
            "SELECT ElementId, GeometryStream, BBoxLow_X, BBoxLow_Y, BBoxLow_Z, BBoxHigh_X, BBoxHigh_Y, "
            "BBoxHigh_Z FROM bis_GeometricElement3d WHERE GeometryStream IS NOT NULL"
        ):
            out.append(Stream("3d", eid, blob, (np.array(bb[:3], float), np.array(bb[3:], float))))
        for eid, blob, *bb in db.execute(
            "SELECT ElementId, GeometryStream, BBoxLow_X, BBoxLow_Y, BBoxHigh_X, BBoxHigh_Y "
            "FROM bis_GeometricElement2d WHERE GeometryStream IS NOT NULL"
        ):
            out.append(Stream("2d", eid, blob, (np.array([*bb[:2], 0.0]), np.array([*bb[2:], 0.0]))))
        columns = _property_columns(db, "BisCore", "GeometryPart")
        table, stream_column = columns["GeometryStream"]
        bbox_columns = [
            columns[f"{corner}.{axis}"][1] for corner in ("BBoxLow", "BBoxHigh") for axis in ("X", "Y", "Z")
        ]
        part_class = db.execute(
            "SELECT c.Id FROM ec_Class c JOIN ec_Schema s ON s.Id = c.SchemaId "
            "WHERE s.Name = 'BisCore' AND c.Name = 'GeometryPart'"
        ).fetchone()[0]
        for eid, blob, *bb in db.execute(
            f"SELECT ElementId, {stream_column}, {', '.join(bbox_columns)} FROM {table} "
            f"WHERE ECClassId = ? AND {stream_column} IS NOT NULL",
            (part_class,),
        ):
            bbox = None if None in bb else (np.array(bb[:3], float), np.array(bb[3:], float))
            out.append(Stream("part", eid, blob, bbox))
        return out
    finally:
        db.close()


def decoded_files() -> Iterator[tuple[Path, list[tuple[Stream, DecodedStream]]]]:
    for path in FILES:
        yield path, [(s, decode_geometry_stream(s.blob)) for s in read_streams(path)]


# ---------------------------------------------------------------------------------------------------
# the shared files
# ---------------------------------------------------------------------------------------------------

# Primitive counts by (table, kind), as decoded; checked by hand against the files (see the report).
EXPECTED_COUNTS: dict[str, dict[tuple[str, str], int]] = {
    "3dLinestyle.bim": {
        ("3d", "LineString"): 2,
        ("part", "Cone"): 118,
        ("part", "LinearSweep"): 162,
        ("part", "Box"): 8,
        ("part", "LineString"): 20,
    },
    "Building_Blocks.bim": {("3d", "PartInstance"): 173, ("part", "BRep"): 6},
    "LargeNumericRenderMaterialTextureId.bim": {
        ("3d", "Sphere"): 3,
        ("3d", "Box"): 3,
        ("2d", "LineString"): 18,
        ("part", "Box"): 3,
    },
    "Properties_60InstancesWithUrl2.ibim": {("3d", "Sphere"): 60, ("3d", "Cone"): 2},
    "booster_structs.bim": {("3d", "LineString"): 15},
    "ReadOnlyTest_2018-03/0/ReadOnlyTest.bim": {
        ("3d", "Box"): 1,
        ("2d", "LineString"): 11,
        ("2d", "TextString"): 5,
    },
    "ReadOnlyTest_2018-03/1/ReadOnlyTest.bim": {
        ("3d", "Box"): 1,
        ("3d", "BRep"): 1,
        ("2d", "LineString"): 11,
        ("2d", "TextString"): 5,
    },
    "ReadOnlyTest_2018-03/2/ReadOnlyTest.bim": {
        ("3d", "Box"): 2,
        ("3d", "BRep"): 1,
        ("2d", "LineString"): 11,
        ("2d", "TextString"): 5,
    },
    "ReadOnlyTest_2018-03/3/ReadOnlyTest.bim": {
        ("3d", "Box"): 3,
        ("3d", "BRep"): 1,
        ("2d", "LineString"): 11,
        ("2d", "TextString"): 5,
    },
    "imodelhub-SeedFile/782ef159-0918-40bc-be40-1d5575130ee8.bim": {},
    "imodels-clients-test-imodel/baseline.bim": {},
    "imodelnative_bc.bim": {("3d", "Sphere"): 4, ("3d", "LineString"): 1},
    "imodelnative_test.bim": {("3d", "Sphere"): 4},
    "mirukuru.ibim": {("3d", "CurveVector"): 1},
    "proj.ibim": {("3d", "Polyface"): 3},
}


def _name(path: Path) -> str:
    rel = path.relative_to(SHARED).as_posix()
    return rel.removeprefix("chains/")


def test_the_shared_files_are_all_listed() -> None:
    assert sorted(_name(p) for p in FILES) == sorted(EXPECTED_COUNTS)


def test_every_stream_of_the_shared_files_decodes() -> None:
    """No unknown opcode, every op decoded, and the primitive counts by kind of each file."""
    for path, decoded in decoded_files():
        counts: Counter[tuple[str, str]] = Counter()
        unknown: Counter[int] = Counter()
        for stream, result in decoded:
            assert result.header.version == 1, (path, stream.element_id)
            assert isinstance(result.ops[0], Header)
            counts.update((stream.table, kind) for kind in result.counts().elements())
            unknown.update(u.opcode for u in result.unknown)
        print(f"{_name(path)}: {len(decoded)} streams, {dict(counts)}")
        assert not unknown, f"{path}: unknown opcodes {dict(unknown)}"
        assert dict(counts) == EXPECTED_COUNTS[_name(path)], _name(path)
    # the brief's anchors
    solids = sum(n for (table, kind), n in EXPECTED_COUNTS["3dLinestyle.bim"].items() if kind != "LineString")
    assert solids == 288


def test_building_blocks_parts_are_breps_without_facets() -> None:
    streams = read_streams(SHARED / "Building_Blocks.bim")
    parts = [decode_geometry_stream(s.blob) for s in streams if s.table == "part"]
    breps = [e.geometry for d in parts for e in d.entries]
    assert len(breps) == 6 and all(isinstance(b, BRep) for b in breps)
    for brep in breps:
        assert isinstance(brep, BRep)
        assert brep.facets == () and brep.edges == ()
        assert brep.data_size > 1000  # Parasolid transmit data, kept by size only
        assert brep.transform is not None
    # every element is a set of instances of those parts
    instances = [e for s in streams if s.table == "3d" for e in decode_geometry_stream(s.blob).entries]
    assert all(isinstance(e.geometry, PartInstance) for e in instances)
    assert {e.geometry.part_id for e in instances if isinstance(e.geometry, PartInstance)} == {
        s.element_id for s in streams if s.table == "part"
    }


def test_a_2018_brep_carries_its_old_facets() -> None:
    """ReadOnlyTest (2018) wrote a BRepPolyface (opcode 26) after its B-rep: it becomes the B-rep's facets,
    and those facets span the element's range."""
    stream = next(
        s
        for s in read_streams(SHARED / "chains" / "ReadOnlyTest_2018-03" / "1" / "ReadOnlyTest.bim")
        if s.table == "3d"
        and any(isinstance(e.geometry, BRep) for e in decode_geometry_stream(s.blob).entries)
    )
    decoded = decode_geometry_stream(stream.blob)
    assert [type(op).__name__ for op in decoded.ops] == ["Header", "BasicSymbology", "BRep", "Polyface"]
    (entry,) = decoded.entries
    brep = entry.geometry
    assert isinstance(brep, BRep) and entry.opcode == OpCode.PARASOLID_BREP
    assert len(brep.facets) == 1 and brep.data_size == 4300
    facets = brep.facets[0]
    assert facets.points.shape == (8, 3) and facets.face_count == 12  # a box as 12 triangles
    assert stream.bbox is not None
    rng = geometry_range(brep)
    assert rng is not None
    np.testing.assert_allclose(rng[0], stream.bbox[0], atol=1e-9)
    np.testing.assert_allclose(rng[1], stream.bbox[1], atol=1e-9)


def _check_ranges(path: Path) -> Counter[str]:
    """Recompute each element's local range where it is cheap; compare with its BBox columns."""
    streams = read_streams(path)
    parts = {s.element_id: s.bbox for s in streams if s.table == "part"}
    stats: Counter[str] = Counter()
    for stream in streams:
        decoded = decode_geometry_stream(stream.blob)
        rng = None
        exact = True
        padded = False  # a line style or text pads the native range: then it only contains ours
        for entry in decoded.entries:
            geometry = entry.geometry
            if isinstance(geometry, PartInstance):
                part_range = parts[geometry.part_id]
                r = None if part_range is None else transformed_range(part_range, geometry.transform)
            else:
                r = geometry_range(geometry)
            if isinstance(geometry, TextString) and geometry.range_low is not None:
                assert geometry.range_high is not None
                lo = np.array([*geometry.range_low, 0.0])
                hi = np.array([*geometry.range_high, 0.0])
                r = transformed_range((lo, hi), geometry.transform)
                padded = True
            if entry.symbology.line_style_id:
                padded = True
            if r is None:
                exact = False
                break
            rng = union(rng, r)
        if not exact or rng is None or stream.bbox is None:
            stats[f"{stream.table} not checked"] += 1
            continue
        low, high = stream.bbox
        scale = max(1.0, float(np.abs(np.concatenate([low, high])).max()))
        if padded:
            assert np.all(low <= rng[0] + 1e-9 * scale) and np.all(rng[1] <= high + 1e-9 * scale), (
                path.name,
                stream.element_id,
            )
            stats[f"{stream.table} contained"] += 1
        else:
            np.testing.assert_allclose(rng[0], low, atol=1e-9 * scale, err_msg=f"{path} {stream.element_id}")
            np.testing.assert_allclose(rng[1], high, atol=1e-9 * scale, err_msg=f"{path} {stream.element_id}")
            stats[f"{stream.table} equal"] += 1
    return stats


def test_ranges_recomputed_from_the_decoded_geometry_equal_the_bbox_columns() -> None:
    total: Counter[str] = Counter()
    for path in FILES:
        stats = _check_ranges(path)
        print(f"{_name(path)}: {dict(stats)}")
        total.update(stats)
    # Building_Blocks' 173 elements are part instances: their transforms place the part ranges exactly
    assert _check_ranges(SHARED / "Building_Blocks.bim")["3d equal"] == 173
    assert total["3d equal"] >= 250 and total["part equal"] >= 9 and total["2d equal"] >= 18, total


def test_hand_checked_values() -> None:
    """A few values read by hand from the files (the BBox columns and the reference's examples)."""
    proj = read_streams(SHARED / "proj.ibim")
    first = min(proj, key=lambda s: s.element_id)
    mesh = decode_geometry_stream(first.blob).entries[0].geometry
    assert isinstance(mesh, Polyface)
    assert mesh.points.shape == (8, 3) and mesh.face_count == 12 and mesh.num_per_face == 0
    assert mesh.point_index[:4].tolist() == [4, 7, 1, 0]  # 1-based, a 0 ends the face
    assert first.bbox is not None
    np.testing.assert_array_equal(mesh.points.min(axis=0), first.bbox[0])
    np.testing.assert_array_equal(mesh.points.max(axis=0), first.bbox[1])
    # zero-copy: the big arrays are views of the decompressed stream
    assert not mesh.points.flags.owndata and not mesh.points.flags.writeable

    readonly = read_streams(SHARED / "chains" / "ReadOnlyTest_2018-03" / "0" / "ReadOnlyTest.bim")
    box_stream = next(s for s in readonly if s.table == "3d")
    box = decode_geometry_stream(box_stream.blob).entries[0].geometry
    assert isinstance(box, Box) and box.capped
    assert (box.base_x, box.base_y) == (box.top_x, box.top_y) == (19.721224860770814, 20.061663982527286)
    assert box_stream.bbox is not None  # the box hangs below its origin: its top is the range's low z
    assert box.top_origin.tolist() == [0.0, 0.0, box_stream.bbox[0][2]] and box.top_origin[2] < -10.87
    text = next(
        e.geometry
        for s in readonly
        if s.table == "2d"
        for e in decode_geometry_stream(s.blob).entries
        if isinstance(e.geometry, TextString) and e.geometry.text == "Sheet 1"
    )
    assert isinstance(text, TextString) and text.height == 0.02 and text.font_id == 1
    assert text.glyph_ids is not None and text.glyph_ids.tolist() == [54, 75, 72, 72, 87, 3, 20]

    spheres = [
        e.geometry
        for s in read_streams(SHARED / "Properties_60InstancesWithUrl2.ibim")
        for e in decode_geometry_stream(s.blob).entries
        if isinstance(e.geometry, Sphere)
    ]
    assert len(spheres) == 60
    for sphere in spheres:
        radii = sphere.radii
        assert np.allclose(radii, radii[0]) and sphere.latitude_sweep == pytest.approx(math.pi)

    line_styled = read_streams(SHARED / "3dLinestyle.bim")
    element = decode_geometry_stream(next(s.blob for s in line_styled if s.element_id == 90))
    symbology = element.entries[0].symbology
    assert symbology.line_style_id == 79 and symbology.line_style_modifiers is not None
    assert symbology.line_style_modifiers.modifiers == 513  # scale + normal/rotation flags
    assert symbology.line_style_modifiers.yaw == pytest.approx(69.0601195285353)


def test_decoding_makes_no_per_vertex_objects_and_is_fast() -> None:
    """Decode time of every stream of each file (the figure in the report), arrays as numpy views."""
    for path in FILES:
        streams = read_streams(path)
        if not streams:
            continue
        start = time.perf_counter()
        for stream in streams:
            decode_geometry_stream(stream.blob)
        elapsed = time.perf_counter() - start
        size = sum(len(s.blob) for s in streams)
        print(f"{_name(path)}: {len(streams)} streams, {size} bytes, decoded in {1000 * elapsed:.1f} ms")
        assert elapsed < 2.0, path


# ---------------------------------------------------------------------------------------------------
# hand-assembled bytes
# ---------------------------------------------------------------------------------------------------


def _literal_snappy(raw: bytes) -> bytes:
    """A raw Snappy block holding ``raw`` as one literal (tag 0xF0 = literal, 1-byte length - 1)."""
    assert 0 < len(raw) <= 256
    varint = bytes([len(raw) | 0x80, len(raw) >> 7]) if len(raw) >= 0x80 else bytes([len(raw)])
    return varint + bytes([0xF0, len(raw) - 1]) + raw


def _chunked(raw: bytes) -> bytes:
    block = _literal_snappy(raw)
    return struct.pack("<H", len(block) + 2) + block


def _hand_stream() -> bytes:
    """GeomBlobHeader + Header op + a PointPrimitive FlatBuffer (2 points, boundary Open), by hand."""
    # FlatBuffer: root uoffset -> table; table = soffset to vtable, then fields; vector of DPoint3d
    vtable = struct.pack("<HHHH", 8, 12, 4, 8)  # 2 slots: coords at +4, boundary at +8
    # layout: [0] root offset, [4] vtable (8 bytes), [12] table: soffset, coords uoffset, boundary+pad
    #         [24] vector: count, pad to 8, then 2 x 24-byte points
    table_pos = 12
    vector_pos = 24
    table = struct.pack("<iIB3x", table_pos - 4, vector_pos - (table_pos + 4), 1)
    vector = struct.pack("<I", 2) + struct.pack("<6d", 1.0, 2.0, 3.0, -4.0, 5.5, 6.25)
    fb = struct.pack("<I", table_pos) + vtable + table + vector
    fb += bytes(-len(fb) % 8)
    ops = struct.pack("<III", 1, 8, 1) + struct.pack("<I", 0)  # Header {version 1, flags 0}
    ops += struct.pack("<II", int(OpCode.POINT_PRIMITIVE), len(fb)) + fb
    return struct.pack("<II", 0x0600, len(ops)) + ops


def test_hand_assembled_bytes_decode() -> None:
    raw = _hand_stream()
    blob = _chunked(raw[:100]) + _chunked(raw[100:])  # two chunks
    assert decompress(blob) == raw
    decoded = decode_geometry_stream(blob)
    (entry,) = decoded.entries
    assert entry.opcode == OpCode.POINT_PRIMITIVE and entry.op_index == 1
    assert isinstance(entry.geometry, LineString)
    assert entry.geometry.points.tolist() == [[1.0, 2.0, 3.0], [-4.0, 5.5, 6.25]]
    # cramjam's own compressor gives the same stream (a writer's blob is just another block)
    block = bytes(cramjam.snappy.compress_raw(raw))
    again = decode_geometry_stream(struct.pack("<H", len(block) + 2) + block)
    assert again.entries[0].geometry.points.tolist() == [[1.0, 2.0, 3.0], [-4.0, 5.5, 6.25]]  # type: ignore[union-attr]


def test_each_error_kind_says_where() -> None:
    raw = _hand_stream()
    with pytest.raises(GeometryCompressionError, match="empty"):
        decode_geometry_stream(b"")
    with pytest.raises(GeometryCompressionError, match="chunk #0 at blob byte 0: chunk of 200 bytes"):
        decode_geometry_stream(struct.pack("<H", 200) + b"\x05")
    with pytest.raises(GeometryCompressionError, match="more than Snappy can expand"):
        decode_geometry_stream(struct.pack("<H", 6) + b"\xff\xff\x7f\x00")
    with pytest.raises(GeometryHeaderError, match="signature 0x0601"):
        decode_geometry_stream(_chunked(struct.pack("<I", 0x0601) + raw[4:]))
    with pytest.raises(GeometryHeaderError, match="announces"):
        decode_geometry_stream(_chunked(raw[:-8]))
    no_header = raw[:4] + struct.pack("<I", len(raw) - 24) + raw[24:]
    with pytest.raises(GeometryOpcodeError, match="does not start with a Header"):
        decode_opcode_stream(no_header)
    bad_vector = bytearray(raw)
    payload = 8 + 16 + 8  # GeomBlobHeader, Header operation, PointPrimitive operation header
    bad_vector[payload + 24 : payload + 28] = struct.pack("<I", 1000)  # the coords count
    with pytest.raises(
        GeometryFlatBufferError, match=r"operation #1 POINT_PRIMITIVE .*PointPrimitive\.coords"
    ):
        decode_opcode_stream(bytes(bad_vector))
    # an unknown opcode is kept and counted, never fatal
    unknown = struct.pack("<II", 99, 8) + bytes(8)
    extended = raw[:4] + struct.pack("<I", len(raw) - 8 + len(unknown)) + raw[8:] + unknown
    decoded = decode_opcode_stream(extended)
    assert [(u.opcode, u.size) for u in decoded.unknown] == [(99, 8)]
    assert len(decoded.entries) == 1


# ---------------------------------------------------------------------------------------------------
# corrupt input: truncations and bit flips
# ---------------------------------------------------------------------------------------------------


def _decode_or_error(data: bytes, *, compressed: bool) -> DecodedStream | None:
    try:
        return decode_geometry_stream(data) if compressed else decode_opcode_stream(data)
    except GeometryStreamError:
        return None


def _op_bounds(raw: bytes) -> list[tuple[int, int]]:
    """(start, end) of each operation in a decompressed stream."""
    out = []
    pos = 8
    while pos < len(raw):
        size = struct.unpack_from("<I", raw, pos + 4)[0]
        out.append((pos, pos + 8 + size))
        pos += 8 + size
    return out


def _features(decoded: DecodedStream) -> set[str]:
    names = set(decoded.counts()) | {type(op).__name__ for op in decoded.ops}
    if any(isinstance(e.geometry, BRep) and e.geometry.facets for e in decoded.entries):
        names.add("BRep with facets")
    return names


def _sample_blobs() -> list[bytes]:
    """The smallest real blob of each kind: box, sphere, cone, sweep, polyface, region, text, part
    instance, B-rep with and without facets, line style modifiers."""
    wanted = {
        "Box",
        "Sphere",
        "Cone",
        "LinearSweep",
        "Polyface",
        "CurveVector",
        "TextString",
        "PartInstance",
        "BRep",
        "BRep with facets",
        "LineStyleModifiers",
    }
    picks = []
    for stream in sorted((s for path in FILES for s in read_streams(path)), key=lambda s: len(s.blob)):
        new = _features(decode_geometry_stream(stream.blob)) & wanted
        if new:
            picks.append(stream.blob)
            wanted -= new
    assert not wanted, wanted
    return picks


def test_every_truncated_prefix_raises_a_geometry_stream_error() -> None:
    for blob in _sample_blobs():
        for cut in range(len(blob)):
            with pytest.raises(GeometryStreamError):
                decode_geometry_stream(blob[:cut])
        raw = decompress(blob)
        bounds = _op_bounds(raw)
        ends = {end for _, end in bounds}
        for cut in range(8, len(raw)):
            # keep the GeomBlobHeader consistent, so the operations themselves are cut
            data = raw[:4] + struct.pack("<I", cut - 8) + raw[8:cut]
            result = _decode_or_error(data, compressed=False)
            # cut between operations: a shorter, valid stream (the Header alone included); else an error
            assert (result is not None) == (cut in ends), cut
        # each payload cut short but announced as such: its FlatBuffer points outside it (or, cut in
        # trailing padding or unreferenced bytes, still decodes): a GeometryStreamError or a result
        for start, end in bounds[1:]:
            for short in range(0, end - start - 8, 4):
                data = raw[: start + 4] + struct.pack("<I", short) + raw[start + 8 : start + 8 + short]
                data = data[:4] + struct.pack("<I", len(data) - 8) + data[8:]
                _decode_or_error(data, compressed=False)


def _flip_each_byte(data: bytes, rng: random.Random, *, compressed: bool) -> int:
    for pos in range(len(data)):
        flipped = bytearray(data)
        flipped[pos] ^= 1 << rng.randrange(8)
        _decode_or_error(bytes(flipped), compressed=compressed)
    return len(data)


def test_bit_flips_never_raise_anything_but_a_geometry_stream_error() -> None:
    """One random bit flipped in each byte, of the blob and of its decompressed stream."""
    rng = random.Random(13)
    flips = 0
    started = time.perf_counter()
    for blob in _sample_blobs():
        flips += _flip_each_byte(decompress(blob), rng, compressed=False)
        flips += _flip_each_byte(blob, rng, compressed=True)
    print(f"{flips} bit flips in {time.perf_counter() - started:.1f} s")


# ---------------------------------------------------------------------------------------------------
# against iTwin.js: every kind, compared with the JSON the backend reports
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kinds:
    bim: Path
    elements: list[dict[str, Any]]
    ids: dict[str, str]
    bgfb: dict[str, Any]  # BGFB payloads core-geometry wrote (base64), outside any element

    def stream(self, label: str) -> tuple[dict[str, Any], DecodedStream]:
        element = next(e for e in self.elements if e["label"] == label)
        return element, decode_geometry_stream(self.blob(label))

    def blob(self, label: str) -> bytes:
        element = next(e for e in self.elements if e["label"] == label)
        db = _connect(self.bim)
        try:
            eid = int(element["id"], 16)
            if element["table"] == "part":
                blob = db.execute(
                    "SELECT js1 FROM bis_DefinitionElement WHERE ElementId = ?", (eid,)
                ).fetchone()[0]
            else:
                table = "bis_GeometricElement3d" if element["table"] == "3d" else "bis_GeometricElement2d"
                blob = db.execute(
                    f"SELECT GeometryStream FROM {table} WHERE ElementId = ?", (eid,)
                ).fetchone()[0]
        finally:
            db.close()
        assert isinstance(blob, bytes)
        return blob


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> Kinds:
    ensure_native_modules()
    out = tmp_path_factory.mktemp("geometry-kinds")
    proc = subprocess.run(
        [_tool("node"), str(COMPAT / "make-geometry-kinds.mjs"), str(out)],
        cwd=COMPAT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"make-geometry-kinds failed:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads((out / "geometry-kinds.json").read_text())
    return Kinds(out / "geometry-kinds.bim", report["elements"], report["ids"], report["bgfb"])


def _close(a: Any, b: Any, what: str) -> None:
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=0, atol=TOL, err_msg=what)


def _deg(radians: float) -> float:
    return math.degrees(radians)


def _hex(value: int) -> str:
    return hex(value)


def _compare_curve(key: str, value: Any, item: Any, where: str) -> None:
    if key == "lineString":
        assert isinstance(item, LineString), where
        _close(item.points, value, where)
    elif key == "lineSegment":
        assert isinstance(item, LineSegment), where
        _close([item.start, item.end], value, where)
    elif key == "pointString":
        assert isinstance(item, PointString), where
        _close(item.points, value, where)
    elif key == "arc":
        assert isinstance(item, Arc), where
        _close(item.center, value["center"], where)
        _close(item.vector0, value["vectorX"], where)
        _close(item.vector90, value["vectorY"], where)
        _close([_deg(item.start), _deg(item.start + item.sweep)], value["sweepStartEnd"], where)
    elif key == "bcurve":
        assert isinstance(item, BSplineCurve), where
        points = np.array(value["points"], float)
        _close(item.poles, points[:, :3], where)
        if points.shape[1] == 4:
            assert item.weights is not None, where
            _close(item.weights, points[:, 3], where)
        else:
            assert item.weights is None, where
        _close(item.knots, value["knots"], where)
        assert item.order == value["order"] and item.closed == value.get("closed", False), where
    elif key == "interpolationCurve":
        assert isinstance(item, InterpolationCurve), where
        _close(item.fit_points, value["fitPoints"], where)
        if "knots" in value:
            _close(item.knots, value["knots"], where)
        else:
            assert item.knots is None, where
        assert item.order == value["order"], where
    elif key == "transitionSpiral":
        assert item == UnsupportedGeometry("TransitionSpiral", value["type"]), where
    elif key in _CURVE_VECTORS:
        assert isinstance(item, CurveVector), where
        assert item.type in _CURVE_VECTORS[key], (where, item.type)
        assert len(item.children) == len(value), where
        for i, (child_json, child) in enumerate(zip(value, item.children, strict=True)):
            ((child_key, child_value),) = child_json.items()
            _compare_curve(child_key, child_value, child, f"{where}/{key}[{i}]")
    else:
        raise AssertionError(f"{where}: {key} is not a curve")


_CURVE_VECTORS = {
    "loop": {CurveVectorType.OUTER, CurveVectorType.INNER},
    "path": {CurveVectorType.OPEN},
    "parityRegion": {CurveVectorType.PARITY_REGION},
    "unionRegion": {CurveVectorType.UNION_REGION},
    "bagOfCurves": {CurveVectorType.NONE},
}
_UNIT_XY = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


def _compare_geometry(key: str, value: Any, op: Any, where: str) -> None:
    if key == "box":
        assert isinstance(op, Box), where
        _close(op.base_origin, value["baseOrigin"], where)
        _close(op.top_origin, value["topOrigin"], where)
        _close([op.base_x, op.base_y], [value["baseX"], value["baseY"]], where)
        _close(
            [op.top_x, op.top_y],
            [value.get("topX", value["baseX"]), value.get("topY", value["baseY"])],
            where,
        )
        _close([op.vector_x, op.vector_y], value.get("xyVectors", _UNIT_XY), where)
        assert op.capped == value.get("capped", False), where
    elif key == "sphere":
        assert isinstance(op, Sphere), where
        _close(op.center, value["center"], where)
        radii = [value.get(f"radius{axis}", value.get("radius")) for axis in "XYZ"]
        _close(op.radii, radii, where)
        lat = value.get("latitudeStartEnd", [-90, 90])
        _close([_deg(op.start_latitude), _deg(op.start_latitude + op.latitude_sweep)], lat, where)
        assert op.capped == value.get("capped", False), where
    elif key == "cone":
        assert isinstance(op, Cone), where
        _close([op.center_a, op.center_b], [value["start"], value["end"]], where)
        _close([op.radius_a, op.radius_b], [value["startRadius"], value["endRadius"]], where)
        _close([op.vector0, op.vector90], value.get("xyVectors", _UNIT_XY), where)
        assert op.capped == value.get("capped", False), where
    elif key == "cylinder":
        assert isinstance(op, Cone), where
        _close([op.center_a, op.center_b], [value["start"], value["end"]], where)
        _close([op.radius_a, op.radius_b], [value["radius"], value["radius"]], where)
        axis = op.center_b - op.center_a
        # JSON leaves the disc vectors out: any orthonormal pair perpendicular to the axis
        _close([op.vector0 @ axis, op.vector90 @ axis, op.vector0 @ op.vector90], [0, 0, 0], where)
        _close([np.linalg.norm(op.vector0), np.linalg.norm(op.vector90)], [1, 1], where)
        assert op.capped == value.get("capped", False), where
    elif key == "torusPipe":
        assert isinstance(op, TorusPipe), where
        _close(op.center, value["center"], where)
        _close([op.major_radius, op.minor_radius], [value["majorRadius"], value["minorRadius"]], where)
        _close(_deg(op.sweep), value.get("sweepAngle", 360), where)
        _close([op.vector_x, op.vector_y], value.get("xyVectors", _UNIT_XY), where)
        assert op.capped == value.get("capped", False), where
    elif key == "linearSweep":
        assert isinstance(op, LinearSweep), where
        ((contour_key, contour),) = value["contour"].items()
        _compare_curve(contour_key, contour, op.base, where)
        _close(op.vector, value["vector"], where)
        assert op.capped == value.get("capped", False), where
    elif key == "rotationalSweep":
        assert isinstance(op, RotationalSweep), where
        ((contour_key, contour),) = value["contour"].items()
        _compare_curve(contour_key, contour, op.base, where)
        _close(op.axis_origin, value["center"], where)
        _close(op.axis_direction, value["axis"], where)
        _close(_deg(op.sweep), value["sweepAngle"], where)
        assert op.capped == value.get("capped", False), where
    elif key == "ruledSweep":
        assert isinstance(op, RuledSweep), where
        assert len(op.sections) == len(value["contour"]), where
        for i, (section_json, section) in enumerate(zip(value["contour"], op.sections, strict=True)):
            ((section_key, section_value),) = section_json.items()
            _compare_curve(section_key, section_value, section, f"{where} section {i}")
        assert op.capped == value.get("capped", False), where
    elif key == "bsurf":
        assert isinstance(op, BSplineSurface), where
        points = np.array(value["points"], float)  # [v][u][xyz(w)]
        _close(op.poles, points[..., :3], where)
        if points.shape[2] == 4:
            assert op.weights is not None, where
            _close(op.weights, points[..., 3], where)
        else:
            assert op.weights is None, where
        _close(op.knots_u, value["uKnots"], where)
        _close(op.knots_v, value["vKnots"], where)
        assert (op.order_u, op.order_v) == (value["orderU"], value["orderV"]), where
        assert (op.closed_u, op.closed_v) == (value.get("closedU", False), value.get("closedV", False)), where
    elif key == "indexedMesh":
        assert isinstance(op, Polyface), where
        _close(op.points, value["point"], where)
        assert op.point_index.tolist() == value["pointIndex"], where
        for data, index, data_key in (
            (op.params, op.param_index, "param"),
            (op.normals, op.normal_index, "normal"),
        ):
            if data_key in value:
                assert data is not None and index is not None, where
                _close(data, value[data_key], where)
                assert index.tolist() == value[f"{data_key}Index"], where
            else:
                assert data is None, where
        if "color" in value:
            assert op.colors is not None and op.color_index is not None, where
            assert op.colors.tolist() == value["color"] and op.color_index.tolist() == value["colorIndex"], (
                where
            )
        assert op.two_sided == value.get("twoSided", False), where
        assert op.expected_closure == value.get("expectedClosure", 0), where
    else:
        _compare_curve(key, value, op, where)


def _compare_entry(entry: dict[str, Any], op: Any, where: str) -> None:
    ((key, value),) = entry.items()
    where = f"{where} {key}"
    if key == "header":
        assert isinstance(op, Header) and op.flags == value["flags"], where
    elif key == "subRange":
        assert isinstance(op, SubGraphicRange), where
        _close([op.low, op.high], [value["low"], value["high"]], where)
    elif key == "appearance":
        assert isinstance(op, BasicSymbology), where
        assert op.subcategory_id == int(value.get("subCategory", "0"), 16), where
        assert (op.color if op.use_color else None) == value.get("color"), where
        assert (op.weight if op.use_weight else None) == value.get("weight"), where
        assert (_hex(op.line_style_id) if op.use_style else None) == value.get("style"), where
        assert op.transparency == value.get("transparency", 0), where
        assert op.display_priority == value.get("displayPriority", 0), where
        assert op.geometry_class == value.get("geometryClass", 0), where
    elif key == "fill":
        assert isinstance(op, AreaFill), where
        assert op.fill == value["display"], where
        assert op.transparency == value.get("transparency", 0), where
        assert (op.color if op.use_color else None) == value.get("color"), where
        assert op.background_fill == value.get("backgroundFill", 0), where
        gradient = value.get("gradient")
        if gradient is None:
            assert op.gradient_mode == GradientMode.NONE, where
        else:
            assert op.gradient_mode == gradient["mode"], where
            _close(_deg(op.gradient_angle), gradient.get("angle", 0), where)
            assert list(op.gradient_colors) == [k["color"] for k in gradient["keys"]], where
            _close(op.gradient_values, [k["value"] for k in gradient["keys"]], where)
    elif key == "pattern":
        assert isinstance(op, AreaPattern), where
        _close([op.space1, op.space2], [value.get("space1", 0), value.get("space2", 0)], where)
        _close([_deg(op.angle1), _deg(op.angle2)], [value.get("angle1", 0), value.get("angle2", 0)], where)
        assert (op.color if op.use_color else None) == value.get("color"), where
    elif key == "material":
        assert isinstance(op, Material) and op.use_material, where
        assert op.material_id == int(value["materialId"], 16), where
    elif key == "geomPart":
        assert isinstance(op, PartInstance), where
        assert op.part_id == int(value["part"], 16), where
        _close(op.origin, value.get("origin", [0, 0, 0]), where)
        rotation = value.get("rotation", {})
        _close([op.yaw, op.pitch, op.roll], [rotation.get(a, 0) for a in ("yaw", "pitch", "roll")], where)
        _close(op.scale, value.get("scale", 1), where)
    elif key == "image":
        assert isinstance(op, Image), where
        _close(op.corners, value["corners"], where)
        assert op.texture_id == int(value["textureId"], 16), where
        assert op.draw_border == value.get("hasBorder", False), where
    elif key == "brep":
        assert isinstance(op, BRep), where
        data = base64.b64decode(value["data"].removeprefix("encoding=base64;"))
        assert data.startswith(b"B3\x00\x00\x00: TRANSMIT FILE"), where
        assert op.data_size == len(data), where
        assert op.transform is not None
        transform = value.get("transform")
        _close(op.transform, np.array(transform).reshape(3, 4) if transform else np.eye(3, 4), where)
        assert len(op.face_symbology) == len(value.get("faceSymbology", [])), where
    elif key == "textString":
        assert isinstance(op, TextString), where
        assert (op.text, op.font_id) == (value["text"], value["font"]), where
        _close([op.height, op.width_factor], [value["height"], value.get("widthFactor", 1)], where)
        assert (op.bold, op.italic, op.underline) == tuple(
            value.get(k, False) for k in ("bold", "italic", "underline")
        )
        _close(op.transform[:, 3], value.get("origin", [0, 0, 0]), where)
        rotation = value.get("rotation", {})
        matrix = ypr_matrix(*(rotation.get(a, 0) for a in ("yaw", "pitch", "roll")))
        _close(op.transform[:, :3], matrix, where)
    else:
        _compare_geometry(key, value, op, where)


def test_every_kind_equals_what_itwinjs_reports(kinds: Kinds) -> None:
    compared: Counter[str] = Counter()
    for element in kinds.elements:
        label = element["label"]
        _, decoded = kinds.stream(label)
        json_entries = element["geom"]
        ops = list(decoded.ops)
        if "input" in element:  # a kind iTwin.js reports no JSON for: compare with what was written
            assert len(json_entries) == 1 and len(ops) == 2, label
            akima = ops.pop()
            assert isinstance(akima, AkimaCurve), label
            _close(akima.points, element["input"]["akimaCurve"]["fitPoints"], label)
            compared["AkimaCurve"] += 1
        assert len(json_entries) == len(ops), (label, json_entries, [type(o).__name__ for o in ops])
        for i, (entry, op) in enumerate(zip(json_entries, ops, strict=True)):
            _compare_entry(entry, op, f"{label} #{i}")
            compared[type(op).__name__] += 1
        assert not decoded.unknown, label
    print(dict(compared))
    for kind in (
        "Box",
        "Sphere",
        "Cone",
        "TorusPipe",
        "LinearSweep",
        "RotationalSweep",
        "RuledSweep",
        "CurveVector",
        "Arc",
        "LineString",
        "PointString",
        "BSplineCurve",
        "InterpolationCurve",
        "UnsupportedGeometry",
        "BSplineSurface",
        "Polyface",
        "TextString",
        "PartInstance",
        "BasicSymbology",
        "AreaFill",
        "AreaPattern",
        "Material",
        "Image",
        "BRep",
        "SubGraphicRange",
    ):
        assert compared[kind] > 0, kind


def test_the_generated_file_ranges_equal_its_bbox_columns(kinds: Kinds) -> None:
    stats = _check_ranges(kinds.bim)
    print(dict(stats))
    assert stats["3d equal"] >= 18 and stats["part equal"] == 2 and stats["2d equal"] == 2, stats


def test_part_instances_keep_their_parts_and_transforms(kinds: Kinds) -> None:
    _, decoded = kinds.stream("part instances")
    instances = [e.geometry for e in decoded.entries]
    assert all(isinstance(p, PartInstance) for p in instances) and len(instances) == 4
    cube = int(next(e["id"] for e in kinds.elements if e["label"] == "cube part"), 16)
    post = int(next(e["id"] for e in kinds.elements if e["label"] == "post part"), 16)
    assert [p.part_id for p in instances] == [cube, cube, post, post]  # type: ignore[union-attr]
    scaled = instances[1]
    assert isinstance(scaled, PartInstance)
    # yaw 90 then scale 2: x -> 2y, y -> -2x, plus the origin (3, 0, 0)
    _close(scaled.transform, [[0, -2, 0, 3], [2, 0, 0, 0], [0, 0, 2, 0]], "scaled instance")
    tilted = instances[2]
    assert isinstance(tilted, PartInstance)
    _close(tilted.transform[:, :3], 0.5 * ypr_matrix(10, 20, 30), "tilted instance")
    _close(np.linalg.det(tilted.transform[:, :3]), 0.125, "tilted instance scale")


def test_symbology_in_effect_follows_the_stream(kinds: Kinds) -> None:
    ids = {k: int(v, 16) for k, v in kinds.ids.items()}
    _, decoded = kinds.stream("symbology changes")
    box, sphere, filled, gradient, hatched, image, part = decoded.entries
    assert box.symbology.subcategory_id == 0 and box.symbology.color is None  # the category's appearance
    s = sphere.symbology
    assert s.subcategory_id == ids["subcategory"] and s.color == 0x1EC80A and s.weight == 3
    assert s.transparency == 0.4 and s.geometry_class == GeometryClass.CONSTRUCTION
    f = filled.symbology
    assert f.subcategory_id == ids["subcategory"] - 1 and f.color is None  # reset by the new BasicSymbology
    assert f.fill_display == FillDisplay.ALWAYS and f.fill_color == 0x00FFFF and f.fill_transparency == 0.3
    assert f.material_id == ids["material"]
    g = gradient.symbology
    # subcategory 0 in the op keeps the current subcategory; everything else is reset
    assert g.subcategory_id == f.subcategory_id and g.material_id is None and g.fill_color is None
    assert g.fill_display == FillDisplay.BY_VIEW and g.gradient is not None
    assert g.gradient.gradient_colors == (0x0000FF, 0xFF0000)
    h = hatched.symbology
    assert h.pattern is not None and h.pattern.space1 == 0.25 and h.gradient is None
    assert image.symbology.pattern is None and isinstance(image.geometry, Image)
    assert image.geometry.texture_id == ids["texture"]
    # each primitive follows its SubGraphicRange, which equals its range; a part instance has none
    for entry in (box, sphere, filled, gradient, hatched):
        assert entry.local_range is not None
        rng = geometry_range(entry.geometry)
        assert rng is not None
        _close([entry.local_range.low, entry.local_range.high], rng, entry.kind)
    assert image.local_range is not None  # the image's corners
    _close([image.local_range.low, image.local_range.high], [[0, 5, 0], [2, 7, 0]], "image")
    assert isinstance(part.geometry, PartInstance) and part.local_range is None

    _, plan = kinds.stream("2d shapes")
    shape, circle, lines = plan.entries
    assert shape.opcode == OpCode.POINT_PRIMITIVE_2D and lines.opcode == OpCode.POINT_PRIMITIVE_2D
    assert shape.symbology.display_priority == 5 and shape.symbology.fill_display == FillDisplay.BLANKING
    assert shape.symbology.background_fill == 2  # outline
    assert circle.symbology.fill_display == FillDisplay.NEVER and circle.symbology.display_priority == 5


def test_a_big_mesh_spans_many_snappy_chunks_and_decodes_as_views(kinds: Kinds) -> None:
    blob = kinds.blob("big mesh")
    chunks, pos = 0, 0
    while pos < len(blob):
        pos += struct.unpack_from("<H", blob, pos)[0]
        chunks += 1
    started = time.perf_counter()
    decoded = decode_geometry_stream(blob)
    elapsed = time.perf_counter() - started
    mesh = decoded.entries[0].geometry
    assert isinstance(mesh, Polyface)
    print(
        f"big mesh: {len(blob)} bytes in {chunks} chunks -> {decoded.size} bytes, "
        f"{mesh.points.shape[0]} points, {mesh.face_count} faces, decoded in {1000 * elapsed:.1f} ms"
    )
    assert chunks > 50 and decoded.size > 3_000_000
    assert mesh.face_count == 150 * 150
    for array in (
        mesh.points,
        mesh.point_index,
        mesh.normals,
        mesh.normal_index,
        mesh.params,
        mesh.param_index,
    ):
        assert array is not None and not array.flags.owndata  # np.frombuffer views, no per-vertex objects
    assert elapsed < 1.0


def test_bit_flips_in_every_generated_kind_never_raise_anything_else(kinds: Kinds) -> None:
    """The same on the iTwin.js-made streams of every kind (the big mesh and the B-rep data aside)."""
    rng = random.Random(2026)
    flips = 0
    for element in kinds.elements:
        if element["label"] in ("big mesh", "brep"):
            continue
        blob = kinds.blob(element["label"])
        flips += _flip_each_byte(decompress(blob), rng, compressed=False)
    print(f"{flips} bit flips")


def _ops_of(raw: bytes) -> list[tuple[int, bytes]]:
    return [(struct.unpack_from("<I", raw, start)[0], raw[start + 8 : end]) for start, end in _op_bounds(raw)]


def _stream_of(ops: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(struct.pack("<II", opcode, len(payload)) + payload for opcode, payload in ops)
    return struct.pack("<II", 0x0600, len(body)) + body


def test_old_brep_fallbacks_attach_to_the_brep_before_them(kinds: Kinds) -> None:
    """Opcodes 26 (BRepPolyface) and 27 (BRepCurveVector) right after a B-rep become its facets and
    edges; anywhere else they are entries of their own, marked by their opcode."""
    brep_ops = _ops_of(decompress(kinds.blob("brep")))
    mesh_payload = next(p for op, p in _ops_of(decompress(kinds.blob("polyface"))) if op == OpCode.POLYFACE)
    symbology_payload = next(
        p for op, p in _ops_of(decompress(kinds.blob("symbology changes"))) if op == OpCode.BASIC_SYMBOLOGY
    )
    path_payload = next(p for op, p in _ops_of(decompress(kinds.blob("path"))) if op == OpCode.CURVE_VECTOR)
    raw = _stream_of(
        [
            *brep_ops,
            (OpCode.BREP_POLYFACE, mesh_payload),
            (OpCode.BREP_CURVE_VECTOR, path_payload),
            (OpCode.BREP_POLYFACE, mesh_payload),
            (OpCode.BASIC_SYMBOLOGY, symbology_payload),  # any op that is not a fallback
            (OpCode.BREP_POLYFACE, mesh_payload),  # not after a B-rep
        ]
    )
    decoded = decode_opcode_stream(raw)
    brep = decoded.entries[0].geometry
    assert isinstance(brep, BRep)
    assert len(brep.facets) == 2 and len(brep.edges) == 1
    assert isinstance(brep.edges[0], CurveVector) and brep.edges[0].type == CurveVectorType.OPEN
    assert [e.opcode for e in decoded.entries] == [OpCode.PARASOLID_BREP, OpCode.BREP_POLYFACE]
    assert isinstance(decoded.entries[1].geometry, Polyface)
    # the ops keep the stream as stored
    assert [type(op).__name__ for op in decoded.ops][-6:] == [
        "BRep",
        "Polyface",
        "CurveVector",
        "Polyface",
        "BasicSymbology",
        "Polyface",
    ]


def test_polyface_faces_of_both_index_layouts() -> None:
    """Zero-terminated faces of any size (numPerFace <= 1) and fixed blocks padded with 0."""
    points = np.arange(15, dtype=float).reshape(5, 3)

    def mesh(index: list[int], num_per_face: int) -> Polyface:
        return Polyface(
            points=points,
            point_index=np.array(index, dtype=np.int32),
            params=None,
            param_index=None,
            normals=None,
            normal_index=None,
            colors=None,
            color_index=None,
            num_per_face=num_per_face,
            two_sided=False,
            expected_closure=0,
        )

    flat, starts, visible = mesh([1, 2, -3, 4, 0, 1, 4, 5, 0], 0).faces()
    assert flat.tolist() == [0, 1, 2, 3, 0, 3, 4] and starts.tolist() == [0, 4, 7]
    assert visible.tolist() == [True, True, False, True, True, True, True]
    flat, starts, visible = mesh([1, 2, 3, 4, 1, -4, 5, 0], 4).faces()
    assert flat.tolist() == [0, 1, 2, 3, 0, 3, 4] and starts.tolist() == [0, 4, 7]
    assert visible.tolist() == [True, True, True, True, True, False, True]
    assert mesh([1, 2, 3, 0, 0, 3, 4, 5, 0], 1).face_count == 2  # an empty face is no face


def test_a_bgfb_vector_of_geometry_is_a_group(kinds: Kinds) -> None:
    data = base64.b64decode(kinds.bgfb["group"])
    group = read_bgfb(data, 0, len(data), "core-geometry's array")
    assert isinstance(group, GeometryGroup) and len(group.members) == 2
    sphere, line = group.members
    assert isinstance(sphere, Sphere) and isinstance(line, LineString)
    _close(sphere.center, [1, 2, 3], "group sphere")
    _close(sphere.radii, [4, 4, 4], "group sphere")
    _close(line.points, [[0, 0, 0], [1, 1, 1]], "group line")
    with pytest.raises(GeometryFlatBufferError, match="not a BGFB payload"):
        read_bgfb(b"bg0002fb" + data[8:], 0, len(data), "a wrong signature")


def test_core_geometrys_own_bgfb_writer_decodes_to_its_json(kinds: Kinds) -> None:
    """Every kind as core-geometry's BGFBWriter encodes it (not the native writer): the same values as
    core-geometry's IModelJson of the same object."""
    labels = []
    for item in kinds.bgfb["kinds"]:
        data = base64.b64decode(item["data"])
        geometry = read_bgfb(data, 0, len(data), item["label"])
        ((key, value),) = item["json"].items()
        if key == "lineSegment":  # the native writer stores a segment as a 2-point line string
            assert isinstance(geometry, LineSegment)
        if (
            key == "interpolationCurve"
            and isinstance(geometry, InterpolationCurve)
            and geometry.knots is None
        ):
            # core-geometry writes no knots it was not given; its JSON writer computes them
            value = {k: v for k, v in value.items() if k != "knots"}
        _compare_geometry(key, value, geometry, f"core-geometry {item['label']}")
        labels.append(item["label"])
    print(labels)
    assert len(labels) >= 25
