"""One Mesh Export's files from one iModel file: the pipeline the ``mesh_export`` job runs.

    stats = produce(Path("model.bim"), "GLTF", TilerConfig(), sink, progress)

- ``GLTF``: ``model.glb``, the whole iModel at full detail (``chordTolerance``, 1 mm by default), in
  iModel spatial coordinates, metres, glTF's Y-up convention (iModel x, y, z is glTF x, z, -y),
  per-element feature ids and property table, looks as materials, parts as instances.
- ``3DTILES`` and ``CESIUM``: 3D Tiles 1.1, ``tileset.json`` and ``<level>-<index>.glb`` tiles
  (``tiles.tiler``: a tree over the elements' boxes, coarse tiles leave out small elements and
  simplify the rest, leaves at full detail), the root transform taking iModel coordinates to ECEF when
  the iModel is geolocated, the ``BENTLEY_BatchedTileSet`` models table. CESIUM is the same tileset
  (what CesiumJS's and the Unreal plugin's iTwin integrations load).
- ``3TZ``: the 3DTILES output as one ``tileset.3tz`` archive.
- ``IMODEL``: the same tree with iTwin.js's iMdl tiles (``<level>-<index>.imdl``, ``tiles.imdl``), what
  ``@itwin/frontend-tiles`` streams: tiles in iModel coordinates less an offset that the root transform
  adds back (no ECEF: the viewer places the iModel itself), every spatial model in the
  ``BENTLEY_BatchedTileSet`` models table (a model without geometry with the null range).

The file is read once: elements stream through the mesher (``bim.mesher``) a chunk at a time, their
facts are kept for the feature table (``ElementFacts``), and the result goes to the writers
(``tiles``) as arrays. ``stats`` counts what was drawn and what fell back, by kind, so nothing is
silently lost.
"""

from __future__ import annotations

import concurrent.futures
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from twinbase.bim.geolocation import ecef_transform, read_geolocation
from twinbase.bim.imodel import Element, IModelFile
from twinbase.bim.mesher import MeshResult, mesh_elements
from twinbase.bim.tessellate import StrokeOptions
from twinbase.export.config import TilerConfig, config_key, for_export_type
from twinbase.export.content import ElementFacts, tile_content
from twinbase.export.tiling import (
    LeafCounts,
    MadeTiles,
    counts_stats,
    from_record,
    imdl_offset,
    largest_first,
    make_tiles,
    plan_file,
    tile_keys,
    warm_pool,
)
from twinbase.tiles.gltf import encode_glb
from twinbase.tiles.threetz import ThreeTzWriter
from twinbase.tiles.tiler import TilePlan, tileset_json

Progress = Callable[[float, str], None]
EXPORT_TYPES = ("3DTILES", "CESIUM", "GLTF", "3TZ", "IMODEL")


class OutputSink(Protocol):
    """Where the export's files go, by path relative to the export's folder."""

    def put(self, relative_path: str, data: bytes) -> None: ...


class ExportTypeNotProduced(ValueError):
    """An export type this pipeline does not write (yet)."""


def _selected(imodel: IModelFile, config: TilerConfig) -> Iterator[Element]:
    elements = imodel.elements(
        geometric_only=True, with_geometry=True, model_ids=sorted(config.models) if config.models else None
    )
    if config.categories is None:
        return elements
    wanted = config.categories
    return (e for e in elements if e.category_id in wanted)


def mesh_file(
    imodel: IModelFile, config: TilerConfig, progress: Progress
) -> tuple[MeshResult, ElementFacts, dict[str, Any]]:
    """Every selected geometric element meshed at the configuration's tolerances."""
    started = time.perf_counter()
    facts = ElementFacts()
    options = StrokeOptions(config.chord_tolerance, config.angle_tolerance)
    progress(0.05, "Meshing the elements")
    result = mesh_elements(imodel, facts.watch(_selected(imodel, config)), options)
    part_tris = {pid: sum(m.n_triangles for _, m in p.meshes) for pid, p in result.parts.items()}
    stats: dict[str, Any] = {
        "elements": len(result.elements),
        "elementsWithErrors": len(result.errors),
        "skipped2d": result.skipped_2d,
        "triangles": sum(e.triangles() for e in result.elements.values()),
        "partInstances": sum(len(e.instances) for e in result.elements.values()),
        "partTriangles": sum(part_tris.values()),
        "instancedTriangles": sum(
            part_tris.get(i.part_id, 0) for e in result.elements.values() for i in e.instances
        ),
        "lines": sum(len(e.lines) for e in result.elements.values()),
        "fallbacks": dict(result.fallbacks),
        "notDrawn": dict(result.skipped),
        "geometryKinds": dict(result.kinds),
        "errors": [{"elementId": f"0x{eid:x}", "message": msg} for eid, msg in result.errors[:100]],
        "meshSeconds": round(time.perf_counter() - started, 3),
    }
    return result, facts, stats


