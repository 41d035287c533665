"""Part instances as plain triangles: for writers (and tiles) that draw some or all instances flat."""

from __future__ import annotations

import numpy as np

from .model import PartInstances, TriangleSet
from .transforms import cofactor


def flatten_instances(pi: PartInstances, sel: np.ndarray) -> TriangleSet:
    """Instances ``sel`` of ``pi`` as plain triangles in iModel coordinates (mirrors keep their winding
    counter-clockwise seen from the normals' side)."""
    part = pi.part
    m = np.asarray(pi.transforms, np.float64)[sel]
    a, t = m[:, :3, :3], m[:, :3, 3]
    k, n = len(m), len(part.positions)
    pos = np.einsum("kij,nj->kni", a, np.asarray(part.positions, np.float64)) + t[:, None, :]
    det = np.linalg.det(a)
    cof = cofactor(a) * np.sign(det)[:, None, None]
    nrm = np.einsum("kij,nj->kni", cof, np.asarray(part.normals, np.float64))
    length = np.linalg.norm(nrm, axis=2, keepdims=True)
    nrm = np.where(length > 0, nrm / np.where(length > 0, length, 1.0), [0.0, 0.0, 1.0])
    idx = np.asarray(part.indices, np.int64)[None, :, :] + (np.arange(k, dtype=np.int64) * n)[:, None, None]
    idx = np.where((det < 0)[:, None, None], idx[:, :, ::-1], idx)
    materials = np.asarray(pi.materials, np.int64)[sel][:, np.asarray(part.material, np.int64)]
    return TriangleSet(
        pos.reshape(-1, 3),
        nrm.reshape(-1, 3).astype(np.float32),
        idx.reshape(-1, 3).astype(np.uint32),
        np.repeat(np.asarray(pi.feature, np.uint32)[sel], n),
        materials.reshape(-1).astype(np.uint32),
    )


def concat_sets(sets: list[TriangleSet]) -> TriangleSet:
    if len(sets) == 1:
        return sets[0]
    offsets = np.cumsum([0] + [len(s.positions) for s in sets])
    return TriangleSet(
        np.concatenate([np.asarray(s.positions, np.float64) for s in sets]),
        np.concatenate([np.asarray(s.normals, np.float32) for s in sets]),
        np.concatenate(
            [np.asarray(s.indices, np.int64) + o for s, o in zip(sets, offsets, strict=False)]
        ).astype(np.uint32),
        np.concatenate([np.asarray(s.feature, np.uint32) for s in sets]),
        np.concatenate([np.asarray(s.material, np.uint32) for s in sets]),
    )
