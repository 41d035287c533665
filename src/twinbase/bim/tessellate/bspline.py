"""B-spline curves and surfaces: knot handling, vectorized de Boor evaluation and stroke counts.

Conventions are those of the iModel (``MSBsplineCurve`` / BGFB ``BsplineCurve``, ``BsplineSurface``):

- Knots are "classic": ``num_poles + order`` values, the first and last being the extra clamping knots
  (the modern form without them, ``num_poles + order - 2`` values, is accepted too).
- Rational poles are stored **weighted** (x*w, y*w, z*w) next to the weights, as the native library and
  the BGFB writer do; pass ``weighted_poles=False`` for plain cartesian poles.
- ``closed``: either the legacy periodic knot vector (``num_poles + 2 order - 1`` knots with the start and
  end knots repeated ``order`` times at ``order // 2`` and ``order // 2 + num_poles``), which is opened by
  dropping the extra knots, or true periodic data, opened by appending the first ``order - 1`` poles.
  This is what the iTwin.js BGFB reader does.

Stroke counts follow the native ``MSBsplineCurve::GetStrokeCount``: each non-empty knot span is turned
into its Bezier control polygon and ``bsiBezierDPoint4d_estimateEdgeCount`` picks a count from that
polygon's longest edge and largest turn (chord: ``ceil(1.25 sqrt(h / tol))`` with ``h`` the longest edge
times ``sin(turn / 2)``; angle: ``(order - 2) ceil(turn / angle_tol)``; edge length:
``(order - 1) ceil(longest / max_edge)``; a straight span gets one edge). Surfaces are meshed Bezier
patch by Bezier patch as the native surface mesher does (the notes above ``_TIE_EDGE_FIRST``). Trim
boundaries of surfaces are ignored: the whole untrimmed patch is meshed.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.typing import ArrayLike

from ._geom import F64, I64, U32, as_points, cross, norms
from .errors import TessellationError
from .mesh import Mesh
from .options import StrokeOptions


def _legacy_periodic(knots: F64, num_poles: int, order: int) -> bool:
    # SerializationHelpers.Import.openLegacyPeriodicKnots' test, with its knot tolerance (1e-9).
    if order < 2 or len(knots) != num_poles + 2 * order - 1:
        return False
    start = knots[order - 1]
    end = knots[len(knots) - order]
    i0 = order // 2
    i1 = i0 + num_poles
    return bool(
        (np.abs(knots[i0 : i0 + order] - start) < 1e-9).all()
        and (np.abs(knots[i1 : i1 + order] - end) < 1e-9).all()
    )


def prepare_control(
    poles: ArrayLike,
    order: int,
    knots: ArrayLike | None,
    weights: ArrayLike | None,
    closed: bool,
    weighted_poles: bool,
    what: str,
    axis: int = 0,
) -> tuple[F64, F64]:
    """Homogeneous control values (n, ..., 4) along ``axis`` and a classic, open knot vector.

    ``poles`` is (n, 3) for a curve or a grid (..., 3) for a surface (``axis`` picks the direction).
    """
    raw = np.asarray(poles, dtype=np.float64)
    if raw.ndim == 2 and raw.shape[1] == 2:
        raw = as_points(raw, what)
    if raw.shape[-1] != 3 or not np.isfinite(raw).all():
        raise TessellationError(f"{what}: poles must be finite xyz triples, got shape {raw.shape}")
    if weights is None:
        w = np.ones(raw.shape[:-1])
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(raw.shape[:-1])
        if not np.isfinite(w).all() or (w <= 0).any():
            raise TessellationError(f"{what}: weights must be finite and > 0")
    xyz = raw if weighted_poles else raw * w[..., None]
    ctrl = np.concatenate([xyz, w[..., None]], axis=-1)
    ctrl = np.moveaxis(ctrl, axis, 0)
    if order < 2:
        raise TessellationError(f"{what}: order must be at least 2, got {order}")
    n = ctrl.shape[0]
    if n < order:
        raise TessellationError(f"{what}: {n} poles are fewer than the order {order}")
    k = None if knots is None else np.asarray(knots, dtype=np.float64).reshape(-1)
    if k is not None and not np.isfinite(k).all():
        raise TessellationError(f"{what}: knots must be finite")
    if closed:
        if k is not None and _legacy_periodic(k, n, order):
            i0 = order // 2
            k = k[i0 : i0 + n + order]
        else:
            ctrl = np.concatenate([ctrl, ctrl[: order - 1]], axis=0)
            n = ctrl.shape[0]
            if k is None:
                k = np.arange(n + order, dtype=np.float64)
    if k is None:
        interior = np.linspace(0.0, 1.0, n - order + 2)
        # Uniform clamped, in classic form (the clamp knots repeated ``order`` times).
        k = np.concatenate([np.zeros(order - 1), interior, np.ones(order - 1)])
    if len(k) == n + order - 2:
        k = np.concatenate([[k[0]], k, [k[-1]]])
    if len(k) != n + order:
        raise TessellationError(
            f"{what}: {len(k)} knots for {n} poles of order {order} (expected {n + order})"
        )
    if (np.diff(k) < 0).any():
        raise TessellationError(f"{what}: knots must not decrease")
    if not k[order - 1] < k[n]:
        raise TessellationError(f"{what}: the knot vector has an empty domain")
    return np.ascontiguousarray(ctrl), k


def de_boor(knots: F64, order: int, ctrl: F64, t: F64, spans: I64 | None = None) -> F64:
    """Points of the B-spline with ``ctrl`` (n, D) at parameters ``t`` (T,): de Boor's triangle,
    vectorized over the parameters and over each level's columns. ``spans`` forces the knot span
    used for each parameter (to evaluate one span's polynomial at its end)."""
    p = order - 1
    n = ctrl.shape[0]
    if spans is None:
        spans = np.clip(np.searchsorted(knots, t, side="right") - 1, p, n - 1)
    base = spans[:, None] - p
    d = ctrl[base + np.arange(order)[None, :]]
    for r in range(1, order):
        j = np.arange(r, order)[None, :]
        i = base + j
        left = knots[i]
        denom = knots[i + order - r] - left
        safe = np.where(denom > 0, denom, 1.0)
        alpha = np.where(denom > 0, (t[:, None] - left) / safe, 0.0)[..., None]
        d[:, r:] = (1.0 - alpha) * d[:, r - 1 : order - 1] + alpha * d[:, r:]
    out: F64 = d[:, p]
    return out


def _spans(knots: F64, order: int, n: int) -> I64:
    i = np.arange(order - 1, n)
    out: I64 = i[knots[i] < knots[i + 1]]
    return out


@functools.cache
def _binomials(order: int) -> F64:
    out = np.array([math.comb(order - 1, i) for i in range(order)], dtype=np.float64)
    out.setflags(write=False)  # cached: shared by every caller
    return out


@functools.cache
def _bernstein_inverse(order: int) -> F64:
    p = order - 1
    s = np.arange(order) / p
    power = np.arange(order)
    binom = np.array([math.comb(p, int(x)) for x in power], dtype=np.float64)
    matrix: F64 = binom[None, :] * s[:, None] ** power[None, :] * (1.0 - s[:, None]) ** (p - power[None, :])
    out = np.asarray(np.linalg.inv(matrix), dtype=np.float64)
    out.setflags(write=False)  # cached: shared by every caller
    return out


def bezier_polygons(knots: F64, order: int, ctrl: F64, spans: I64) -> F64:
    """(S, order, D) Bezier control polygons of the given spans, by fitting each span's polynomial
    through ``order`` evaluated points (exact: the span is a polynomial of that degree)."""
    p = order - 1
    a = knots[spans]
    b = knots[spans + 1]
    s = np.arange(order) / p
    t = (a[:, None] + (b - a)[:, None] * s[None, :]).reshape(-1)
    values = de_boor(knots, order, ctrl, t, np.repeat(spans, order)).reshape(len(spans), order, -1)
    out: F64 = np.einsum("lj,sjd->sld", _bernstein_inverse(order), values)
    return out


def bezier_edge_counts(bez: F64, options: StrokeOptions, chord_factor: float = 1.25) -> I64:
    """Native ``bsiBezierDPoint4d_estimateEdgeCount`` for (S, order, 4) homogeneous Bezier polygons
    (``chord_factor`` is its 1.25 "heuristic" multiplier)."""
    order = bez.shape[1]
    xyz = bez[..., :3] / bez[..., 3:4]
    edges = np.diff(xyz, axis=1)
    lengths = norms(edges)
    longest = lengths.max(axis=1)
    u = edges / np.where(lengths > 0, lengths, 1.0)[..., None]
    if order > 2:
        cosines = np.einsum("sij,sij->si", u[:, :-1], u[:, 1:])
        turn = np.arccos(np.clip(cosines.min(axis=1), -1.0, 1.0))
    else:
        turn = np.zeros(len(bez))
    count = np.full(len(bez), order - 1, dtype=np.int64)
    chord = options.chord_tolerance
    if chord > 0:
        h = longest * np.sin(0.5 * turn)
        n = np.ceil(chord_factor * np.sqrt(np.maximum(h, 0.0) / chord)).astype(np.int64)
        count = np.where(h > chord, np.maximum(count, n), count)
    angle = options.angle_tolerance
    if angle > 0:
        n = (order - 2) * np.ceil(turn / angle).astype(np.int64)
        count = np.where(turn > angle, np.maximum(count, n), count)
    edge = options.edge_length
    if edge > 0:
        n = (order - 1) * np.ceil(longest / edge).astype(np.int64)
        count = np.where(longest > edge, np.maximum(count, n), count)
    # A straight span is one edge (native: collinear poles, unless an edge length asks for more).
    chord_vec = xyz[:, -1] - xyz[:, 0]
    span_len = norms(chord_vec)
    off = cross(xyz - xyz[:, :1], chord_vec[:, None, :])
    offset = norms(off).max(axis=1) / np.where(span_len > 0, span_len, 1.0)
    scale = np.maximum(np.abs(xyz).max(axis=(1, 2)), 1.0)
    straight = offset <= 1e-12 * scale
    if edge > 0:
        straight &= span_len <= edge
    return np.where(straight, 1, np.maximum(count, 1))


def curve_span_counts(bez: F64, options: StrokeOptions, *, wire: bool = False) -> I64:
    """Edges the native library gives each Bezier span of a curve. Drawn as a wire: the estimate.
    As the edge of a facetted surface (a sweep, a region): one fewer, at least one. Both measured with
    ``exportGraphics``: a rational quadratic circle's span gets 11 and 34 line segments at chord
    tolerances 0.01 and 0.001 (the estimates) but 10 and 33 facet edges in an extrusion of it, and
    5 at 15 degrees where the estimate is 6; a cubic likewise."""
    estimate = bezier_edge_counts(bez, options)
    if wire:
        return estimate
    out: I64 = np.maximum(estimate - 1, 1)
    return out


def _stroke_params(knots: F64, spans: I64, counts: I64) -> tuple[F64, I64]:
    """Parameters cutting each span in ``counts`` equal steps, plus the domain end; and their spans."""
    a = knots[spans]
    b = knots[spans + 1]
    total = int(counts.sum())
    span_of = np.repeat(np.arange(len(spans)), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    k = np.arange(total) - np.repeat(first, counts)
    t = a[span_of] + (b - a)[span_of] * (k / counts[span_of])
    t = np.concatenate([t, [b[-1]]])
    s = np.concatenate([spans[span_of], [spans[-1]]])
    return t, s


def stroke_bspline_curve(
    poles: ArrayLike,
    order: int,
    knots: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    *,
    closed: bool = False,
    weighted_poles: bool = True,
    options: StrokeOptions,
    min_segments: int = 0,
    wire: bool = False,
) -> tuple[F64, F64]:
    """Stroke points (m, 3) of a B-spline curve and their parameters (m,).

    ``wire``: count as for a curve drawn as a line (the native estimate per span) rather than as the
    edge of a surface (one fewer per span); see ``curve_span_counts``. ``min_segments`` forces at
    least that many segments in all (used to match congruent sections)."""
    ctrl, k = prepare_control(poles, order, knots, weights, closed, weighted_poles, "B-spline curve")
    n = ctrl.shape[0]
    spans = _spans(k, order, n)
    counts = curve_span_counts(bezier_polygons(k, order, ctrl, spans), options, wire=wire)
    total = int(counts.sum())
    if min_segments > total:
        counts = _spread(counts, min_segments)
    t, s = _stroke_params(k, spans, counts)
    h = de_boor(k, order, ctrl, t, s)
    return h[:, :3] / h[:, 3:4], t


def _spread(counts: I64, total: int) -> I64:
    """Counts scaled up so they add to ``total`` (largest remainders get the extra ones)."""
    exact = counts / counts.sum() * total
    out: I64 = np.maximum(np.floor(exact).astype(np.int64), 1)
    while out.sum() < total:
        out[np.argmax(exact - out)] += 1
    while out.sum() > total:
        out[np.argmax(out)] -= 1
    return out


def bspline_curve_segment_count(
    poles: ArrayLike,
    order: int,
    knots: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    *,
    closed: bool = False,
    weighted_poles: bool = True,
    options: StrokeOptions,
    wire: bool = False,
) -> int:
    ctrl, k = prepare_control(poles, order, knots, weights, closed, weighted_poles, "B-spline curve")
    spans = _spans(k, order, ctrl.shape[0])
    return int(curve_span_counts(bezier_polygons(k, order, ctrl, spans), options, wire=wire).sum())


# ------------------------------------------------------------------------------------------ surfaces
#
# The native surface mesher (GeomLibs ``bsppolyface.cpp``, reached from ``IPolyfaceConstruction::Add``
# for an untrimmed ``MSBsplineSurface`` of more than one patch) works Bezier patch by Bezier patch.
# What it does, read there and checked point by point and triangle by triangle on exportGraphics' output
# (some 200 surfaces and tolerances: random nets of orders 2 to 5 on uneven knots, rational, closed;
# pinned in tests/test_bim_tessellate_itwinjs.py):
#
# 1. Counts per patch from its own unweighted Bezier net (``applyPatchTolerances``): an interior count
#    in u and in v over all rows of poles, and one for each of the four edges from the net's first and
#    last rows (``_patch_counts``, ``_twist_counts``); at most 500.
# 2. A knot line shared by two patches is cut in the larger of their interior (and edge) counts
#    (``CorrectGridCounts``); the surface's own edges keep the patch's count; a direction closed by its
#    flag or by its poles (first and last column equal) wraps round.
# 3. A patch whose four edges have its interior counts is a plain grid. Otherwise its interior is a
#    lattice one step in from the edges (at least 2 steps each way, so at least one point), each edge
#    is cut in its own count, and the band between an edge and the lattice is zipped. exportGraphics'
#    bands are the Delaunay ones in the patch's (u, v) (not what that file's strip routine gives): for
#    two parallel rows of points, advance along the row whose next segment's midpoint comes first.
#    Where both midpoints coincide (a square of four points) its choice follows rounding;
#    ``_TIE_EDGE_FIRST`` is the likelier side per band, which gives 96% of the triangles exactly and
#    areas within 6e-5 (the other diagonal of a few squares).
# 4. Kept as measured: a patch whose four edges are all cut in two while its interior is not (1 x 1,
#    1 x 2 or 2 x 1) comes out as one quad on its corners, its neighbours' edge midpoints left as
#    T-junctions.
#
# Vertices come out the same, so ranges agree to rounding. Triangle counts too.

# Bottom, top, left, right: whether a tie in the zip goes to the edge row first (else to the lattice).
_TIE_EDGE_FIRST = (False, True, True, False)
# Native limits: at most 500 steps per patch direction; the twist ("diagonal") count at most 30 and
# raised when the twist is over 6% of the cell diagonal; segments shorter than 1e-8 are not measured.
_MAX_STEPS = 500
_MAX_DIAGONAL = 30
_DIAGONAL_REL_TOL = 0.06
_SHORT = 1e-8


def _ragged(counts: I64) -> tuple[I64, I64]:
    """For consecutive blocks of ``counts`` elements: the block of each element and its index in it."""
    block = np.repeat(np.arange(len(counts)), counts)
    local = np.arange(len(block)) - np.repeat(np.cumsum(counts) - counts, counts)
    return block, local


def _span_basis(knots: F64, order: int, t: F64, spans: I64) -> F64:
    """(T, order) values of the B-spline basis functions that are non-zero on each parameter's span
    (those of poles span - order + 1 .. span): the triangular recurrence, vectorized over ``t``."""
    basis = np.ones((len(t), 1))
    for j in range(1, order):
        left = t[:, None] - knots[spans[:, None] + 1 - np.arange(j, 0, -1)]  # t - k[span + 1 - j + r]
        right = knots[spans[:, None] + 1 + np.arange(j)] - t[:, None]  # k[span + 1 + r] - t
        ratio = basis / (right + left)
        grown = np.zeros((len(t), j + 1))
        grown[:, :-1] = right * ratio
        grown[:, 1:] += left * ratio
        basis = grown
    return basis


@functools.lru_cache(maxsize=256)
def _extraction(knots: bytes, order: int) -> tuple[F64, I64]:
    """Bezier extraction of a knot vector: for each non-empty span, the (order, order) matrix giving
    its Bezier poles from the B-spline poles span - order + 1 .. span; and the spans. Cached: surfaces
    mostly share their knot vectors."""
    k = np.frombuffer(knots, dtype=np.float64)
    spans = _spans(k, order, len(k) - order)
    a, b = k[spans], k[spans + 1]
    t = (a[:, None] + (b - a)[:, None] * (np.arange(order) / (order - 1))[None, :]).reshape(-1)
    values = _span_basis(k, order, t, np.repeat(spans, order)).reshape(len(spans), order, order)
    out: F64 = np.einsum("lj,sjd->sld", _bernstein_inverse(order), values)
    out.setflags(write=False)
    spans.setflags(write=False)
    return out, spans


def _bezier_patches(ku: F64, order_u: int, kv: F64, order_v: int, ctrl: F64) -> tuple[F64, I64, I64]:
    """Homogeneous Bezier nets (Sv, Su, order_v, order_u, 4) of the patches of ``ctrl`` (nv, nu, 4),
    and the knot spans in u and v."""
    eu, su = _extraction(ku.tobytes(), order_u)
    ev, sv = _extraction(kv.tobytes(), order_v)
    rows = sv[:, None] - order_v + 1 + np.arange(order_v)
    cols = su[:, None] - order_u + 1 + np.arange(order_u)
    blocks = ctrl[rows[:, None, :, None], cols[None, :, None, :]]  # (Sv, Su, order_v, order_u, 4)
    along_u = eu[None, :, None] @ blocks
    n_v, n_u = len(sv), len(su)
    nets = ev[:, None] @ along_u.reshape(n_v, n_u, order_v, order_u * 4)
    return nets.reshape(n_v, n_u, order_v, order_u, 4), su, sv


def _twist_counts(xyz: F64, options: StrokeOptions) -> I64:
    """The native "diagonal" count of each net (..., order_v, order_u, 3): from the largest distance
    between the midpoints of a cell's two diagonals, absolute and relative to the longer diagonal."""
    a = xyz[..., :-1, :-1, :]
    b = xyz[..., :-1, 1:, :]
    c = xyz[..., 1:, :-1, :]
    d = xyz[..., 1:, 1:, :]
    vectors = np.stack([a + 0.5 * (d - a) - (b + 0.5 * (c - b)), d - a, c - b])
    gap2, diag_a, diag_b = np.einsum("...i,...i->...", vectors, vectors)
    ratio = gap2 / np.maximum(np.maximum(diag_a, diag_b), 1e-300)
    absolute = np.sqrt(gap2.max(axis=(-2, -1)))
    relative = np.sqrt(ratio.max(axis=(-2, -1)))
    if options.chord_tolerance > 0:
        count = (0.999 + np.sqrt(absolute / options.chord_tolerance)).astype(np.int64)
    else:
        count = np.ones(absolute.shape, dtype=np.int64)
    rel_count = (0.999 + np.sqrt(relative / _DIAGONAL_REL_TOL)).astype(np.int64)
    count = np.where(relative > _DIAGONAL_REL_TOL, np.maximum(count, rel_count), count)
    out: I64 = np.clip(count, 1, _MAX_DIAGONAL)
    return out


def _patch_counts(nets: F64, options: StrokeOptions) -> I64:
    """(2, 3, Sv, Su): per direction (u, v), the interior, low edge and high edge counts of each patch.

    The native ``applyPatchTolerances`` on the (unweighted) Bezier net: over every three consecutive
    poles of a row, the sag of the middle pole off the chord of the outer two and the angle between the
    first leg and that chord; the interior count takes the largest over all rows, the low and high edge
    counts only the first and last row; each tolerance asks for int(1 + ratio) steps
    (``computeChordCount``: sqrt(sag / chord), degree * angle / angle tolerance, polygon length / edge
    length), the interior at least the twist count (``_twist_counts``)."""
    xyz = nets[..., :3] / nets[..., 3:4]
    twist = _twist_counts(xyz, options)
    order_v, order_u = xyz.shape[-3], xyz.shape[-2]
    # Both directions in one array, rows of poles along the second-last axis: the shorter order is
    # padded by repeating its last pole and last row, which adds nothing (a zero-length leg is not
    # measured, a repeated row changes no maximum and keeps the last row).
    size = max(order_u, order_v, 3)
    pad_u = np.minimum(np.arange(size), order_u - 1)
    pad_v = np.minimum(np.arange(size), order_v - 1)
    rows = np.stack(
        [xyz[..., pad_v[:, None], pad_u[None, :], :], xyz[..., pad_v[None, :], pad_u[:, None], :]]
    )  # (2, Sv, Su, rows, size, 3)
    leg = rows[..., 1:-1, :] - rows[..., :-2, :]
    chord = rows[..., 2:, :] - rows[..., :-2, :]
    vectors = np.stack([leg, chord, rows[..., 2:, :] - rows[..., 1:-1, :]])
    lengths = np.sqrt(np.einsum("...i,...i->...", vectors, vectors))
    measured = (lengths > _SHORT).all(axis=0)
    area = norms(cross(leg, chord))
    sag = np.where(measured, area / np.where(measured, lengths[1], 1.0), 0.0)
    turn = np.where(measured, np.arctan2(area, np.einsum("...i,...i->...", leg, chord)), 0.0)
    # The polygon's length: its first leg and every "after" leg.
    length = lengths[0, ..., 0] + lengths[2].sum(axis=-1)
    # Per measure, direction, (interior, low edge, high edge), patch.
    per_row = np.stack([sag.max(axis=-1), turn.max(axis=-1), length])
    picked = np.stack([per_row.max(axis=-1), per_row[..., 0], per_row[..., -1]], axis=2)
    count = np.ones((2, 3, *twist.shape), dtype=np.int64)
    count[:, 0] = twist
    if options.chord_tolerance > 0:
        count = np.maximum(count, (1.0 + np.sqrt(picked[0] / options.chord_tolerance)).astype(np.int64))
    angle = options.angle_tolerance
    if angle > 0:
        degree = np.array([order_u - 1, order_v - 1], dtype=np.float64).reshape(2, 1, 1, 1)
        by_angle = (1.0 + degree * picked[1] / angle).astype(np.int64)
        count = np.where(picked[1] > angle, np.maximum(count, by_angle), count)
    if options.edge_length > 0:
        count = np.maximum(count, (1.0 + picked[2] / options.edge_length).astype(np.int64))
    out: I64 = np.minimum(count, _MAX_STEPS)
    return out


def _physically_closed(grid: F64, weights: ArrayLike | None, weighted_poles: bool) -> tuple[bool, bool]:
    """Whether the first and last pole columns (u) and rows (v) coincide, with the native tolerance
    (1e-8 absolute plus 1e-8 of the largest stored coordinate, at most 1, on each coordinate)."""
    if weights is None:
        stored = xyz = grid
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(grid.shape[:2])[..., None]
        stored, xyz = (grid, grid / w) if weighted_poles else (grid * w, grid)
    tol = min(1.0, 1e-8 + 1e-8 * float(np.abs(stored).max()))
    closed_u = bool(np.abs(xyz[:, 0] - xyz[:, -1]).max() < tol)
    closed_v = bool(np.abs(xyz[0] - xyz[-1]).max() < tol)
    return closed_u, closed_v


def _line_counts(inner: I64, low: I64, high: I64, wrap: bool) -> I64:
    """Cuts of each knot line across the patches (axis 0 of the (S, m) counts, giving (S + 1, m)): the
    larger of the interior and own edge counts of the patches on either side (``wrap``: the first and
    last lines are one)."""
    out = np.zeros((inner.shape[0] + 1, inner.shape[1]), dtype=np.int64)
    out[:-1] = np.maximum(inner, low)
    out[1:] = np.maximum(out[1:], np.maximum(inner, high))
    if wrap:
        out[0] = out[-1] = np.maximum(out[0], out[-1])
    return out


def _bernstein(order: int, s: F64) -> F64:
    k = np.arange(order)
    out: F64 = _binomials(order) * s[:, None] ** k * (1.0 - s[:, None]) ** (order - 1 - k)
    return out


def _topology(
    n_v: int, n_u: int, ui_bytes: bytes, vi_bytes: bytes, h_bytes: bytes, c_bytes: bytes
) -> tuple[I64, F64, F64, U32]:
    """The vertices (as patch, s, t: local parameters in their patch) and triangles for the given
    counts, which is all they depend on (surfaces of one model often share them: see the cache below).

    ``h`` (n_v + 1, n_u): cuts of each line v = knot over each patch column; ``c`` (n_v, n_u + 1): of
    each line u = knot over each patch row."""
    ui = np.frombuffer(ui_bytes, dtype=np.int64).reshape(n_v, n_u)
    vi = np.frombuffer(vi_bytes, dtype=np.int64).reshape(n_v, n_u)
    h = np.frombuffer(h_bytes, dtype=np.int64).reshape(n_v + 1, n_u)
    c = np.frombuffer(c_bytes, dtype=np.int64).reshape(n_v, n_u + 1)
    bottom, top, left, right = h[:-1], h[1:], c[:, :-1], c[:, 1:]
    simple = (ui == bottom) & (ui == top) & (vi == left) & (vi == right)
    quad = ~simple & (bottom == 2) & (top == 2) & (left == 2) & (right == 2)
    gu = np.where(simple, ui, np.where(quad, 1, np.maximum(ui, 2))).reshape(-1)
    gv = np.where(simple, vi, np.where(quad, 1, np.maximum(vi, 2))).reshape(-1)
    gridded = (simple | quad).reshape(-1)

    # Vertices. 1: on the lines v = knot, in rows; each line's last point is an extra block of one.
    hx = np.concatenate([h, np.ones((n_v + 1, 1), dtype=np.int64)], axis=1)
    start1 = (np.cumsum(hx) - hx.reshape(-1)).reshape(hx.shape)
    blk, k1 = _ragged(hx.reshape(-1))
    j1, i1 = np.divmod(blk, n_u + 1)
    s1 = np.where(i1 == n_u, 1.0, k1 / hx.reshape(-1)[blk])
    # 2: on the lines u = knot, inside each patch row (the lines' ends are in 1).
    cx = (c - 1).T.reshape(-1)  # blocks by line i, then row j
    base2 = int(hx.sum())
    start2 = base2 + (np.cumsum(cx) - cx).reshape(n_u + 1, n_v)
    blk, k2 = _ragged(cx)
    i2, j2 = np.divmod(blk, n_v)
    t2 = (k2 + 1) / c.T.reshape(-1)[blk]
    # 3: each patch's interior points, rows of gu - 1.
    nint = (gu - 1) * (gv - 1)
    start3 = base2 + int(cx.sum()) + np.cumsum(nint) - nint
    p3, k3 = _ragged(nint)
    b3, a3 = np.divmod(k3, gu[p3] - 1)
    patch = np.concatenate(
        [np.minimum(j1, n_v - 1) * n_u + np.minimum(i1, n_u - 1), j2 * n_u + np.minimum(i2, n_u - 1), p3]
    )
    s = np.concatenate([s1, (i2 == n_u).astype(np.float64), (a3 + 1) / gu[p3]])
    t = np.concatenate([(j1 == n_v).astype(np.float64), t2, (b3 + 1) / gv[p3]])

    def line1(j: I64, i: I64, k: I64) -> I64:  # point k of line v = knot j over column i
        out: I64 = start1[j, i] + k
        return out

    def line2(i: I64, j: I64, k: I64) -> I64:  # point k (0 < k < cuts) of line u = knot i over row j
        out: I64 = start2[i, j] + k - 1
        return out

    def inner(p: I64, a: I64, b: I64) -> I64:  # interior point (a, b) of patch p
        out: I64 = start3[p] + (b - 1) * (gu[p] - 1) + a - 1
        return out

    # Grid cells: whole gridded patches, and the lattices of the others. The nodes of each patch's
    # grid are looked up once, (gu + 1) x (gv + 1) of a gridded patch and the lattice points of another;
    # a lattice point is never on its patch's edge, so only gridded patches take the edge branches.
    lo = np.where(gridded, 0, 1)
    wu = np.where(gridded, gu + 1, gu - 1)
    wv = np.where(gridded, gv + 1, gv - 1)
    pn, kn = _ragged(wu * wv)
    bn, an = np.divmod(kn, wu[pn])
    an = an + lo[pn]
    bn = bn + lo[pn]
    jn, i_n = np.divmod(pn, n_u)
    gun, gvn = gu[pn], gv[pn]
    nodes = inner(pn, an, bn)
    nodes = np.where(an == gun, line2(i_n + 1, jn, bn * c[jn, i_n + 1] // gvn), nodes)
    nodes = np.where(an == 0, line2(i_n, jn, bn * c[jn, i_n] // gvn), nodes)
    nodes = np.where(bn == gvn, line1(jn + 1, i_n, an * h[jn + 1, i_n] // gun), nodes)
    nodes = np.where(bn == 0, line1(jn, i_n, an * h[jn, i_n] // gun), nodes)
    pc, kc = _ragged((wu - 1) * (wv - 1))
    bc, ac = np.divmod(kc, wu[pc] - 1)
    w = wu[pc]
    base = (np.cumsum(wu * wv) - wu * wv)[pc] + bc * w + ac
    n00, n10, n11, n01 = nodes[base], nodes[base + 1], nodes[base + w + 1], nodes[base + w]
    cells = np.stack([n00, n10, n11, n00, n11, n01], axis=1).reshape(-1, 3)

    # Bands between each edge of a lattice patch and its lattice: zip the edge's e segments and the
    # lattice row's n - 2 by their midpoints (edge segment k at (2k + 1) / 2e, lattice segment m at
    # (2m + 3) / 2n of the patch). Chains: the e + 1 edge points and n - 1 lattice points of each band;
    # sides bottom, top, left, right.
    rect = np.flatnonzero(~gridded)
    jr, ir = np.divmod(rect, n_u)
    side = np.tile(np.arange(4), len(rect))
    sp = np.repeat(rect, 4)
    sj, si = np.repeat(jr, 4), np.repeat(ir, 4)
    e = np.stack([h[jr, ir], h[jr + 1, ir], c[jr, ir], c[jr, ir + 1]], axis=1).reshape(-1)
    n = np.where(side < 2, gu[sp], gv[sp])
    qa, ka = _ragged(e + 1)
    sa, ja, ia, ea = side[qa], sj[qa], si[qa], e[qa]
    edge_chain = line2(np.where(sa == 3, ia + 1, ia), ja, ka)
    edge_chain = np.where(ka == ea, line1(ja + 1, ia, np.where(sa == 3, h[ja + 1, ia], 0)), edge_chain)
    edge_chain = np.where(ka == 0, line1(ja, ia, np.where(sa == 3, h[ja, ia], 0)), edge_chain)
    edge_chain = np.where(sa == 1, line1(ja + 1, ia, ka), edge_chain)
    edge_chain = np.where(sa == 0, line1(ja, ia, ka), edge_chain)
    qb, mb = _ragged(n - 1)
    sb, pb = side[qb], sp[qb]
    lattice_chain = inner(
        pb,
        np.where(sb < 2, mb + 1, np.where(sb == 2, 1, gu[pb] - 1)),
        np.where(sb == 0, 1, np.where(sb == 1, gv[pb] - 1, mb + 1)),
    )
    steps_a, local_a = _ragged(e)
    steps_b, local_b = _ragged(n - 2)
    strip = np.concatenate([steps_a, steps_b])
    is_edge = np.concatenate([np.ones(len(steps_a), bool), np.zeros(len(steps_b), bool)])
    key = np.concatenate([(2 * local_a + 1) / (2 * e[steps_a]), (2 * local_b + 3) / (2 * n[steps_b])])
    edge_first = np.array(_TIE_EDGE_FIRST)[side[strip]]
    order = np.lexsort((is_edge != edge_first, key, strip))
    strip, is_edge = strip[order], is_edge[order]
    # Each step's place along both chains: the edge and lattice steps taken before it in its band.
    first = np.cumsum(e + n - 2) - (e + n - 2)
    before_a = np.cumsum(is_edge) - is_edge
    before_a = before_a - before_a[first][strip]
    before_b = np.arange(len(strip)) - first[strip] - before_a
    chains = np.concatenate([edge_chain, lattice_chain])
    at_a = (np.cumsum(e + 1) - (e + 1))[strip] + before_a
    at_b = len(edge_chain) + (np.cumsum(n - 1) - (n - 1))[strip] + before_b
    third = chains[np.where(is_edge, at_a, at_b) + 1]
    ea, eb = chains[at_a], chains[at_b]
    band = np.where(is_edge[:, None], np.stack([ea, third, eb], 1), np.stack([ea, eb, third], 1))
    # The zip runs with increasing u or v: counter-clockwise for edge steps on the bottom and right
    # bands and for lattice steps on the top and left ones.
    flip = is_edge == ((side[strip] == 1) | (side[strip] == 2))
    band[flip] = band[flip][:, ::-1]
    tris = np.concatenate([cells, band]).astype(np.uint32)
    for arr in (patch, s, t, tris):
        arr.setflags(write=False)
    return patch, s, t, tris


# Topologies are small for the usual surfaces and repeat across a model; big ones are not kept.
_cached_topology = functools.lru_cache(maxsize=256)(_topology)
_CACHED_CELLS = 20_000


def bspline_surface_mesh(
    poles: ArrayLike,
    order_u: int,
    order_v: int,
    knots_u: ArrayLike | None = None,
    knots_v: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    *,
    closed_u: bool = False,
    closed_v: bool = False,
    weighted_poles: bool = True,
    options: StrokeOptions,
) -> Mesh:
    """Mesh of an (untrimmed) B-spline surface, vertex for vertex the one exportGraphics makes (see the
    notes above ``_TIE_EDGE_FIRST``).

    ``poles`` is the grid (num_v, num_u, 3) — u varies fastest, as the poles are stored in an iModel
    (BGFB ``BsplineSurface`` with ``numPolesU`` per row); ``weights`` (num_v, num_u). Trim boundaries
    are not applied. Normals follow dS/du x dS/dv and are averaged from the facets around each vertex.
    """
    grid = np.asarray(poles, dtype=np.float64)
    if grid.ndim != 3 or grid.shape[2] != 3:
        raise TessellationError(f"B-spline surface: poles must be a (num_v, num_u, 3) grid, got {grid.shape}")
    # Open each direction in turn (closing wraps poles along that axis).
    ctrl_u, ku = prepare_control(
        grid, order_u, knots_u, weights, closed_u, weighted_poles, "B-spline surface (u)", 1
    )
    # ctrl_u is (nu, nv, 4); open v on it (already homogeneous, so weights are in the 4th column).
    ctrl_v, kv = prepare_control(
        np.moveaxis(ctrl_u[..., :3], 0, 1),
        order_v,
        knots_v,
        np.moveaxis(ctrl_u[..., 3], 0, 1),
        closed_v,
        True,
        "B-spline surface (v)",
        0,
    )
    nets, su, sv = _bezier_patches(ku, order_u, kv, order_v, ctrl_v)
    phys_u, phys_v = _physically_closed(grid, weights, weighted_poles)
    (ui, ul, uh), (vi, vl, vh) = _patch_counts(nets, options)
    n_v, n_u = ui.shape
    h = _line_counts(ui, ul, uh, closed_v or phys_v)
    c = _line_counts(vi.T, vl.T, vh.T, closed_u or phys_u).T
    small = int((np.maximum(ui, 2) * np.maximum(vi, 2)).sum()) <= _CACHED_CELLS
    patch, s, t, tris = (_cached_topology if small else _topology)(
        n_v, n_u, ui.tobytes(), vi.tobytes(), h.tobytes(), np.ascontiguousarray(c).tobytes()
    )
    # Each vertex on its patch's Bezier net, at its local (s, t).
    tensor = _bernstein(order_v, t)[:, :, None] * _bernstein(order_u, s)[:, None, :]
    hpos = (tensor.reshape(-1, 1, order_v * order_u) @ nets.reshape(n_v * n_u, -1, 4)[patch])[:, 0]
    positions = hpos[:, :3] / hpos[:, 3:4]
    bu = np.append(ku[su], ku[su[-1] + 1])
    bv = np.append(kv[sv], kv[sv[-1] + 1])
    pv, pu = np.divmod(patch, n_u)
    params = np.stack([bu[pu] + (bu[pu + 1] - bu[pu]) * s, bv[pv] + (bv[pv + 1] - bv[pv]) * t], axis=1)
    mesh = Mesh(positions, np.zeros_like(positions, dtype=np.float32), tris, params=params, two_sided=True)
    return with_face_normals(mesh.without_degenerate())


def with_face_normals(mesh: Mesh) -> Mesh:
    """Vertex normals averaged from the area vectors of the triangles around each vertex."""
    area = mesh.triangle_normals()
    corners = mesh.indices.reshape(-1)
    weights = np.repeat(area, 3, axis=0)
    n = len(mesh.positions)
    acc: F64 = np.stack([np.bincount(corners, weights[:, c], minlength=n) for c in range(3)], axis=1)
    lengths = norms(acc)
    normals = acc / np.where(lengths > 0, lengths, 1.0)[:, None]
    return Mesh(
        mesh.positions,
        normals.astype(np.float32),
        mesh.indices,
        params=mesh.params,
        colors=mesh.colors,
        entry=mesh.entry,
        two_sided=mesh.two_sided,
    )
