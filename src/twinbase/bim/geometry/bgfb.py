"""BGFB payloads: ``b"bg0001fb"`` followed by a FlatBuffer of the GeomLibs schema ``allcg.fbs``.

The root table is ``VariantGeometry{geometry: union; tag: CurvePrimitiveId}``; the union's type byte is
vtable slot 0 and its table slot 1 (bim-format.md §1.4). Field slots below are the schema's field order,
as the generated accessors of ``@itwin/core-geometry`` (``BGFBAccessors``) read them. Fixed-size detail
structs are read as runs of little-endian doubles followed by a ``capped`` byte.

Checks beyond the wire format reject what no writer produces and a tessellator could not use: coordinate
vectors whose length is not a multiple of their width, polyface indices beyond their data arrays or
parallel index arrays of different lengths, B-spline pole, weight and knot counts that disagree.
"""

from __future__ import annotations

import struct

import numpy as np

from twinbase.bim.geometry.errors import GeometryStreamError
from twinbase.bim.geometry.flatbuf import FlatBuffer, Table, Where
from twinbase.bim.geometry.types import (
    AkimaCurve,
    Arc,
    BgfbGeometry,
    Box,
    BSplineCurve,
    BSplineSurface,
    Cone,
    CurvePrimitive,
    CurveVector,
    CurveVectorType,
    F64Array,
    GeometryGroup,
    I32Array,
    InterpolationCurve,
    LinearSweep,
    LineSegment,
    LineString,
    PointString,
    Polyface,
    RotationalSweep,
    RuledSweep,
    Sphere,
    TorusPipe,
    UnsupportedGeometry,
    _frozen,
    _make,
)

SIGNATURE = b"bg0001fb"

# VariantGeometryUnion tags (allcg.fbs)
LINE_SEGMENT = 1
ELLIPTIC_ARC = 2
BSPLINE_CURVE = 3
LINE_STRING = 4
CURVE_VECTOR = 5
DGN_CONE = 6
DGN_SPHERE = 7
DGN_TORUS_PIPE = 8
DGN_BOX = 9
DGN_EXTRUSION = 10
DGN_ROTATIONAL_SWEEP = 11
DGN_RULED_SWEEP = 12
POLYFACE = 13
BSPLINE_SURFACE = 14
VECTOR_OF_VARIANT_GEOMETRY = 15
INTERPOLATION_CURVE = 16
TRANSITION_SPIRAL = 17
POINT_STRING = 18
AKIMA_CURVE = 19
CATENARY_CURVE = 20
PARTIAL_CURVE = 21

TAG_NAMES = {
    LINE_SEGMENT: "LineSegment",
    ELLIPTIC_ARC: "EllipticArc",
    BSPLINE_CURVE: "BsplineCurve",
    LINE_STRING: "LineString",
    CURVE_VECTOR: "CurveVector",
    DGN_CONE: "DgnCone",
    DGN_SPHERE: "DgnSphere",
    DGN_TORUS_PIPE: "DgnTorusPipe",
    DGN_BOX: "DgnBox",
    DGN_EXTRUSION: "DgnExtrusion",
    DGN_ROTATIONAL_SWEEP: "DgnRotationalSweep",
    DGN_RULED_SWEEP: "DgnRuledSweep",
    POLYFACE: "Polyface",
    BSPLINE_SURFACE: "BsplineSurface",
    VECTOR_OF_VARIANT_GEOMETRY: "VectorOfVariantGeometry",
    INTERPOLATION_CURVE: "InterpolationCurve",
    TRANSITION_SPIRAL: "TransitionSpiral",
    POINT_STRING: "PointString",
    AKIMA_CURVE: "AkimaCurve",
    CATENARY_CURVE: "CatenaryCurve",
    PARTIAL_CURVE: "PartialCurve",
}

