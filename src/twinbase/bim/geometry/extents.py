"""Exact local ranges of the decoded geometry kinds whose range is cheap to compute.

``geometry_range`` answers the axis-aligned range (low, high) of a primitive in its own coordinates, or
None for kinds whose exact range needs tessellation (partial spheres, tori, rotational and ruled sweeps,
B-splines) or outside data (part instances, Parasolid B-reps without facets, text: the native element
range pads a TextString's stored range, e.g. by half the text height above and below). ``transformed_range``
places a range with a 3x4 transform (the range of the 8 transformed corners, which is what a part's
range becomes in its instancing element).
"""

from __future__ import annotations

import math

import numpy as np

from twinbase.bim.geometry.types import (
    Arc,
    Box,
    BRep,
    Cone,
    CurveVector,
    F64Array,
    Geometry,
    LinearSweep,
    LineSegment,
    LineString,
    PointString,
    Polyface,
    Sphere,
)

RangeArrays = tuple[F64Array, F64Array]


def _points_range(points: F64Array) -> RangeArrays | None:
    if points.shape[0] == 0:
        return None
    return points.min(axis=0), points.max(axis=0)


def union(a: RangeArrays | None, b: RangeArrays | None) -> RangeArrays | None:
    if a is None:
        return b
    if b is None:
        return a
    return np.minimum(a[0], b[0]), np.maximum(a[1], b[1])


def transformed_range(rng: RangeArrays, transform: F64Array) -> RangeArrays:
    lo, hi = rng
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    placed = corners @ transform[:, :3].T + transform[:, 3]
    return placed.min(axis=0), placed.max(axis=0)


def _ellipse_extent(u: F64Array, v: F64Array) -> F64Array:
    """Half-extent per axis of the full ellipse c + cos(t) u + sin(t) v."""
    result: F64Array = np.sqrt(u * u + v * v)
    return result


def _arc_range(arc: Arc) -> RangeArrays:
    c, u, v = arc.center, arc.vector0, arc.vector90
    if arc.is_full or abs(arc.sweep) >= 2.0 * math.pi:
        ext = _ellipse_extent(u, v)
        return c - ext, c + ext
    # the extremes along each axis are at t = atan2(v_i, u_i) (+π); keep those inside the sweep
    angles = [arc.start, arc.start + arc.sweep]
    lo_a, hi_a = min(angles), max(angles)
    for i in range(3):
        base = math.atan2(v[i], u[i])
        for t in (base, base + math.pi):
            # bring t into [lo_a, lo_a + 2π)
            k = math.floor((t - lo_a) / (2.0 * math.pi))
            t -= k * 2.0 * math.pi
            if lo_a <= t <= hi_a:
                angles.append(t)
    ts = np.array(angles)
    pts = c + np.cos(ts)[:, None] * u + np.sin(ts)[:, None] * v
    return pts.min(axis=0), pts.max(axis=0)


def geometry_range(geometry: Geometry) -> RangeArrays | None:
    """The exact local range of ``geometry``, or None when it is not cheap (see the module notes)."""
    if isinstance(geometry, LineString | PointString):
        return _points_range(geometry.points)
    if isinstance(geometry, LineSegment):
        return _points_range(np.array([geometry.start, geometry.end]))
    if isinstance(geometry, Polyface):
        return _points_range(geometry.points)
    if isinstance(geometry, Arc):
        return _arc_range(geometry)
    if isinstance(geometry, Box):
        return _points_range(geometry.corners())
    if isinstance(geometry, Sphere):
        if geometry.start_latitude > -math.pi / 2 + 1e-12 or geometry.latitude_sweep < math.pi - 1e-12:
            return None  # a latitude band: its range needs the band's circles
        m = geometry.local_to_world[:, :3]
        ext = np.linalg.norm(m, axis=1)  # an ellipsoid's half-extent along axis i is |row i|
        return geometry.center - ext, geometry.center + ext
    if isinstance(geometry, Cone):
        ranges = []
        for center, radius in (
            (geometry.center_a, geometry.radius_a),
            (geometry.center_b, geometry.radius_b),
        ):
            ext = _ellipse_extent(radius * geometry.vector0, radius * geometry.vector90)
            ranges.append((center - ext, center + ext))
        return union(ranges[0], ranges[1])
    if isinstance(geometry, CurveVector):
        out: RangeArrays | None = None
        for child in geometry.children:
            child_range = geometry_range(child)
            if child_range is None:
                return None
            out = union(out, child_range)
        return out
    if isinstance(geometry, LinearSweep):
        base = geometry_range(geometry.base)
        if base is None:
            return None
        return union(base, (base[0] + geometry.vector, base[1] + geometry.vector))
    if isinstance(geometry, BRep) and geometry.facets:
        out = None
        for facets in geometry.facets:
            out = union(out, _points_range(facets.points))
        return out
    return None
