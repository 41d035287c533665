"""Planar regions (an outer loop with holes; unions of those) triangulated with earcut.

Earcut (``mapbox-earcut``) works in 2D, so each region is projected onto its own plane: the normal is
Newell's area vector of the outer loop (exact for any planar polygon and pointing by the right-hand
rule of the loop's direction), with the smallest principal axis as a fallback when the loop has no
area. The triangles are wound counter-clockwise about that normal.
"""

from __future__ import annotations

from collections.abc import Sequence

import mapbox_earcut
import numpy as np

from ._geom import F64, I64, U32, perpendicular_frame, plane_normal
from .curves import Curve, curve_chain
from .errors import TessellationError
from .mesh import Mesh
from .options import StrokeOptions


def triangulate_polygons(polygons: Sequence[F64], normal: F64 | None = None) -> tuple[F64, U32, F64]:
    """Triangles filling ``polygons[0]`` minus the holes ``polygons[1:]`` (each (n, 3), not closed by
    a repeated point). Returns the stacked points, triangles (m, 3) into them, and the unit normal
    the triangles face (``normal`` if given, otherwise the outer polygon's)."""
    if not polygons or len(polygons[0]) < 3:
        raise TessellationError("region: the outer loop needs at least 3 distinct points")
    loops = [polygons[0]] + [h for h in polygons[1:] if len(h) >= 3]
    n = plane_normal(loops[0]) if normal is None else normal / np.linalg.norm(normal)
    x, y = perpendicular_frame(n)
    points = np.concatenate(loops)
    origin = loops[0].mean(axis=0)
    flat = np.ascontiguousarray((points - origin) @ np.stack([x, y]).T)
    ends = np.cumsum([len(loop) for loop in loops]).astype(np.uint32)
    tris = mapbox_earcut.triangulate_float64(flat, ends).reshape(-1, 3).astype(np.int64)
    if len(tris):
        a = flat[tris[:, 0]]
        b = flat[tris[:, 1]]
        c = flat[tris[:, 2]]
        cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        tris = np.where((cross < 0)[:, None], tris[:, [0, 2, 1]], tris)
        tris = tris[cross != 0]
    return points, tris.astype(np.uint32), n


def earcut_rings(points: F64, start: I64, counts: I64, normals: F64, rings: I64) -> I64:
    """Triangles (as point numbers) filling each of ``rings`` (single loops, no holes: ``points[start[r]:
    start[r] + counts[r]]``), wound counter-clockwise about ``normals[r]``. The projections are made
    for all rings at once; only the earcut call is per ring."""
    if not len(rings):
        return np.zeros((0, 3), np.int64)
    n = normals[rings] / np.linalg.norm(normals[rings], axis=1)[:, None]
    helper = np.where((np.abs(n[:, 0]) < 0.9)[:, None], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    x = np.cross(helper, n)
    x /= np.linalg.norm(x, axis=1)[:, None]
    y = np.cross(n, x)
    sizes = counts[rings]
    owner = np.repeat(np.arange(len(rings)), sizes)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    idx = np.repeat(start[rings] - first, sizes) + np.arange(int(sizes.sum()))
    rel = points[idx] - points[np.repeat(start[rings], sizes)]
    flat = np.ascontiguousarray(
        np.stack([np.einsum("ij,ij->i", rel, x[owner]), np.einsum("ij,ij->i", rel, y[owner])], 1)
    )
    out: list[I64] = []
    for r in range(len(rings)):
        a, m = int(first[r]), int(sizes[r])
        local = mapbox_earcut.triangulate_float64(flat[a : a + m], np.array([m], np.uint32))
        out.append(local.reshape(-1, 3).astype(np.int64) + a)
    tris = np.concatenate(out)
    p0, p1, p2 = flat[tris[:, 0]], flat[tris[:, 1]], flat[tris[:, 2]]
    cross2 = (p1[:, 0] - p0[:, 0]) * (p2[:, 1] - p0[:, 1]) - (p1[:, 1] - p0[:, 1]) * (p2[:, 0] - p0[:, 0])
    tris = np.where((cross2 < 0)[:, None], tris[:, [0, 2, 1]], tris)
    result: I64 = idx[tris[cross2 != 0]]
    return result


def region_polygons(loops: Sequence[Curve], options: StrokeOptions) -> list[F64]:
    """Stroke each loop of a region and return its polygon (closed implicitly)."""
    return [curve_chain(loop, options, close=True).polygon() for loop in loops]


def planar_region(loops: Sequence[Curve], options: StrokeOptions) -> Mesh:
    """A parity region: ``loops[0]`` is the outer loop, the others are holes in it. Each loop is a
    curve (primitives end to end, or an (n, 3) point array); an open loop is closed with a straight
    edge. Facets face the outer loop's right-hand-rule normal; the mesh is two-sided."""
    if isinstance(loops, np.ndarray) or not len(loops):
        raise TessellationError("region: expected a non-empty list of loops (outer first)")
    points, tris, normal = triangulate_polygons(region_polygons(loops, options))
    normals = np.broadcast_to(normal.astype(np.float32), points.shape)
    return Mesh(points, normals, tris, two_sided=True).subset(np.ones(len(tris), bool))


def union_region(regions: Sequence[Sequence[Curve]], options: StrokeOptions) -> Mesh:
    """Several parity regions (each: outer loop, then holes) as one mesh; ``entry`` = region index."""
    meshes = [planar_region(r, options) for r in regions]
    return Mesh.concat(meshes)
