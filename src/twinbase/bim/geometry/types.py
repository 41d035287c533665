"""The typed result of decoding a GeometryStream.

Geometry is immutable dataclasses whose coordinates are numpy float64 arrays: points and vectors are
shape (3,), transforms are (3, 4) row-major ``[matrix | translation]``, and point lists are (n, 3). Big
arrays (polyface points and indices, B-spline poles, line string points) are read-only views of the
decompressed stream (``np.frombuffer``), never per-point Python objects. Dataclasses holding arrays
compare by identity (``eq=False``); appearance values (symbology, fill, materials) are plain tuples and
numbers, hashable and comparable, so callers can group entries by the appearance they draw with.

Names follow the schemas: ``ElementGraphics.fbs`` (namespace ``BentleyM0200.Dgn.FB``) for the stream's
own operations and ``allcg.fbs`` (BGFB) for curves, solids, meshes and surfaces. Angles in radians unless
the name says degrees (part instances, materials and line style rotations are stored in degrees).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt

F64Array: TypeAlias = npt.NDArray[np.float64]
I32Array: TypeAlias = npt.NDArray[np.int32]
U32Array: TypeAlias = npt.NDArray[np.uint32]
Point: TypeAlias = tuple[float, float, float]
Range: TypeAlias = tuple[Point, Point]  # (low, high)


class OpCode(IntEnum):
    """``GeometryStreamIO::OpCode`` (the same numbers as TypeScript's ``ElementGeometryOpcode``)."""

    HEADER = 1
    SUB_GRAPHIC_RANGE = 2
    GEOMETRY_PART_INSTANCE = 3
    BASIC_SYMBOLOGY = 4
    POINT_PRIMITIVE = 5
    POINT_PRIMITIVE_2D = 6
    ARC_PRIMITIVE = 7
    CURVE_VECTOR = 8
    POLYFACE = 9
    CURVE_PRIMITIVE = 10
    SOLID_PRIMITIVE = 11
    BSPLINE_SURFACE = 12
    AREA_FILL = 19
    PATTERN = 20
    MATERIAL = 21
    TEXT_STRING = 22
    LINE_STYLE_MODIFIERS = 23
    PARASOLID_BREP = 25
    BREP_POLYFACE = 26
    BREP_CURVE_VECTOR = 27
    IMAGE = 28


class Boundary(IntEnum):
    """``FB::BoundaryType`` of PointPrimitive and ArcPrimitive: what the points or the arc make."""

    NONE = 0  # points (a point string)
    OPEN = 1  # a line string / an open arc
    CLOSED = 2  # a shape / a filled ellipse (a closed planar region)


class CurveVectorType(IntEnum):
    """``CurveVector::BoundaryType`` as stored in BGFB ``CurveVector.type``; other values are a bag of
    curves (``NONE``)."""

    NONE = 0
    OPEN = 1  # a path
    OUTER = 2  # a closed loop
    INNER = 3  # a hole loop
    PARITY_REGION = 4
    UNION_REGION = 5


class GeometryClass(IntEnum):
    PRIMARY = 0
    CONSTRUCTION = 1
    DIMENSION = 2
    PATTERN = 3


class FillDisplay(IntEnum):
    NEVER = 0
    BY_VIEW = 1
    ALWAYS = 2
    BLANKING = 3


class GradientMode(IntEnum):
    NONE = 0
    LINEAR = 1
    CURVED = 2
    CYLINDRICAL = 3
    SPHERICAL = 4
    HEMISPHERICAL = 5
    THEMATIC = 6


class BRepType(IntEnum):
    SOLID = 0
    SHEET = 1
    WIRE = 2


_T = TypeVar("_T")
_new = object.__new__


def _make(cls: type[_T], **fields: Any) -> _T:
    """``cls(**fields)`` for the frozen dataclasses here, given every field: a frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__``, while filling the new instance's dict
    makes the same object in about a third of the time (decoders make several per stream)."""
    obj: _T = _new(cls)
    obj.__dict__.update(fields)
    return obj


def _frozen(values: Any, shape: tuple[int, ...] | None = None) -> F64Array:
    """A small read-only float64 array (points, vectors, transforms) made from Python numbers."""
    arr = np.array(values, dtype=np.float64)
    if shape is not None:
        arr = arr.reshape(shape)
    arr.flags.writeable = False
    return arr


def ypr_matrix(yaw_degrees: float, pitch_degrees: float, roll_degrees: float) -> F64Array:
    """iTwin.js ``YawPitchRollAngles.toMatrix3d`` (angles in degrees): yaw about Z, pitch about Y
    (positive pitch raises +X toward +Z), roll about X (bim-format.md §1.5)."""
    cz, sz = math.cos(math.radians(yaw_degrees)), math.sin(math.radians(yaw_degrees))
    cy, sy = math.cos(math.radians(pitch_degrees)), math.sin(math.radians(pitch_degrees))
    cx, sx = math.cos(math.radians(roll_degrees)), math.sin(math.radians(roll_degrees))
    return _frozen(
        [
            [cz * cy, -(sz * cx + cz * sy * sx), sz * sx - cz * sy * cx],
            [sz * cy, cz * cx - sz * sy * sx, -(cz * sx + sz * sy * cx)],
            [sy, cy * sx, cy * cx],
        ]
    )


# ---------------------------------------------------------------------------------------------------
# Curves (BGFB CurvePrimitive, and the stream's own PointPrimitive / ArcPrimitive)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LineSegment:
    start: F64Array
    end: F64Array


@dataclass(frozen=True, eq=False)
class LineString:
    points: F64Array  # (n, 3)


@dataclass(frozen=True, eq=False)
class PointString:
    """Isolated points (PointPrimitive with boundary NONE, or BGFB PointString)."""

    points: F64Array  # (n, 3)


@dataclass(frozen=True, eq=False)
class Arc:
    """An elliptic arc: ``center + cos(t) vector0 + sin(t) vector90`` for t from ``start`` over
    ``sweep`` radians (a full ellipse has a sweep of ±2π)."""

    center: F64Array
    vector0: F64Array
    vector90: F64Array
    start: float
    sweep: float

    @property
    def is_full(self) -> bool:
        return abs(abs(self.sweep) - 2.0 * math.pi) < 1e-10


@dataclass(frozen=True, eq=False)
class BSplineCurve:
    """Poles as stored: with ``weights`` they are weighted (homogeneous ``w*x, w*y, w*z``), as
    BGFBReader passes them to ``BSplineCurve3dH``. ``knots`` is the full native knot vector
    (``len(poles) + order`` values: the classic clamped form with the two extra end knots)."""

    order: int
    poles: F64Array  # (n, 3)
    weights: F64Array | None  # (n,)
    knots: F64Array
    closed: bool

    @property
    def cartesian_poles(self) -> F64Array:
        """Poles divided by their weights (the control points in model space)."""
        if self.weights is None:
            return self.poles
        return self.poles / self.weights[:, None]


@dataclass(frozen=True, eq=False)
class InterpolationCurve:
    order: int
    closed: bool
    fit_points: F64Array  # (n, 3)
    knots: F64Array | None
    start_tangent: F64Array | None
    end_tangent: F64Array | None
    chord_length_knots: int
    colinear_tangents: int
    chord_length_tangents: int
    natural_tangents: int


@dataclass(frozen=True, eq=False)
class AkimaCurve:
    points: F64Array  # (n, 3) fit points


@dataclass(frozen=True)
class UnsupportedGeometry:
    """A BGFB geometry kept by kind name only (its shape is not decoded): ``TransitionSpiral`` with the
    spiral type name in ``subtype`` (e.g. "clothoid"), ``CatenaryCurve``, ``PartialCurve``, or an
    unknown union tag (``kind`` "VariantGeometry tag N")."""

    kind: str
    subtype: str | None = None


CurvePrimitive: TypeAlias = (
    LineSegment
    | LineString
    | PointString
    | Arc
    | BSplineCurve
    | InterpolationCurve
    | AkimaCurve
    | UnsupportedGeometry
)


@dataclass(frozen=True, eq=False)
class CurveVector:
    """A path, a loop, a parity region (an outer loop and holes), a union region or a bag of curves;
    regions hold loops (themselves CurveVectors), loops and paths hold curve primitives."""

    type: CurveVectorType
    children: tuple[CurvePrimitive | CurveVector, ...]

    @property
    def is_region(self) -> bool:
        return self.type in (
            CurveVectorType.OUTER,
            CurveVectorType.INNER,
            CurveVectorType.PARITY_REGION,
            CurveVectorType.UNION_REGION,
        )


# ---------------------------------------------------------------------------------------------------
# Meshes, solids, surfaces
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Polyface:
    """An indexed mesh as stored (BGFB ``Polyface``, mesh style 1 = indexed face loops).

    Every ``*_index`` array is signed and 1-based: ``abs(i) - 1`` indexes the data array; a negative
    value hides the edge that starts at that vertex. With ``num_per_face <= 1`` a 0 ends each face (faces
    of any size); with ``num_per_face >= 2`` faces are blocks of that many entries, padded with 0. The
    normal, param and color index arrays parallel ``point_index`` (same length, same zeros).
    """

    points: F64Array  # (n, 3)
    point_index: I32Array
    params: F64Array | None  # (n, 2)
    param_index: I32Array | None
    normals: F64Array | None  # (n, 3)
    normal_index: I32Array | None
    colors: U32Array | None  # TBGR per color
    color_index: I32Array | None
    num_per_face: int
    two_sided: bool
    expected_closure: int  # 0 unknown, 1 closed, 2 open (sheet)
    has_aux_data: bool = False  # PolyfaceAuxData present (not decoded)

    def faces(self) -> tuple[I32Array, npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
        """The face loops, vectorized: (zero-based point indices of all loops concatenated, start
        offset of each loop in that array plus a final end offset, visibility of the edge leaving each
        vertex)."""
        idx = self.point_index
        if self.num_per_face > 1:
            n = self.num_per_face
            # a blocked array whose length is not a multiple of the block is cut at the last block
            idx = idx[: idx.size - idx.size % n]
            face_of = np.arange(idx.size, dtype=np.intp) // n
        else:
            face_of = np.cumsum(idx == 0)  # loop k holds the entries after the k-th 0
        keep = idx != 0
        flat = idx[keep]
        sizes = np.bincount(face_of[keep]) if flat.size else np.zeros(0, dtype=np.intp)
        sizes = sizes[sizes > 0]
        starts = np.concatenate(([0], np.cumsum(sizes))).astype(np.intp)
        return (np.abs(flat) - 1).astype(np.int32), starts, flat > 0

    @property
    def face_count(self) -> int:
        return int(self.faces()[1].size - 1)


@dataclass(frozen=True, eq=False)
class Box:
    """``DgnBoxDetail``: a base rectangle (``base_x`` by ``base_y`` along ``vector_x``, ``vector_y`` at
    ``base_origin``) and a top rectangle (``top_x`` by ``top_y`` at ``top_origin``, same directions)."""

    base_origin: F64Array
    top_origin: F64Array
    vector_x: F64Array
    vector_y: F64Array
    base_x: float
    base_y: float
    top_x: float
    top_y: float
    capped: bool

    def corners(self) -> F64Array:
        """The 8 corners: base (0,0) (x,0) (0,y) (x,y), then the same on top."""
        ux, uy = self.vector_x, self.vector_y
        rows = []
        for origin, sx, sy in (
            (self.base_origin, self.base_x, self.base_y),
            (self.top_origin, self.top_x, self.top_y),
        ):
            for fx, fy in ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)):
                rows.append(origin + fx * sx * ux + fy * sy * uy)
        return np.array(rows)


