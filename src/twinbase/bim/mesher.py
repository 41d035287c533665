"""An iModel file's 3D geometry as triangle meshes and polylines: the glue between the GeometryStream
decoder (``bim.geometry``), the tessellators (``bim.tessellate``) and the file reader (``bim.imodel``).

    with IModelFile.open(path) as imodel:
        result = mesh_imodel(imodel, StrokeOptions(0.01, math.pi / 12))
    for element in result.elements.values():
        for piece in element.meshes: piece.appearance.rgba, piece.mesh.positions  # world coordinates
        for piece in element.lines: piece.polyline                               # wires, never triangles
        for inst in element.instances: result.parts[inst.part_id], inst.transform  # 4x4 world-from-part

What it does, as iTwin.js ``exportGraphics`` does (measured):

- Only 3D geometric elements are meshed; 2D ones (drawings, sheets) are counted in ``skipped_2d``.
- One piece per appearance: the subcategory's appearance (the stream's subcategory, else the category's
  default one), overridden by the stream's colour and transparency; a filled planar region (fill not
  ``NEVER``) takes the fill colour; a render material replaces the colour with ``floor(255 c)`` per
  channel and the transparency with its transmit. The transparency byte is ``floor(255 t)``.
- Element placement (origin, yaw/pitch/roll) is applied: meshes are in world coordinates.
- Wires (line strings, arcs, curves, paths, point strings) are polylines. A point string is a polyline
  through its points, as exportGraphics draws it.
- Geometry parts are kept as instances: each part is tessellated once, in part coordinates
  (``parts``), and each element lists its instances with their world transform (scale included) and the
  appearance of each of the part's pieces.
- Parasolid B-reps use the facets stored with them when present, else their range box (the entry's
  sub-graphic range, else the element's box); text is its range box outline. Both counted in
  ``fallbacks`` by kind.
- Optional, off by default: ``native_breps=True`` (or a ``native_facets.NativeFacetProvider``; for the
  server, the setting ``TWINBASE_NATIVE_BREP_FACETS``) has the iTwin.js native library mesh the B-reps
  stored without facets, where it is installed (node and ``compat/``): one node process per call, for
  only the elements and parts whose streams hold such a B-rep. Such a stream takes the native meshes
  as a whole (exportGraphics answers per element and appearance, not per entry; lines and part
  instances stay ours, colours mapped as ``native_facets.NativeBReps`` says), counted as
  ``brep-native-facets``.
  Off by default because that library is not open source: it runs under Bentley's right-to-run
  authorization, which allows it on snapshot iModels and, on any other, only when you and the program
  are authorized by the data's owner (itself authorized by Bentley); no modifying or reverse
  engineering. Turned on without node or the install, it raises ``NativeFacetsUnavailable`` at once.
- A GeometryStream that cannot be decoded or tessellated is reported for that element in ``errors``;
  the other elements still mesh.

Speed: elements are decoded one by one; boxes, spheres, cones, torus pipes and capped extrusions of
straight-edged loops are tessellated ``chunk`` elements at a time (the tessellators take arrays of
instances) and cut back per element; other kinds go one at a time. About 1.1-1.6 ms of one core per
element on the bench mix (polyfaces, extrusions with round holes and stream decoding dominate);
``bench/tessellate.py`` spreads element batches over one process per core.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from twinbase.bim import tessellate as tess
from twinbase.bim.geometry import GeometryStreamError, Symbology, decode_geometry_stream
from twinbase.bim.geometry import types as g
from twinbase.bim.imodel import (
    KIND_2D,
    KIND_3D,
    Element,
    IModelFile,
    Placement2d,
    Placement3d,
    RenderMaterial,
    SubCategoryAppearance,
)
from twinbase.bim.imodel import ypr_matrix as imodel_ypr

if TYPE_CHECKING:  # native_facets imports this module: imported where used
    from twinbase.bim.native_facets import NativeBReps, NativeFacetProvider

__all__ = [
    "Appearance",
    "AppearanceResolver",
    "ElementMeshes",
    "LinePiece",
    "MeshPiece",
    "MeshResult",
    "PartCache",
    "PartMeshes",
    "PartRef",
    "mesh_element",
    "mesh_imodel",
]

F64 = NDArray[np.float64]
_Placement = Placement3d | Placement2d


@dataclass(frozen=True)
class Appearance:
    """What one piece looks like: ``color_tbgr`` a ColorDef value with the transparency byte
    (0xTTBBGGRR, T = floor(255 t)), the material applied (or None), the subcategory and geometry class."""

    color_tbgr: int
    material_id: int | None = None
    subcategory_id: int = 0
    geometry_class: int = 0

    @property
    def rgba(self) -> tuple[int, int, int, int]:
        c = self.color_tbgr
        return c & 0xFF, (c >> 8) & 0xFF, (c >> 16) & 0xFF, 255 - ((c >> 24) & 0xFF)

    @property
    def transparency(self) -> float:
        return ((self.color_tbgr >> 24) & 0xFF) / 255.0


@dataclass(frozen=True)
class MeshPiece:
    appearance: Appearance
    mesh: tess.Mesh


@dataclass(frozen=True)
class LinePiece:
    appearance: Appearance
    polyline: tess.Polyline


@dataclass(frozen=True)
class PartRef:
    """One part instance of an element: ``transform`` (4, 4) world from part coordinates (placement,
    the instance's origin, rotation and scale); ``appearances`` one per piece of the part (meshes, then
    lines, in the order of ``PartMeshes``)."""

    part_id: int
    transform: F64
    mesh_appearances: tuple[Appearance, ...]
    line_appearances: tuple[Appearance, ...]

    @property
    def appearance(self) -> Appearance | None:
        found = self.mesh_appearances or self.line_appearances
        return found[0] if found else None


@dataclass(frozen=True)
class PartMeshes:
    """A geometry part tessellated once in its own coordinates: its pieces with the stream symbology
    that applies to each (resolved per instance, with the instancing element's category)."""

    part_id: int
    meshes: tuple[tuple[Symbology, tess.Mesh], ...]
    lines: tuple[tuple[Symbology, tess.Polyline], ...]


@dataclass
class ElementMeshes:
    element_id: int
    category_id: int
    meshes: list[MeshPiece] = field(default_factory=list)
    lines: list[LinePiece] = field(default_factory=list)
    instances: list[PartRef] = field(default_factory=list)

    @property
    def id_hex(self) -> str:
        return f"0x{self.element_id:x}"

    def triangles(self) -> int:
        return sum(p.mesh.n_triangles for p in self.meshes)


@dataclass
class MeshResult:
    elements: dict[int, ElementMeshes] = field(default_factory=dict)
    parts: dict[int, PartMeshes] = field(default_factory=dict)
    skipped_2d: int = 0
    fallbacks: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # geometry kinds not drawn (images...)
    kinds: Counter[str] = field(default_factory=Counter)  # geometry entries met, by kind (parts once)
    errors: list[tuple[int, str]] = field(default_factory=list)

    def report(self) -> str:
        tris = sum(e.triangles() for e in self.elements.values())
        inst = sum(len(e.instances) for e in self.elements.values())
        return (
            f"{len(self.elements)} 3D elements meshed ({tris} triangles, {inst} part instances of "
            f"{len(self.parts)} parts), {self.skipped_2d} 2D elements skipped, "
            f"fallbacks {dict(self.fallbacks)}, "
            f"not drawn {dict(self.skipped)}, {len(self.errors)} errors; geometry {dict(self.kinds)}"
        )


# -- appearance -------------------------------------------------------------------------------------


class AppearanceResolver:
    """Symbology in effect + the element's category -> ``Appearance``, as iTwin.js resolves it."""

    def __init__(
        self,
        subcategories: dict[int, SubCategoryAppearance],
        default_subcategory: dict[int, int],
        materials: dict[int, RenderMaterial],
    ) -> None:
        self.subcategories = subcategories
        self.default_subcategory = default_subcategory
        self.materials = materials
        self._cache: dict[tuple[Any, ...], Appearance] = {}

    @classmethod
    def of(cls, imodel: IModelFile) -> AppearanceResolver:
        subs: dict[int, SubCategoryAppearance] = {}
        defaults: dict[int, int] = {}
        for cat in imodel.categories():
            if cat.default_subcategory_id is not None:
                defaults[cat.id] = cat.default_subcategory_id
            for sub in cat.subcategories:
                subs[sub.id] = sub.appearance
        for sub in imodel.subcategories():
            subs.setdefault(sub.id, sub.appearance)
        return cls(subs, defaults, {m.id: m for m in imodel.render_materials()})

    def resolve(self, symbology: Symbology, category_id: int, filled: bool = False) -> Appearance:
        key = (symbology, category_id, filled)
        found = self._cache.get(key)
        if found is not None:
            return found
        sub_id = symbology.subcategory_id or self.default_subcategory.get(category_id, category_id + 1)
        app = self.subcategories.get(sub_id, SubCategoryAppearance())
        rgb = (symbology.color if symbology.color is not None else app.color) & 0xFFFFFF
        transparency = symbology.transparency if symbology.transparency else app.transparency
        if filled and symbology.fill_display != g.FillDisplay.NEVER:
            # a filled region takes its fill colour (the subcategory's fill when the stream sets none)
            rgb = (symbology.fill_color if symbology.fill_color is not None else app.fill_color) & 0xFFFFFF
            if symbology.fill_transparency:
                transparency = symbology.fill_transparency
        material_id = symbology.material_id if symbology.material_id is not None else app.material_id
        material = self.materials.get(material_id) if material_id else None
        if material is not None:
            if material.color is not None:
                r, gg, b = (max(0, min(255, math.floor(255 * c))) for c in material.color)
                rgb = r | (gg << 8) | (b << 16)
            if material.transparency is not None:
                transparency = material.transparency
        byte = max(0, min(255, math.floor(255 * transparency)))
        found = Appearance(
            rgb | (byte << 24),
            material_id if material is not None else None,
            sub_id,
            int(symbology.geometry_class),
        )
        self._cache[key] = found
        return found


# -- geometry to tessellator inputs ------------------------------------------------------------------


class _Fallbacks:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.native_breps = False  # facet-less B-reps are also marked for the native library


def _primitive(prim: Any, fb: _Fallbacks) -> tess.CurvePrimitive | None:
    if isinstance(prim, g.LineSegment):
        return tess.LineSegment(prim.start, prim.end)
    if isinstance(prim, g.LineString | g.PointString):
        return tess.LineString(prim.points) if len(prim.points) >= 2 else None
    if isinstance(prim, g.Arc):
        return tess.Arc(prim.center, prim.vector0, prim.vector90, prim.start, prim.sweep)
    if isinstance(prim, g.BSplineCurve):
        return tess.BSplineCurve(prim.poles, prim.order, prim.knots, prim.weights, prim.closed)
    if isinstance(prim, g.InterpolationCurve):
        fb.counts["interpolation-curve-as-polyline"] += 1
        return tess.LineString(prim.fit_points) if len(prim.fit_points) >= 2 else None
    if isinstance(prim, g.AkimaCurve):
        fb.counts["akima-curve-as-polyline"] += 1
        return tess.LineString(prim.points) if len(prim.points) >= 2 else None
    fb.skipped[getattr(prim, "kind", type(prim).__name__)] += 1
    return None


def _loop(cv: Any, fb: _Fallbacks) -> list[tess.CurvePrimitive]:
    """A loop or path (or a lone primitive) as a list of tessellator primitives."""
    children = cv.children if isinstance(cv, g.CurveVector) else (cv,)
    out: list[tess.CurvePrimitive] = []
    for child in children:
        if isinstance(child, g.CurveVector):
            out.extend(_loop(child, fb))
        else:
            p = _primitive(child, fb)
            if p is not None:
                out.append(p)
    return out


def _regions(cv: g.CurveVector, fb: _Fallbacks) -> list[list[list[tess.CurvePrimitive]]]:
    """A region as parity regions, each [outer loop, holes...]."""
    t = cv.type
    if t in (g.CurveVectorType.OUTER, g.CurveVectorType.INNER):
        return [[_loop(cv, fb)]]
    if t == g.CurveVectorType.PARITY_REGION:
        return [[_loop(c, fb) for c in cv.children]]
    out: list[list[list[tess.CurvePrimitive]]] = []
    for child in cv.children:  # a union region: parity regions or loops
        if isinstance(child, g.CurveVector):
            out.extend(_regions(child, fb))
    return out


def _wires(cv: Any, fb: _Fallbacks) -> list[list[tess.CurvePrimitive]]:
    """Open paths and bags of curves: one line per path (a bag: one per member)."""
    if isinstance(cv, g.CurveVector):
        if cv.type == g.CurveVectorType.OPEN:
            return [_loop(cv, fb)]
        if cv.is_region:
            return [loop for region in _regions(cv, fb) for loop in region]
        return [line for child in cv.children for line in _wires(child, fb)]
    p = _primitive(cv, fb)
    return [[p]] if p is not None else []


def _profile(cv: g.CurveVector, fb: _Fallbacks) -> tuple[list[list[list[tess.CurvePrimitive]]], bool]:
    """A sweep's base: (regions, closed)."""
    if cv.is_region:
        return _regions(cv, fb), True
    return [[line for line in _wires(cv, fb) if line]], False


def _box_mesh(low: Sequence[float], high: Sequence[float]) -> tess.Mesh:
    lo = np.asarray(low, np.float64)
    hi = np.asarray(high, np.float64)
    size = np.maximum(hi - lo, 0.0)
    return tess.boxes(
        [lo],
        [lo + np.array([0.0, 0.0, size[2]])],
        [[1.0, 0.0, 0.0]],
        [[0.0, 1.0, 0.0]],
        size[0],
        size[1],
        size[0],
        size[1],
        True,
    ).without_degenerate()


@dataclass
class _Tessellated:
    """One stream's pieces in its own coordinates: (symbology, filled, mesh | polyline), instances."""

    meshes: list[tuple[Symbology, bool, tess.Mesh]] = field(default_factory=list)
    # Pieces a batch tessellated already in world coordinates (the element's placement applied to the
    # solid's parameters, not to its vertices).
    world_meshes: list[tuple[Symbology, tess.Mesh]] = field(default_factory=list)
    lines: list[tuple[Symbology, tess.Polyline]] = field(default_factory=list)
    parts: list[tuple[Symbology, g.PartInstance]] = field(default_factory=list)
    error: str | None = None  # a batched solid of this stream could not be tessellated
    # native B-rep facets on: the fallback each facet-less B-rep of the stream takes if the native
    # library gives nothing ("brep-range-box" or "brep-without-range")
    native_breps: list[str] = field(default_factory=list)


_BATCHED = (g.Box, g.Sphere, g.Cone, g.TorusPipe)


def _straight_polygon(sweep: g.LinearSweep) -> F64 | None:
    """The base of a capped extrusion of one straight-edged loop (no holes, no curves) as an (n, 3)
    polygon, or None: those go to ``extrude_polygons`` many at a time."""
    base = sweep.base
    if not sweep.capped or base.type != g.CurveVectorType.OUTER:
        return None
    rows: list[F64] = []
    for child in base.children:
        if isinstance(child, g.LineString):
            rows.append(child.points)
        elif isinstance(child, g.LineSegment):
            rows.append(np.stack([child.start, child.end]))
        else:
            return None
    if not rows:
        return None
    points = np.concatenate(rows) if len(rows) > 1 else rows[0]
    keep = np.ones(len(points), bool)
    keep[1:] = (points[1:] != points[:-1]).any(axis=1)  # joins repeat the previous end
    points = points[keep]
    return points if len(points) >= 3 else None


class _Batch:
    """Solids of many elements tessellated together (the tessellators take arrays of instances); each
    result is handed back to the stream it came from."""

    def __init__(self) -> None:
        # (geometry, symbology, the stream's pieces, which element of the chunk placed it)
        self.items: dict[str, list[tuple[Any, Symbology, _Tessellated, int]]] = {}
        self.owner = 0  # the chunk row of the element whose stream is being read

    def add(self, kind: str, geom: Any, sym: Symbology, out: _Tessellated) -> None:
        self.items.setdefault(kind, []).append((geom, sym, out, self.owner))

    def run(self, options: tess.StrokeOptions, worlds: F64) -> None:
        """Each kind's solids at once, placed in the world by their parameters (a rigid placement
        commutes with tessellation: the same facets, carried), so their vertices need no transform.
        ``worlds`` (k, 4, 4): the placements of the chunk's elements, by chunk row."""
        for kind, items in self.items.items():
            geoms = [i[0] for i in items]
            owners = np.fromiter((i[3] for i in items), np.int64, len(items))
            mesh = _runner(kind)(geoms, options, worlds[owners])
            for (_, sym, out, _), piece in zip(items, _split(mesh, len(items)), strict=True):
                out.world_meshes.append((sym, piece))
        self.items.clear()


def _points(worlds: F64, points: Any) -> F64:
    """Points (k, 3) each carried by its world (k, 4, 4)."""
    p = np.asarray(points, np.float64).reshape(-1, 3)
    out: F64 = np.einsum("kij,kj->ki", worlds[:, :3, :3], p) + worlds[:, :3, 3]
    return out


def _vectors(worlds: F64, vectors: Any) -> F64:
    v = np.asarray(vectors, np.float64).reshape(-1, 3)
    out: F64 = np.einsum("kij,kj->ki", worlds[:, :3, :3], v)
    return out


def _run_boxes(gs: list[g.Box], o: tess.StrokeOptions, w: F64) -> tess.Mesh:
    return tess.boxes(
        _points(w, [b.base_origin for b in gs]),
        _points(w, [b.top_origin for b in gs]),
        _vectors(w, [b.vector_x for b in gs]),
        _vectors(w, [b.vector_y for b in gs]),
        [b.base_x for b in gs],
        [b.base_y for b in gs],
        [b.top_x for b in gs],
        [b.top_y for b in gs],
        [b.capped for b in gs],
        options=o,
    )


def _run_spheres(gs: list[g.Sphere], o: tess.StrokeOptions, w: F64) -> tess.Mesh:
    ltw = np.einsum(
        "kij,kjl->kil",
        w[:, :3, :],
        np.concatenate(
            [np.stack([s.local_to_world for s in gs]), np.tile([0.0, 0.0, 0.0, 1.0], (len(gs), 1, 1))], axis=1
        ),
    )
    return tess.spheres(
        ltw[:, :, 3],
        ltw[:, :, :3],
        [s.start_latitude for s in gs],
        [s.latitude_sweep for s in gs],
        [s.capped for s in gs],
        options=o,
    )


def _run_cones(gs: list[g.Cone], o: tess.StrokeOptions, w: F64) -> tess.Mesh:
    return tess.cones(
        _points(w, [c.center_a for c in gs]),
        _points(w, [c.center_b for c in gs]),
        _vectors(w, [c.vector0 for c in gs]),
        _vectors(w, [c.vector90 for c in gs]),
        [c.radius_a for c in gs],
        [c.radius_b for c in gs],
        [c.capped for c in gs],
        options=o,
    )


def _run_tori(gs: list[g.TorusPipe], o: tess.StrokeOptions, w: F64) -> tess.Mesh:
    return tess.torus_pipes(
        _points(w, [t.center for t in gs]),
        _vectors(w, [t.vector_x for t in gs]),
        _vectors(w, [t.vector_y for t in gs]),
        [t.major_radius for t in gs],
        [t.minor_radius for t in gs],
        [t.sweep for t in gs],
        [t.capped for t in gs],
        options=o,
    )


def _run_extrusions(gs: list[tuple[F64, F64]], o: tess.StrokeOptions, w: F64) -> tess.Mesh:
    counts = np.fromiter((len(p) for p, _ in gs), np.int64, len(gs))
    owner = np.repeat(np.arange(len(gs)), counts)
    points = _points(w[owner], np.concatenate([p for p, _ in gs]))
    return tess.extrude_polygons((points, counts), _vectors(w, [v for _, v in gs]), True, options=o)


def _run_polyfaces(gs: list[g.Polyface], o: tess.StrokeOptions, w: F64) -> tess.Mesh:
    first = gs[0]  # the batch's kind says every one has (or lacks) normals and params alike
    rotations = w[:, :3, :3]
    return tess.polyface_meshes(
        [pf.points @ r.T + t for pf, r, t in zip(gs, rotations, w[:, :3, 3], strict=True)],
        [pf.point_index for pf in gs],
        [pf.num_per_face for pf in gs],
        normals=None
        if first.normals is None
        else [pf.normals @ r.T for pf, r in zip(gs, rotations, strict=True)],
        normal_index=None if first.normals is None else [pf.normal_index for pf in gs],
        params=None if first.params is None else [pf.params for pf in gs],  # type: ignore[misc]
        param_index=None if first.params is None else [pf.param_index for pf in gs],
        two_sided=first.two_sided,
    )


def _placed_regions(gs: list[tuple[list[tess.Chain], F64]], w: F64) -> list[list[tess.Chain]]:
    return [
        [tess.Chain(c.points @ r.T + r4[:3, 3], c.tangents @ r.T, c.link) for c in chains]
        for (chains, _), r4, r in zip(gs, w, w[:, :3, :3], strict=True)
    ]


def _run_region_extrusions(
    gs: list[tuple[list[tess.Chain], F64]], o: tess.StrokeOptions, w: F64
) -> tess.Mesh:
    return tess.extrude_regions(_placed_regions(gs, w), _vectors(w, [v for _, v in gs]), capped=True)


def _run_open_region_extrusions(
    gs: list[tuple[list[tess.Chain], F64]], o: tess.StrokeOptions, w: F64
) -> tess.Mesh:
    return tess.extrude_regions(_placed_regions(gs, w), _vectors(w, [v for _, v in gs]), capped=False)


def _runner(kind: str) -> Any:
    """The batch runner of a batch kind ("Polyface|110" runs with the polyface runner)."""
    if kind.startswith("region-extrusion|"):
        return _run_region_extrusions if kind.endswith("1") else _run_open_region_extrusions
    return _BATCH_RUNNERS[kind.split("|", 1)[0]]


_BATCH_RUNNERS: dict[str, Any] = {
    "Polyface": _run_polyfaces,
    "Box": _run_boxes,
    "Sphere": _run_spheres,
    "Cone": _run_cones,
    "TorusPipe": _run_tori,
    "extrusion": _run_extrusions,
}


def _cut(a: Any, ends: list[int]) -> list[Any]:
    """``a`` cut at ``ends`` (as ``np.split``, without its per-call overhead)."""
    starts = [0, *ends]
    stops = [*ends, len(a)]
    return [a[b:e] for b, e in zip(starts, stops, strict=True)]


def _split(mesh: tess.Mesh, k: int) -> list[tess.Mesh]:
    """A batched mesh cut back into its ``k`` instances (by the vertices' ``entry``)."""
    entry = mesh.entry
    if entry is None:
        raise tess.TessellationError("a batched mesh without entry indices")
    entry64 = entry.astype(np.int64)
    t_entry = entry64[mesh.indices[:, 0]]
    v_counts = np.bincount(entry64, minlength=k)
    v_starts = np.concatenate([[0], np.cumsum(v_counts)[:-1]])
    t_counts = np.bincount(t_entry, minlength=k)
    v_ends = np.cumsum(v_counts)[:-1].tolist()
    t_ends = np.cumsum(t_counts)[:-1].tolist()
    if bool(np.all(entry64[1:] >= entry64[:-1])) and bool(np.all(t_entry[1:] >= t_entry[:-1])):
        # The tessellators write instance after instance: vertices and triangles are in entry order
        # already, so each instance is a slice (no sort, no gather).
        positions = _cut(mesh.positions, v_ends)
        normals = _cut(mesh.normals, v_ends)
        local = mesh.indices.astype(np.int64) - v_starts[t_entry][:, None]
        params_all, colors_all = mesh.params, mesh.colors
    else:
        v_order = np.argsort(entry64, kind="stable")
        new_index = np.empty(len(v_order), np.int64)
        new_index[v_order] = np.arange(len(v_order))
        t_order = np.argsort(t_entry, kind="stable")
        local = new_index[mesh.indices[t_order]] - v_starts[t_entry[t_order]][:, None]
        positions = _cut(mesh.positions[v_order], v_ends)
        normals = _cut(mesh.normals[v_order], v_ends)
        params_all = None if mesh.params is None else mesh.params[v_order]
        colors_all = None if mesh.colors is None else mesh.colors[v_order]
    indices = _cut(local, t_ends)
    none: list[None] = [None] * k
    params = none if params_all is None else _cut(params_all, v_ends)
    colors = none if colors_all is None else _cut(colors_all, v_ends)
    return [
        tess.Mesh(p, n, i, params=t, colors=c, two_sided=mesh.two_sided)
        for p, n, i, t, c in zip(positions, normals, indices, params, colors, strict=True)
    ]


def _geometry(
    geom: Any,
    sym: Symbology,
    out: _Tessellated,
    options: tess.StrokeOptions,
    fb: _Fallbacks,
    range_box: tuple[Sequence[float], Sequence[float]] | None,
    batch: _Batch | None = None,
) -> None:
    o = options
    if isinstance(geom, g.PartInstance):
        out.parts.append((sym, geom))
    elif batch is not None and isinstance(geom, _BATCHED):
        batch.add(type(geom).__name__, geom, sym, out)
    elif (
        batch is not None
        and isinstance(geom, g.LinearSweep)
        and (poly := _straight_polygon(geom)) is not None
    ):
        batch.add("extrusion", (poly, geom.vector), sym, out)
    elif batch is not None and isinstance(geom, g.Polyface):
        # Joined only with polyfaces that store the same arrays and sidedness (one mesh layout each).
        shape = f"{geom.normals is not None:d}{geom.params is not None:d}{geom.two_sided:d}"
        batch.add(f"Polyface|{shape}", geom, sym, out)
    elif isinstance(geom, g.Box):
        m = tess.boxes(
            [geom.base_origin],
            [geom.top_origin],
            [geom.vector_x],
            [geom.vector_y],
            geom.base_x,
            geom.base_y,
            geom.top_x,
            geom.top_y,
            geom.capped,
            options=o,
        )
        out.meshes.append((sym, False, m))
    elif isinstance(geom, g.Sphere):
        ltw = geom.local_to_world
        m = tess.spheres(
            [ltw[:, 3]], [ltw[:, :3]], geom.start_latitude, geom.latitude_sweep, geom.capped, options=o
        )
        out.meshes.append((sym, False, m))
    elif isinstance(geom, g.Cone):
        m = tess.cones(
            [geom.center_a],
            [geom.center_b],
            [geom.vector0],
            [geom.vector90],
            geom.radius_a,
            geom.radius_b,
            geom.capped,
            options=o,
        )
        out.meshes.append((sym, False, m))
    elif isinstance(geom, g.TorusPipe):
        m = tess.torus_pipes(
            [geom.center],
            [geom.vector_x],
            [geom.vector_y],
            geom.major_radius,
            geom.minor_radius,
            geom.sweep,
            geom.capped,
            options=o,
        )
        out.meshes.append((sym, False, m))
    elif isinstance(geom, g.LinearSweep):
        regions, closed = _profile(geom.base, fb)
        if batch is not None and closed and o.edge_length == 0:
            # Regions with holes or curved edges: stroked here (per element), walls and caps later
            # with the chunk's others.
            for region in regions:
                loops = [lp for lp in region if lp]
                if loops:
                    item = (tess.region_chains(loops, o), geom.vector)
                    batch.add(f"region-extrusion|{geom.capped:d}", item, sym, out)
            return
        for region in regions:
            loops = [lp for lp in region if lp]
            if loops:
                m = tess.linear_sweep(loops, geom.vector, closed=closed, capped=geom.capped, options=o)
                out.meshes.append((sym, False, m))
    elif isinstance(geom, g.RotationalSweep):
        regions, closed = _profile(geom.base, fb)
        for region in regions:
            loops = [lp for lp in region if lp]
            if loops:
                m = tess.rotational_sweep(
                    loops,
                    geom.axis_origin,
                    geom.axis_direction,
                    geom.sweep,
                    closed=closed,
                    capped=geom.capped,
                    options=o,
                )
                out.meshes.append((sym, False, m))
    elif isinstance(geom, g.RuledSweep):
        profiles = [_profile(s, fb) for s in geom.sections]
        closed = all(c for _, c in profiles)
        for ri in range(min(len(p) for p, _ in profiles)):
            sections = [p[ri] for p, _ in profiles]
            m = tess.ruled_sweep(sections, closed=closed, capped=geom.capped, options=o)
            out.meshes.append((sym, False, m))
    elif isinstance(geom, g.Polyface):
        out.meshes.append((sym, False, _polyface(geom)))
    elif isinstance(geom, g.BSplineSurface):
        m = tess.bspline_surface_mesh(
            geom.poles,
            geom.order_u,
            geom.order_v,
            geom.knots_u,
            geom.knots_v,
            geom.weights,
            closed_u=geom.closed_u,
            closed_v=geom.closed_v,
            options=o,
        )
        out.meshes.append((sym, False, m))
    elif isinstance(geom, g.CurveVector):
        if geom.is_region:
            regions = [[lp for lp in r if lp] for r in _regions(geom, fb)]
            regions = [r for r in regions if r]
            if regions:
                m = tess.union_region(regions, o) if len(regions) > 1 else tess.planar_region(regions[0], o)
                out.meshes.append((sym, True, m))
        else:
            lines = [line for line in _wires(geom, fb) if line]
            if lines:
                out.lines.append((sym, tess.curve_polyline(lines, o)))
    elif isinstance(geom, g.PointString):
        if len(geom.points):
            out.lines.append((sym, tess.Polyline.from_lines([geom.points])))
    elif isinstance(
        geom, g.LineSegment | g.LineString | g.Arc | g.BSplineCurve | g.InterpolationCurve | g.AkimaCurve
    ):
        lines = [line for line in _wires(geom, fb) if line]
        if lines:
            out.lines.append((sym, tess.curve_polyline(lines, o)))
    elif isinstance(geom, g.GeometryGroup):
        for member in geom.members:
            _geometry(member, sym, out, options, fb, range_box, batch)
    elif isinstance(geom, g.BRep):
        if geom.facets:
            # The stored facets are drawn as they are (the fallback for readers without Parasolid), in
            # the stream's coordinates: the body's entity transform is not applied again.
            for facets in geom.facets:
                out.meshes.append((sym, False, _polyface(facets)))
        else:
            # No Parasolid here: the range box stands in. With native B-rep facets on, the stream is
            # marked instead of counted: after the pass the native library meshes it (``NativeBReps``)
            # and the box is replaced, or kept and counted should the library give nothing.
            fallback = "brep-range-box" if range_box is not None else "brep-without-range"
            if fb.native_breps:
                out.native_breps.append(fallback)
            elif range_box is not None:
                fb.counts[fallback] += 1
            else:
                fb.skipped[fallback] += 1
            if range_box is not None:
                out.meshes.append((sym, False, _box_mesh(*range_box)))
    elif isinstance(geom, g.TextString):
        fb.counts["text-range-box-outline"] += 1
        if geom.range_low is not None and geom.range_high is not None:
            low, high = geom.range_low, geom.range_high
        else:
            low, high = tess.text_range(len(geom.text), geom.height, geom.width_factor, geom.glyph_origins)
        out.lines.append((sym, tess.text_box_outline(low, high, geom.transform)))
    else:
        fb.skipped[type(geom).__name__] += 1


def _polyface(pf: g.Polyface) -> tess.Mesh:
    return tess.polyface_mesh(
        pf.points,
        pf.point_index,
        num_per_face=pf.num_per_face,
        normals=pf.normals,
        normal_index=pf.normal_index,
        params=pf.params,
        param_index=pf.param_index,
        two_sided=pf.two_sided,
    )


def tessellate_stream(
    blob: bytes,
    options: tess.StrokeOptions,
    fb: _Fallbacks,
    default_range: tuple[Sequence[float], Sequence[float]] | None = None,
    batch: _Batch | None = None,
) -> _Tessellated:
    """One GeometryStream's pieces in its own coordinates (raises on a corrupt stream). With ``batch``,
    solids are left to it: the stream's pieces are complete once ``batch.run`` has run."""
    decoded = decode_geometry_stream(blob)
    out = _Tessellated()
    for entry in decoded.entries:
        geom = entry.geometry
        fb.kinds["BRep+facets" if isinstance(geom, g.BRep) and geom.facets else entry.kind] += 1
        r = entry.local_range
        box = (r.low, r.high) if r is not None else default_range
        _geometry(entry.geometry, entry.symbology, out, options, fb, box, batch)
    return out


# -- files --------------------------------------------------------------------------------------------


def _merge(part_sym: Symbology, instance_sym: Symbology) -> Symbology:
    """A part's piece symbology seen through the instance: a part stream without its own symbology takes
    the instance's; a subcategory the part does not name is the instance's."""
    if part_sym == Symbology():
        return instance_sym
    if part_sym.subcategory_id == 0:
        return Symbology(**{**part_sym.__dict__, "subcategory_id": instance_sym.subcategory_id})
    return part_sym


class PartCache:
    """What many passes over one file share (an export's tiles, each meshing its own elements): the
    appearance tables read once, every part's stream read once, and each part tessellated once per
    tolerance (every pass still counts the parts it uses)."""

    def __init__(self) -> None:
        self.appearance: AppearanceResolver | None = None  # the file's subcategories and materials, read once
        self.streams: dict[int, tuple[bytes | None, Any]] | None = None
        # (part, options) -> the part and what tessellating it counted (fallbacks, not drawn, kinds)
        self.meshes: dict[
            tuple[int, tess.StrokeOptions], tuple[PartMeshes, tuple[Counter[str], Counter[str], Counter[str]]]
        ] = {}


class _Mesher:
    def __init__(
        self,
        imodel: IModelFile,
        options: tess.StrokeOptions,
        native: NativeFacetProvider | None = None,
        shared: PartCache | None = None,
    ) -> None:
        self.imodel = imodel
        self.options = options
        if shared is not None and shared.appearance is None:
            shared.appearance = AppearanceResolver.of(imodel)
        self.appearance = (
            shared.appearance if shared is not None and shared.appearance else AppearanceResolver.of(imodel)
        )
        self.result = MeshResult()
        self.fb = _Fallbacks()
        self.native: NativeBReps | None = None
        if native is not None:
            from twinbase.bim.native_facets import NativeBReps

            self.native = NativeBReps(native)
            self.fb.native_breps = True
        self._part_streams: dict[int, tuple[bytes | None, Any]] | None = None
        self.shared = shared
        self._instance_apps: dict[
            tuple[int, Symbology, int], tuple[tuple[Appearance, ...], tuple[Appearance, ...]]
        ] = {}

    def part(self, part_id: int) -> PartMeshes:
        found = self.result.parts.get(part_id)
        if found is not None:
            return found
        shared = self.shared if self.native is None else None
        if shared is not None:
            cached = shared.meshes.get((part_id, self.options))
            if cached is not None:
                part_meshes, counted = cached
                # As if tessellated here: every pass counts the parts it uses (deterministic counts
                # whichever pass or process met a part first).
                self.fb.counts.update(counted[0])
                self.fb.skipped.update(counted[1])
                self.fb.kinds.update(counted[2])
                self.result.parts[part_id] = part_meshes
                return part_meshes
            before = (Counter(self.fb.counts), Counter(self.fb.skipped), Counter(self.fb.kinds))
            if shared.streams is None:
                shared.streams = {p.id: (p.geometry_stream, p.bbox) for p in self.imodel.geometry_parts()}
            self._part_streams = shared.streams
        if self._part_streams is None:
            self._part_streams = {p.id: (p.geometry_stream, p.bbox) for p in self.imodel.geometry_parts()}
        blob, bbox = self._part_streams.get(part_id, (None, None))
        if blob is None:
            pieces = _Tessellated()
        else:
            pieces = tessellate_stream(blob, self.options, self.fb, bbox)
            if pieces.parts:
                self.fb.skipped["nested-part-instance"] += len(pieces.parts)
            if pieces.native_breps and self.native is not None:
                self.native.part(part_id, pieces.native_breps)
        part = PartMeshes(
            part_id,
            tuple((s, m) for s, _, m in pieces.meshes),
            tuple(pieces.lines),
        )
        self.result.parts[part_id] = part
        if shared is not None:
            counted = (
                self.fb.counts - before[0],
                self.fb.skipped - before[1],
                self.fb.kinds - before[2],
            )
            shared.meshes[(part_id, self.options)] = (part, counted)
        return part

    def elements(self, elements: Iterable[Element], chunk: int) -> None:
        """Mesh ``elements`` ``chunk`` at a time: decode each and tessellate what is not batched, then
        the chunk's solids together, then place each element's pieces in the world."""
        # (element, its placement, its pieces); the placements become matrices once per chunk
        pending: list[tuple[Element, _Placement, _Tessellated]] = []
        batch = _Batch()
        for element in elements:
            if element.kind == KIND_2D:
                self.result.skipped_2d += 1
                continue
            if element.kind != KIND_3D or not element.geometry_stream:
                continue
            try:
                placement = element.placement
                if placement is None:
                    raise GeometryStreamError("a geometric element with a stream but no placement")
                batch.owner = len(pending)
                pieces = tessellate_stream(
                    element.geometry_stream, self.options, self.fb, placement.bbox, batch
                )
            except _ELEMENT_ERRORS as exc:
                self._drop(batch, len(pending))
                self.result.errors.append((element.id, f"{type(exc).__name__}: {exc}"))
                continue
            pending.append((element, placement, pieces))
            if len(pending) >= chunk:
                self._finish(pending, batch)
                pending = []
        self._finish(pending, batch)

    @staticmethod
    def _drop(batch: _Batch, owner: int) -> None:
        """Forget what a stream that failed part-way had handed the batch (its element is an error)."""
        for kind in list(batch.items):
            batch.items[kind] = [i for i in batch.items[kind] if i[3] != owner]
            if not batch.items[kind]:
                del batch.items[kind]

    def _finish(self, pending: list[tuple[Element, _Placement, _Tessellated]], batch: _Batch) -> None:
        worlds = _placement_matrices([p for _, p, _ in pending])
        try:
            batch.run(self.options, worlds)
        except _ELEMENT_ERRORS:
            # one bad solid fails its whole batch: run each alone, so only its element is reported
            for kind, items in batch.items.items():
                for geom, sym, out, owner in items:
                    try:
                        mesh = _runner(kind)([geom], self.options, worlds[owner][None])
                        out.world_meshes.append((sym, mesh))
                    except _ELEMENT_ERRORS as exc:
                        out.error = f"{type(exc).__name__}: {exc}"
            batch.items.clear()
        # The pieces tessellated in their stream's coordinates, carried into the world for the whole
        # chunk at once (batched solids are there already).
        local = [
            (n, sym, filled, mesh)
            for n, (_, _, pieces) in enumerate(pending)
            if pieces.error is None
            for sym, filled, mesh in pieces.meshes
            if mesh.n_triangles
        ]
        placed: list[list[tuple[Symbology, bool, tess.Mesh]]] = [[] for _ in pending]
        rigid = _rigid_all([m for _, _, _, m in local], worlds[[n for n, *_ in local]])
        for (n, sym, filled, _), mesh in zip(local, rigid, strict=True):
            placed[n].append((sym, filled, mesh))
        # Every part instance of the chunk placed in the world at once (a matrix product per instance
        # cost more in call overhead than in arithmetic).
        owners = [n for n, (_, _, pieces) in enumerate(pending) if pieces.error is None for _ in pieces.parts]
        instances = [inst for _, _, pieces in pending if pieces.error is None for _, inst in pieces.parts]
        transforms = iter(_instance_matrices(worlds[owners], instances)) if instances else iter(())
        for n, (element, _, pieces) in enumerate(pending):
            if pieces.error is not None:
                self.result.errors.append((element.id, pieces.error))
                continue
            mine = [next(transforms) for _ in pieces.parts]
            try:
                self.result.elements[element.id] = self._place(element, worlds[n], pieces, placed[n], mine)
            except _ELEMENT_ERRORS as exc:
                self.result.errors.append((element.id, f"{type(exc).__name__}: {exc}"))
                continue
            if pieces.native_breps and self.native is not None:
                self.native.element(element.id, pieces.native_breps)

    def _place(
        self,
        element: Element,
        world: F64,
        pieces: _Tessellated,
        placed: list[tuple[Symbology, bool, tess.Mesh]],
        transforms: list[F64],
    ) -> ElementMeshes:
        """The element's pieces in the world: ``placed`` its meshes already carried there (with the
        batched ones), merged by appearance; its lines and instances placed here."""
        category = element.category_id or 0
        out = ElementMeshes(element.id, category)
        by_app: dict[Appearance, list[tess.Mesh]] = {}
        for sym, filled, mesh in placed:
            by_app.setdefault(self.appearance.resolve(sym, category, filled), []).append(mesh)
        for sym, mesh in pieces.world_meshes:
            if mesh.n_triangles:
                by_app.setdefault(self.appearance.resolve(sym, category, False), []).append(mesh)
        for app, meshes in by_app.items():
            out.meshes.append(MeshPiece(app, meshes[0] if len(meshes) == 1 else tess.Mesh.concat(meshes)))
        lines_by: dict[Appearance, list[tess.Polyline]] = {}
        for sym, line in pieces.lines:
            lines_by.setdefault(self.appearance.resolve(sym, category), []).append(line)
        for app, lines in lines_by.items():
            merged_l = lines[0] if len(lines) == 1 else tess.Polyline.concat(lines)
            out.lines.append(LinePiece(app, merged_l.transformed(world)))
        for (sym, inst), transform in zip(pieces.parts, transforms, strict=True):
            mesh_apps, line_apps = self._instance_appearances(inst.part_id, sym, category)
            out.instances.append(PartRef(inst.part_id, transform, mesh_apps, line_apps))
            if self.native is not None:
                self.native.instance(out, inst.part_id, sym, category)
        return out

    def _instance_appearances(
        self, part_id: int, sym: Symbology, category: int
    ) -> tuple[tuple[Appearance, ...], tuple[Appearance, ...]]:
        """The appearances of a part's pieces seen through one instance, kept per (part, instance
        symbology, category): instances repeat a handful of these, and each costs a Symbology merge."""
        key = (part_id, sym, category)
        found = self._instance_apps.get(key)
        if found is None:
            part = self.part(part_id)
            found = (
                tuple(self.appearance.resolve(_merge(s, sym), category) for s, _ in part.meshes),
                tuple(self.appearance.resolve(_merge(s, sym), category) for s, _ in part.lines),
            )
            self._instance_apps[key] = found
        return found


_ELEMENT_ERRORS = (GeometryStreamError, tess.TessellationError, ValueError, IndexError)


def _rigid_all(meshes: Sequence[tess.Mesh], worlds: F64) -> list[tess.Mesh]:
    """Each mesh carried by its placement ``worlds[i]`` (a rotation and a translation: normals turn with
    the positions, the winding stays), all in one product over the concatenated vertices: a product per
    mesh cost more in call overhead than in arithmetic (thousands of small meshes)."""
    if not meshes:
        return []
    counts = np.fromiter((len(m.positions) for m in meshes), np.int64, len(meshes))
    owner = np.repeat(np.arange(len(meshes)), counts)
    rotation = worlds[:, :3, :3][owner]
    positions = np.einsum("nij,nj->ni", rotation, np.concatenate([m.positions for m in meshes]))
    positions += worlds[:, :3, 3][owner]
    normals = np.einsum(
        "nij,nj->ni", rotation.astype(np.float32), np.concatenate([m.normals for m in meshes])
    ).astype(np.float32, copy=False)
    ends = np.cumsum(counts)[:-1].tolist()
    return [
        tess.Mesh(p, n, m.indices, params=m.params, colors=m.colors, two_sided=m.two_sided)
        for m, p, n in zip(meshes, _cut(positions, ends), _cut(normals, ends), strict=True)
    ]


def _placement_matrices(placements: Sequence[_Placement]) -> F64:
    """(k, 4, 4) world-from-local matrices of ``placements`` (``Placement3d/2d.transform`` each, the
    numbers worked out per placement, the array made once)."""
    out = np.zeros((len(placements), 4, 4))
    out[:, 3, 3] = 1.0
    if not placements:
        return out
    rows: list[tuple[float, ...]] = []
    for p in placements:
        if isinstance(p, Placement3d):
            (a, b, c), (d, e, f), (gg, h, i) = p.rotation()
            x, y, z = p.origin
            rows.append((a, b, c, x, d, e, f, y, gg, h, i, z))
        else:
            angle = math.radians(p.rotation)
            cos, sin = math.cos(angle), math.sin(angle)
            rows.append((cos, -sin, 0.0, p.origin[0], sin, cos, 0.0, p.origin[1], 0.0, 0.0, 1.0, 0.0))
    out[:, :3, :] = np.array(rows, np.float64).reshape(-1, 3, 4)
    return out


def _instance_matrices(worlds: F64, instances: Sequence[g.PartInstance]) -> list[F64]:
    """World from part coordinates of each instance: its element's ``worlds[i]`` times the instance's
    ``[scale * YPR | origin]`` (``PartInstance.transform``), as ``world @ matrix4`` each."""
    local = np.zeros((len(instances), 4, 4))
    local[:, 3, 3] = 1.0
    rows = []
    for inst in instances:
        (a, b, c), (d, e, f), (gg, h, i) = imodel_ypr(inst.yaw, inst.pitch, inst.roll)
        s = inst.scale
        x, y, z = inst.origin
        rows.append((a * s, b * s, c * s, x, d * s, e * s, f * s, y, gg * s, h * s, i * s, z))
    local[:, :3, :] = np.array(rows, np.float64).reshape(-1, 3, 4)
    return list(np.matmul(worlds, local))


def _provider(native_breps: bool | NativeFacetProvider) -> NativeFacetProvider | None:
    if native_breps is False:
        return None
    from twinbase.bim.native_facets import NativeFacetProvider

    provider = NativeFacetProvider() if native_breps is True else native_breps
    provider.check()  # the option is on: no node or iTwin.js is an error now, not after the pass
    return provider


def mesh_elements(
    imodel: IModelFile,
    elements: Iterable[Element],
    options: tess.StrokeOptions,
    *,
    chunk: int = 1000,
    native_breps: bool | NativeFacetProvider = False,
    parts: PartCache | None = None,
) -> MeshResult:
    """Mesh the given elements (3D ones; 2D are counted as skipped) of ``imodel``; solids are tessellated
    ``chunk`` elements at a time. ``native_breps``: see the module notes (off by default). ``parts``:
    geometry parts shared with other calls on the same file."""
    mesher = _Mesher(imodel, options, _provider(native_breps), parts)
    mesher.elements(elements, chunk)
    if mesher.native is not None:
        mesher.native.apply(mesher)
    mesher.result.fallbacks = mesher.fb.counts
    mesher.result.skipped = mesher.fb.skipped
    mesher.result.kinds = mesher.fb.kinds
    return mesher.result


def mesh_imodel(
    imodel: IModelFile,
    options: tess.StrokeOptions,
    *,
    chunk: int = 1000,
    native_breps: bool | NativeFacetProvider = False,
) -> MeshResult:
    """Every geometric element of ``imodel``: see the module notes."""
    return mesh_elements(
        imodel,
        imodel.elements(geometric_only=True, with_geometry=True),
        options,
        chunk=chunk,
        native_breps=native_breps,
    )


def mesh_element(
    imodel: IModelFile,
    element_id: int,
    options: tess.StrokeOptions,
    *,
    native_breps: bool | NativeFacetProvider = False,
) -> MeshResult:
    """One element (with its parts) of ``imodel``."""
    element = imodel.element(element_id)
    return mesh_elements(imodel, [element] if element is not None else [], options, native_breps=native_breps)


def flattened(result: MeshResult, element: ElementMeshes) -> Iterator[MeshPiece]:
    """An element's pieces with its part instances applied (world coordinates), for checks and formats
    that want no instancing."""
    yield from element.meshes
    for inst in element.instances:
        part = result.parts[inst.part_id]
        for (_, mesh), app in zip(part.meshes, inst.mesh_appearances, strict=True):
            yield MeshPiece(app, mesh.transformed(inst.transform))


def flattened_lines(result: MeshResult, element: ElementMeshes) -> Iterator[LinePiece]:
    yield from element.lines
    for inst in element.instances:
        part = result.parts[inst.part_id]
        for (_, line), app in zip(part.lines, inst.line_appearances, strict=True):
            yield LinePiece(app, line.transformed(inst.transform))
