"""Flat-array results: triangle meshes and polylines.

Everything is a handful of numpy arrays, never one Python object per triangle or per point, so that
many elements can be concatenated, transformed and measured with array operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._geom import F32, F64, I32, I64, U32, cross, degenerate_mask
from .errors import TessellationError


def _as_matrix4(matrix: ArrayLike) -> F64:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise TessellationError(f"transform: expected a finite 4x4 (or 3x4) matrix, got shape {m.shape}")
    return m


def _normal_matrix(linear: F64) -> F64:
    """The matrix that carries normals: the inverse transpose of the linear part (a singular one,
    which flattens the mesh, falls back to its cofactor matrix, which has the same direction)."""
    det = float(np.linalg.det(linear))
    if abs(det) > 1e-300:
        return np.asarray(np.linalg.inv(linear), dtype=np.float64).T
    cof = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            minor = np.delete(np.delete(linear, i, axis=0), j, axis=1)
            cof[i, j] = (-1) ** (i + j) * np.linalg.det(minor)
    return cof


@dataclass(eq=False)
class Mesh:
    """An indexed triangle mesh.

    ``positions`` (n, 3) float64; ``normals`` (n, 3) float32, unit length; ``indices`` (m, 3) uint32,
    counter-clockwise seen from the side the normals point to; ``params`` (n, 2) float32 texture
    parameters or None; ``colors`` (n,) uint32 per-vertex colours as stored (iTwin.js ``ColorDef``
    ints, 0xTTBBGGRR) or None; ``entry`` (n,) int32, which entry of a batch or list each vertex
    belongs to, or None; ``two_sided`` when the surface is open (lighting should show both sides).
    """

    positions: F64
    normals: F32
    indices: U32
    params: F32 | None = None
    colors: U32 | None = None
    entry: I32 | None = None
    two_sided: bool = False
    _checked: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.positions = np.ascontiguousarray(self.positions, dtype=np.float64).reshape(-1, 3)
        self.normals = np.ascontiguousarray(self.normals, dtype=np.float32).reshape(-1, 3)
        self.indices = np.ascontiguousarray(self.indices, dtype=np.uint32).reshape(-1, 3)
        n = len(self.positions)
        if len(self.normals) != n:
            raise TessellationError(f"Mesh: {n} positions but {len(self.normals)} normals")
        if self.params is not None:
            self.params = np.ascontiguousarray(self.params, dtype=np.float32).reshape(-1, 2)
            if len(self.params) != n:
                raise TessellationError(f"Mesh: {n} positions but {len(self.params)} params")
        if self.colors is not None:
            self.colors = np.ascontiguousarray(self.colors, dtype=np.uint32).reshape(-1)
            if len(self.colors) != n:
                raise TessellationError(f"Mesh: {n} positions but {len(self.colors)} colors")
        if self.entry is not None:
            self.entry = np.ascontiguousarray(self.entry, dtype=np.int32).reshape(-1)
            if len(self.entry) != n:
                raise TessellationError(f"Mesh: {n} positions but {len(self.entry)} entry indices")
        if len(self.indices) and int(self.indices.max()) >= n:
            raise TessellationError(f"Mesh: an index ({int(self.indices.max())}) is past the {n} vertices")

    # -- construction ---------------------------------------------------------------------------

    @staticmethod
    def empty() -> Mesh:
        return Mesh(np.zeros((0, 3)), np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint32))

    @staticmethod
    def concat(
        meshes: Sequence[Mesh],
        entries: Sequence[int] | NDArray[np.integer] | Literal["keep"] | None = None,
    ) -> Mesh:
        """One mesh from many.

        ``entries=None``: vertex ``entry`` = the mesh's position in ``meshes``; a sequence: the value
        given for each mesh; ``"keep"``: each mesh's own ``entry`` array (all must have one).
        ``params`` and ``colors`` are kept only when every mesh has them.
        """
        if not meshes:
            return Mesh.empty()
        counts = np.array([len(m.positions) for m in meshes], dtype=np.int64)
        tri_counts = np.array([len(m.indices) for m in meshes], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        positions = np.concatenate([m.positions for m in meshes])
        normals = np.concatenate([m.normals for m in meshes])
        if int(counts.sum()) >= 2**32:
            raise TessellationError("Mesh.concat: more than 2**32 vertices do not fit uint32 indices")
        indices = np.concatenate([m.indices for m in meshes])
        indices += np.repeat(offsets.astype(np.uint32), tri_counts)[:, None]
        if isinstance(entries, str):
            if entries != "keep" or any(m.entry is None for m in meshes):
                raise TessellationError('Mesh.concat: entries="keep" needs an entry array on every mesh')
            entry = np.concatenate([m.entry for m in meshes if m.entry is not None])
        else:
            values = np.arange(len(meshes)) if entries is None else np.asarray(entries, dtype=np.int64)
            if values.shape != (len(meshes),):
                raise TessellationError(f"Mesh.concat: {len(meshes)} meshes but {values.shape} entries")
            entry = np.repeat(values, counts)
        params = (
            np.concatenate([m.params for m in meshes if m.params is not None])
            if all(m.params is not None for m in meshes)
            else None
        )
        colors = (
            np.concatenate([m.colors for m in meshes if m.colors is not None])
            if all(m.colors is not None for m in meshes)
            else None
        )
        return Mesh(
            positions,
            normals,
            indices,
            params=params,
            colors=colors,
            entry=entry.astype(np.int32),
            two_sided=any(m.two_sided for m in meshes),
        )

    # -- queries --------------------------------------------------------------------------------

    @property
    def n_vertices(self) -> int:
        return len(self.positions)

    @property
    def n_triangles(self) -> int:
        return len(self.indices)

    def triangle_normals(self) -> F64:
        """Area vectors (m, 3): direction = facet normal by the winding, length = twice the area."""
        p = self.positions
        i = self.indices
        out: F64 = cross(p[i[:, 1]] - p[i[:, 0]], p[i[:, 2]] - p[i[:, 0]])
        return out

    def triangle_areas(self) -> F64:
        n = self.triangle_normals()
        out: F64 = 0.5 * np.sqrt(np.einsum("ij,ij->i", n, n))
        return out

    def area(self) -> float:
        return float(self.triangle_areas().sum())

    def range(self) -> F64:
        """(2, 3): low and high corners of the axis-aligned range of the vertices that triangles use."""
        if not len(self.indices):
            return np.full((2, 3), np.nan)
        mask = np.zeros(len(self.positions), dtype=bool)
        mask[self.indices.reshape(-1)] = True
        used = self.positions if mask.all() else self.positions[mask]
        return np.stack([used.min(axis=0), used.max(axis=0)])

    def signed_volume(self) -> float:
        """Enclosed volume by the divergence theorem; positive when a closed mesh faces outward."""
        p = self.positions
        i = self.indices
        a = p[i[:, 0]]
        b = p[i[:, 1]]
        c = p[i[:, 2]]
        # Relative to the first vertex to keep the sum well conditioned far from the origin.
        o = p[0] if len(p) else np.zeros(3)
        return float(np.einsum("ij,ij->i", a - o, cross(b - o, c - o)).sum() / 6.0)

    def welded_indices(self) -> U32:
        """Triangle indices with vertices at exactly the same position merged (normals and params
        split vertices; topology checks want them joined)."""
        _, inverse = np.unique(self.positions, axis=0, return_inverse=True)
        out: U32 = inverse.reshape(-1)[self.indices].astype(np.uint32)
        return out

    def edge_uses(self) -> tuple[I64, I64]:
        """Undirected welded edges (e, 2) and how many triangles use each."""
        w = self.welded_indices().astype(np.int64)
        edges = np.concatenate([w[:, [0, 1]], w[:, [1, 2]], w[:, [2, 0]]])
        edges.sort(axis=1)
        uniq, counts = np.unique(edges, axis=0, return_counts=True)
        return uniq, counts.astype(np.int64)

    def is_closed(self) -> bool:
        """Watertight and consistently oriented: every welded edge is used by exactly two triangles,
        once in each direction."""
        if not len(self.indices):
            return False
        _, counts = self.edge_uses()
        if not (counts == 2).all():
            return False
        w = self.welded_indices().astype(np.int64)
        directed = np.concatenate([w[:, [0, 1]], w[:, [1, 2]], w[:, [2, 0]]])
        return len(np.unique(directed, axis=0)) == len(directed)

    # -- transformations ------------------------------------------------------------------------

    def transformed(self, matrix: ArrayLike) -> Mesh:
        """The mesh carried by a 4x4 (or 3x4) affine transform. Normals go by the inverse transpose of
        the linear part; a mirroring transform (negative determinant) reverses the winding so the
        triangles still face the way their normals point."""
        m = _as_matrix4(matrix)
        linear = m[:3, :3]
        positions = self.positions @ linear.T + m[:3, 3]
        nm = _normal_matrix(linear).astype(np.float64)
        normals = self.normals.astype(np.float64) @ nm.T
        lengths = np.sqrt(np.einsum("ij,ij->i", normals, normals))
        normals /= np.where(lengths > 0, lengths, 1.0)[:, None]
        indices = self.indices
        if np.linalg.det(linear) < 0:
            indices = indices[:, [0, 2, 1]]
        return Mesh(
            positions,
            normals.astype(np.float32),
            indices,
            params=self.params,
            colors=self.colors,
            entry=self.entry,
            two_sided=self.two_sided,
        )

    def instanced(self, transforms: ArrayLike) -> Mesh:
        """Copies of this mesh carried by each of ``transforms`` (k, 4, 4) or (k, 3, 4), in one mesh
        whose ``entry`` is the instance number (for formats or checks that want world geometry;
        keep a part as one mesh plus its transforms where instancing is possible)."""
        m = np.asarray(transforms, dtype=np.float64)
        if m.ndim != 3 or m.shape[1:] not in ((4, 4), (3, 4)) or not np.isfinite(m).all():
            raise TessellationError(f"instanced: expected (k, 4, 4) or (k, 3, 4) transforms, got {m.shape}")
        k, n = len(m), len(self.positions)
        if k * n >= 2**32:
            raise TessellationError(f"instanced: {k * n} vertices do not fit uint32 indices")
        linear = m[:, :3, :3]
        positions = np.matmul(self.positions[None], linear.transpose(0, 2, 1)) + m[:, None, :3, 3]
        det = np.linalg.det(linear)
        normal_mats = np.stack([_normal_matrix(a) for a in linear]) if k else np.zeros((0, 3, 3))
        normals = np.matmul(self.normals[None].astype(np.float64), normal_mats.transpose(0, 2, 1))
        lengths = np.sqrt(np.einsum("kij,kij->ki", normals, normals))
        normals /= np.where(lengths > 0, lengths, 1.0)[..., None]
        tris = self.indices[None] + (np.arange(k, dtype=np.uint32) * np.uint32(n))[:, None, None]
        mirrored = det < 0
        if mirrored.any():
            tris[mirrored] = tris[mirrored][:, :, [0, 2, 1]]
        return Mesh(
            positions.reshape(-1, 3),
            normals.reshape(-1, 3).astype(np.float32),
            tris.reshape(-1, 3),
            params=None if self.params is None else np.tile(self.params, (k, 1)),
            colors=None if self.colors is None else np.tile(self.colors, k),
            entry=np.repeat(np.arange(k, dtype=np.int32), n),
            two_sided=self.two_sided,
        )

    def flipped(self) -> Mesh:
        """The same surface facing the other way (winding reversed, normals negated)."""
        return Mesh(
            self.positions,
            -self.normals,
            self.indices[:, [0, 2, 1]],
            params=self.params,
            colors=self.colors,
            entry=self.entry,
            two_sided=self.two_sided,
        )

    def with_entry(self, value: int) -> Mesh:
        return Mesh(
            self.positions,
            self.normals,
            self.indices,
            params=self.params,
            colors=self.colors,
            entry=np.full(len(self.positions), value, dtype=np.int32),
            two_sided=self.two_sided,
        )

    def without_degenerate(self) -> Mesh:
        """Drops triangles with two corners at the same position, and vertices nothing uses."""
        keep = ~degenerate_mask(self.positions, self.indices)
        return self.subset(keep)

    def subset(self, keep_triangles: NDArray[np.bool_]) -> Mesh:
        """Only the triangles where ``keep_triangles`` is true; unused vertices are dropped."""
        tris = self.indices[keep_triangles]
        used = np.zeros(len(self.positions), dtype=bool)
        used[tris.reshape(-1)] = True
        if len(tris) == len(self.indices) and used.all():
            return self
        remap = np.cumsum(used) - 1
        return Mesh(
            self.positions[used],
            self.normals[used],
            remap[tris].astype(np.uint32),
            params=None if self.params is None else self.params[used],
            colors=None if self.colors is None else self.colors[used],
            entry=None if self.entry is None else self.entry[used],
            two_sided=self.two_sided,
        )


@dataclass(eq=False)
class Polyline:
    """Wires: ``points`` (n, 3) float64 and ``starts`` (k,) int64, the index of each line's first
    point (line ``i`` is ``points[starts[i]:starts[i+1]]``). A closed line repeats its first point at
    the end. ``points_only`` marks a point string (draw the points, not segments between them).
    ``entry`` (n,) int32 is the per-point batch/list index, as for meshes. Lines are never triangles."""

    points: F64
    starts: I64
    entry: I32 | None = None
    points_only: bool = False

    def __post_init__(self) -> None:
        self.points = np.ascontiguousarray(self.points, dtype=np.float64).reshape(-1, 3)
        self.starts = np.ascontiguousarray(self.starts, dtype=np.int64).reshape(-1)
        n = len(self.points)
        if len(self.starts) and (
            self.starts[0] != 0 or (np.diff(self.starts) <= 0).any() or self.starts[-1] >= max(n, 1)
        ):
            raise TessellationError("Polyline: starts must begin at 0 and increase inside the points")
        if n and not len(self.starts):
            raise TessellationError("Polyline: points without any line start")
        if self.entry is not None:
            self.entry = np.ascontiguousarray(self.entry, dtype=np.int32).reshape(-1)
            if len(self.entry) != n:
                raise TessellationError(f"Polyline: {n} points but {len(self.entry)} entry indices")

    @staticmethod
    def empty() -> Polyline:
        return Polyline(np.zeros((0, 3)), np.zeros(0, np.int64))

    @staticmethod
    def from_lines(lines: Sequence[ArrayLike], *, points_only: bool = False) -> Polyline:
        arrays = [np.asarray(line, dtype=np.float64).reshape(-1, 3) for line in lines]
        arrays = [a for a in arrays if len(a)]
        if not arrays:
            return Polyline.empty()
        counts = np.array([len(a) for a in arrays], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return Polyline(np.concatenate(arrays), starts, points_only=points_only)

    @staticmethod
    def concat(
        polylines: Sequence[Polyline],
        entries: Sequence[int] | NDArray[np.integer] | Literal["keep"] | None = None,
    ) -> Polyline:
        """As ``Mesh.concat``. The result is ``points_only`` only if every part is."""
        parts = list(polylines)
        if not parts:
            return Polyline.empty()
        counts = np.array([len(p.points) for p in parts], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        starts = np.concatenate([p.starts + o for p, o in zip(parts, offsets, strict=True)])
        if isinstance(entries, str):
            if entries != "keep" or any(p.entry is None for p in parts):
                raise TessellationError('Polyline.concat: entries="keep" needs an entry array on every part')
            entry = np.concatenate([p.entry for p in parts if p.entry is not None])
        else:
            values = np.arange(len(parts)) if entries is None else np.asarray(entries, dtype=np.int64)
            if values.shape != (len(parts),):
                raise TessellationError(f"Polyline.concat: {len(parts)} parts but {values.shape} entries")
            entry = np.repeat(values, counts)
        return Polyline(
            np.concatenate([p.points for p in parts]),
            starts,
            entry=entry.astype(np.int32),
            points_only=all(p.points_only for p in parts),
        )

    @property
    def n_lines(self) -> int:
        return len(self.starts)

    def line_ids(self) -> I64:
        """(n,) which line each point belongs to."""
        ids = np.zeros(len(self.points), dtype=np.int64)
        if len(self.starts) > 1:
            ids[self.starts[1:]] = 1
        out: I64 = np.cumsum(ids)
        return out

    def segments(self) -> I64:
        """(s, 2) point index pairs of the drawn segments (none for a point string)."""
        if self.points_only or len(self.points) < 2:
            return np.zeros((0, 2), dtype=np.int64)
        ids = self.line_ids()
        first = np.arange(len(self.points) - 1)
        first = first[ids[first] == ids[first + 1]]
        return np.stack([first, first + 1], axis=1)

    def length(self) -> float:
        seg = self.segments()
        d = self.points[seg[:, 1]] - self.points[seg[:, 0]]
        return float(np.sqrt(np.einsum("ij,ij->i", d, d)).sum())

    def range(self) -> F64:
        if not len(self.points):
            return np.full((2, 3), np.nan)
        return np.stack([self.points.min(axis=0), self.points.max(axis=0)])

    def transformed(self, matrix: ArrayLike) -> Polyline:
        m = _as_matrix4(matrix)
        return Polyline(
            self.points @ m[:3, :3].T + m[:3, 3], self.starts, entry=self.entry, points_only=self.points_only
        )
