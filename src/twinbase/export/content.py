"""The file engine's meshes as the tile writers' input: ``MeshResult`` (``bim.mesher``) to
``TileContent`` (``tiles.model``).

- Features are distinct (element, subcategory, geometry class) triples, numbered in the order met;
  the element's model, category, class and label come from the ``ElementFacts`` gathered while the
  elements streamed through the mesher (no second read of the file).
- Looks (materials) are distinct (RGBA, render material, double-sided) triples.
- Every element's own pieces become one ``TriangleSet`` (arrays joined once); part instances stay
  instances, grouped by part: the part's pieces once, in part coordinates, and per instance its
  transform, feature and the look of each piece. An instance whose pieces resolve to several
  subcategories is one feature, that of its first piece (a pick answers the element either way).
- Lines (wires, text outlines) are not written to tiles yet: they are counted in ``lines``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from twinbase.bim.imodel import Element
from twinbase.bim.mesher import Appearance, MeshResult
from twinbase.tiles.model import FeatureTable, MaterialTable, PartInstances, TileContent, TriangleSet


@dataclass
class ElementFacts:
    """What a feature row needs of an element, kept as the elements stream by."""

    model: dict[int, int] = field(default_factory=dict)
    class_name: dict[int, str] = field(default_factory=dict)
    label: dict[int, str | None] = field(default_factory=dict)

    def watch(self, elements: Iterable[Element]) -> Iterator[Element]:
        for element in elements:
            self.model[element.id] = element.model_id
            self.class_name[element.id] = element.class_full_name
            self.label[element.id] = element.user_label
            yield element


class _Numbering:
    def __init__(self) -> None:
        self.features: dict[tuple[int, int, int], int] = {}
        self.looks: dict[tuple[int, int, bool], int] = {}

    def feature(self, element_id: int, app: Appearance) -> int:
        key = (element_id, app.subcategory_id, app.geometry_class)
        found = self.features.get(key)
        if found is None:
            found = self.features[key] = len(self.features)
        return found

    def look(self, app: Appearance, double_sided: bool) -> int:
        key = (app.color_tbgr, app.material_id or 0, double_sided)
        found = self.looks.get(key)
        if found is None:
            found = self.looks[key] = len(self.looks)
        return found


def tile_content(
    result: MeshResult, facts: ElementFacts, *, element_ids: Iterable[int] | None = None
) -> TileContent:
    """The content of ``element_ids`` (default: every meshed element) of ``result``."""
    numbering = _Numbering()
    positions: list[np.ndarray] = []
    normals: list[np.ndarray] = []
    indices: list[np.ndarray] = []
    # Per piece: its vertex and triangle counts, feature and look; made into per-vertex arrays once
    # (a few numpy calls per piece cost more than the copies themselves over a tile's thousands).
    vertex_counts: list[int] = []
    triangle_counts: list[int] = []
    piece_feature: list[int] = []
    piece_look: list[int] = []
    params: list[np.ndarray] = []
    params_ok = True
    by_part: dict[int, list[tuple[np.ndarray, int, list[int]]]] = {}
    ids = result.elements.keys() if element_ids is None else element_ids
    for element_id in ids:
        element = result.elements.get(element_id)
        if element is None:
            continue
        for piece in element.meshes:
            mesh = piece.mesh
            if not len(mesh.indices):
                continue
            piece_feature.append(numbering.feature(element_id, piece.appearance))
            piece_look.append(numbering.look(piece.appearance, mesh.two_sided))
            positions.append(mesh.positions)
            normals.append(mesh.normals)
            indices.append(mesh.indices)
            vertex_counts.append(len(mesh.positions))
            triangle_counts.append(len(mesh.indices))
            if mesh.params is None:
                params_ok = False
            else:
                params.append(mesh.params)
        for inst in element.instances:
            part = result.parts.get(inst.part_id)
            if part is None or not part.meshes:
                continue
            apps = inst.mesh_appearances
            first = apps[0] if apps else None
            if first is None:
                continue
            f = numbering.feature(element_id, first)
            looks = [numbering.look(a, m.two_sided) for a, (_, m) in zip(apps, part.meshes, strict=False)]
            by_part.setdefault(inst.part_id, []).append((inst.transform, f, looks))
    if positions:
        counts = np.array(vertex_counts, np.int64)
        offsets = np.zeros(len(counts), np.uint32)
        np.cumsum(counts[:-1], out=offsets[1:], dtype=np.uint32)
        joined = np.concatenate(indices)
        joined += np.repeat(offsets, np.array(triangle_counts, np.int64))[:, None]
        triangles = TriangleSet(
            np.concatenate(positions),
            np.concatenate(normals),
            joined,
            np.repeat(np.array(piece_feature, np.uint32), counts),
            np.repeat(np.array(piece_look, np.uint32), counts),
            np.concatenate(params) if params_ok and params else None,
        )
    else:
        triangles = TriangleSet.empty()
    instances = [_part_instances(result, part_id, rows) for part_id, rows in by_part.items()]
    features = _feature_table(numbering, facts, result)
    table = _material_table(numbering)
    return TileContent(features, table, triangles, [i for i in instances if i is not None])


def _part_instances(
    result: MeshResult, part_id: int, rows: list[tuple[np.ndarray, int, list[int]]]
) -> PartInstances | None:
    part = result.parts[part_id]
    meshes = [m for _, m in part.meshes]
    counts = [len(m.positions) for m in meshes]
    if not sum(len(m.indices) for m in meshes):
        return None
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.uint32)
    triangles = TriangleSet(
        np.concatenate([m.positions for m in meshes]),
        np.concatenate([m.normals for m in meshes]),
        np.concatenate([m.indices + o for m, o in zip(meshes, offsets, strict=True)]),
        np.zeros(sum(counts), np.uint32),
        np.repeat(np.arange(len(meshes), dtype=np.uint32), counts),
    )
    width = len(meshes)
    looks = np.array([(r[2] + [r[2][-1]] * width)[:width] for r in rows], np.uint32).reshape(len(rows), width)
    return PartInstances(
        part_id=part_id,
        part=triangles,
        transforms=np.stack([r[0] for r in rows]),
        feature=np.array([r[1] for r in rows], np.uint32),
        materials=looks,
    )


def _feature_table(numbering: _Numbering, facts: ElementFacts, result: MeshResult) -> FeatureTable:
    keys = list(numbering.features)
    element_ids = [k[0] for k in keys]

    def category(eid: int) -> int:
        found = result.elements.get(eid)
        return found.category_id if found is not None else 0

    return FeatureTable(
        element_ids=np.array(element_ids, np.uint64),
        model_ids=np.array([facts.model.get(e, 0) for e in element_ids], np.uint64),
        category_ids=np.array([category(e) for e in element_ids], np.uint64),
        subcategory_ids=np.array([k[1] for k in keys], np.uint64),
        geometry_classes=np.array([k[2] for k in keys], np.uint8),
        class_names=[facts.class_name.get(e, "") for e in element_ids],
        labels=[facts.label.get(e) for e in element_ids],
    )


def _material_table(numbering: _Numbering) -> MaterialTable:
    keys = list(numbering.looks)
    rgba = np.zeros((len(keys), 4), np.uint8)
    for i, (tbgr, _, _) in enumerate(keys):
        rgba[i] = (tbgr & 0xFF, (tbgr >> 8) & 0xFF, (tbgr >> 16) & 0xFF, 255 - ((tbgr >> 24) & 0xFF))
    return MaterialTable(
        rgba=rgba,
        render_material_ids=np.array([k[1] for k in keys], np.uint64),
        double_sided=np.array([k[2] for k in keys], bool),
    )
