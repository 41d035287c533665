"""Levels of detail of one tile's content: leave out what is smaller than the tolerance, simplify the rest.

meshoptimizer's ``simplify`` with an absolute error bound does both in one pass over the tile's merged
triangles: ``SIMPLIFY_PRUNE`` drops disconnected pieces smaller than the error (the small pieces a
coarse tile leaves out, which edge collapse alone never removes: a 12-triangle box is border-locked),
and edge collapses reduce large connected meshes. It only chooses a subset of the input vertices (no
vertex moves), so normals, feature and material rows stay as they were; pieces never share vertices,
so a triangle keeps one piece's feature. Part instances stay instances: instances smaller than the
tolerance are dropped and the part's own mesh is simplified once, to the tolerance divided by the
largest scale among the instances kept.

Everything is array work; the only Python loops are over part instance groups and feature rows.
"""

from __future__ import annotations

import meshoptimizer as mo
import numpy as np

from .model import F64, FeatureTable, PartInstances, TileContent, TriangleSet


def content_triangles(content: TileContent) -> int:
    """Triangles drawn: the triangle set's plus each part's once per instance."""
    return content.triangles.n_triangles + sum(
        inst.part.n_triangles * inst.count for inst in content.instances
    )


def column_min(a: F64) -> F64:
    """``a.min(axis=0)`` for (n, 3), a column at a time: numpy reduces a strided axis 10x slower."""
    return np.array([a[:, i].min() for i in range(a.shape[1])])


def column_max(a: F64) -> F64:
    return np.array([a[:, i].max() for i in range(a.shape[1])])


def used_positions(tris: TriangleSet) -> F64:
    """The positions that some triangle uses."""
    if tris.n_triangles == 0:
        return np.zeros((0, 3))
    used = np.zeros(len(tris.positions), bool)
    used[np.asarray(tris.indices).ravel()] = True
    pos = np.asarray(tris.positions, np.float64)
    return pos if used.all() else pos[used]


def instance_boxes(inst: PartInstances) -> tuple[F64, F64] | None:
    """World boxes ``(low, high)`` (k, 3) of each instance: the part box's corners through each
    transform (exact for the box, so it bounds the part however it is rotated, scaled or mirrored)."""
    pts = used_positions(inst.part)
    if len(pts) == 0 or inst.count == 0:
        return None
    lo, hi = column_min(pts), column_max(pts)
    bits = np.array([[i, j, m] for i in (0, 1) for j in (0, 1) for m in (0, 1)], bool)
    corners = np.concatenate([np.where(bits, hi, lo), np.ones((8, 1))], axis=1)  # (8, 4)
    world = np.einsum("kij,cj->kci", np.asarray(inst.transforms, np.float64)[:, :3, :], corners)
    return world.min(axis=1), world.max(axis=1)


def content_bounds(content: TileContent) -> tuple[F64, F64] | None:
    """The box of everything ``content`` draws, or None when it draws nothing."""
    lows: list[F64] = []
    highs: list[F64] = []
    pts = used_positions(content.triangles)
    if len(pts):
        lows.append(column_min(pts))
        highs.append(column_max(pts))
    for inst in content.instances:
        boxes = instance_boxes(inst)
        if boxes is not None:
            lows.append(column_min(boxes[0]))
            highs.append(column_max(boxes[1]))
    if not lows:
        return None
    return np.min(lows, axis=0), np.max(highs, axis=0)


def _compact(tris: TriangleSet, indices: np.ndarray) -> TriangleSet:
    """``tris`` with ``indices`` (m, 3) and only the vertices they use."""
    n = len(tris.positions)
    used = np.zeros(n, bool)
    used[indices.ravel()] = True
    remap = (np.cumsum(used) - 1).astype(np.uint32)
    return TriangleSet(
        positions=np.asarray(tris.positions)[used],
        normals=np.asarray(tris.normals)[used],
        indices=remap[indices].astype(np.uint32).reshape(-1, 3),
        feature=np.asarray(tris.feature)[used],
        material=np.asarray(tris.material)[used],
        params=None if tris.params is None else np.asarray(tris.params)[used],
    )


