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
import contextlib
import gc
import hashlib
import multiprocessing
import os
import pickle
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from twinbase.bim.imodel import IModelFile
from twinbase.bim.mesher import MeshResult, PartCache, mesh_elements
from twinbase.bim.tessellate import StrokeOptions
from twinbase.export.config import TilerConfig
from twinbase.export.content import ElementFacts, tile_content
from twinbase.tiles.gltf import write_glb
from twinbase.tiles.imdl import write_imdl
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


#: Planning estimates of the bytes a triangle takes in a written tile. Measured on the bench model with
#: the GLB writer as it is: meshopt-compressed 5.6 B/tri on leaves and 6.3 on simplified tiles; plain
#: 28 and 40. The estimates keep a margin above them, so tiles stay under ``maxTileSize``.
COMPRESSED_BYTES_PER_TRIANGLE = 8.0
PLAIN_BYTES_PER_TRIANGLE = 40.0
#: The root (a viewer's first download) is planned at the older, more cautious estimate.
ROOT_BYTES_PER_TRIANGLE = 14.0
#: iMdl tiles (``tiles.imdl``): plain, 16 bytes a vertex and 9 a triangle, measured 24.5 B/tri on the
#: bench model; meshopt-encoded, about a third of that.
IMDL_BYTES_PER_TRIANGLE = 26.0
IMDL_COMPRESSED_BYTES_PER_TRIANGLE = 10.0


def tiler_options(config: TilerConfig) -> TilerOptions:
    if config.output_format == "imdl":
        per_triangle = IMDL_COMPRESSED_BYTES_PER_TRIANGLE if config.compression else IMDL_BYTES_PER_TRIANGLE
    else:
        per_triangle = COMPRESSED_BYTES_PER_TRIANGLE if config.compression else PLAIN_BYTES_PER_TRIANGLE
    root_bytes = TilerOptions().max_root_bytes
    return TilerOptions(
        tile_extension=config.output_format,
        max_tile_bytes=config.max_tile_kb * 1024,
        levels=config.levels_of_detail,
        leaf_chord_tolerance=config.chord_tolerance,
        bytes_per_triangle=per_triangle,
        max_root_triangles=max(1, int(root_bytes / max(per_triangle, ROOT_BYTES_PER_TRIANGLE))),
    )


@dataclass(frozen=True)
class PlannedFile:
    """A plan and what the tile keys need of its elements: their ids (ascending) and ``LastMod``."""

    plan: TilePlan
    element_ids: npt.NDArray[np.uint64]
    last_modified: npt.NDArray[np.float64]


def plan_file(imodel: IModelFile, config: TilerConfig) -> PlannedFile:
    """The tile tree of the selected 3D elements, from their placements alone (one query: boxes, stream
    sizes and ``LastMod``)."""
    arrays = imodel.placements(model_ids=sorted(config.models) if config.models else None)
    keep = arrays.stream_bytes > 0  # a placement without a stream draws nothing
    if config.categories is not None:
        keep &= np.isin(arrays.category_ids, np.array(sorted(config.categories), np.int64))
    low, high = arrays.ranges()
    ids = arrays.ids[keep].astype(np.uint64)
    stream_bytes = arrays.stream_bytes[keep].astype(np.float64)
    boxes = ElementBoxes(
        ids=ids,
        low=low[keep],
        high=high[keep],
        model_ids=arrays.model_ids[keep].astype(np.uint64),
        triangles=np.maximum(1, np.rint(stream_bytes * TRIANGLES_PER_STREAM_BYTE)).astype(np.int64),
    )
    return PlannedFile(plan_tileset(boxes, tiler_options(config)), ids, arrays.last_modified[keep])


def plan_from_file(imodel: IModelFile, config: TilerConfig) -> TilePlan:
    """The tile tree of the selected 3D elements, from their placements alone."""
    return plan_file(imodel, config).plan


