"""Number formats the GLB writer stores: sRGB → linear colours, quantized positions, octahedral normals.

Quantized positions (``KHR_mesh_quantization``) are unsigned 16-bit integers on a uniform grid: a point is
``offset + step * q``. The grid is uniform (one ``step`` for all three axes) so the dequantizing node
transform is a uniform scale, which leaves normals' directions alone (a non-uniform scale would bend them).
The worst position error is ``step / 2`` per axis. By default ``step = largest extent / 65535`` (16 bits):
0.8 mm on a 100 m tile. Given a tolerance, ``position_step`` makes the step twice the tolerance (at most
the 8-bit step), so the error is the tolerance; the values still sit in 16-bit slots, but the smaller
differences between neighbouring vertices are what the meshopt codec and gzip shrink.

Normals are stored ``OCTAHEDRAL``-filtered (``EXT_meshopt_compression``): two 8-bit octahedral
coordinates a vertex, which a decoder turns into int8 normalized unit vectors (``normals_to_oct8``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import meshoptimizer
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


#: Below this many rows ``column_min`` / ``column_max`` reduce in one call: the per-column calls cost more.
_FEW_ROWS = 1024


def column_min(a: np.ndarray) -> np.ndarray:
    """``a.min(axis=0)`` of an (n, k) array, a column at a time: numpy's axis-0 reduction over narrow rows
    is several times slower than reducing each strided column (but for few rows)."""
    if len(a) < _FEW_ROWS:
        return np.asarray(a.min(axis=0))
    return np.array([a[:, i].min() for i in range(a.shape[1])], a.dtype)


def column_max(a: np.ndarray) -> np.ndarray:
    if len(a) < _FEW_ROWS:
        return np.asarray(a.max(axis=0))
    return np.array([a[:, i].max() for i in range(a.shape[1])], a.dtype)


def position_step(extent: float, tolerance: float | None) -> float:
    """The grid step over ``extent``: ``extent / 65535`` (16 bits) without a tolerance, else ``2 *
    tolerance`` (worst error ``step / 2``), never finer than 16 bits nor coarser than 8 bits need.
    A coarser step means smaller differences between neighbouring vertices, which is what the meshopt
    codec and gzip compress; the step need not divide the extent into a power of two."""
    if not extent > 0:
        return 1.0
    fine = extent / Q_MAX
    if tolerance is None or not tolerance > 0:
        return fine
    return min(max(fine, 2.0 * tolerance), extent / 255.0)


def quantize_positions(p: F64, tolerance: float | None = None) -> tuple[NDArray[np.uint16], F64, float]:
    """``p`` (n, 3) → (n, 4) uint16 on a uniform grid from the lowest corner (step from
    ``position_step``; the 4th component pads each vertex to 8 bytes, glTF's 4-byte attribute alignment),
    the grid's ``offset`` (3,) and ``step``."""
    q, lo, step, _ = quantize_positions_top(p, tolerance)
    return q, lo, step


def quantize_positions_top(
    p: F64, tolerance: float | None = None, *, scratch: bool = False
) -> tuple[NDArray[np.uint16], F64, float, NDArray[np.uint16]]:
    """``quantize_positions`` and the (3,) largest code on each axis, without another pass over the codes:
    every step from a coordinate to its code keeps order, so the largest code is the largest
    coordinate's (and the smallest is 0). With ``scratch`` (a float64 array the caller no longer needs)
    the arithmetic runs in ``p`` itself instead of a copy."""
    q = np.zeros((len(p), 4), np.uint16)
    if len(p) == 0:
        return q, np.zeros(3), 1.0, np.zeros(3, np.uint16)
    lo = column_min(p)
    hi = column_max(p)
    extent = float((hi - lo).max())
    step = position_step(extent, tolerance)
    scale = 1.0 / step
    if scratch and p.dtype == np.float64 and p.flags.writeable:
        x = p
        x -= lo
    else:
        x = p - lo
    x *= scale
    np.rint(x, out=x)
    np.clip(x, 0, Q_MAX, out=x)
    q[:, :3] = x
    top = (hi - lo) * scale
    np.rint(top, out=top)
    np.clip(top, 0, Q_MAX, out=top)
    return q, lo, step, top.astype(np.uint16)


#: What the Khronos validator accepts as unit length is |len - 1| <= 0.00674 for VEC3 normals.
UNIT_TOLERANCE = 0.005


#: The octahedral filter's K (``EXT_meshopt_compression``): 8-bit codes in 4-byte slots, decoded to int8.
OCT_BITS = 8
_OCT_ONE = (1 << (OCT_BITS - 1)) - 1
#: Code offsets tried when a rounded code decodes off unit length: the 3 x 3 block, then the 5 x 5.
_OCT_STEPS = [
    (a, b) for r in (1, 2) for a in range(-r, r + 1) for b in range(-r, r + 1) if max(abs(a), abs(b)) == r
]


def _oct_codes(v: NDArray[np.float32]) -> tuple[NDArray[np.int8], NDArray[np.int8]]:
    """Unit vectors (n, 3) → octahedral codes: the two coordinates in [-1, 1] scaled to the K-bit range and
    rounded, each as its own contiguous column (strided 2-wide rows cost numpy several times more)."""
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    # |x| + |y| + |z| added left to right, as numpy's sum along a row adds them.
    s = np.abs(x)
    s += np.abs(y)
    s += np.abs(z)
    s[s == 0] = 1.0
    u = x / s
    w = y / s
    lower = z < 0
    if lower.any():
        # The lower hemisphere folds over the diagonals: (1 - |w|, 1 - |u|) with the signs of (u, w); a
        # zero keeps the positive side (copysign of +0). float32 throughout, as the values are stored.
        fu = 1 - np.abs(w)
        np.negative(fu, out=fu, where=u < 0)
        fw = 1 - np.abs(u)
        np.negative(fw, out=fw, where=w < 0)
        np.copyto(u, fu, where=lower)
        np.copyto(w, fw, where=lower)
    codes = []
    for c in (u, w):
        c *= np.float32(_OCT_ONE)
        np.rint(c, out=c)
        np.clip(c, -_OCT_ONE, _OCT_ONE, out=c)
        codes.append(c.astype(np.int8))
    return codes[0], codes[1]


def _oct_decoded(codes: NDArray[np.int8]) -> NDArray[np.float32]:
    """What a decoder gives for (n, 4) filtered codes: (n, 3) int8 components as float32 / 127."""
    out: NDArray[np.int8] = meshoptimizer.decode_filter_oct(np.ascontiguousarray(codes), len(codes), 4)
    return out[:, :3].astype(np.float32) / np.float32(127.0)


#: Codes per axis (-127 .. 127): a code pair's row in the decode table is ``(x + 127) * _OCT_SPAN + y + 127``.
_OCT_SPAN = 2 * _OCT_ONE + 1


@functools.cache
def _oct_table() -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """What the decoder gives for every one of the 255 x 255 code pairs (as ``_oct_decoded``), and whether
    it is off unit length: one gather a vertex then replaces decoding every vertex's code."""
    axis = np.arange(-_OCT_ONE, _OCT_ONE + 1)
    codes = np.zeros((_OCT_SPAN * _OCT_SPAN, 4), np.int8)
    codes[:, 0] = np.repeat(axis, _OCT_SPAN)
    codes[:, 1] = np.tile(axis, _OCT_SPAN)
    codes[:, 2] = _OCT_ONE
    decoded = _oct_decoded(codes)
    off = np.abs(np.sqrt((decoded * decoded).sum(axis=1)) - 1) > UNIT_TOLERANCE
    return decoded, off


def _oct_rows(xy: NDArray[np.int8]) -> NDArray[np.intp]:
    """Rows of ``_oct_table`` for (..., 2) code pairs."""
    rows: NDArray[np.intp] = xy[..., 0].astype(np.intp)
    rows *= _OCT_SPAN
    rows += xy[..., 1]
    rows += (_OCT_SPAN + 1) * _OCT_ONE
    return rows


def normals_to_oct8(n: NDArray[np.floating]) -> NDArray[np.int8]:
    """Unit normals (n, 3) → (n, 4) int8 ``OCTAHEDRAL``-filtered codes ``(x, y, 127, 0)``.

    Octahedral coordinates spend 2 bytes on a direction the decoder rebuilds (as int8 normalized, like
    int8 normalized); the codec then sees 2 varying bytes a vertex instead of 3, and flat
    faces keep one code. The decoder rounds each unit component to 1/127, which can leave the length off
    by more than ``UNIT_TOLERANCE``: such a code is moved to the neighbour code (3 x 3, then 5 x 5
    block) that decodes nearest the direction among those that decode to unit length."""
    v = np.asarray(n, np.float32).reshape(-1, 3)
    out = np.zeros((len(v), 4), np.int8)
    if len(v) == 0:
        return out
    cu, cw = _oct_codes(v)
    out[:, 0] = cu
    out[:, 1] = cw
    out[:, 2] = _OCT_ONE
    table, off = _oct_table()
    pair = cu.astype(np.intp)
    pair *= _OCT_SPAN
    pair += cw
    pair += (_OCT_SPAN + 1) * _OCT_ONE
    rows = np.flatnonzero(off[pair])
    if len(rows):
        steps = np.array(_OCT_STEPS, np.int16)
        near = out[rows, None, :2].astype(np.int16)
        cand = np.clip(near + steps[None], -_OCT_ONE, _OCT_ONE)  # (r, 24, 2)
        cand_rows = _oct_rows(cand.astype(np.int8))
        dec = table[cand_rows]  # (r, 24, 3)
        length = np.sqrt((dec * dec).sum(axis=2))
        cosine = (dec * v[rows][:, None, :]).sum(axis=2) / np.maximum(length, 1e-6)
        cosine = np.where(off[cand_rows], -np.inf, cosine)
        # 3 x 3 neighbours first: the 5 x 5 ring only when none of them decodes to unit length.
        inner = cosine[:, :8].max(axis=1) > -np.inf
        cosine[inner, 8:] = -np.inf
        pick = cosine.argmax(axis=1)
        if not np.isfinite(cosine[np.arange(len(rows)), pick]).all():
            raise ValueError("a normal has no octahedral code that decodes to unit length")
        out[rows, :2] = cand[np.arange(len(rows)), pick]
    return out


# --------------------------------------------------------------------------------------------------
# instance streams (EXT_meshopt_compression EXPONENTIAL and QUATERNION filters)

#: The EXPONENTIAL filter's signed mantissa has 24 bits.
_MANTISSA_LIMIT = (1 << 23) - 1


def exponential_codes(values: F64, error: F64) -> NDArray[np.uint32]:
    """Values (n, k) → (n, k) ``EXPONENTIAL``-filtered words (decoded as float32 ``m * 2^e``, ``m`` the
    low 24 bits signed, ``e`` the high byte signed), each within ``error[j]`` of column ``j``.

    One exponent a column (the largest power of two at most ``2 * error``), so the codec sees a constant
    high byte and small mantissa steps between neighbours: fixed point, coarser than float32's noise.
    A column whose values would not fit 24 bits at that step gets the step that fits (float32's own
    precision, which the plain stream had)."""
    v = np.asarray(values, np.float64)
    n, k = v.shape
    out = np.zeros((n, k), np.uint32)
    if n == 0:
        return out
    for j in range(k):
        target = max(2.0 * float(error[j]), 1e-30)
        e = math.floor(math.log2(target))
        top = float(np.abs(v[:, j]).max())
        while top / 2.0**e > _MANTISSA_LIMIT:
            e += 1
        e = min(max(e, -100), 100)
        m = np.rint(v[:, j] / 2.0**e).astype(np.int64)
        out[:, j] = ((e & 0xFF) << 24) | (m & 0xFFFFFF)
    return out


def decode_exponential(codes: NDArray[np.uint32]) -> NDArray[np.float32]:
    """What a decoder gives for ``exponential_codes``: float32 values."""
    c = np.ascontiguousarray(codes, np.uint32)
    out = meshoptimizer.decode_filter_exp(
        c.reshape(len(c), -1).copy(), len(c), 4 * c.reshape(len(c), -1).shape[1]
    )
    return np.asarray(out).view(np.float32).reshape(c.shape)


def quaternion_codes(q: F64, bits: int) -> NDArray[np.int16]:
    """Unit quaternions (n, 4) x, y, z, w → (n, 4) int16 ``QUATERNION``-filtered codes: the three
    components after the largest (cyclically), scaled by sqrt(2) (they are at most 1/sqrt(2)) to ``bits``
    signed bits, then the scale's top bits with the largest component's index in the low two. The
    largest component's sign is dropped (q and -q are the same rotation); the decoder rebuilds it."""
    codes: NDArray[np.int16] = quaternion_codes_by_bits(q, [bits])[0]
    return codes


def quaternion_codes_by_bits(q: F64, bits: Sequence[int]) -> NDArray[np.int16]:
    """``quaternion_codes(q, b)`` for every ``b`` in ``bits`` at once: (len(bits), n, 4)."""
    v = np.asarray(q, np.float64).reshape(-1, 4)
    n = len(v)
    scale = (np.left_shift(1, np.asarray(bits, np.int64) - 1) - 1)[:, None]  # (levels, 1)
    out = np.zeros((len(scale), n, 4), np.int16)
    if n == 0:
        return out
    big = np.argmax(np.abs(v), axis=1)
    sign = np.where(v[np.arange(n), big] < 0, -1.0, 1.0)
    for slot in range(3):
        comp = v[np.arange(n), (big + 1 + slot) & 3] * sign * math.sqrt(2.0)
        out[:, :, slot] = np.clip(np.rint(comp * scale), -scale, scale)
    out[:, :, 3] = (scale & ~3) | big
    return out


def decode_quaternions(codes: NDArray[np.int16]) -> F64:
    """What a decoder gives for ``quaternion_codes``: (n, 4) int16 normalized, as floats."""
    c = np.ascontiguousarray(codes, np.int16)
    out = meshoptimizer.decode_filter_quat(c.copy(), len(c), 8)
    return np.maximum(np.asarray(out, np.float64) / 32767.0, -1.0)