def simplify_triangles(tris: TriangleSet, tolerance: float) -> tuple[TriangleSet, float]:
    """``tris`` simplified to an absolute error of ``tolerance`` (metres), pieces smaller than it
    dropped; returns the new set (unused vertices removed) and the simplifier's error."""
    if tris.n_triangles == 0:
        return tris, 0.0
    pos = np.asarray(tris.positions, np.float64)
    # Centred before float32: world coordinates far from the origin would lose millimetres.
    center = 0.5 * (column_min(pos) + column_max(pos))
    p32 = np.ascontiguousarray(pos - center, dtype=np.float32)
    idx = np.ascontiguousarray(np.asarray(tris.indices, np.uint32).ravel())
    if int(idx.max()) >= len(pos):  # meshoptimizer would read out of bounds
        raise ValueError("triangle indices past the vertex arrays")
    dst = np.empty_like(idx)
    err = np.zeros(1, np.float32)
    count = mo.simplify(
        dst,
        idx,
        p32,
        target_index_count=0,
        target_error=float(tolerance),
        options=mo.SIMPLIFY_ERROR_ABSOLUTE | mo.SIMPLIFY_PRUNE,
        result_error=err,
    )
    out = dst[:count].reshape(-1, 3)
    return _compact(tris, out), float(err[0])


def _max_scale(transforms: F64) -> float:
    """The largest axis scale among ``transforms`` (k, 4, 4): the longest column of the 3x3 parts."""
    if len(transforms) == 0:
        return 1.0
    cols = np.linalg.norm(np.asarray(transforms, np.float64)[:, :3, :3], axis=1)
    return float(cols.max())


def reduce_content(content: TileContent, tolerance: float, min_triangles: int) -> tuple[TileContent, float]:
    """``content`` for a tile of error ``tolerance``: instances smaller than it dropped, parts of at
    least ``min_triangles`` simplified; the triangle set simplified with small pieces dropped; unused
    feature rows removed. Returns the content and the largest simplification error (metres)."""
    error = 0.0
    instances: list[PartInstances] = []
    for inst in content.instances:
        boxes = instance_boxes(inst)
        if boxes is None:
            continue
        # The radius, as for elements in the plan and pieces in the prune.
        keep = 0.5 * np.linalg.norm(boxes[1] - boxes[0], axis=1) >= tolerance
        if not keep.any():
            continue
        transforms = np.asarray(inst.transforms)[keep]
        part = inst.part
        if part.n_triangles >= min_triangles:
            scale = _max_scale(transforms)
            part, part_err = simplify_triangles(part, tolerance / max(scale, 1e-12))
            error = max(error, part_err * scale)
            if part.n_triangles == 0:
                continue
        instances.append(
            PartInstances(
                part_id=inst.part_id,
                part=part,
                transforms=transforms,
                feature=np.asarray(inst.feature)[keep],
                materials=np.asarray(inst.materials)[keep],
            )
        )
    tris, tri_err = simplify_triangles(content.triangles, tolerance)
    error = max(error, tri_err)
    reduced = TileContent(
        features=content.features, materials=content.materials, triangles=tris, instances=instances
    )
    return subset_features(reduced), error


def subset_features(content: TileContent) -> TileContent:
    """``content`` with only the feature rows its triangles and instances use (renumbered)."""
    tris = content.triangles
    used_v = np.zeros(len(tris.positions), bool)
    if tris.n_triangles:
        used_v[np.asarray(tris.indices).ravel()] = True
    parts = [np.asarray(tris.feature, np.int64)[used_v]]
    parts += [np.asarray(inst.feature, np.int64) for inst in content.instances]
    rows = np.unique(np.concatenate(parts))
    nf = len(content.features)
    if len(rows) == nf:
        return content
    remap = np.zeros(max(nf, 1), np.uint32)
    remap[rows] = np.arange(len(rows), dtype=np.uint32)
    ft = content.features
    features = FeatureTable(
        element_ids=ft.element_ids[rows],
        model_ids=ft.model_ids[rows],
        category_ids=ft.category_ids[rows],
        subcategory_ids=ft.subcategory_ids[rows],
        geometry_classes=ft.geometry_classes[rows],
        class_names=[ft.class_names[r] for r in rows.tolist()],
        labels=[ft.labels[r] for r in rows.tolist()],
    )
    # Every vertex left is used (the sets were compacted), so every feature row it names is kept.
    new_tris = TriangleSet(
        positions=tris.positions,
        normals=tris.normals,
        indices=tris.indices,
        feature=remap[np.asarray(tris.feature, np.int64)],
        material=tris.material,
        params=tris.params,
    )
    instances = [
        PartInstances(
            part_id=inst.part_id,
            part=inst.part,
            transforms=inst.transforms,
            feature=remap[np.asarray(inst.feature, np.int64)],
            materials=inst.materials,
        )
        for inst in content.instances
    ]
    return TileContent(
        features=features, materials=content.materials, triangles=new_tris, instances=instances
    )
