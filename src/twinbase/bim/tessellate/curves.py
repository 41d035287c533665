"""Curves as plain parameters, and their stroking into points.

The primitive types here are small holders of numpy arrays and floats (not the GeometryStream
decoder's types): the glue maps each decoded primitive to one of them. A *loop* or *path* is a
sequence of primitives joined end to end, or simply an (n, 3) array of points (a line string).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._geom import F64, Bool, as_points, as_vector, norms
from .bspline import bspline_curve_segment_count, stroke_bspline_curve
from .errors import TessellationError
from .mesh import Polyline
from .options import StrokeOptions, arc_segments, distance_segments


@dataclass(frozen=True, eq=False)
class LineSegment:
    start: ArrayLike
    end: ArrayLike


@dataclass(frozen=True, eq=False)
class LineString:
    points: ArrayLike


@dataclass(frozen=True, eq=False)
class Arc:
    """``center + cos(t) vector0 + sin(t) vector90`` for t from ``start`` over ``sweep`` radians
    (an ellipse when the vectors differ in length or are not perpendicular)."""

    center: ArrayLike
    vector0: ArrayLike
    vector90: ArrayLike
    start: float = 0.0
    sweep: float = 2.0 * math.pi


@dataclass(frozen=True, eq=False)
class BSplineCurve:
    """See ``bspline`` for the knot, weight and closure conventions (those of the iModel)."""

    poles: ArrayLike
    order: int
    knots: ArrayLike | None = None
    weights: ArrayLike | None = None
    closed: bool = False
    weighted_poles: bool = True


CurvePrimitive = LineSegment | LineString | Arc | BSplineCurve
_PRIMITIVES = (LineSegment, LineString, Arc, BSplineCurve)
#: A loop or path: primitives end to end, or an (n, 3) point array.
Curve = Sequence[CurvePrimitive] | CurvePrimitive | ArrayLike


def as_primitives(curve: Curve) -> list[CurvePrimitive]:
    if isinstance(curve, _PRIMITIVES):
        return [curve]
    if (
        isinstance(curve, Sequence)
        and not isinstance(curve, str)
        and curve
        and isinstance(curve[0], _PRIMITIVES)
    ):
        items = list(curve)
        for item in items:
            if not isinstance(item, _PRIMITIVES):
                raise TessellationError(f"curve: {type(item).__name__} is not a curve primitive")
        return items
    return [LineString(as_points(curve, "line string"))]  # type: ignore[arg-type]


# -- stroke counts ---------------------------------------------------------------------------------


def _arc_params(arc: Arc) -> tuple[F64, F64, F64, float, float]:
    c = as_vector(arc.center, "arc center")
    v0 = as_vector(arc.vector0, "arc vector0")
    v90 = as_vector(arc.vector90, "arc vector90")
    start = float(arc.start)
    sweep = float(arc.sweep)
    if not (math.isfinite(start) and math.isfinite(sweep)):
        raise TessellationError("arc: start and sweep must be finite")
    return c, v0, v90, start, sweep


def piece_counts(
    prim: CurvePrimitive, options: StrokeOptions, *, wire: bool = False
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Segments for each piece of a primitive: one value per line string segment, one for others.

    ``wire``: counted as the native library strokes a curve drawn as a line, which differs from the
    edges of a facetted surface: an arc gets one segment fewer than ``arc_segments`` (its count is
    taken as a number of points), a B-spline one more per span (see ``curve_span_counts``). Both
    measured against ``exportGraphics``."""
    if isinstance(prim, LineSegment):
        a = as_vector(prim.start, "segment start")
        b = as_vector(prim.end, "segment end")
        return np.array([distance_segments(float(np.linalg.norm(b - a)), options)], dtype=np.int64)
    if isinstance(prim, LineString):
        pts = as_points(prim.points, "line string")
        lengths = norms(np.diff(pts, axis=0))
        if options.edge_length > 0:
            counts = np.minimum(
                np.maximum(1, (lengths / options.edge_length + 0.99999).astype(np.int64)), 100
            )
        else:
            counts = np.ones(len(lengths), dtype=np.int64)
        return counts
    if isinstance(prim, Arc):
        _, v0, v90, _, sweep = _arc_params(prim)
        radius = max(float(np.linalg.norm(v0)), float(np.linalg.norm(v90)))
        n = arc_segments(radius, sweep, options)
        return np.array([max(n - 1, 1) if wire else n], dtype=np.int64)
    return np.array(
        [
            bspline_curve_segment_count(
                prim.poles,
                prim.order,
                prim.knots,
                prim.weights,
                closed=prim.closed,
                weighted_poles=prim.weighted_poles,
                options=options,
                wire=wire,
            )
        ],
        dtype=np.int64,
    )


