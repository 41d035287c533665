"""Sweeps of curves and regions (``DgnExtrusion``, ``DgnRotationalSweep``, ``DgnRuledSweep``).

A *profile* is a list of loops or paths (each: curve primitives end to end, or an (n, 3) point array).
With ``closed=True`` it is a parity region: the first loop is the outer boundary, the others are holes
(a union region is swept one region at a time and the meshes concatenated). With ``closed=False`` the
curves are open paths: only the swept surface is made, two-sided, never capped.

Side walls are quad strips between corresponding stroke points, one strip per stroked run: an arc or
a B-spline shades smoothly along its length, each line-string segment is flat, so corners stay sharp.
Vertex normals are ``tangent x sweep direction``, and loops are turned so that walls face out of the
solid: the outer loop runs counter-clockwise seen from where the sweep goes, holes clockwise. Caps are
the region triangulated with earcut, on the same stroke points as the walls, so a capped sweep is
watertight.

Counts follow the native library: every curve is stroked as on its own (``options``); a rotation gets
``arc_segments(r, sweep)`` steps with r the largest distance of the profile from the axis; a linear or
ruled sweep is one band (more with ``max_edge_length``); ruled sections stroke each corresponding
primitive with the larger of their counts, so the sections line up point for point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from ._geom import F64, as_vector, cross, is_full_circle, newell_normal, norms, unit
from .curves import (
    Chain,
    Curve,
    LineString,
    as_primitives,
    close_gaps,
    curve_chain,
    piece_counts,
    primitive_chain,
)
from .errors import TessellationError
from .mesh import Mesh
from .options import StrokeOptions, arc_segments, distance_segments
from .regions import triangulate_polygons

_DEFAULT = StrokeOptions()


def _reversed(chain: Chain) -> Chain:
    return Chain(chain.points[::-1].copy(), -chain.tangents[::-1], chain.link[::-1].copy())


def _strip(rows: F64, normals: F64, link: np.ndarray, *, wrap_rows: bool = False) -> Mesh:
    """Quads between consecutive rows (R, n, 3) over the linked columns; faces d/dcol x d/drow.
    ``wrap_rows`` joins the last row back to the first (a full rotation)."""
    n_rows, n = rows.shape[0], rows.shape[1]
    cols = np.flatnonzero(link)
    bands = n_rows if wrap_rows else n_rows - 1
    r = np.arange(bands)[:, None]
    c = cols[None, :]
    r1 = (r + 1) % n_rows
    a = r * n + c
    b = r * n + c + 1
    cc = r1 * n + c + 1
    d = r1 * n + c
    tris = np.concatenate([np.stack([a, b, cc], -1).reshape(-1, 3), np.stack([a, cc, d], -1).reshape(-1, 3)])
    return Mesh(rows.reshape(-1, 3), normals.reshape(-1, 3).astype(np.float32), tris.astype(np.uint32))


def _cap(polygons: list[F64], normal: F64, *, facing: float) -> Mesh:
    """The region on ``polygons`` (outer first) facing ``facing * normal``."""
    points, tris, n = triangulate_polygons(polygons, normal)
    mesh = Mesh(points, np.broadcast_to(n.astype(np.float32), points.shape), tris)
    return mesh if facing > 0 else mesh.flipped()


def _oriented(chains: list[Chain], direction: F64) -> list[Chain]:
    """Outer loop counter-clockwise about ``direction``, holes clockwise."""
    out = []
    for i, chain in enumerate(chains):
        area = float(np.dot(newell_normal(chain.polygon()), direction)) if len(chain.points) > 2 else 0.0
        want_positive = i == 0
        out.append(_reversed(chain) if (area > 0) != want_positive and area != 0 else chain)
    return out


def _finish(parts: list[Mesh], *, two_sided: bool) -> Mesh:
    parts = [p for p in parts if p.n_triangles]
    if not parts:
        return Mesh.empty()
    mesh = Mesh.concat(parts).without_degenerate()
    mesh.entry = None
    mesh.two_sided = two_sided
    return mesh


def _profile_chains(profile: Sequence[Curve], options: StrokeOptions, closed: bool) -> list[Chain]:
    if not profile:
        raise TessellationError("sweep: the profile has no curves")
    chains = [curve_chain(c, options, close=closed) for c in profile]
    return [c for c in chains if len(c.points) >= 2]


# -- linear sweep ---------------------------------------------------------------------------------


def linear_sweep(
    profile: Sequence[Curve],
    vector: ArrayLike,
    *,
    closed: bool = True,
    capped: bool = True,
    options: StrokeOptions = _DEFAULT,
) -> Mesh:
    """Extrusion of ``profile`` along ``vector``; see the module notes for the profile."""
    v = as_vector(vector, "linear sweep vector")
    length = float(np.linalg.norm(v))
    if length == 0:
        raise TessellationError("linear sweep: the sweep vector is zero")
    chains = _profile_chains(profile, options, closed)
    if closed:
        chains = _oriented(chains, v)
    steps = distance_segments(length, options)
    f = (np.arange(steps + 1) / steps)[:, None, None]
    parts = []
    for chain in chains:
        rows = chain.points[None, :, :] + f * v
        normal = unit(cross(chain.tangents, v))
        parts.append(_strip(rows, np.broadcast_to(normal, rows.shape), chain.link))
    if closed and capped and chains:
        polygons = [c.polygon() for c in chains]
        if len(polygons[0]) >= 3:
            up = unit(newell_normal(polygons[0]))
            parts.append(_cap(polygons, up, facing=-1.0))
            parts.append(_cap([p + v for p in polygons], up, facing=1.0))
    return _finish(parts, two_sided=not (closed and capped))


# -- rotational sweep -----------------------------------------------------------------------------


def rotational_sweep(
    profile: Sequence[Curve],
    axis_origin: ArrayLike,
    axis_direction: ArrayLike,
    sweep: float,
    *,
    closed: bool = True,
    capped: bool = True,
    options: StrokeOptions = _DEFAULT,
) -> Mesh:
    """``profile`` rotated about the axis through ``axis_origin`` along ``axis_direction`` by ``sweep``
    radians (right-hand rule). A full turn has no caps; a partial one is capped when asked."""
    o = as_vector(axis_origin, "rotational sweep axis origin")
    a = as_vector(axis_direction, "rotational sweep axis direction")
    if not np.linalg.norm(a) > 0:
        raise TessellationError("rotational sweep: the axis direction is zero")
    a = a / np.linalg.norm(a)
    total = float(sweep)
    if not math.isfinite(total) or total == 0:
        raise TessellationError(f"rotational sweep: bad sweep angle {sweep!r}")
    if total < 0:
        a = -a
        total = -total
    full = is_full_circle(total)
    total = min(total, 2.0 * math.pi)
    chains = _profile_chains(profile, options, closed)
    if not chains:
        return Mesh.empty()
    all_pts = np.concatenate([c.points for c in chains])
    rel_all = all_pts - o
    radial_all = rel_all - np.outer(rel_all @ a, a)
    r_all = norms(radial_all)
    r_max = float(r_all.max())
    if r_max == 0:
        raise TessellationError("rotational sweep: the profile lies on the axis")
    far = radial_all[int(np.argmax(r_all))]
    if closed:
        centroid = chains[0].polygon().mean(axis=0) - o
        ref = cross(a, centroid - np.dot(centroid, a) * a)
        if not np.linalg.norm(ref) > 1e-12 * r_max:
            ref = cross(a, far)
        chains = _oriented(chains, ref)
    steps = arc_segments(r_max, total, options)
    angles = total * np.arange(steps + 1) / steps
    cos = np.cos(angles)[:, None, None]
    sin = np.sin(angles)[:, None, None]
    snap = 1e-12 * max(r_max, float(np.abs(all_pts).max()))
    parts = []
    for chain in chains:
        rel = chain.points - o
        h = rel @ a
        radial = rel - np.outer(h, a)
        rlen = norms(radial)
        radial[rlen <= snap] = 0.0
        base = o + np.outer(h, a)
        swing = cross(a, radial)
        rows = base[None] + cos * radial[None] + sin * swing[None]
        # Sweep direction per point; on (or very near) the axis use the farthest point's, as native.
        sweep_dir = np.where((rlen < 0.01 * r_max)[:, None], cross(a, far), swing)
        n0 = unit(cross(chain.tangents, sweep_dir))
        n_rows = cos * n0[None] + sin * cross(a, n0)[None] + (1.0 - cos) * (n0 @ a)[None, :, None] * a
        if full:
            parts.append(_strip(rows[:-1], n_rows[:-1], chain.link, wrap_rows=True))
        else:
            parts.append(_strip(rows, n_rows, chain.link))
    if closed and capped and not full:
        polygons = [c.polygon() for c in chains]
        if len(polygons[0]) >= 3:
            up = unit(newell_normal(polygons[0]))
            rot = (
                np.cos(total) * np.eye(3)
                + np.sin(total) * _cross_matrix(a)
                + (1 - np.cos(total)) * np.outer(a, a)
            )
            parts.append(_cap(polygons, up, facing=-1.0))
            parts.append(_cap([(p - o) @ rot.T + o for p in polygons], rot @ up, facing=1.0))
    return _finish(parts, two_sided=not (closed and (capped or full)))


def _cross_matrix(a: F64) -> F64:
    return np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])


# -- ruled sweep ----------------------------------------------------------------------------------


def _signature(prim: object) -> tuple[str, int]:
    if isinstance(prim, LineString):
        return ("linestring", len(np.asarray(prim.points).reshape(-1, 3)))
    return (type(prim).__name__, 0)


def _section_chains(
    sections: Sequence[Sequence[Curve]], options: StrokeOptions, closed: bool
) -> list[list[Chain]]:
    """Stroke all sections so that corresponding loops have the same points count and links."""
    loops = [[as_primitives(c) for c in section] for section in sections]
    shape = [[[_signature(p) for p in loop] for loop in section] for section in loops]
    if all(s == shape[0] for s in shape):
        out: list[list[Chain]] = [[] for _ in loops]
        for li in range(len(loops[0])):
            counts = []
            for pi in range(len(loops[0][li])):
                per = [piece_counts(loops[si][li][pi], options) for si in range(len(loops))]
                counts.append(np.max(np.stack(per), axis=0))
            for si in range(len(loops)):
                chains = [
                    primitive_chain(p, cnt, options) for p, cnt in zip(loops[si][li], counts, strict=True)
                ]
                out[si].append(close_gaps(chains, closed))
        if all(
            len(out[si][li].points) == len(out[0][li].points) and (out[si][li].link == out[0][li].link).all()
            for si in range(len(out))
            for li in range(len(out[0]))
        ):
            return out
    # Different structures: resample every loop by arc length to a common number of points.
    if any(len(section) != len(sections[0]) for section in sections):
        raise TessellationError("ruled sweep: the sections have different numbers of loops")
    stroked = [[curve_chain(c, options, close=closed) for c in section] for section in sections]
    result: list[list[Chain]] = [[] for _ in sections]
    for li in range(len(sections[0])):
        m = max(len(stroked[si][li].points) for si in range(len(sections)))
        for si in range(len(sections)):
            result[si].append(_resample(stroked[si][li].points, m))
    return result


def _resample(points: F64, m: int) -> Chain:
    d = np.concatenate([[0.0], np.cumsum(norms(np.diff(points, axis=0)))])
    s = np.linspace(0.0, d[-1], m)
    pts = np.stack([np.interp(s, d, points[:, i]) for i in range(3)], axis=1)
    t = np.gradient(pts, axis=0) if m > 1 else np.zeros_like(pts)
    return Chain(pts, unit(t), np.ones(m - 1, bool))


def ruled_sweep(
    sections: Sequence[Sequence[Curve]],
    *,
    closed: bool = True,
    capped: bool = True,
    options: StrokeOptions = _DEFAULT,
) -> Mesh:
    """Ruled surfaces between successive ``sections`` (each a profile, all of the same structure);
    capped with the first and last sections when closed."""
    if len(sections) < 2:
        raise TessellationError("ruled sweep: needs at least two sections")
    chains = _section_chains(sections, options, closed)
    if not chains[0]:
        return Mesh.empty()
    if closed:
        d = chains[1][0].polygon().mean(axis=0) - chains[0][0].polygon().mean(axis=0)
        if not np.linalg.norm(d) > 0:
            d = newell_normal(chains[0][0].polygon())
        for li in range(len(chains[0])):
            area = float(np.dot(newell_normal(chains[0][li].polygon()), d))
            if area != 0 and (area > 0) != (li == 0):
                for si in range(len(chains)):
                    chains[si][li] = _reversed(chains[si][li])
    parts = []
    for si in range(len(chains) - 1):
        for a, b in zip(chains[si], chains[si + 1], strict=True):
            across = b.points - a.points
            steps = distance_segments(float(norms(across).max()), options)
            f = (np.arange(steps + 1) / steps)[:, None, None]
            rows = (1 - f) * a.points[None] + f * b.points[None]
            tangents = (1 - f) * a.tangents[None] + f * b.tangents[None]
            normals = unit(cross(tangents, np.broadcast_to(across, rows.shape)))
            parts.append(_strip(rows, normals, a.link & b.link))
    if closed and capped:
        first = [c.polygon() for c in chains[0]]
        last = [c.polygon() for c in chains[-1]]
        if len(first[0]) >= 3 and len(last[0]) >= 3:
            parts.append(_cap(first, unit(newell_normal(first[0])), facing=-1.0))
            parts.append(_cap(last, unit(newell_normal(last[0])), facing=1.0))
    return _finish(parts, two_sided=not (closed and capped))
