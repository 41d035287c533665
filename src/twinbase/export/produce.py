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

The file is read once: elements stream through the mesher (``bim.mesher``) a chunk at a time, their
facts are kept for the feature table (``ElementFacts``), and the result goes to the writers
(``tiles``) as arrays. ``stats`` counts what was drawn and what fell back, by kind, so nothing is
silently lost.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from twinbase.bim.geolocation import ecef_transform, read_geolocation
from twinbase.bim.imodel import Element, IModelFile
from twinbase.bim.mesher import MeshResult, mesh_elements
from twinbase.bim.tessellate import StrokeOptions
from twinbase.export.config import TilerConfig
from twinbase.export.content import ElementFacts, tile_content
from twinbase.tiles.gltf import encode_glb, write_glb
from twinbase.tiles.model import TileContent
from twinbase.tiles.threetz import ThreeTzWriter
from twinbase.tiles.tiler import ElementBoxes, TileResult, TilerOptions, plan_tileset, tileset_json
from twinbase.tiles.tiler import tile_content as build_tile

Progress = Callable[[float, str], None]
EXPORT_TYPES = ("3DTILES", "CESIUM", "GLTF", "3TZ")


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
    bim: Path, export_type: str, config: TilerConfig, sink: OutputSink, progress: Progress
) -> dict[str, Any]:
    """Write the export's files to ``sink``; answer its stats (JSON-able)."""
    if export_type not in EXPORT_TYPES:
        raise ExportTypeNotProduced(f"export type {export_type!r} is not produced")
    with IModelFile.open(bim) as imodel:
        result, facts, stats = mesh_file(imodel, config, progress)
        geolocation = read_geolocation(imodel)
    if export_type == "GLTF":
        return _gltf(result, facts, config, sink, progress, stats)
    root = ecef_transform(geolocation.ecef_location) if geolocation.ecef_location is not None else None
    if export_type == "3TZ":
        with tempfile.TemporaryFile() as archive:
            with ThreeTzWriter(archive) as writer:
                _tileset(result, facts, config, writer.add, progress, stats, root)
            archive.seek(0)
            data = archive.read()
        sink.put("tileset.3tz", data)
        stats["files"] = {"tileset.3tz": len(data)}
        stats["rawSize"] = len(data)
        progress(1.0, "Done")
        return stats
    return _tileset(result, facts, config, sink.put, progress, stats, root)


def element_boxes(result: MeshResult, facts: ElementFacts) -> ElementBoxes:
    """Each meshed element's world box (what it draws: its meshes and its part instances' boxes)
    and triangle count, for the tile plan."""
    ids: list[int] = []
    lows: list[np.ndarray] = []
    highs: list[np.ndarray] = []
    tris: list[int] = []
    part_box: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
    for pid, part in result.parts.items():
        meshes = [m for _, m in part.meshes if len(m.positions)]
        if meshes:
            pts = np.concatenate([m.positions for m in meshes])
            part_box[pid] = (pts.min(axis=0), pts.max(axis=0), sum(m.n_triangles for m in meshes))
    for eid, element in result.elements.items():
        lo = np.full(3, np.inf)
        hi = np.full(3, -np.inf)
        count = 0
        for piece in element.meshes:
            if len(piece.mesh.positions):
                lo = np.minimum(lo, piece.mesh.positions.min(axis=0))
                hi = np.maximum(hi, piece.mesh.positions.max(axis=0))
                count += piece.mesh.n_triangles
        for inst in element.instances:
            found = part_box.get(inst.part_id)
            if found is None:
                continue
            plo, phi, ptris = found
            corners = np.array(
                [[x, y, z, 1.0] for x in (plo[0], phi[0]) for y in (plo[1], phi[1]) for z in (plo[2], phi[2])]
            )
            world = corners @ inst.transform.T
            lo = np.minimum(lo, world[:, :3].min(axis=0))
            hi = np.maximum(hi, world[:, :3].max(axis=0))
            count += ptris
        if count:
            ids.append(eid)
            lows.append(lo)
            highs.append(hi)
            tris.append(count)
    return ElementBoxes(
        ids=np.array(ids, np.uint64),
        low=np.array(lows).reshape(-1, 3),
        high=np.array(highs).reshape(-1, 3),
        model_ids=np.array([facts.model.get(e, 0) for e in ids], np.uint64),
        triangles=np.array(tris, np.int64),
    )


def _tileset(
    result: MeshResult,
    facts: ElementFacts,
    config: TilerConfig,
    put: Callable[[str, bytes], None],
    progress: Progress,
    stats: dict[str, Any],
    root_transform: np.ndarray | None,
) -> dict[str, Any]:
    started = time.perf_counter()
    options = TilerOptions(
        max_tile_bytes=config.max_tile_kb * 1024,
        levels=config.levels_of_detail,
        leaf_chord_tolerance=config.chord_tolerance,
    )
    boxes = element_boxes(result, facts)
    plan = plan_tileset(boxes, options)

    def encode(content: TileContent, origin: np.ndarray) -> bytes:
        return write_glb(content, origin=origin, y_up=True, meshopt=config.compression)

    results: dict[int, TileResult | None] = {}
    sizes: dict[str, int] = {}
    for done, node in enumerate(plan.nodes):
        progress(0.5 + 0.45 * done / max(len(plan.nodes), 1), f"Writing tile {node.name}")
        content = tile_content(result, facts, element_ids=[int(i) for i in plan.element_ids(node)])
        made = build_tile(node, content, options, encode)
        results[node.index] = made
        if made is not None:
            put(made.name, made.data)
            sizes[made.name] = len(made.data)
    document = tileset_json(plan, results, root_transform)
    text = json.dumps(document, separators=(",", ":")).encode()
    put("tileset.json", text)
    sizes["tileset.json"] = len(text)
    tile_sizes = sorted(v for k, v in sizes.items() if k != "tileset.json")
    stats.update(
        {
            "elementsTiled": len(boxes),
            "elementsWithoutSurfaces": stats["elements"] - len(boxes),
            "tiles": len(tile_sizes),
            "levels": 1 + max((n.level for n in plan.nodes), default=0),
            "rootTileSize": next((len(r.data) for i, r in results.items() if i == 0 and r is not None), 0),
            "tileSizeMedian": tile_sizes[len(tile_sizes) // 2] if tile_sizes else 0,
            "tileSizeMax": tile_sizes[-1] if tile_sizes else 0,
            "files": sizes if len(sizes) <= 200 else {"tileset.json": len(text)},
            "rawSize": sum(sizes.values()),
            "tileSeconds": round(time.perf_counter() - started, 3),
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
