"""An iModel file as an IFC file: the part of the Export API's IFC runs that writes the file (issue #15).

    stats = write_ifc(Path("model.bim"), Path("model.ifc"), ifc_version="IFC4 RV 1.2")

The file is read once, ``CHUNK`` geometric elements at a time: each chunk is meshed by ``bim.mesher``
(geometry parts tessellated once for the whole file, ``PartCache``), its properties read in one query
per class, and its products written by ``ifc.writer`` before the next chunk is read; only the IFC
model itself (ifcopenshell's, in C++) grows with the file. Every 3D geometric element is one product:

- meshed: its triangles (world coordinates from the mesher, written in the element's placement) and
  its part instances (one ``IfcRepresentationMap`` per part and colours, shared);
- not meshed (its stream cannot be decoded or tessellated: ``elementsWithErrors``), or meshed with no
  surface (wires, text outlines, points only), or with no stream: its placement's box, as triangles,
  counted in ``fallbacks`` by reason (``mesh-error``, ``no-surfaces``, ``no-geometry``). An element with
  no box either has no body (``noBody``).

2D elements (drawings, sheets) are not exported (``skipped2d``). The output is written to a temporary
name next to ``out`` and renamed into place: a failed export leaves no ``out``.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from twinbase.bim.geolocation import ecef_transform, read_geolocation
from twinbase.bim.identity import BimFormatError
from twinbase.bim.imodel import KIND_2D, KIND_3D, Element, IModelFile, Placement3d
from twinbase.bim.mesher import MeshResult, PartCache, mesh_elements
from twinbase.bim.tessellate import StrokeOptions
from twinbase.export.config import TilerConfig
from twinbase.ifc.georef import map_conversion
from twinbase.ifc.writer import Entity, IfcWriter, Piece, ProductFacts

#: The platform's ``ifcVersion`` values -> ifcopenshell schema names.
IFC_VERSIONS: dict[str, str] = {
    "IFC2x3": "IFC2X3",
    "IFC2x3 CV 2.0": "IFC2X3",
    "IFC4 RV 1.2": "IFC4",
    "IFC4.3": "IFC4X3_ADD2",
}
#: Elements meshed and written at a time (bounds the Python-side memory).
CHUNK = 1000
#: The colour of bounding-box bodies (light grey, opaque).
FALLBACK_COLOR = 0x00B4B4B4
#: Properties every geometric element has that the product says otherwise (or that are geometry).
_BASE_PROPERTIES = frozenset(
    {
        "Model",
        "LastMod",
        "CodeSpec",
        "CodeScope",
        "CodeValue",
        "UserLabel",
        "Parent",
        "FederationGuid",
        "JsonProperties",
        "Category",
        "InSpatialIndex",
        "Origin",
        "Yaw",
        "Pitch",
        "Roll",
        "BBoxLow",
        "BBoxHigh",
        "GeometryStream",
        "TypeDefinition",
    }
)

Progress = Callable[[float, str], None]


class IfcExportError(Exception):
    """The file cannot be exported to IFC; the message says why (for the user)."""


def write_ifc(
    bim: Path,
    out: Path,
    *,
    ifc_version: str,
    model_ids: set[int] | None = None,
    progress: Progress = lambda f, m: None,
    chord_tolerance: float | None = None,
    angle_tolerance: float | None = None,
) -> dict[str, Any]:
    """Write the IFC of the iModel file ``bim`` to ``out``; answer JSON-able stats. ``model_ids``: only
    the elements of those models. Tolerances default to the Mesh Export's (``TilerConfig``)."""
    schema = IFC_VERSIONS.get(ifc_version)
    if schema is None:
        raise IfcExportError(
            f"unknown ifcVersion {ifc_version!r}: one of {', '.join(repr(v) for v in IFC_VERSIONS)}"
        )
    defaults = TilerConfig()
    options = StrokeOptions(
        chord_tolerance if chord_tolerance is not None else defaults.chord_tolerance,
        angle_tolerance if angle_tolerance is not None else defaults.angle_tolerance,
    )
    out = Path(out)
    temporary = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        try:
            with IModelFile.open(bim) as imodel:
                stats = _export(imodel, schema, temporary, model_ids, options, progress)
        except BimFormatError as exc:
            raise IfcExportError(f"the iModel file cannot be read: {exc}") from exc
        stats["ifcVersion"] = ifc_version
        stats["schema"] = schema
        stats["size"] = temporary.stat().st_size
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
    progress(1.0, "Done")
    return stats