# Spiral type codes (native DSpiral2dBase, as core-geometry's DgnSpiralTypeQueries lists them).
SPIRAL_TYPES = {
    10: "clothoid",
    11: "bloss",
    12: "biquadratic",
    13: "cosine",
    14: "sine",
    15: "Viennese",
    16: "weightedViennese",
    50: "WesternAustralian",
    51: "Czech",
    52: "AustralianRailCorp",
    53: "Italian",
    54: "PolishCubic",
    55: "Arema",
    56: "MXCubicAlongArc",
    57: "MXCubicAlongTangent",
    58: "ChineseCubic",
    60: "HalfCosine",
    61: "JapaneseCubic",
}

# TransitionSpiralDetail: transform (12), fractions, bearings and curvatures (6), spiral type, hint.
_SPIRAL = struct.Struct("<18dii")


def read_bgfb(data: bytes, start: int, end: int, where: Where) -> BgfbGeometry:
    """Decode the BGFB payload ``data[start:end]`` (signature included)."""
    fb = FlatBuffer(data, start + len(SIGNATURE), end, where)
    if end - start < len(SIGNATURE) + 4 or data[start : start + len(SIGNATURE)] != SIGNATURE:
        head = bytes(data[start : min(end, start + len(SIGNATURE))])
        raise fb.fail(f"not a BGFB payload (expected signature {SIGNATURE!r}, found {head!r})")
    return _variant(fb.root("VariantGeometry"))


def _xyz(fb: FlatBuffer, table: Table, slot: int, field: str, *, required: bool = False) -> F64Array | None:
    """A flat ``[double]`` of xyz triples as an (n, 3) view."""
    arr = table.array(slot, "<f8", field)
    if arr is None:
        if required:
            raise fb.fail(f"{table.name}.{field} is missing")
        return None
    if arr.size % 3:
        raise fb.fail(f"{table.name}.{field}: {arr.size} doubles is not a whole number of xyz points")
    return arr.reshape(-1, 3)


def _view(g: Table, slot: int, count: int, field: str) -> F64Array:
    """A required struct of ``count`` doubles as a read-only view (slices of it are points)."""
    view = g.f64_view(slot, count, field)
    if view is None:
        raise g.fb.fail(f"{g.name}.{field} is missing")
    return view


def _variant(v: Table) -> BgfbGeometry:
    fb = v.fb
    tag, g = v.union(0, "geometry")
    if tag == 0 or g is None:
        raise fb.fail(f"{v.name} holds no geometry (union tag {tag})")
    name = TAG_NAMES.get(tag)
    if name is None:
        return UnsupportedGeometry(f"VariantGeometry tag {tag}")
    g.name = name
    if tag in _CURVES:
        return _curve(tag, g)
    if tag == CURVE_VECTOR:
        return _curve_vector(g)
    if tag == POLYFACE:
        return _polyface(g)
    if tag == BSPLINE_SURFACE:
        return _bspline_surface(g)
    if tag == VECTOR_OF_VARIANT_GEOMETRY:
        return GeometryGroup(tuple(_variant(m) for m in g.tables(0, "VariantGeometry", "members")))
    return _solid(tag, g)


# ---------------------------------------------------------------------------------------------------
# curves
# ---------------------------------------------------------------------------------------------------


