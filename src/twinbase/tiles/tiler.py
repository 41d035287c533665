"""3D Tiles 1.1 tile tree: plan from element boxes, build each tile, assemble ``tileset.json``.

A large export runs as many tile jobs on every worker process, so the work is split in three steps:

1. ``plan_tileset(boxes, options)``: the tree, from the elements' world boxes only (known before any
   meshing). Cheap: numpy over the elements, one Python step per tree node.
2. ``tile_content(node, content, options, encode)``: one tile's bytes from the ``TileContent`` of exactly
   ``node``'s elements (the caller meshes them). Pieces smaller than the tile's tolerance are left out and
   the meshes are simplified to it here (meshoptimizer), then the caller's GLB encoder writes the bytes.
3. ``tileset_json(plan, results, root_transform, model_extents)``: once every tile is done, the
   ``tileset.json`` document: empty tiles and children left out, box volumes tightened to what the tiles
   really draw (a parent's volume holds its children's), geometric errors non-increasing with depth.

The tree (in the manner of iTwin.js' tile trees):

- A node covers the elements whose box centres fall in its cell. A node whose elements' estimated full
  detail exceeds the tile budget is split: its cell (the box of its centres) is cut in half across its
  longest axis, and each half that is still over budget again, three cuts deep at most (an octree that
  never cuts thin axes and does not cut what already fits, so leaves come out between about half the
  budget and the budget rather than an eighth). Empty cells are left out. The other nodes are leaves:
  they draw all their elements at full detail, so every element is drawn at full detail in exactly one
  leaf.
- Every node has a *tolerance* in metres, which is its ``geometricError``: it leaves out the elements
  whose *radius* (half the box diagonal) is below it and simplifies the rest to it. Leaving out a piece
  of radius r moves the surface by about r, and a simplified mesh moves by at most the tolerance, so
  the tile is within that error. The radius is the measure meshoptimizer's prune uses for the
  disconnected pieces it drops (measured: a box goes when half its diagonal is below the error), so
  what the plan keeps and what ``tile_content`` keeps agree. A leaf's tolerance is the full-detail
  chord tolerance (``TilerOptions.leaf_chord_tolerance``).
- The tolerance of an inner node is the larger of (a) its box diagonal / ``tolerance_divisor`` (1024 by
  default): iTwin.js sizes a tile's chord tolerance to about a pixel when the tile fills a 512 to 1024
  pixel view; and (b) the smallest tolerance at which the elements it keeps fit the tile budget
  (``max_root_bytes`` for the root, ``max_tile_bytes`` below), at ``bytes_per_triangle``. It is then
  capped by the parent's tolerance, so tolerances never grow with depth and every element a tile draws
  is also drawn by the child that holds it (``refine: "REPLACE"`` never loses an element). Capping keeps
  the budget: the child then keeps a subset of what its parent keeps, at the same tolerance.
- Tiles are named ``<level>-<index>.<tile_extension>`` (the iTwin exporter's names; ``glb`` by default):
  level 0 is the root, index counts the nodes of a level in breadth-first order.

Part instances stay instances: an instance belongs to its element's tile, and a coarse tile leaves out
the instances smaller than its tolerance and simplifies the part's own mesh.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .lod import column_max, column_min, content_bounds, content_triangles, reduce_content
from .model import F64, U64, TileContent

I64 = NDArray[np.int64]

#: The encoder: ``(content, origin) -> GLB bytes``; origin (3,) float64 is subtracted from positions
#: before float32 and carried by the glTF node (``gltf.write_glb(content, origin=origin)``).
Encoder = Callable[[TileContent, F64], bytes]

#: Bounding boxes are grown by this much (metres) on every side: a flat element (a slab of zero
#: thickness) still gets a box with volume, and float32 positions rounded in the GLB stay inside.
BOX_PAD = 1e-3

#: Planning estimate of what simplification to a tolerance ``t`` leaves of a mesh of ``n`` triangles
#: and radius ``r``, made at chord tolerance ``c``: the smaller of ``n * sqrt(c / t)`` (a surface curved
#: one way: a pipe's segment count scales so) and ``8 (r / t)^2`` (a surface of extent ``2r`` needs no
#: finer triangles than ``t``), never more than ``n`` nor fewer than a box's 12. Only
#: meshes of at least ``simplify_min_triangles`` count as shrinking: small disconnected pieces (a
#: 12-triangle box) do not simplify at all. ``c`` is at least ``_SIMPLIFY_REFERENCE``: the mesher's
#: 15 degree angle tolerance sags about that much on a 1 m radius.
_SIMPLIFY_REFERENCE = 0.01
_MIN_SIMPLIFIED = 12

BATCHED_TILESET = "BENTLEY_BatchedTileSet"

#: Model extents of a model with no geometry: iTwin.js' null range.
NULL_LOW: tuple[float, ...] = (float(np.finfo(np.float64).max),) * 3
NULL_HIGH: tuple[float, ...] = (-float(np.finfo(np.float64).max),) * 3


@dataclass(frozen=True)
class TilerOptions:
    """How the tree is cut and how fine each level is.

    - ``max_tile_bytes``: a node whose elements would take more (estimated) is split; inner tiles keep
      under it too.
    - ``max_root_bytes``: budget of the root tile (a viewer's first download).
    - ``bytes_per_triangle``: planning estimate of the encoded size per triangle. The meshopt GLB writer
      (``gltf.write_glb``) measured 9 B/tri on full-detail tiles (box-heavy BIM, instances counted per
      instance) and 14-15 B/tri on simplified ones; 14 keeps tiles under ``max_tile_bytes``. Tile
      results report the real sizes.
    - ``max_tile_triangles`` / ``max_root_triangles``: the budgets in triangles; derived from the byte
      budgets when None.
    - ``levels``: the number of levels of detail (tree depth + 1); a node at the last level is a leaf
      whatever its size.
    - ``leaf_chord_tolerance``: the chord tolerance (m) of full-detail meshes, the leaves'
      ``geometricError``; the glue should mesh leaves with it (and may mesh a coarse tile's elements at
      that tile's ``chord_tolerance``).
    - ``tolerance_divisor``: an inner tile's tolerance is at least its box diagonal over this.
    - ``simplify_min_triangles``: meshes with fewer triangles are not simplified (only left out).
    - ``default_element_triangles``: estimate for an element when the boxes carry none.
    - ``max_inner_elements``: the most elements an inner tile draws (its tolerance rises above the radius
      of the next largest). Each element an inner tile draws is read and meshed again for it; without a
      cap, a model of many similar elements has coarse tiles that mesh nearly all of them, and an
      export does its meshing about twice.
    """

    max_tile_bytes: int = 1_000_000
    max_root_bytes: int = 256_000
    bytes_per_triangle: float = 14.0
    max_tile_triangles: int | None = None
    max_root_triangles: int | None = None
    levels: int = 12
    leaf_chord_tolerance: float = 0.001
    tolerance_divisor: float = 1024.0
    simplify_min_triangles: int = 64
    default_element_triangles: int = 64
    max_inner_elements: int = 200
    tile_extension: str = "glb"

    @property
    def tile_triangles(self) -> int:
        if self.max_tile_triangles is not None:
            return self.max_tile_triangles
        return max(1, int(self.max_tile_bytes / self.bytes_per_triangle))

    @property
    def root_triangles(self) -> int:
        if self.max_root_triangles is not None:
            return self.max_root_triangles
        return max(1, int(self.max_root_bytes / self.bytes_per_triangle))


@dataclass(eq=False)
class ElementBoxes:
    """The elements to tile: ``ids`` (k,) uint64, world boxes ``low``/``high`` (k, 3) float64 in iModel
    coordinates, ``model_ids`` (k,), and optionally ``triangles`` (k,) an estimate of each element's
    full-detail triangle count (instances included)."""

    ids: U64
    low: F64
    high: F64
    model_ids: U64
    triangles: I64 | None = None

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(eq=False)
class TileNode:
    """One tile of the plan.

    ``elements`` are rows of the plan's ``ElementBoxes`` that this tile draws (the caller meshes
    exactly these for ``tile_content``); ``subtree`` the rows of every element under it (its cell).
    ``low``/``high`` bound the subtree's boxes, ``content_low``/``content_high`` the drawn elements'.
    ``tolerance`` is the tile's error in metres (its ``geometricError``); ``simplify`` tells whether
    ``tile_content`` leaves out small pieces and simplifies (inner tiles) or keeps full detail (leaves).
    ``estimated_triangles`` is the plan's estimate after simplification."""

    index: int
    level: int
    name: str
    parent: int
    children: list[int]
    low: F64
    high: F64
    content_low: F64
    content_high: F64
    elements: I64
    subtree: I64
    tolerance: float
    leaf: bool
    estimated_triangles: int

    @property
    def simplify(self) -> bool:
        return not self.leaf

    @property
    def chord_tolerance(self) -> float:
        """The chord tolerance the mesher may use for this tile's curves: the tile's tolerance."""
        return self.tolerance


@dataclass(eq=False)
class TilePlan:
    """The tree: ``nodes`` in breadth-first order (a parent before its children; ``nodes[0]`` is the
    root), over ``boxes``."""

    boxes: ElementBoxes
    options: TilerOptions
    nodes: list[TileNode] = field(default_factory=list)

    def element_ids(self, node: TileNode) -> U64:
        return self.boxes.ids[node.elements]

    def model_extents(self) -> dict[int, tuple[F64, F64]]:
        return model_extents(self.boxes)


@dataclass(eq=False)
class TileResult:
    """What ``tile_content`` made for one node: the bytes and what the tileset needs about them.

    ``low``/``high`` bound the drawn geometry (iModel coordinates); ``error`` the tile's geometric error
    (the node's tolerance, or the simplifier's larger one); triangle counts count an instanced part once
    per instance; ``input_triangles`` is before omission and simplification."""

    name: str
    data: bytes
    low: F64
    high: F64
    error: float
    triangles: int
    input_triangles: int
    instances: int
    features: int


# ---------------------------------------------------------------------------------------------------
# 1. Plan


def _estimated_cost(tris: I64, radii: F64, tolerance: float, options: TilerOptions) -> I64:
    """Triangles each element is expected to keep in a tile simplified to ``tolerance``."""
    t = max(tolerance, 1e-12)
    reference = max(options.leaf_chord_tolerance, _SIMPLIFY_REFERENCE)
    curved = tris * min(1.0, math.sqrt(reference / t))
    extent = 8.0 * (radii / t) ** 2
    shrunk = np.maximum(_MIN_SIMPLIFIED, np.ceil(np.minimum(curved, extent)))
    big = tris >= options.simplify_min_triangles
    return np.where(big, np.minimum(tris, shrunk.astype(np.int64)), tris)


def _budget_tolerance(radii: F64, tris: I64, floor: float, budget: int, options: TilerOptions) -> float:
    """The smallest tolerance ``t >= floor`` at which the elements of radius ``>= t`` (simplified
    to ``t``) fit ``budget`` triangles. Candidates are ``floor`` and the radii above it; the cost only
    falls as ``t`` grows, so a binary search over them finds it. When even the largest element alone is
    over budget the tolerance is its radius: the tile keeps it (simplified), not nothing."""
    candidates = np.concatenate([[floor], np.unique(radii[radii > floor])])

    def fits(t: float) -> bool:
        keep = radii >= t
        return int(_estimated_cost(tris[keep], radii[keep], t, options).sum()) <= budget

    lo, hi = 0, len(candidates) - 1
    if fits(float(candidates[0])):
        return float(candidates[0])
    if not fits(float(candidates[hi])):
        return float(candidates[hi])
    while hi - lo > 1:  # invariant: candidates[lo] does not fit, candidates[hi] fits
        mid = (lo + hi) // 2
        if fits(float(candidates[mid])):
            hi = mid
        else:
            lo = mid
    return float(candidates[hi])


def _split_cells(rows: I64, centers: F64, tris: I64, budget: int, splits: int = 3) -> list[I64]:
    """Cut the box of ``centers[rows]`` in half across its longest axis, then each half that is still
    over ``budget`` triangles across its own longest axis, up to ``splits`` times (an octree at most,
    but a cell that already fits is not cut: fewer, fuller tiles). Returns the non-empty cells' rows."""
    c = centers[rows]
    t = tris[rows]
    cells: list[tuple[I64, F64, F64]] = [(np.arange(len(rows)), column_min(c), column_max(c))]
    for round_ in range(splits):
        nxt: list[tuple[I64, F64, F64]] = []
        for sel, lo, hi in cells:
            ext = hi - lo
            axis = int(np.argmax(ext))
            # The first cut always happens (the node is over budget); later ones only where needed.
            if ext[axis] <= 0.0 or (round_ > 0 and int(t[sel].sum()) <= budget):
                nxt.append((sel, lo, hi))
                continue
            mid = 0.5 * (lo[axis] + hi[axis])
            left = c[sel, axis] < mid
            hi_l = hi.copy()
            hi_l[axis] = mid
            lo_r = lo.copy()
            lo_r[axis] = mid
            for part, a, b in ((sel[left], lo, hi_l), (sel[~left], lo_r, hi)):
                if len(part):
                    nxt.append((part, a, b))
        cells = nxt
    return [rows[sel] for sel, _, _ in cells]


def plan_tileset(boxes: ElementBoxes, options: TilerOptions | None = None) -> TilePlan:
    """The tile tree over ``boxes`` (see the module docstring). Deterministic: a worker given the same
    boxes and options gets the same plan, so a tile job can carry just a node index."""
    options = options or TilerOptions()
    k = len(boxes)
    low = np.asarray(boxes.low, np.float64).reshape(k, 3)
    high = np.asarray(boxes.high, np.float64).reshape(k, 3)
    if boxes.triangles is None:
        tris = np.full(k, options.default_element_triangles, np.int64)
    else:
        tris = np.maximum(np.asarray(boxes.triangles, np.int64), 0)
    radii = 0.5 * np.linalg.norm(high - low, axis=1)
    centers = 0.5 * (low + high)
    plan = TilePlan(boxes=boxes, options=options)
    leaf_tol = float(options.leaf_chord_tolerance)

    # Breadth-first: (rows of the subtree, parent index, level).
    queue: list[tuple[I64, int, int]] = [(np.arange(k, dtype=np.int64), -1, 0)]
    per_level: dict[int, int] = {}
    head = 0
    while head < len(queue):
        rows, parent, level = queue[head]
        head += 1
        index = len(plan.nodes)
        number = per_level.get(level, 0)
        per_level[level] = number + 1
        if len(rows):
            sub_low, sub_high = column_min(low[rows]), column_max(high[rows])
        else:
            sub_low, sub_high = np.zeros(3), np.zeros(3)
        full = int(tris[rows].sum())
        root = parent < 0
        budget = options.root_triangles if root else options.tile_triangles
        c = centers[rows]
        centers_spread = len(rows) > 1 and bool(np.any(column_max(c) > column_min(c)))
        leaf = full <= budget or level >= options.levels - 1 or not centers_spread
        if leaf:
            # The parent's tolerance is at least the leaf tolerance (its floor), so this never grows.
            tolerance = leaf_tol
            drawn = rows
        else:
            floor = max(leaf_tol, float(np.linalg.norm(sub_high - sub_low)) / options.tolerance_divisor)
            tolerance = _budget_tolerance(radii[rows], tris[rows], floor, budget, options)
            cap = options.max_inner_elements
            if int(np.count_nonzero(radii[rows] >= tolerance)) > cap:
                next_largest = float(np.partition(radii[rows], -(cap + 1))[-(cap + 1)])
                tolerance = max(tolerance, float(np.nextafter(next_largest, np.inf)))
            if not root:
                tolerance = min(tolerance, plan.nodes[parent].tolerance)
            drawn = rows[radii[rows] >= tolerance]
        if len(drawn):
            c_low, c_high = column_min(low[drawn]), column_max(high[drawn])
        else:
            c_low, c_high = sub_low.copy(), sub_low.copy()
        estimate = full if leaf else int(_estimated_cost(tris[drawn], radii[drawn], tolerance, options).sum())
        node = TileNode(
            index=index,
            level=level,
            name=f"{level}-{number}.{options.tile_extension}",
            parent=parent,
            children=[],
            low=sub_low,
            high=sub_high,
            content_low=c_low,
            content_high=c_high,
            elements=drawn,
            subtree=rows,
            tolerance=float(tolerance),
            leaf=leaf,
            estimated_triangles=estimate,
        )
        plan.nodes.append(node)
        if parent >= 0:
            plan.nodes[parent].children.append(index)
        if not leaf:
            for cell in _split_cells(rows, centers, tris, options.tile_triangles):
                queue.append((cell, index, level + 1))
    return plan


def model_extents(boxes: ElementBoxes) -> dict[int, tuple[F64, F64]]:
    """Each model's range: the union of its elements' boxes, keyed by model id."""
    if len(boxes) == 0:
        return {}
    models = np.asarray(boxes.model_ids, np.uint64)
    order = np.argsort(models, kind="stable")
    sorted_models = models[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_models[1:] != sorted_models[:-1]]))
    lows = np.minimum.reduceat(np.asarray(boxes.low, np.float64)[order], starts, axis=0)
    highs = np.maximum.reduceat(np.asarray(boxes.high, np.float64)[order], starts, axis=0)
    return {int(sorted_models[s]): (lows[i], highs[i]) for i, s in enumerate(starts)}


