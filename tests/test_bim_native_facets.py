"""The optional native B-rep facets of ``twinbase.bim.mesher`` (``native_breps=True``): Parasolid B-reps
stored without facets meshed by the real iTwin.js native library (``compat/brep-facets.mjs``) instead of
their range box, compared with what ``compat/export-graphics.mjs`` (``IModelDb.exportGraphics``) gives
for the same elements, by issue #13's rules (ranges within 1 mm, areas within 3%, the same colours).

Node and the compat install are required: a missing one fails these tests (never a skip).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from support.geometry_truth import (
    BREP,
    COMPAT,
    Truth,
    compare_meshes,
    export_truth,
    load_truth,
    make_geometry,
    run_export,
)
from test_bim_mesher import DATA, OPTIONS, as_truth
from test_compat_imodels import ensure_native_modules
from twinbase.bim.imodel import IModelFile
from twinbase.bim.mesher import MeshResult, mesh_imodel
from twinbase.bim.native_facets import (
    NativeFacetProvider,
    NativeFacets,
    NativeFacetsUnavailable,
)

BUILDING_BLOCKS = DATA / "Building_Blocks.bim"


class CountingProvider(NativeFacetProvider):
    """The real provider, counting its node processes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, int]] = []  # (elements, parts) asked per process

    def facets(
        self,
        bim: str | os.PathLike[str],
        elements: Iterable[int],
        parts: Iterable[tuple[int, int | None]],
        chord_tolerance: float,
        angle_tolerance: float,
        max_edge_length: float | None = None,
    ) -> NativeFacets:
        asked, part_list = list(elements), list(parts)
        self.calls.append((len(asked), len(part_list)))
        return super().facets(bim, asked, part_list, chord_tolerance, angle_tolerance, max_edge_length)


@pytest.fixture(scope="module", autouse=True)
def _native() -> None:
    ensure_native_modules()


def _export(bim: Path, out: Path) -> Truth:
    run_export(bim, out, OPTIONS.chord_tolerance, OPTIONS.angle_tolerance)
    return load_truth(out)


def _native_mesh(bim: Path) -> tuple[MeshResult, CountingProvider]:
    provider = CountingProvider()
    with IModelFile.open(bim) as imodel:
        result = mesh_imodel(imodel, OPTIONS, native_breps=provider)
    assert not result.errors, result.errors
    return result, provider


