"""The geometry truth itself: an iModel made by the real iTwin.js backend (compat/make-geometry.mjs) with
every geometry kind, meshed by the real IModelDb.exportGraphics (compat/export-graphics.mjs), read back
with numpy.

These check the truth is what it claims to be (every kind present, wires without triangles, parts scaled,
colours as set) and pin down what exportGraphics does, so twinbase's tessellation can be compared with it
(``compare_meshes``, itself tested here on the truth against itself and against perturbed copies).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from support.geometry_truth import (
    BREP,
    CURVED,
    FACETED,
    TEXT,
    WIRE,
    Truth,
    TruthElement,
    compare_meshes,
    export_truth,
    load_manifest,
    load_truth,
    make_geometry,
    mesh_element,
    rgba_to_tbgr,
    tbgr_to_rgba,
    triangle_areas,
)

KINDS = {
    FACETED: {
        "box",
        "box-frustum",
        "linear-sweep-hole",
        "linear-sweep-ell",
        "ruled-sweep",
        "region-loop",
        "region-loop-nonconvex",
        "region-parity",
        "region-union",
        "polyface-mixed",
        "polyface-grid",
        "polyface-prism",
        "part-box",
        "part-polyface",
        "part-multi",
    },
    CURVED: {
        "sphere",
        "sphere-partial-capped",
        "sphere-partial",
        "ellipsoid",
        "cone",
        "cone-pointed",
        "cylinder",
        "cylinder-uncapped",
        "torus",
        "torus-partial",
        "linear-sweep-round-hole",
        "rotational-sweep",
        "rotational-sweep-partial",
        "ruled-sweep-circles",
        "region-circle",
        "region-parity-round",
        "bspline-surface",
        "multi-solid",
        "part-cylinder",
    },
    WIRE: {"wire-linestring", "wire-arc", "wire-bspline", "wire-pointstring", "wire-path"},
    TEXT: {"text"},
    BREP: {"brep-subtract", "brep-unite", "brep-round"},
}


@pytest.fixture(scope="module")
def model() -> Path:
    return make_geometry("truth")


@pytest.fixture(scope="module")
def manifest(model: Path) -> dict[str, Any]:
    return load_manifest(model)


@pytest.fixture(scope="module")
def truth(model: Path) -> Truth:
    return load_truth(export_truth("truth"))


def of_kind(truth: Truth, kind: str) -> list[TruthElement]:
    return [e for e in truth.elements.values() if e.kind == kind]


def first(truth: Truth, kind: str) -> TruthElement:
    found = of_kind(truth, kind)
    assert found, f"no {kind} element"
    return found[0]


# ------------------------------------------------------------------------------------------ the file


def test_every_kind_present_a_few_times(truth: Truth, manifest: dict[str, Any]) -> None:
    counts = Counter(e.kind for e in truth.elements.values())
    for family, kinds in KINDS.items():
        for kind in kinds:
            assert counts[kind] >= 2, f"{kind}: {counts[kind]} elements"
            assert all(e.family == family for e in of_kind(truth, kind)), kind
    assert {e.family for e in truth.elements.values()} >= {FACETED, CURVED, WIRE, TEXT, BREP, "mixed"}
    symbology = {k for k in counts if k.startswith("symb-")}
    assert symbology == {
        "symb-color",
        "symb-transparency",
        "symb-fill",
        "symb-material",
        "symb-construction",
        "symb-subcategory",
        "symb-material-transparent-category",
    }
    assert 100 <= len(truth.elements) <= 200
    # The manifest lists exactly the elements exported, and the export saw every geometric element.
    assert {e["id"] for e in manifest["elements"]} == set(truth.elements)
    assert truth.generator["elements"] == manifest["elementCount"] == len(truth.elements)
    assert truth.generator["chordTol"] == 0.01 and math.isclose(truth.generator["angleTol"], math.pi / 12)


def test_arrays_are_consistent_with_what_js_summed(truth: Truth) -> None:
    for e in truth.elements.values():
        assert e.positions.dtype == np.float64 and e.indices.dtype == np.uint32
        assert e.normals.shape == e.positions.shape
        if e.triangles:
            assert int(e.indices.max()) < e.positions.shape[0]
            ours = float(triangle_areas(e.positions, e.indices).sum())
            assert math.isclose(ours, e.area, rel_tol=1e-9), e.kind
            assert sum(p.area for p in e.pieces) == pytest.approx(e.area, rel=1e-12)
            # exportGraphics' normals are unit vectors (float32)
            lengths = np.linalg.norm(e.normals, axis=1)
            assert np.allclose(lengths, 1.0, atol=1e-3), e.kind
            # every vertex is used by a triangle, so the range of the positions is the mesh's range
            assert np.unique(e.indices).shape[0] == e.positions.shape[0], e.kind
        else:
            assert e.area == 0 and e.range_low is None and not e.pieces


# ------------------------------------------------------------------------------- what exportGraphics does


def test_wires_have_lines_and_never_triangles(truth: Truth) -> None:
    for kind in KINDS[WIRE]:
        for e in of_kind(truth, kind):
            assert e.triangles == 0 and e.area == 0, kind
            assert e.lines.count > 0 and e.lines.length > 0, kind
    # A point string comes out as a polyline through its points (3 points: 2 segments).
    for e in of_kind(truth, "wire-pointstring"):
        assert e.lines.count == 2
    # A mixed element: the solid's triangles, the line string's segments, neither in the other.
    for e in of_kind(truth, "multi-solid-and-wire"):
        assert e.triangles == 12 and e.lines.count == 1
    # Solids give no line graphics (their edges are not exported).
    for kind in KINDS[CURVED] | KINDS[FACETED] | KINDS[BREP]:
        for e in of_kind(truth, kind):
            assert e.lines.count == 0, kind


def test_every_surface_kind_is_meshed_and_text_is_not(truth: Truth) -> None:
    for family in (FACETED, CURVED, BREP):
        for kind in KINDS[family]:
            for e in of_kind(truth, kind):
                assert e.triangles > 0 and e.area > 0, kind
    for e in of_kind(truth, "text"):
        # exportGraphics draws nothing for a TextString: no triangles and no lines.
        assert e.triangles == 0 and e.lines.count == 0


def test_areas_against_the_exact_values(truth: Truth) -> None:
    checked = 0
    for e in truth.elements.values():
        exact = e.expect.get("area")
        if exact is None:
            continue
        checked += 1
        if e.family == FACETED:
            assert e.area == pytest.approx(exact, rel=1e-9), e.kind
        else:
            # chords lie inside the surface: a little less area (or more, for a round hole in a region)
            assert e.area == pytest.approx(exact, rel=0.02), e.kind
    assert checked >= 30


def test_planar_regions_are_meshed_whether_filled_or_not(truth: Truth) -> None:
    for e in of_kind(truth, "symb-fill"):
        # Two 2s x s rectangles: one with FillDisplay.Always, one with FillDisplay.Never; both are meshed,
        # the filled one in its fill colour, the other in the category's colour (not the line colour).
        assert len(e.pieces) == 2
        s = e.expect
        colors = {p.color_tbgr for p in e.pieces}
        assert s["fillColor"] in colors and s["lineColor"] not in colors
        assert e.pieces[0].area == pytest.approx(e.pieces[1].area)
    for kind in ("region-loop", "region-parity", "region-union", "region-circle"):
        for e in of_kind(truth, kind):
            assert all(p.two_sided for p in e.pieces), kind


def test_two_sided_flags(truth: Truth) -> None:
    # Closed solids are one-sided; polyfaces, regions, surfaces and open solids two-sided.
    for kind in ("box", "sphere", "cone", "cylinder", "torus", "linear-sweep-hole", "brep-unite"):
        assert not any(p.two_sided for e in of_kind(truth, kind) for p in e.pieces), kind
    for kind in (
        "polyface-mixed",
        "polyface-prism",
        "bspline-surface",
        "cylinder-uncapped",
        "sphere-partial",
    ):
        assert all(p.two_sided for e in of_kind(truth, kind) for p in e.pieces), kind


def test_tolerance_semantics(model: Path, truth: Truth) -> None:
    """chordTol and angleTol both bound the facets, whichever is finer wins; faceted kinds never change."""
    fine = load_truth(export_truth("truth", 0.001, math.pi / 12))
    angle_only = load_truth(export_truth("truth", 0.0, math.pi / 12))
    for eid, e in truth.elements.items():
        f = fine.elements[eid]
        a = angle_only.elements[eid]
        if e.family == FACETED and not e.kind.startswith("symb-"):
            assert e.triangles == f.triangles == a.triangles, e.kind
            assert e.area == pytest.approx(f.area, rel=1e-9)
        elif e.family in (CURVED, BREP):
            assert f.triangles >= e.triangles >= a.triangles, e.kind
            if e.kind in ("sphere", "torus", "cylinder", "cone"):
                assert f.triangles > e.triangles, e.kind
    # angleTol is capped at pi/4: pi/2 gives what pi/4 gives, 8 segments a circle.
    coarse = load_truth(export_truth("truth", 0.0, math.pi / 2))
    for kind, triangles in {"region-circle": 8, "cylinder": 32, "sphere": 48, "torus": 128}.items():
        assert {e.triangles for e in of_kind(coarse, kind)} == {triangles}, kind
    # A disc is a fan around its centre: n triangles for n segments (so are cylinder and cone caps).
    assert {e.triangles for e in of_kind(angle_only, "region-circle")} == {24}
    assert {e.triangles for e in of_kind(angle_only, "cylinder")} == {24 * 2 + 2 * 24}
    # Angle only: a full sphere is 24 facets around (pi/12) whatever its radius.
    spheres = of_kind(angle_only, "sphere")
    assert len({s.triangles for s in spheres}) == 1
    # A unit sphere at 1 mm chord: 2 acos(1 - 0.001) = 5.1 degrees a step, so 72 around, 36 rows.
    unit = next(s for s in of_kind(fine, "sphere") if s.expect["area"] == pytest.approx(4 * math.pi))
    assert unit.triangles == 72 * 35 * 2
    assert unit.area == pytest.approx(4 * math.pi, rel=0.002)


# ------------------------------------------------------------------------------------------------ parts


def test_parts_are_flattened_and_scaled(truth: Truth) -> None:
    box = sorted(of_kind(truth, "part-box"), key=lambda e: e.expect["scale"])
    assert [e.expect["scale"] for e in box] == [0.5, 1, 2, 3]
    for e in box:
        assert e.triangles == 12
        assert e.area == pytest.approx(1.75 * e.expect["scale"] ** 2, rel=1e-9)
    poly = {e.expect["scale"]: e for e in of_kind(truth, "part-polyface")}
    for scale, e in poly.items():
        assert e.triangles == poly[1].triangles
        assert e.area == pytest.approx(poly[1].area * scale**2, rel=1e-9)
    # A curved part is tessellated after the instance's scale: more facets when bigger.
    cyl = {e.expect["scale"]: e for e in of_kind(truth, "part-cylinder")}
    assert cyl[0.5].triangles <= cyl[1].triangles <= cyl[2].triangles <= cyl[3].triangles
    for scale, e in cyl.items():
        assert e.area == pytest.approx(cyl[1].area * scale**2, rel=0.03)
    box1 = 2 * (1 * 0.5 + 1 * 0.25 + 0.5 * 0.25)
    for multi in of_kind(truth, "part-multi"):
        assert multi.area == pytest.approx(box1 + box1 * 4 + poly[1].area * 0.75**2 + 6 * 0.25, rel=1e-9)


def test_part_instances_with_instancing_kept(truth: Truth, manifest: dict[str, Any]) -> None:
    """partInstanceArray: each instance's world transform; exportPartGraphics: the part mesh, tessellated
    once in part coordinates. The transformed part mesh is the flattened element's mesh (faceted parts)."""
    parts = {v["id"]: name for name, v in manifest["parts"].items()}
    assert len(truth.instances) == 4 * 3 + 2 * 3
    for inst in truth.instances:
        e = truth.elements[inst.element_id]
        assert e.kind.startswith("part-")
        graphics = truth.parts[inst.display_key]
        assert graphics.part_id == inst.part_id
        # what the element gave through onGraphics with instancing kept: its own geometry only
        assert truth.parts_pass[e.id][0] == (12 if e.kind == "part-multi" else 0)
        scale = float(np.linalg.norm(inst.transform[:, 0]))
        if e.kind != "part-multi":
            assert scale == pytest.approx(e.expect["scale"])
            world = graphics.positions @ inst.transform[:, :3].T + inst.transform[:, 3]
            assert e.range_low is not None and e.range_high is not None
            if parts[inst.part_id] != "cylinder part":
                assert graphics.area * scale**2 == pytest.approx(e.area, rel=1e-9)
                assert np.allclose(world.min(axis=0), e.range_low, atol=1e-9)
                assert np.allclose(world.max(axis=0), e.range_high, atol=1e-9)
            else:
                assert graphics.area * scale**2 == pytest.approx(e.area, rel=0.03)
    # The part graphics do not depend on the instance's scale: one tessellation per part and display.
    by_part: dict[str, set[int]] = {}
    for g in truth.parts.values():
        by_part.setdefault(g.part_id, set()).add(g.indices.shape[0])
    assert all(len(counts) == 1 for counts in by_part.values())