@dataclass(frozen=True, eq=False)
class Sphere:
    """``DgnSphereDetail``: the unit sphere mapped by ``local_to_world`` (3x4; column lengths are the
    radii, the translation the center), between latitudes ``start_latitude`` and
    ``start_latitude + latitude_sweep`` (radians; -π/2 over π is the whole sphere)."""

    local_to_world: F64Array  # (3, 4)
    start_latitude: float
    latitude_sweep: float
    capped: bool

    @property
    def center(self) -> F64Array:
        return self.local_to_world[:, 3]

    @property
    def radii(self) -> F64Array:
        """Lengths of the x, y and z axis columns."""
        result: F64Array = np.linalg.norm(self.local_to_world[:, :3], axis=0)
        return result


@dataclass(frozen=True, eq=False)
class Cone:
    """``DgnConeDetail``: an elliptic (usually circular) cone or cylinder between the discs at
    ``center_a`` (radius ``radius_a``) and ``center_b`` (``radius_b``), both spanned by the unit-ish
    ``vector0`` and ``vector90``."""

    center_a: F64Array
    center_b: F64Array
    vector0: F64Array
    vector90: F64Array
    radius_a: float
    radius_b: float
    capped: bool


@dataclass(frozen=True, eq=False)
class TorusPipe:
    """``DgnTorusPipeDetail``: a pipe of ``minor_radius`` along the circle of ``major_radius`` in the
    plane of ``vector_x``/``vector_y`` around ``center``, swept ``sweep`` radians from ``vector_x``."""

    center: F64Array
    vector_x: F64Array
    vector_y: F64Array
    major_radius: float
    minor_radius: float
    sweep: float
    capped: bool


