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
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._geom import F64, I64, as_points, cross, norms
from .errors import TessellationError
from .mesh import Mesh
from .regions import earcut_rings

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
    count = len(pidx_all)
    normal_arr = None if normals is None else as_points(normals, "polyface normals")
    param_arr = None if params is None else np.asarray(params, dtype=np.float64).reshape(-1, 2)
    color_arr = None if colors is None else np.asarray(colors, dtype=np.int64).reshape(-1).astype(np.uint32)
    n_idx = t_idx = c_idx = None
    if normal_arr is not None:
        n_idx = _pick(
            point_index if normal_index is None else normal_index, pos, count, len(normal_arr), "normal"
        )
    if param_arr is not None:
        t_idx = _pick(
            point_index if param_index is None else param_index, pos, count, len(param_arr), "param"
        )
    if color_arr is not None:
        c_idx = _pick(
            point_index if color_index is None else color_index, pos, count, len(color_arr), "color"
        )
    mesh, _ = _corners_mesh(
        pts,
        pidx_all,
        pos,
        face,
        normal_arr,
        n_idx,
        param_arr,
        t_idx,
        color_arr,
        c_idx,
        two_sided,
        crease_angle,
    )
    return mesh


def polyface_meshes(
    points: Sequence[ArrayLike],
    point_index: Sequence[ArrayLike],
    num_per_face: Sequence[int],
    *,
    normals: Sequence[ArrayLike] | None = None,
    normal_index: Sequence[ArrayLike | None] | None = None,
    params: Sequence[ArrayLike] | None = None,
    param_index: Sequence[ArrayLike | None] | None = None,
    two_sided: bool = False,
) -> Mesh:
    """Many polyfaces in one pass, as one mesh whose ``entry`` numbers each vertex's polyface (the same
    vertices and triangles, polyface by polyface, as ``polyface_mesh`` gives each alone; flat normals
    where none are stored). Either every polyface has normals (params) or none has.

    Thousands of small polyfaces (a few dozen faces each) cost far more in numpy call overhead than in
    arithmetic one at a time: here they are joined into one index array (each index moved by its
    polyface's offset, each index array ended with a 0 so faces never run across polyfaces), run once,
    and told apart by ``entry``."""
    k = len(points)
    if len(point_index) != k or len(num_per_face) != k:
        raise TessellationError("polyfaces: points, point_index and num_per_face differ in length")
    pts = [as_points(p, "polyface points") for p in points]
    p_idx = [
        _zero_ended(np.asarray(i, np.int64).reshape(-1), n)
        for i, n in zip(point_index, num_per_face, strict=True)
    ]
    lengths = np.fromiter((len(i) for i in p_idx), np.int64, k)
    item_of = np.repeat(np.arange(k), lengths)  # the polyface of each index position

    def joined(arrays: list[F64], index: Sequence[ArrayLike | None] | None, what: str) -> tuple[F64, I64]:
        sizes = np.fromiter((len(a) for a in arrays), np.int64, k)
        own = [
            p_idx[j]
            if index is None or index[j] is None
            else _zero_ended(np.asarray(index[j], np.int64).reshape(-1), num_per_face[j])
            for j in range(k)
        ]
        if any(len(a) != len(b) for a, b in zip(own, p_idx, strict=True)):
            raise TessellationError(f"polyface: a {what} index differs in length from its point index")
        flat = np.concatenate(own) if own else np.zeros(0, np.int64)
        # An index past its own polyface's array must fail here: joined, it would name the next one's.
        if len(flat) and (np.abs(flat) > sizes[item_of]).any():
            raise TessellationError(f"polyface: a {what} index is past its polyface's {what}s")
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        moved = np.where(flat != 0, flat + np.sign(flat) * offsets[item_of], 0)
        data = np.concatenate(arrays) if arrays else np.zeros((0, 3))
        return data, moved

    all_pts, pidx_all = joined(pts, None, "point")
    pos, face = _layout(pidx_all, 0)
    count = len(pidx_all)
    normal_arr = n_idx = param_arr = t_idx = None
    if normals is not None:
        normal_arr, moved = joined(
            [as_points(n, "polyface normals") for n in normals], normal_index, "normal"
        )
        n_idx = _pick(moved, pos, count, len(normal_arr), "normal")
    if params is not None:
        param_list = [np.asarray(t, np.float64).reshape(-1, 2) for t in params]
        param_arr, moved = joined(param_list, param_index, "param")
        t_idx = _pick(moved, pos, count, len(param_arr), "param")
    mesh, first = _corners_mesh(
        all_pts, pidx_all, pos, face, normal_arr, n_idx, param_arr, t_idx, None, None, two_sided, None
    )
    if len(first):
        mesh.entry = item_of[pos[first]].astype(np.int32)
    else:
        mesh.entry = np.zeros(0, np.int32)
    return mesh