def tile_keys(imodel: IModelFile, planned: PlannedFile, config_text: str) -> dict[int, str]:
    """Each node's content key: what its bytes depend on (the definitions of the file, the export's
    configuration, the node's tolerance and kind, and each of its elements with its ``LastMod``). Two
    exports of one iModel at different changesets give a node the same key exactly when its tile would
    be the same, so a later export copies it instead of making it again."""
    plan = planned.plan
    known = planned.element_ids  # ascending: the placements come in id order
    stamps_of = planned.last_modified
    base = hashlib.sha256(f"{TILE_KEY_VERSION}|{imodel.definitions_fingerprint()}|{config_text}|".encode())
    keys: dict[int, str] = {}
    for node in plan.nodes:
        digest = base.copy()
        digest.update(f"{node.tolerance!r}|{node.leaf}|".encode())
        ids = np.sort(plan.element_ids(node).astype(np.uint64))
        stamps = stamps_of[np.searchsorted(known, ids)]
        digest.update(ids.tobytes())
        digest.update(stamps.astype(np.float64).tobytes())
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

    def __init__(
        self, bim: Path, plan: TilePlan, config: TilerConfig, parts: PartCache | None = None
    ) -> None:
        self.imodel = IModelFile.open(bim)
        self.plan = plan
        self.config = config
        self.parts = parts if parts is not None else PartCache()

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
        if self.config.output_format == "imdl":
            offset = imdl_offset(self.plan)

            def encode_imdl(c: TileContent, _origin: np.ndarray) -> bytes:
                # Every tile of the tileset in one frame (the root transform adds the offset back).
                return write_imdl(
                    c,
                    offset=offset,
                    tolerance=node.tolerance,
                    incomplete=not node.leaf,
                    meshopt=self.config.compression,
                    # As the GLB tiles: positions within half the tile's error (see ``encode`` below).
                    position_error=node.tolerance / 2 if self.config.compression else None,
                ).data

            made = build_tile(node, content, self.plan.options, encode_imdl)
            return index, made, self._counts(node, result)

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
        return index, made, self._counts(node, result)

    @staticmethod
    def _counts(node: TileNode, result: MeshResult) -> LeafCounts | None:
        if not node.leaf:
            return None
        counts = LeafCounts()
        counts.add(result)
        return counts


def imdl_offset(plan: TilePlan) -> np.ndarray:
    """What iMdl tiles subtract from iModel coordinates: the centre of the plan's root box, in whole
    metres (the tileset's root transform adds it back). Small coordinates keep the decoder's float32
    quantization origin exact."""
    if not plan.nodes:
        return np.zeros(3)
    root = plan.nodes[0]
    return np.asarray(np.round(0.5 * (root.low + root.high)), np.float64)


#: In a tile process: the tilers of the work files it was handed, newest last (at most ``_KEEP_TILERS``).
_TILERS: dict[str, _Tiler] = {}
#: ... and the part caches by the definitions fingerprint of the files they were made from.
_PARTS: dict[str, PartCache] = {}
_KEEP_TILERS = 2


def _start_worker() -> None:
    _watch_parent(os.getppid())