@dataclass(frozen=True, eq=False)
class LinearSweep:
    """``DgnExtrusion``: ``base`` swept along ``vector``."""

    base: CurveVector
    vector: F64Array
    capped: bool


@dataclass(frozen=True, eq=False)
class RotationalSweep:
    """``DgnRotationalSweep``: ``base`` rotated ``sweep`` radians about the ray
    (``axis_origin``, ``axis_direction``)."""

    base: CurveVector
    axis_origin: F64Array
    axis_direction: F64Array
    sweep: float
    num_v_rules: int
    capped: bool


@dataclass(frozen=True, eq=False)
class RuledSweep:
    """``DgnRuledSweep``: ruled surfaces between consecutive section curves."""

    sections: tuple[CurveVector, ...]
    capped: bool


SolidPrimitive: TypeAlias = Box | Sphere | Cone | TorusPipe | LinearSweep | RotationalSweep | RuledSweep


@dataclass(frozen=True, eq=False)
class BSplineSurface:
    """Poles as stored, ``(num_poles_v, num_poles_u, 3)`` (u varies fastest), weighted when
    ``weights`` is present; knots in the full native form (``num_poles + order`` per direction).
    ``boundaries`` are the trim loops in (u, v) parameter space, when the surface is trimmed."""

    poles: F64Array  # (num_poles_v, num_poles_u, 3)
    weights: F64Array | None  # (num_poles_v, num_poles_u)
    knots_u: F64Array
    knots_v: F64Array
    order_u: int
    order_v: int
    closed_u: bool
    closed_v: bool
    num_rules_u: int
    num_rules_v: int
    hole_origin: int
    boundaries: CurveVector | None

    @property
    def cartesian_poles(self) -> F64Array:
        if self.weights is None:
            return self.poles
        return self.poles / self.weights[..., None]


