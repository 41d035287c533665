"""twinbase's meshes of whole iModel files (``twinbase.bim.mesher``) against the real iTwin.js
``IModelDb.exportGraphics`` on the generated "truth" model (issue #13's rules, ``compare_meshes``), and
every shared iModel meshed without exceptions, with a report of what was drawn and what fell back.

What does not match exportGraphics, and is held to exactly that here:
- Parasolid B-reps without stored facets: twinbase has no Parasolid, so their range box stands in (counted
  as ``brep-range-box``); a rotated body's stored range is looser than its facets, so those elements miss
  the 1 mm range rule (area is not checked for B-reps). With the optional native B-rep facets they match:
  tests/test_bim_native_facets.py.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from support.geometry_truth import (
    BREP,
    TRUTH_ANGLE_TOL,
    TRUTH_CHORD_TOL,
    Truth,
    TruthElement,
    TruthLines,
    compare_meshes,
    empty_lines,
    export_truth,
    load_truth,
    make_geometry,
    mesh_element,
)
from twinbase.bim.imodel import IModelFile
from twinbase.bim.mesher import MeshResult, PartRef, flattened, flattened_lines, mesh_elements, mesh_imodel
from twinbase.bim.tessellate import Mesh, Polyline, StrokeOptions

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "bim"
SHARED = sorted([*DATA.rglob("*.bim"), *DATA.rglob("*.ibim")])
OPTIONS = StrokeOptions(TRUTH_CHORD_TOL, TRUTH_ANGLE_TOL)


@pytest.fixture(scope="module")
def model() -> Path:
    return make_geometry("truth")


@pytest.fixture(scope="module")
def truth(model: Path) -> Truth:
    return load_truth(export_truth("truth"))


@pytest.fixture(scope="module")
def result(model: Path) -> MeshResult:
    with IModelFile.open(model) as imodel:
        return mesh_imodel(imodel, OPTIONS)


def as_truth(result: MeshResult, truth: Truth) -> dict[str, TruthElement]:
    """Our elements, part instances flattened, in the comparison's form."""
    out: dict[str, TruthElement] = {}
    for e in result.elements.values():
        t = truth.elements.get(e.id_hex)
        pieces = list(flattened(result, e))
        mesh = Mesh.concat([p.mesh for p in pieces]) if pieces else Mesh.empty()
        colors = np.concatenate(
            [np.full(p.mesh.n_triangles, p.appearance.color_tbgr, np.uint32) for p in pieces]
            or [np.zeros(0, np.uint32)]
        )
        lines = list(flattened_lines(result, e))
        if lines:
            joined = Polyline.concat([p.polyline for p in lines])
            segment_colors = np.concatenate(
                [np.full(len(p.polyline.segments()), p.appearance.color_tbgr, np.uint32) for p in lines]
            )
            wires = TruthLines(
                joined.points, joined.segments().astype(np.uint32), segment_colors, joined.length()
            )
        else:
            wires = empty_lines()
        out[e.id_hex] = mesh_element(
            e.id_hex,
            mesh.positions,
            mesh.indices,
            colors,
            lines=wires,
            family=t.family if t else "",
            kind=t.kind if t else "",
        )
    return out


def test_truth_model_matches_export_graphics(result: MeshResult, truth: Truth) -> None:
    assert not result.errors
    assert result.skipped_2d == 0
    report = compare_meshes(as_truth(result, truth), truth.elements)
    print(report.summary(50))
    print(result.report())
    assert report.compared == len(truth.elements) and report.meshed > 100
    allowed = set()
    for m in report.mismatches:
        t = truth.elements[m.element_id]
        if t.family == BREP and m.rule == "range":
            allowed.add(m.element_id)  # a range-box fallback (no Parasolid here)
    unexpected = [m for m in report.mismatches if m.element_id not in allowed]
    assert not unexpected, report.summary(50)
    # every B-rep of the truth (none has stored facets) fell back to its range box; text to its outline
    breps = [e for e in truth.elements.values() if e.family == BREP]
    assert result.fallbacks["brep-range-box"] == len(breps)
    assert result.fallbacks["text-range-box-outline"] == sum(
        1 for e in truth.elements.values() if e.kind == "text"
    )
    # faceted kinds within 1%, curved within 3% (the comparison's worst, as measured: far below)
    assert report.worst_area["faceted"] < 0.01 and report.worst_area["curved"] < 0.03


def test_wires_are_lines_never_triangles(result: MeshResult, truth: Truth) -> None:
    for eid, t in truth.elements.items():
        if t.family == "wire":
            ours = result.elements[int(eid, 16)]
            assert not ours.meshes and ours.lines, t.kind
            assert all(p.polyline.length() > 0 or p.polyline.points_only for p in ours.lines)