def _watch_parent(parent: int) -> None:
    """End this tile process when the process that started it is gone (a worker killed mid-export):
    the pool's own shutdown never comes, and an orphan would wait on its queue for ever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="twinbase-parent-watch", daemon=True).start()


def _run_node(work_file: str, index: int) -> tuple[int, TileResult | None, LeafCounts | None]:
    """In a tile process: one node of the plan in ``work_file`` (the file, plan and configuration)."""
    tiler = _TILERS.pop(work_file, None)
    if tiler is None:
        with open(work_file, "rb") as fh:
            bim, plan, config, definitions = pickle.load(fh)  # written by this host's parent (TileWorkshop)
        # Another file with the same definitions (the next changeset's, most often) looks the same and
        # has the same parts: its appearance tables, part streams and part meshes serve this one too.
        parts = _PARTS.pop(definitions, None) or PartCache()
        _PARTS[definitions] = parts
        while len(_PARTS) > _KEEP_TILERS:
            _PARTS.pop(next(iter(_PARTS)))
        tiler = _Tiler(Path(bim), plan, config, parts)
        while len(_TILERS) >= _KEEP_TILERS:
            _TILERS.pop(next(iter(_TILERS))).close()
    _TILERS[work_file] = tiler  # most recently used last
    return tiler.node(index)


def _noop() -> None:
    return None


class _SharedPool:
    """This process's pool of tile processes, kept warm between exports and batches (``spawn`` is
    ~0.5 s per process: more than an incremental export's few tiles). It closes after
    ``IDLE_SECONDS`` unused, and is replaced when a process of it died (the pool is then broken)."""

    IDLE_SECONDS = 300.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._size = 0
        self._users = 0
        self._last_used = time.monotonic()
        self._janitor = False  # a timer to close the pool when idle is pending

    def warm(self, processes: int) -> None:
        """Start the processes now (in the background), so they are up when the first tile is."""
        if processes > 1:
            with self.use(processes) as pool:
                for _ in range(processes):
                    pool.submit(_noop)

    @contextlib.contextmanager
    def use(self, processes: int) -> Iterator[concurrent.futures.ProcessPoolExecutor]:
        with self._lock:
            pool = self._pool
            broken = pool is not None and bool(getattr(pool, "_broken", False))
            # A bigger pool is made only when no one uses this one (else they share the smaller one).
            grow = pool is not None and self._size < processes and self._users == 0
            if pool is None or broken or grow:
                if pool is not None:
                    pool.shutdown(wait=False, cancel_futures=not broken)
                pool = self._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                )
                self._size = processes
            self._users += 1
        try:
            yield pool
        finally:
            with self._lock:
                self._users -= 1
                self._last_used = time.monotonic()
                start_janitor = not self._janitor
                self._janitor = True
            if start_janitor:  # one timer at a time; it re-arms itself while the pool is in use
                janitor = threading.Timer(self.IDLE_SECONDS + 1, self.close_idle)
                janitor.daemon = True
                janitor.start()

    def shutdown(self) -> None:
        """Stop the processes now and wait for them (a process ending, tests, the bench)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def close_idle(self) -> None:
        with self._lock:
            self._janitor = False
            if self._pool is None:
                return
            if self._users or time.monotonic() - self._last_used < self.IDLE_SECONDS:
                self._janitor = True
                idle_in = max(1.0, self.IDLE_SECONDS - (time.monotonic() - self._last_used)) + 1
                janitor = threading.Timer(idle_in, self.close_idle)
                janitor.daemon = True
                janitor.start()
                return
            pool, self._pool = self._pool, None
        pool.shutdown(wait=False, cancel_futures=True)


SHARED_POOL = _SharedPool()

#: Files at least this big are tiled on the pool (by default): its processes start while the plan is made.
WARM_POOL_BYTES = 8 * 1024 * 1024


def warm_pool(bim: Path, workers: int | None) -> None:
    """Start the tile processes now if ``bim`` will be tiled on them (they take ~0.5 s each to start:
    overlapped with planning, that is not waited for)."""
    processes = workers if workers is not None else default_workers()
    if processes > 1 and (workers is not None or bim.stat().st_size >= WARM_POOL_BYTES):
        SHARED_POOL.warm(processes)


def default_workers() -> int:
    """Every core (``TWINBASE_EXPORT_PROCESSES`` overrides: 1 keeps all work in this process)."""
    configured = os.environ.get("TWINBASE_EXPORT_PROCESSES")
    if configured and configured.strip().isdigit() and int(configured) > 0:
        return int(configured)
    return os.cpu_count() or 1


