"""What the tile writers take: flat arrays of triangles, features and materials, nothing per triangle.

The glue (``domain`` / ``jobs``) fills these from the file engine (``bim.mesher``); the writers in this
package turn them into bytes (GLB, tileset.json, .3tz). Nothing here knows HTTP, the database or iModel
files.

Coordinates are iModel spatial coordinates (metres, Z up) unless a field says otherwise; the writers
apply glTF's Y-up convention and any tile or root transform themselves.

- A *feature* is what a pick answers: one element seen through one subcategory and geometry class (an
  element drawn in two subcategories is two features, as in iTwin.js's feature tables). ``FeatureTable``
  holds one row per feature; meshes name features by their row number.
- A *material* is a piece's look: RGBA (sRGB bytes, alpha = 255 - transparency byte) and the render
  material id (0 when none). ``MaterialTable`` holds one row per distinct look; meshes name materials by
  row number, per vertex (pieces never share vertices, so per vertex is per triangle).
- ``TriangleSet`` is many pieces' triangles in one set of arrays. ``PartInstances`` is a geometry part
  tessellated once (its own ``TriangleSet`` in part coordinates) and where it is placed: one transform,
  feature and material remap per instance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
F32 = NDArray[np.float32]
U8 = NDArray[np.uint8]
U32 = NDArray[np.uint32]
U64 = NDArray[np.uint64]


@dataclass(eq=False)
class FeatureTable:
    """One row per feature. Ids are the iModel's 64-bit ids (never written as JSON numbers)."""

    element_ids: U64
    model_ids: U64
    category_ids: U64
    subcategory_ids: U64
    geometry_classes: U8  # iTwin.js GeometryClass: 0 primary, 1 construction, 2 dimension, 3 pattern
    class_names: list[str]  # the element's class full name, "Schema:Class"
    labels: list[str | None]  # the element's user label (or None)

    def __len__(self) -> int:
        return len(self.element_ids)


@dataclass(eq=False)
class MaterialTable:
    """One row per distinct look: ``rgba`` (k, 4) uint8 sRGB bytes; ``render_material_ids`` (k,) uint64,
    0 when the piece has no render material; ``double_sided`` (k,) bool for open surfaces (lighting
    shows both sides; closed solids are drawn one-sided)."""

    rgba: U8
    render_material_ids: U64
    double_sided: NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.rgba)


@dataclass(eq=False)
class TriangleSet:
    """Indexed triangles: ``positions`` (n, 3) float64, ``normals`` (n, 3) float32 unit, ``indices``
    (m, 3) uint32 counter-clockwise seen from the normals' side, ``feature`` (n,) uint32 row of the
    ``FeatureTable``, ``material`` (n,) uint32 row of the ``MaterialTable``; ``params`` (n, 2) float32
    texture coordinates or None."""

    positions: F64
    normals: F32
    indices: U32
    feature: U32
    material: U32
    params: F32 | None = None

    @property
    def n_triangles(self) -> int:
        return len(self.indices)

    @staticmethod
    def empty() -> TriangleSet:
        return TriangleSet(
            np.zeros((0, 3)),
            np.zeros((0, 3), np.float32),
            np.zeros((0, 3), np.uint32),
            np.zeros(0, np.uint32),
            np.zeros(0, np.uint32),
        )


@dataclass(eq=False)
class PartInstances:
    """A geometry part drawn ``k`` times: ``part`` in part coordinates (its ``feature`` is unused: 0;
    its ``material`` numbers the part's own pieces, 0..p-1); ``transforms`` (k, 4, 4) world from part
    (rotation, non-uniform scale and translation; may mirror); ``feature`` (k,) the FeatureTable row of
    each instance; ``materials`` (k, p) the MaterialTable row of each piece of each instance."""

    part_id: int
    part: TriangleSet
    transforms: F64
    feature: U32
    materials: U32

    @property
    def count(self) -> int:
        return len(self.transforms)


@dataclass(eq=False)
class TileContent:
    """Everything one tile (or a whole-model GLB) draws."""

    features: FeatureTable
    materials: MaterialTable
    triangles: TriangleSet
    instances: list[PartInstances] = field(default_factory=list)