def _curve(tag: int, g: Table) -> CurvePrimitive:
    fb = g.fb
    if tag == LINE_SEGMENT:
        s = _view(g, 0, 6, "segment")
        return LineSegment(s[0:3], s[3:6])
    if tag == ELLIPTIC_ARC:
        pos = g.field(0, 88, "arc")
        if pos is None:
            raise fb.fail(f"{g.name}.arc is missing")
        a = _frombuffer(fb.data, _F64, 11, pos)
        start, sweep = _D2(fb.data, pos + 72)  # a[9] and a[10], as Python floats
        return _make(Arc, center=a[0:3], vector0=a[3:6], vector90=a[6:9], start=start, sweep=sweep)
    if tag == LINE_STRING:
        pts = _xyz(fb, g, 0, "points")
        return _make(LineString, points=pts if pts is not None else _frozen(np.zeros((0, 3))))
    if tag == POINT_STRING:
        pts = _xyz(fb, g, 0, "points")
        return PointString(pts if pts is not None else _frozen(np.zeros((0, 3))))
    if tag == BSPLINE_CURVE:
        return _bspline_curve(g)
    if tag == INTERPOLATION_CURVE:
        fit = _xyz(fb, g, 8, "fitPoints", required=True)
        assert fit is not None
        start_tangent = g.f64_view(6, 3, "startTangent")
        end_tangent = g.f64_view(7, 3, "endTangent")
        return InterpolationCurve(
            order=g.i32(0, "order"),
            closed=g.bool(1, "closed"),
            fit_points=fit,
            knots=g.array(9, "<f8", "knots"),
            start_tangent=start_tangent,
            end_tangent=end_tangent,
            chord_length_knots=g.i32(2, "isChordLenKnots"),
            colinear_tangents=g.i32(3, "isColinearTangents"),
            chord_length_tangents=g.i32(4, "isChordLenTangents"),
            natural_tangents=g.i32(5, "isNaturalTangents"),
        )
    if tag == AKIMA_CURVE:
        pts = _xyz(fb, g, 0, "points", required=True)
        assert pts is not None
        return AkimaCurve(pts)
    if tag == TRANSITION_SPIRAL:
        detail = g.struct_raw(0, _SPIRAL, "detail")
        code = None if detail is None else int(detail[18])
        subtype = None if code is None else SPIRAL_TYPES.get(code, f"spiral type {code}")
        return UnsupportedGeometry("TransitionSpiral", subtype)
    # catenaries and partial curves: kept by kind, their shape is not decoded
    return UnsupportedGeometry(TAG_NAMES[tag])


_CURVES = frozenset(
    {
        LINE_SEGMENT,
        ELLIPTIC_ARC,
        BSPLINE_CURVE,
        LINE_STRING,
        INTERPOLATION_CURVE,
        TRANSITION_SPIRAL,
        POINT_STRING,
        AKIMA_CURVE,
        CATENARY_CURVE,
        PARTIAL_CURVE,
    }
)


def _knot_count_ok(knots: int, poles: int, order: int) -> bool:
    # native (classic, with the two extra end knots) or modern (without them)
    return knots in (poles + order, poles + order - 2)


def _bspline_curve(g: Table) -> BSplineCurve:
    fb = g.fb
    order = g.i32(0, "order")
    poles = _xyz(fb, g, 2, "poles", required=True)
    knots = g.array(4, "<f8", "knots")
    assert poles is not None
    if knots is None:
        raise fb.fail("BsplineCurve.knots is missing")
    weights = g.array(3, "<f8", "weights")
    n = poles.shape[0]
    if order < 2 or n < order:
        raise fb.fail(f"BsplineCurve: order {order} with {n} poles")
    if weights is not None and weights.size != n:
        raise fb.fail(f"BsplineCurve: {weights.size} weights for {n} poles")
    if not _knot_count_ok(knots.size, n, order):
        raise fb.fail(f"BsplineCurve: {knots.size} knots for {n} poles of order {order}")
    return BSplineCurve(order=order, poles=poles, weights=weights, knots=knots, closed=g.bool(1, "closed"))


_CV_TYPES = {int(t): t for t in CurveVectorType}


def _curve_vector(g: Table) -> CurveVector:
    cv_type = _CV_TYPES.get(g.i32(0, "type"), CurveVectorType.NONE)
    children: list[CurvePrimitive | CurveVector] = []
    for child in g.tables(1, "VariantGeometry", "curves"):
        tag, table = child.union(0, "geometry")
        if tag == 0 or table is None:
            raise g.fb.fail(f"CurveVector.curves: a member holds no geometry (union tag {tag})")
        if tag in _CURVES:
            table.name = TAG_NAMES[tag]
            children.append(_curve(tag, table))
        elif tag == CURVE_VECTOR:
            table.name = "CurveVector"
            children.append(_curve_vector(table))
        elif tag in TAG_NAMES:
            raise g.fb.fail(f"CurveVector.curves: a {TAG_NAMES[tag]} is not a curve")
        else:
            children.append(UnsupportedGeometry(f"VariantGeometry tag {tag}"))
    return _make(CurveVector, type=cv_type, children=tuple(children))