# -- chains: stroked points with tangents and the links that are real curve ---------------------------


@dataclass(eq=False)
class Chain:
    """Stroked curve: ``points`` (n, 3), unit-ish ``tangents`` (n, 3) and ``link`` (n-1,), true where
    the segment from point i to i+1 is part of the curve. Runs that shade smoothly (an arc, a
    B-spline) are linked throughout; each line-string segment is its own run, so sweeps get sharp
    edges at corners."""

    points: F64
    tangents: F64
    link: Bool

    @staticmethod
    def join(chains: Sequence[Chain]) -> Chain:
        chains = [c for c in chains if len(c.points)]
        if not chains:
            return Chain(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, bool))
        links: list[Bool] = []
        for i, c in enumerate(chains):
            if i:
                links.append(np.zeros(1, bool))
            links.append(c.link)
        return Chain(
            np.concatenate([c.points for c in chains]),
            np.concatenate([c.tangents for c in chains]),
            np.concatenate(links),
        )

    def polygon(self) -> F64:
        """The points with repeats (run joins, the closing point) removed: a loop's polygon."""
        pts = self.points
        if len(pts) < 2:
            return pts
        keep = np.ones(len(pts), bool)
        keep[1:] = (pts[1:] != pts[:-1]).any(axis=1)
        out = pts[keep]
        if len(out) > 1 and (out[0] == out[-1]).all():
            out = out[:-1]
        return out


def _segments_chain(starts: F64, ends: F64, counts: np.ndarray[Any, np.dtype[np.int64]]) -> Chain:
    """Each segment i cut in counts[i] steps, as its own run."""
    d = ends - starts
    lengths = norms(d)
    tangents = d / np.where(lengths > 0, lengths, 1.0)[:, None]
    if (counts == 1).all():
        # The usual case (no maximum edge length): each segment is just its two ends.
        return _straight_chain(starts, ends, d, tangents)
    per = counts + 1
    seg = np.repeat(np.arange(len(counts)), per)
    first = np.concatenate([[0], np.cumsum(per)[:-1]])
    k = np.arange(int(per.sum())) - np.repeat(first, per)
    f = (k / counts[seg])[:, None]
    points = starts[seg] + f * d[seg]
    link = np.ones(len(points) - 1, bool)
    link[np.cumsum(per)[:-1] - 1] = False
    return Chain(points, tangents[seg], link)


def _straight_chain(starts: F64, ends: F64, d: F64 | None = None, tangents: F64 | None = None) -> Chain:
    """Each segment from ``starts[i]`` to ``ends[i]`` as its own run of one step."""
    if d is None or tangents is None:
        d = ends - starts
        lengths = norms(d)
        tangents = d / np.where(lengths > 0, lengths, 1.0)[:, None]
    link = np.zeros(2 * len(d) - 1, bool)
    link[::2] = True
    points = np.empty((len(d), 2, 3))
    points[:, 0] = starts
    points[:, 1] = ends
    return Chain(points.reshape(-1, 3), np.repeat(tangents, 2, axis=0), link)


def _arc_chain(c: F64, v0: F64, v90: F64, start: float, sweep: float, n: int) -> Chain:
    theta = start + sweep * np.arange(n + 1) / n
    cos = np.cos(theta)[:, None]
    sin = np.sin(theta)[:, None]
    points = c + cos * v0 + sin * v90
    tangents = math.copysign(1.0, sweep) * (-sin * v0 + cos * v90)
    tn = norms(tangents)
    tangents = tangents / np.where(tn > 0, tn, 1.0)[:, None]
    return Chain(points, tangents, np.ones(n, bool))


