"""Instance transforms: 4x4 world-from-part matrices split into glTF's translation, rotation, scale.

glTF (and ``EXT_mesh_gpu_instancing``) places an instance by ``T * R * S``: scale along the part's own axes,
then rotate, then translate. A 3x3 ``A`` is of that form exactly when its columns are orthogonal (the
column norms are the scales) and it keeps handedness (a mirror would need a negative scale, which turns
triangles' winding and which instanced renderers do not all honour). Anything else (shear, mirror, a
collapsed axis) is not decomposable and the writer draws those instances as plain triangles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

# Column cosines of a placement built from angles in doubles sit near 1e-16; anything past this is shear.
ORTHO_TOL = 1e-7


@dataclass(eq=False)
class Decomposed:
    translation: F64  # (k, 3)
    rotation: F64  # (k, 3, 3) proper rotation matrices
    quaternion: F64  # (k, 4) x, y, z, w (glTF order), w >= 0
    scale: F64  # (k, 3)
    ok: NDArray[np.bool_]  # (k,) the transform is exactly T * R * S


def decompose(transforms: F64) -> Decomposed:
    m = np.asarray(transforms, np.float64)
    a = m[:, :3, :3]
    t = m[:, :3, 3].copy()
    s = np.linalg.norm(a, axis=1)  # column norms, (k, 3)
    # A collapsed axis (zero scale) has no rotation to recover.
    nonzero = s.min(axis=1, initial=np.inf) > 1e-12 * s.max(axis=1, initial=0.0)
    r = a / np.where(s > 0, s, 1.0)[:, None, :]
    gram = np.einsum("kij,kil->kjl", r, r)
    ortho = np.abs(gram - np.eye(3)).max(axis=(1, 2), initial=0.0) < ORTHO_TOL
    proper = np.linalg.det(r) > 0
    ok = nonzero & ortho & proper
    r = np.where(ok[:, None, None], r, np.eye(3))
    return Decomposed(t, r, matrix_to_quaternion(r), s, ok)


def matrix_to_quaternion(r: F64) -> F64:
    """Rotation matrices (k, 3, 3) → unit quaternions (k, 4) x, y, z, w with w >= 0.

    Each row takes the largest of the four candidate pivots (trace, r00, r11, r22), so no division goes
    near zero (the single-formula version loses all precision near 180° turns)."""
    k = len(r)
    q = np.empty((k, 4))
    tr = r[:, 0, 0] + r[:, 1, 1] + r[:, 2, 2]
    pivots = np.stack([tr, r[:, 0, 0], r[:, 1, 1], r[:, 2, 2]], axis=1)
    which = np.argmax(pivots, axis=1) if k else np.zeros(0, np.intp)

    c = which == 0
    if c.any():
        rr = r[c]
        w = np.sqrt(np.maximum(1.0 + tr[c], 0.0)) * 2.0
        q[c] = np.stack(
            [
                (rr[:, 2, 1] - rr[:, 1, 2]) / w,
                (rr[:, 0, 2] - rr[:, 2, 0]) / w,
                (rr[:, 1, 0] - rr[:, 0, 1]) / w,
                w / 4,
            ],
            axis=1,
        )
    for axis in range(3):
        c = which == axis + 1
        if not c.any():
            continue
        rr = r[c]
        i, j, kk = axis, (axis + 1) % 3, (axis + 2) % 3
        d = np.sqrt(np.maximum(1.0 + rr[:, i, i] - rr[:, j, j] - rr[:, kk, kk], 0.0)) * 2.0
        v = np.empty((len(rr), 4))
        v[:, i] = d / 4
        v[:, j] = (rr[:, j, i] + rr[:, i, j]) / d
        v[:, kk] = (rr[:, kk, i] + rr[:, i, kk]) / d
        v[:, 3] = (rr[:, kk, j] - rr[:, j, kk]) / d
        q[c] = v
    q /= np.linalg.norm(q, axis=1, keepdims=True) if k else 1.0
    q *= np.where(q[:, 3:4] < 0, -1.0, 1.0)
    return q


def quaternion_to_matrix(q: F64) -> F64:
    """Unit quaternions (k, 4) x, y, z, w → rotation matrices (k, 3, 3)."""
    x, y, z, w = (np.asarray(q, np.float64)[:, i] for i in range(4))
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=1),
        ],
        axis=1,
    )


def cofactor(a: F64) -> F64:
    """Cofactor matrices (k, 3, 3) of ``a``: ``det(a) * inverse(a).T``, defined for singular ``a`` too.

    Normals go through it (normals transform by the inverse transpose; the positive factor ``det`` is
    removed by normalizing, the sign by the caller)."""
    c0, c1, c2 = a[:, :, 0], a[:, :, 1], a[:, :, 2]
    return np.stack([np.cross(c1, c2), np.cross(c2, c0), np.cross(c0, c1)], axis=2)