def _zero_ended(index: I64, num_per_face: int) -> I64:
    """An index array in the 0-terminated layout, ending with a 0 (fixed blocks become faces ended by
    a 0 each; their padding zeros make empty faces, which ``_layout`` drops)."""
    if num_per_face >= 2:
        if len(index) % num_per_face:
            raise TessellationError(
                f"polyface: {len(index)} indices are not whole blocks of num_per_face={num_per_face}"
            )
        blocks = index.reshape(-1, num_per_face)
        return np.concatenate([blocks, np.zeros((len(blocks), 1), np.int64)], axis=1).reshape(-1)
    if len(index) and index[-1] != 0:
        return np.concatenate([index, [0]])
    return index


def _corners_mesh(
    pts: F64,
    pidx_all: I64,
    pos: I64,
    face: I64,
    normal_arr: F64 | None,
    n_idx: I64 | None,
    param_arr: F64 | None,
    t_idx: I64 | None,
    color_arr: NDArray[np.uint32] | None,
    c_idx: I64 | None,
    two_sided: bool,
    crease_angle: float | None,
) -> tuple[Mesh, I64]:
    """The mesh of the corners at ``pos`` (faces ``face``) and, for each of its vertices, the corner it
    was made from."""
    if not len(pos):
        return Mesh.empty(), np.zeros(0, np.int64)
    p = np.abs(pidx_all[pos]) - 1
    if p.max() >= len(pts):
        raise TessellationError(f"polyface: a point index ({int(p.max()) + 1}) is past the {len(pts)} points")
    n_faces = int(face[-1]) + 1
    sizes = np.bincount(face, minlength=n_faces)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    xyz = pts[p]
    tris, face_area = _triangulate(xyz, p, sizes, start)

    # One vertex per distinct (point, normal, param, colour) of the corners, found with a single
    # integer key per corner (a 1-D unique is far cheaper than a unique over rows).
    if normal_arr is not None and n_idx is not None:
        lengths = norms(normal_arr)
        corner_normals = (normal_arr / np.where(lengths > 0, lengths, 1.0)[:, None])[n_idx]
        key: I64 | None = p * len(normal_arr) + n_idx
        bound = len(pts) * len(normal_arr)
    elif crease_angle is None:
        # Flat facets: a corner's normal is its face's, so corners never share a vertex.
        corner_normals = _unit_or_up(face_area)[face]
        key = None
        bound = 0
    else:
        corner_normals, key = _smooth_normals(p, face, face_area, len(pts), crease_angle)
        bound = 2 * len(p) + len(pts)
    if key is not None:
        columns = [key]
        for extra, size in (
            (t_idx, 0 if param_arr is None else len(param_arr)),
            (c_idx, 0 if color_arr is None else len(color_arr)),
        ):
            if extra is not None:
                columns.append(extra)
                bound *= max(size, 1)
                key = key * size + extra
        if bound >= 2**62:
            # The joined key would overflow int64 (very large joined polyfaces): unique over rows.
            _, first, inverse = np.unique(
                np.stack(columns, axis=1), axis=0, return_index=True, return_inverse=True
            )
        else:
            _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        tris = inverse[tris]
    else:
        first = np.arange(len(p))
    mesh = Mesh(
        xyz[first],
        corner_normals[first].astype(np.float32),
        tris.astype(np.uint32),
        params=None if param_arr is None or t_idx is None else param_arr[t_idx[first]].astype(np.float32),
        colors=None if color_arr is None or c_idx is None else color_arr[c_idx[first]],
        two_sided=two_sided,
    )
    return mesh, first