def _required_curve_vector(g: Table, slot: int, field: str) -> CurveVector:
    table = g.table(slot, "CurveVector", field)
    if table is None:
        raise g.fb.fail(f"{g.name}.{field} is missing")
    return _curve_vector(table)


# ---------------------------------------------------------------------------------------------------
# polyface
# ---------------------------------------------------------------------------------------------------


def _index(g: Table, slot: int, field: str, data_count: int, point_index: I32Array | None) -> I32Array | None:
    idx = g.array(slot, "<i4", field)
    if idx is None:
        return None
    if point_index is not None and idx.size != point_index.size:
        raise g.fb.fail(f"Polyface.{field}: {idx.size} entries, pointIndex has {point_index.size}")
    if idx.size:
        # abs() of int32 min overflows: compare the extremes instead
        lo, hi = int(idx.min()), int(idx.max())
        if hi > data_count or -lo > data_count:
            bad = hi if hi > data_count else lo
            raise g.fb.fail(f"Polyface.{field}: index {bad} beyond the {data_count} values it indexes")
    return idx


def _polyface(g: Table) -> Polyface:
    # Read without the per-array checks, then checked all at once: any error, or any doubt, and the
    # payload is read again the careful way, which raises what is wrong first (or returns the same mesh).
    try:
        mesh = _polyface_fast(g)
    except GeometryStreamError:
        mesh = None
    return _polyface_checked(g) if mesh is None else mesh


def _polyface_fast(g: Table) -> Polyface | None:
    if g.i32(12, "meshStyle") != 1:
        return None
    points = g.array(0, "<f8", "point")
    point_index = g.array(5, "<i4", "pointIndex")
    params = g.array(1, "<f8", "param")
    normals = g.array(2, "<f8", "normal")
    colors = g.array(4, "<u4", "intColor")
    param_index = g.array(6, "<i4", "paramIndex")
    normal_index = g.array(7, "<i4", "normalIndex")
    color_index = g.array(8, "<i4", "colorIndex")
    if points is None or point_index is None or points.size % 3:
        return None
    points = points.reshape(-1, 3)
    if params is not None:
        if params.size % 2:
            return None
        params = params.reshape(-1, 2)
    if normals is not None:
        if normals.size % 3:
            return None
        normals = normals.reshape(-1, 3)
    # every index array against the count of what it indexes, in one concatenation and two reductions
    indices = [point_index]
    counts = [points.shape[0]]
    for idx, data in ((param_index, params), (normal_index, normals), (color_index, colors)):
        if idx is not None:
            if idx.size != point_index.size:
                return None
            indices.append(idx)
            counts.append(0 if data is None else data.shape[0])
    if point_index.size:
        stacked = np.concatenate(indices).reshape(len(indices), -1) if len(indices) > 1 else point_index[None]
        for lo, hi, count in zip(
            stacked.min(axis=1).tolist(), stacked.max(axis=1).tolist(), counts, strict=True
        ):
            if hi > count or -lo > count:
                return None
    # As iTwin.js's BGFBReader: data without its index array (or the reverse) is not used.
    if params is None or param_index is None:
        params = param_index = None
    if normals is None or normal_index is None:
        normals = normal_index = None
    if colors is None or color_index is None:
        colors = color_index = None
    return _make(
        Polyface,
        points=points,
        point_index=point_index,
        params=params,
        param_index=param_index,
        normals=normals,
        normal_index=normal_index,
        colors=colors,
        color_index=color_index,
        num_per_face=g.i32(10, "numPerFace"),
        two_sided=g.bool(13, "twoSided"),
        expected_closure=g.i32(17, "expectedClosure"),
        has_aux_data=g.has(16),
    )