@dataclass
class MadeTiles:
    """Tiles made (or copied): each node's result without its bytes (``None``: the node drew nothing),
    each leaf's counts, and the bytes written per tile file."""

    results: dict[int, TileResult | None] = field(default_factory=dict)
    counts: dict[int, LeafCounts] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def update(self, other: MadeTiles) -> None:
        self.results.update(other.results)
        self.counts.update(other.counts)
        self.sizes.update(other.sizes)

    def to_records(self, plan: TilePlan) -> dict[str, dict[str, Any]]:
        """JSON records by tile name (the tile manifest's entries, a tile job's result)."""
        records: dict[str, dict[str, Any]] = {}
        for index, made in self.results.items():
            node = plan.nodes[index]
            records[node.name] = tile_record(made, self.counts.get(index), self.sizes.get(node.name))
        return records

    @staticmethod
    def from_records(plan: TilePlan, records: dict[str, Any]) -> MadeTiles:
        """The inverse of ``to_records`` for the nodes of ``plan`` that ``records`` names."""
        out = MadeTiles()
        for node in plan.nodes:
            record = records.get(node.name)
            if not isinstance(record, dict):
                continue
            made, counts = from_record(node.name, record)
            out.results[node.index] = made
            if counts is not None:
                out.counts[node.index] = counts
            if made is not None and "size" in record:
                out.sizes[node.name] = int(record["size"])
        return out


def tile_record(made: TileResult | None, counts: LeafCounts | None, size: int | None) -> dict[str, Any]:
    """One tile as JSON: what ``tileset.json`` needs of it, its leaf counts, its size."""
    record: dict[str, Any] = {}
    if made is None:
        record["empty"] = True
    else:
        record.update(
            {
                "low": [float(v) for v in made.low],
                "high": [float(v) for v in made.high],
                "error": made.error,
                "triangles": made.triangles,
                "inputTriangles": made.input_triangles,
                "instances": made.instances,
                "features": made.features,
            }
        )
        if size is not None:
            record["size"] = size
    if counts is not None:
        record["counts"] = counts.to_json()
    return record


def from_record(name: str, record: dict[str, Any]) -> tuple[TileResult | None, LeafCounts | None]:
    counts = LeafCounts.from_json(record["counts"]) if isinstance(record.get("counts"), dict) else None
    if record.get("empty"):
        return None, counts
    made = TileResult(
        name=name,
        data=b"",
        low=np.asarray(record["low"], np.float64),
        high=np.asarray(record["high"], np.float64),
        error=float(record["error"]),
        triangles=int(record["triangles"]),
        input_triangles=int(record.get("inputTriangles", record["triangles"])),
        instances=int(record.get("instances", 0)),
        features=int(record.get("features", 0)),
    )
    return made, counts


def largest_first(plan: TilePlan, skip: frozenset[int] = frozenset()) -> list[int]:
    """The nodes to make, largest estimate first (the long ones start early; small ones fill the end)."""
    return sorted(
        (i for i in range(len(plan.nodes)) if i not in skip), key=lambda i: -plan.nodes[i].estimated_triangles
    )