def test_building_blocks_parts_mesh_natively(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Six GeometryParts, each a Parasolid B-rep without facets, instanced 173 times: with the option,
    each part is real triangles (still once, in part coordinates), every instance matching exportGraphics."""
    result, provider = _native_mesh(BUILDING_BLOCKS)
    assert provider.calls == [(0, 6)]  # one node process, for the six parts only
    assert result.fallbacks == Counter({"brep-native-facets": 6})
    assert len(result.parts) == 6 and sum(len(e.instances) for e in result.elements.values()) == 173
    assert all(sum(m.n_triangles for _, m in p.meshes) > 100 for p in result.parts.values())
    assert all(not e.meshes for e in result.elements.values())  # parts stay instances
    truth = _export(BUILDING_BLOCKS, tmp_path_factory.mktemp("bb-export"))
    report = compare_meshes(as_truth(result, truth), truth.elements, range_only_families=())
    print(report.summary())
    assert report.compared == 173 and report.ok, report.summary()
    assert report.worst_range <= 0.001 and report.worst_area["unknown"] <= 0.03


def test_truth_model_breps_pass_range_and_area(model: Path, truth: Truth) -> None:
    """The generated truth model's B-reps (subtract, unite, round) now pass the range and area rules
    too; every other element meshes exactly as without the option (only B-rep streams are asked)."""
    result, provider = _native_mesh(model)
    breps = {eid: t for eid, t in truth.elements.items() if t.family == BREP}
    assert len(breps) == 6
    assert provider.calls == [(6, 0)]
    assert result.fallbacks["brep-native-facets"] == 6 and "brep-range-box" not in result.fallbacks
    ours = as_truth(result, truth)
    report = compare_meshes({k: ours[k] for k in breps}, breps, range_only_families=())
    print(report.summary())
    assert report.compared == 6 and report.ok, report.summary()
    with IModelFile.open(model) as imodel:
        plain = mesh_imodel(imodel, OPTIONS)
    for eid, e in plain.elements.items():
        if e.id_hex in breps:
            continue
        n = result.elements[eid]
        assert [p.appearance for p in n.meshes] == [p.appearance for p in e.meshes]
        assert [p.mesh.n_triangles for p in n.meshes] == [p.mesh.n_triangles for p in e.meshes]
        assert [i.mesh_appearances for i in n.instances] == [i.mesh_appearances for i in e.instances]


@pytest.fixture(scope="module")
def model() -> Path:
    return make_geometry("truth")


@pytest.fixture(scope="module")
def truth(model: Path) -> Truth:
    return load_truth(export_truth("truth"))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Truth]:
    """compat/make-brep-parts.mjs: a part holding a B-rep (instance colour) and a red box, instanced in two
    categories; an element whose own stream holds a B-rep, a red box and an instance of that part."""
    folder = tmp_path_factory.mktemp("brep-parts")
    bim = folder / "model.bim"
    node = shutil.which("node")
    assert node is not None, "node is required"
    proc = subprocess.run(
        [node, str(COMPAT / "make-brep-parts.mjs"), str(bim)],
        cwd=COMPAT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return bim, _export(bim, folder / "export")


def test_mixed_streams_keep_their_colours(mixed: tuple[Path, Truth]) -> None:
    """A stream holding a B-rep and more takes the native meshes for the whole stream: ranges, areas and
    colours as exportGraphics gives them, each part instance resolving its own colours."""
    bim, truth = mixed
    with IModelFile.open(bim) as imodel:
        plain = mesh_imodel(imodel, OPTIONS)
    assert plain.fallbacks == Counter({"brep-range-box": 2})
    result, provider = _native_mesh(bim)
    assert provider.calls == [(1, 1)]
    assert result.fallbacks == Counter({"brep-native-facets": 2})
    assert len(result.parts) == 1 and sum(len(e.instances) for e in result.elements.values()) == 3
    (part,) = result.parts.values()
    # the part's B-rep piece inherits the instance's colour; its box stays red for every instance
    assert [s.color for s, _ in part.meshes] == [None, 0x1E1EDC]
    report = compare_meshes(as_truth(result, truth), truth.elements, range_only_families=())
    print(report.summary())
    assert report.compared == 3 and report.ok, report.summary()
    # and without the option the range boxes miss (what the option is for)
    assert not compare_meshes(as_truth(plain, truth), truth.elements, range_only_families=()).ok


def test_wal_file_is_read_from_a_copy(tmp_path: Path) -> None:
    """A WAL-mode file (its -shm cannot always be made beside it) is meshed from a copy, left as it was."""
    bim = tmp_path / "wal.bim"
    shutil.copyfile(BUILDING_BLOCKS, bim)
    with closing(sqlite3.connect(bim)) as db:
        assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    before = bim.read_bytes()
    with IModelFile.open(bim) as imodel:
        parts = [p.id for p in imodel.geometry_parts()]
    facets = NativeFacetProvider().facets(
        bim, [], [(p, None) for p in parts], OPTIONS.chord_tolerance, OPTIONS.angle_tolerance
    )
    assert facets.generator["copied"] is True
    assert sorted(facets.parts) == sorted(parts)
    for p in facets.parts.values():
        assert p.status == 0 and p.display is None and p.pieces
        for piece in p.pieces:
            assert piece.subcategory_id is None and piece.mesh.n_triangles > 0
            assert np.isfinite(piece.mesh.positions).all()
    assert bim.read_bytes() == before


def test_missing_node_or_backend_is_a_typed_error(tmp_path: Path) -> None:
    """The option on without node or the iTwin.js backend fails at once, with what is missing."""
    with IModelFile.open(BUILDING_BLOCKS) as imodel:
        with pytest.raises(NativeFacetsUnavailable, match="node"):
            mesh_imodel(imodel, OPTIONS, native_breps=NativeFacetProvider(node=str(tmp_path / "no-node")))
        shutil.copy(COMPAT / "brep-facets.mjs", tmp_path)
        with pytest.raises(NativeFacetsUnavailable, match="npm ci"):
            mesh_imodel(imodel, OPTIONS, native_breps=NativeFacetProvider(tmp_path))
        assert mesh_imodel(imodel, OPTIONS).fallbacks == Counter({"brep-range-box": 6})  # off by default