def _smooth_tangents(points: F64) -> F64:
    # Central differences; one-sided at the ends (the tangent of a uniformly stroked arc or spline
    # span is parallel to the chord between its neighbours).
    t = np.empty_like(points)
    if len(points) < 2:
        t[:] = 0.0
        return t
    t[1:-1] = points[2:] - points[:-2]
    t[0] = points[1] - points[0]
    t[-1] = points[-1] - points[-2]
    n = norms(t)
    out: F64 = t / np.where(n > 0, n, 1.0)[:, None]
    return out


def primitive_chain(
    prim: CurvePrimitive,
    counts: np.ndarray[Any, np.dtype[np.int64]],
    options: StrokeOptions,
    *,
    wire: bool = False,
) -> Chain:
    """Stroke a primitive with the given piece counts (see ``piece_counts``; a B-spline's count is
    spread over its spans in proportion to what ``options`` asks of each)."""
    if isinstance(prim, LineSegment):
        a = as_vector(prim.start, "segment start")[None, :]
        b = as_vector(prim.end, "segment end")[None, :]
        return _segments_chain(a, b, counts)
    if isinstance(prim, LineString):
        pts = as_points(prim.points, "line string")
        if len(pts) < 2:
            return Chain(pts, np.zeros_like(pts), np.zeros(max(len(pts) - 1, 0), bool))
        return _segments_chain(pts[:-1], pts[1:], counts)
    if isinstance(prim, Arc):
        c, v0, v90, start, sweep = _arc_params(prim)
        return _arc_chain(c, v0, v90, start, sweep, int(counts[0]))
    points, _ = stroke_bspline_curve(
        prim.poles,
        prim.order,
        prim.knots,
        prim.weights,
        closed=prim.closed,
        weighted_poles=prim.weighted_poles,
        options=options,
        min_segments=int(counts[0]),
        wire=wire,
    )
    return Chain(points, _smooth_tangents(points), np.ones(len(points) - 1, bool))


def curve_chain(curve: Curve, options: StrokeOptions, *, close: bool = False, wire: bool = False) -> Chain:
    """Stroke a loop or path. ``close`` adds a straight run over any gap back to the start."""
    prims = as_primitives(curve)
    chains = [_stroked(p, options, wire) for p in prims]
    return close_gaps(chains, close)


def _stroked(prim: CurvePrimitive, options: StrokeOptions, wire: bool) -> Chain:
    """``primitive_chain(prim, piece_counts(prim, ...))`` with the primitive's parameters checked once:
    the common loops (a line string, an arc, no maximum edge length) are stroked per element, so their
    per-call overhead is most of their cost."""
    if isinstance(prim, LineString) and options.edge_length <= 0:
        pts = as_points(prim.points, "line string")
        if len(pts) < 2:
            return Chain(pts, np.zeros_like(pts), np.zeros(max(len(pts) - 1, 0), bool))
        return _straight_chain(pts[:-1], pts[1:])
    if isinstance(prim, Arc):
        c, v0, v90, start, sweep = _arc_params(prim)
        # np.linalg.norm of a 3-vector: the square root of its dot product.
        radius = max(math.sqrt(float(v0.dot(v0))), math.sqrt(float(v90.dot(v90))))
        n = arc_segments(radius, sweep, options)
        return _arc_chain(c, v0, v90, start, sweep, max(n - 1, 1) if wire else n)
    return primitive_chain(prim, piece_counts(prim, options, wire=wire), options, wire=wire)


def close_gaps(chains: list[Chain], close: bool) -> Chain:
    """Join primitives end to end. Ends that miss by rounding only (a full arc's end is cos(2 pi)
    away from its start) are made to meet exactly; a real gap gets a straight run, and so does the
    way back to the start when ``close`` is asked."""
    chains = [c for c in chains if len(c.points)]
    if not chains:
        return Chain.join([])
    scale = max(float(np.abs(c.points).max()) for c in chains)
    snap = 1e-10 * max(scale, 1.0)
    if len(chains) == 1:
        # One primitive (a line string, a circle): nothing to join; the arrays are the stroker's own
        # (nothing changes them in place below: the close copies first).
        out = Chain(chains[0].points, chains[0].tangents, chains[0].link)
    else:
        joined: list[Chain] = []
        for c in chains:
            if joined:
                prev = joined[-1].points[-1]
                gap = float(np.abs(c.points[0] - prev).max())
                if 0 < gap <= snap:
                    c = Chain(c.points.copy(), c.tangents, c.link)
                    c.points[0] = prev
                elif gap > snap:
                    joined.append(_gap(prev, c.points[0]))
            joined.append(c)
        out = Chain.join(joined)
    if close and len(out.points) > 1:
        gap = float(np.abs(out.points[-1] - out.points[0]).max())
        if 0 < gap <= snap:
            out.points = out.points.copy()
            out.points[-1] = out.points[0]
        elif gap > snap:
            out = Chain.join([out, _gap(out.points[-1], out.points[0])])
    return out