# -------------------------------------------------------------------------------------------- symbology


def test_category_colours_and_transparency(truth: Truth, manifest: dict[str, Any]) -> None:
    by_category = {v["id"]: v for v in manifest["categories"].values()}
    plain = [e for e in truth.elements.values() if e.pieces and not e.kind.startswith("symb-")]
    assert len(plain) > 80
    for e in plain:
        cat = by_category[e.category]
        r, g, b, a = e.color_rgba or (0, 0, 0, 0)
        expected = cat["color"]  # ColorDef JSON: tbgr with no transparency
        assert (r, g, b) == tbgr_to_rgba(expected)[:3], e.kind
        # The transparency byte is floor(255 * transp): 0.5 -> 127.
        assert 255 - a == int(255 * cat.get("transp", 0)), e.kind
        assert all(p.geometry_class == 0 and p.material_id is None for p in e.pieces)
    glass = manifest["categories"]["Glass"]
    assert any(e.category == glass["id"] and e.color_rgba and e.color_rgba[3] == 128 for e in plain)


def test_colour_overrides_inside_streams(truth: Truth, manifest: dict[str, Any]) -> None:
    for e in of_kind(truth, "symb-color"):
        assert [p.color_tbgr for p in e.pieces] == e.expect["colors"]
        assert e.pieces[0].area == pytest.approx(e.pieces[1].area)
    for e in of_kind(truth, "symb-transparency"):
        assert sorted(round(p.transparency, 2) for p in e.pieces) == [0.0, 0.6]
        assert {p.color_rgba[:3] for p in e.pieces} == {e.pieces[0].color_rgba[:3]}
    detail = manifest["subCategories"]["Detail"]
    for e in of_kind(truth, "symb-subcategory"):
        subs = {p.sub_category: p for p in e.pieces}
        assert detail["id"] in subs and len(subs) == 2
        d = subs[detail["id"]]
        assert d.color_rgba[:3] == tbgr_to_rgba(detail["color"])[:3] and 255 - d.color_rgba[3] == 63
    for e in of_kind(truth, "symb-construction"):
        # Construction-class geometry is exported too, in its own piece.
        assert sorted(p.geometry_class for p in e.pieces) == [0, 1]


