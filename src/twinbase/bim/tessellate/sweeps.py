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
from collections.abc import Callable, Sequence

import mapbox_earcut
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._geom import F64, as_batch, as_vector, cross, is_full_circle, newell_normal, norms, unit
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
from .regions import earcut_rings, triangulate_polygons

_DEFAULT = StrokeOptions()


def _reversed(chain: Chain) -> Chain:
    return Chain(chain.points[::-1].copy(), -chain.tangents[::-1], chain.link[::-1].copy())


class _Parts:
    """Pieces of one mesh gathered as arrays, joined once at the end."""

    def __init__(self) -> None:
        self.positions: list[F64] = []
        self.normals: list[F64] = []
        self.tris: list[NDArray[np.int64]] = []
        self.count = 0

    def add(self, positions: F64, normals: F64, tris: NDArray[np.int64]) -> None:
        if not len(tris):
            return
        self.positions.append(positions.reshape(-1, 3))
        self.normals.append(np.broadcast_to(normals, positions.shape).reshape(-1, 3))
        self.tris.append(tris + self.count)
        self.count += len(self.positions[-1])

    def strip(self, rows: F64, normals: F64, link: NDArray[np.bool_], *, wrap_rows: bool = False) -> None:
        """Quads between consecutive rows (R, n, 3) over the linked columns; faces d/dcol x d/drow.
        ``wrap_rows`` joins the last row back to the first (a full rotation)."""
        n_rows, n = rows.shape[0], rows.shape[1]
        cols = np.flatnonzero(link)
        bands = n_rows if wrap_rows else n_rows - 1
        r = np.arange(bands)[:, None]
        c = cols[None, :]
        r1 = (r + 1) % n_rows
        a = r * n + c
        b = a + 1
        d = r1 * n + c
        cc = d + 1
        tris = np.stack([np.stack([a, b, cc], -1), np.stack([a, cc, d], -1)], axis=2).reshape(-1, 3)
        self.add(rows, normals, tris)

    def caps(self, polygons: list[F64], normal: F64, far: Callable[[F64], F64], far_normal: F64) -> None:
        """The region on ``polygons`` (outer first) facing ``-normal``, and the same triangles carried
        by ``far`` facing ``far_normal``: both ends of a sweep from one triangulation."""
        if len(polygons[0]) < 3:
            return
        points, tris, n = triangulate_polygons(polygons, normal)
        tris64 = tris.astype(np.int64)
        self.add(points, -n, tris64[:, ::-1])
        self.add(far(points), far_normal, tris64)

    def region(self, polygons: list[F64], normal: F64, *, facing: float) -> None:
        """The region on ``polygons`` (outer first) facing ``facing * normal``."""
        points, tris, n = triangulate_polygons(polygons, normal)
        tris64 = tris.astype(np.int64)
        self.add(points, facing * n, tris64 if facing > 0 else tris64[:, ::-1])

    def mesh(self, two_sided: bool) -> Mesh:
        if not self.tris:
            return Mesh.empty()
        mesh = Mesh(
            np.concatenate(self.positions),
            np.concatenate(self.normals).astype(np.float32),
            np.concatenate(self.tris).astype(np.uint32),
            two_sided=two_sided,
        )
        return mesh.without_degenerate()


def _oriented(chains: list[Chain], direction: F64) -> list[Chain]:
    """Outer loop counter-clockwise about ``direction``, holes clockwise."""
    out = []
    for i, chain in enumerate(chains):
        area = float(np.dot(newell_normal(chain.polygon()), direction)) if len(chain.points) > 2 else 0.0
        want_positive = i == 0
        out.append(_reversed(chain) if (area > 0) != want_positive and area != 0 else chain)
    return out


def region_chains(loops: Sequence[Curve], options: StrokeOptions) -> list[Chain]:
    """A parity region's loops (outer first) stroked and closed, as ``extrude_regions`` takes them."""
    return _profile_chains(loops, options, True)