def _unit_or_up(v: F64) -> F64:
    length = norms(v)
    out: F64 = np.where(
        (length > 0)[:, None], v / np.where(length > 0, length, 1.0)[:, None], [0.0, 0.0, 1.0]
    )
    return out


def _triangulate(xyz: F64, p: I64, sizes: I64, start: I64) -> tuple[I64, F64]:
    """Triangles as corner numbers and each face's area vector. Faces are handled a size at a time
    as (faces, size) blocks: triangles as they are, convex faces as fans, others by earcut."""
    n_faces = len(sizes)
    face_area = np.zeros((n_faces, 3))
    out: list[I64] = []
    uniform = bool((sizes == sizes[0]).all())
    for s in [int(sizes[0])] if uniform else np.unique(sizes).tolist():
        if s < 3:
            continue
        f = np.arange(n_faces) if uniform else np.flatnonzero(sizes == s)
        corners = start[f][:, None] + np.arange(s)[None, :]
        ring = xyz[corners]
        if s == 3:
            face_area[f] = 0.5 * cross(ring[:, 1] - ring[:, 0], ring[:, 2] - ring[:, 0])
            out.append(corners)
            continue
        # Component planes (faces, size) keep every step a contiguous array operation.
        x, y, z = (np.ascontiguousarray(ring[:, :, i]) for i in range(3))
        # Sum over count is exactly ``mean`` (which costs several times more per call on these small blocks).
        x -= x.sum(axis=1, keepdims=True) / s
        y -= y.sum(axis=1, keepdims=True) / s
        z -= z.sum(axis=1, keepdims=True) / s
        shift = (np.arange(s) + 1) % s  # the next corner (np.roll's result, without its overhead)
        xn, yn, zn = x[:, shift], y[:, shift], z[:, shift]
        area = 0.5 * np.stack(
            [(y * zn - z * yn).sum(axis=1), (z * xn - x * zn).sum(axis=1), (x * yn - y * xn).sum(axis=1)],
            axis=1,
        )
        face_area[f] = area
        # Convex when every corner turns the same way as the face normal (within rounding).
        ax, ay, az = area[:, 0:1], area[:, 1:2], area[:, 2:3]
        ux, uy, uz = xn - x, yn - y, zn - z
        back = (np.arange(s) - 1) % s
        vx, vy, vz = ux[:, back], uy[:, back], uz[:, back]
        turn = ax * (vy * uz - vz * uy) + ay * (vz * ux - vx * uz) + az * (vx * uy - vy * ux)
        area_len = norms(area)
        scale = np.sqrt((ux * ux + uy * uy + uz * uz) * (vx * vx + vy * vy + vz * vz)) * area_len[:, None]
        convex = (turn >= -1e-9 * scale).all(axis=1)
        fan = corners[convex]
        if len(fan):
            j = np.arange(1, s - 1)
            out.append(
                np.stack(
                    [np.broadcast_to(fan[:, :1], (len(fan), s - 2)), fan[:, j], fan[:, j + 1]], axis=2
                ).reshape(-1, 3)
            )
        concave = f[~convex & (area_len > 0)]
        if len(concave):
            # Corners of a face are contiguous, so the face's corner block is a ring of ``xyz``.
            out.append(earcut_rings(xyz, start, sizes, face_area, concave))
    if not out:
        return np.zeros((0, 3), np.int64), face_area
    tris = np.concatenate(out)
    # A face that repeats a point makes triangles with two equal corners: they add no area or edge.
    q = p[tris]
    keep = (q[:, 0] != q[:, 1]) & (q[:, 1] != q[:, 2]) & (q[:, 0] != q[:, 2])
    return (tris if keep.all() else tris[keep]), face_area