def test_materials_give_their_colour_and_transparency(truth: Truth, manifest: dict[str, Any]) -> None:
    mat = manifest["materials"]["Truth paint"]
    # The material's diffuse colour (each channel floor(255 c)) and its transmit as the transparency
    # replace the category's colour, even the transparent category's 0.5.
    expected = (*(int(255 * c) for c in mat["color"]), 255 - int(255 * mat["transmit"]))
    for kind in ("symb-material", "symb-material-transparent-category"):
        for e in of_kind(truth, kind):
            assert all(p.material_id == mat["id"] for p in e.pieces)
            assert e.color_rgba == expected, kind


def test_breps_are_faceted_by_exportgraphics(truth: Truth) -> None:
    """Parasolid B-reps (no facets stored with them) are faceted by exportGraphics, one-sided."""
    for kind in KINDS[BREP]:
        for e in of_kind(truth, kind):
            assert e.triangles > 100 and not any(p.two_sided for p in e.pieces), kind
    # The smaller plate, 3 x 2 x 0.5 with a through hole of radius 0.5: its wall (2 pi r h) replaces the
    # two discs (2 pi r^2) exactly, so the area is the box's.
    plate = min(of_kind(truth, "brep-subtract"), key=lambda e: e.area)
    assert plate.area == pytest.approx(2 * (3 * 2 + 3 * 0.5 + 2 * 0.5), rel=0.005)