def _profile_chains(profile: Sequence[Curve], options: StrokeOptions, closed: bool) -> list[Chain]:
    if isinstance(profile, np.ndarray) or not len(profile):
        raise TessellationError("sweep: the profile must be a non-empty list of loops or paths")
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
    parts = _Parts()
    for chain in chains:
        rows = chain.points[None, :, :] + f * v if steps > 1 else np.stack([chain.points, chain.points + v])
        normal = unit(cross(chain.tangents, v))
        parts.strip(rows, np.broadcast_to(normal, rows.shape), chain.link)
    if closed and capped and chains:
        polygons = [c.polygon() for c in chains]
        up = unit(newell_normal(polygons[0]))
        parts.caps(polygons, up, lambda pts: pts + v, up)
    return parts.mesh(two_sided=not (closed and capped))


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
    parts = _Parts()
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
            parts.strip(rows[:-1], n_rows[:-1], chain.link, wrap_rows=True)
        else:
            parts.strip(rows, n_rows, chain.link)
    if closed and capped and not full:
        polygons = [c.polygon() for c in chains]
        up = unit(newell_normal(polygons[0]))
        rot = (
            np.cos(total) * np.eye(3)
            + np.sin(total) * _cross_matrix(a)
            + (1 - np.cos(total)) * np.outer(a, a)
        )
        parts.caps(polygons, up, lambda pts: (pts - o) @ rot.T + o, rot @ up)
    return parts.mesh(two_sided=not (closed and (capped or full)))


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
    parts = _Parts()
    for si in range(len(chains) - 1):
        for a, b in zip(chains[si], chains[si + 1], strict=True):
            across = b.points - a.points
            steps = distance_segments(float(norms(across).max()), options)
            f = (np.arange(steps + 1) / steps)[:, None, None]
            rows = (1 - f) * a.points[None] + f * b.points[None]
            tangents = (1 - f) * a.tangents[None] + f * b.tangents[None]
            normals = unit(cross(tangents, np.broadcast_to(across, rows.shape)))
            parts.strip(rows, normals, a.link & b.link)
    if closed and capped:
        first = [c.polygon() for c in chains[0]]
        last = [c.polygon() for c in chains[-1]]
        if len(first[0]) >= 3 and len(last[0]) >= 3:
            # The end sections are congruent, not translated copies: each is triangulated on its own.
            parts.region(first, unit(newell_normal(first[0])), facing=-1.0)
            parts.region(last, unit(newell_normal(last[0])), facing=1.0)
    return parts.mesh(two_sided=not (closed and capped))


# -- many straight-edged extrusions at once -------------------------------------------------------