@dataclass(frozen=True, eq=False)
class GeometryGroup:
    """BGFB ``VectorOfVariantGeometry``: several geometries in one payload."""

    members: tuple[BgfbGeometry, ...]


BgfbGeometry: TypeAlias = (
    CurvePrimitive | CurveVector | Polyface | SolidPrimitive | BSplineSurface | GeometryGroup
)


# ---------------------------------------------------------------------------------------------------
# The stream's own geometry: text, images, Parasolid B-reps
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TextString:
    """TextString.fbs: the text, its style and its placement. ``transform`` maps the text's local
    coordinates (glyph origins, range; x along the baseline) to the element's."""

    text: str
    font_id: int
    height: float
    width_factor: float
    bold: bool
    italic: bool
    underline: bool
    transform: F64Array  # (3, 4)
    range_low: F64Array | None  # (2,) in text coordinates
    range_high: F64Array | None
    glyph_ids: U32Array | None
    glyph_origins: F64Array | None  # (n, 2)


@dataclass(frozen=True, eq=False)
class Image:
    """An image on a quadrilateral: the four ``corners`` (3D) and a Texture element id, or inline data."""

    corners: F64Array  # (4, 3)
    texture_id: int
    draw_border: bool
    use_fill_tint: bool
    width: int
    height: int
    format: int
    byte_data_size: int


