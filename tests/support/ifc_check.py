"""Checks of an IFC file written by ``twinbase.export.ifc`` against the iModel it came from, with
ifcopenshell's own reader, validator and geometry iterator (no pytest import: the benchmark uses
``geometry_by_product`` too).

- ``validation_errors``: what ``ifcopenshell.validate`` reports (schema types, cardinalities, inverses).
- ``geometry_by_product``: every product's triangles re-tessellated by ``ifcopenshell.geom`` (world
  coordinates), as (bounds low, bounds high, surface area, triangles) by product id.
- ``expected_geometry``: the same figures from twinbase's own meshes of each element (part instances
  applied), or of the bounding box the writer falls back to.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.geom
import ifcopenshell.validate
import numpy as np

from twinbase.bim.imodel import KIND_3D, IModelFile, Placement3d
from twinbase.bim.mesher import flattened, mesh_elements
from twinbase.bim.tessellate import StrokeOptions
from twinbase.ifc.writer import IfcWriter


@dataclass(frozen=True)
class Figures:
    low: np.ndarray
    high: np.ndarray
    area: float
    triangles: int


def triangle_area(positions: np.ndarray, triangles: np.ndarray) -> float:
    if not len(triangles):
        return 0.0
    a, b, c = (positions[triangles[:, i]] for i in range(3))
    return float(np.linalg.norm(np.cross(b - a, c - a), axis=1).sum() / 2)


def validation_errors(f: Any) -> list[dict[str, Any]]:
    logger = ifcopenshell.validate.json_logger()
    ifcopenshell.validate.validate(f, logger)
    return [s for s in logger.statements if str(s.get("level", "error")).lower() == "error"]


def geometry_by_product(f: Any, threads: int = 1) -> dict[int, Figures]:
    """Every product's world-space triangles as ifcopenshell tessellates them."""
    settings = ifcopenshell.geom.settings()
    settings.set("use-world-coords", True)
    iterator = ifcopenshell.geom.iterator(settings, f, max(1, min(threads, multiprocessing.cpu_count())))
    out: dict[int, Figures] = {}
    if not iterator.initialize():
        return out
    while True:
        shape = iterator.get()
        verts = np.asarray(shape.geometry.verts, np.float64).reshape(-1, 3)
        faces = np.asarray(shape.geometry.faces, np.int64).reshape(-1, 3)
        if len(verts):
            area = triangle_area(verts, faces)
            out[shape.id] = Figures(verts.min(axis=0), verts.max(axis=0), area, len(faces))
        if not iterator.next():
            break
    return out


def expected_geometry(
    bim: Path, options: StrokeOptions, model_ids: Iterable[int] | None = None
) -> dict[str, Figures]:
    """By element id (hex): twinbase's meshes of every 3D geometric element, else the box the writer
    writes for it."""
    out: dict[str, Figures] = {}
    with IModelFile.open(bim) as imodel:
        elements = [
            e
            for e in imodel.elements(
                geometric_only=True,
                with_geometry=True,
                model_ids=sorted(model_ids) if model_ids is not None else None,
            )
            if e.kind == KIND_3D
        ]
        result = mesh_elements(imodel, elements, options)
        for element in elements:
            meshed = result.elements.get(element.id)
            positions: list[np.ndarray] = []
            triangles: list[np.ndarray] = []
            count = 0
            if meshed is not None:
                for piece in flattened(result, meshed):
                    if piece.mesh.n_triangles:
                        positions.append(piece.mesh.positions)
                        triangles.append(np.asarray(piece.mesh.indices, np.int64) + count)
                        count += len(piece.mesh.positions)
            if not positions:
                placement = element.placement
                if placement is None or placement.bbox is None:
                    continue
                box = IfcWriter.box(placement.bbox[0], placement.bbox[1], 0)
                world = placement.transform() if isinstance(placement, Placement3d) else np.eye(4)
                positions = [box.positions @ world[:3, :3].T + world[:3, 3]]
                triangles = [box.indices]
            p = np.concatenate(positions)
            t = np.concatenate(triangles)
            out[element.id_hex] = Figures(p.min(axis=0), p.max(axis=0), triangle_area(p, t), len(t))
    return out


def geometric_elements(bim: Path, model_ids: Iterable[int] | None = None) -> dict[str, str | None]:
    """Every 3D geometric element: id (hex) -> federation guid."""
    with IModelFile.open(bim) as imodel:
        return {
            e.id_hex: e.federation_guid
            for e in imodel.elements(
                geometric_only=True, model_ids=sorted(model_ids) if model_ids is not None else None
            )
            if e.kind == KIND_3D
        }
