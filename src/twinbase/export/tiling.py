"""A 3D Tiles export made tile by tile, on every core: plan from the elements' placements, then each tile
meshes exactly its own elements in a worker process, then ``tileset.json``.

1. **Plan** (``plan_from_file``): the world box of every selected 3D element comes from its placement
   (one SQL query, arrays: ``IModelFile.placements``), its size estimate from its stored stream's bytes
   (a rough proxy, good in aggregate over a tile's many elements). ``tiles.tiler.plan_tileset`` cuts the
   tree. Nothing is decoded.
2. **Tiles** (``make_tiles``): each node reads its elements by id (``IModelFile.elements_by_id``), meshes
   them (inner tiles at their own, coarser chord tolerance: they are simplified to it anyway), turns the
   result into ``TileContent`` and lets ``tiles.tiler.tile_content`` leave out, simplify and encode.
   Nodes go to a pool of processes (``spawn``: safe from a threaded server), largest first; a small plan
   runs in this process. Leaves draw every element once at full detail, so the element counts, fallbacks
   and errors of the export are the leaves' (inner tiles re-mesh big elements; counting them would count
   twice).
3. **Assembly**: ``tiles.tiler.tileset_json`` once every tile is known.
"""

from __future__ import annotations

import concurrent.futures
import gc
import hashlib
import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twinbase.bim.imodel import IModelFile
from twinbase.bim.mesher import MeshResult, PartCache, mesh_elements
from twinbase.bim.tessellate import StrokeOptions
from twinbase.export.config import TilerConfig
from twinbase.export.content import ElementFacts, tile_content
from twinbase.tiles.gltf import write_glb
from twinbase.tiles.model import TileContent
from twinbase.tiles.tiler import ElementBoxes, TileNode, TilePlan, TileResult, TilerOptions, plan_tileset
from twinbase.tiles.tiler import tile_content as build_tile

#: Estimated triangles per byte of a stored (compressed) GeometryStream: measured 0.34 on the bench mix at
#: 1 mm; per element it is a poor guess (a cylinder is a few hundred bytes, a grid polyface kilobytes for
#: fewer triangles), over the thousands of elements of a tile it evens out.
TRIANGLES_PER_STREAM_BYTE = 0.4
#: Below this many estimated triangles a plan is tiled in this process (starting workers costs more).
POOL_MIN_TRIANGLES = 300_000
#: Changes when what a tile's bytes are made from changes (the writer, the tiler): old tiles not reused.
TILE_KEY_VERSION = "twinbase-tiles-1"


def tiler_options(config: TilerConfig) -> TilerOptions:
    return TilerOptions(
        max_tile_bytes=config.max_tile_kb * 1024,
        levels=config.levels_of_detail,
        leaf_chord_tolerance=config.chord_tolerance,
    )


def plan_from_file(imodel: IModelFile, config: TilerConfig) -> TilePlan:
    """The tile tree of the selected 3D elements, from their placements alone."""
    arrays = imodel.placements(model_ids=sorted(config.models) if config.models else None)
    keep = np.ones(len(arrays), bool)
    if config.categories is not None:
        keep &= np.isin(arrays.category_ids, np.array(sorted(config.categories), np.int64))
    low, high = arrays.ranges()
    sizes = imodel.geometry_sizes()
    ids = arrays.ids[keep]
    stream_bytes = np.array([sizes.get(int(i), 0) for i in ids], np.float64)
    keep_stream = stream_bytes > 0  # a placement without a stream draws nothing
    ids = ids[keep_stream]
    boxes = ElementBoxes(
        ids=ids.astype(np.uint64),
        low=low[keep][keep_stream],
        high=high[keep][keep_stream],
        model_ids=arrays.model_ids[keep][keep_stream].astype(np.uint64),
        triangles=np.maximum(1, np.rint(stream_bytes[keep_stream] * TRIANGLES_PER_STREAM_BYTE)).astype(
            np.int64
        ),
    )
    return plan_tileset(boxes, tiler_options(config))


def tile_keys(imodel: IModelFile, plan: TilePlan, config_text: str) -> dict[int, str]:
    """Each node's content key: what its bytes depend on (the definitions of the file, the export's
    configuration, the node's tolerance and kind, and each of its elements with its ``LastMod``). Two
    exports of one iModel at different changesets give a node the same key exactly when its tile would
    be the same, so a later export copies it instead of making it again."""
    modified = imodel.last_modified()
    base = hashlib.sha256(f"{TILE_KEY_VERSION}|{imodel.definitions_fingerprint()}|{config_text}|".encode())
    keys: dict[int, str] = {}
    for node in plan.nodes:
        digest = base.copy()
        digest.update(f"{node.tolerance!r}|{node.leaf}|".encode())
        ids = np.sort(plan.element_ids(node).astype(np.uint64))
        stamps = np.array([modified.get(int(i), 0.0) for i in ids], np.float64)
        digest.update(ids.tobytes())
        digest.update(stamps.tobytes())
        keys[node.index] = digest.hexdigest()
    return keys