@dataclass(frozen=True)
class FaceSymbology:
    """``FB::FaceSymbology``: a per-face appearance of a B-rep (40-byte struct)."""

    use_color: bool
    use_material: bool
    color: int
    material_id: int
    transparency: float
    uv: tuple[float, float]


@dataclass(frozen=True, eq=False)
class BRep:
    """A Parasolid body (opcode 25). Only the Parasolid transmit data's size is kept: drawing it needs
    Parasolid. ``facets``/``edges`` are the old fallback operations (26 BRepPolyface, 27
    BRepCurveVector) that followed it in the stream, when a writer stored them."""

    brep_type: BRepType
    transform: F64Array | None  # (3, 4) entity transform
    data_size: int
    face_symbology: tuple[FaceSymbology, ...]
    face_symbology_index: I32Array | None  # (n, 2): (face index, symbology index)
    facets: tuple[Polyface, ...] = ()
    edges: tuple[CurveVector | CurvePrimitive, ...] = ()


# ---------------------------------------------------------------------------------------------------
# Appearance and structure operations
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    version: int
    flags: int

    @property
    def view_independent(self) -> bool:
        return bool(self.flags & 1)


@dataclass(frozen=True)
class SubGraphicRange:
    """The local range of the geometry that follows (until the next range or part instance)."""

    low: Point
    high: Point


@dataclass(frozen=True)
class PartInstance:
    """A reference to a GeometryPart: its geometry is placed by ``transform`` (origin, yaw/pitch/roll in
    degrees, uniform ``scale`` applied to the matrix columns) in the element's local coordinates."""

    part_id: int
    origin: Point
    yaw: float
    pitch: float
    roll: float
    scale: float

    @property
    def transform(self) -> F64Array:
        """geometry-to-element: ``[scale * YPR | origin]`` (3x4)."""
        out = np.empty((3, 4))
        out[:, :3] = ypr_matrix(self.yaw, self.pitch, self.roll) * self.scale
        out[:, 3] = self.origin
        out.flags.writeable = False
        return out


@dataclass(frozen=True)
class BasicSymbology:
    subcategory_id: int
    color: int
    weight: int
    line_style_id: int
    transparency: float
    display_priority: int
    geometry_class: GeometryClass
    use_color: bool
    use_weight: bool
    use_style: bool


@dataclass(frozen=True)
class LineStyleModifiers:
    modifiers: int  # STYLEMOD_* bit flags saying which values below apply
    scale: float
    dash_scale: float
    gap_scale: float
    start_width: float
    end_width: float
    dist_phase: float
    fract_phase: float
    normal: Point | None
    yaw: float
    pitch: float
    roll: float


@dataclass(frozen=True)
class ThematicSettings:
    step_count: int
    margin: float
    margin_color: int
    mode: int
    color_scheme: int
    range: tuple[float, float] | None


@dataclass(frozen=True)
class AreaFill:
    fill: FillDisplay
    color: int
    use_color: bool
    background_fill: int  # 0 none, 1 solid (view background), 2 outline
    transparency: float
    gradient_mode: GradientMode
    gradient_flags: int
    gradient_angle: float
    gradient_tint: float
    gradient_shift: float
    gradient_colors: tuple[int, ...]
    gradient_values: tuple[float, ...]
    thematic: ThematicSettings | None


