"""Number formats the GLB writer stores: sRGB → linear colours, 16-bit positions, 8-bit normals.

Quantized positions (``KHR_mesh_quantization``) are unsigned 16-bit integers on a uniform grid: a point is
``offset + step * q``. The grid is uniform (one ``step`` for all three axes) so the dequantizing node
transform is a uniform scale, which leaves normals' directions alone (a non-uniform scale would bend them).
The worst position error is ``step / 2`` per axis, ``step = largest extent / 65535``: 0.8 mm on a 100 m tile.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

Q_MAX = 65535  # UNSIGNED_SHORT, not normalized


def srgb_to_linear(c: NDArray[np.floating] | NDArray[np.integer]) -> F64:
    """sRGB-encoded values in [0, 1] to linear (glTF's ``baseColorFactor`` is linear)."""
    x = np.asarray(c, np.float64)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: NDArray[np.floating]) -> F64:
    x = np.clip(np.asarray(c, np.float64), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1.0 / 2.4) - 0.055)


def column_min(a: np.ndarray) -> np.ndarray:
    """``a.min(axis=0)`` of an (n, k) array, a column at a time: numpy's axis-0 reduction over narrow rows
    is several times slower than reducing each strided column."""
    return np.array([a[:, i].min() for i in range(a.shape[1])], a.dtype)


def column_max(a: np.ndarray) -> np.ndarray:
    return np.array([a[:, i].max() for i in range(a.shape[1])], a.dtype)


def quantize_positions(p: F64) -> tuple[NDArray[np.uint16], F64, float]:
    """``p`` (n, 3) → (n, 4) uint16 (the 4th component pads each vertex to 8 bytes, glTF's 4-byte
    attribute alignment), the grid's ``offset`` (3,) and ``step``."""
    q = np.zeros((len(p), 4), np.uint16)
    if len(p) == 0:
        return q, np.zeros(3), 1.0
    lo = column_min(p)
    extent = float((column_max(p) - lo).max())
    step = extent / Q_MAX if extent > 0 else 1.0
    x = p - lo
    x *= 1.0 / step
    np.rint(x, out=x)
    np.clip(x, 0, Q_MAX, out=x)
    q[:, :3] = x
    return q, lo, step


#: The 27 integer neighbours of a rounded normal (floor/ceil choices per component, and one step past).
_NEIGHBOURS = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)], np.float32)
#: What the Khronos validator accepts as unit length is |len - 1| <= 0.00674 for VEC3 normals.
UNIT_TOLERANCE = 0.005


def normals_to_snorm8(n: NDArray[np.floating]) -> NDArray[np.int8]:
    """Unit normals (n, 3) → (n, 4) int8 normalized (glTF: value / 127), padded to 4 bytes a vertex.

    Rounding each component to the nearest 1/127 moves a unit vector's length by up to
    sqrt(3) / 254 ≈ 0.0068, past what validators accept as unit (0.00674). A normal whose rounding is
    off by more than ``UNIT_TOLERANCE`` takes, among the 27 integer vectors around it, the one nearest
    unit length of those within 1.5 degrees of its direction (one always is: the rounding itself)."""
    v = np.asarray(n, np.float32).reshape(-1, 3)
    scaled = v * np.float32(127.0)
    best = np.rint(scaled)
    np.clip(best, -127, 127, out=best)
    err = np.abs(np.sqrt((best * best).sum(axis=1)) / np.float32(127.0) - 1)
    rows = np.flatnonzero(err > UNIT_TOLERANCE)
    if len(rows):
        cand = np.clip(best[rows][:, None, :] + _NEIGHBOURS[None], -127, 127)  # (r, 27, 3)
        length = np.sqrt((cand * cand).sum(axis=2))
        off = np.abs(length / np.float32(127.0) - 1)
        cosine = (cand * v[rows][:, None, :]).sum(axis=2) / np.maximum(length, 1e-6)
        off = np.where(cosine >= np.float32(np.cos(np.radians(1.5))), off, np.inf)
        pick = off.argmin(axis=1)
        best[rows] = cand[np.arange(len(rows)), pick]
    out = np.zeros((len(best), 4), np.int8)
    out[:, :3] = best
    return out
