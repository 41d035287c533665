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
from array import array
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
_NULL_VALUES = (_DBL_MAX, _DBL_MAX, _DBL_MAX, -_DBL_MAX, -_DBL_MAX, -_DBL_MAX)


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


def _cos_sin(degrees: float) -> tuple[float, float]:
    """(cos_degrees, sin_degrees) in one call; the usual |angle| < 45 case without the reductions."""
    if -45.0 < degrees < 45.0:
        return (
            math.cos(math.fabs(degrees) * _RADIANS_PER_DEGREE),
            math.sin(degrees * _RADIANS_PER_DEGREE)
            if degrees > 0
            else -math.sin(-degrees * _RADIANS_PER_DEGREE),
        )
    return cos_degrees(degrees), sin_degrees(degrees)


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


# The trigger columns are REAL (or NULL): the fast paths pack them as they come and fall back to
# sqlite3_value_double's conversions only when struct refuses a value.
def dgn_point(x: Any, y: Any, z: Any) -> bytes:
    try:
        return _POINT.pack(x, y, z)
    except struct.error:
        return _POINT.pack(_number(x), _number(y), _number(z))


dgn_angles = dgn_point  # YawPitchRollAngles::FromDegrees keeps the three degrees as they are


def dgn_bbox(x0: Any, y0: Any, z0: Any, x1: Any, y1: Any, z1: Any) -> bytes:
    # DRange3d::InitFrom(x0, y0, z0, x1, y1, z1): the range of the two points, so each pair is sorted.
    try:
        # DRange3d::Extend's FIX_MINMAX, starting from the first point.
        return _RANGE.pack(
            x1 if x1 < x0 else x0,
            y1 if y1 < y0 else y0,
            z1 if z1 < z0 else z0,
            x1 if x1 > x0 else x0,
            y1 if y1 > y0 else y0,
            z1 if z1 > z0 else z0,
        )
    except (struct.error, TypeError):
        a, b, c, d, e, f = _number(x0), _number(y0), _number(z0), _number(x1), _number(y1), _number(z1)
        return _RANGE.pack(min(a, d), min(b, e), min(c, f), max(a, d), max(b, e), max(c, f))


def dgn_placement(origin: Any, angles: Any, bbox: Any) -> bytes:
    try:
        if len(origin) == 24 and len(angles) == 24 and len(bbox) == 48:
            return bytes(origin + angles + bbox)
    except TypeError:
        pass
    raise ValueError("DGN_placement takes the blobs of DGN_point, DGN_angles and DGN_bbox")


def _ordered(a: float, b: float) -> tuple[float, float]:
    return (a, b) if a <= b else (b, a)


def _flat_fix(low: float, high: float) -> tuple[float, float]:
    # Placement3d::EnsureMinimumRange: a range may not be flat in any direction.
    if low == high:
        return low - _HALF_MILLIMETER, high + _HALF_MILLIMETER
    return low, high


def placement_aabb(placement: bytes) -> bytes:
    """``Placement3d::CalculateRange``: the box's 8 corners rotated and moved, their range, never flat."""
    return _RANGE.pack(*_aabb(placement))


def _aabb(placement: bytes) -> tuple[float, float, float, float, float, float]:
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
        return _NULL_VALUES
    if yaw == 0.0 and pitch == 0.0 and roll == 0.0:
        # The identity rotation: every product is x * 1.0 or y * (+/-0.0), so each transformed corner is
        # exactly x + origin, and rounding is monotonic: the range is the box moved, as natively.
        x0, x1 = _flat_fix(lx + ox, hx + ox)
        y0, y1 = _flat_fix(ly + oy, hy + oy)
        z0, z1 = _flat_fix(lz + oz, hz + oz)
        return x0, y0, z0, x1, y1, z1
    c0, s0 = _cos_sin(yaw)
    c1, s1 = _cos_sin(pitch)
    c2, s2 = _cos_sin(roll)
    # YawPitchRollAngles::ToRotMatrix, row by row.
    m00, m01, m02 = c0 * c1, -(s0 * c2 + c0 * s1 * s2), (s0 * s2 - c0 * s1 * c2)
    m10, m11, m12 = s0 * c1, (c0 * c2 - s0 * s1 * s2), -(c0 * s2 + s0 * s1 * c2)
    m20, m21, m22 = s1, c1 * s2, c1 * c2
    # Natively each of the 8 corners is ((m0*x + m1*y) + m2*z) + o (Transform::Multiply's order), then the
    # range of the 8. IEEE addition is monotonic in each operand, so the smallest corner is exactly the sum
    # of each term's smaller product (and the largest of the larger ones): the same doubles, in 2 sums.
    a0, a1 = _ordered(m00 * lx, m00 * hx)
    b0, b1 = _ordered(m01 * ly, m01 * hy)
    e0, e1 = _ordered(m02 * lz, m02 * hz)
    x0, x1 = _flat_fix(a0 + b0 + e0 + ox, a1 + b1 + e1 + ox)
    a0, a1 = _ordered(m10 * lx, m10 * hx)
    b0, b1 = _ordered(m11 * ly, m11 * hy)
    e0, e1 = _ordered(m12 * lz, m12 * hz)
    y0, y1 = _flat_fix(a0 + b0 + e0 + oy, a1 + b1 + e1 + oy)
    a0, a1 = _ordered(m20 * lx, m20 * hx)
    b0, b1 = _ordered(m21 * ly, m21 * hy)
    e0, e1 = _ordered(m22 * lz, m22 * hz)
    z0, z1 = _flat_fix(a0 + b0 + e0 + oz, a1 + b1 + e1 + oz)
    return x0, y0, z0, x1, y1, z1