@dataclass(frozen=True)
class HatchDefLine:
    angle: float
    through: tuple[float, float] | None
    offset: tuple[float, float] | None
    dashes: tuple[float, ...]


@dataclass(frozen=True)
class AreaPattern:
    origin: Point | None
    rotation: tuple[float, ...] | None  # 3x3 row-major
    space1: float
    space2: float
    angle1: float
    angle2: float
    scale: float
    color: int
    weight: int
    use_color: bool
    use_weight: bool
    invisible_boundary: bool
    snappable: bool
    symbol_id: int  # a GeometryPart drawn as the pattern cell, 0 for hatch lines
    def_lines: tuple[HatchDefLine, ...]


@dataclass(frozen=True)
class Material:
    """``useMaterial`` with ``material_id`` 0 means "explicitly no material" (the subcategory's is
    not used either)."""

    use_material: bool
    material_id: int
    origin: Point | None
    size: Point | None
    yaw: float
    pitch: float
    roll: float
    trans2x3: tuple[float, ...] | None


@dataclass(frozen=True)
class Unknown:
    """An operation this decoder does not know: kept by number and size, never fatal."""

    opcode: int
    size: int


Geometry: TypeAlias = BgfbGeometry | TextString | Image | BRep | PartInstance
Op: TypeAlias = (
    Header
    | SubGraphicRange
    | PartInstance
    | BasicSymbology
    | LineStyleModifiers
    | AreaFill
    | AreaPattern
    | Material
    | Unknown
    | BgfbGeometry
    | TextString
    | Image
    | BRep
)


# ---------------------------------------------------------------------------------------------------
# Symbology in effect and the decoded stream
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Symbology:
    """The appearance overrides in effect for one geometry, as iTwin.js's GeometryStreamIterator keeps
    them (``GeometryParams``): every BasicSymbology resets to the subcategory's appearance, then applies
    its own overrides; fill, pattern, material and line style modifiers accumulate until the next one.

    ``subcategory_id`` 0 means none was named in this stream: the element's category default
    subcategory (or, in a GeometryPart, the instancing element's current one). ``None`` overrides
    mean "the subcategory's". Colors are TBGR integers (0xTTBBGGRR).
    """

    subcategory_id: int = 0
    color: int | None = None
    weight: int | None = None
    line_style_id: int | None = None
    line_style_modifiers: LineStyleModifiers | None = None
    transparency: float = 0.0
    display_priority: int = 0
    geometry_class: GeometryClass = GeometryClass.PRIMARY
    fill_display: FillDisplay = FillDisplay.NEVER
    fill_color: int | None = None
    fill_transparency: float = 0.0
    background_fill: int = 0
    gradient: AreaFill | None = None
    pattern: AreaPattern | None = None
    material_id: int | None = None  # 0 = explicitly no material


@dataclass(frozen=True, eq=False)
class GeometryEntry:
    """One drawable thing of the stream with the appearance in effect: a geometric primitive, or a
    ``PartInstance`` (parts are not flattened: decode the part's own stream once and place it with
    ``geometry.transform``)."""

    geometry: Geometry
    symbology: Symbology
    local_range: SubGraphicRange | None
    opcode: OpCode
    op_index: int  # position of its operation in ``DecodedStream.ops``

    @property
    def kind(self) -> str:
        return type(self.geometry).__name__


@dataclass(frozen=True, eq=False)
class DecodedStream:
    header: Header
    ops: tuple[Op, ...]  # every operation, in stream order (the Header first)
    entries: tuple[GeometryEntry, ...]
    size: int  # bytes of the decompressed opcode stream
    unknown: tuple[Unknown, ...] = field(default=())

    @property
    def view_independent(self) -> bool:
        return self.header.view_independent

    def counts(self) -> Counter[str]:
        """Entries by kind (``Box``, ``Polyface``, ``PartInstance``, ...)."""
        return Counter(entry.kind for entry in self.entries)

    @property
    def part_instances(self) -> tuple[GeometryEntry, ...]:
        return tuple(e for e in self.entries if isinstance(e.geometry, PartInstance))
