"""Small vector helpers shared by the tessellators (all vectorized over leading axes)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import TessellationError

F64 = NDArray[np.float64]
F32 = NDArray[np.float32]
I64 = NDArray[np.int64]
I32 = NDArray[np.int32]
U32 = NDArray[np.uint32]
Bool = NDArray[np.bool_]


def as_points(value: ArrayLike, what: str, *, min_count: int = 0) -> F64:
    """``value`` as a float64 (n, 3) array; 2D points get z = 0."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 1 and arr.size % 3 == 0 and arr.size > 0:
        arr = arr.reshape(-1, 3)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise TessellationError(f"{what}: expected points of shape (n, 3), got {arr.shape}")
    if arr.shape[1] == 2:
        arr = np.concatenate([arr, np.zeros((arr.shape[0], 1))], axis=1)
    if arr.shape[0] < min_count:
        raise TessellationError(f"{what}: needs at least {min_count} points, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise TessellationError(f"{what}: coordinates must be finite")
    return np.ascontiguousarray(arr)


def as_vector(value: ArrayLike, what: str) -> F64:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.shape != (3,) or not np.isfinite(arr).all():
        raise TessellationError(f"{what}: expected a finite 3-vector, got {np.asarray(value).shape}")
    return arr


def as_batch(value: ArrayLike, k: int, tail: tuple[int, ...], what: str) -> F64:
    """``value`` broadcast to (k, *tail) float64 (a single value is repeated for every instance)."""
    arr = np.asarray(value, dtype=np.float64)
    shape = (k, *tail)
    if arr.shape != shape:
        try:
            arr = np.broadcast_to(arr, shape)
        except ValueError:
            raise TessellationError(f"{what}: expected shape {shape}, got {arr.shape}") from None
    if not np.isfinite(arr).all():
        raise TessellationError(f"{what}: values must be finite")
    return arr


def batch_size(*values: Any, tails: tuple[int, ...]) -> int:
    """How many instances a batch call describes: the leading length of the first argument that has one."""
    for value, tail in zip(values, tails, strict=True):
        arr = np.asarray(value)
        if arr.ndim > tail:
            return int(arr.shape[0])
    return 1


def cross(a: F64, b: F64) -> F64:
    """Cross product over the last axis (numpy's ``np.cross`` costs far more per call)."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    out: F64 = np.empty(np.broadcast_shapes(a.shape, b.shape), dtype=np.result_type(a, b))
    out[..., 0] = a1 * b2 - a2 * b1
    out[..., 1] = a2 * b0 - a0 * b2
    out[..., 2] = a0 * b1 - a1 * b0
    return out


def norms(v: F64) -> F64:
    out: F64 = np.sqrt(np.einsum("...i,...i->...", v, v))
    return out


def unit(v: F64, fallback: F64 | None = None) -> F64:
    """Rows of ``v`` scaled to length 1; zero rows become ``fallback`` (or stay zero)."""
    n = norms(v)
    safe = np.where(n > 0.0, n, 1.0)
    out = v / safe[..., None]
    if fallback is not None:
        out = np.where((n > 0.0)[..., None], out, fallback)
    return out


def newell_normal(points: F64) -> F64:
    """Area vector of a polygon (n, 3) or of many polygons (..., n, 3): its length is the area."""
    # The sum over the count is exactly what ``mean`` computes, and the concatenation what ``np.roll``
    # gives; both without their Python-level overhead (this runs per loop of every extrusion).
    centered = points - points.sum(axis=-2, keepdims=True) / points.shape[-2]
    nxt = np.concatenate((centered[..., 1:, :], centered[..., :1, :]), axis=-2)
    out: F64 = 0.5 * cross(centered, nxt).sum(axis=-2)
    return out


def perpendicular_frame(z: F64) -> tuple[F64, F64]:
    """Two unit vectors completing the unit vector ``z`` to a right-handed frame (x, y, z)."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = cross(helper, z)
    x /= np.linalg.norm(x)
    y = cross(z, x)
    return x, y


def plane_normal(points: F64) -> F64:
    """Unit normal of the plane through ``points``: Newell's area vector, which follows the loop's
    direction (right-hand rule) and is exact for any planar polygon, convex or not. When the polygon
    has no area (a figure eight, collinear points) the smallest principal axis is used instead."""
    area = newell_normal(points)
    size = float(np.ptp(points, axis=0).max()) if len(points) else 0.0
    a = float(np.linalg.norm(area))
    if a > 1e-12 * max(size, 1e-300) ** 2:
        out: F64 = area / a
        return out
    if len(points) >= 3 and size > 0:
        centered = points - points.mean(axis=0)
        _, _, vt = np.linalg.svd(centered, full_matrices=False)
        if vt.shape[0] == 3:
            normal: F64 = vt[2]
            return normal
    raise TessellationError("region: its points span no plane (fewer than 3 distinct, non-collinear points)")


def rotation_matrices(axis: F64, angles: F64) -> F64:
    """(len(angles), 3, 3) rotations about the unit ``axis`` (Rodrigues)."""
    c = np.cos(angles)[:, None, None]
    s = np.sin(angles)[:, None, None]
    kx = np.array(
        [[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]],
    )
    out: F64 = np.eye(3) * c + s * kx + (1.0 - c) * np.outer(axis, axis)
    return out


def is_full_circle(sweep: float) -> bool:
    return abs(abs(sweep) - 2.0 * math.pi) < 1e-10 or abs(sweep) > 2.0 * math.pi


def grid_triangles(rows: int, cols: int, *, wrap_cols: bool = False) -> U32:
    """Triangles of a (rows x cols) vertex grid stored row-major: each cell (r, c) gives
    (r,c)(r,c+1)(r+1,c+1) and (r,c)(r+1,c+1)(r+1,c); the normal follows d/dcol x d/drow."""
    if rows < 2 or cols < 2:
        return np.zeros((0, 3), dtype=np.uint32)
    ncell_c = cols if wrap_cols else cols - 1
    r = np.arange(rows - 1)[:, None]
    c = np.arange(ncell_c)[None, :]
    c1 = (c + 1) % cols if wrap_cols else c + 1
    a = r * cols + c
    b = r * cols + c1
    cc = (r + 1) * cols + c1
    d = (r + 1) * cols + c
    tris = np.stack([np.stack([a, b, cc], -1), np.stack([a, cc, d], -1)], axis=2)
    out: U32 = tris.reshape(-1, 3).astype(np.uint32)
    return out


def degenerate_mask(positions: F64, tris: NDArray[Any]) -> Bool:
    """Triangles with two corners at exactly the same place (they cover no area and add no edge)."""
    p0 = positions[tris[:, 0]]
    p1 = positions[tris[:, 1]]
    p2 = positions[tris[:, 2]]
    same = (p0 == p1).all(axis=1) | (p1 == p2).all(axis=1) | (p0 == p2).all(axis=1)
    out: Bool = same
    return out