def _smooth_normals(p: I64, face: I64, face_area: F64, n_points: int, crease_angle: float) -> tuple[F64, I64]:
    """Per-corner normals smoothed over the faces at the corner's point that bend less than
    ``crease_angle`` from the corner's face, and a vertex key per corner.

    Where every face at a point is within half the angle of their area-weighted average, every pair
    is within the angle, so the result is that average (one vertex). Only the other points, along
    creases, are resolved pair by pair."""
    fu = _unit_or_up(face_area)
    acc = np.stack([np.bincount(p, face_area[face, i], n_points) for i in range(3)], axis=1).astype(
        np.float64
    )
    point_normal = _unit_or_up(acc)
    corner_normals = point_normal[p]
    deviates = np.einsum("ij,ij->i", corner_normals, fu[face]) < math.cos(0.5 * crease_angle)
    crease_point = np.zeros(n_points, bool)
    crease_point[p[deviates]] = True
    key = p.copy()
    corners = np.flatnonzero(crease_point[p])
    if len(corners):
        normals = _pairwise_normals(p[corners], face[corners], face_area, fu, math.cos(crease_angle))
        corner_normals[corners] = normals
        rows = np.concatenate([p[corners, None], np.round(normals * 1e6).astype(np.int64)], axis=1)
        _, group = np.unique(rows, axis=0, return_inverse=True)
        key[corners] = n_points + group.reshape(-1)
    return corner_normals, key


def _pairwise_normals(p: I64, face: I64, face_area: F64, fu: F64, cos_limit: float) -> F64:
    n = len(p)
    order = np.argsort(p, kind="stable")
    sp = p[order]
    group_start = np.concatenate([[0], np.flatnonzero(np.diff(sp)) + 1])
    group_size = np.diff(np.concatenate([group_start, [n]]))
    g_of_sorted = np.repeat(np.arange(len(group_start)), group_size)
    size_sorted = group_size[g_of_sorted]
    acc = np.zeros((n, 3))
    small = size_sorted <= _MAX_SMOOTH_GROUP
    rows = np.flatnonzero(small)
    if len(rows):
        # Every pair of corners at the same point: each corner adds the area-weighted normal of the
        # other's face when the two faces bend less than the crease angle.
        rep = size_sorted[rows]
        c1s = np.repeat(rows, rep)
        firsts = np.concatenate([[0], np.cumsum(rep)[:-1]])
        k = np.arange(int(rep.sum())) - np.repeat(firsts, rep)
        c2s = group_start[g_of_sorted[c1s]] + k
        c1 = order[c1s]
        c2 = order[c2s]
        ok = np.einsum("ij,ij->i", fu[face[c1]], fu[face[c2]]) >= cos_limit
        for i in range(3):
            acc[:, i] = np.bincount(c1[ok], face_area[face[c2[ok]], i], n)
    big_rows = np.flatnonzero(~small)
    if len(big_rows):
        # A point shared by very many faces (a fan's hub): average them all, keep the corner's own
        # face normal where that average bends past the crease.
        c = order[big_rows]
        total = np.zeros((len(group_start), 3))
        np.add.at(total, g_of_sorted[big_rows], face_area[face[c]])
        avg = total[g_of_sorted[big_rows]]
        use_avg = np.einsum("ij,ij->i", _unit_or_up(avg), fu[face[c]]) >= cos_limit
        acc[c] = np.where(use_avg[:, None], avg, face_area[face[c]])
    out: F64 = np.where((norms(acc) > 0)[:, None], _unit_or_up(acc), fu[face])
    return out
