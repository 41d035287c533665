"""The file engine's meshes as tile-writer input (``twinbase.export.content``): nothing lost, nothing
invented, on the generated truth model and on a real iModel with instanced parts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from support.geometry_truth import make_geometry
from twinbase.bim.imodel import Element, IModelFile
from twinbase.bim.mesher import MeshResult, mesh_elements
from twinbase.bim.tessellate import StrokeOptions
from twinbase.export.content import ElementFacts, tile_content

ROOT = Path(__file__).resolve().parent.parent
BUILDING_BLOCKS = ROOT.parent / "shared" / "data" / "bim" / "Building_Blocks.bim"
OPTIONS = StrokeOptions(0.01, math.pi / 12)


def _content(path: Path) -> tuple[MeshResult, ElementFacts, dict[int, Element]]:
    with IModelFile.open(path) as imodel:
        facts = ElementFacts()
        result = mesh_elements(
            imodel, facts.watch(imodel.elements(geometric_only=True, with_geometry=True)), OPTIONS
        )
        elements = {e.id: e for e in imodel.elements(geometric_only=True)}
    return result, facts, elements


def test_every_triangle_and_instance_of_the_truth_model_is_kept_with_its_feature() -> None:
    result, facts, elements = _content(make_geometry("truth"))
    content = tile_content(result, facts)
    tris = content.triangles
    assert tris.n_triangles == sum(e.triangles() for e in result.elements.values())
    assert len(tris.positions) == len(tris.feature) == len(tris.material) == len(tris.normals)
    assert int(tris.indices.max()) < len(tris.positions)
    table = content.features
    assert int(tris.feature.max()) < len(table) and int(tris.material.max()) < len(content.materials)
    # Each feature names a real element with its model, category, class and label.
    for row in range(len(table)):
        element = elements[int(table.element_ids[row])]
        assert int(table.model_ids[row]) == element.model_id
        assert int(table.category_ids[row]) == element.category_id
        assert table.class_names[row] == element.class_full_name
        assert table.labels[row] == element.user_label
    # Every element with meshes has a feature; every instance is kept, as an instance.
    meshed = {eid for eid, e in result.elements.items() if e.meshes or e.instances}
    assert meshed == {int(i) for i in table.element_ids}
    kept = sum(p.count for p in content.instances)
    assert kept == sum(len(e.instances) for e in result.elements.values())
    for inst in content.instances:
        assert inst.materials.shape == (inst.count, int(inst.part.material.max()) + 1)
        assert int(inst.materials.max()) < len(content.materials)
    # Looks: the transparent category's elements come out with alpha < 255.
    assert (content.materials.rgba[:, 3] < 255).any() and (content.materials.rgba[:, 3] == 255).any()


def test_a_real_imodel_of_instanced_parts_is_instances_only() -> None:
    result, facts, _ = _content(BUILDING_BLOCKS)
    content = tile_content(result, facts)
    assert content.triangles.n_triangles == 0
    assert sum(p.count for p in content.instances) == 173
    assert {p.part_id for p in content.instances} == set(result.parts)
    assert np.isfinite(np.concatenate([p.transforms for p in content.instances])).all()