def produce(
    bim: Path,
    export_type: str,
    config: TilerConfig,
    sink: OutputSink,
    progress: Progress,
    *,
    workers: int | None = None,
    previous: PreviousTiles | None = None,
    tiles: TileMaker | None = None,
) -> dict[str, Any]:
    """Write the export's files to ``sink``; answer its stats (JSON-able). ``workers``: processes for
    the tiles (default: every core; see ``export.tiling``). ``previous``: an earlier export of the same
    iModel, type and configuration whose unchanged tiles are copied instead of made (3DTILES, CESIUM).
    ``tiles``: who makes the tiles of 3DTILES and CESIUM (default: this host, ``workers`` processes);
    3TZ always makes them here, as they go into one archive."""
    if export_type not in EXPORT_TYPES:
        raise ExportTypeNotProduced(f"export type {export_type!r} is not produced")
    config = for_export_type(config, export_type)
    if export_type == "GLTF":
        with IModelFile.open(bim) as imodel:
            result, facts, stats = mesh_file(imodel, config, progress)
        return _gltf(result, facts, config, sink, progress, stats)
    started = time.perf_counter()
    warm_pool(bim, workers)
    with IModelFile.open(bim) as imodel:
        planned = plan_file(imodel, config)
        plan = planned.plan
        geolocation = read_geolocation(imodel)
        keys = tile_keys(imodel, planned, f"{export_type}|{config_key(config)}")
        frame = _imdl_frame(imodel, plan, config) if export_type == "IMODEL" else None
    progress(0.05, f"Planned {len(plan.nodes)} tiles")
    root = ecef_transform(geolocation.ecef_location) if geolocation.ecef_location is not None else None
    if frame is not None:
        root = None
    if export_type == "3TZ":
        with tempfile.TemporaryFile() as archive:
            with ThreeTzWriter(archive) as writer:
                stats = _tileset(
                    bim, plan, config, writer.add, progress, root, started, _local_tiles(workers), keys, None
                )
            archive.seek(0)
            data = archive.read()
        sink.put("tileset.3tz", data)
        stats["files"] = {"tileset.3tz": len(data)}
        stats["rawSize"] = len(data)
        progress(1.0, "Done")
        return stats
    maker = tiles if tiles is not None else _local_tiles(workers)
    return _tileset(bim, plan, config, sink.put, progress, root, started, maker, keys, previous, frame)


@dataclass(frozen=True)
class _Frame:
    """Where an IMODEL tileset's tiles sit: iModel coordinates less ``offset``; ``models``: every
    spatial model's extents (None: no geometry)."""

    offset: np.ndarray
    models: dict[int, tuple[np.ndarray, np.ndarray] | None]


def _imdl_frame(imodel: IModelFile, plan: TilePlan, config: TilerConfig) -> _Frame:
    drawn = plan.model_extents()
    models: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
    for model in imodel.models():
        wanted = config.models is None or model.id in config.models
        if model.is_spatial and not model.is_template and wanted:
            models[model.id] = drawn.get(model.id)
    for mid, ext in drawn.items():  # a 3D model that is not a SpatialModel but has elements
        models.setdefault(mid, ext)
    return _Frame(imdl_offset(plan), models)


@dataclass(frozen=True)
class PreviousTiles:
    """An earlier export's tiles: its ``twinbase-tiles.json`` manifest, and how to copy one of its
    files into the export being made (``copy(old name, new name)`` answers the bytes copied; raises when
    the file is gone)."""

    manifest: dict[str, Any]
    copy: Callable[[str, str], int]


class TileMaker(Protocol):
    """Makes the tiles ``order`` names (node indices of ``plan``), writing each through ``put`` or
    straight into the export's folder. The default is ``export.tiling.make_tiles`` (this host's cores);
    the job layer hands in one that spreads tile jobs over every worker process."""

    def __call__(
        self,
        bim: Path,
        plan: TilePlan,
        config: TilerConfig,
        order: list[int],
        put: Callable[[str, bytes], None],
        progress: Progress,
    ) -> MadeTiles: ...


MANIFEST = "twinbase-tiles.json"
#: Tiles of an earlier export copied at once.
REUSE_COPIES = 8