# ---------------------------------------------------------------------------------------------------
# 2. Content


def tile_content(
    node: TileNode, content: TileContent, options: TilerOptions, encode: Encoder
) -> TileResult | None:
    """One tile's bytes from the ``TileContent`` of ``node.elements``: a leaf as given; an inner tile
    with pieces smaller than its tolerance left out and meshes simplified to it. None when nothing is
    left to draw."""
    input_triangles = content_triangles(content)
    if node.simplify:
        content, error = reduce_content(content, node.tolerance, options.simplify_min_triangles)
        error = max(error, node.tolerance)
    else:
        error = node.tolerance
    bounds = content_bounds(content)
    if bounds is None:
        return None
    low, high = bounds
    origin = 0.5 * (low + high)
    data = encode(content, origin)
    return TileResult(
        name=node.name,
        data=data,
        low=low,
        high=high,
        error=float(error),
        triangles=content_triangles(content),
        input_triangles=input_triangles,
        instances=sum(inst.count for inst in content.instances),
        features=len(content.features),
    )


# ---------------------------------------------------------------------------------------------------
# 3. tileset.json


def _box(low: F64, high: F64) -> list[float]:
    lo = np.asarray(low, np.float64) - BOX_PAD
    hi = np.asarray(high, np.float64) + BOX_PAD
    c = 0.5 * (lo + hi)
    h = 0.5 * (hi - lo)
    return [float(v) for v in (*c, h[0], 0.0, 0.0, 0.0, h[1], 0.0, 0.0, 0.0, h[2])]