def _gap(a: F64, b: F64) -> Chain:
    return _segments_chain(a[None, :], b[None, :], np.ones(1, dtype=np.int64))


# -- public stroking --------------------------------------------------------------------------------


def stroke_curve(curve: Curve, options: StrokeOptions) -> F64:
    """Points (m, 3) along a primitive or a path of primitives, at the tolerance, as the native library
    strokes a curve drawn as a line (see ``piece_counts``: an arc gets ``arc_segments - 1`` segments,
    a B-spline span its full estimate); joins are not repeated."""
    chain = curve_chain(curve, options, wire=True)
    pts = chain.points
    if len(pts) < 2:
        return pts
    keep = np.ones(len(pts), bool)
    keep[1:] = (pts[1:] != pts[:-1]).any(axis=1)
    out: F64 = pts[keep]
    return out


def arc_points(
    center: ArrayLike,
    vector0: ArrayLike,
    vector90: ArrayLike,
    start: float,
    sweep: float,
    options: StrokeOptions,
) -> F64:
    """Stroke points of an arc or ellipse (the count from ``arc_segments``)."""
    return stroke_curve(Arc(center, vector0, vector90, start, sweep), options)


def curve_polyline(curves: Sequence[Curve], options: StrokeOptions) -> Polyline:
    """Each curve (a primitive, a path of primitives or a point array) as one line of a Polyline."""
    return Polyline.from_lines([stroke_curve(c, options) for c in curves])


def point_string(points: ArrayLike) -> Polyline:
    """A point string (PointPrimitive boundary 0): points, drawn as points."""
    pts = as_points(points, "point string")
    return Polyline(pts, np.zeros(1 if len(pts) else 0, np.int64), points_only=True)


def text_range(
    num_chars: int,
    height: float,
    width_factor: float = 1.0,
    glyph_origins: ArrayLike | None = None,
) -> tuple[F64, F64]:
    """An approximate (low, high) box of a text string in its own coordinates, without the font:
    each character is taken as ``height * width_factor`` wide (glyph origins, when the stream has
    them, give the start of the last character). Descenders are not counted."""
    advance = height * width_factor
    if glyph_origins is not None:
        origins = np.asarray(glyph_origins, dtype=np.float64).reshape(-1, 2)
        if len(origins):
            low = np.array([min(0.0, float(origins[:, 0].min())), 0.0, 0.0])
            high = np.array([float(origins[:, 0].max()) + advance, height, 0.0])
            return low, high
    return np.zeros(3), np.array([max(num_chars, 0) * advance, height, 0.0])


def text_box_outline(low: ArrayLike, high: ArrayLike, transform: ArrayLike | None = None) -> Polyline:
    """Text drawn as the outline of its range box (a closed rectangle in the text's plane, z of
    ``low``), carried by ``transform`` (4x4 or 3x4, text to element). Glyphs are not drawn."""
    lo = np.asarray(low, dtype=np.float64).reshape(-1)
    hi = np.asarray(high, dtype=np.float64).reshape(-1)
    if lo.shape[0] == 2:
        lo = np.append(lo, 0.0)
    if hi.shape[0] == 2:
        hi = np.append(hi, 0.0)
    z = lo[2]
    rect = np.array(
        [[lo[0], lo[1], z], [hi[0], lo[1], z], [hi[0], hi[1], z], [lo[0], hi[1], z], [lo[0], lo[1], z]]
    )
    line = Polyline(rect, np.zeros(1, np.int64))
    return line if transform is None else line.transformed(transform)