# ------------------------------------------------------------------------------------ compare_meshes


def test_compare_truth_with_itself(truth: Truth) -> None:
    report = compare_meshes(truth.elements, truth.elements)
    assert report.ok, report.summary()
    assert report.compared == len(truth.elements)
    assert report.meshed == sum(1 for e in truth.elements.values() if e.triangles)
    assert report.wires == sum(1 for e in truth.elements.values() if not e.triangles)
    # the same meshes rebuilt through mesh_element (as twinbase's will be) compare equal too
    rebuilt = {
        eid: mesh_element(eid, e.positions, e.indices, e.triangle_colors(), lines=e.lines, family=e.family)
        for eid, e in truth.elements.items()
    }
    report = compare_meshes(rebuilt, truth.elements)
    assert report.ok, report.summary()
    assert report.worst_range == 0


def perturbed(
    e: TruthElement,
    *,
    scale: float = 1.0,
    shift: tuple[float, float, float] = (0.0, 0.0, 0.0),
    color_tbgr: int | None = None,
) -> TruthElement:
    """``e`` scaled about its range centre, moved, or recoloured."""
    positions = e.positions
    if e.range_low is not None and e.range_high is not None:
        centre = (e.range_low + e.range_high) / 2
        positions = (positions - centre) * scale + centre + np.asarray(shift)
    colors = e.triangle_colors()
    if color_tbgr is not None:
        colors[:] = color_tbgr
    return mesh_element(e.id, positions, e.indices, colors, lines=e.lines, family=e.family, kind=e.kind)