def tile_batches(plan: TilePlan, order: list[int], per_batch_triangles: int) -> list[list[int]]:
    """``order`` dealt into batches of about ``per_batch_triangles`` estimated triangles each, round
    robin, so every batch is largest first too and ends with small tiles (no core waits long on a
    batch's last tile)."""
    total = sum(plan.nodes[i].estimated_triangles for i in order)
    count = max(1, min(len(order), -(-total // max(1, per_batch_triangles))))
    return [order[k::count] for k in range(count) if order[k::count]]


def plan_digest(plan: TilePlan) -> str:
    """What identifies a plan: two processes that planned the same file and configuration agree on it."""
    digest = hashlib.sha256(f"{len(plan.nodes)}|".encode())
    for node in plan.nodes:
        digest.update(f"{node.name}|{node.tolerance!r}|{node.leaf}|".encode())
        digest.update(plan.element_ids(node).astype(np.uint64).tobytes())
    return digest.hexdigest()


class TileWorkshop:
    """Makes tiles of one plan of one file, in this process or on a pool of ``processes`` processes that
    lives as long as the workshop (the batches of one export share it: no start-up per batch).
    ``make`` may be called from several threads at once."""

    def __init__(self, bim: Path, plan: TilePlan, config: TilerConfig, *, processes: int) -> None:
        self.bim = bim
        self.plan = plan
        self.config = config
        self.processes = max(1, processes)
        self._lock = threading.Lock()
        self._work_dir: Path | None = None
        self._local: _Tiler | None = None

    def __enter__(self) -> TileWorkshop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            work_dir, self._work_dir = self._work_dir, None
            local, self._local = self._local, None
        if work_dir is not None:
            shutil.rmtree(work_dir, ignore_errors=True)
        if local is not None:
            local.close()

    def _work_file(self) -> str:
        """The file, plan and configuration as one file the tile processes load once each (the plan
        is megabytes: sent once per process, not with every node)."""
        with self._lock:
            if self._work_dir is None:
                self._work_dir = Path(tempfile.mkdtemp(prefix="twinbase-tiles-"))
                with IModelFile.open(self.bim) as imodel:
                    definitions = imodel.definitions_fingerprint()
                work = (str(self.bim), self.plan, self.config, definitions)
                with open(self._work_dir / "work.pickle", "wb") as fh:
                    pickle.dump(work, fh, protocol=pickle.HIGHEST_PROTOCOL)
            return str(self._work_dir / "work.pickle")

    def make(
        self, order: list[int], put: Callable[[str, bytes], None], progress: Callable[[float, str], None]
    ) -> MadeTiles:
        """The tiles of ``order`` (node indices), each written through ``put`` as it is made."""
        out = MadeTiles()
        if not order:
            return out

        def take(index: int, made: TileResult | None, leaf: LeafCounts | None) -> None:
            if made is not None:
                put(made.name, made.data)
                out.sizes[made.name] = len(made.data)
                # The bytes are written: keep only what the tileset needs of them.
                made = TileResult(**{**made.__dict__, "data": b""})
            out.results[index] = made
            if leaf is not None:
                out.counts[index] = leaf
            progress(len(out.results) / len(order), f"{len(out.results)} of {len(order)} tiles")

        if self.processes == 1 or len(order) == 1:
            with self._lock:  # one file handle, one part cache: one node at a time
                if self._local is None:
                    self._local = _Tiler(self.bim, self.plan, self.config)
                for index in order:
                    take(*self._local.node(index))
            return out
        work_file = self._work_file()
        with SHARED_POOL.use(self.processes) as pool:
            for made in _as_completed(pool, work_file, order, self.processes):
                take(*made)
        return out


def make_tiles(
    bim: Path,
    plan: TilePlan,
    config: TilerConfig,
    put: Callable[[str, bytes], None],
    progress: Callable[[float, str], None],
    *,
    workers: int | None = None,
    skip: frozenset[int] = frozenset(),
    order: list[int] | None = None,
) -> MadeTiles:
    """Every node's tile but those in ``skip`` (reused), or exactly the nodes of ``order`` in that order,
    written through ``put`` as it is made."""
    order = largest_first(plan, skip) if order is None else order
    # The whole plan, reused tiles too: the few tiles a changeset leaves to make are its big inner ones,
    # which a pool still makes faster than this process alone (measured: 3.1 s pooled, 3.8 s here).
    estimated = sum(n.estimated_triangles for n in plan.nodes)
    processes = workers if workers is not None else default_workers()
    if workers is None and estimated < POOL_MIN_TRIANGLES:
        processes = 1  # by default, a small plan is quicker here than starting processes
    with TileWorkshop(bim, plan, config, processes=min(processes, max(1, len(order)))) as workshop:
        return workshop.make(order, put, progress)


def _as_completed(
    pool: concurrent.futures.ProcessPoolExecutor, work_file: str, order: list[int], processes: int
) -> Iterator[tuple[int, TileResult | None, LeafCounts | None]]:
    # Keep a few nodes queued per process (not all: a failure then stops the rest sooner, and two
    # batches sharing the pool interleave).
    pending: set[concurrent.futures.Future[tuple[int, TileResult | None, LeafCounts | None]]] = set()
    queue = list(reversed(order))
    limit = 4 * processes
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                pending.add(pool.submit(_run_node, work_file, queue.pop()))
            done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:
        for future in pending:
            future.cancel()


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