def _export(
    imodel: IModelFile,
    schema: str,
    temporary: Path,
    model_ids: set[int] | None,
    options: StrokeOptions,
    progress: Progress,
) -> dict[str, Any]:
    started = time.perf_counter()
    models = {m.id: m for m in imodel.models()}
    categories = {c.id: c.name for c in imodel.categories()}
    root = models.get(1)
    project_name = root.name if root is not None and root.name else imodel.path.stem
    geolocation = read_geolocation(imodel)
    conversion = (
        map_conversion(ecef_transform(geolocation.ecef_location))
        if geolocation.ecef_location is not None
        else None
    )
    writer = IfcWriter(schema, project_name=project_name, map_conversion=conversion)
    total = max(1, imodel.count_elements(geometric_only=True))
    parts = PartCache()
    maps: dict[tuple[int, tuple[int, ...]], Entity | None] = {}
    counts: Counter[str] = Counter()
    fallbacks: Counter[str] = Counter()
    notes = _Notes()
    mesh_seconds = 0.0
    done = 0
    progress(0.0, "Writing the products")
    elements = imodel.elements(
        geometric_only=True,
        with_geometry=True,
        model_ids=sorted(model_ids) if model_ids is not None else None,
    )
    for chunk in _chunks(elements, counts):
        t0 = time.perf_counter()
        result = mesh_elements(imodel, chunk, options, parts=parts)
        mesh_seconds += time.perf_counter() - t0
        notes.add(result)
        errors = dict(result.errors)
        properties = dict(imodel.properties_of(e.id for e in chunk))
        for element in chunk:
            facts = ProductFacts(
                element_id=element.id,
                bis_class=element.class_full_name,
                federation_guid=element.federation_guid,
                code=element.code_value,
                label=element.user_label,
                model_id=element.model_id,
                category_id=element.category_id or 0,
                model_name=models[element.model_id].name if element.model_id in models else "",
                category_name=categories.get(element.category_id or 0, ""),
                properties={
                    k: v for k, v in properties.get(element.id, {}).items() if k not in _BASE_PROPERTIES
                },
            )
            placement = element.placement
            world = placement.transform() if isinstance(placement, Placement3d) else np.eye(4)
            meshed = result.elements.get(element.id)
            pieces: list[Piece] = []
            instances: list[tuple[Entity, Any]] = []
            if meshed is not None:
                pieces = [
                    Piece(p.appearance.color_tbgr, p.mesh.positions, p.mesh.indices)
                    for p in meshed.meshes
                    if p.mesh.n_triangles
                ]
                for inst in meshed.instances:
                    key = (inst.part_id, tuple(a.color_tbgr for a in inst.mesh_appearances))
                    if key not in maps:
                        part = result.parts[inst.part_id]
                        maps[key] = writer.representation_map(
                            [
                                Piece(a.color_tbgr, m.positions, m.indices)
                                for a, (_, m) in zip(inst.mesh_appearances, part.meshes, strict=True)
                            ]
                        )
                    source = maps[key]
                    if source is not None:
                        instances.append((source, inst.transform))
            local: list[Piece] = []
            if not pieces and not instances:
                reason = (
                    "mesh-error"
                    if element.id in errors
                    else ("no-geometry" if not element.geometry_stream else "no-surfaces")
                )
                facts.fallback = reason
                box = placement.bbox if placement is not None else None
                if box is not None:
                    local = [IfcWriter.box(box[0], box[1], FALLBACK_COLOR)]
                    fallbacks[reason] += 1
                else:
                    counts["noBody"] += 1
            writer.product(facts, world, pieces, instances, local_pieces=local)
        done += len(chunk)
        progress(min(0.9, 0.9 * done / total), f"{done} elements written")
    progress(0.9, "Writing the file")
    t0 = time.perf_counter()
    writer.write(temporary)
    write_seconds = time.perf_counter() - t0
    return {
        "elements": writer.products,
        "products": writer.products,
        "triangles": writer.triangles,
        "representationMaps": sum(1 for m in maps.values() if m is not None),
        "mappedItems": writer.mapped_items,
        "fallbacks": dict(fallbacks),
        "noBody": counts["noBody"],
        "skipped2d": counts["skipped2d"],
        "elementsWithErrors": len(notes.errors),
        "errors": [{"elementId": f"0x{eid:x}", "message": msg} for eid, msg in notes.errors[:100]],
        "meshFallbacks": dict(notes.fallbacks),
        "notDrawn": dict(notes.skipped),
        "duplicateGuids": writer.duplicate_guids,
        "georeferenced": conversion is not None,
        "crs": conversion.crs_name if conversion is not None else None,
        "meshSeconds": round(mesh_seconds, 3),
        "fileSeconds": round(write_seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
    }


class _Notes:
    """What the mesher counted over every chunk."""

    def __init__(self) -> None:
        self.errors: list[tuple[int, str]] = []
        self.fallbacks: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()

    def add(self, result: MeshResult) -> None:
        self.errors.extend(result.errors)
        self.fallbacks.update(result.fallbacks)
        self.skipped.update(result.skipped)


def _chunks(elements: Iterable[Element], counts: Counter[str]) -> Iterator[list[Element]]:
    chunk: list[Element] = []
    for element in elements:
        if element.kind == KIND_2D:
            counts["skipped2d"] += 1
            continue
        if element.kind != KIND_3D:
            continue
        chunk.append(element)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
