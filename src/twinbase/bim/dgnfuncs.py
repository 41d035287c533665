"""The ``DGN_*`` SQL functions an iModel's triggers call, in pure Python (reference bim-format.md §3.4).

The spatial-index triggers on ``bis_GeometricElement3d`` (``dgn_rtree_ins``, ``dgn_rtree_upd``) compute each
element's axis-aligned box with ``DGN_placement_aabb(DGN_placement(DGN_point(..), DGN_angles(..),
DGN_bbox(..)))`` and read its six bounds with ``DGN_bbox_value``. SQLite fails any statement that fires them
unless the functions exist, so a replay registers them before applying a changeset.

The values passed between the functions are blobs laid out like the native library's C structs
(``DPoint3d``, ``YawPitchRollAngles`` in degrees, ``DRange3d``, ``Placement3d`` = origin, angles, box; all
little-endian doubles), and the arithmetic follows imodel-native (``DgnSqlFuncs.cpp``,
``Placement3d::CalculateRange``, ``YawPitchRollAngles::ToRotMatrix``, ``AngleInDegrees::Cos/Sin``) operation
for operation, so the R-tree gets the same float32 bounds the native library gives it. The functions are
called once per inserted or moved 3D element: plain functions over ``struct`` and ``math``, no objects.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import apsw

_POINT = struct.Struct("<3d")
_RANGE = struct.Struct("<6d")
_PLACEMENT = struct.Struct("<12d")
_FLOAT = struct.Struct("<f")
_FLT_MAX = 3.4028234663852886e38
# rtree.c's RNDAWAY / RNDTOWARDS.
_ROUND_AWAY = 1.0 + 1.0 / 8388608.0
_ROUND_TOWARDS = 1.0 - 1.0 / 8388608.0
_PLACEMENT2D = 56  # sizeof(Placement2d): DPoint2d origin, AngleInDegrees, DRange2d box
_DBL_MAX = 1.7976931348623157e308
_CIRCUMFERENCE_OF_EARTH = 40075.0 * 1000.0
_HALF_MILLIMETER = 0.5 * (1.0 / 1000.0)
_RADIANS_PER_DEGREE = math.pi / 180.0
# The native null range (DRange3d::Init): what CalculateRange answers for an invalid placement.
_NULL_RANGE = _RANGE.pack(_DBL_MAX, _DBL_MAX, _DBL_MAX, -_DBL_MAX, -_DBL_MAX, -_DBL_MAX)


def _reduce_degrees(degrees: float) -> float:
    # AngleInDegrees' ReduceSuspiciousPositiveDegrees: angles of 720 degrees and more.
    if degrees < 0.0 or math.isnan(degrees):
        return 0.0
    reduced = degrees - math.floor(degrees / 360.0) * 360.0
    return reduced if reduced < degrees else 0.0


def _cos_positive(degrees: float) -> float:
    # Shifting by multiples of 90 degrees before converting to radians makes 90, 180, ... exact, as natively.
    while True:
        if degrees < 45.0:
            return math.cos(degrees * _RADIANS_PER_DEGREE)
        if degrees < 135.0:
            return math.sin((90.0 - degrees) * _RADIANS_PER_DEGREE)
        if degrees < 225.0:
            return -math.cos((180.0 - degrees) * _RADIANS_PER_DEGREE)
        if degrees < 315.0:
            return math.sin((degrees - 270.0) * _RADIANS_PER_DEGREE)
        degrees = degrees - 360.0 if degrees < 720.0 else _reduce_degrees(degrees)


def _sin_positive(degrees: float) -> float:
    while True:
        if degrees < 45.0:
            return math.sin(degrees * _RADIANS_PER_DEGREE)
        if degrees < 135.0:
            return math.cos((90.0 - degrees) * _RADIANS_PER_DEGREE)
        if degrees < 225.0:
            return math.sin((180.0 - degrees) * _RADIANS_PER_DEGREE)
        if degrees < 315.0:
            return -math.cos((270.0 - degrees) * _RADIANS_PER_DEGREE)
        degrees = degrees - 360.0 if degrees < 720.0 else _reduce_degrees(degrees)


def cos_degrees(degrees: float) -> float:
    return _cos_positive(math.fabs(degrees))


def sin_degrees(degrees: float) -> float:
    return _sin_positive(degrees) if degrees > 0 else -_sin_positive(-degrees)


def _number(value: object) -> float:
    # sqlite3_value_double: NULL and text that is no number read as 0.0.
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return 0.0
    return 0.0


def dgn_point(x: object, y: object, z: object) -> bytes:
    return _POINT.pack(_number(x), _number(y), _number(z))


def dgn_angles(yaw: object, pitch: object, roll: object) -> bytes:
    return _POINT.pack(_number(yaw), _number(pitch), _number(roll))


def dgn_bbox(x0: object, y0: object, z0: object, x1: object, y1: object, z1: object) -> bytes:
    # DRange3d::InitFrom(x0, y0, z0, x1, y1, z1): the range of the two points, so each pair is sorted.
    a, b, c, d, e, f = _number(x0), _number(y0), _number(z0), _number(x1), _number(y1), _number(z1)
    return _RANGE.pack(min(a, d), min(b, e), min(c, f), max(a, d), max(b, e), max(c, f))


def dgn_placement(origin: object, angles: object, bbox: object) -> bytes:
    if not (isinstance(origin, bytes) and isinstance(angles, bytes) and isinstance(bbox, bytes)):
        raise ValueError("DGN_placement takes the blobs of DGN_point, DGN_angles and DGN_bbox")
    if len(origin) != 24 or len(angles) != 24 or len(bbox) != 48:
        raise ValueError("DGN_placement: a point, angles or box blob of the wrong size")
    return origin + angles + bbox


def _fix(low: float, high: float) -> tuple[float, float]:
    # Placement3d::EnsureMinimumRange: a range may not be flat in any direction.
    if low == high:
        return low - _HALF_MILLIMETER, high + _HALF_MILLIMETER
    return low, high


def placement_aabb(placement: bytes) -> bytes:
    """``Placement3d::CalculateRange``: the box's 8 corners rotated and moved, their range, never flat."""
    ox, oy, oz, yaw, pitch, roll, lx, ly, lz, hx, hy, hz = _PLACEMENT.unpack(placement)
    # Placement3d::IsValid: a non-empty box no larger than the Earth, an origin within twice its girth.
    if (
        hx < lx
        or hy < ly
        or hz < lz
        or hx - lx > _CIRCUMFERENCE_OF_EARTH
        or hy - ly > _CIRCUMFERENCE_OF_EARTH
        or hz - lz > _CIRCUMFERENCE_OF_EARTH
        or math.fabs(ox) > 2 * _CIRCUMFERENCE_OF_EARTH
        or math.fabs(oy) > 2 * _CIRCUMFERENCE_OF_EARTH
        or math.fabs(oz) > 2 * _CIRCUMFERENCE_OF_EARTH
    ):
        return _NULL_RANGE
    c0, s0 = cos_degrees(yaw), sin_degrees(yaw)
    c1, s1 = cos_degrees(pitch), sin_degrees(pitch)
    c2, s2 = cos_degrees(roll), sin_degrees(roll)
    # YawPitchRollAngles::ToRotMatrix, row by row.
    m00, m01, m02 = c0 * c1, -(s0 * c2 + c0 * s1 * s2), (s0 * s2 - c0 * s1 * c2)
    m10, m11, m12 = s0 * c1, (c0 * c2 - s0 * s1 * s2), -(c0 * s2 + s0 * s1 * c2)
    m20, m21, m22 = s1, c1 * s2, c1 * c2
    # DRange3d::Get8Corners order (x fastest, then y, then z); Transform::Multiply sums left to right.
    xs = []
    ys = []
    zs = []
    for z in (lz, hz):
        for y in (ly, hy):
            for x in (lx, hx):
                xs.append(m00 * x + m01 * y + m02 * z + ox)
                ys.append(m10 * x + m11 * y + m12 * z + oy)
                zs.append(m20 * x + m21 * y + m22 * z + oz)
    x0, x1 = _fix(min(xs), max(xs))
    y0, y1 = _fix(min(ys), max(ys))
    z0, z1 = _fix(min(zs), max(zs))
    return _RANGE.pack(x0, y0, z0, x1, y1, z1)