def extrude_polygons(
    polygons: Sequence[ArrayLike] | tuple[ArrayLike, ArrayLike],
    vectors: ArrayLike,
    capped: bool = True,
    *,
    options: StrokeOptions = _DEFAULT,
) -> Mesh:
    """Many extrusions of plain polygons (no holes, no curves: the walls and slabs of most BIM
    models) in one call; ``entry`` is the polygon number. Same facets as ``linear_sweep`` of each.

    ``polygons``: a list of (n_i, 3) point arrays, or packed as ``(points (N, 3), counts (k,))``. A
    repeated closing point is dropped. ``vectors``: (k, 3) or one (3,) for all. Flat walls, one quad
    per edge; caps are fans when convex and earcut otherwise. With ``max_edge_length`` set each
    polygon goes through ``linear_sweep``."""
    if isinstance(polygons, tuple) and len(polygons) == 2 and np.asarray(polygons[1]).ndim == 1:
        points = np.asarray(polygons[0], dtype=np.float64).reshape(-1, 3)
        counts = np.asarray(polygons[1], dtype=np.int64).reshape(-1)
    else:
        arrays = [np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in polygons]
        points = np.concatenate(arrays) if arrays else np.zeros((0, 3))
        counts = np.array([len(a) for a in arrays], dtype=np.int64)
    k = len(counts)
    if int(counts.sum()) != len(points) or (counts < 0).any():
        raise TessellationError("extrude_polygons: the ring sizes do not add up to the points")
    if not np.isfinite(points).all():
        raise TessellationError("extrude_polygons: coordinates must be finite")
    v = np.broadcast_to(np.asarray(vectors, dtype=np.float64), (k, 3))
    if options.edge_length > 0:
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        meshes = [
            linear_sweep([points[s : s + n]], v[i], capped=capped, options=options)
            for i, (s, n) in enumerate(zip(starts, counts, strict=True))
        ]
        return Mesh.concat(meshes)
    ring = np.repeat(np.arange(k), counts)
    # Drop a closing point that repeats the first, and any point equal to the one before it.
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    keep = np.ones(len(points), bool)
    same_prev = np.zeros(len(points), bool)
    same_prev[1:] = (points[1:] == points[:-1]).all(axis=1) & (ring[1:] == ring[:-1])
    keep &= ~same_prev
    last = start + counts - 1
    closing = counts > 1
    closing[closing] = (points[last[closing]] == points[start[closing]]).all(axis=1)
    keep[last[closing]] = False
    points, ring = points[keep], ring[keep]
    counts = np.bincount(ring, minlength=k)
    good = counts >= 3
    if not good.all():
        raise TessellationError(
            f"extrude_polygons: polygon {int(np.flatnonzero(~good)[0])} has fewer than 3 points"
        )
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    nxt = np.arange(len(points)) + 1
    nxt[start + counts - 1] = start
    centre = np.stack([np.bincount(ring, points[:, i], k) for i in range(3)], axis=1) / counts[:, None]
    rel = points - centre[ring]
    terms = cross(rel, rel[nxt])
    area = np.asarray(
        0.5 * np.stack([np.bincount(ring, terms[:, i], k) for i in range(3)], axis=1), np.float64
    )
    sign = np.where(np.einsum("ki,ki->k", area, v) < 0, -1.0, 1.0)
    # Walls: one quad per edge, corners (p, q, q + v, p + v), facing (q - p) x v for a ring that runs
    # counter-clockwise about v; a clockwise ring is walked backwards by reversing the winding.
    p = points
    q = points[nxt]
    vr = v[ring]
    wall_pos = np.stack([p, q, q + vr, p + vr], axis=1)  # (E, 4, 3)
    wall_normal = unit(cross(q - p, vr)) * sign[ring][:, None]
    quad = np.array([[0, 1, 2], [0, 2, 3]])
    quad_rev = quad[:, ::-1]
    e = len(points)
    wall_tris = (
        np.where((sign[ring] > 0)[:, None, None], quad[None], quad_rev[None])
        + (np.arange(e) * 4)[:, None, None]
    )
    positions = [wall_pos.reshape(-1, 3)]
    normals = [np.repeat(wall_normal, 4, axis=0)]
    tris = [wall_tris.reshape(-1, 3)]
    entries = [np.repeat(ring, 4)]
    count = 4 * e
    if capped:
        cap = _polygon_triangles(points, ring, counts, start, nxt, area)  # corner numbers, facing +area
        up = unit(area) * sign[:, None]
        cap_ring = ring[cap[:, 0]]
        # Bottom faces -up: reverse the triangles of rings whose area already points up.
        flip = sign[cap_ring] > 0
        bottom = np.where(flip[:, None], cap[:, ::-1], cap)
        top = np.where(flip[:, None], cap, cap[:, ::-1])
        positions += [points, points + v[ring]]
        normals += [-up[ring], up[ring]]
        tris += [bottom + count, top + count + e]
        entries += [ring, ring]
    mesh = Mesh(
        np.concatenate(positions),
        np.concatenate(normals).astype(np.float32),
        np.concatenate(tris).astype(np.uint32),
        entry=np.concatenate(entries).astype(np.int32),
        two_sided=not capped,
    )
    return mesh.without_degenerate()


def _polygon_triangles(
    points: F64,
    ring: NDArray[np.int64],
    counts: NDArray[np.int64],
    start: NDArray[np.int64],
    nxt: NDArray[np.int64],
    area: F64,
) -> NDArray[np.int64]:
    """Triangles (as point numbers) filling each ring, wound like the ring: fans for convex rings,
    earcut for the others."""
    prv = np.empty_like(nxt)
    prv[nxt] = np.arange(len(nxt))
    e_prev = points - points[prv]
    e_next = points[nxt] - points
    turn = np.einsum("ij,ij->i", cross(e_prev, e_next), area[ring])
    scale = norms(e_prev) * norms(e_next) * norms(area)[ring]
    concave = np.zeros(len(counts), bool)
    concave[ring[turn < -1e-9 * scale]] = True
    out: list[NDArray[np.int64]] = []
    fan = np.flatnonzero(~concave)
    if len(fan):
        per = counts[fan] - 2
        f = np.repeat(fan, per)
        first = np.concatenate([[0], np.cumsum(per)[:-1]])
        j = np.arange(int(per.sum())) - np.repeat(first, per) + 1
        s = start[f]
        out.append(np.stack([s, s + j, s + j + 1], axis=1))
    out.append(earcut_rings(points, start, counts, area, np.flatnonzero(concave)))
    return np.concatenate(out) if out else np.zeros((0, 3), np.int64)


