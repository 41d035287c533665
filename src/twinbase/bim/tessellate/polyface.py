"""Indexed polyfaces (GeometryStream opcode 9, BGFB ``Polyface``) to triangle meshes.

Index arrays are signed and 1-based as stored: the sign only marks the following edge as hidden and is
dropped. With ``num_per_face`` <= 1 a 0 ends each face (faces of any size); with ``num_per_face`` >= 2
the faces are fixed blocks of that many entries, padded with 0. Normal, param and colour indices have
the same layout as the point indices (when a normal or param index array is absent the point index is
used, as the native reader does).

Faces with more than 3 corners become a fan when convex and are cut with earcut in their own plane
when not. Without stored normals they are computed: flat (one per face) or, with ``crease_angle``,
smoothed over the faces around a point whose normals are within that angle of the corner's face.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from ._geom import F64, I64, as_points, cross, norms
from .errors import TessellationError
from .mesh import Mesh
from .regions import triangulate_polygons

_MAX_SMOOTH_GROUP = 64


def _layout(point_index: I64, num_per_face: int) -> tuple[I64, I64]:
    """Positions in the index array that are corners, and the face of each (0-based, dense)."""
    if num_per_face >= 2:
        if len(point_index) % num_per_face:
            raise TessellationError(
                f"polyface: {len(point_index)} indices are not whole blocks of num_per_face={num_per_face}"
            )
        pos = np.flatnonzero(point_index != 0)
        face = pos // num_per_face
    else:
        zero = point_index == 0
        pos = np.flatnonzero(~zero)
        face = np.cumsum(zero)[pos]
    if len(face):
        # Dense face numbers: empty faces (two zeros in a row) leave no gap.
        step = np.concatenate([[0], (np.diff(face) != 0).astype(np.int64)])
        face = np.cumsum(step)
    return pos, face


def _pick(index: ArrayLike | None, pos: I64, count: int, size: int, what: str) -> I64 | None:
    if index is None:
        return None
    arr = np.asarray(index, dtype=np.int64).reshape(-1)
    if len(arr) != count:
        raise TessellationError(f"polyface: {what} index has {len(arr)} entries, the point index {count}")
    out = np.abs(arr[pos]) - 1
    if len(out) and (out.min() < 0 or out.max() >= size):
        raise TessellationError(f"polyface: a {what} index is 0 inside a face or past the {size} {what}s")
    return out


def polyface_mesh(
    points: ArrayLike,
    point_index: ArrayLike,
    *,
    num_per_face: int = 0,
    normals: ArrayLike | None = None,
    normal_index: ArrayLike | None = None,
    params: ArrayLike | None = None,
    param_index: ArrayLike | None = None,
    colors: ArrayLike | None = None,
    color_index: ArrayLike | None = None,
    two_sided: bool = False,
    crease_angle: float | None = None,
) -> Mesh:
    """Triangle mesh of a polyface. ``colors`` are the int colour table, one uint32 per entry.
    ``crease_angle`` (radians) smooths computed normals; None gives flat facets."""
    pts = as_points(points, "polyface points")
    pidx_all = np.asarray(point_index, dtype=np.int64).reshape(-1)
    pos, face = _layout(pidx_all, num_per_face)
    if not len(pos):
        return Mesh.empty()
    count = len(pidx_all)
    p = np.abs(pidx_all[pos]) - 1
    if p.max() >= len(pts):
        raise TessellationError(f"polyface: a point index ({int(p.max()) + 1}) is past the {len(pts)} points")
    n_faces = int(face[-1]) + 1
    sizes = np.bincount(face, minlength=n_faces)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    corner = np.arange(len(p))
    nxt = corner + 1
    nxt[start + sizes - 1] = start
    prv = corner - 1
    prv[start] = start + sizes - 1

    xyz = pts[p]
    centroid = np.stack([np.bincount(face, xyz[:, i], n_faces) for i in range(3)], axis=1) / sizes[:, None]
    rel = xyz - centroid[face]
    terms = cross(rel, rel[nxt])
    face_area = np.asarray(
        0.5 * np.stack([np.bincount(face, terms[:, i], n_faces) for i in range(3)], axis=1), dtype=np.float64
    )

    tris = _triangulate(xyz, face, sizes, start, nxt, prv, face_area)

    # Per-corner attributes, then one vertex per distinct combination.
    normal_arr = None if normals is None else as_points(normals, "polyface normals")
    n_idx = None
    if normal_arr is not None:
        n_idx = _pick(
            point_index if normal_index is None else normal_index, pos, count, len(normal_arr), "normal"
        )
    param_arr = None if params is None else np.asarray(params, dtype=np.float64).reshape(-1, 2)
    t_idx = None
    if param_arr is not None:
        t_idx = _pick(
            point_index if param_index is None else param_index, pos, count, len(param_arr), "param"
        )
    color_arr = None if colors is None else np.asarray(colors, dtype=np.int64).reshape(-1).astype(np.uint32)
    c_idx = None
    if color_arr is not None:
        c_idx = _pick(
            point_index if color_index is None else color_index, pos, count, len(color_arr), "color"
        )

    keys: list[I64] = [p]
    if normal_arr is not None and n_idx is not None:
        unit_normals = normal_arr / np.where(norms(normal_arr) > 0, norms(normal_arr), 1.0)[:, None]
        corner_normals = unit_normals[n_idx]
        keys.append(n_idx)
    else:
        corner_normals = _computed_normals(p, face, face_area, crease_angle)
        if crease_angle is None:
            keys.append(face)
        else:
            keys.extend(np.round(corner_normals * 1e6).astype(np.int64).T)
    if t_idx is not None:
        keys.append(t_idx)
    if c_idx is not None:
        keys.append(c_idx)

    if len(keys) == 2 and crease_angle is None and n_idx is None:
        # Flat facets without params or colours: every corner is its own vertex already.
        first = corner
        inverse = corner
    else:
        _, first, inverse = np.unique(np.stack(keys, axis=1), axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
    return Mesh(
        xyz[first],
        corner_normals[first].astype(np.float32),
        inverse[tris].astype(np.uint32),
        params=None if param_arr is None or t_idx is None else param_arr[t_idx[first]].astype(np.float32),
        colors=None if color_arr is None or c_idx is None else color_arr[c_idx[first]],
        two_sided=two_sided,
    )


def _triangulate(xyz: F64, face: I64, sizes: I64, start: I64, nxt: I64, prv: I64, face_area: F64) -> I64:
    """Triangles as corner numbers: faces of 3 as they are, convex faces as fans, others by earcut."""
    n_faces = len(sizes)
    out: list[I64] = []
    tri_faces = np.flatnonzero(sizes == 3)
    if len(tri_faces):
        out.append(start[tri_faces][:, None] + np.arange(3)[None, :])
    big = sizes > 3
    if big.any():
        in_big = big[face]
        c = np.flatnonzero(in_big)
        e_prev = xyz[c] - xyz[prv[c]]
        e_next = xyz[nxt[c]] - xyz[c]
        turn = np.einsum("ij,ij->i", cross(e_prev, e_next), face_area[face[c]])
        scale = norms(e_prev) * norms(e_next) * norms(face_area[face[c]])
        bad = turn < -1e-9 * scale
        concave_face = np.zeros(n_faces, bool)
        concave_face[face[c[bad]]] = True
        fan_faces = np.flatnonzero(big & ~concave_face)
        if len(fan_faces):
            per = sizes[fan_faces] - 2
            f = np.repeat(fan_faces, per)
            first = np.concatenate([[0], np.cumsum(per)[:-1]])
            j = np.arange(int(per.sum())) - np.repeat(first, per) + 1
            s = start[f]
            out.append(np.stack([s, s + j, s + j + 1], axis=1))
        for fi in np.flatnonzero(concave_face):
            s0 = int(start[fi])
            ring = xyz[s0 : s0 + int(sizes[fi])]
            normal = face_area[fi]
            if not np.any(normal):
                continue
            _, local, _ = triangulate_polygons([ring], normal)
            out.append(local.astype(np.int64) + s0)
    if not out:
        return np.zeros((0, 3), np.int64)
    return np.concatenate(out).astype(np.int64)


def _computed_normals(p: I64, face: I64, face_area: F64, crease_angle: float | None) -> F64:
    fn = face_area / np.where(norms(face_area) > 0, norms(face_area), 1.0)[:, None]
    fallback = np.where((norms(face_area) > 0)[:, None], fn, np.array([0.0, 0.0, 1.0]))
    if crease_angle is None:
        out: F64 = fallback[face]
        return out
    cos_limit = math.cos(crease_angle)
    n = len(p)
    order = np.argsort(p, kind="stable")
    sp = p[order]
    boundaries = np.flatnonzero(np.diff(sp)) + 1
    group_start = np.concatenate([[0], boundaries])
    group_size = np.diff(np.concatenate([group_start, [n]]))
    g_of_sorted = np.repeat(np.arange(len(group_start)), group_size)
    size_sorted = group_size[g_of_sorted]
    acc = np.zeros((n, 3))
    small = size_sorted <= _MAX_SMOOTH_GROUP
    # All corner pairs that share a point (within small groups): each corner adds the area-weighted
    # normal of every face at its point that bends less than the crease angle from its own face.
    rows = np.flatnonzero(small)
    if len(rows):
        rep_counts = size_sorted[rows]
        c1s = np.repeat(rows, rep_counts)
        firsts = np.concatenate([[0], np.cumsum(rep_counts)[:-1]])
        k = np.arange(int(rep_counts.sum())) - np.repeat(firsts, rep_counts)
        c2s = group_start[g_of_sorted[c1s]] + k
        c1 = order[c1s]
        c2 = order[c2s]
        f1 = face[c1]
        f2 = face[c2]
        ok = np.einsum("ij,ij->i", fn[f1], fn[f2]) >= cos_limit
        for i in range(3):
            acc[:, i] = np.bincount(c1[ok], face_area[f2[ok], i], n)
    big_rows = np.flatnonzero(~small)
    if len(big_rows):
        # A point shared by very many faces (a fan's hub): average them all, keep the corner's own
        # face normal where that average bends past the crease.
        c = order[big_rows]
        total = np.zeros((len(group_start), 3))
        np.add.at(total, g_of_sorted[big_rows], face_area[face[c]])
        avg = total[g_of_sorted[big_rows]]
        avg_u = avg / np.where(norms(avg) > 0, norms(avg), 1.0)[:, None]
        use_avg = np.einsum("ij,ij->i", avg_u, fn[face[c]]) >= cos_limit
        acc[c] = np.where(use_avg[:, None], avg, face_area[face[c]])
    length = norms(acc)
    out = np.where((length > 0)[:, None], acc / np.where(length > 0, length, 1.0)[:, None], fallback[face])
    return out