def _reuse(plan: TilePlan, keys: dict[int, str], previous: PreviousTiles | None) -> MadeTiles:
    """The nodes whose tile the earlier export already made (same key), copied under their new names."""
    out = MadeTiles()
    if previous is None:
        return out
    tiles = previous.manifest.get("tiles") if previous.manifest.get("version") == 1 else None
    if not isinstance(tiles, dict):
        return out
    by_key: dict[str, tuple[str, dict[str, Any]]] = {
        str(entry["key"]): (name, entry)
        for name, entry in tiles.items()
        if isinstance(entry, dict) and "key" in entry
    }
    found = [(node, *by_key[keys[node.index]]) for node in plan.nodes if keys[node.index] in by_key]

    def copy(name: str, old_name: str) -> int | None:
        try:
            return previous.copy(old_name, name)
        except Exception:  # gone or unreadable: the tile is simply made again
            return None

    # Copies are round trips to the blob store (server-side copies on Azure): several at once.
    with concurrent.futures.ThreadPoolExecutor(max_workers=REUSE_COPIES) as pool:
        copied = list(
            pool.map(
                lambda item: copy(item[0].name, item[1]) if not item[2].get("empty") else 0,
                found,
            )
        )
    for (node, _, entry), size in zip(found, copied, strict=True):
        if size is None:
            continue
        made, counts = from_record(node.name, entry)
        if made is not None:
            out.sizes[node.name] = size
        out.results[node.index] = made
        if node.leaf and counts is not None:
            out.counts[node.index] = counts
    return out


def _manifest(plan: TilePlan, keys: dict[int, str], made: MadeTiles) -> dict[str, Any]:
    records = made.to_records(plan)
    tiles = {node.name: {"key": keys[node.index], **records[node.name]} for node in plan.nodes}
    return {"version": 1, "tiles": tiles}


def _local_tiles(workers: int | None) -> TileMaker:
    def make(
        bim: Path,
        plan: TilePlan,
        config: TilerConfig,
        order: list[int],
        put: Callable[[str, bytes], None],
        progress: Progress,
    ) -> MadeTiles:
        return make_tiles(bim, plan, config, put, progress, workers=workers, order=order)

    return make


def _tileset(
    bim: Path,
    plan: TilePlan,
    config: TilerConfig,
    put: Callable[[str, bytes], None],
    progress: Progress,
    root_transform: np.ndarray | None,
    started: float,
    tiles: TileMaker,
    keys: dict[int, str],
    previous: PreviousTiles | None,
    frame: _Frame | None = None,
) -> dict[str, Any]:
    reused = _reuse(plan, keys, previous)
    made = tiles(
        bim,
        plan,
        config,
        largest_first(plan, frozenset(reused.results)),
        put,
        lambda f, m: progress(0.05 + 0.9 * f, m),
    )
    everything = MadeTiles()
    everything.update(reused)
    everything.update(made)
    results = everything.results
    sizes = dict(everything.sizes)
    if frame is None:
        document = tileset_json(plan, results, root_transform)
    else:
        document = tileset_json(plan, results, None, frame.models, content_offset=frame.offset)
    text = json.dumps(document, separators=(",", ":")).encode()
    put("tileset.json", text)
    sizes["tileset.json"] = len(text)
    manifest = json.dumps(_manifest(plan, keys, everything), separators=(",", ":")).encode()
    put(MANIFEST, manifest)
    sizes[MANIFEST] = len(manifest)
    counts = LeafCounts()
    for leaf in everything.counts.values():
        counts.merge(leaf)
    tile_sizes = sorted(v for k, v in sizes.items() if k.endswith((".glb", ".imdl")))
    root_result = results.get(0)
    stats = counts_stats(counts, started)
    stats.update(
        {
            "tiles": sum(1 for r in results.values() if r is not None),
            "tilesReused": sum(1 for r in reused.results.values() if r is not None),
            "levels": 1 + max((n.level for n in plan.nodes), default=0),
            "rootTileSize": sizes.get(root_result.name, 0) if root_result is not None else 0,
            "tileSizeMedian": tile_sizes[len(tile_sizes) // 2] if tile_sizes else 0,
            "tileSizeMax": tile_sizes[-1] if tile_sizes else 0,
            "tileTriangles": sum(r.triangles for r in results.values() if r is not None),
            "files": sizes if len(sizes) <= 200 else {"tileset.json": len(text)},
            "rawSize": sum(sizes.values()),
        }
    )
    progress(1.0, "Done")
    return stats


def _gltf(
    result: MeshResult,
    facts: ElementFacts,
    config: TilerConfig,
    sink: OutputSink,
    progress: Progress,
    stats: dict[str, Any],
) -> dict[str, Any]:
    progress(0.8, "Writing model.glb")
    started = time.perf_counter()
    content = tile_content(result, facts)
    # Full detail: meshopt's 16-bit positions over the whole model would move points by up to
    # extent / 131070 (0.8 mm on 100 m), so the whole-model GLB is compressed only when asked.
    compress = config.compression and "enableCompression" in dict(config.items)
    data = encode_glb(content, y_up=True, meshopt=compress).data
    sink.put("model.glb", data)
    stats.update(
        {
            "features": len(content.features),
            "materials": len(content.materials),
            "elementsWithoutSurfaces": sum(
                1 for e in result.elements.values() if not e.triangles() and not e.instances
            ),
            "files": {"model.glb": len(data)},
            "rawSize": len(data),
            "writeSeconds": round(time.perf_counter() - started, 3),
        }
    )
    progress(1.0, "Done")
    return stats