# -- many extrusions of stroked regions at once ---------------------------------------------------


def extrude_regions(regions: Sequence[Sequence[Chain]], vectors: ArrayLike, capped: bool = True) -> Mesh:
    """Many capped (or open-ended) extrusions of parity regions in one call; ``entry`` is the region
    number. Each region is its loops already stroked (``curve_chain(loop, options, close=True)``),
    outer first. Same facets as ``linear_sweep`` of each (one band: no ``max_edge_length``).

    Extrusions of plates with holes, rounded profiles and pipes are a tenth of a typical model and
    cost a thousand small numpy calls each one at a time; here the walls of every loop are one strip
    operation, the caps one projection, and only the earcut call is per region."""
    k = len(regions)
    v_region = as_batch(vectors, k, (3,), "extrude_regions vectors")
    chains = [c for r in regions for c in r if len(c.points) >= 2]
    if not chains:
        return Mesh.empty()
    chain_region = np.fromiter(
        (i for i, r in enumerate(regions) for c in r if len(c.points) >= 2), np.int64, len(chains)
    )
    first_of = np.ones(len(chains), bool)
    first_of[1:] = chain_region[1:] != chain_region[:-1]  # the outer loop is each region's first
    sizes = np.fromiter((len(c.points) for c in chains), np.int64, len(chains))
    n = int(sizes.sum())
    points = np.concatenate([c.points for c in chains])
    tangents = np.concatenate([c.tangents for c in chains])
    link = np.concatenate([np.append(c.link, False) for c in chains])  # segment i -> i + 1 is a wall
    chain_of = np.repeat(np.arange(len(chains)), sizes)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    v = v_region[chain_region]  # (C, 3)
    vp = v[chain_of]

    # Orientation as ``_oriented``: outer loops counter-clockwise about v, holes clockwise. A loop the
    # other way keeps its points; its walls' winding and normals are turned instead.
    area = _ring_areas(points, chain_of, start, sizes)
    along = np.einsum("ci,ci->c", area, v)
    sign = np.where((along != 0) & ((along > 0) != first_of), -1.0, 1.0)
    wall_normal = unit(cross(tangents, vp)) * sign[chain_of][:, None]
    seg = np.flatnonzero(link)
    a, b = seg, seg + 1
    quads = np.stack([np.stack([a, b, b + n], 1), np.stack([a, b + n, a + n], 1)], 1)  # (S, 2, 3)
    quads = np.where((sign[chain_of[seg]] > 0)[:, None, None], quads, quads[:, :, ::-1])
    positions = [points, points + vp]
    normals = [wall_normal, wall_normal]
    tris = [quads.reshape(-1, 3)]
    entries = [chain_region[chain_of], chain_region[chain_of]]
    count = 2 * n
    if capped:
        cap_points, cap_region, cap_tris, up = _region_caps(
            points, chain_of, start, sizes, chain_region, first_of, area, sign, k
        )
        if len(cap_tris):
            vc = v_region[cap_region]
            positions += [cap_points, cap_points + vc]
            normals += [-up[cap_region], up[cap_region]]
            tris += [cap_tris[:, ::-1] + count, cap_tris + count + len(cap_points)]
            entries += [cap_region, cap_region]
    mesh = Mesh(
        np.concatenate(positions),
        np.concatenate(normals).astype(np.float32),
        np.concatenate(tris).astype(np.uint32),
        entry=np.concatenate(entries).astype(np.int32),
        two_sided=not capped,
    )
    return mesh.without_degenerate()


