"""Mesh Export ``IMODEL`` (issue #16): iMdl tilesets, read back by the pinned ``@itwin/core-frontend``
decoder (``compat/frontend/imdl-dump.mjs``) and compared with what twinbase and iTwin.js know of the same
elements:

- the generated model with every geometry kind: per element, the leaves' triangles, box and colours are
  those of the whole-model GLB export (itself checked against iTwin.js ``exportGraphics``), meshopt-encoded
  (stamped 36.0) and plain (1.0), parts drawn instanced;
- the shared real iModels: feature for feature (element, model, subcategory, geometry class) what the
  native iTwin.js backend's root tile of each model holds, every box within that tile's own tolerance;
- the tileset around the tiles: what frontend-tiles reads (``BENTLEY_BatchedTileSet`` models, box volumes,
  a translation-only root transform, inline children).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from support.geometry_truth import make_geometry
from support.imdl_check import dump_imdl, native_root_tiles, to_world
from test_export_produce import SHARED, FolderSink, _per_element
from twinbase.bim.imodel import IModelFile
from twinbase.export.config import parse_tiler_config
from twinbase.export.produce import mesh_file, produce
from twinbase.tiles.check import content_uris

Key = tuple[str, str, str, int]  # element, model, subcategory, geometry class (hex ids as iTwin.js)


def _export(bim: Path, out: Path, items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    stats = produce(bim, "IMODEL", parse_tiler_config(items), FolderSink(out), lambda f, m: None, workers=1)
    return dict(stats)


def _shift(document: dict[str, Any]) -> np.ndarray:
    transform = document["root"].get("transform")
    if transform is None:
        return np.zeros(3)
    m = np.array(transform, np.float64).reshape(4, 4).T  # column-major on the wire
    assert np.array_equal(m[:3, :3], np.eye(3)) and np.array_equal(m[3], [0, 0, 0, 1]), transform
    return m[:3, 3]


def _tiles(folder: Path, *, leaves_only: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    document = json.loads((folder / "tileset.json").read_text())
    names = content_uris(document, leaves_only=leaves_only)
    assert names and all(n.endswith(".imdl") for n in names)
    dumps = dump_imdl([folder / n for n in names])
    for name, dump in zip(names, dumps, strict=True):
        assert dump["status"] == "ok" and dump["problems"] == [], (name, dump.get("problems"), dump["status"])
        assert dump["featureTable"]["multiModel"] and not dump["droppedPrimitives"], name
        assert dump["unalignedBufferViews"] == [], name
        for prim in dump["primitives"]:
            assert prim["problems"] == [] and prim["indicesInRange"] and prim["normalsUnit"], (name, prim)
    return document, dumps


def _per_feature(dumps: list[dict[str, Any]], shift: np.ndarray) -> dict[Key, dict[str, Any]]:
    """Every feature of the tiles with its triangles, box (iModel coordinates) and colours."""
    out: dict[Key, dict[str, Any]] = {}
    for dump in dumps:
        for index, drawn in dump["perFeature"].items():
            f = dump["features"][int(index)]
            key = (f["elementId"], f["modelId"], f["subCategoryId"], int(f["geometryClass"]))
            low, high = np.array(drawn["low"]) + shift, np.array(drawn["high"]) + shift
            seen = out.setdefault(key, {"triangles": 0, "low": low, "high": high, "colors": set()})
            seen["triangles"] += drawn["triangles"]
            seen["low"] = np.minimum(seen["low"], low)
            seen["high"] = np.maximum(seen["high"], high)
            seen["colors"] |= set(drawn["colors"])
    return out


def _same_colors(read: set[int], expected: set[int]) -> bool:
    """TBGR colour sets equal, allowing what a translucent colour loses through the colour table's
    premultiplied bytes (read back by dividing by alpha: a step or two of 255 when alpha is small)."""
    if len(read) != len(expected):
        return False

    def channels(c: int) -> np.ndarray:
        return np.array([(c >> s) & 0xFF for s in (0, 8, 16, 24)], np.int64)

    left = sorted(read, key=lambda c: (c >> 24, c))
    right = sorted(expected, key=lambda c: (c >> 24, c))
    for a, b in zip(left, right, strict=True):
        x, y = channels(a), channels(b)
        transparency = int(y[3])
        slack = 0 if transparency == 0 else 1 + (255 // max(1, 255 - transparency))
        if x[3] != y[3] or np.abs(x[:3] - y[:3]).max() > slack:
            return False
    return True


@pytest.fixture(scope="module")
def model() -> Path:
    return make_geometry("truth")


@pytest.fixture(scope="module")
def glb_elements(model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("gltf")
    produce(model, "GLTF", parse_tiler_config(None), FolderSink(out), lambda f, m: None)
    return _per_element((out / "model.glb").read_bytes())


@pytest.mark.parametrize("compression", [True, False], ids=["meshopt", "plain"])
def test_every_geometry_kind_reads_back_as_the_glb_export(
    model: Path, glb_elements: dict[str, Any], compression: bool, tmp_path: Path
) -> None:
    stats = _export(model, tmp_path, [{"key": "enableCompression", "value": compression}])
    document, dumps = _tiles(tmp_path, leaves_only=True)
    assert {d["header"]["major"] for d in dumps} == {36 if compression else 1}
    assert stats["tiles"] >= 1 and stats["elementsWithErrors"] == 0
    instanced = [p for d in dumps for p in d["primitives"] if p["instanced"]]
    assert instanced, "the model's parts should be drawn instanced"
    assert all(p["meshopt"] == compression for d in dumps for p in d["primitives"])

    per = _per_feature(dumps, _shift(document))
    with IModelFile.open(model) as imodel:
        models = {f"0x{e.id:x}": f"0x{e.model_id:x}" for e in imodel.elements(geometric_only=True)}
    by_element: dict[str, dict[str, Any]] = {}
    for (element, model_id, _, _), drawn in per.items():
        assert models[element] == model_id, element  # the multi-model table names each element's model
        seen = by_element.setdefault(element, {"triangles": 0, "low": drawn["low"], "high": drawn["high"]})
        seen["triangles"] += drawn["triangles"]
        seen["low"] = np.minimum(seen["low"], drawn["low"])
        seen["high"] = np.maximum(seen["high"], drawn["high"])
        seen.setdefault("colors", set()).update(drawn["colors"])
    assert set(by_element) == set(glb_elements)
    for element, (corners, colors) in glb_elements.items():
        drawn = by_element[element]
        assert drawn["triangles"] == len(corners), element
        points = corners.reshape(-1, 3)
        extent = float(np.max(points.max(axis=0) - points.min(axis=0)))
        # Leaves: positions within half the leaf tolerance (0.5 mm) or the 16-bit grid of the range.
        slack = 2e-3 + extent / 65535
        assert np.abs(drawn["low"] - points.min(axis=0)).max() <= slack, element
        assert np.abs(drawn["high"] - points.max(axis=0)).max() <= slack, element
        assert _same_colors(drawn["colors"], {int(c) for c in np.unique(colors)}), element


def test_the_tileset_is_what_frontend_tiles_reads(model: Path, tmp_path: Path) -> None:
    _export(model, tmp_path)
    document = json.loads((tmp_path / "tileset.json").read_text())
    assert {"asset", "root", "geometricError"} <= set(document)
    models = document["extensions"]["BENTLEY_BatchedTileSet"]["models"]
    with IModelFile.open(model) as imodel:
        spatial = {m.id_hex for m in imodel.models() if m.is_spatial and not m.is_template}
        drawn = {f"0x{e.model_id:x}" for e in imodel.elements(geometric_only=True)}
    assert set(models) == spatial | drawn
    for mid, entry in models.items():
        low, high = entry["extents"]["low"], entry["extents"]["high"]
        if mid in drawn:
            assert all(a <= b for a, b in zip(low, high, strict=True))
        else:
            assert low[0] > 1e300 and high[0] < -1e300  # iTwin.js' null range
    shift = _shift(document)
    assert np.array_equal(shift, np.round(shift))  # whole metres

    def walk(tile: dict[str, Any], depth: int) -> int:
        assert set(tile["boundingVolume"]) == {"box"} and len(tile["boundingVolume"]["box"]) == 12
        assert depth == 0 or "transform" not in tile  # child transforms compose backwards in frontend-tiles
        if "content" in tile:
            assert tile["content"]["uri"].endswith(".imdl") and not tile["content"]["uri"].endswith(".json")
        return 1 + sum(walk(c, depth + 1) for c in tile.get("children", []))

    assert walk(document["root"], 0) >= 1


@pytest.mark.parametrize("path", SHARED, ids=[p.name for p in SHARED])
def test_real_imodels_match_the_native_backends_tiles(path: Path, tmp_path: Path) -> None:
    _export(path, tmp_path / "ours")
    document = json.loads((tmp_path / "ours" / "tileset.json").read_text())
    ours: dict[Key, dict[str, Any]] = {}
    if content_uris(document):
        document, dumps = _tiles(tmp_path / "ours", leaves_only=True)
        ours = _per_feature(dumps, _shift(document))
    natives = native_root_tiles(path, tmp_path / "native")
    theirs: dict[Key, dict[str, Any]] = {}
    complete = True
    for tile in natives:
        assert "error" not in tile, tile
        [dump] = dump_imdl([Path(tile["file"])], batch_model_id=tile["modelId"])
        assert dump["status"] == "ok", dump
        if tile["header"]["flags"] & 4:  # Incomplete: the root left elements to its children
            complete = False
        for index, drawn in dump["perFeature"].items():
            f = dump["features"][int(index)]
            key = (f["elementId"], f["modelId"], f["subCategoryId"], int(f["geometryClass"]))
            a = np.array(to_world(tile["location"], drawn["low"]))
            b = np.array(to_world(tile["location"], drawn["high"]))
            tolerance = dump["header"]["tolerance"]
            theirs[key] = {"low": np.minimum(a, b), "high": np.maximum(a, b), "tolerance": tolerance}
    # What the native tiles draw and twinbase does not: only elements twinbase draws no surface of (lines).
    with IModelFile.open(path) as imodel:
        result, _, _ = mesh_file(imodel, parse_tiler_config(None), lambda f, m: None)
    surfaced = {f"0x{e:x}" for e, m in result.elements.items() if m.triangles() or m.instances}
    missing = {k for k in set(theirs) - set(ours) if k[0] in surfaced}
    assert not missing, sorted(missing)[:5]
    if complete:
        assert set(ours) == {k for k in theirs if k[0] in surfaced}
    for key in set(ours) & set(theirs):
        # The native root tile is faceted at its own (coarser) tolerance: boxes agree within it.
        slack = theirs[key]["tolerance"] + 2e-3
        assert np.abs(ours[key]["low"] - theirs[key]["low"]).max() <= slack, key
        assert np.abs(ours[key]["high"] - theirs[key]["high"]).max() <= slack, key