def dgn_placement_aabb(placement: Any) -> bytes | None:
    if placement is None or placement == b"":
        return None
    if isinstance(placement, bytes) and len(placement) == _PLACEMENT.size:
        return placement_aabb(placement)
    if isinstance(placement, bytes) and len(placement) == _PLACEMENT2D:
        raise ValueError("DGN_placement_aabb of a 2D placement is not used by any trigger")
    raise ValueError("DGN_placement_aabb takes a DGN_placement blob")


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


def rtree_box(bbox: bytes) -> tuple[float, ...]:
    """A box's six bounds as the native R-tree stores them: lows rounded down, highs up (``rtree_bound``)."""
    return _rtree_values(_RANGE.unpack(bbox))


def _rtree_values(values: tuple[float, ...]) -> tuple[float, ...]:
    x0, y0, z0, x1, y1, z1 = values
    if not (min(values) >= -_FLT_MAX and max(values) <= _FLT_MAX):
        return tuple(rtree_bound(v, upper=i >= 3) for i, v in enumerate(values))
    # All six cast at once; only a bound the cast moved inward needs rtree_bound's widening (about half).
    f0, f1, f2, f3, f4, f5 = array("f", values)
    return (
        _float32(x0 * (_ROUND_AWAY if x0 < 0 else _ROUND_TOWARDS)) if f0 > x0 else f0,
        _float32(y0 * (_ROUND_AWAY if y0 < 0 else _ROUND_TOWARDS)) if f1 > y0 else f1,
        _float32(z0 * (_ROUND_AWAY if z0 < 0 else _ROUND_TOWARDS)) if f2 > z0 else f2,
        _float32(x1 * (_ROUND_TOWARDS if x1 < 0 else _ROUND_AWAY)) if f3 < x1 else f3,
        _float32(y1 * (_ROUND_TOWARDS if y1 < 0 else _ROUND_AWAY)) if f4 < y1 else f4,
        _float32(z1 * (_ROUND_TOWARDS if z1 < 0 else _ROUND_AWAY)) if f5 < z1 else f5,
    )


def spatial_functions() -> tuple[Callable[[Any], bytes | None], Callable[[Any, Any], float]]:
    """``DGN_placement_aabb`` and ``DGN_bbox_value`` for one connection, sharing the last box computed.

    ``DGN_bbox_value`` answers one bound of a box (0..2 the low x, y, z; 3..5 the high ones), R-tree
    rounded: the only callers in an iModel's schema are the spatial-index triggers, which write the value
    into the float32 R-tree ``dgn_SpatialIndex``, so it is answered already rounded the native way
    (``rtree_bound``). They ask for the six bounds of the box ``DGN_placement_aabb`` just made, so that
    one keeps its box and the rounded bounds, and the six calls find them.
    """
    last_box = b""
    last_values: tuple[float, ...] = ()

    def placement_aabb_function(placement: Any) -> bytes | None:
        nonlocal last_box, last_values
        if type(placement) is not bytes or len(placement) != _PLACEMENT.size:
            return dgn_placement_aabb(placement)  # NULL, or the error
        values = _aabb(placement)
        last_box = _RANGE.pack(*values)
        last_values = _rtree_values(values)
        return last_box

    def bbox_value(bbox: Any, member: Any) -> float:
        nonlocal last_box, last_values
        if bbox != last_box:
            if not isinstance(bbox, bytes) or len(bbox) != _RANGE.size:
                raise ValueError("DGN_bbox_value takes a DGN_bbox blob and a member index")
            last_values = rtree_box(bbox)
            last_box = bbox
        if type(member) is int and 0 <= member <= 5:
            return last_values[member]
        raise ValueError(f"DGN_bbox_value: member {member!r} is not 0..5")

    return placement_aabb_function, bbox_value


def dgn_bbox_value(bbox: Any, member: Any) -> float:
    """``DGN_bbox_value`` without the per-connection cache (see ``_BoxValues``)."""
    if not isinstance(bbox, bytes) or len(bbox) != _RANGE.size:
        raise ValueError("DGN_bbox_value takes a DGN_bbox blob and a member index")
    if type(member) is not int or not 0 <= member <= 5:
        raise ValueError(f"DGN_bbox_value: member {member!r} is not 0..5")
    return rtree_box(bbox)[member]


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
    functions = dict(FUNCTIONS)
    placement_aabb_function, bbox_value = spatial_functions()  # one shared cache per connection
    functions["DGN_placement_aabb"] = (placement_aabb_function, 1)
    functions["DGN_bbox_value"] = (bbox_value, 2)
    for name, (function, nargs) in functions.items():
        for alias in (name, "iModel_" + name[4:]):
            db.create_scalar_function(alias, function, nargs, deterministic=True)