@dataclass
class LeafCounts:
    """What the leaves meshed: the export's element counts (each element is in exactly one leaf)."""

    elements: int = 0
    with_errors: int = 0
    without_surfaces: int = 0
    triangles: int = 0
    part_instances: int = 0
    lines: int = 0
    fallbacks: Counter[str] = field(default_factory=Counter)
    not_drawn: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    errors: list[tuple[int, str]] = field(default_factory=list)

    def add(self, result: MeshResult) -> None:
        self.elements += len(result.elements) + len(result.errors)
        self.with_errors += len(result.errors)
        self.without_surfaces += sum(
            1 for e in result.elements.values() if not e.triangles() and not e.instances
        )
        self.triangles += sum(e.triangles() for e in result.elements.values())
        self.part_instances += sum(len(e.instances) for e in result.elements.values())
        self.lines += sum(len(e.lines) for e in result.elements.values())
        self.fallbacks.update(result.fallbacks)
        self.not_drawn.update(result.skipped)
        self.kinds.update(result.kinds)
        self.errors.extend(result.errors[: max(0, 100 - len(self.errors))])

    def to_json(self) -> dict[str, Any]:
        return {
            "elements": self.elements,
            "with_errors": self.with_errors,
            "without_surfaces": self.without_surfaces,
            "triangles": self.triangles,
            "part_instances": self.part_instances,
            "lines": self.lines,
            "fallbacks": dict(self.fallbacks),
            "not_drawn": dict(self.not_drawn),
            "kinds": dict(self.kinds),
            "errors": [[eid, msg] for eid, msg in self.errors],
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> LeafCounts:
        out = LeafCounts()
        for name in ("elements", "with_errors", "without_surfaces", "triangles", "part_instances", "lines"):
            setattr(out, name, int(data.get(name, 0)))
        out.fallbacks = Counter(data.get("fallbacks", {}))
        out.not_drawn = Counter(data.get("not_drawn", {}))
        out.kinds = Counter(data.get("kinds", {}))
        out.errors = [(int(e), str(m)) for e, m in data.get("errors", [])]
        return out

    def merge(self, other: LeafCounts) -> None:
        for name in ("elements", "with_errors", "without_surfaces", "triangles", "part_instances", "lines"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.fallbacks.update(other.fallbacks)
        self.not_drawn.update(other.not_drawn)
        self.kinds.update(other.kinds)
        self.errors.extend(other.errors[: max(0, 100 - len(self.errors))])


class _Tiler:
    """One process's side: the file open once, each node meshed and encoded."""

    def __init__(self, bim: Path, plan: TilePlan, config: TilerConfig) -> None:
        self.imodel = IModelFile.open(bim)
        self.plan = plan
        self.config = config
        self.parts = PartCache()

    def close(self) -> None:
        self.imodel.close()

    def node(self, index: int) -> tuple[int, TileResult | None, LeafCounts | None]:
        # A tile allocates a few hundred thousand short-lived objects, none in cycles, and the cyclic
        # collector's passes over them cost about 4% of the export's CPU: off while the tile is made
        # (reference counting still frees everything; cycles wait for the collector to come back on).
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._node(index)
        finally:
            if collecting:
                gc.enable()

    def _node(self, index: int) -> tuple[int, TileResult | None, LeafCounts | None]:
        node: TileNode = self.plan.nodes[index]
        ids = [int(i) for i in self.plan.element_ids(node)]
        chord = self.config.chord_tolerance if node.leaf else max(self.config.chord_tolerance, node.tolerance)
        facts = ElementFacts()
        elements = facts.watch(self.imodel.elements_by_id(ids, with_geometry=True))
        result = mesh_elements(
            self.imodel, elements, StrokeOptions(chord, self.config.angle_tolerance), parts=self.parts
        )
        content = tile_content(result, facts)

        def encode(c: TileContent, origin: np.ndarray) -> bytes:
            # Positions on a grid as fine as half the tile's geometric error: what the tile may be off
            # by anyway, so a viewer sees no difference, and fewer bits compress much better.
            return write_glb(
                c,
                origin=origin,
                y_up=True,
                meshopt=self.config.compression,
                position_tolerance=node.tolerance / 2 if self.config.compression else None,
            )

        made = build_tile(node, content, self.plan.options, encode)
        counts = None
        if node.leaf:
            counts = LeafCounts()
            counts.add(result)
        return index, made, counts


_WORKER: _Tiler | None = None


def _start_worker(bim: str, plan: TilePlan, config: TilerConfig) -> None:
    global _WORKER
    _watch_parent(os.getppid())
    _WORKER = _Tiler(Path(bim), plan, config)


def _watch_parent(parent: int) -> None:
    """End this tile process when the process that started it is gone (a worker killed mid-export):
    the pool's own shutdown never comes, and an orphan would wait on its queue for ever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="twinbase-parent-watch", daemon=True).start()


def _run_node(index: int) -> tuple[int, TileResult | None, LeafCounts | None]:
    assert _WORKER is not None, "the worker was not started"
    return _WORKER.node(index)


def default_workers() -> int:
    """Every core (``TWINBASE_EXPORT_PROCESSES`` overrides: 1 keeps all work in this process)."""
    configured = os.environ.get("TWINBASE_EXPORT_PROCESSES")
    if configured and configured.strip().isdigit() and int(configured) > 0:
        return int(configured)
    return os.cpu_count() or 1


def make_tiles(
    bim: Path,
    plan: TilePlan,
    config: TilerConfig,
    put: Callable[[str, bytes], None],
    progress: Callable[[float, str], None],
    *,
    workers: int | None = None,
    skip: frozenset[int] = frozenset(),
) -> tuple[dict[int, TileResult | None], dict[int, LeafCounts]]:
    """Every node's tile but those in ``skip`` (reused), written through ``put`` as it is made; the
    results for ``tileset_json`` and each leaf's counts."""
    order = sorted(
        (i for i in range(len(plan.nodes)) if i not in skip), key=lambda i: -plan.nodes[i].estimated_triangles
    )
    # The whole plan, reused tiles too: the few tiles a changeset leaves to make are its big inner ones,
    # which a pool still makes faster than this process alone (measured: 3.1 s pooled, 3.8 s here).
    estimated = sum(n.estimated_triangles for n in plan.nodes)
    processes = workers if workers is not None else default_workers()
    if workers is None and estimated < POOL_MIN_TRIANGLES:
        processes = 1  # by default, a small plan is quicker here than starting processes
    processes = max(1, min(processes, len(order)))
    results: dict[int, TileResult | None] = {}
    counts: dict[int, LeafCounts] = {}
    if not order:
        return results, counts

    def take(index: int, made: TileResult | None, leaf: LeafCounts | None) -> None:
        if made is not None:
            put(made.name, made.data)
            # The bytes are written: keep only what the tileset needs of them.
            made = TileResult(**{**made.__dict__, "data": b""})
        results[index] = made
        if leaf is not None:
            counts[index] = leaf
        progress(len(results) / max(len(order), 1), f"{len(results)} of {len(order)} tiles")

    if processes == 1:
        tiler = _Tiler(bim, plan, config)
        try:
            for index in order:
                take(*tiler.node(index))
        finally:
            tiler.close()
        return results, counts
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=processes,
        mp_context=context,
        initializer=_start_worker,
        initargs=(str(bim), plan, config),
    ) as pool:
        for made in _as_completed(pool, order, processes):
            take(*made)
    return results, counts


def _as_completed(
    pool: concurrent.futures.ProcessPoolExecutor, order: list[int], processes: int
) -> Iterator[tuple[int, TileResult | None, LeafCounts | None]]:
    # Keep a few nodes queued per process (not all: a failure then stops the rest sooner).
    pending: set[concurrent.futures.Future[tuple[int, TileResult | None, LeafCounts | None]]] = set()
    queue = list(reversed(order))
    limit = 4 * processes
    while queue or pending:
        while queue and len(pending) < limit:
            pending.add(pool.submit(_run_node, queue.pop()))
        done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in done:
            yield future.result()


def counts_stats(counts: LeafCounts, started: float) -> dict[str, Any]:
    return {
        "elements": counts.elements,
        "elementsWithErrors": counts.with_errors,
        "elementsWithoutSurfaces": counts.without_surfaces,
        "elementsTiled": counts.elements - counts.with_errors - counts.without_surfaces,
        "triangles": counts.triangles,
        "partInstances": counts.part_instances,
        "lines": counts.lines,
        "fallbacks": dict(counts.fallbacks),
        "notDrawn": dict(counts.not_drawn),
        "geometryKinds": dict(counts.kinds),
        "errors": [{"elementId": f"0x{eid:x}", "message": msg} for eid, msg in counts.errors],
        "tileSeconds": round(time.perf_counter() - started, 3),
    }