def dgn_placement_aabb(placement: object) -> bytes | None:
    if placement is None or placement == b"":
        return None
    if not isinstance(placement, bytes) or len(placement) != _PLACEMENT.size:
        if isinstance(placement, bytes) and len(placement) == _PLACEMENT2D:
            raise ValueError("DGN_placement_aabb of a 2D placement is not used by any trigger")
        raise ValueError("DGN_placement_aabb takes a DGN_placement blob")
    return placement_aabb(placement)


def _float32(value: float) -> float:
    return float(_FLOAT.unpack(_FLOAT.pack(value))[0])


def rtree_bound(value: float, *, upper: bool) -> float:
    """The float32 the native library's SQLite stores in an R-tree for ``value`` (``rtreeValueDown/Up``).

    That SQLite widens a bound the float cast moved inward by multiplying the double by 1 +/- 2^-23, which
    can land one float further out than needed; the SQLite in apsw picks the nearest float outward. Giving
    the R-tree the native float (exactly representable, so stored as is) makes a replayed spatial index
    equal to the one iTwin.js writes, bit for bit.
    """
    if not -_FLT_MAX <= value <= _FLT_MAX:
        return value  # the null range's +/-DBL_MAX (or NaN): left for the R-tree to reject, as natively
    f = _float32(value)
    if upper and f < value:
        return _float32(value * (_ROUND_TOWARDS if value < 0 else _ROUND_AWAY))
    if not upper and f > value:
        return _float32(value * (_ROUND_AWAY if value < 0 else _ROUND_TOWARDS))
    return f


def dgn_bbox_value(bbox: object, member: object) -> float:
    """One bound of a box: 0..2 the low x, y, z, 3..5 the high ones, as the R-tree will store it.

    The only callers in an iModel's schema are the spatial-index triggers, which write the value into the
    float32 R-tree ``dgn_SpatialIndex``: it is answered already rounded the native way (``rtree_bound``).
    """
    if not isinstance(bbox, bytes) or len(bbox) != _RANGE.size or not isinstance(member, int):
        raise ValueError("DGN_bbox_value takes a DGN_bbox blob and a member index")
    if not 0 <= member <= 5:
        raise ValueError(f"DGN_bbox_value: member {member} is not 0..5")
    return rtree_bound(_RANGE.unpack(bbox)[member], upper=member >= 3)


FUNCTIONS: dict[str, tuple[Callable[..., Any], int]] = {
    "DGN_point": (dgn_point, 3),
    "DGN_angles": (dgn_angles, 3),
    "DGN_bbox": (dgn_bbox, 6),
    "DGN_placement": (dgn_placement, 3),
    "DGN_placement_aabb": (dgn_placement_aabb, 1),
    "DGN_bbox_value": (dgn_bbox_value, 2),
}


def register(db: apsw.Connection) -> None:
    """Register the ``DGN_*`` functions the spatial-index triggers call (and their ``iModel_*`` aliases)."""
    for name, (function, nargs) in FUNCTIONS.items():
        for alias in (name, "iModel_" + name[4:]):
            db.create_scalar_function(alias, function, nargs, deterministic=True)