def test_compare_catches_each_rule(truth: Truth) -> None:
    ours = dict(truth.elements)
    box = first(truth, "box")
    sphere = first(truth, "sphere")
    cone = first(truth, "cone")
    wire = first(truth, "wire-arc")
    colored = first(truth, "symb-color")
    dropped = first(truth, "polyface-grid")
    text = first(truth, "text")
    brep = first(truth, "brep-round")
    # 1.02 in length is 4% in area: over both tolerances; 1.005 is 1%: inside the curved 3%.
    ours[box.id] = perturbed(box, scale=1.02)
    ours[sphere.id] = perturbed(sphere, scale=math.sqrt(1.02))
    ours[cone.id] = perturbed(cone, scale=1.02)
    ours[colored.id] = perturbed(colored, color_tbgr=rgba_to_tbgr((1, 2, 3, 255)))
    del ours[dropped.id]
    # a wire that gained a triangle
    tri = mesh_element(wire.id, np.eye(3), np.array([[0, 1, 2]]), lines=wire.lines, family=WIRE)
    ours[wire.id] = tri
    # text may be boxed (twinbase's choice), a B-rep held to its range only (a range-box fallback)
    ours[text.id] = mesh_element(text.id, np.eye(3), np.array([[0, 1, 2]]), family=TEXT)
    assert brep.range_low is not None and brep.range_high is not None
    lo, hi = brep.range_low, brep.range_high
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    ours[brep.id] = mesh_element(
        brep.id, corners, np.array([[0, 1, 3], [0, 3, 2], [4, 7, 5], [4, 6, 7]]), family=BREP
    )
    ours["0xffffff"] = replace(box, id="0xffffff")
    report = compare_meshes(ours, truth.elements)
    found = {(m.element_id, m.rule) for m in report.mismatches}
    assert found == {
        (box.id, "range"),
        (box.id, "area"),
        (cone.id, "range"),
        (cone.id, "area"),
        (sphere.id, "range"),  # a 1% larger sphere: inside the area tolerance, not the 1 mm range
        (colored.id, "colors"),
        (dropped.id, "missing"),
        (wire.id, "gained-area"),
        ("0xffffff", "unknown"),
    }, report.summary()
    assert report.worst_area["curved"] > 0.01
    # a shift under 1 mm passes; over it fails
    ok = compare_meshes({box.id: perturbed(box, shift=(0.0009, 0, 0))}, {box.id: box})
    assert ok.ok, ok.summary()
    off = compare_meshes({box.id: perturbed(box, shift=(0, 0, 0.0011))}, {box.id: box})
    assert [m.rule for m in off.mismatches] == ["range"]
    # lines: a wire without its lines, or with half their length
    no_lines = compare_meshes(
        {wire.id: mesh_element(wire.id, np.zeros((0, 3)), np.zeros((0, 3)))}, {wire.id: wire}
    )
    assert [m.rule for m in no_lines.mismatches] == ["lines"]
    half = replace(wire.lines, length=wire.lines.length / 2)
    short = compare_meshes({wire.id: replace(wire, lines=half)}, {wire.id: wire})
    assert [m.rule for m in short.mismatches] == ["lines"]
    # colour shares: swap the colours of a two-colour element whose pieces differ in area
    sub = first(truth, "symb-subcategory")
    colors = sub.triangle_colors()
    a, b = sub.pieces[0].color_tbgr, sub.pieces[1].color_tbgr
    swapped = np.where(colors == a, b, a).astype(np.uint32)
    mixed = mesh_element(sub.id, sub.positions, sub.indices, swapped, family=sub.family)
    shares = compare_meshes({sub.id: mixed}, {sub.id: sub})
    assert {m.rule for m in shares.mismatches} == {"colors"}, shares.summary()
    assert "covers" in shares.summary()