def _ring_areas(
    points: F64, ring: NDArray[np.int64], start: NDArray[np.int64], sizes: NDArray[np.int64]
) -> F64:
    """Newell's area vector of each ring (points ``start[r]:start[r] + sizes[r]``, closed implicitly;
    repeated points add nothing), about each ring's centre for accuracy far from the origin."""
    k = len(sizes)
    nxt = np.arange(len(points)) + 1
    nxt[start + sizes - 1] = start
    centre = np.stack([np.bincount(ring, points[:, i], k) for i in range(3)], axis=1) / sizes[:, None]
    rel = points - centre[ring]
    terms = cross(rel, rel[nxt])
    out: F64 = np.asarray(
        0.5 * np.stack([np.bincount(ring, terms[:, i], k) for i in range(3)], axis=1), np.float64
    )
    return out


def _region_caps(
    points: F64,
    chain_of: NDArray[np.int64],
    start: NDArray[np.int64],
    sizes: NDArray[np.int64],
    chain_region: NDArray[np.int64],
    first_of: NDArray[np.bool_],
    area: F64,
    sign: F64,
    k: int,
) -> tuple[F64, NDArray[np.int64], NDArray[np.int64], F64]:
    """Each region's cap as ``triangulate_polygons`` makes it: the loops' polygons (run joins and the
    closing point dropped; holes under 3 points left out; no cap when the outer loop has under 3),
    triangles counter-clockwise about the region's ``up`` (the outer loop's unit area vector, turned
    to run along the sweep). Returns the cap points, their region, the triangles and ``up`` per region."""
    keep = np.ones(len(points), bool)
    keep[1:] = (points[1:] != points[:-1]).any(axis=1) | (chain_of[1:] != chain_of[:-1])
    last = start + sizes - 1
    closing = (points[last] == points[start]).all(axis=1) & (sizes > 1)
    keep[last[closing]] = False
    poly_sizes = np.bincount(chain_of[keep], minlength=len(sizes))
    usable = poly_sizes >= 3
    outer_ok = np.zeros(k, bool)
    outer_ok[chain_region[first_of & usable]] = True
    use_chain = usable & outer_ok[chain_region]
    keep &= use_chain[chain_of]
    q = points[keep]
    q_chain = chain_of[keep]
    q_region = chain_region[q_chain]
    up = np.zeros((k, 3))
    outer = np.flatnonzero(first_of)
    up[chain_region[outer]] = unit(area[outer]) * sign[outer][:, None]
    if not len(q):
        return q, q_region, np.zeros((0, 3), np.int64), up
    # Each region's plane frame (x, y, up), for all cap points at once.
    nz = up[q_region]
    helper = np.where((np.abs(nz[:, 0]) < 0.9)[:, None], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    x = unit(cross(helper, nz))
    y = cross(nz, x)
    flat = np.ascontiguousarray(np.stack([np.einsum("ij,ij->i", q, x), np.einsum("ij,ij->i", q, y)], 1))
    region_start = np.flatnonzero(np.concatenate([[True], q_region[1:] != q_region[:-1]]))
    region_end = np.append(region_start[1:], len(q))
    ring_end = np.flatnonzero(np.concatenate([q_chain[1:] != q_chain[:-1], [True]])) + 1
    out: list[NDArray[np.int64]] = []
    for s, e in zip(region_start.tolist(), region_end.tolist(), strict=True):
        ends = ring_end[(ring_end > s) & (ring_end <= e)] - s
        local = flat[s:e] - flat[s]  # near the origin for earcut's arithmetic
        found = mapbox_earcut.triangulate_float64(local, ends.astype(np.uint32))
        out.append(found.reshape(-1, 3).astype(np.int64) + s)
    cap = np.concatenate(out)
    p0, p1, p2 = flat[cap[:, 0]], flat[cap[:, 1]], flat[cap[:, 2]]
    turn = (p1[:, 0] - p0[:, 0]) * (p2[:, 1] - p0[:, 1]) - (p1[:, 1] - p0[:, 1]) * (p2[:, 0] - p0[:, 0])
    cap = np.where((turn < 0)[:, None], cap[:, [0, 2, 1]], cap)[turn != 0]
    return q, q_region, cap, up