def _polyface_checked(g: Table) -> Polyface:
    fb = g.fb
    mesh_style = g.i32(12, "meshStyle")
    if mesh_style != 1:
        raise fb.fail(f"Polyface.meshStyle {mesh_style} (only 1, indexed face loops, exists)")
    points = _xyz(fb, g, 0, "point", required=True)
    assert points is not None
    point_index = _index(g, 5, "pointIndex", points.shape[0], None)
    if point_index is None:
        raise fb.fail("Polyface.pointIndex is missing")

    params = g.array(1, "<f8", "param")
    if params is not None:
        if params.size % 2:
            raise fb.fail(f"Polyface.param: {params.size} doubles is not a whole number of uv pairs")
        params = params.reshape(-1, 2)
    normals = _xyz(fb, g, 2, "normal")
    colors = g.array(4, "<u4", "intColor")
    param_index = _index(g, 6, "paramIndex", 0 if params is None else params.shape[0], point_index)
    normal_index = _index(g, 7, "normalIndex", 0 if normals is None else normals.shape[0], point_index)
    color_index = _index(g, 8, "colorIndex", 0 if colors is None else colors.size, point_index)
    # As iTwin.js's BGFBReader: data without its index array (or the reverse) is not used.
    if params is None or param_index is None:
        params = param_index = None
    if normals is None or normal_index is None:
        normals = normal_index = None
    if colors is None or color_index is None:
        colors = color_index = None
    return Polyface(
        points=points,
        point_index=point_index,
        params=params,
        param_index=param_index,
        normals=normals,
        normal_index=normal_index,
        colors=colors,
        color_index=color_index,
        num_per_face=g.i32(10, "numPerFace"),
        two_sided=g.bool(13, "twoSided"),
        expected_closure=g.i32(17, "expectedClosure"),
        has_aux_data=g.has(16),
    )


# ---------------------------------------------------------------------------------------------------
# B-spline surface
# ---------------------------------------------------------------------------------------------------


def _bspline_surface(g: Table) -> BSplineSurface:
    fb = g.fb
    nu, nv = g.i32(4, "numPolesU"), g.i32(5, "numPolesV")
    order_u, order_v = g.i32(6, "orderU"), g.i32(7, "orderV")
    poles = g.array(0, "<f8", "poles")
    knots_u = g.array(2, "<f8", "knotsU")
    knots_v = g.array(3, "<f8", "knotsV")
    if poles is None or knots_u is None or knots_v is None:
        raise fb.fail("BsplineSurface: poles or knots missing")
    if nu < order_u or nv < order_v or order_u < 2 or order_v < 2:
        raise fb.fail(f"BsplineSurface: {nu}x{nv} poles of order {order_u}x{order_v}")
    if poles.size != 3 * nu * nv:
        raise fb.fail(f"BsplineSurface: {poles.size} pole doubles for {nu}x{nv} poles")
    weights = g.array(1, "<f8", "weights")
    if weights is not None:
        if weights.size != nu * nv:
            raise fb.fail(f"BsplineSurface: {weights.size} weights for {nu}x{nv} poles")
        weights = weights.reshape(nv, nu)
    if not _knot_count_ok(knots_u.size, nu, order_u) or not _knot_count_ok(knots_v.size, nv, order_v):
        raise fb.fail(
            f"BsplineSurface: {knots_u.size}x{knots_v.size} knots for {nu}x{nv} poles "
            f"of order {order_u}x{order_v}"
        )
    boundaries = g.table(11, "CurveVector", "boundaries")
    return BSplineSurface(
        poles=poles.reshape(nv, nu, 3),
        weights=weights,
        knots_u=knots_u,
        knots_v=knots_v,
        order_u=order_u,
        order_v=order_v,
        closed_u=g.bool(12, "closedU"),
        closed_v=g.bool(13, "closedV"),
        num_rules_u=g.i32(8, "numRulesU"),
        num_rules_v=g.i32(9, "numRulesV"),
        hole_origin=g.i32(10, "holeOrigin"),
        boundaries=None if boundaries is None else _curve_vector(boundaries),
    )