def _id_hex(value: int) -> str:
    return f"0x{int(value):x}"


def tileset_json(
    plan: TilePlan,
    results: Mapping[int, TileResult | None] | Sequence[TileResult | None],
    root_transform: F64 | None = None,
    model_extents: Mapping[int, tuple[Any, Any] | None] | None = None,
    content_offset: F64 | None = None,
) -> dict[str, Any]:
    """The ``tileset.json`` document once every tile is built.

    ``results`` maps node index to that tile's result (None or missing: the tile drew nothing).
    ``root_transform``: optional 4x4 (row-major numpy, as a matrix acting on column vectors) from iModel
    coordinates to ECEF for a geolocated iModel; None leaves the tiles in iModel coordinates.
    ``model_extents``: model id -> (low, high) or None for a model without geometry; defaults to the
    plan's element boxes per model. Tiles that draw nothing and have no drawn descendants are left
    out; a tile's box bounds what it and its descendants really draw; a tile's geometric error is at
    least each child's. ``content_offset`` (3,): the tiles hold iModel coordinates minus it (iMdl
    tiles); the boxes are shifted alike and the root transform adds it back (after ``root_transform``'s
    own), while the models' extents stay in iModel coordinates."""
    if isinstance(results, Mapping):
        got: dict[int, TileResult | None] = dict(results)
    else:
        got = dict(enumerate(results))
    nodes = plan.nodes
    n = len(nodes)
    b_low = np.full((n, 3), np.inf)
    b_high = np.full((n, 3), -np.inf)
    error = np.zeros(n)
    kept = np.zeros(n, bool)
    for node in reversed(nodes):  # children come after their parents: bottom-up
        i = node.index
        res = got.get(i)
        err = node.tolerance
        if res is not None:
            b_low[i] = np.minimum(b_low[i], res.low)
            b_high[i] = np.maximum(b_high[i], res.high)
            err = max(err, res.error)
            kept[i] = True
        for c in node.children:
            if kept[c]:
                b_low[i] = np.minimum(b_low[i], b_low[c])
                b_high[i] = np.maximum(b_high[i], b_high[c])
                err = max(err, float(error[c]))
                kept[i] = True
        error[i] = err

    shift = np.zeros(3) if content_offset is None else np.asarray(content_offset, np.float64).reshape(3)

    def tile(i: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "boundingVolume": {"box": _box(b_low[i] - shift, b_high[i] - shift)},
            "geometricError": float(error[i]),
        }
        res = got.get(i)
        if res is not None:
            box = _box(res.low - shift, res.high - shift)
            out["content"] = {"uri": res.name, "boundingVolume": {"box": box}}
        children = [tile(c) for c in nodes[i].children if kept[c]]
        if children:
            out["children"] = children
        return out

    if n and kept[0]:
        root = tile(0)
        diag = float(np.linalg.norm(b_high[0] - b_low[0]))
        top_error = max(float(error[0]), diag)
    else:
        root = {"boundingVolume": {"box": _box(np.zeros(3), np.zeros(3))}, "geometricError": 0.0}
        top_error = 0.0
    root["refine"] = "REPLACE"
    if content_offset is not None:
        move = np.eye(4)
        move[:3, 3] = shift
        root_transform = move if root_transform is None else np.asarray(root_transform, np.float64) @ move
    if root_transform is not None:
        m = np.asarray(root_transform, np.float64).reshape(4, 4)
        if not np.array_equal(m, np.eye(4)):
            root["transform"] = [float(v) for v in m.T.ravel()]  # column-major
    if model_extents is None:
        model_extents = plan.model_extents()
    models: dict[str, Any] = {}
    for mid in sorted(model_extents):
        ext = model_extents[mid]
        lo_l: list[float]
        hi_l: list[float]
        if ext is None:
            lo_l, hi_l = list(NULL_LOW), list(NULL_HIGH)
        else:
            lo_l = [float(v) for v in np.asarray(ext[0], np.float64)]
            hi_l = [float(v) for v in np.asarray(ext[1], np.float64)]
        models[_id_hex(mid)] = {"extents": {"low": lo_l, "high": hi_l}}
    return {
        "asset": {"version": "1.1", "generator": "twinbase"},
        "geometricError": top_error,
        "extensionsUsed": [BATCHED_TILESET],
        "extensions": {BATCHED_TILESET: {"models": models}},
        "root": root,
    }