def test_parts_stay_instances(result: MeshResult, truth: Truth) -> None:
    """Each part is tessellated once in its own coordinates; each instance carries exportGraphics'
    world-from-part transform (placement, rotation and scale)."""
    assert len(result.parts) == len({i.part_id for i in truth.instances})
    ours: dict[tuple[str, str], list[PartRef]] = {}
    for e in result.elements.values():
        for ref in e.instances:
            ours.setdefault((e.id_hex, f"0x{ref.part_id:x}"), []).append(ref)
    assert sum(len(v) for v in ours.values()) == len(truth.instances)
    for inst in truth.instances:
        # an element may instance a part more than once: the one with this transform
        found = [
            r for r in ours[(inst.element_id, inst.part_id)] if np.allclose(r.transform[:3], inst.transform)
        ]
        assert len(found) == 1, inst
        mine = found[0]
        assert np.allclose(mine.transform[3], [0, 0, 0, 1])
        part = result.parts[int(inst.part_id, 16)]
        area = sum(m.area() for _, m in part.meshes)
        graphics = truth.parts[inst.display_key]
        assert area == pytest.approx(graphics.area, rel=0.03)
        # appearance of the instance: the element's category colour
        te = truth.elements[inst.element_id]
        assert mine.appearance is not None
        assert te.color_rgba is not None and mine.appearance.rgba == te.color_rgba


def test_symbology(result: MeshResult, truth: Truth) -> None:
    for eid, t in truth.elements.items():
        if not t.kind.startswith("symb-"):
            continue
        ours = result.elements[int(eid, 16)]
        mine = Counter(p.appearance.color_tbgr for p in ours.meshes)
        theirs = Counter(p.color_tbgr for p in t.pieces)
        assert set(mine) == set(theirs), t.kind
        if t.kind.startswith("symb-material"):
            assert all(p.appearance.material_id == int(str(t.pieces[0].material_id), 16) for p in ours.meshes)


def test_corrupt_stream_is_reported_for_its_element(model: Path) -> None:
    with IModelFile.open(model) as imodel:
        elements = list(imodel.elements(geometric_only=True, with_geometry=True))
        assert len(elements) > 100
        bad = {
            elements[3].id: b"\x00\x01garbage",
            elements[10].id: (elements[10].geometry_stream or b"")[:20],
        }
        broken = [e._replace(geometry_stream=bad[e.id]) if e.id in bad else e for e in elements]
        result = mesh_elements(imodel, broken, OPTIONS)
    assert {eid for eid, _ in result.errors} == set(bad)
    assert all(message for _, message in result.errors)
    assert len(result.elements) == len(elements) - len(bad)


@pytest.mark.parametrize("path", SHARED, ids=[str(p.relative_to(DATA)) for p in SHARED])
def test_shared_files_mesh(path: Path) -> None:
    with IModelFile.open(path) as imodel:
        result = mesh_imodel(imodel, OPTIONS)
        n3d = sum(1 for e in imodel.elements(geometric_only=True) if e.is_3d and e.has_geometry)
        n2d = sum(1 for e in imodel.elements(geometric_only=True) if e.is_2d)
    print(f"{path.relative_to(DATA)}: {result.report()}")
    assert not result.errors, result.errors
    assert len(result.elements) == n3d and result.skipped_2d == n2d
    for e in result.elements.values():
        for piece in e.meshes:
            assert np.isfinite(piece.mesh.positions).all()
    name = path.name
    if name == "Building_Blocks.bim":
        # six parts, each a Parasolid B-rep without facets: range-box fallbacks, instanced 173 times
        assert result.fallbacks == Counter({"brep-range-box": 6})
        assert len(result.parts) == 6 and sum(len(e.instances) for e in result.elements.values()) == 173
        assert all(len(p.meshes) == 1 and p.meshes[0][1].n_triangles == 12 for p in result.parts.values())
    if name == "ReadOnlyTest.bim" and path.parent.name != "0":
        # a B-rep stored with its facets: drawn from them, no fallback
        assert result.kinds["BRep+facets"] == 1 and not result.fallbacks
    if name == "LargeNumericRenderMaterialTextureId.bim":
        assert result.skipped_2d == 18


def test_tolerance_changes_curved_counts(model: Path) -> None:
    with IModelFile.open(model) as imodel:
        coarse = mesh_imodel(imodel, StrokeOptions(0.0, math.pi / 4))
        fine = mesh_imodel(imodel, StrokeOptions(0.001, math.pi / 12))
    tc = sum(e.triangles() for e in coarse.elements.values())
    tf = sum(e.triangles() for e in fine.elements.values())
    assert tf > 2 * tc


def test_batching_does_not_change_the_meshes(model: Path, result: MeshResult) -> None:
    """Solids tessellated many elements at a time (chunks) give each element what it gets alone."""
    with IModelFile.open(model) as imodel:
        alone = mesh_imodel(imodel, OPTIONS, chunk=1)
    assert set(alone.elements) == set(result.elements)
    for eid, e in result.elements.items():
        a = alone.elements[eid]
        assert [p.appearance for p in a.meshes] == [p.appearance for p in e.meshes]
        for p, q in zip(a.meshes, e.meshes, strict=True):
            assert p.mesh.n_triangles == q.mesh.n_triangles
            assert p.mesh.area() == pytest.approx(q.mesh.area(), rel=1e-12)
            assert np.allclose(p.mesh.range(), q.mesh.range(), atol=1e-12)
