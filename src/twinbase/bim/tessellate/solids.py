"""The analytic solid primitives (GeometryStream opcode 11): box, sphere, cone, torus pipe.

Each has a batch form taking arrays with one row per instance (a single value is used for every
instance) and giving one mesh whose ``entry`` is the instance number, and a single form for one
instance. The batch forms build each distinct topology once, as a small table of basis functions per
vertex (for a sphere: the unit sphere's x, y, z; for a cone: cos, sin, the axial fraction and their
products), and place every instance with one matrix product (basis x per-instance coefficients), so
many solids cost a few BLAS calls, not a Python loop per solid.

Counts follow the native library (see ``options``): a sphere has ``full_ellipse_segments(r)``
meridians and ``arc_segments(r, latitude sweep)`` latitude bands (r = its radius; for an ellipsoid the
geometric mean of its radii, |det| ** (1/3), as native); a cone has
``full_ellipse_segments`` of its larger end around; a torus pipe has ``full_ellipse_segments(minor)``
around the pipe and ``arc_segments(major + minor, sweep)`` along it; a box has one quad per face (a
grid when ``max_edge_length`` asks for it). Closed solids face outward; a left-handed frame (negative
determinant) is handled by reversing the winding. Open ones (uncapped, partial) are marked two-sided.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._geom import (
    F32,
    F64,
    I64,
    U32,
    as_batch,
    batch_size,
    cross,
    grid_triangles,
    is_full_circle,
    norms,
    perpendicular_frame,
    unit,
)
from .errors import TessellationError
from .mesh import Mesh
from .options import (
    StrokeOptions,
    arc_segments_array,
    distance_segments,
    full_ellipse_segments_array,
)

_DEFAULT = StrokeOptions()
_MAX_VERTICES = 2**32 - 1


def _place(basis: NDArray[Any], coeffs: NDArray[Any], offset: F64 | None = None) -> NDArray[Any]:
    """(k, nv, 3) = basis (nv, b) times each instance's coefficients (k, b, 3), plus ``offset`` (k, 3):
    one stacked matrix product for all instances (the dtype follows ``basis``)."""
    out: NDArray[Any] = np.matmul(basis[None], coeffs.astype(basis.dtype, copy=False))
    if offset is not None:
        out += offset[:, None, :].astype(basis.dtype, copy=False)
    return out


def _normalize(v: F32) -> F32:
    length = np.sqrt(np.einsum("...i,...i->...", v, v))
    length[length == 0] = 1.0
    v /= length[..., None]
    return v


def _assemble(
    template: U32, positions: F64, normals: F32, flip: NDArray[np.bool_], ids: I64, *, two_sided: bool
) -> Mesh:
    """Instances sharing one triangle template; ``flip`` (k,) reverses the winding of those."""
    k, nv = positions.shape[0], positions.shape[1]
    if k * nv > _MAX_VERTICES:
        raise TessellationError(
            f"solids: {k * nv} vertices do not fit uint32 indices; tessellate in smaller batches"
        )
    offsets = np.arange(k, dtype=np.uint32) * np.uint32(nv)
    tris = template[None, :, :] + offsets[:, None, None]
    if flip.any():
        tris[flip] = tris[flip][:, :, [0, 2, 1]]
    return Mesh(
        positions.reshape(-1, 3),
        normals.reshape(-1, 3),
        tris.reshape(-1, 3),
        entry=np.repeat(ids.astype(np.int32), nv),
        two_sided=two_sided,
    )


def _groups(keys: NDArray[Any]) -> list[tuple[tuple[Any, ...], I64]]:
    """Instances grouped by equal key rows (one group without sorting when all are equal)."""
    if len(keys) == 1 or (keys == keys[0]).all():
        return [(tuple(keys[0].tolist()), np.arange(len(keys)))]
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
    return [(tuple(uniq[g].tolist()), order[bounds[g] : bounds[g + 1]]) for g in range(len(uniq))]


def _concat(meshes: list[Mesh], two_sided: bool) -> Mesh:
    if not meshes:
        return Mesh.empty()
    mesh = meshes[0] if len(meshes) == 1 else Mesh.concat(meshes, entries="keep")
    mesh.two_sided = two_sided
    return mesh


def _flags(value: ArrayLike, k: int) -> NDArray[np.bool_]:
    return np.broadcast_to(np.asarray(value, dtype=bool), (k,))


def _fan(centre: int, ring: int, n: int, *, reverse: bool) -> I64:
    i = np.arange(n)
    i1 = (i + 1) % n
    c = np.full(n, centre)
    return np.stack([c, ring + i1, ring + i] if reverse else [c, ring + i, ring + i1], axis=1)


# -- box ------------------------------------------------------------------------------------------

# Corner c = ix + 2 iy + 4 iz; faces as quads counter-clockwise seen from outside of a right-handed
# box: bottom, top, front (y=0), back (y=1), left (x=0), right (x=1).
_BOX_QUADS = np.array([[0, 2, 3, 1], [4, 5, 7, 6], [0, 1, 5, 4], [2, 6, 7, 3], [0, 4, 6, 2], [1, 3, 7, 5]])
_BOX_CAP = np.array([True, True, False, False, False, False])
# Which box axes (0 x, 1 y, 2 z) run along a quad's first edge (a->b) and last edge (a->d).
_BOX_AXES = np.array([[1, 0], [0, 1], [0, 2], [2, 0], [2, 1], [1, 2]])
_CORNER_BITS = np.array([[c & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)], dtype=np.float64)


@lru_cache(maxsize=8)
def _box_template(capped: bool, left: bool) -> tuple[F64, U32]:
    """Basis (nv, 6) on (base origin, top origin, base_x vx, base_y vy, top_x vx, top_y vy) and the
    triangles (four vertices per face)."""
    faces = [f for f in range(6) if capped or not _BOX_CAP[f]]
    quads = _BOX_QUADS[faces][:, ::-1] if left else _BOX_QUADS[faces]
    bits = _CORNER_BITS[quads.reshape(-1)]
    ix, iy, top = bits[:, 0], bits[:, 1], bits[:, 2]
    basis = np.stack([1 - top, top, ix * (1 - top), iy * (1 - top), ix * top, iy * top], axis=1)
    local = (np.arange(len(faces)) * 4)[:, None, None] + np.array([[0, 1, 2], [0, 2, 3]])[None]
    return basis, local.reshape(-1, 3).astype(np.uint32)


def boxes(
    base_origin: ArrayLike,
    top_origin: ArrayLike,
    vector_x: ArrayLike,
    vector_y: ArrayLike,
    base_x: ArrayLike,
    base_y: ArrayLike,
    top_x: ArrayLike,
    top_y: ArrayLike,
    capped: ArrayLike = True,
    *,
    options: StrokeOptions = _DEFAULT,
) -> Mesh:
    """Boxes (``DgnBoxDetail``): the base rectangle ``base_origin + [0, base_x] vector_x + [0, base_y]
    vector_y`` and the top rectangle likewise from ``top_origin`` with ``top_x``, ``top_y``; different
    top and bottom sizes make a frustum, a zero size a wedge or pyramid. Uncapped boxes have no top
    and bottom faces."""
    k = batch_size(
        base_origin,
        top_origin,
        vector_x,
        vector_y,
        base_x,
        base_y,
        top_x,
        top_y,
        capped,
        tails=(1, 1, 1, 1, 0, 0, 0, 0, 0),
    )
    bo = as_batch(base_origin, k, (3,), "box base origin")
    to = as_batch(top_origin, k, (3,), "box top origin")
    vx = as_batch(vector_x, k, (3,), "box vector x")
    vy = as_batch(vector_y, k, (3,), "box vector y")
    bx = as_batch(base_x, k, (), "box base x")
    by = as_batch(base_y, k, (), "box base y")
    tx = as_batch(top_x, k, (), "box top x")
    ty = as_batch(top_y, k, (), "box top y")
    cap = _flags(capped, k)
    coeffs = np.stack(
        [bo, to, bx[:, None] * vx, by[:, None] * vy, tx[:, None] * vx, ty[:, None] * vy], axis=1
    )
    # A left-handed frame turns every face inside out: walk each quad the other way.
    left = np.einsum("ki,ki->k", cross(vx, vy), to - bo) < 0
    if options.edge_length > 0:
        corners8 = _box_corners(coeffs)
        lengths = _box_edge_lengths(corners8)
        counts = np.array([[distance_segments(float(v), options) for v in row] for row in lengths])
        if (counts > 1).any():
            parts = [_box_grid(corners8[i], counts[i], bool(cap[i]), bool(left[i]), i) for i in range(k)]
            return _concat(parts, not bool(cap.all()))
    meshes = []
    for (capped_g, left_g), ids in _groups(np.stack([cap, left], axis=1)):
        basis, template = _box_template(bool(capped_g), bool(left_g))
        positions = _place(basis, coeffs[ids])
        nf = len(template) // 2
        quads = positions.reshape(len(ids), nf, 4, 3)
        face_normal = cross(quads[:, :, 2] - quads[:, :, 0], quads[:, :, 3] - quads[:, :, 1]).astype(
            np.float32
        )
        normals = np.repeat(_normalize(face_normal), 4, axis=1)
        mesh = _assemble(template, positions, normals, np.zeros(len(ids), bool), ids, two_sided=False)
        if (bx[ids] == 0).any() or (by[ids] == 0).any() or (tx[ids] == 0).any() or (ty[ids] == 0).any():
            mesh = mesh.without_degenerate()
        meshes.append(mesh)
    return _concat(meshes, not bool(cap.all()))


def _box_corners(coeffs: F64) -> F64:
    ix, iy, top = _CORNER_BITS[:, 0], _CORNER_BITS[:, 1], _CORNER_BITS[:, 2]
    basis = np.stack([1 - top, top, ix * (1 - top), iy * (1 - top), ix * top, iy * top], axis=1)
    out: F64 = _place(basis, coeffs)
    return out


def _box_edge_lengths(corners: F64) -> F64:
    """(k, 3): the longest edge along x, y and z of each box (as the native count uses)."""
    ex = np.maximum(norms(corners[:, 1] - corners[:, 0]), norms(corners[:, 5] - corners[:, 4]))
    ey = np.maximum(norms(corners[:, 2] - corners[:, 0]), norms(corners[:, 6] - corners[:, 4]))
    ez = norms(corners[:, 4:] - corners[:, :4]).max(axis=1)
    return np.stack([ex, ey, ez], axis=1)


def _box_grid(corners: F64, counts: I64, capped: bool, left: bool, instance: int) -> Mesh:
    parts: list[Mesh] = []
    for f in range(6):
        if _BOX_CAP[f] and not capped:
            continue
        q = _BOX_QUADS[f][::-1] if left else _BOX_QUADS[f]
        a, b, c, d = (corners[i] for i in q)
        # Reversing a quad keeps which axis its first and last edges run along.
        nu, nv = int(counts[_BOX_AXES[f][0]]), int(counts[_BOX_AXES[f][1]])
        u = (np.arange(nu + 1) / nu)[None, :, None]
        v = (np.arange(nv + 1) / nv)[:, None, None]
        pts = ((1 - v) * ((1 - u) * a + u * b) + v * ((1 - u) * d + u * c)).reshape(-1, 3)
        normal = unit(cross(c - a, d - b))
        parts.append(Mesh(pts, np.broadcast_to(normal, pts.shape), grid_triangles(nv + 1, nu + 1)))
    return Mesh.concat(parts, entries=[instance] * len(parts)).without_degenerate()


def box(
    base_origin: ArrayLike,
    top_origin: ArrayLike,
    vector_x: ArrayLike,
    vector_y: ArrayLike,
    base_x: float,
    base_y: float,
    top_x: float,
    top_y: float,
    capped: bool = True,
    *,
    options: StrokeOptions = _DEFAULT,
) -> Mesh:
    """One box; see ``boxes``."""
    return boxes(
        np.reshape(base_origin, (1, 3)),
        np.reshape(top_origin, (1, 3)),
        np.reshape(vector_x, (1, 3)),
        np.reshape(vector_y, (1, 3)),
        [base_x],
        [base_y],
        [top_x],
        [top_y],
        [capped],
        options=options,
    )


# -- sphere ---------------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _sphere_template(
    n_lon: int, n_lat: int, lat0: float, sweep: float, cap_lo: bool, cap_hi: bool
) -> tuple[F64, F32, U32]:
    """Unit-sphere band: positions (nv, 3), normals (nv, 3) and triangles. A pole row is one vertex;
    cap disks get their own vertices (flat normals)."""
    south = abs(lat0 + math.pi / 2) < 1e-12
    north = abs(lat0 + sweep - math.pi / 2) < 1e-12
    theta = 2.0 * math.pi * np.arange(n_lon) / n_lon
    ct, st = np.cos(theta), np.sin(theta)
    pos: list[F64] = []
    nor: list[F64] = []
    row_start: list[int] = []
    count = 0
    for j in range(n_lat + 1):
        phi = lat0 + sweep * j / n_lat
        if (j == 0 and south) or (j == n_lat and north):
            z = -1.0 if j == 0 else 1.0
            ring = np.array([[0.0, 0.0, z]])
        else:
            cp, sp = math.cos(phi), math.sin(phi)
            ring = np.stack([cp * ct, cp * st, np.full(n_lon, sp)], axis=1)
        row_start.append(count)
        pos.append(ring)
        nor.append(ring)
        count += len(ring)
    tris: list[I64] = []
    i = np.arange(n_lon)
    i1 = (i + 1) % n_lon
    for j in range(n_lat):
        a0, a1 = row_start[j], row_start[j + 1]
        lower_pole = j == 0 and south
        upper_pole = j + 1 == n_lat and north
        if lower_pole and upper_pole:
            continue
        if lower_pole:
            tris.append(np.stack([np.full(n_lon, a0), a1 + i1, a1 + i], axis=1))
        elif upper_pole:
            tris.append(np.stack([a0 + i, a0 + i1, np.full(n_lon, a1)], axis=1))
        else:
            tris.append(np.stack([a0 + i, a0 + i1, a1 + i1], axis=1))
            tris.append(np.stack([a0 + i, a1 + i1, a1 + i], axis=1))
    for j, on in ((0, cap_lo and not south), (n_lat, cap_hi and not north)):
        if not on:
            continue
        ring = pos[j]
        z = ring[0, 2]
        normal = np.array([0.0, 0.0, -1.0 if j == 0 else 1.0])
        pos.append(np.concatenate([ring, [[0.0, 0.0, z]]]))
        nor.append(np.broadcast_to(normal, (n_lon + 1, 3)))
        tris.append(_fan(count + n_lon, count, n_lon, reverse=j == 0))
        count += n_lon + 1
    template = np.concatenate(tris).astype(np.uint32) if tris else np.zeros((0, 3), np.uint32)
    return np.concatenate(pos), np.concatenate(nor).astype(np.float32), template


def spheres(
    centers: ArrayLike,
    axes: ArrayLike,
    start_latitude: ArrayLike = -math.pi / 2,
    latitude_sweep: ArrayLike = math.pi,
    capped: ArrayLike = False,
    *,
    options: StrokeOptions = _DEFAULT,
) -> Mesh:
    """Spheres and ellipsoids (``DgnSphereDetail``): ``center + axes @ (cos lon cos lat, sin lon
    cos lat, sin lat)`` with ``axes`` (k, 3, 3) whose columns are the x, y and z (pole) axes (the
    detail's localToWorld matrix; a radius is a column length). Latitudes run from
    ``start_latitude`` over ``latitude_sweep``; ``capped`` closes a band with flat disks."""
    k = batch_size(centers, axes, start_latitude, latitude_sweep, capped, tails=(1, 2, 0, 0, 0))
    c = as_batch(centers, k, (3,), "sphere center")
    a = as_batch(axes, k, (3, 3), "sphere axes")
    lat0 = as_batch(start_latitude, k, (), "sphere start latitude").copy()
    sweep = as_batch(latitude_sweep, k, (), "sphere latitude sweep").copy()
    neg = sweep < 0
    lat0[neg] += sweep[neg]
    sweep = np.abs(sweep)
    lat0 = np.clip(lat0, -math.pi / 2, math.pi / 2)
    sweep = np.minimum(sweep, math.pi / 2 - lat0)
    cap = _flags(capped, k)
    det = np.linalg.det(a)
    # The native library counts with the transform's mean scale, |det| ** (1/3): the radius for a
    # round sphere, the geometric mean of the three radii for an ellipsoid.
    mean_scale = np.cbrt(np.abs(det))
    n_lon = np.maximum(full_ellipse_segments_array(mean_scale, options), 4)
    n_lat = np.maximum(arc_segments_array(mean_scale, sweep, options), 2)
    radius = np.sqrt(np.einsum("kij,kij->kj", a, a)).max(axis=1)
    # Normals go by the inverse transpose; for a scaled rotation that is the matrix over its scale.
    gram = np.einsum("kji,kjl->kil", a, a)
    conformal = np.abs(gram - radius[:, None, None] ** 2 * np.eye(3)).max(axis=(1, 2)) <= 1e-9 * radius**2
    # ``_place`` multiplies row vectors (u @ coefficients): the coefficients are the transposes of
    # the column-axis matrices, A^T for positions and (A^-T)^T = A^-1 for normals.
    # Per instance: a batch may mix round spheres (normals = axes over the radius, already unit) and
    # ellipsoids (inverse transpose, normalized below).
    normal_matrix = (a / np.where(radius > 0, radius, 1.0)[:, None, None]).transpose(0, 2, 1)
    if not conformal.all():
        odd = ~conformal
        safe = np.where((np.abs(det[odd]) > 0)[:, None, None], a[odd], np.eye(3))
        normal_matrix[odd] = np.linalg.inv(safe)
    position_matrix = a.transpose(0, 2, 1)
    full_band = (np.abs(lat0 + math.pi / 2) < 1e-12) & (np.abs(sweep - math.pi) < 1e-12)
    keys = np.stack([n_lon, n_lat, lat0, sweep, cap], axis=1)
    meshes = []
    for (nl, nb, l0, sw, cp), ids in _groups(keys):
        positions_t, normals_t, template = _sphere_template(
            int(nl), int(nb), float(l0), float(sw), bool(cp), bool(cp)
        )
        positions = _place(positions_t, position_matrix[ids], c[ids])
        normals = _place(normals_t, normal_matrix[ids])
        if not conformal[ids].all():
            normals = _normalize(normals)
        meshes.append(_assemble(template, positions, normals, det[ids] < 0, ids, two_sided=False))
    closed = full_band | cap
    return _concat(meshes, not bool(closed.all()))


def sphere(
    center: ArrayLike,
    axes: ArrayLike | float = 1.0,
    start_latitude: float = -math.pi / 2,
    latitude_sweep: float = math.pi,
    capped: bool = False,
    *,
    options: StrokeOptions = _DEFAULT,
) -> Mesh:
    """One sphere; ``axes`` may be a radius (a round sphere) or a 3x3 matrix; see ``spheres``."""
    m = np.asarray(axes, dtype=np.float64)
    if m.ndim == 0:
        m = np.eye(3) * float(m)
    return spheres(
        np.reshape(center, (1, 3)),
        m.reshape(1, 3, 3),
        [start_latitude],
        [latitude_sweep],
        [capped],
        options=options,
    )


# -- cone / cylinder ------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _cone_template(
    n: int, n_axis: int, zero_a: bool, zero_b: bool, cap_a: bool, cap_b: bool
) -> tuple[F64, F32, U32]:
    """Position basis (nv, 5) on (radius_a vector0, radius_a vector90, B - A, (rb - ra) vector0,
    (rb - ra) vector90) plus centre A; normal basis (nv, 4) on (vector0 x D, vector90 x D,
    -(rb - ra) vector0 x vector90, unit axis) with D = B - A; triangles."""
    theta = 2.0 * math.pi * np.arange(n) / n
    cos, sin = np.cos(theta), np.sin(theta)
    f = np.repeat(np.arange(n_axis + 1) / n_axis, n)
    cc = np.tile(cos, n_axis + 1)
    ss = np.tile(sin, n_axis + 1)
    pos = [np.stack([cc, ss, f, f * cc, f * ss], axis=1)]
    # Lateral normal = tangent x dP/df = -sin (v0 x D) + cos (v90 x D) - (rb - ra)(v0 x v90): no f.
    nor = [np.stack([-ss, cc, np.ones_like(cc), np.zeros_like(cc)], axis=1)]
    template = grid_triangles(n_axis + 1, n, wrap_cols=True).astype(np.int64)
    if zero_a:
        pos[0][:n, [0, 1, 3, 4]] = 0.0
        template = template[(template < n).sum(axis=1) < 2]
    if zero_b:
        last = n_axis * n
        pos[0][last:, :] = [0.0, 0.0, 1.0, 0.0, 0.0]
        template = template[(template >= last).sum(axis=1) < 2]
    tris = [template]
    count = (n_axis + 1) * n
    for on, at_b in ((cap_a, False), (cap_b, True)):
        if not on:
            continue
        fb = 1.0 if at_b else 0.0
        ring = np.stack([cos, sin, np.full(n, fb), fb * cos, fb * sin], axis=1)
        pos.append(np.concatenate([ring, [[0.0, 0.0, fb, 0.0, 0.0]]]))
        nor.append(np.tile([0.0, 0.0, 0.0, 1.0 if at_b else -1.0], (n + 1, 1)))
        tris.append(_fan(count + n, count, n, reverse=not at_b))
        count += n + 1
    return np.concatenate(pos), np.concatenate(nor).astype(np.float32), np.concatenate(tris).astype(np.uint32)


def cones(
    center_a: ArrayLike,
    center_b: ArrayLike,
    vector0: ArrayLike,
    vector90: ArrayLike,
    radius_a: ArrayLike,
    radius_b: ArrayLike,
    capped: ArrayLike = True,
    *,
    options: StrokeOptions = _DEFAULT,
) -> Mesh:
    """Cones and cylinders (``DgnConeDetail``): the section at end A is ``center_a + radius_a (cos t
    vector0 + sin t vector90)``, likewise at B. A radius may be 0 (a point); a capped cone closes each
    non-zero end with a disk."""
    k = batch_size(
        center_a, center_b, vector0, vector90, radius_a, radius_b, capped, tails=(1, 1, 1, 1, 0, 0, 0)
    )
    ca = as_batch(center_a, k, (3,), "cone center A")
    cb = as_batch(center_b, k, (3,), "cone center B")
    v0 = as_batch(vector0, k, (3,), "cone vector0")
    v90 = as_batch(vector90, k, (3,), "cone vector90")
    ra = np.abs(as_batch(radius_a, k, (), "cone radius A"))
    rb = np.abs(as_batch(radius_b, k, (), "cone radius B"))
    cap = _flags(capped, k)
    vlen = np.maximum(norms(v0), norms(v90))
    n_around = np.maximum(
        full_ellipse_segments_array(ra * vlen, options), full_ellipse_segments_array(rb * vlen, options)
    )
    d = cb - ca
    if options.edge_length > 0:
        # Native: the side is one band unless a maximum edge length asks for more along the axis.
        side = np.maximum(norms(d + (rb - ra)[:, None] * v0), norms(d + (rb - ra)[:, None] * v90))
        n_axis = np.array([distance_segments(float(s), options) for s in side], dtype=np.int64)
    else:
        n_axis = np.ones(k, np.int64)
    tiny = 1e-12 * np.maximum(np.maximum(ra, rb) * vlen, 1.0)
    zero_a = ra * vlen <= tiny
    zero_b = rb * vlen <= tiny
    c01 = cross(v0, v90)
    sign = np.where(np.einsum("ki,ki->k", c01, d) < 0, -1.0, 1.0)
    dr = (rb - ra)[:, None]
    pos_coeffs = np.stack([ra[:, None] * v0, ra[:, None] * v90, d, dr * v0, dr * v90], axis=1)
    s = sign[:, None]
    nor_coeffs = np.stack([s * cross(v0, d), s * cross(v90, d), -s * dr * c01, s * unit(c01)], axis=1)
    keys = np.stack([n_around, n_axis, zero_a, zero_b, cap & ~zero_a, cap & ~zero_b], axis=1).astype(np.int64)
    meshes = []
    for (n, nax, za, zb, lo, hi), ids in _groups(keys):
        pos_t, nor_t, template = _cone_template(int(n), int(nax), bool(za), bool(zb), bool(lo), bool(hi))
        positions = _place(pos_t, pos_coeffs[ids], ca[ids])
        normals = _normalize(_place(nor_t, nor_coeffs[ids]))
        meshes.append(_assemble(template, positions, normals, sign[ids] < 0, ids, two_sided=False))
    closed = (cap | zero_a) & (cap | zero_b)
    return _concat(meshes, not bool(closed.all()))


def cone(
    center_a: ArrayLike,
    center_b: ArrayLike,
    radius_a: float,
    radius_b: float,
    vector0: ArrayLike | None = None,
    vector90: ArrayLike | None = None,
    capped: bool = True,
    *,
    options: StrokeOptions = _DEFAULT,
) -> Mesh:
    """One cone or cylinder; without ``vector0``/``vector90`` a frame perpendicular to the axis is used."""
    a = np.asarray(center_a, dtype=np.float64).reshape(3)
    b = np.asarray(center_b, dtype=np.float64).reshape(3)
    if vector0 is None or vector90 is None:
        axis = b - a
        if not np.linalg.norm(axis) > 0:
            raise TessellationError("cone: the two centers coincide and no section vectors are given")
        vector0, vector90 = perpendicular_frame(axis / np.linalg.norm(axis))
    return cones(
        a[None],
        b[None],
        np.reshape(vector0, (1, 3)),
        np.reshape(vector90, (1, 3)),
        [radius_a],
        [radius_b],
        [capped],
        options=options,
    )


# -- torus pipe -----------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _torus_template(
    n_major: int, n_minor: int, sweep: float, full: bool, capped: bool
) -> tuple[F64, F32, U32]:
    """Position basis (nv, 5) on (R X, R Y, r X, r Y, r Z) plus the centre; normal basis (nv, 3)
    on (X, Y, Z); triangles. X, Y, Z is the torus frame, R and r its radii."""
    rows = n_major if full else n_major + 1
    theta = sweep * np.arange(rows) / n_major
    phi = 2.0 * math.pi * np.arange(n_minor) / n_minor
    ct = np.repeat(np.cos(theta), n_minor)
    st = np.repeat(np.sin(theta), n_minor)
    cp = np.tile(np.cos(phi), rows)
    sp = np.tile(np.sin(phi), rows)
    normal = np.stack([cp * ct, cp * st, sp], axis=1)
    pos = [np.concatenate([ct[:, None], st[:, None], normal], axis=1)]
    nor = [normal]
    # grid_triangles faces d/dphi x d/dtheta, inward for a positive sweep: reverse it.
    template = grid_triangles(n_major + 1, n_minor, wrap_cols=True).astype(np.int64)[:, [0, 2, 1]]
    if full:
        template %= n_major * n_minor
    tris = [template]
    count = rows * n_minor
    if capped:
        sgn = 1.0 if sweep > 0 else -1.0
        for r, at_end in ((0, False), (rows - 1, True)):
            block = pos[0][r * n_minor : (r + 1) * n_minor]
            t = theta[r]
            tangent = np.array([-math.sin(t), math.cos(t), 0.0])
            pos.append(np.concatenate([block, [[math.cos(t), math.sin(t), 0.0, 0.0, 0.0]]]))
            nor.append(np.tile((sgn if at_end else -sgn) * tangent, (n_minor + 1, 1)))
            # The fans face -tangent at the start and +tangent at the end for a positive sweep
            # (a negative one is reversed as a whole by the caller).
            tris.append(_fan(count + n_minor, count, n_minor, reverse=at_end))
            count += n_minor + 1
    return np.concatenate(pos), np.concatenate(nor).astype(np.float32), np.concatenate(tris).astype(np.uint32)


def torus_pipes(
    center: ArrayLike,
    vector_x: ArrayLike,
    vector_y: ArrayLike,
    major_radius: ArrayLike,
    minor_radius: ArrayLike,
    sweep: ArrayLike = 2.0 * math.pi,
    capped: ArrayLike = False,
    *,
    options: StrokeOptions = _DEFAULT,
) -> Mesh:
    """Torus pipes (``DgnTorusPipeDetail``): a circle of ``minor_radius`` swept around the axis
    ``vector_x x vector_y`` through ``center``, at ``major_radius``, from ``vector_x`` over ``sweep``
    radians (negative sweeps go the other way). The frame is made orthonormal from ``vector_x`` and
    the plane of the two vectors. A partial, capped pipe is closed with disks at both ends."""
    k = batch_size(
        center, vector_x, vector_y, major_radius, minor_radius, sweep, capped, tails=(1, 1, 1, 0, 0, 0, 0)
    )
    c = as_batch(center, k, (3,), "torus center")
    vx = as_batch(vector_x, k, (3,), "torus vector x")
    vy = as_batch(vector_y, k, (3,), "torus vector y")
    big_r = np.abs(as_batch(major_radius, k, (), "torus major radius"))
    small_r = np.abs(as_batch(minor_radius, k, (), "torus minor radius"))
    sw = np.clip(as_batch(sweep, k, (), "torus sweep"), -2.0 * math.pi, 2.0 * math.pi)
    if (sw == 0).any():
        raise TessellationError("torus pipe: the sweep angle is 0")
    cap = _flags(capped, k)
    x = unit(vx)
    z = unit(cross(vx, vy))
    if not (norms(z) > 0).all():
        raise TessellationError("torus pipe: vector_x and vector_y are parallel")
    y = cross(z, x)
    full = np.array([is_full_circle(float(s)) for s in sw])
    sw = np.where(full, np.sign(sw) * 2.0 * math.pi, sw)
    n_minor = full_ellipse_segments_array(small_r, options)
    n_major = arc_segments_array(big_r + small_r, sw, options)
    capped_ends = cap & ~full
    pos_coeffs = np.stack(
        [
            big_r[:, None] * x,
            big_r[:, None] * y,
            small_r[:, None] * x,
            small_r[:, None] * y,
            small_r[:, None] * z,
        ],
        axis=1,
    )
    frame = np.stack([x, y, z], axis=1)
    keys = np.stack([n_major, n_minor, sw, full, capped_ends], axis=1)
    meshes = []
    for (nmaj, nmin, swg, fl, ends), ids in _groups(keys):
        pos_t, nor_t, template = _torus_template(int(nmaj), int(nmin), float(swg), bool(fl), bool(ends))
        positions = _place(pos_t, pos_coeffs[ids], c[ids])
        normals = _place(nor_t, frame[ids])
        meshes.append(_assemble(template, positions, normals, sw[ids] < 0, ids, two_sided=False))
    return _concat(meshes, not bool((full | capped_ends).all()))


def torus_pipe(
    center: ArrayLike,
    vector_x: ArrayLike,
    vector_y: ArrayLike,
    major_radius: float,
    minor_radius: float,
    sweep: float = 2.0 * math.pi,
    capped: bool = False,
    *,
    options: StrokeOptions = _DEFAULT,
) -> Mesh:
    """One torus pipe; see ``torus_pipes``."""
    return torus_pipes(
        np.reshape(center, (1, 3)),
        np.reshape(vector_x, (1, 3)),
        np.reshape(vector_y, (1, 3)),
        [major_radius],
        [minor_radius],
        [sweep],
        [capped],
        options=options,
    )