# ---------------------------------------------------------------------------------------------------
# solids
# ---------------------------------------------------------------------------------------------------


def _detail(g: Table, doubles: int) -> tuple[F64Array, bool, int]:
    """A solid's detail struct: ``doubles`` doubles, then the ``capped`` byte padded to 8; also where it
    starts, so scalars can be read from the bytes as Python floats."""
    size = 8 * doubles + 8
    pos = g.field(0, size, "detail")
    if pos is None:
        raise g.fb.fail(f"{g.name}.detail is missing")
    data = g.fb.data
    values = _frombuffer(data, _F64, doubles, pos)
    return values, data[pos + 8 * doubles] != 0, pos


_F64 = np.dtype("<f8")
_frombuffer = np.frombuffer  # positional: numpy parses keyword arguments several times slower
_D2 = struct.Struct("<2d").unpack_from
_D3 = struct.Struct("<3d").unpack_from
_D4 = struct.Struct("<4d").unpack_from


def _solid(tag: int, g: Table) -> BgfbGeometry:
    fb = g.fb
    data = fb.data
    if tag == DGN_BOX:
        d, capped, pos = _detail(g, 16)
        base_x, base_y, top_x, top_y = _D4(data, pos + 96)
        return _make(
            Box,
            base_origin=d[0:3],
            top_origin=d[3:6],
            vector_x=d[6:9],
            vector_y=d[9:12],
            base_x=base_x,
            base_y=base_y,
            top_x=top_x,
            top_y=top_y,
            capped=capped,
        )
    if tag == DGN_SPHERE:
        d, capped, pos = _detail(g, 14)
        start_latitude, latitude_sweep = _D2(data, pos + 96)
        return _make(
            Sphere,
            local_to_world=d[0:12].reshape(3, 4),
            start_latitude=start_latitude,
            latitude_sweep=latitude_sweep,
            capped=capped,
        )
    if tag == DGN_CONE:
        d, capped, pos = _detail(g, 14)
        radius_a, radius_b = _D2(data, pos + 96)
        return _make(
            Cone,
            center_a=d[0:3],
            center_b=d[3:6],
            vector0=d[6:9],
            vector90=d[9:12],
            radius_a=radius_a,
            radius_b=radius_b,
            capped=capped,
        )
    if tag == DGN_TORUS_PIPE:
        d, capped, pos = _detail(g, 12)
        major_radius, minor_radius, sweep = _D3(data, pos + 72)
        return _make(
            TorusPipe,
            center=d[0:3],
            vector_x=d[3:6],
            vector_y=d[6:9],
            major_radius=major_radius,
            minor_radius=minor_radius,
            sweep=sweep,
            capped=capped,
        )
    if tag == DGN_EXTRUSION:
        vector = _view(g, 1, 3, "extrusionVector")
        base = _required_curve_vector(g, 0, "baseCurve")
        return _make(LinearSweep, base=base, vector=vector, capped=g.bool(2, "capped"))
    if tag == DGN_ROTATIONAL_SWEEP:
        axis = _view(g, 1, 6, "axis")
        return RotationalSweep(
            base=_required_curve_vector(g, 0, "baseCurve"),
            axis_origin=axis[0:3],
            axis_direction=axis[3:6],
            sweep=g.f64(2, "sweepRadians"),
            num_v_rules=g.i32(3, "numVRules"),
            capped=g.bool(4, "capped"),
        )
    assert tag == DGN_RULED_SWEEP, tag
    sections = tuple(_curve_vector(t) for t in g.tables(0, "CurveVector", "curves"))
    if len(sections) < 2:
        raise fb.fail(f"DgnRuledSweep with {len(sections)} section curves (at least 2 make a surface)")
    return RuledSweep(sections, g.bool(1, "capped"))
